"""``make demo`` runs ``mini-blind`` as a background job beside ``mini``: a Ctrl-C must stop both.

A background job of make's non-interactive shell starts with SIGINT ignored, so before the recipe's trap a
Ctrl-C stopped the ``mini`` run and left ``mini-blind`` running on, with make waiting for it. The recipe runs
here with a stand-in for ``flamingo-eval run`` (``DEMO_RUN``) that records its pid and sleeps.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

STAND_IN = """
import os, sys, time
model = sys.argv[sys.argv.index("--model") + 1]
open(model + ".pid", "w").write(str(os.getpid()))
try:
    time.sleep(120)
except KeyboardInterrupt:
    sys.exit(130)
"""


def _ctrl_c_ready() -> None:
    """A new session whose SIGINT does the default (the test may run under a shell that ignores it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.setsid()


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as gone: it runs nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_ctrl_c_during_make_demo_stops_both_runs(tmp_path):
    (tmp_path / "stand_in.py").write_text(STAND_IN)
    make = subprocess.Popen(
        ["make", "-f", str(ROOT / "Makefile"), "-o", "install", "-o", ".venv/.installed", "demo",
         f"DEMO_RUN={sys.executable} stand_in.py"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=_ctrl_c_ready)
    pids = [tmp_path / "mini.pid", tmp_path / "mini-blind.pid"]
    deadline = time.monotonic() + 60
    while not all(p.exists() and p.read_text() for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(p.exists() for p in pids), make.communicate(timeout=5)[0] if make.poll() is not None else "no pids"
    os.killpg(make.pid, signal.SIGINT)  # what the terminal does on Ctrl-C: the whole foreground group
    out, _ = make.communicate(timeout=60)
    assert make.returncode != 0, out
    assert "re-run make demo to resume" in out
    blind = int(pids[1].read_text())
    deadline = time.monotonic() + 10
    while _alive(blind) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(blind), "mini-blind kept running after Ctrl-C"
