"""Bad run inputs (issue 11, run side): every case is one line naming the key and rc 2 before any model
loads, or a run whose record says exactly what happened (dropped demos, counted skips) — never a run
that exits 0 with numbers that mean something else than they claim.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flamingo_eval.cli import main

TINY = ["run", "easyvqa", "--model", "tiny", "--shots", "0", "--trials", "1"]


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err, "expected an error line"
    assert "Traceback" not in err and "\n" not in err, err
    return err


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a model is loaded (the refusal must come first)."""
    import flamingo_eval.models.build as build

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr(build, "build_model", refuse)


# -- numeric settings --------------------------------------------------------------------------------

@pytest.mark.parametrize("args,key", [
    (["--batch-size", "0"], "run.batch_size (--batch-size) must be >= 1, got 0"),
    (["--batch-size", "-4"], "run.batch_size (--batch-size) must be >= 1, got -4"),
    (["model.batch_size=0"], "model.batch_size must be >= 1"),
    (["model.batch_size=-1"], "model.batch_size must be >= 1"),
    (["benchmarks.generation.num_beams=0"], "benchmarks.generation.num_beams must be >= 1"),
    (["benchmarks.generation.max_new_tokens=0"], "benchmarks.generation.max_new_tokens must be >= 1"),
    (["run.query_set_size=0"], "run.query_set_size must be >= 1"),
    (["benchmarks.query_set_size=0"], "benchmarks.query_set_size must be >= 1"),
    (["run.zero_shot_text_demos=-1"], "run.zero_shot_text_demos must be >= 0"),
    (["model.latent_cache_mb=-1"], "model.latent_cache_mb must be >= 0"),
    (["model.max_context=0"], "model.max_context must be >= 1"),
    (["run.threads=0"], "run.threads must be >= 1"),
    (["run.rices_batch_size=0"], "run.rices_batch_size must be >= 1"),
    (["benchmarks.generation.length_penalty=nan"], "length_penalty must be a finite number"),
    (["--seeds", "3", "3"], "run.seeds (--seeds) lists 3 more than once"),
    (["--shots", "0", "4", "0"], "run.shots (--shots) lists 0 more than once"),
], ids=lambda x: x if isinstance(x, str) else " ".join(x))
def test_bad_setting_is_one_line_naming_the_key(args, key, capsys):
    assert main([*TINY, *args]) == 2
    assert key in one_line(capsys)


def test_config_error_path_imports_no_torch():
    """A typo is reported before torch / transformers / open_clip are imported (they take seconds)."""
    code = ("import sys; from flamingo_eval.cli import main; rc = main(['run', 'easyvqa', 'run.limt=3']); "
            "heavy = [m for m in ('torch', 'transformers', 'open_clip') if m in sys.modules]; print(rc, heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "CI": "true"})
    assert out.stdout.split() == ["2", "[]"], out.stdout + out.stderr
    assert "run.limt" in out.stderr and out.stderr.count("\n") == 1


# -- demo pool and eval split ------------------------------------------------------------------------

def vqa(root: Path, *extra: str) -> list[str]:
    """A run on the small VQAv2-format fixture (12 train / 6 val questions): fast to read."""
    return ["run", "vqav2", "--model", "tiny", "--trials", "1", "--data-root", str(root), *extra]


def test_more_shots_than_the_demo_pool_is_refused(vqav2_root, no_model, capsys):
    assert main(vqa(vqav2_root, "--shots", "0", "8", "run.query_set_size=5")) == 2
    err = one_line(capsys)
    assert "8-shot prompts need 8 demos" in err and "query set 5" in err and "at most 5 shots" in err


def test_zero_shot_text_demos_beyond_the_pool_is_refused(vqav2_root, no_model, capsys):
    assert main(vqa(vqav2_root, "--shots", "0", "run.query_set_size=3", "run.zero_shot_text_demos=4")) == 2
    assert "0-shot prompts need run.zero_shot_text_demos=4 text demos" in one_line(capsys)


def config_of(*argv: str):
    from flamingo_eval.cli import build_parser
    from flamingo_eval.commands.run_cmd import load_config

    return load_config(build_parser().parse_args(list(argv)))


@pytest.mark.parametrize("sampler,shots,ok", [("random", 12, True), ("random", 13, False), ("fixed", 13, False),
                                              ("class_balanced", 13, False), ("rices", 12, True),
                                              ("rices", 13, False)])
def test_demo_pool_size_per_sampler(sampler, shots, ok, vqav2_root):
    """12 train questions: 12 shots fit every sampler (RICES searches the whole split), 13 never do."""
    from flamingo_eval.errors import UserError
    from flamingo_eval.runner import prepare

    cfg = config_of("run", "vqav2", "--model", "tiny", "--shots", str(shots), "--sampler", sampler,
                    "--data-root", str(vqav2_root))
    if ok:
        assert len(prepare(cfg).demo_samples) == 12
    else:
        with pytest.raises(UserError, match=f"{shots}-shot prompts need {shots} demos .* 12 samples"):
            prepare(cfg)


def test_demo_pool_from_the_eval_split_keeps_a_spare_for_the_query(vqav2_root, no_model, capsys):
    """Demos from the eval split itself: a query never sees itself, so 6 queries give at most 5 demos."""
    assert main(vqa(vqav2_root, "--shots", "6", "benchmarks.demo_split=val")) == 2
    err = one_line(capsys)
    assert "one is the query itself" in err and "at most 5 shots" in err


def test_empty_eval_split_is_refused_before_the_model_loads(vqav2_root, tmp_path, no_model, capsys):
    d = vqav2_root / "vqav2"
    (d / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps({"questions": []}))
    (d / "v2_mscoco_val2014_annotations.json").write_text(json.dumps({"annotations": []}))
    assert main(["run", "vqav2", "--model", "tiny", "--shots", "0", "--data-root", str(vqav2_root),
                 "--output", str(tmp_path / "run")]) == 2
    assert "eval split 'val' holds no samples" in one_line(capsys)
    assert not (tmp_path / "run").exists()


# -- prompts longer than the model context -----------------------------------------------------------

def _long_question(root: Path, chars: int = 50_000) -> str:
    path = root / "vqav2" / "v2_OpenEnded_mscoco_val2014_questions.json"
    data = json.loads(path.read_text())
    data["questions"][1]["question"] = ("why " * chars)[:chars]
    path.write_text(json.dumps(data))
    return str(data["questions"][1]["question_id"])


def test_query_longer_than_the_context_is_one_line(vqav2_root, tmp_path, capsys):
    qid = _long_question(vqav2_root)
    assert main(["run", "vqav2", "--model", "tiny", "--shots", "0", "--data-root", str(vqav2_root),
                 "--output", str(tmp_path / "run")]) == 2
    err = one_line(capsys)
    assert f"sample {qid}" in err and "model.max_context 2048" in err and "--on-bad-sample skip" in err
    assert not list((tmp_path / "run" / "partial").glob("*.jsonl"))  # stopped before any model call


def test_query_longer_than_the_context_is_a_counted_skip(vqav2_root, tmp_path, capsys):
    qid = _long_question(vqav2_root)
    run = tmp_path / "run"
    assert main(["run", "vqav2", "--model", "tiny", "--shots", "0", "--data-root", str(vqav2_root),
                 "--on-bad-sample", "skip", "--output", str(run)]) == 0
    out = capsys.readouterr().out
    rec = json.loads((run / "record.json").read_text())
    trial = rec["results"][0]["trials"][0]
    assert trial["skipped"] == 1 and trial["skipped_ids"] == [qid] and trial["n"] == 5
    assert "model.max_context 2048" in trial["skip_reasons"][qid]
    assert "warning: 0-shot: 1 samples skipped" in out
    preds = [json.loads(ln) for ln in (run / "predictions.jsonl").read_text().splitlines()]
    assert qid not in {p["sample_id"] for p in preds} and len(preds) == 5
    # one trial: the population std is 0.0, the sample std undefined (null), and the leaderboard reads it
    assert rec["results"][0]["std"] == 0.0 and rec["results"][0]["std_ddof1"] is None
    assert main(["leaderboard", "--results", str(tmp_path), "--output", "-"]) == 0


def test_demos_dropped_to_fit_are_recorded_and_warned(vqav2_root, tmp_path, capsys, tiny_model):
    """A 60-token context: 4-shot prompts lose their farthest demos; each prompt + the 5 answer tokens
    fits, the count is in every line and in the record, and the summary warns."""
    run = tmp_path / "run"
    assert main(vqa(vqav2_root, "--shots", "4", "model.max_context=60", "--output", str(run))) == 0
    out = capsys.readouterr().out
    rec = json.loads((run / "record.json").read_text())
    preds = [json.loads(ln) for ln in (run / "predictions.jsonl").read_text().splitlines()]
    assert all(p["dropped_demos"] > 0 and len(p["demo_ids"]) == 4 - p["dropped_demos"] for p in preds)
    assert rec["results"][0]["trials"][0]["dropped_demos"] == sum(p["dropped_demos"] for p in preds)
    assert "warning: 4-shot:" in out and "demos dropped" in out and "model.max_context=60" in out

    from flamingo_eval.runner import prepare

    class Small:  # the tiny model's tokenizer with the run's context
        max_context = 60
        count_tokens = staticmethod(tiny_model.count_tokens)

    from tests.trial_prompts import trial_prompts

    prompts = trial_prompts(prepare(config_of(*vqa(vqav2_root))), Small(), 4, 0)
    assert [p.demo_ids for p in prompts] == [tuple(p["demo_ids"]) for p in preds]
    assert all(tiny_model.count_tokens(p.text) + 5 <= 60 for p in prompts)


# -- paths and progress ------------------------------------------------------------------------------

def test_tilde_in_path_overrides(vqav2_root, tmp_path, monkeypatch, capsys):
    """The README's `model.checkpoint=~/ckpt/...` works: Hydra gets it quoted and the path is expanded."""
    from flamingo_eval.models.assets import cache_root

    monkeypatch.setenv("FLAMINGO_EVAL_CACHE", str(cache_root()))  # the packaged tokenizer stays where it is
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(vqa(vqav2_root, "--shots", "0", "--output", str(tmp_path / "r"),
                    "model.checkpoint=~/ckpt/OF-3B/checkpoint.pt")) == 2
    err = one_line(capsys)
    assert "LexerNoViableAlt" not in err and str(tmp_path / "ckpt" / "OF-3B" / "checkpoint.pt") in err
    assert main(vqa(vqav2_root, "--shots", "0", "run.output=~/runs/x")) == 0
    assert (tmp_path / "runs" / "x" / "record.json").is_file()


def test_progress_per_batch_and_phase_lines(vqav2_root, tmp_path, capsys):
    assert main(vqa(vqav2_root, "--shots", "0", "--batch-size", "2", "--output", str(tmp_path / "run"))) == 0
    lines = capsys.readouterr().out.splitlines()
    phases = [i for i, ln in enumerate(lines) if ln.startswith("[")]
    text = [ln.split("] ", 1)[1] for ln in lines if ln.startswith("[")]
    assert text[0].startswith("reading vqav2") and text[1].startswith("loading model tiny (cpu, ")
    assert text[2].startswith("selecting demos") and text[3] == "vqav2 · tiny: 6 samples"
    assert lines[phases[-1] + 1].split()[0] == "2/6"  # the first batch (2 samples) is reported at once
    rec = json.loads((tmp_path / "run" / "record.json").read_text())
    assert rec["execution"]["threads"] >= 1


def test_overrides_after_a_list_flag_are_overrides():
    """`--shots 0 4 model.batch_size=2`: argparse sweeps the override into --shots; it is given back."""
    cfg = config_of("run", "easyvqa", "--shots", "0", "4", "model.batch_size=2", "--seeds", "3", "5",
                    "run.limit=7")
    assert cfg.run.shots == [0, 4] and cfg.model.batch_size == 2 and cfg.run.seeds == [3, 5] and cfg.run.limit == 7
