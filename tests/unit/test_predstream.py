"""predictions.jsonl appended per trial with a crash-safe index (results/predstream.py)."""

from __future__ import annotations

import json
from pathlib import Path

from flamingo_eval.results.predstream import append_trial, read_index

ORDER = [(0, 0), (0, 1), (4, 0), (4, 1)]


def text(key: tuple[int, int], n: int = 3) -> str:
    return "".join(json.dumps({"s": key[0], "t": key[1], "i": i, "é": "ü"}, ensure_ascii=False) + "\n"
                   for i in range(n))


def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    part = tmp_path / "partial"
    part.mkdir()
    for k in ORDER:  # the per-trial scored files the store writes before appending
        (part / f"s{k[0]}-t{k[1]}.scored.jsonl").write_text(text(k), encoding="utf-8")
    return tmp_path / "predictions.jsonl", part / "predictions.index.json", part


def scored(part: Path):  # noqa: ANN201
    return lambda k: part / f"s{k[0]}-t{k[1]}.scored.jsonl"


def expected(upto: int) -> bytes:
    return "".join(text(k) for k in ORDER[: upto + 1]).encode()


def test_appends_in_order_and_indexes_each_trial(tmp_path):
    out, index, part = setup(tmp_path)
    for i, k in enumerate(ORDER):
        append_trial(out, index, k, text(k), ORDER, scored(part))
        assert out.read_bytes() == expected(i)
    ends = [e for _, _, e in read_index(index)]
    assert [r[:2] for r in read_index(index)] == ORDER and ends[-1] == len(expected(3)) and ends == sorted(ends)


def test_reads_only_the_new_trial(tmp_path, monkeypatch):
    """O(new lines): with a valid index no earlier scored file is read again."""
    out, index, part = setup(tmp_path)
    append_trial(out, index, ORDER[0], text(ORDER[0]), ORDER, scored(part))
    reads: list[Path] = []
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda p: reads.append(p) or real(p))
    append_trial(out, index, ORDER[1], text(ORDER[1]), ORDER, scored(part))
    assert reads == [] and out.read_bytes() == expected(1)


def test_bytes_past_the_index_are_cut(tmp_path):
    """A kill between the append and the index update: the trial is scored again and appended once."""
    out, index, part = setup(tmp_path)
    append_trial(out, index, ORDER[0], text(ORDER[0]), ORDER, scored(part))
    good = index.read_bytes()
    append_trial(out, index, ORDER[1], text(ORDER[1]), ORDER, scored(part))
    index.write_bytes(good)  # the index update of trial (0, 1) never happened
    with open(out, "ab") as f:
        f.write(b'{"torn": ')  # and a torn extra write on top
    append_trial(out, index, ORDER[1], text(ORDER[1]), ORDER, scored(part))
    assert out.read_bytes() == expected(1)


def test_untrusted_index_rebuilds_from_scored_files(tmp_path):
    """No index (an older run directory), a garbled one, or one longer than the file: rebuilt once."""
    out, index, part = setup(tmp_path)
    out.write_bytes(b"whatever an older writer left")
    append_trial(out, index, ORDER[2], text(ORDER[2]), ORDER, scored(part))
    assert out.read_bytes() == expected(2)
    for bad in ('{"version": 1, "trials": [[0, 0, 99999]]}', "{", '{"version": 1, "trials": [[4, 1, 3]]}'):
        index.write_text(bad)
        append_trial(out, index, ORDER[2], text(ORDER[2]), ORDER, scored(part))
        assert out.read_bytes() == expected(2)
        assert [r[:2] for r in read_index(index)] == ORDER[:3]
