"""Greedy and beam search over a step function, with Hugging Face ``generate`` semantics.

The caller owns the model state (KV cache, media state): ``step(tokens (R,)) -> logits (R, V)`` runs one
token per row and ``reorder(index (R,))`` permutes/expands the state rows. Beam search follows HF:
candidates are the top 2*beams continuations of all beams; a stop token among the first ``beams`` of
them finishes a hypothesis scored ``sum_logprob / generated_len ** length_penalty``; a batch item is done
when it holds ``beams`` hypotheses and no running beam can beat the worst; at the length limit running
beams join the hypotheses. ``banned`` tokens are never generated (HF ``bad_words_ids`` semantics: their
log-probs are set to -inf after the softmax, the others are not renormalised); the eval models ban
``<image>``, which has no picture behind it when generated.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import torch
from torch import Tensor

Step = Callable[[Tensor], Tensor]
Reorder = Callable[[Tensor], None]


def _ban(scores: Tensor, banned: Collection[int]) -> Tensor:
    if banned:
        scores[:, sorted(banned)] = float("-inf")
    return scores


def greedy(first_logits: Tensor, step: Step, max_new: int, stop_ids: set[int],
           banned: Collection[int] = ()) -> list[list[int]]:
    """first_logits (B, V): logits after the prompt. Returns generated ids per row (stop token excluded)."""
    bsz = first_logits.shape[0]
    out: list[list[int]] = [[] for _ in range(bsz)]
    done = [False] * bsz
    logits = first_logits
    for t in range(max_new):
        tokens = _ban(logits.float(), banned).argmax(-1)  # (B,)
        for b, tok in enumerate(tokens.tolist()):
            if not done[b]:
                if tok in stop_ids:
                    done[b] = True
                else:
                    out[b].append(tok)
        if all(done) or t == max_new - 1:
            break
        logits = step(tokens)
    return out


class _Hyps:
    """Finished hypotheses of one batch item (at most ``beams``, worst evicted)."""

    def __init__(self, beams: int, length_penalty: float) -> None:
        self.beams, self.lp = beams, length_penalty
        self.items: list[tuple[float, list[int]]] = []

    def add(self, tokens: list[int], sum_logprob: float, gen_len: int) -> None:
        score = sum_logprob / (max(gen_len, 1) ** self.lp)
        if len(self.items) < self.beams or score > self.worst():
            self.items.append((score, tokens))
            if len(self.items) > self.beams:
                self.items.remove(min(self.items, key=lambda it: it[0]))

    def worst(self) -> float:
        return min(s for s, _ in self.items) if self.items else float("-inf")

    def done(self, best_running: float, cur_len: int) -> bool:
        if len(self.items) < self.beams:
            return False
        return self.worst() >= best_running / (max(cur_len, 1) ** self.lp)

    def best(self) -> list[int]:
        return max(self.items, key=lambda it: it[0])[1]


def beam_search(first_logits: Tensor, step: Step, reorder: Reorder, beams: int, max_new: int,
                stop_ids: set[int], length_penalty: float,
                banned: Collection[int] = ()) -> list[list[int]]:
    """first_logits (B, V) after the prompt; the state has B rows and is expanded to B*beams here."""
    bsz, vocab = first_logits.shape
    device = first_logits.device
    reorder(torch.arange(bsz, device=device).repeat_interleave(beams))
    logp = _ban(first_logits.float().log_softmax(-1), banned).repeat_interleave(beams, 0)  # (B*K, V)
    beam_scores = torch.full((bsz, beams), -1e9, device=device)
    beam_scores[:, 0] = 0.0  # identical beams at the start: only beam 0 may expand
    seqs: list[list[int]] = [[] for _ in range(bsz * beams)]
    hyps = [_Hyps(beams, length_penalty) for _ in range(bsz)]
    done = [False] * bsz
    for t in range(max_new):
        total = (logp + beam_scores.view(-1, 1)).view(bsz, beams * vocab)
        top_scores, top_ids = total.topk(2 * beams, dim=-1)  # (B, 2K)
        all_scores, all_ids = top_scores.tolist(), top_ids.tolist()  # one device-to-host copy per step
        next_rows, next_tokens, next_scores = [], [], []
        for b in range(bsz):
            if done[b]:  # keep shapes: pad with beam 0 of this item
                next_rows += [b * beams] * beams
                next_tokens += [0] * beams
                next_scores += [-1e9] * beams
                continue
            kept = 0
            for rank, (score, idx) in enumerate(zip(all_scores[b], all_ids[b])):
                beam, tok = divmod(idx, vocab)
                row = b * beams + beam
                if tok in stop_ids:
                    if rank < beams:
                        hyps[b].add(list(seqs[row]), score, t + 1)
                    continue
                next_rows.append(row)
                next_tokens.append(tok)
                next_scores.append(score)
                kept += 1
                if kept == beams:
                    break
            best_running = max(next_scores[-beams:])
            done[b] = hyps[b].done(best_running, t + 1)
        seqs = [seqs[r] + [tok] for r, tok in zip(next_rows, next_tokens)]
        beam_scores = torch.tensor(next_scores, device=device).view(bsz, beams)
        if all(done) or t == max_new - 1:
            break
        index = torch.tensor(next_rows, device=device)
        reorder(index)
        logp = _ban(step(torch.tensor(next_tokens, device=device)).float().log_softmax(-1), banned)
    for b in range(bsz):
        if not done[b]:
            for k in range(beams):
                hyps[b].add(seqs[b * beams + k], float(beam_scores[b, k]), len(seqs[b * beams + k]))
    return [h.best() for h in hyps]
