"""Evaluation-server submission files for splits without public annotations.

A card with ``submission_key`` names the sample field that identifies an answer on the server:
``question_id`` (VQAv2 on EvalAI: ``[{"question_id": int, "answer": str}]``, every question of the
split's questions file -- all 447,793 of test2015 for the test-dev and test-std phases), ``image``
(VizWiz: ``[{"image": str, "answer": str}]``) or ``sample_id`` (video QA test splits such as STAR's:
``[{"sample_id": str, "answer": str}]``, the answer being the top-ranked option's text). The runner writes the
file when the eval split has no references; :func:`validate_submission` checks the schema and that every
question of the split is answered exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from flamingo_eval.errors import UserError
from flamingo_eval.types import Sample

KEY_TYPES: dict[str, type] = {"question_id": int, "image": str, "sample_id": str}


def submission_key(card: Any) -> str:
    """The card's submission key, checked against the known formats."""
    key = str(card.submission_key)
    if key not in KEY_TYPES:
        raise UserError(f"benchmark {card.id}: submission_key must be one of {', '.join(KEY_TYPES)}, got '{key}'")
    return key


def submission_entries(key: str, samples: Iterable[Sample], answers: Iterable[str]) -> list[dict[str, Any]]:
    """``[{key: sample.fields[key], "answer": answer}]`` in sample order."""
    out = []
    for s, a in zip(samples, answers):
        if key not in s.fields:
            raise UserError(f"sample {s.id} has no '{key}' field; its adapter cannot write this submission")
        out.append({key: s.fields[key], "answer": a})
    return out


def validate_submission(entries: Any, key: str, expected: Sequence[Any]) -> None:
    """Check a submission: a list of ``{key, answer}`` objects answering each expected id exactly once.

    Args:
        entries: The parsed submission (a list), or a path to the JSON file.
        key: ``question_id`` or ``image``.
        expected: The ids of every question in the split (from its questions file).

    Raises:
        UserError: naming the first problem (schema, type, duplicate, missing or unknown id, count).
    """
    if isinstance(entries, (str, Path)):
        from flamingo_eval.benchmarks.base import read_json

        entries = read_json(Path(entries))
    if not isinstance(entries, list):
        raise UserError("submission: expected a JSON list of objects")
    want_type = KEY_TYPES[key]
    seen: set[Any] = set()
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or set(e) != {key, "answer"}:
            raise UserError(f"submission entry {i}: expected exactly the keys {{{key}, answer}}, got {e!r:.80}")
        if type(e[key]) is not want_type or not isinstance(e["answer"], str):
            raise UserError(f"submission entry {i}: {key} must be {want_type.__name__} and answer str")
        if e[key] in seen:
            raise UserError(f"submission entry {i}: duplicate {key} {e[key]!r}")
        seen.add(e[key])
    want = set(expected)
    if seen != want:
        missing, unknown = want - seen, seen - want
        detail = (f"{len(missing)} question(s) of the split unanswered, e.g. {next(iter(missing))!r}" if missing
                  else f"{len(unknown)} id(s) not in the split, e.g. {next(iter(unknown))!r}")
        raise UserError(f"submission has {len(entries)} answers for a split of {len(want)} questions: {detail}")


def write_submission(path: Path, entries: list[dict[str, Any]]) -> Path:
    """Write the submission atomically (compact JSON, as the servers expect)."""
    from flamingo_eval.results.records import write_text_atomic

    write_text_atomic(path, json.dumps(entries, ensure_ascii=False))
    return path
