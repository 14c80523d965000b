"""``flamingo-eval score``: Hydra-style card overrides, and a --help that describes every argument.

The bad-input cases of ``score`` (duplicates, missing/unknown ids, broken lines) are in test_bad_inputs.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from flamingo_eval.cli import build_parser, main


def _vqav2_lines(root: Path, answer: str, references: list[str]) -> list[dict]:
    questions = json.loads((root / "vqav2" / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())["questions"]
    return [{"shots": 0, "trial": 0, "seed": 0, "sample_id": str(q["question_id"]), "answer": answer,
             "references": references, "label": None, "scores": None, "extra": {}} for q in questions]


@pytest.mark.parametrize("overrides,value,args", [
    ([], 100.0, {"variant": "openflamingo"}),  # the card's default: both sides normalised
    (["benchmarks.metric.args.variant=official"], 0.0, {"variant": "official"}),  # raw strings when unanimous
    (["benchmarks.metric.args.variant=vizwiz"], 100.0, {"variant": "vizwiz"}),
], ids=["card", "official", "vizwiz"])
def test_score_applies_metric_overrides(overrides, value, args, vqav2_root, tmp_path, capsys):
    """The official VQA variant re-scores saved predictions without editing a card ("Yes" vs 10 x "yes")."""
    path = tmp_path / "preds.jsonl"
    path.write_text("".join(json.dumps(ln) + "\n" for ln in _vqav2_lines(vqav2_root, "Yes", ["yes"] * 10)))
    assert main(["score", "vqav2", "--predictions", str(path), "--data-root", str(vqav2_root), *overrides]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metric"] == "vqa_accuracy" and out["metric_args"] == args
    assert out["results"][0]["trials"][0] == {"trial": 0, "seed": 0, "value": value, "n": 6, "extras": {}}
    assert out["results"][0]["std_ddof1"] is None  # one trial: no sample std
    assert out["checks"]["exact_ids"] and not out["checks"]["partial"]


@pytest.mark.parametrize("override,needle", [
    ("model.precision=bf16", "only benchmarks.* overrides"),
    ("benchmarks.metric.args.varient=official", "did you mean benchmarks.metric.args.variant?"),
    ("+benchmarks.metric.args.varient=official", "metric 'vqa_accuracy' takes variant, stem"),
    ("benchmarks.metric.args.variant=oficial", "unknown variant 'oficial'"),
], ids=["not-benchmarks", "no-such-key", "unknown-arg", "unknown-variant"])
def test_score_bad_override_is_one_line(override, needle, vqav2_root, tmp_path, capsys):
    path = tmp_path / "preds.jsonl"
    path.write_text("".join(json.dumps(ln) + "\n" for ln in _vqav2_lines(vqav2_root, "yes", ["yes"] * 10)))
    assert main(["score", "vqav2", "--predictions", str(path), "--data-root", str(vqav2_root), override]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and needle in err, err


def test_score_help_describes_every_argument(capsys):
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    score = sub.choices["score"]
    for action in score._actions:
        assert action.help and action.help != argparse.SUPPRESS, f"undocumented score argument {action.dest}"
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    text = capsys.readouterr().out
    for needle in ("BENCHMARK", "KEY=VALUE", "--predictions", "--record", "--data-root", "--allow-partial",
                   "--output", "benchmarks.metric.args.variant=official", "exit 2"):
        assert needle in text, needle
