"""The run record dataclass and docs/results.md describe the same fields; the serialisation keeps file order."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from flamingo_eval.results.run_record import RunRecord, ShotsResult, new_run_record

DOC = Path(__file__).resolve().parents[2] / "docs" / "results.md"
BASELINE = Path(__file__).resolve().parents[2] / "results" / "baselines" / "mini-easyvqa" / "record.json"


def documented_paths() -> list[str]:
    """Field paths of the record.json table: '`results[].mean` / `.std`' gives results[].mean, results[].std."""
    text = DOC.read_text()
    section = text[text.index("## `record.json`"):]
    section = section[: section.index("\n## ", 5)]
    paths = []
    for row in section.splitlines():
        if not row.startswith("| `"):
            continue
        tokens = re.findall(r"`([^`]+)`", row.split("|")[1])
        first = tokens[0]
        paths.append(first)
        parent = first.rsplit(".", 1)[0] if "." in first else ""
        paths += [parent + t for t in tokens[1:] if t.startswith(".")]
    return paths


def names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_docs_table_matches_the_dataclasses():
    paths = documented_paths()
    assert {re.split(r"[.\[]", p)[0] for p in paths} == names(RunRecord)
    result_fields = {re.split(r"[.\[]", p[len("results[]."):])[0] for p in paths if p.startswith("results[].")}
    assert result_fields == names(ShotsResult)


def test_to_json_keeps_the_committed_records_layout():
    """A record rebuilt from the committed baseline serialises to the same bytes (field order, nesting)."""
    text = BASELINE.read_text()
    data = json.loads(text)
    results = [ShotsResult(**r) for r in data.pop("results")]
    rec = RunRecord(**data, results=results)
    assert json.dumps(rec.to_json(), indent=2, ensure_ascii=False) + "\n" == text
    assert new_run_record(run_id="r", created="t", benchmark={}, model={}, config={}, provenance={}).schema_version == 1
