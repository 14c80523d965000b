"""The streaming JSON list reader (``benchmarks.base.iter_json_list``) equals ``read_json`` exactly."""

from __future__ import annotations

import json

import pytest

from flamingo_eval.benchmarks import base
from flamingo_eval.benchmarks.base import iter_json_list, need_list, read_json
from flamingo_eval.errors import UserError

ENTRIES = [{"question_id": 10 ** i, "answers": [{"answer": f"a{i}", "answer_id": 1.5e3}], "x": None}
           for i in range(40)] + [123456789, -0.25, "s\u00e9\\\"]", [], {}, True, None]


@pytest.fixture(params=[7, 64, 1 << 20], ids=["chunk7", "chunk64", "chunk1M"])
def chunk(request, monkeypatch):
    monkeypatch.setattr(base, "_CHUNK", request.param)  # values cut at every possible window edge


@pytest.mark.parametrize("indent", [None, 1])
def test_same_entries_as_read_json(tmp_path, chunk, indent):
    p = tmp_path / "a.json"
    p.write_text("\ufeff" + json.dumps({"info": {"big": list(range(300))}, "annotations": ENTRIES, "n": 12345},
                                       indent=indent), encoding="utf-8")
    assert list(iter_json_list(p, "annotations")) == need_list(read_json(p), "annotations", p, "the file")
    (tmp_path / "e.json").write_text('{"annotations": [] }')
    assert list(iter_json_list(tmp_path / "e.json", "annotations")) == []


@pytest.mark.parametrize("text", [
    '{"annotations": [1, 2', '{"annotations": [1, 2]', '{"annotations": [1, 2]} x', '{"other": [1]}',
    '{"annotations": 5}', '[1, 2]', '', '{"annotations": [1 2]}', '{"a": 1, "annotations": [1]'])
def test_bad_files_fail_as_read_json_does(tmp_path, chunk, text):
    p = tmp_path / "bad.json"
    p.write_text(text)
    with pytest.raises(UserError) as want:
        need_list(read_json(p), "annotations", p, "the file")
    with pytest.raises(UserError) as got:
        list(iter_json_list(p, "annotations"))
    assert str(got.value) == str(want.value)


def test_missing_file_and_repeated_key(tmp_path):
    with pytest.raises(UserError, match="missing file"):
        list(iter_json_list(tmp_path / "none.json", "annotations"))
    p = tmp_path / "twice.json"
    p.write_text('{"annotations": [1], "annotations": [2]}')
    with pytest.raises(UserError, match="occurs twice"):
        list(iter_json_list(p, "annotations"))
