"""The evaluation loop: benchmark x shots x trials -> predictions.jsonl + record.json.

The runner never branches on a benchmark or model name: the card names the adapter, template, request
kind (generate | rank) and metric; everything else is data. Predictions are appended and flushed per
batch; the record is rewritten atomically after every trial, so a crash loses at most one batch.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flamingo_eval.benchmarks  # noqa: F401  (registers adapters)
import flamingo_eval.metrics  # noqa: F401  (registers metrics)
import flamingo_eval.prompts  # noqa: F401  (registers samplers, extractors)
from flamingo_eval.benchmarks.base import Adapter
from flamingo_eval.config import BenchmarkCard, Config, to_dict
from flamingo_eval.errors import UserError
from flamingo_eval.metrics.base import MetricInput, MetricResult
from flamingo_eval.prompts.builder import build_prompt
from flamingo_eval.prompts.samplers import query_set
from flamingo_eval.provenance import provenance, run_id
from flamingo_eval.registry import ADAPTERS, EXTRACTORS, METRICS, SAMPLERS
from flamingo_eval.results.records import write_json_atomic
from flamingo_eval.types import EvalModel, GenerateRequest, InterleavedPrompt, RankRequest, Sample

CHUNK = 32  # samples per model call / predictions flush


class Reporter:
    """Progress sink; display.py provides the rich and plain implementations."""

    def start(self, total: int, description: str) -> None: ...

    def advance(self, n: int) -> None: ...

    def finish(self) -> None: ...

    def log(self, message: str) -> None: ...


def make_adapter(card: BenchmarkCard, data_root: str | None) -> Adapter:
    root = Path(data_root or ".").expanduser() / card.data_dir
    return ADAPTERS.get(card.adapter)(card, root)


def data_missing(card: BenchmarkCard, data_root: str | None) -> list[tuple[str, Path]]:
    adapter = make_adapter(card, data_root)
    splits = dict.fromkeys([card.demo_split, card.eval_split])
    return [m for s in splits for m in adapter.missing(s)]


@dataclass
class Task:
    """Everything resolved once per run (no per-benchmark branches below this point)."""

    cfg: Config
    eval_samples: list[Sample]
    demo_samples: list[Sample]
    candidates: tuple[str, ...] | None
    metric: Any
    extractor: Callable[[str], str]
    template: Any


def prepare(cfg: Config) -> Task:
    card = cfg.benchmarks
    missing = data_missing(card, cfg.run.data_root)
    if missing:
        name, path = missing[0]
        raise UserError(f"{card.id}: missing {name} at {path} ({len(missing)} missing in all); "
                        f"run `flamingo-eval data check {card.id} --data-root DIR` for the expected layout")
    adapter = make_adapter(card, cfg.run.data_root)
    eval_samples = adapter.load(card.eval_split)
    if cfg.run.limit is not None:
        eval_samples = eval_samples[: cfg.run.limit]
    demo_samples = eval_samples if card.demo_split == card.eval_split else adapter.load(card.demo_split)
    template = cfg.prompts.templates[card.prompt]
    return Task(cfg=cfg, eval_samples=eval_samples, demo_samples=demo_samples,
                candidates=getattr(adapter, "candidates", None),
                metric=METRICS.get(card.metric.name)(**card.metric.args),
                extractor=EXTRACTORS.get(template.extractor), template=template)


def prompt_hash(p: InterleavedPrompt) -> str:
    h = hashlib.sha256(p.text.encode())
    for m in p.media:
        h.update(b"\0" + m.encode())
    return "sha256:" + h.hexdigest()[:16]


def trial_prompts(task: Task, model: EvalModel, shots: int, seed: int) -> list[InterleavedPrompt]:
    cfg, card = task.cfg, task.cfg.benchmarks
    size = cfg.run.query_set_size or card.query_set_size
    pool = query_set(task.demo_samples, card.id, card.demo_split, seed, size)
    sampler = SAMPLERS.get(cfg.run.sampler)(pool, card.id, card.demo_split, seed)
    k = shots if shots > 0 else cfg.run.zero_shot_text_demos
    return [build_prompt(task.template, sampler.demos(s, k), s, text_only_demos=shots == 0,
                         count_tokens=model.count_tokens, max_tokens=model.max_context)
            for s in task.eval_samples]


def _requests(task: Task, prompts: Sequence[InterleavedPrompt], samples: Sequence[Sample]) -> list[Any]:
    card = task.cfg.benchmarks
    if card.mode == "rank":
        out = []
        for p, s in zip(prompts, samples):
            cands = tuple(s.fields.get("candidates", ()) or task.candidates or ())
            if not cands:
                raise UserError(f"{card.id}: rank mode needs candidates (adapter list or sample field)")
            out.append(RankRequest(prompt=p, candidates=cands, normalize_length=card.normalize_length))
        return out
    g = card.generation
    return [GenerateRequest(prompt=p, max_new_tokens=g.max_new_tokens, num_beams=g.num_beams,
                            length_penalty=g.length_penalty, stop=tuple(g.stop)) for p in prompts]


def _call(model: EvalModel, reqs: list[Any]) -> list[Any]:
    if reqs and isinstance(reqs[0], RankRequest):
        return model.rank(reqs)
    return model.generate(reqs)


def call_with_skips(model: EvalModel, reqs: list[Any], skip: bool) -> tuple[list[Any], list[str | None]]:
    """Run a batch; with ``skip``, a failing batch is retried item by item and bad items are skipped."""
    try:
        return _call(model, reqs), [None] * len(reqs)
    except UserError:
        if not skip:
            raise
    outs: list[Any] = []
    errors: list[str | None] = []
    for r in reqs:
        try:
            outs.append(_call(model, [r])[0])
            errors.append(None)
        except UserError as e:
            outs.append(None)
            errors.append(str(e))
    return outs, errors


@dataclass
class TrialOutput:
    lines: list[dict[str, Any]] = field(default_factory=list)
    items: list[MetricInput] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    dropped: int = 0


def to_prediction(task: Task, s: Sample, p: InterleavedPrompt, out: Any) -> tuple[dict[str, Any], MetricInput]:
    if isinstance(out, str):
        raw, answer, scores = out, task.extractor(out), None
    else:
        scores = tuple(float(x) for x in out)
        cands = tuple(s.fields.get("candidates", ()) or task.candidates or ())
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        raw, answer = json.dumps([round(x, 6) for x in scores]), cands[best]
    extra = {k: v for k, v in s.fields.items() if k == "gt_relevance"}
    item = MetricInput(sample_id=s.id, answer=answer, references=s.references, label=s.label, scores=scores,
                       extra=extra)
    line = {"sample_id": s.id, "demo_ids": list(p.demo_ids), "prompt_hash": prompt_hash(p), "raw_output": raw,
            "answer": answer, "score": None, "references": list(s.references), "label": s.label,
            "scores": list(scores) if scores is not None else None, "extra": extra,
            "dropped_demos": p.dropped_demos}
    return line, item


def run_trial(task: Task, model: EvalModel, shots: int, seed: int, sink: Callable[[list[dict[str, Any]]], None],
              reporter: Reporter) -> TrialOutput:
    prompts = trial_prompts(task, model, shots, seed)
    res = TrialOutput(dropped=sum(p.dropped_demos for p in prompts))
    skip = task.cfg.run.on_bad_sample == "skip"
    samples = task.eval_samples
    for start in range(0, len(samples), CHUNK):
        chunk_s, chunk_p = samples[start : start + CHUNK], prompts[start : start + CHUNK]
        outs, errors = call_with_skips(model, _requests(task, chunk_p, chunk_s), skip)
        lines = []
        for s, p, out, err in zip(chunk_s, chunk_p, outs, errors):
            if err is not None:
                res.skipped.append({"sample_id": s.id, "error": err})
                continue
            line, item = to_prediction(task, s, p, out)
            lines.append(line)
            res.items.append(item)
        sink(lines)
        res.lines += lines
        reporter.advance(len(chunk_s))
    return res


def summarize(values: list[float]) -> dict[str, float]:
    import statistics

    mean = statistics.fmean(values)
    return {"mean": mean, "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "std_ddof1": statistics.stdev(values) if len(values) > 1 else 0.0}


def score_items(metric: Any, items: list[MetricInput]) -> MetricResult:
    if not items:
        raise UserError("no samples left to score (all skipped?)")
    return metric(items)


class PredictionSink:
    """Appends prediction lines to predictions.jsonl, flushing after each batch."""

    def __init__(self, path: Path, shots: int, trial: int, seed: int) -> None:
        self.path, self.tags = path, {"shots": shots, "trial": trial, "seed": seed}

    def __call__(self, lines: list[dict[str, Any]]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            for ln in lines:
                f.write(json.dumps({**self.tags, **ln}, ensure_ascii=False) + "\n")
            f.flush()


def evaluate(cfg: Config, model: EvalModel, out_dir: Path, reporter: Reporter, command: str = "") -> dict[str, Any]:
    """Run every (shots, trial) of ``cfg`` and write the run directory; returns the record."""
    task = prepare(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    pred_path = out_dir / "predictions.jsonl"
    pred_path.write_text("")
    seeds = list(cfg.run.seeds) if cfg.run.seeds else [cfg.run.seed + i for i in range(cfg.run.trials)]
    record = new_record(cfg, model, seeds, command)
    t_all, n_all = time.perf_counter(), 0
    reporter.start(len(task.eval_samples) * len(seeds) * len(cfg.run.shots), f"{cfg.benchmarks.id} · {model.model_id}")
    for shots in cfg.run.shots:
        entry: dict[str, Any] = {"shots": shots, "sampler": cfg.run.sampler, "n": len(task.eval_samples),
                                 "seeds": seeds, "trials": []}
        record["results"].append(entry)
        for trial, seed in enumerate(seeds):
            t0 = time.perf_counter()
            out = run_trial(task, model, shots, seed, PredictionSink(pred_path, shots, trial, seed), reporter)
            result = score_items(task.metric, out.items)
            rewrite_scores(pred_path, out, result, shots, trial)
            entry["trials"].append({"seed": seed, "value": result.value, "extras": dict(result.extras),
                                    "n": len(out.items), "skipped": len(out.skipped), "skipped_ids":
                                    [s["sample_id"] for s in out.skipped], "dropped_demos": out.dropped,
                                    "seconds": time.perf_counter() - t0})
            entry.update(summarize([t["value"] for t in entry["trials"]]))
            n_all += len(task.eval_samples)
            record["throughput"] = throughput(n_all, time.perf_counter() - t_all)
            write_json_atomic(out_dir / "record.json", record)
    reporter.finish()
    return record


def rewrite_scores(path: Path, out: TrialOutput, result: MetricResult, shots: int, trial: int) -> None:
    """Fill per-sample scores into this trial's lines (scores need the whole trial for corpus metrics)."""
    scores = {item.sample_id: sc for item, sc in zip(out.items, result.per_sample)}
    lines = path.read_text(encoding="utf-8").splitlines()
    new = []
    for ln in lines:
        d = json.loads(ln)
        if d["shots"] == shots and d["trial"] == trial and d["sample_id"] in scores:
            d["score"] = scores[d["sample_id"]]
        new.append(json.dumps(d, ensure_ascii=False))
    from flamingo_eval.results.records import write_text_atomic

    write_text_atomic(path, "\n".join(new) + ("\n" if new else ""))


def throughput(n: int, seconds: float) -> dict[str, float]:
    return {"samples": n, "seconds": seconds, "samples_per_s": n / seconds if seconds > 0 else 0.0}


def new_record(cfg: Config, model: EvalModel, seeds: list[int], command: str) -> dict[str, Any]:
    card = cfg.benchmarks
    return {
        "schema_version": 1,
        "run_id": run_id(card.id, model.model_id),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "benchmark": {"id": card.id, "version": card.version, "task": card.task, "split": card.eval_split,
                      "demo_split": card.demo_split, "metric": card.metric.name,
                      "metric_args": dict(card.metric.args),
                      "corpus_level": bool(getattr(METRICS.get(card.metric.name)(**card.metric.args),
                                                   "corpus_level", False))},
        "model": {"id": model.model_id, "name": model.model_id, "fingerprint": model.fingerprint(),
                  "precision": cfg.model.precision},
        "config": to_dict(cfg),
        "provenance": provenance(command),
        "results": [],
        "throughput": throughput(0, 0.0),
    }
