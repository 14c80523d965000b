"""Part files: the shared line encoder writes json.dumps's bytes; the resume-time line count agrees with the
lines a resume trusts (torn tail, NUL block)."""

from __future__ import annotations

import json

from flamingo_eval.results.store import PartSink, _complete_lines, _count_lines


def test_part_sink_writes_exactly_json_dumps_lines(tmp_path):
    path = tmp_path / "s0-t0.r0.jsonl"
    lines = [{"sample_id": "1", "answer": "café ü \u2028 \"q\" \\", "score": None, "extra": {"k": [1.5, None]}},
             {"sample_id": "2", "answer": "日本", "score": 0.3}]
    skipped = [{"sample_id": "3", "error": "too long: ✗", "dropped_demos": 0}]
    PartSink(path, {"shots": 4, "trial": 1, "seed": 7})(lines, skipped)
    want = "".join(json.dumps({"p": {"shots": 4, "trial": 1, "seed": 7, **ln}}, ensure_ascii=False) + "\n"
                   for ln in lines) + json.dumps({"skip": skipped[0]}, ensure_ascii=False) + "\n"
    assert path.read_bytes() == want.encode("utf-8")


def test_count_lines_ignores_a_torn_tail_and_a_nul_block_like_the_resume_does(tmp_path):
    path = tmp_path / "s0-t0.r0.jsonl"
    good = [json.dumps({"p": {"sample_id": str(i)}}) for i in range(5)]
    path.write_bytes(("\n".join(good[:3]) + "\n").encode() + b"\0" * 40 + b"\n" + (good[3] + "\n").encode()
                     + good[4][:9].encode())
    assert _count_lines(path) == len(_complete_lines(path)) == 4
    assert _count_lines(tmp_path / "missing.jsonl") == 0
