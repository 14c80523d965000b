"""tools/easyvqa_controls.py: its attribute read-out answers every easy-VQA question right, its shuffled row uses
the pairing tools/shuffled_images.py runs, and a bad run directory is one line."""

from __future__ import annotations

import json

from tests.fixtures_builders import load_tool as _tool


def _split(name: str):  # noqa: ANN202
    from flamingo_eval.config_load import compose_config
    from flamingo_eval.task import make_adapter

    card = compose_config("easyvqa", "tiny").benchmarks
    return card, make_adapter(card, None), name


def test_perfect_reader_answers_every_question_of_both_splits():
    tool = _tool("easyvqa_controls")
    card, adapter, _ = _split("test")
    for split in (card.eval_split, card.demo_split):
        rows = [(s.fields["question"], s.references[0], s.media[0]) for s in adapter.load(split)]
        attr = tool.attributes(rows)
        wrong = [(q, a) for q, a, img in rows if tool.read_out(q, attr[img]) != a]
        assert not wrong and len(rows) > 9000, wrong[:5]


def test_table_rows_and_the_shuffled_pairing(tmp_path, capsys):
    tool, shuffled = _tool("easyvqa_controls"), _tool("shuffled_images")
    card, adapter, _ = _split("test")
    test = adapter.load(card.eval_split)
    run = tmp_path / "run"
    run.mkdir()
    lines = [{"sample_id": s.id, "shots": shots, "score": 100.0 * (i % 2), "references": list(s.references)}
             for shots in (0, 4) for i, s in enumerate(test[:40])]
    (run / "predictions.jsonl").write_text("".join(json.dumps(ln) + "\n" for ln in lines))
    assert tool.main([str(run), "--shots", "4"]) == 0
    table = {ln.split(" | ")[0].strip("| "): ln.split(" | ")[1] for ln in capsys.readouterr().out.splitlines()[2:]}
    assert table[f"{run} (4-shot)"] == "50.0 (n=40)"
    assert table["perfect reader, right images"] == "100.0 (n=40)"
    # the shuffled row, recomputed from the samples shuffled_images.py would run
    attr = tool.attributes([(s.fields["question"], s.references[0], s.media[0]) for s in test])
    shown = shuffled.shuffling(lambda c, r: adapter)(card, None).load(card.eval_split)[:40]
    right = sum(tool.read_out(s.fields["question"], attr[s.media[0]]) == s.references[0] for s in shown)
    assert shown[0].media != test[0].media
    assert table["perfect reader, shuffled images"] == f"{100 * right / 40:.1f} (n=40)"


def test_bad_run_directory_is_one_line(tmp_path, capsys):
    tool = _tool("easyvqa_controls")
    assert tool.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "predictions.jsonl: not found" in err
    (tmp_path / "predictions.jsonl").write_text('{"sample_id": "test-0"}\n')
    assert tool.main([str(tmp_path)]) == 2
    assert "predictions.jsonl:1: not a prediction line" in capsys.readouterr().err
