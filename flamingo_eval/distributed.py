"""Data-parallel evaluation under ``torchrun``: rank/world from the environment, sharding, barriers.

``torchrun --nproc_per_node=K -m flamingo_eval run ...`` starts K copies of the CLI with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` and ``MASTER_ADDR/PORT`` set. With N GPUs on the node,
each copy owns N/K of them (the VLMEvalKit convention): local rank r owns GPUs r*N/K .. (r+1)*N/K - 1,
loads the model on the first (or split over all of them with ``model.device_map``, see
``models/placement.py``), evaluates its shard of every (shots, trial), and appends its predictions to
its own part file in the run directory; after each trial rank 0 merges the parts in the canonical sample
order and scores once (``flamingo_eval/results/store.py``).

Sharding is by position in the eval split's canonical order (``index % world_size == rank``): every
sample lands on exactly one rank, no padding duplicates, balanced to one sample. Which rank evaluates a
sample never changes its prompt: demos are keyed by sample id (docs/protocol.md).

Backend: ``gloo`` only, on CPU and GPU alike. The runner exchanges nothing but barriers and small Python
objects (no tensors between ranks), so an NCCL group would only cost start-up time and GPU memory. A
single process (no torchrun, or torchrun with one process) opens no process group at all. The run
directory must be on a filesystem all ranks see (shared storage on multi-node jobs).

CPU threads (``run.threads``): by default each process uses its share of the cores it may run on — the
affinity mask, capped by a cgroup CPU quota, divided by torchrun's ``LOCAL_WORLD_SIZE`` — or exactly
``OMP_NUM_THREADS`` when that is set (a per-process setting by definition; torchrun sets it to 1 for
multi-process jobs unless you do). See docs/running-at-scale.md.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["Dist", "apply_threads", "available_cpus", "current", "default_threads", "from_env", "init",
           "local_device", "shard", "shutdown"]

T = TypeVar("T")

TIMEOUT_ENV = "FLAMINGO_EVAL_DIST_TIMEOUT"
"""Seconds a rank waits at a barrier (others still evaluating, rank 0 scoring); default 4 hours."""


@dataclass(frozen=True)
class Dist:
    """This process's place in the job; ``world_size == 1`` is the plain single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    """Processes of this job on this node (torchrun's ``LOCAL_WORLD_SIZE``): they share its GPUs."""
    group: Any = None
    """The process group used for barriers and object broadcasts (gloo); None when single-process."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (no-op for a single process)."""
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier(group=self.group)

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (pickled by torch between our own processes only)."""
        if self.world_size == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]  # type: ignore[no-any-return]


_CURRENT = Dist()


def from_env(env: dict[str, str] | None = None) -> Dist:
    """Rank, world size and local rank as torchrun sets them (absent: a single process)."""
    e = os.environ if env is None else env
    try:
        world = int(e.get("WORLD_SIZE", "1"))
        rank = int(e.get("RANK", "0"))
        local = int(e.get("LOCAL_RANK", str(rank)))
        local_world = int(e.get("LOCAL_WORLD_SIZE", str(world)))
    except ValueError:
        from flamingo_eval.errors import UserError

        raise UserError("RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE must be integers "
                        "(set by torchrun)") from None
    if world < 1 or not 0 <= rank < world or not 0 <= local < max(local_world, 1):
        from flamingo_eval.errors import UserError

        raise UserError(f"bad torchrun environment: RANK={rank} WORLD_SIZE={world} LOCAL_RANK={local} "
                        f"LOCAL_WORLD_SIZE={local_world}")
    return Dist(rank=rank, world_size=world, local_rank=local, local_world_size=max(local_world, 1))


def local_device(device: str, d: Dist) -> str:
    """``cuda`` -> this process's first GPU in a multi-process job (local rank r of K on N GPUs: r*N/K).

    Returns ``device`` unchanged for a single process, on CPU, or for an explicit ``cuda:N``.
    """
    if d.world_size > 1 and device in ("cuda", "auto"):
        import torch

        n = torch.cuda.device_count()
        if n:
            first = (d.local_rank * max(1, n // d.local_world_size)) % n
            torch.cuda.set_device(first)
            return f"cuda:{first}"
    return device


def init(device: str = "cpu") -> Dist:
    """Join the torchrun job (once per process) and return this process's :class:`Dist`.

    ``device`` is accepted for callers' symmetry; the group is gloo whatever the device (module docstring).
    A world of one process (``torchrun --nproc-per-node=1`` included) opens no group.
    """
    global _CURRENT
    d = from_env()
    if d.world_size == 1:
        _CURRENT = d
        return d
    import torch.distributed as dist

    timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, 4 * 3600)))
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo", timeout=timeout)
    group = dist.new_group(backend="gloo", timeout=timeout) if dist.get_backend() != "gloo" else dist.group.WORLD
    _CURRENT = Dist(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=d.local_rank,
                    local_world_size=d.local_world_size, group=group)
    return _CURRENT


def current() -> Dist:
    """The :class:`Dist` set by :func:`init` (a single process until then)."""
    return _CURRENT


def shutdown() -> None:
    """Leave the process group (safe to call when none was joined)."""
    global _CURRENT
    if _CURRENT.world_size > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    _CURRENT = Dist()


def _cgroup_v2_limit(root: Path, proc_cgroup: str) -> float | None:
    own = next((ln[3:] for ln in proc_cgroup.splitlines() if ln.startswith("0::")), None)
    if own is None:
        return None
    limits = []
    d = root / own.strip().lstrip("/")
    while True:  # a parent's quota caps its children too
        try:
            quota, period = (d / "cpu.max").read_text().split()[:2]
            if quota != "max":
                limits.append(int(quota) / int(period))
        except (OSError, ValueError):
            pass
        if d == root or root not in d.parents:
            break
        d = d.parent
    return min(limits) if limits else None


def _cgroup_v1_limit(root: Path) -> float | None:
    for sub in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        try:
            quota = int((root / sub / "cpu.cfs_quota_us").read_text())
            period = int((root / sub / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return quota / period if quota > 0 and period > 0 else None
    return None


def available_cpus(root: Path = Path("/sys/fs/cgroup"), proc_cgroup: str | None = None) -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (v2 ``cpu.max`` of its
    cgroup and parents, else v1 ``cpu.cfs_quota_us``), rounded up; at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    if proc_cgroup is None:
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            proc_cgroup = ""
    quota = _cgroup_v2_limit(root, proc_cgroup)
    if quota is None:
        quota = _cgroup_v1_limit(root)
    if quota is not None:
        n = min(n, math.ceil(quota))
    return max(n, 1)


def default_threads(env: Mapping[str, str] | None = None, cpus: int | None = None) -> int:
    """``run.threads`` when unset: ``OMP_NUM_THREADS`` if set, else this process's share of
    :func:`available_cpus` among torchrun's ``LOCAL_WORLD_SIZE`` processes on this node."""
    e = os.environ if env is None else env
    omp = e.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if omp.isdigit() and int(omp) >= 1:
        return int(omp)
    local = e.get("LOCAL_WORLD_SIZE", "1")
    per_node = int(local) if local.isdigit() and int(local) >= 1 else 1
    return max((available_cpus() if cpus is None else cpus) // per_node, 1)


def apply_threads(requested: int | None) -> int:
    """Set torch's intra-op (and, once per process, inter-op) thread count; returns the count used."""
    import torch

    n = requested or default_threads()
    torch.set_num_threads(n)
    with contextlib.suppress(RuntimeError):  # only settable before the first inter-op work of the process
        torch.set_num_interop_threads(n)
    return n


def shard(items: Sequence[T], d: Dist) -> list[T]:
    """This rank's items: positions ``rank, rank + world, ...`` (disjoint, covering, balanced)."""
    return list(items[d.rank :: d.world_size])
