"""The output half of ``tools/gpu_check.py``: ``DIR/gpu_check.json``, the test summary and ``gpu_check.md``.

Every stage adds its part to the JSON file as soon as it has it (:func:`update`, an atomic rewrite), so a
stage that fails or runs out of time leaves the others' numbers in place; the ``report`` stage adds the stage
exit codes (``stages.txt``) and the gpu-marked tests' results (``gpu-tests.xml``) and writes the Markdown table.
"""

from __future__ import annotations

import json
import os
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any


def json_path(out: Path) -> Path:
    return out / "gpu_check.json"


def update(out: Path, key: str, value: Any) -> None:
    """Set ``key`` in DIR/gpu_check.json (atomic rewrite)."""
    path = json_path(out)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def log(msg: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", flush=True)



def tests_summary(xml: Path) -> dict[str, Any]:
    if not xml.exists():
        return {"error": "no gpu-tests.xml (the test stage did not run or was killed)"}
    cases = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        status = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                status = "failed"
            elif child.tag == "skipped":
                status = "skipped"
        cases.append({"name": case.get("name"), "status": status, "seconds": float(case.get("time", 0))})
    counts = {s: sum(c["status"] == s for c in cases) for s in ("passed", "failed", "skipped")}
    return {**counts, "cases": cases}


def report_stage(out: Path) -> int:
    stages = []
    if (out / "stages.txt").exists():
        for line in (out / "stages.txt").read_text().splitlines():
            name, rc, secs = line.split()
            stages.append({"stage": name, "rc": int(rc), "seconds": int(secs)})
    update(out, "stages", stages)
    update(out, "tests", tests_summary(out / "gpu-tests.xml"))
    data = json.loads(json_path(out).read_text())
    (out / "gpu_check.md").write_text(markdown(data))
    log(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    return 0


def markdown(data: dict[str, Any]) -> str:
    env, bench, tests = data.get("env", {}), data.get("bench", {}), data.get("tests", {})
    lines = [f"# GPU check: {env.get('gpu', 'CPU dry run' if env.get('dry_run') else '?')}", "",
             f"torch {env.get('torch')}, CUDA {env.get('cuda')}, transformers {env.get('transformers')}, "
             f"accelerate {env.get('accelerate')}; bf16 matmul peak {env.get('matmul_peak_tflops', '-')} TFLOP/s; "
             f"fp32 logits via {env.get('fp32_logits_kernel', '-')}", "",
             "| stage | exit code | seconds |", "|---|---|---|"]
    lines += [f"| {s['stage']} | {s['rc']} | {s['seconds']} |" for s in data.get("stages", [])]
    lines += ["", f"gpu-marked tests: {tests.get('passed', 0)} passed, {tests.get('failed', 0)} failed, "
                  f"{tests.get('skipped', 0)} skipped" + (f" ({tests['error']})" if "error" in tests else "")]
    lines += [f"- FAILED {c['name']}" for c in tests.get("cases", []) if c["status"] == "failed"]
    model, spec = bench.get("model", {}), bench.get("spec", {})
    lines += ["", f"Bench: {model.get('params_total_m', '?')}M parameters ({model.get('params_lm_m', '?')}M LM, "
                  f"{model.get('params_vision_m', '?')}M vision), {model.get('dtype', '?')}, {spec.get('shots')}-shot "
                  f"VQA, batch {spec.get('batch')}, beam {spec.get('beams')}, {spec.get('new_tokens')} new tokens; "
                  f"build {bench.get('build_s', '?')} s; MFU against {bench.get('peak_source', '?')}", "",
              "| row | queries | samples/s | vs reference | vision s | prefill s | decode s | prefill MFU | vision MFU "
              "| decode tokens/s | peak GPU GiB | vision encodes |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in bench.get("runs", {}).items():
        ph = r.get("phases", {})
        lines.append(f"| {name} | {r['queries']} | {r['samples_per_s']} | {r.get('speedup_vs_reference', '-')} | "
                     f"{ph.get('vision', '-')} | {ph.get('prefill', '-')} | {ph.get('decode', '-')} | "
                     f"{r.get('prefill_mfu', '-')} | {r.get('vision_mfu', '-')} | "
                     f"{r.get('decode_tokens_per_s', '-')} | "
                     f"{r.get('peak_gpu_gib', '-')} | {r['vision_encodes']} |")
    if bench.get("reference_agreement"):
        lines += ["", f"Engine vs reference: {bench['reference_agreement']}."]
    lines += [f"- {k}: {v}" for k, v in bench.get("errors", {}).items()]
    return "\n".join(lines) + "\n"
