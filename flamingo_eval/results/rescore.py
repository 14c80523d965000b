"""Re-score a predictions file without a model: read it strictly, check its sample ids, score it.

``flamingo-eval score`` scores exactly the file it is given. Before scoring, every line must carry the
fields scoring needs (one error line names the file, the line number and the field), and the file must
hold each (shots, seed, sample) once and exactly the samples the run evaluated. Those expected samples
come from, in order of precision:

1. the run's ``record.json`` (next to the file, or ``--record``) **and** the benchmark's data: the eval
   split, cut the way the run cut it (``run.limit`` / ``run.subset`` / seeds from the record's config),
   minus the samples the run skipped -- exact ids;
2. the record alone (data not on this machine): the number of samples per trial -- counts only;
3. the data alone (no record): every sample of the eval split;
4. neither: only duplicates are checked (the result says so).

A file holding predictions of another benchmark is refused (its record names another benchmark, or its
ids are not in this benchmark's split). Duplicates, missing and unknown ids are one error line with the
counts; ``allow_partial`` scores what is there instead (the last line of a duplicated key wins, unknown
ids are left out) and the counts go into the result.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flamingo_eval.errors import UserError
from flamingo_eval.results.records import PREDICTIONS_FILE, RECORD_FILE, load_record, read_jsonl

DEFAULT_BOOTSTRAP = 1000
"""Bootstrap resamples when no record says ``config.run.bootstrap`` (the config's default)."""
Key = tuple[int, int]
"""(shots, seed): one trial of one shots setting."""

# field -> (accepted JSON types, required). bool is excluded from int explicitly below.
_LINE_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "shots": ((int,), True), "trial": ((int,), True), "seed": ((int,), True), "sample_id": ((str,), True),
    "answer": ((str,), True), "references": ((list,), True), "label": ((int, type(None)), False),
    "scores": ((list, type(None)), False), "extra": ((dict, type(None)), False),
}
_TYPE_NAMES = {int: "int", str: "str", list: "list", dict: "object", type(None): "null", float: "float"}


def _kind(value: Any) -> str:
    return "bool" if isinstance(value, bool) else _TYPE_NAMES.get(type(value), type(value).__name__)


def _check_line(obj: dict[str, Any], where: str) -> None:
    for key, (kinds, required) in _LINE_FIELDS.items():
        if key not in obj:
            if required:
                raise UserError(f"{where}: field '{key}' missing; a predictions line needs "
                                f"{', '.join(k for k, (_, r) in _LINE_FIELDS.items() if r)}")
            continue
        value = obj[key]
        if isinstance(value, bool) or not isinstance(value, kinds):
            want = " or ".join(_TYPE_NAMES[k] for k in kinds)
            raise UserError(f"{where}: field '{key}': expected {want}, got {_kind(value)}")
    for key in ("shots", "trial"):
        if obj[key] < 0:
            raise UserError(f"{where}: field '{key}': expected >= 0, got {obj[key]}")
    if not all(isinstance(r, str) for r in obj["references"]):
        raise UserError(f"{where}: field 'references': expected a list of strings")
    scores = obj.get("scores")
    if scores is not None and not all(_finite(x) for x in scores):
        raise UserError(f"{where}: field 'scores': expected a list of finite numbers")
    relevance = (obj.get("extra") or {}).get("gt_relevance")
    if relevance is not None and not (isinstance(relevance, list) and all(_finite(x) for x in relevance)):
        raise UserError(f"{where}: field 'extra.gt_relevance': expected a list of finite numbers")


def _finite(x: Any) -> bool:
    import math

    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def predictions_path(path: str | Path) -> Path:
    """The file to score: ``path`` itself, or ``path/predictions.jsonl`` for a run directory."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / PREDICTIONS_FILE
    if not p.exists():
        raise UserError(f"{p}: no such predictions file")
    if not p.is_file():
        raise UserError(f"{p}: not a regular file; pass a predictions .jsonl file or a run directory")
    return p


def read_scorable(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line, each checked for the fields scoring needs.

    Raises:
        UserError: Unreadable file, a line that is not a JSON object, or a missing/mistyped field --
            one line naming ``path``, the line number and the field.
    """
    lines = read_jsonl(path)
    if not lines:
        raise UserError(f"{path}: no predictions (the file is empty)")
    trial_seed: dict[tuple[int, int], tuple[int, int]] = {}
    for lineno, obj in lines:
        where = f"{path}:{lineno}"
        _check_line(obj, where)
        seen = trial_seed.setdefault((obj["shots"], obj["trial"]), (obj["seed"], lineno))
        if seen[0] != obj["seed"]:
            raise UserError(f"{where}: {obj['shots']}-shot trial {obj['trial']} has seed {obj['seed']} here but "
                            f"seed {seen[0]} on line {seen[1]}; one trial has one seed")
    return lines


@dataclass
class IdCheck:
    """What the file holds compared with what the run evaluated."""

    against: str
    """What the ids were checked against (record and/or data), or why they were not."""
    exact: bool
    """True when expected ids were known (else counts only, or duplicates only)."""
    checked: bool = True
    """False when neither a record nor the data was available: only duplicates could be counted."""
    duplicates: int = 0
    missing: int = 0
    unknown: int = 0
    examples: list[str] = field(default_factory=list)
    unknown_keys: set[tuple[int, int, str]] = field(default_factory=set)

    @property
    def clean(self) -> bool:
        return self.checked and not (self.duplicates or self.missing or self.unknown)

    def summary(self) -> str:
        parts = [f"{n} {what}" for n, what in ((self.duplicates, "duplicate line(s)"),
                                               (self.missing, "missing sample(s)"),
                                               (self.unknown, "unknown sample id(s)")) if n]
        if not self.checked:
            parts.append("sample ids not checked")
        return ", ".join(parts) or "no problems"


def find_record(pred_path: Path, record: str | Path | None) -> dict[str, Any] | None:
    """The run record to check against: ``record`` if given, else ``record.json`` beside the file."""
    if record is not None:
        return load_record(Path(record).expanduser())
    beside = pred_path.parent / RECORD_FILE
    return load_record(beside) if beside.is_file() else None


def check_record_benchmark(rec: dict[str, Any], card: Any, pred_path: Path) -> None:
    """Refuse predictions whose run record belongs to another benchmark."""
    bench = rec["benchmark"]["id"]
    if bench != card.id:
        raise UserError(f"{pred_path}: these are predictions of benchmark '{bench}' (per {rec['_path']}), not "
                        f"'{card.id}'; run `flamingo-eval score {bench} ...`, or pass --record for another run")


def _expected_counts(rec: dict[str, Any]) -> dict[Key, tuple[int | None, set[str]]]:
    """(shots, seed) -> (number of scored samples, skipped ids) from the record's trials."""
    out: dict[Key, tuple[int | None, set[str]]] = {}
    for r in rec["results"]:
        for t in r["trials"]:
            n = t.get("n")
            out[(r["shots"], t["seed"])] = (n if isinstance(n, int) else None, set(t.get("skipped_ids") or ()))
    return out


def _split_ids(card: Any, data_root: str | None, run: dict[str, Any] | None, seeds: set[int]
               ) -> tuple[dict[int, list[str]] | None, str]:
    """(seed -> the eval ids the run used, or None when the data is not here; where the data is)."""
    from flamingo_eval.task import eval_subset, make_adapter

    adapter = make_adapter(card, data_root)
    where = f"the {card.eval_split} split of {card.id} under {adapter.data_root}"
    if adapter.missing(card.eval_split):
        return None, where
    samples = adapter.load(card.eval_split)
    if run is None:
        return {s: [x.id for x in samples] for s in seeds}, where
    limit, subset = run.get("limit"), str(run.get("subset", "first"))
    per_trial = subset == "random_per_trial"
    return {s: [x.id for x in eval_subset(samples, limit, subset, s if per_trial else int(run.get("seed", 0)))]
            for s in seeds}, where


def _run_section(rec: dict[str, Any]) -> dict[str, Any] | None:
    """The record's ``config.run`` (how the eval subset was cut), checked where it decides the ids."""
    cfg = rec.get("config")
    run = cfg.get("run") if isinstance(cfg, dict) else None
    if not isinstance(run, dict):
        return None
    for key, kinds in (("limit", (int, type(None))), ("subset", (str,)), ("seed", (int,)),
                       ("data_root", (str, type(None))), ("bootstrap", (int,))):
        if key in run and (not isinstance(run[key], kinds) or isinstance(run[key], bool)):
            raise UserError(f"{rec['_path']}: field 'config.run.{key}': unexpected {type(run[key]).__name__} "
                            f"{run[key]!r:.40}")
    return run


def check_ids(lines: list[dict[str, Any]], card: Any, rec: dict[str, Any] | None, data_root: str | None
              ) -> IdCheck:
    """Count duplicate, missing and unknown (shots, seed, sample) keys of ``lines``."""
    keys = Counter((ln["shots"], ln["seed"], ln["sample_id"]) for ln in lines)
    have: dict[Key, set[str]] = defaultdict(set)
    for shots, seed, sid in keys:
        have[(shots, seed)].add(sid)
    counts = _expected_counts(rec) if rec is not None else None
    run = _run_section(rec) if rec is not None else None
    root = data_root or (run or {}).get("data_root")
    wanted = set(counts) if counts is not None else set(have)
    ids, where = _split_ids(card, root, run, {s for _, s in wanted | set(have)})
    sources = [f"record {rec['_path']}"] if rec is not None else []
    if ids is not None:
        sources.append(where)
    check = IdCheck(against=" and ".join(sources) or f"no run record beside the file (pass --record) and no data "
                    f"({where} is missing; pass --data-root)", exact=ids is not None, checked=bool(sources))
    check.duplicates = sum(c - 1 for c in keys.values())
    for key in sorted(wanted | set(have)):
        got = have.get(key, set())
        if key not in wanted:  # a (shots, seed) the run never evaluated
            _unknown(check, key, got)
            continue
        n, skipped = counts[key] if counts is not None else (None, set())
        if ids is not None:
            expected = set(ids[key[1]]) - skipped
            _unknown(check, key, got - expected)
            check.missing += len(expected - got)
            check.examples += [f"{key[0]}-shot seed {key[1]} lacks '{i}'" for i in sorted(expected - got)[:1]]
        elif n is not None:
            _unknown(check, key, got & skipped)
            check.missing += max(0, n - len(got - skipped))
            check.unknown += max(0, len(got - skipped) - n)
    return check


def _unknown(check: IdCheck, key: Key, ids: set[str]) -> None:
    check.unknown += len(ids)
    check.unknown_keys |= {(key[0], key[1], i) for i in ids}
    check.examples += [f"{key[0]}-shot seed {key[1]} has '{i}'" for i in sorted(ids)[:1]]


def refuse(check: IdCheck, path: Path, n_lines: int, has_record: bool) -> UserError:
    """The one error line for a file that does not hold exactly the run's samples once."""
    if not check.checked:
        return UserError(f"{path}: cannot check its sample ids: {check.against}; or pass --allow-partial to score "
                         "it unchecked")
    hint = ""
    if check.exact and check.unknown == n_lines:
        hint = " -- none of its ids is in this benchmark's split: predictions of another benchmark?"
    elif check.missing and not has_record:
        hint = " -- if the run used --limit, pass its --record"
    example = f" (e.g. {check.examples[0]})" if check.examples else ""
    return UserError(f"{path}: {check.summary()} (checked against {check.against}){example}{hint}; fix the file, "
                     "or pass --allow-partial to score what is there and report the counts")


def build_metric(card: Any) -> Any:
    """The card's metric (``card_args.build_metric``: one line naming a bad argument)."""
    from flamingo_eval.card_args import build_metric as build

    return build(card)


def rescore(card: Any, metric: Any, lines: list[dict[str, Any]], path: Path,
            leave_out: Collection[tuple[int, int, str]] = (), bootstrap: int = 0,
            resample_trials: bool = False) -> list[dict[str, Any]]:
    """Score ``lines`` per (shots, trial); the last line of a repeated key wins; ``leave_out`` keys are skipped.

    Returns:
        One entry per shots: ``shots``, ``trials`` (trial, seed, value, n, extras), ``mean``, ``std``,
        ``std_ddof1`` (None for one trial), ``n`` (trials), ``ci95``, ``ci95_resamples`` and ``ci95_method``
        (the bootstrap of the headline with ``bootstrap`` resamples, two-level with ``resample_trials``, as
        the runner records it; null for 0).
    """
    from flamingo_eval.metrics.stats import trial_summary
    from flamingo_eval.results.lines import metric_input

    latest: dict[tuple[int, int, str], dict[str, Any]] = {}
    for ln in lines:
        key = (ln["shots"], ln["seed"], ln["sample_id"])
        latest.pop(key, None)  # re-insert: the last occurrence decides the order too
        latest[key] = ln
    groups: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for key, ln in latest.items():
        if key not in leave_out:
            groups[(ln["shots"], ln["trial"])].append(ln)
    results = []
    for shots in sorted({s for s, _ in groups}):
        trials, trial_items, trial_results = [], [], []
        for (s, trial), rows in sorted(groups.items()):
            if s != shots:
                continue
            items = [metric_input(r) for r in rows]
            res = _guarded(card, path, f"{shots}-shot trial {trial}", metric, items)
            trials.append({"trial": trial, "seed": rows[0]["seed"], "value": res.value, "n": len(items),
                           "extras": dict(res.extras)})
            trial_items.append(items)
            trial_results.append(res)
        ci = _guarded(card, path, f"{shots}-shot", shots_ci, metric, trial_items, bootstrap,
                      resample_trials, trial_results)
        results.append({"shots": shots, "trials": trials, **trial_summary([t["value"] for t in trials]),
                        "n": len(trials), **ci})
    return results


def shots_ci(metric: Any, trial_items: list[list[Any]], bootstrap: int,
             resample_trials: bool = False, results: list[Any] | None = None) -> dict[str, Any]:
    """The ``ci95`` / ``ci95_resamples`` / ``ci95_method`` fields of one shots setting (None when not computed):
    the bootstrap of the metric's own headline (``metrics.stats.trials_ci``), two-level with ``resample_trials``."""
    from flamingo_eval.metrics.aggregates import approximation
    from flamingo_eval.metrics.stats import ci_method, trials_ci

    ci = trials_ci(metric, trial_items, bootstrap, resample_trials=resample_trials, results=results)
    held = approximation(metric, max((len(items) for items in trial_items), default=0))
    return {"ci95": None if ci is None else list(ci[0]), "ci95_resamples": None if ci is None else ci[1],
            "ci95_method": None if ci is None else ci_method(resample_trials, held)}


def _guarded(card: Any, path: Path, where: str, score: Callable[..., Any], *args: Any) -> Any:
    """``score(*args)`` (a metric call) with failures as one line naming the file and ``where``."""
    where = f"{path}: {where}"
    try:
        return score(*args)
    except UserError as e:
        raise UserError(f"{where}: {e}") from None
    except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError) as e:
        raise UserError(f"{where}: cannot score with '{card.metric.name}' "
                        f"({type(e).__name__}: {e}); are these predictions of {card.id}?") from None


def score_file(card: Any, predictions: str | Path, *, record: str | Path | None = None,
               data_root: str | None = None, allow_partial: bool = False,
               bootstrap: int | None = None, bootstrap_trials: bool | None = None) -> dict[str, Any]:
    """Check and score one predictions file with ``card``'s metric (see the module docstring).

    Returns:
        A JSON-ready dict: ``benchmark``, ``predictions``, ``metric``, ``metric_args``, ``checks`` (what
        the ids were checked against and the counts), ``results`` and ``notes``.

    Raises:
        UserError: One line naming the file (and line and field, or the counts) for anything unusable.
    """
    path = predictions_path(predictions)
    numbered = read_scorable(path)
    lines = [obj for _, obj in numbered]
    rec = find_record(path, record)
    if rec is not None:
        check_record_benchmark(rec, card, path)
    metric = build_metric(card)
    check = check_ids(lines, card, rec, data_root)
    if not check.clean and not allow_partial:
        raise refuse(check, path, len(lines), rec is not None)
    notes = []
    if not check.clean:
        notes.append(f"partial: {check.summary()}; duplicated keys scored once (last line), unknown ids left "
                     "out, missing samples not scored -- these values are NOT comparable with a full run")
    if rec is not None and dict(rec["benchmark"].get("metric_args") or {}) != dict(card.metric.args):
        notes.append(f"metric args {dict(card.metric.args)} differ from the run's "
                     f"{rec['benchmark'].get('metric_args')}")
    if bootstrap is None:  # the run's own setting, so the interval is the record's
        run_conf = (_run_section(rec) if rec is not None else None) or {}
        bootstrap = max(0, int(run_conf.get("bootstrap", DEFAULT_BOOTSTRAP)))
    if bootstrap_trials is None:  # likewise: the run's two-level setting
        run_conf = (_run_section(rec) if rec is not None else None) or {}
        bootstrap_trials = run_conf.get("bootstrap_trials") is True
    results = rescore(card, metric, lines, path, check.unknown_keys, bootstrap, bootstrap_trials)
    if not results:
        raise UserError(f"{path}: nothing left to score ({check.summary()})")
    return {
        "benchmark": card.id, "predictions": str(path), "metric": card.metric.name,
        "metric_args": json.loads(json.dumps(dict(card.metric.args), default=str)),
        "checks": {"against": check.against, "exact_ids": check.exact, "lines": len(lines),
                   "duplicates": check.duplicates, "missing": check.missing, "unknown": check.unknown,
                   "partial": not check.clean},
        "results": results, "notes": notes,
    }
