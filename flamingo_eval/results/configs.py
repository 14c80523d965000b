"""Which run records may share a leaderboard cell: configs compared apart from seeds and run-only fields.

Two records of one model, benchmark and shots pool their trials only when :func:`config_key` agrees, i.e.
their configs are equal once the fields that cannot change the numbers are removed
(:func:`comparable_config`). Where they differ, :func:`config_labels` names the difference for the row
label (``run.limit=40``) so the reader sees why two rows exist.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

__all__ = ["SEED_FIELDS", "comparable_config", "config_key", "config_labels"]

SEED_FIELDS = ("seeds", "trials", "seed", "shots")
"""``run`` fields left out of :func:`config_key`: trials of other seeds and other shots may be pooled."""


def comparable_config(rec: dict[str, Any]) -> dict[str, Any]:
    """The record's config minus what cannot change a cell's numbers: where things go and how fast
    (the run store's ``RUN_ONLY`` fields), where the data is (``run.data_root``), and the seeds and shots.

    ``run.seed`` stays when it picks the eval subset (``run.subset: random`` with a ``run.limit``). A
    record without a config is represented by its ``config_hash`` (or nothing).
    """
    from flamingo_eval.results.store import RUN_ONLY

    cfg = rec.get("config")
    if not isinstance(cfg, dict) or not cfg:
        return {"config_hash": rec.get("config_hash")}
    data = copy.deepcopy(cfg)
    for section, keys in RUN_ONLY.items():
        if isinstance(data.get(section), dict):
            for k in keys:
                data[section].pop(k, None)
    run = data.get("run")
    if isinstance(run, dict):
        seed_picks_subset = run.get("subset") == "random" and run.get("limit") is not None
        for k in (*SEED_FIELDS, "data_root"):
            if k != "seed" or not seed_picks_subset:
                run.pop(k, None)
    lm = (data.get("model") or {}).get("lm") if isinstance(data.get("model"), dict) else None
    if isinstance(lm, dict) and lm.get("source") == "random" and isinstance(lm.get("config"), dict):
        lm["config"].pop("vocab_size", None)  # derived from the tokenizer at build time
    return data


def config_key(rec: dict[str, Any]) -> str:
    """Hash of :func:`comparable_config`: records whose trials may share a leaderboard cell."""
    blob = json.dumps(comparable_config(rec), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _flatten(obj: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(obj, dict) and obj:
        out: dict[str, str] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: json.dumps(obj, sort_keys=True, default=str)}


_SECTION_ORDER = {"run": 0, "benchmarks": 1, "prompts": 2, "model": 3}


def config_labels(configs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """config key -> what sets it apart from the other configs, e.g. ``run.limit=40`` (at most 2 fields)."""
    flat = {k: _flatten(c) for k, c in configs.items()}
    paths = sorted({p for f in flat.values() for p in f},
                   key=lambda p: (_SECTION_ORDER.get(p.split(".")[0], 9), p))
    differ = [p for p in paths if len({f.get(p, "absent") for f in flat.values()}) > 1]
    labels = {}
    for key, f in flat.items():
        shown = [f"{p}={f.get(p, 'absent')}" for p in differ[:2]]
        labels[key] = ", ".join(shown) + (f", +{len(differ) - 2} more" if len(differ) > 2 else "")
    if len(set(labels.values())) < len(labels):  # differences beyond the first two: make them unique
        labels = {k: f"{v}, config {k[:6]}" for k, v in labels.items()}
    return labels
