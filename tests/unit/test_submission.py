"""Submission files for evaluation servers: schema, types, duplicates and question count."""

from __future__ import annotations

import json

import pytest

from flamingo_eval.benchmarks.submission import submission_entries, validate_submission, write_submission
from flamingo_eval.errors import UserError
from flamingo_eval.types import Sample


def test_vqa_submission_round_trip(tmp_path):
    samples = [Sample(id=str(q), media=(), fields={"question_id": q}) for q in (11, 12, 13)]
    entries = submission_entries("question_id", samples, ["yes", "2", "red"])
    assert entries == [{"question_id": 11, "answer": "yes"}, {"question_id": 12, "answer": "2"},
                       {"question_id": 13, "answer": "red"}]
    path = write_submission(tmp_path / "submission.json", entries)
    assert json.loads(path.read_text()) == entries
    validate_submission(path, "question_id", [13, 12, 11])


def test_vizwiz_submission_schema():
    validate_submission([{"image": "VizWiz_test_00000000.jpg", "answer": "unanswerable"}], "image",
                        ["VizWiz_test_00000000.jpg"])


@pytest.mark.parametrize("entries, message", [
    ({"question_id": 1, "answer": "a"}, "JSON list"),
    ([{"question_id": 1}], "exactly the keys"),
    ([{"question_id": 1, "answer": "a", "extra": 0}], "exactly the keys"),
    ([{"question_id": "1", "answer": "a"}], "must be int"),
    ([{"question_id": 1, "answer": 3}], "answer str"),
    ([{"question_id": 1, "answer": "a"}, {"question_id": 1, "answer": "b"}], "duplicate"),
    ([{"question_id": 1, "answer": "a"}], "2 questions: 1 question"),
    ([{"question_id": 1, "answer": "a"}, {"question_id": 2, "answer": "b"}, {"question_id": 9, "answer": "c"}],
     "not in the split"),
])
def test_bad_submissions_are_named(entries, message):
    with pytest.raises(UserError, match=message):
        validate_submission(entries, "question_id", [1, 2])


def test_missing_key_field_is_a_user_error():
    with pytest.raises(UserError, match="no 'image' field"):
        submission_entries("image", [Sample(id="x", media=())], ["a"])
