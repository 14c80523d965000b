"""The CI gate notices a broken vision path.

Each candidate runs the real ``mini`` model (trained bridge) on the first test questions of the committed
baseline's subset, with one deliberate fault injected from this test (monkeypatched in-process, nothing
shipped to users); ``flamingo-eval compare`` against ``results/baselines/mini-easyvqa`` must exit 1 for
every fault and 0 for an honest rerun. The faults hit the four places a regression can hide: the image
loading (queries get other samples' images; every image grey), the media masking (each token sees the image
before its own) and the perceiver (latents zeroed). A small subset is enough: the effect is large
(measured on these 80 questions: 16 to 24 points lost per fault, p <= 0.001; docs/ci.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from flamingo_eval.cli import main

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "results" / "baselines" / "mini-easyvqa"
LIMIT = 80
"""Test questions per candidate (the baseline's first 80; compare pairs them by id; 24 were too few to make the
masking fault significant: -12.5 points, p = 0.13)."""

pytestmark = pytest.mark.slow


def shuffled_query_images(mp: pytest.MonkeyPatch) -> None:
    """Each test question gets the image of the question half the split away (another image)."""
    from flamingo_eval.benchmarks.vqa import EasyVQAAdapter

    load = EasyVQAAdapter.load

    def shuffled(self: Any, split: str) -> list[Any]:
        samples = load(self, split)
        if split != self.card.eval_split:
            return samples
        from dataclasses import replace

        n = len(samples)
        return [replace(s, media=samples[(i + n // 2) % n].media) for i, s in enumerate(samples)]

    mp.setattr(EasyVQAAdapter, "load", shuffled)


def masking_off_by_one(mp: pytest.MonkeyPatch) -> None:
    """Every text token attends to the image before its own (the first image's tokens to none)."""
    from flamingo_eval.models import cross_attention

    kernel = cross_attention.segment_attention
    mp.setattr(cross_attention, "segment_attention",
               lambda q, k, v, img_idx, memo=None: kernel(q, k, v, (img_idx - 1).clamp(min=0)))


def perceiver_latents_zeroed(mp: pytest.MonkeyPatch) -> None:
    from flamingo_eval.models.flamingo import PerceiverResampler

    mp.setattr(PerceiverResampler, "forward",
               lambda self, x: torch.zeros(x.shape[0], *self.latents.shape, dtype=x.dtype, device=x.device))


def grey_images(mp: pytest.MonkeyPatch) -> None:
    """The vision tower's preprocessing sees a uniform grey image instead of every real one."""
    from flamingo_eval.models.vision import EfficientNetLite0Encoder

    preprocess = EfficientNetLite0Encoder.preprocess
    mp.setattr(EfficientNetLite0Encoder, "preprocess",
               lambda self, img: preprocess(self, Image.new("RGB", img.size, (128, 128, 128))))


FAULTS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "shuffled query images": shuffled_query_images,
    "cross-attention masking off by one image": masking_off_by_one,
    "perceiver latents zeroed": perceiver_latents_zeroed,
    "every image uniform grey": grey_images,
}


def _candidate(out: Path) -> int:
    return main(["run", "easyvqa", "--model", "mini", "--shots", "4", "--seeds", "0", "--limit", str(LIMIT),
                 "--output", str(out)])


def _gate(candidate: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    # --allow-partial deliberately: a candidate holds one cell of the baseline (4 shots, seed 0, its first LIMIT)
    code = main(["compare", str(BASELINE), str(candidate), "--n-resamples", "2000", "--allow-partial"])
    return code, capsys.readouterr().out


def test_gate_fails_every_broken_vision_path_and_passes_an_honest_rerun(tmp_path, monkeypatch, capsys):
    from flamingo_eval.config_load import compose_config

    baseline = json.loads((BASELINE / "record.json").read_text())
    shipped = compose_config("easyvqa", "mini").model.checkpoint
    if baseline["config"]["model"].get("checkpoint") != shipped:  # a zero-gate baseline cannot show a vision fault
        pytest.skip(f"{BASELINE.relative_to(ROOT)} was not run with the trained bridge ({shipped}): refresh it "
                    "with the command in docs/ci.md")
    t0 = time.perf_counter()
    assert _candidate(tmp_path / "honest") == 0
    honest = json.loads((tmp_path / "honest" / "record.json").read_text())
    assert honest["model"]["fingerprint"] == baseline["model"]["fingerprint"], "baseline has other weights: refresh it"
    code, report = _gate(tmp_path / "honest", capsys)
    assert code == 0, report
    assert f"| easyvqa | 4 | {LIMIT} |" in report and "PASS" in report and "PARTIAL COVERAGE" in report
    verdicts = {}
    for name, fault in FAULTS.items():
        with monkeypatch.context() as mp:
            fault(mp)
            assert _candidate(tmp_path / name.replace(" ", "-")) == 0
        verdicts[name] = _gate(tmp_path / name.replace(" ", "-"), capsys)
    failed_to_fail = {name: report for name, (code, report) in verdicts.items() if code != 1}
    assert not failed_to_fail, failed_to_fail
    assert all("REGRESSION" in report for _, report in verdicts.values())
    for name, (_, rep) in {"honest rerun": (code, report), **verdicts}.items():  # docs/ci.md quotes these rows
        print(name, next(ln for ln in rep.splitlines() if ln.startswith("| easyvqa | 4 |")))
    print(f"gate sensitivity: {len(FAULTS)} faults caught, honest rerun passed, {time.perf_counter() - t0:.0f}s")
