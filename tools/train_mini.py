"""Train the ``mini`` bridge and ship it: ``make train-mini`` (CPU, offline, deterministic for a seed).

Writes the trained tensors (perceiver, gated cross-attention, the two added token rows; fp16) to the
package's ``weights/mini-bridge.safetensors`` -- what the ``mini`` config loads -- and a training log next to
the docs: ``docs/training/mini-bridge.json`` (config, loss curve, validation, wall time, machine load) and
``docs/training/mini-bridge-loss.png``. What is trained and why it fits a 2-core CPU:
``flamingo_eval/training/``.

    python -m tools.train_mini                       # the shipped recipe
    python -m tools.train_mini --steps 40 --out runs/bridge.safetensors --log-dir runs/train-log   # a quick look
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flamingo_eval.display import TrainProgress
from flamingo_eval.training import History, Prepared, TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_OUT = ROOT / "flamingo_eval" / "weights" / "mini-bridge.safetensors"
DEFAULT_LOG = ROOT / "docs" / "training"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="bridge file (.safetensors)")
    p.add_argument("--log-dir", type=Path, default=DEFAULT_LOG, help="where the log JSON and loss PNG go")
    p.add_argument("--name", default="mini-bridge", help="file stem of the log and plot")
    for f in dataclasses.fields(TrainConfig):
        kinds: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str, "bool": _flag}
        kind = kinds.get(str(f.type).split(" ")[0], str)
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=None, help=f"(default {f.default})")
    return p.parse_args(argv)


def _flag(text: str) -> bool:
    if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")
    return text.lower() in ("1", "true", "yes")


def machine() -> dict[str, Any]:
    """What the wall time was measured on: CPU, cores, torch threads, load averages."""
    import torch

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "loadavg": list(os.getloadavg())}


def git_sha() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except OSError:
        return ""


def save(prepared: Prepared, cfg: TrainConfig, hist: History, out: Path) -> dict[str, object]:
    """Write the bridge (fp16 safetensors, with the recipe in its metadata); returns its size facts."""
    from safetensors.torch import save_file

    from flamingo_eval.models.checkpoints import bridge_state_dict

    state = bridge_state_dict(prepared.model, prepared.trainer.lm_vocab)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": "flamingo-eval bridge", "model": cfg.model, "recipe": json.dumps(dataclasses.asdict(cfg)),
            "final_val": json.dumps(hist.val[-1] if hist.val else {})}
    tmp = out.with_suffix(".tmp")
    save_file(state, str(tmp), metadata=meta)
    os.replace(tmp, out)
    return {"file": str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out),
            "bytes": out.stat().st_size, "tensors": len(state),
            "parameters": sum(v.numel() for v in state.values()), "dtype": "float16"}


def plot(hist: History, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(hist.steps, hist.loss, lw=0.6, alpha=0.4, label="train (per batch)")
    k = 25
    if len(hist.loss) >= k:
        smooth = [sum(hist.loss[i - k + 1 : i + 1]) / k for i in range(k - 1, len(hist.loss))]
        ax.plot(hist.steps[k - 1 :], smooth, lw=1.5, label=f"train (mean of {k})")
    ax.plot([v["step"] for v in hist.val], [v["loss"] for v in hist.val], "o-", label="validation")
    ax.set(xlabel="step", ylabel="cross-entropy (answer + end tokens)", yscale="log", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                 if getattr(args, f.name) is not None}
    cfg = TrainConfig(**overrides)
    progress = TrainProgress()
    before = machine()
    t0 = time.time()
    prepared, hist = train(cfg, progress)
    wall = time.time() - t0
    bridge: dict[str, Any] = save(prepared, cfg, hist, args.out)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    log = {"recipe": dataclasses.asdict(cfg), "git_sha": git_sha(), "bridge": bridge, "data": prepared.info,
           "wall_seconds": round(wall, 1), "seconds": hist.seconds, "machine_before": before,
           "machine_after": machine(), "validation": hist.val,
           "loss": [round(x, 5) for x in hist.loss]}
    (args.log_dir / f"{args.name}.json").write_text(json.dumps(log, indent=1) + "\n")
    plot(hist, args.log_dir / f"{args.name}-loss.png",
         f"{cfg.model} bridge: {wall / 60:.1f} min on {before['cores']} cores (load {before['loadavg'][0]:.1f})")
    final = hist.val[-1] if hist.val else {}
    progress.log(f"wrote {bridge['file']} ({bridge['bytes'] / 1e6:.2f} MB, {bridge['parameters']:,} parameters) "
                 f"in {wall / 60:.1f} min; final validation: {json.dumps(final)}")
    return 0


if __name__ == "__main__":
    from flamingo_eval.errors import UserError

    try:
        sys.exit(main())
    except UserError as e:  # bad input: one line, not a traceback
        print(f"train_mini: error: {e}", file=sys.stderr)
        sys.exit(2)
