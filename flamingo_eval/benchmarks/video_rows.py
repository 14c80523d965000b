"""Rows of the video benchmarks' tables (JSON list, jsonl, csv, parquet) and the checks on their cells.

Cells are read as the file writes them: a csv cell is text (``"2"`` stays an answer ``"2"``, never
``"2.0"``); only a plain integer (``0``, ``17``, no leading zero) becomes an ``int`` so a card's
``{time_start:06d}`` can format it. A csv row with more or fewer cells than the header (a file cut mid-row)
and an unterminated quote are one line naming the file and the row. Blank cells (an empty csv cell, a
parquet null or NaN) are told apart by :func:`blank`; the adapters refuse a blank cell where a value is
needed (question, segment bounds) with one line naming file, row and column.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any

from flamingo_eval.benchmarks.base import read_json
from flamingo_eval.errors import UserError

__all__ = ["blank", "cell_text", "read_map", "read_rows", "row_name", "seconds"]

_INT = re.compile(r"-?(0|[1-9][0-9]{0,17})")


def blank(value: Any) -> bool:
    """None, NaN (a parquet null read by pandas), or an empty / whitespace-only string."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and not value.strip())


def cell_text(value: Any) -> str:
    """A cell as reference text: an integral float (a parquet int column with nulls) loses its ``.0``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def row_name(path: Path, i: int) -> str:
    """How messages name row ``i`` (0-based) of ``path``: ``entry i`` of a JSON list, else ``row i+1``."""
    return f"entry {i}" if path.suffix.lower() == ".json" else f"row {i + 1}"


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON list, a jsonl, a csv or a parquet file (by extension), as dicts (module docstring)."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        rows = read_json(path)
        if not isinstance(rows, list):
            raise UserError(f"{path}: expected a JSON list of rows; is this the official file?")
        return rows
    if not path.is_file():
        raise UserError(f"missing file {path}; run `flamingo-eval data check` to see the expected layout")
    try:
        if suffix == ".jsonl":
            with open(path, encoding="utf-8-sig") as f:
                return [json.loads(line) for line in f if line.strip()]
        if suffix == ".csv":
            return _read_csv(path)
        if suffix != ".parquet":
            raise UserError(f"{path}: unknown table format '{suffix}' (json, jsonl, csv or parquet)")
        import pandas as pd

        frame = pd.read_parquet(path)
    except ImportError as e:
        raise UserError(f"reading {path} needs {e.name}; pip install pyarrow") from None
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: unreadable ({str(e)[:160]}); re-download the official file") from None
    return [{k: _plain(v) for k, v in r.items()} for r in frame.to_dict(orient="records")]


def _read_csv(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, strict=True)
        try:
            header = next(reader, None)
            if not header:
                raise UserError(f"{path}: empty csv (no header row); re-download the official file")
            rows = []
            for n, cells in enumerate(reader, 1):
                if not cells:
                    continue
                if len(cells) != len(header):
                    raise UserError(f"{path}: row {n} (line {reader.line_num}) has {len(cells)} cells, the header "
                                    f"{len(header)}; the file is cut or malformed: re-download it")
                rows.append({k: int(v) if _INT.fullmatch(v) else v for k, v in zip(header, cells)})
        except csv.Error as e:
            raise UserError(f"{path}: line {reader.line_num}: not valid csv ({e}); the file is cut or malformed: "
                            "re-download it") from None
    return rows


def _plain(value: Any) -> Any:
    """numpy scalars/arrays (pandas cells) -> Python values, so rows are JSON-like whatever the format."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def read_map(path: Path) -> dict[str, str]:
    """A video-id mapping: JSON ``{key: name}`` or text lines ``name key`` (whitespace separated)."""
    if path.suffix == ".json":
        data = read_json(path)
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a JSON object {{video key: file name}}")
        return {str(k): str(v) for k, v in data.items()}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the video mapping {path} ({e}); re-download it") from None
    out = {}
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise UserError(f"{path}:{n}: expected 'file_name video_key', got {line.strip()!r}")
        out[parts[1]] = parts[0]
    return out


def seconds(value: Any, source: Path, what: str, field: str) -> float:
    """A segment bound in seconds: a finite, non-negative number; anything else (blank, NaN, text) is one
    line naming the file, the row and the column."""
    if blank(value):
        raise UserError(f"{source}: {what} column '{field}' is empty; the clip's segment needs a number of "
                        "seconds (fix or drop the row)")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{source}: {what} column '{field}' is {value!r}, not a number of seconds") from None
    if not math.isfinite(out) or out < 0:
        raise UserError(f"{source}: {what} column '{field}' is {value!r}, not a non-negative number of seconds")
    return out
