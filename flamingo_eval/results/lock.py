"""One run per output directory: an exclusive OS file lock held for the whole run.

``flock(LOCK_EX | LOCK_NB)`` on ``<output>/.flamingo-eval.lock``: a second run on the same ``--output``
is refused at once with one line naming the holder (pid and host written into the file). The kernel
releases the lock when the holder exits in any way (SIGKILL, OOM, node reboot), so a killed run never
leaves a stale lock; the file itself is removed on a normal exit. Under torchrun only rank 0 locks and
its answer is broadcast, so every rank of a refused job stops with the same line. On NFS, Linux maps
``flock`` to POSIX byte-range locks, which NFSv4 (and v3 with lockd) enforce across nodes.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from flamingo_eval.distributed import Dist
from flamingo_eval.errors import UserError
from flamingo_eval.results.records import write_error

__all__ = ["LOCK_FILE", "OutputLock", "exclusive_output", "refuse_if_locked"]

LOCK_FILE = ".flamingo-eval.lock"


class OutputLock:
    """The exclusive lock of one output directory (acquire / release; not re-entrant)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir, self.path = out_dir, out_dir / LOCK_FILE
        self._fd: int | None = None
        self._made_dir = False

    def acquire(self) -> None:
        """Create the directory if needed and take the lock.

        Raises:
            UserError: another process holds it, the path is a file, or it cannot be created.
        """
        try:
            import fcntl
        except ImportError:  # not POSIX: no OS locks; runs on one output must not overlap
            return
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise UserError(f"--output {self.out_dir} is a file, not a directory; choose another --output")
        self._made_dir = not self.out_dir.exists()
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            while True:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                    os.close(fd)
                    raise UserError(f"{self.out_dir} is in use by another flamingo-eval run ({holder}); wait for "
                                    "it to finish or choose another --output") from None
                if self._same_file(fd):
                    break
                os.close(fd)  # the holder removed the file between our open and flock: lock the new one
        except OSError as e:
            raise write_error(self.path, e) from None
        self._fd = fd
        with contextlib.suppress(OSError):  # who holds it, for the refusal message (best effort)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)

    def _same_file(self, fd: int) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

    def release(self) -> None:
        """Remove the lock file, then drop the lock (a racing opener re-checks the inode and retries)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None
        if self._made_dir:  # a run that failed before writing anything leaves no empty directory behind
            with contextlib.suppress(OSError):
                self.out_dir.rmdir()


@contextlib.contextmanager
def exclusive_output(out_dir: Path, dist: Dist) -> Iterator[None]:
    """Hold ``out_dir``'s lock for the block: rank 0 takes it, a refusal stops every rank with one line."""
    lock = OutputLock(out_dir)
    err = ""
    if dist.is_main:
        try:
            lock.acquire()
        except UserError as e:
            err = str(e)
    err = dist.broadcast(err)
    if err:
        raise UserError(err)
    try:
        yield
    finally:
        lock.release()


def refuse_if_locked(out_dir: Path) -> None:
    """Refuse at once (before any heavy import) an ``out_dir`` whose lock another live run holds.

    A probe only: nothing is created and the lock is not kept (:func:`exclusive_output` takes it later, and
    still refuses a run that started in between).
    """
    try:
        import fcntl
    except ImportError:
        return
    try:
        fd = os.open(out_dir / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # no lock file (or not readable): nobody holds it, or acquire() names the problem
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        raise UserError(f"{out_dir} is in use by another flamingo-eval run ({holder}); wait for it to finish or "
                        "choose another --output") from None
    except OSError:
        return
    finally:
        os.close(fd)
