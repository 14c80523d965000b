"""Validation of a bridge during training: answer accuracy overall, by answer kind, and with the images
shuffled (the vision control)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from flamingo_eval.training.data import Seq


class Scorer(Protocol):
    """What validation needs of the trainer (``bridge.BridgeTrainer`` has it): the loss and per-target
    correctness of a batch."""

    def loss(self, seqs: Sequence[Seq], images: Sequence[Sequence[str]], feats: dict[str, Tensor],
             lower: Sequence[Tensor] | None, bridge: bool = True) -> tuple[Tensor, Tensor]:
        """(mean cross-entropy over target tokens, per-target correctness of the argmax)."""
        ...


@torch.no_grad()
def validate(trainer: Scorer, seqs: Sequence[Seq], lower: Sequence[Tensor] | None, feats: dict[str, Tensor],
             batch: int, bridge: bool = True) -> dict[str, float]:
    """Validation loss, target-token accuracy and answer accuracy (a chunk's answer + end tokens all right),
    overall, for yes/no answers and for the others, and the answer accuracy with the images rotated by one
    sequence (each chunk shown another chunk's image: the vision control, near chance for a bridge that reads
    its images on balanced data).

    ``lower``: cached lower-layer states, or None to run the whole LM (after the token rows changed).
    """
    total, n_tok, n_ok = 0.0, 0, 0
    right: dict[str, int] = {"all": 0, "yes/no": 0, "other": 0, "shuffled": 0}
    count = dict.fromkeys(right, 0)
    for s in range(0, len(seqs), batch):
        part = seqs[s : s + batch]
        low = None if lower is None else lower[s : s + batch]
        images = [q.images for q in part]
        loss, ok = trainer.loss(part, images, feats, low, bridge)
        nxt = images[1:] + images[:1]  # every sequence has at least one image chunk
        rotated = [[other[i % len(other)] for i in range(len(row))] for row, other in zip(images, nxt)]
        _, ok_rot = trainer.loss(part, rotated, feats, low, bridge)
        total += float(loss) * len(ok)
        n_tok, n_ok = n_tok + len(ok), n_ok + int(ok.sum())
        i = 0
        for q in part:  # targets are grouped per chunk: consecutive offsets of one answer
            for group, (_, answer) in zip(_chunk_groups(q.targets), q.pairs):
                kind = "yes/no" if answer in ("yes", "no") else "other"
                for key, hit in (("all", ok), (kind, ok), ("shuffled", ok_rot)):
                    count[key] += 1
                    right[key] += bool(hit[i : i + len(group)].all())
                i += len(group)
    out = {"loss": total / max(1, n_tok), "token_acc": 100 * n_ok / max(1, n_tok)}
    names = {"all": "answer_acc", "yes/no": "answer_acc_yes_no", "other": "answer_acc_other",
             "shuffled": "answer_acc_shuffled_images"}
    out.update({names[k]: 100 * right[k] / max(1, count[k]) for k in right})
    return out


def _chunk_groups(targets: Sequence[int]) -> list[list[int]]:
    groups: list[list[int]] = []
    for t in targets:
        if groups and t == groups[-1][-1] + 1:
            groups[-1].append(t)
        else:
            groups.append([t])
    return groups
