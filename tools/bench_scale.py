"""Full-split scale on one machine: a VQAv2-sized run with a stub-fast model (``make bench-scale``).

Data: ``tools/synth_vqav2.py`` (VQAv2's real sizes, official layout; written once under ``--cache-dir``).
Model: :class:`StubModel`, an ``EvalModel`` built here and handed to ``runner.evaluate`` like any other
(the runner never knows): it counts tokens with the real SmolLM2 tokenizer (so prompt building and the
context budget cost what they cost in a real run) and answers each request instantly with a word derived
from its prompt, so everything measured is the harness, not a network.

Each stage runs in its own child process (its peak RSS is its own ``ru_maxrss``):

* ``plan``   — full size: read the data (``prepare``), then the demo choice of every (shots, trial) for
  all 214k questions (random sampler, as the card), plus prompt building timed on ``--prompt-sample``
  questions per shot count and extrapolated to the split;
* ``run``    — the stub run, ``--shots`` x ``--trials`` at batch 64 over ``--fraction`` of the eval split:
  wall time, the time spent in part-file appends and in ``predictions.jsonl`` writes, and what the old
  writer (the whole file rebuilt after each trial) costs on the same files;
* ``kill``   — the same run SIGKILLed at 50 % of its batches (``FLAMINGO_EVAL_CRASH_AT=batch:N``), then
  resumed: resume overhead = killed + resumed wall - uninterrupted wall, and byte-identity of the
  finished ``predictions.jsonl``;
* ``rices``  — the RICES cost: images/s of the encoder actually configured (a random 64 px ViT-S-32, no
  download; the real ViT-L/14 is ~50x the FLOPs) and the nearest-neighbour search over the full demo split
  for ``--rices-queries`` queries, both extrapolated to the full split.

``--kill-resume`` runs only this (issue 17's acceptance point): the stub run over the WHOLE eval split
(``--fraction`` is ignored), once uninterrupted and once SIGKILLed from this process when its part files
hold 50 % of the questions (both runs are watched the same way; the wall and CPU time of each half are
noted), then resumed with the same command; the finished ``predictions.jsonl`` and the record's scores
must be byte-identical, and the table gives the resume overhead (wall and CPU), the resume start-up
(reading the partial state back) and the write overhead. ``--shots 0 --trials 1`` takes ~6 min here.

The machine is shared: the 1-minute load average is recorded before and after every stage.

    nice -n 10 .venv/bin/python -m tools.bench_scale [--fraction 0.1] [--shots 0 4 8 16 32] [--trials 3]
        [--cache-dir DIR (default: the system temp dir / flamingo-eval-scale)] [--json out.json] [--md out.md]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from tools.scale_resume import MEASURED, child_watched, kill_table, load1, record_scores  # noqa: E402
from tools.synth_vqav2 import REAL, generate  # noqa: E402


def sizes(scale: float) -> dict[str, tuple[int, int]]:
    """VQAv2's split sizes times ``scale`` (1 = the real sizes; smaller for a smoke test)."""
    return {k: (max(1, round(q * scale)), max(1, round(i * scale))) for k, (q, i) in REAL.items()}
WORDS = ("yes", "no", "2", "red", "blue", "white", "dog", "table")


class StubModel:
    """A stub-fast ``EvalModel``: real token counts, instant answers (see the module docstring)."""

    model_id = "stub-fast"
    precision, placement, device, timer = "fp32", None, "cpu", None  # no weights, one device, not timed

    def __init__(self) -> None:
        from flamingo_eval.models.assets import smollm2_dir
        from flamingo_eval.models.build import load_tokenizer

        self.tok = load_tokenizer(str(smollm2_dir()))
        self.calls = 0

    @property
    def max_context(self) -> int:
        return 2048

    def count_tokens(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def generate(self, requests: list[Any]) -> list[str]:
        self.calls += 1
        return [WORDS[(len(r.prompt.text) + len(r.prompt.media)) % len(WORDS)] for r in requests]

    def rank(self, requests: list[Any]) -> list[list[float]]:
        self.calls += 1
        return [[float(-i) for i in range(len(r.candidates))] for r in requests]

    def fingerprint(self) -> str:
        return "stub-fast:v1"

    def media_stats(self) -> dict[str, Any]:
        return {}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def config(a: argparse.Namespace, limit: int | None, out: Path | None = None) -> Any:
    from flamingo_eval.config_load import compose_config

    ov = [f"run.data_root={a.data_root}", "run.shots=[" + ",".join(map(str, a.shots)) + "]",
          f"run.trials={a.trials}", "run.batch_size=64"]
    if limit is not None:
        ov.append(f"run.limit={limit}")
    if out is not None:
        ov.append(f"run.output={out}")
    return compose_config("vqav2", "tiny", ov)


# -- stages (each in a child process) -------------------------------------------------------------
def stage_plan(a: argparse.Namespace) -> dict[str, Any]:
    from flamingo_eval.prompting import answer_room, make_sampler
    from flamingo_eval.prompts.builder import build_prompt
    from flamingo_eval.task import prepare, run_seeds

    cfg = config(a, None)
    t0 = time.perf_counter()
    task = prepare(cfg)
    load_s, rss_load = time.perf_counter() - t0, peak_rss_mb()
    model = StubModel()
    room = answer_room(task, model)
    demos_s, prompt_s_full = 0.0, 0.0
    per_shot: dict[str, float] = {}
    for shots in cfg.run.shots:
        k = shots if shots > 0 else cfg.run.zero_shot_text_demos
        for seed in run_seeds(cfg.run):
            t = time.perf_counter()
            sampler = make_sampler(task, seed)
            chosen = [sampler.demos(s, k) for s in task.eval_samples]
            demos_s += time.perf_counter() - t
        sample = task.eval_samples[: a.prompt_sample]
        t = time.perf_counter()
        for s, d in zip(sample, chosen):
            build_prompt(task.template, d, s, text_only_demos=shots == 0, count_tokens=model.count_tokens,
                         max_tokens=model.max_context, reserve=room(s))
        per = (time.perf_counter() - t) / len(sample)
        per_shot[str(shots)] = per * 1e6
        prompt_s_full += per * len(task.eval_samples) * len(run_seeds(cfg.run))
        del chosen
    return {"eval": len(task.eval_samples), "demo_split": len(task.demo_samples), "load_s": load_s,
            "rss_after_load_mb": rss_load, "demos_s": demos_s, "prompt_us_per_sample": per_shot,
            "prompt_s_extrapolated": prompt_s_full, "peak_rss_mb": peak_rss_mb()}


def _instrument(old: bool = True) -> dict[str, float]:
    """Wrap the part-file sink and the predictions writer with timers (this process only); with ``old``,
    also time the old writer (the whole file rebuilt) after each trial, inside the run's time."""
    from flamingo_eval.results import store

    acc = {"part_s": 0.0, "save_s": 0.0, "old_rebuild_s": 0.0}
    sink_call, save = store.PartSink.__call__, store.RunStore.save_scores

    def timed_sink(self: Any, *args: Any, **kw: Any) -> None:
        t = time.perf_counter()
        sink_call(self, *args, **kw)
        acc["part_s"] += time.perf_counter() - t

    def timed_save(self: Any, out: Any, per_sample: Any, shots: int, trial: int, order: Any) -> None:
        t = time.perf_counter()
        save(self, out, per_sample, shots, trial, order)
        acc["save_s"] += time.perf_counter() - t
        if not old:
            return
        t = time.perf_counter()  # what the old writer did here: rebuild the whole file from every trial
        from flamingo_eval.results.records import write_text_atomic

        parts = [self.scored_path(s, tr) for s, tr in order]
        write_text_atomic(self.partial / "old-writer.jsonl",
                          "".join(p.read_text(encoding="utf-8") for p in parts if p.exists()))
        acc["old_rebuild_s"] += time.perf_counter() - t

    store.PartSink.__call__ = timed_sink  # type: ignore[method-assign]
    store.RunStore.save_scores = timed_save  # type: ignore[method-assign]
    return acc


def _time_resume_reads() -> dict[str, float]:
    """Time what a resume adds: the part-file reads at open (snapshot) and before each trial (pending)."""
    from flamingo_eval.results import store

    acc = {"resume_reads_s": 0.0}
    snap, pending = store.RunStore._snapshot_done, store.RunStore.pending

    def timed(fn: Any) -> Any:
        def wrapper(*args: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                acc["resume_reads_s"] += time.perf_counter() - t
        return wrapper

    store.RunStore._snapshot_done = timed(snap)  # type: ignore[method-assign]
    store.RunStore.pending = timed(pending)  # type: ignore[method-assign]
    return acc


def stage_run(a: argparse.Namespace) -> dict[str, Any]:
    """One stub run into ``a.out`` (resumes what is there); with ``a.instrument`` the writes are timed."""
    from flamingo_eval.display import Reporter
    from flamingo_eval.runner import evaluate
    from flamingo_eval.task import prepare

    acc = _instrument() if a.instrument else _instrument(old=False) if a.time_writes else {}
    reads = _time_resume_reads()  # filled while evaluate runs
    limit = max(1, round(sizes(a.scale)["val"][0] * a.fraction)) if a.fraction < 1 else None
    cfg = config(a, limit, a.out)
    t0 = time.perf_counter()
    task = prepare(cfg)
    load_s = time.perf_counter() - t0
    model = StubModel()
    cpu0 = time.process_time()
    Path(f"{a.out}.t0").write_text(f"{time.time()} {cpu0}")  # the parent times a killed evaluation from here
    t1 = time.perf_counter()
    rec = evaluate(cfg, model, Path(a.out), Reporter(), task=task)
    return {"eval": len(task.eval_samples), "load_s": load_s, "eval_s": time.perf_counter() - t1,
            "phases": rec.get("throughput", {}).get("phases", {}),
            "eval_cpu_s": time.process_time() - cpu0,
            "model_calls": model.calls, "peak_rss_mb": peak_rss_mb(), **acc, **reads}


def stage_rices(a: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from flamingo_eval.prompts.rices import ClipImageFeatures, nearest
    from flamingo_eval.task import prepare

    task = prepare(config(a, None))
    enc = ClipImageFeatures("ViT-S-32", pretrained=None, batch_size=32, image_size=64)
    enc(task.demo_samples[:32])  # model load + warm-up
    t = time.perf_counter()
    feats = enc(task.demo_samples[: a.rices_images])
    per_image = (time.perf_counter() - t) / a.rices_images
    pool = np.random.default_rng(0).standard_normal((len(task.demo_samples), feats.shape[1])).astype(feats.dtype)
    pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    t = time.perf_counter()
    for q in pool[: a.rices_queries]:
        nearest(pool, q, max(a.shots) + 1)
    per_query = (time.perf_counter() - t) / a.rices_queries
    n_img = len({s.media[0] for s in task.demo_samples}) + len({s.media[0] for s in task.eval_samples})
    return {"per_image_ms": per_image * 1e3, "encode_s_full": per_image * (len(task.demo_samples)
            + len(task.eval_samples)), "distinct_images": n_img, "encode_s_distinct": per_image * n_img,
            "per_query_ms": per_query * 1e3, "search_s_full": per_query * len(task.eval_samples) * len(a.shots)
            * a.trials, "search_s_once": per_query * len(task.eval_samples), "dim": int(feats.shape[1]),
            "peak_rss_mb": peak_rss_mb()}


def writer_cost(sample: Path, n_per_trial: int, trials: int, work: Path) -> dict[str, float]:
    """``predictions.jsonl`` writes alone at full size: lines of ``sample`` (a finished run's file) repeated to
    ``n_per_trial`` per trial; the appending writer vs the old rebuild-after-every-trial writer."""
    from flamingo_eval.results.predstream import append_trial
    from flamingo_eval.results.records import write_text_atomic

    lines = sample.read_text(encoding="utf-8").splitlines(keepends=True)
    text = "".join(lines[i % len(lines)] for i in range(n_per_trial))
    order = [(0, t) for t in range(trials)]
    work.mkdir(parents=True, exist_ok=True)
    scored = {k: work / f"s{k[0]}-t{k[1]}.scored.jsonl" for k in order}
    new_s = old_s = 0.0
    for k in order:
        write_text_atomic(scored[k], text)  # both writers need the trial's scored file first
        t = time.perf_counter()
        append_trial(work / "new.jsonl", work / "index.json", k, text, order, scored.__getitem__)
        new_s += time.perf_counter() - t
        t = time.perf_counter()
        write_text_atomic(work / "old.jsonl", "".join(p.read_text(encoding="utf-8") for p in
                                                      (scored[o] for o in order) if p.exists()))
        old_s += time.perf_counter() - t
    same = (work / "new.jsonl").read_bytes() == (work / "old.jsonl").read_bytes()
    mb = (work / "new.jsonl").stat().st_size / 2**20
    for p in work.iterdir():
        p.unlink()
    return {"writer_new_s": new_s, "writer_old_s": old_s, "writer_identical": same, "writer_mb": mb}


STAGES = {"plan": stage_plan, "run": stage_run, "rices": stage_rices}


# -- driver ---------------------------------------------------------------------------------------
def _argv(a: argparse.Namespace, stage: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "tools.bench_scale", "--child", stage, "--data-root", str(a.data_root), "--fraction",
            str(a.fraction), "--trials", str(a.trials), "--prompt-sample", str(a.prompt_sample),
            "--rices-images", str(a.rices_images), "--scale", str(a.scale), "--rices-queries", str(a.rices_queries),
            "--shots", *map(str, a.shots), *extra]


def child(a: argparse.Namespace, stage: str, extra: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``stage`` in a fresh process; its JSON result (``{"killed": True}`` when it was SIGKILLed)."""
    argv = _argv(a, stage, extra)
    before, t = load1(), time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t
    if p.returncode == -9:
        t0 = float(Path(f"{extra[extra.index('--out') + 1]}.t0").read_text().split()[0])
        return {"killed": True, "wall_s": wall, "eval_s": time.time() - t0, "load_before": before,
                "load_after": load1()}
    if p.returncode != 0:
        raise SystemExit(f"stage {stage} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return {**json.loads(p.stdout.strip().splitlines()[-1]), "wall_s": wall, "load_before": before,
            "load_after": load1()}


def measure(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    res: dict[str, Any] = {"args": {k: str(v) for k, v in vars(a).items()}, "cpus": os.cpu_count(),
                           "load_start": os.getloadavg()}
    t = time.perf_counter()
    generate(Path(a.data_root), sizes(a.scale))
    res["generate_s"] = time.perf_counter() - t
    res["plan"] = child(a, "plan", []) if not a.skip_plan else {}
    if a.plan_only:
        res["load_end"] = os.getloadavg()
        return res
    res["run"] = child(a, "run", ["--out", str(work / "full"), "--instrument"])
    n = res["run"]["eval"]
    batches = -(-n // 64) * len(a.shots) * a.trials
    res["kill"] = child(a, "run", ["--out", str(work / "killed")], {"FLAMINGO_EVAL_CRASH_AT": f"batch:{batches // 2}"})
    res["resume"] = child(a, "run", ["--out", str(work / "killed")])
    same = (work / "full" / "predictions.jsonl").read_bytes() == (work / "killed" / "predictions.jsonl").read_bytes()
    res["resume_identical"] = same
    res["predictions_mb"] = (work / "full" / "predictions.jsonl").stat().st_size / 2**20
    if not a.skip_plan:
        res["writer"] = writer_cost(work / "full" / "predictions.jsonl", res["plan"]["eval"],
                                    len(a.shots) * a.trials, work / "writer")
        res["writer"]["load_avg"] = load1()
    if a.rices_images > 0:
        res["rices"] = child(a, "rices", [])
    res["load_end"] = os.getloadavg()
    return res


# -- --kill-resume (helpers: scale_resume.py) ------------------------------------------------------
def kill_resume(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Uninterrupted stub run over the whole eval split, then the same run SIGKILLed from outside at 50 % of
    its questions and resumed with the same command; same bytes, and what the interruption cost."""
    res: dict[str, Any] = {"args": {k: str(v) for k, v in vars(a).items()}, "cpus": os.cpu_count(),
                           "load_start": os.getloadavg()}
    generate(Path(a.data_root), sizes(a.scale))
    total = sizes(a.scale)["val"][0] * len(a.shots) * a.trials  # questions x (shots, trial)
    for key, out, kill in (("run", work / "full", False), ("kill", work / "killed", True)):
        res[key] = child_watched(_argv(a, "run", ["--out", str(out), "--time-writes"]), out, total // 2, kill)
    res["resume"] = child(a, "run", ["--out", str(work / "killed"), "--time-writes"])
    full, killed = work / "full" / "predictions.jsonl", work / "killed" / "predictions.jsonl"
    res["resume_identical"] = full.read_bytes() == killed.read_bytes()
    res["scores_identical"] = record_scores(work / "full") == record_scores(work / "killed")
    res["predictions_mb"] = full.stat().st_size / 2**20
    res["load_end"] = os.getloadavg()
    return res


def table(r: dict[str, Any]) -> str:
    pl = r.get("plan") or {}
    trials_n = len(r["args"]["shots"].strip("[]").split(",")) * int(r["args"]["trials"])
    rows = [] if not pl else [
        ("data load (prepare), full split", f"{pl['load_s']:.1f} s", ""),
        (f"demo choice, {pl['eval']:,} questions x {trials_n} trials", f"{pl['demos_s']:.1f} s", ""),
        ("planning = load + demo choice", f"{pl['load_s'] + pl['demos_s']:.1f} s", "<= 60 s"),
        ("peak RSS of planning", f"{pl['peak_rss_mb']:.0f} MB", "<= 2048 MB"),
        ("prompt build (real token counts) per question, by shots",
         ", ".join(f"{k}: {v:.0f} us" for k, v in pl["prompt_us_per_sample"].items()), ""),
        ("prompt build, full run (extrapolated)", f"{pl['prompt_s_extrapolated']:.0f} s", ""),
    ]
    if "run" in r:  # absent with --plan-only
        rows += _run_rows(r, trials_n)
    lines = ["| measure | value | target |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    load = f"load average (1 min) {r['load_start'][0]:.1f} at start, {r['load_end'][0]:.1f} at end on {r['cpus']} CPUs"
    return "\n".join(lines) + f"\n\n{load}\n"


def _run_rows(r: dict[str, Any], trials_n: int) -> list[tuple[str, str, str]]:
    run, kill, res = r["run"], r["kill"], r["resume"]
    f = float(r["args"]["fraction"])
    stub = run["eval_s"]
    write = run["part_s"] + run["save_s"]
    overhead = kill["eval_s"] + res["eval_s"] - run["eval_s"]  # evaluation only: restart = load + model
    restart = res["wall_s"] - res["eval_s"]
    rows = [
        (f"stub run ({run['eval']:,} questions = {f:.0%}, {trials_n} trials, batch 64)", f"{stub:.1f} s", ""),
        ("peak RSS of the stub run", f"{run['peak_rss_mb']:.0f} MB", ""),
        ("part-file appends (fsync every 2 s)", f"{run['part_s']:.2f} s ({run['part_s'] / stub:.1%})", ""),
        ("predictions.jsonl writes (append + index)", f"{run['save_s']:.2f} s ({run['save_s'] / stub:.1%})", ""),
        ("old writer (rebuild after each trial), same files", f"{run['old_rebuild_s']:.2f} s "
         f"({run['old_rebuild_s'] / stub:.1%})", ""),
        ("write overhead (appends + predictions)", f"{write / stub:.1%}", "<= 2 %"),
        ("kill at 50 % + resume, evaluation time", f"{kill['eval_s']:.1f} + {res['eval_s']:.1f} s vs "
         f"{stub:.1f} s uninterrupted", ""),
        ("resume overhead (killed + resumed - uninterrupted)", f"{overhead:.1f} s ({overhead / stub:.1%})",
         "<= 2 %"),
        ("restart cost (new process: imports, data load, tokenizer)", f"{restart:.1f} s", ""),
        ("resume reads (part files at open + before each trial), resumed process",
         f"{res['resume_reads_s']:.2f} s ({res['resume_reads_s'] / stub:.1%})" if "resume_reads_s" in res else "n/a",
         ""),
        ("model calls: uninterrupted / resumed (the kill came after half of them)",
         f"{run['model_calls']} / {res['model_calls']}", ""),
        ("finished predictions.jsonl byte-identical after the kill", str(r["resume_identical"]), "True"),
        ("predictions.jsonl size", f"{r['predictions_mb']:.0f} MB", ""),
    ]
    if "writer" in r:
        w = r["writer"]
        rows += [(f"predictions.jsonl writes alone, full size ({w['writer_mb']:.0f} MB, {trials_n} trials): "
                  "append + index / old rebuild", f"{w['writer_new_s']:.1f} s / {w['writer_old_s']:.1f} s "
                  f"(identical: {w['writer_identical']})", "")]
    if "rices" in r:
        rc = r["rices"]
        rows += [("RICES encode (random 64 px ViT-S-32), per image", f"{rc['per_image_ms']:.2f} ms", ""),
                 (f"RICES encode, {rc['distinct_images']:,} distinct images (each once)",
                  f"{rc['encode_s_distinct']:.0f} s", ""),
                 ("RICES search per query (full demo split)", f"{rc['per_query_ms']:.1f} ms", ""),
                 ("RICES search, before (every shots x trial) / now (once per query)",
                  f"{rc['search_s_full']:.0f} s / {rc['search_s_once']:.0f} s", "")]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=MEASURED,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shots", type=int, nargs="+", default=[0, 4, 8, 16, 32])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--fraction", type=float, default=0.1, help="share of the 214k eval questions in the stub run")
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "flamingo-eval-scale")
    ap.add_argument("--data-root", type=Path, default=None, help="default: CACHE_DIR/vqav2-<scale>")
    ap.add_argument("--scale", type=float, default=1.0, help="split sizes x SCALE (1: VQAv2's; less: smoke test)")
    ap.add_argument("--prompt-sample", type=int, default=2000)
    ap.add_argument("--rices-images", type=int, default=256, help="0: skip the RICES stage")
    ap.add_argument("--rices-queries", type=int, default=50)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--md", type=Path)
    ap.add_argument("--skip-plan", action="store_true", help="only the stub run, kill + resume (and RICES)")
    ap.add_argument("--plan-only", action="store_true", help="only the planning stage: data load, demo choice, RSS")
    ap.add_argument("--writer-only", type=Path, metavar="PREDICTIONS", help="time only the predictions writers")
    ap.add_argument("--kill-resume", action="store_true",
                    help="only: the stub run over the WHOLE eval split (--fraction ignored), uninterrupted, then "
                         "SIGKILLed from outside at 50%% of its questions and resumed with the same command; "
                         "byte-identity and the resume overhead (use --shots 0 --trials 1 for a few minutes)")
    ap.add_argument("--from-json", type=Path, help="print the table of a saved --json measurement")
    ap.add_argument("--child", choices=sorted(STAGES), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--instrument", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--time-writes", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.data_root = a.data_root or a.cache_dir / ("vqav2-full" if a.scale == 1 else f"vqav2-x{a.scale:g}")
    if a.writer_only:  # the full-size writer comparison alone, from a finished run's predictions.jsonl
        r = writer_cost(a.writer_only, sizes(a.scale)["val"][0], len(a.shots) * a.trials, a.cache_dir / "writer")
        print(json.dumps({**r, "load_avg": load1()}))
        return
    if a.from_json:  # re-render a saved measurement
        saved = json.loads(a.from_json.read_text())
        print(kill_table(saved) if "resume_identical" in saved and "plan" not in saved else table(saved))
        return
    if a.child:
        import torch

        torch.set_num_threads(1)
        print(json.dumps(STAGES[a.child](a)))
        return
    if a.kill_resume:
        a.fraction = 1.0
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as work:
        r = kill_resume(a, Path(work)) if a.kill_resume else measure(a, Path(work))
    md = kill_table(r) if a.kill_resume else table(r)
    print(md)
    if a.json:
        a.json.write_text(json.dumps(r, indent=1))
    if a.md:
        a.md.write_text(md)


if __name__ == "__main__":
    main()
