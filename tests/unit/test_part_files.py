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


TRICKY = [  # values a splice could get wrong: the text of "score" inside strings, keys and nested objects
    {"raw_output": 'x, "score": null, "references": ["a"]', "answer": "café ü \u2028 \"q\" \\ 日本"},
    {"raw_output": "", "answer": "\\\", \"score\": null", "extra": {"score": None, "w": [1e-7, -0.0, 1e300]}},
    {"raw_output": "a\nb\t\u0000", "answer": "ok", "extra": {}},
    {"raw_output": {"score": None, "k": 1}, "answer": "nested object before the score: encoded whole"},
    {"raw_output": [["score"]], "answer": "a list of lists before the score: no object, spliced"},
    {"raw_output": "{", "answer": "a brace in a string before the score: encoded whole (conservative)"},
]


def _line(i: int, tricky: dict) -> dict:
    line = {"sample_id": f"q{i}", "demo_ids": ["d, \"score\": null", "e"], "prompt_hash": "h", "raw_output": "",
            "answer": "", "score": None, "references": ["r1", "ü"], "label": None, "scores": [0.1, 0.2 + 0.1],
            "extra": {"score": None}, "dropped_demos": 0}
    line.update(tricky)
    return line


def test_scored_line_spliced_from_the_part_file_is_json_dumps_of_the_merged_dict(tmp_path, monkeypatch):
    from flamingo_eval.results import store
    from flamingo_eval.results.store import _complete_entries, scored_line

    path = tmp_path / "s0-t0.r0.jsonl"
    lines = [_line(i, t) for i, t in enumerate(TRICKY)]
    PartSink(path, {"shots": 0, "trial": 0, "seed": 0})(lines)
    entries = _complete_entries(path)
    assert len(entries) == len(lines)
    for score in (0.3333333333333333, 1.0, 1, 0, None, float("nan"), 1e-300, True, -0.0):
        for entry, text in entries:
            ln = entry["p"]
            want = json.dumps({**ln, "score": score}, ensure_ascii=False)
            assert scored_line(ln, text, score) == want
            assert scored_line(ln, None, score) == want  # no part-file text: encoded whole
    # the splice is taken where it is safe (not only the fallback): the part text's body is reused
    encoded: list = []  # the splice is taken where it is safe: lines 0-2 and 4 are not encoded again
    monkeypatch.setattr(store, "_LINE", lambda obj: encoded.append(obj) or json.dumps(obj, ensure_ascii=False))
    got = [scored_line(entry["p"], text, 0.5) for entry, text in entries]
    assert got == [json.dumps({**e["p"], "score": 0.5}, ensure_ascii=False) for e, _ in entries]
    assert [o["sample_id"] for o in encoded if isinstance(o, dict)] == ["q3", "q5"]
