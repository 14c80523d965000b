"""Every image benchmark end to end through the CLI with the tiny model, on official-format fixtures.

Each run is 0 and 4 shots, writes record.json + predictions.jsonl, and `flamingo-eval score` must
reproduce its values from the predictions alone. Plus: submission files for unannotated test splits,
OK-VQA's start-up failure without nltk data, prompt ensembling and the class-balanced sampler.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flamingo_eval.cli import main
from tests.fixtures_builders import BUILDERS, make_vizwiz, make_vqav2_test
from tests.margins import assert_generation_margin, assert_rank_margin

BENCHMARKS = ["coco", "flickr30k", "nocaps", "vqav2", "okvqa", "textvqa", "vizwiz", "hateful_memes", "imagenet",
              "visdial"]
# Keep the suite quick: ImageNet ranks all 1000 names, so one demo order (ensembling: see the last test).
OVERRIDES = {"imagenet": ["benchmarks.ensemble_orders=1"]}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    for build in BUILDERS.values():
        build(root)
    return root


@pytest.fixture
def fake_tagger(monkeypatch):
    """OK-VQA stemming without nltk data or WordNet (a fresh machine has neither): whitespace tokens,
    plural-looking words tagged NNS, and a two-verb WordNet for the real lemmatizer."""
    import flamingo_eval.metrics.okvqa_stem as stem

    def tagger():
        return str.split, lambda toks: [(t, "NNS" if t.endswith("s") else "NN") for t in toks]

    wordnet = {"index.verb": ["race v 2 1 @ 2 0 01909397", "ride v 3 1 @ 3 0 01955984"], "verb.exc": ["rode ride"]}
    monkeypatch.setattr(stem, "_default_tagger", tagger)
    monkeypatch.setattr(stem, "_read_wordnet_file", wordnet.__getitem__)


def _lines(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "predictions.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("bench", BENCHMARKS)
def test_benchmark_end_to_end_and_rescore(bench, data_root, tmp_path, capsys, fake_tagger):
    out = tmp_path / bench
    assert main(["run", bench, "--model", "tiny", "--shots", "0", "4", "--data-root", str(data_root),
                 "--output", str(out), *OVERRIDES.get(bench, [])]) == 0
    rec = json.loads((out / "record.json").read_text())
    assert rec["benchmark"]["id"] == bench and [r["shots"] for r in rec["results"]] == [0, 4]
    n = rec["results"][0]["n"]
    lines = _lines(out)
    assert n > 0 and len(lines) == 2 * n
    assert all(len(ln["demo_ids"]) == 4 for ln in lines if ln["shots"] == 4)
    for r in rec["results"]:
        assert 0.0 <= r["trials"][0]["value"] <= 100.0
    capsys.readouterr()
    assert main(["score", bench, "--predictions", str(out / "predictions.jsonl")]) == 0
    scored = json.loads(capsys.readouterr().out)
    for mine, theirs in zip(scored["results"], rec["results"]):
        assert mine["shots"] == theirs["shots"]
        assert mine["trials"][0]["value"] == pytest.approx(theirs["trials"][0]["value"], abs=1e-9)
        assert mine["trials"][0]["extras"] == pytest.approx(theirs["trials"][0]["extras"], abs=1e-9)


def test_list_shows_every_benchmark(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for bench in [*BENCHMARKS, "easyvqa"]:
        assert bench in out


@pytest.mark.parametrize("bench", BENCHMARKS)
def test_data_check_names_the_missing_files(bench, tmp_path, capsys):
    assert main(["data", "check", bench, "--data-root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "MISSING" in out and str(tmp_path) in out


def test_data_check_passes_on_fixtures(data_root, capsys):
    for bench in BENCHMARKS:
        assert main(["data", "check", bench, "--data-root", str(data_root)]) == 0, capsys.readouterr().out


def test_visdial_samples_carry_options_history_and_relevance(data_root):
    from flamingo_eval.commands.list_cmd import load_card
    from flamingo_eval.runner import make_adapter

    card = load_card("visdial")
    val = make_adapter(card, str(data_root)).load("val")
    by_id = {s.id: s for s in val}
    s2 = by_id["100-2"]
    assert len(s2.fields["candidates"]) == 100 and s2.fields["candidates"][s2.label] == s2.references[0]
    assert s2.fields["history"].startswith("Question: ") and len(s2.fields["gt_relevance"]) == 100
    assert by_id["100-1"].fields["history"] == "" and "gt_relevance" not in by_id["100-1"].fields
    train = make_adapter(card, str(data_root)).load("train")
    assert "candidates" not in train[0].fields and all(Path(s.media[0]).exists() for s in train)


def test_vqav2_testdev_writes_a_valid_submission(tmp_path, capsys):
    from flamingo_eval.benchmarks.submission import validate_submission

    root, qids = make_vqav2_test(tmp_path / "data")
    for split, expected in (("testdev", qids[: len(qids) // 2]), ("test", qids)):
        out = tmp_path / split
        assert main(["run", "vqav2", "--model", "tiny", "--shots", "4", "--data-root", str(root), "--output",
                     str(out), f"benchmarks.eval_split={split}"]) == 0
        sub = json.loads((out / "submission.json").read_text())
        validate_submission(sub, "question_id", expected)
        assert all(isinstance(e["question_id"], int) and isinstance(e["answer"], str) for e in sub)
        trial = json.loads((out / "record.json").read_text())["results"][0]["trials"][0]
        assert trial["extras"]["submission_complete"] == 1.0 and trial["extras"]["submission_answers"] == len(expected)
        assert trial["value"] is None
    # Unscored records sit beside scored ones in a results tree: the leaderboard shows the scored cell and
    # notes the unscored ones; compare skips them, and refuses when nothing scored is left.
    assert main(["run", "vqav2", "--model", "tiny", "--shots", "4", "--data-root", str(root), "--output",
                 str(tmp_path / "val")]) == 0
    capsys.readouterr()
    assert main(["leaderboard", "--results", str(tmp_path), "--output", "-"]) == 0
    out = capsys.readouterr().out
    assert "vqav2" in out and out.count("unscored trial(s)") == 2
    assert main(["compare", str(tmp_path / "testdev"), str(tmp_path / "testdev")]) == 2
    assert "nothing to compare" in capsys.readouterr().err


def test_vizwiz_test_submission_and_partial_flag(tmp_path):
    from flamingo_eval.benchmarks.submission import validate_submission
    from flamingo_eval.errors import UserError

    root = make_vizwiz(tmp_path / "data")
    out = tmp_path / "run"
    assert main(["run", "vizwiz", "--model", "tiny", "--shots", "0", "--data-root", str(root), "--output", str(out),
                 "benchmarks.eval_split=test"]) == 0
    images = [r["image"] for r in json.loads((root / "vizwiz" / "test.json").read_text())]
    validate_submission(out / "submission.json", "image", images)
    with pytest.raises(UserError, match="4 questions"):
        validate_submission(json.loads((out / "submission.json").read_text())[:3], "image", images)
    out2 = tmp_path / "limited"
    assert main(["run", "vizwiz", "--model", "tiny", "--shots", "0", "2", "--limit", "2", "--data-root", str(root),
                 "--output", str(out2), "benchmarks.eval_split=test"]) == 0
    rec = json.loads((out2 / "record.json").read_text())
    assert rec["results"][0]["trials"][0]["extras"]["submission_complete"] == 0.0
    assert sorted(p.name for p in out2.glob("submission*.json")) == ["submission-0shot-trial0.json",
                                                                    "submission-2shot-trial0.json"]


def test_okvqa_without_nltk_data_fails_before_the_model_loads(data_root, tmp_path, monkeypatch, capsys):
    import nltk

    import flamingo_eval.models.build as build

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])

    def no_model(*a, **k):
        raise AssertionError("the model must not be built")

    monkeypatch.setattr(build, "build_model", no_model)
    assert main(["run", "okvqa", "--model", "tiny", "--data-root", str(data_root), "--output",
                 str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "nltk.downloader" in err and "\n" not in err
    assert not (tmp_path / "r" / "predictions.jsonl").exists()


def test_prompt_ensembling_and_class_balanced_demos(data_root, tmp_path):
    out = tmp_path / "hm"
    assert main(["run", "hateful_memes", "--model", "tiny", "--shots", "4", "--data-root", str(data_root),
                 "--output", str(out), "--sampler", "class_balanced", "benchmarks.ensemble_orders=3"]) == 0
    labels = {json.loads(ln)["id"]: json.loads(ln)["label"]
              for ln in (data_root / "hateful_memes" / "train.jsonl").read_text().splitlines()}
    for ln in _lines(out):
        assert sorted(labels[int(d)] for d in ln["demo_ids"]) == [0, 0, 1, 1]
    single = tmp_path / "hm1"
    assert main(["run", "hateful_memes", "--model", "tiny", "--shots", "4", "--data-root", str(data_root),
                 "--output", str(single), "--sampler", "class_balanced", "benchmarks.ensemble_orders=1"]) == 0
    a, b = _lines(out), _lines(single)
    assert [x["demo_ids"] for x in a] == [x["demo_ids"] for x in b]  # same demos, first order
    assert [x["scores"] for x in a] != [x["scores"] for x in b]  # but averaged over 3 orders


def test_rices_run_caches_features_and_second_run_reuses_them(data_root, tmp_path, monkeypatch):
    from flamingo_eval.prompts.rices import ClipImageFeatures

    cache = tmp_path / "rices"
    args = ["run", "vqav2", "--model", "tiny", "--shots", "0", "2", "--trials", "2", "--data-root", str(data_root),
            "--sampler", "rices", "run.rices_model=ViT-S-32", "run.rices_pretrained=null", "run.rices_image_size=64",
            f"run.rices_cache_dir={cache}"]
    assert main([*args, "--output", str(tmp_path / "a")]) == 0
    cached = sorted(p.name for p in cache.glob("*.npy"))
    assert len(cached) == 2  # demo split + eval queries, shared by both shot counts and both trials

    def no_encoding(self, samples):
        raise AssertionError("the second run must read the cached features")

    monkeypatch.setattr(ClipImageFeatures, "__call__", no_encoding)
    assert main([*args, "--output", str(tmp_path / "b")]) == 0
    a, b = _lines(tmp_path / "a"), _lines(tmp_path / "b")
    assert [x["demo_ids"] for x in a] == [x["demo_ids"] for x in b]
    two = [x for x in a if x["shots"] == 2]
    assert all(x["demo_ids"] == y["demo_ids"] for x, y in zip(two[: len(two) // 2], two[len(two) // 2 :]))


ENGINE_CASES = [(b, []) for b in BENCHMARKS] + [("vqav2", ["benchmarks.generation.num_beams=1"])]


@pytest.mark.parametrize("bench,extra", ENGINE_CASES, ids=[b + ("-greedy" if x else "") for b, x in ENGINE_CASES])
def test_engine_and_reference_path_predict_the_same(bench, extra, data_root, tmp_path, fake_tagger):
    """The fast engine and the plain reference path (OpenFlamingo's loop) on every benchmark fixture:
    same generations (beam 3, or greedy), same rank winners and scores within 1e-4, 0 and 4 shots."""
    limit = "1" if bench == "imagenet" else "3"  # the reference scores 1000 classes token by token

    def run(engine: str, out: Path) -> list[dict]:
        assert main(["run", bench, "--model", "tiny", "--shots", "0", "4", "--limit", limit, "--data-root",
                     str(data_root), "--output", str(out), "--overwrite", f"model.engine={engine}",
                     *OVERRIDES.get(bench, []), *extra]) == 0
        return _lines(out)

    fast, ref = run("fast", tmp_path / "fast"), run("reference", tmp_path / "reference")
    assert [(x["shots"], x["sample_id"], x["demo_ids"]) for x in fast] == \
        [(x["shots"], x["sample_id"], x["demo_ids"]) for x in ref]
    # The paths pad and batch differently (floats equal up to noise): answers are compared exactly only
    # because this fixture's decisions are far from ties (tests/margins.py).
    if fast[0]["scores"] is None:
        def texts() -> list[str]:
            return [x["raw_output"] for x in run("fast", tmp_path / "noisy")]

        assert_generation_margin(texts, [x["raw_output"] for x in fast], seeds=(0,))
    else:
        assert_rank_margin([x["scores"] for x in fast], 1e-4, [x["label"] for x in fast])  # answer and score
    for a, b in zip(fast, ref):
        assert a["answer"] == b["answer"] and a["score"] == b["score"]
        if a["scores"] is None:
            assert a["raw_output"] == b["raw_output"]
        else:
            assert a["scores"] == pytest.approx(b["scores"], abs=1e-4)
