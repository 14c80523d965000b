"""Video files on disk: which containers are accepted, how a clip is found by its stem, what is wrong with one.

Official downloaders leave each clip in whatever container YouTube served (youtube-dl / yt-dlp: ``.mp4``,
``.mkv`` or ``.webm``; MSVD ships ``.avi``), sometimes with an upper-case extension. A card's
``video_pattern`` names one file (``{name}.mp4``); :class:`VideoFinder` finds that stem with any container of
:data:`VIDEO_EXTENSIONS` (extension case ignored), the pattern's own extension first. It lists each directory
once (``os.scandir``), so resolving thousands of clips costs one listing per folder plus dictionary lookups.

:func:`file_problem` says what is wrong with a media path using ``lstat``/``stat`` and the permission bits only:
nothing is opened or decoded. ``flamingo-eval data check`` and the start-up check of a run use it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["VIDEO_EXTENSIONS", "VideoFinder", "accepted", "file_problem", "video_problems"]

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
"""Containers a clip may come in (compared case-insensitively); FFmpeg (PyAV) reads all of them."""


def accepted() -> str:
    """The accepted extensions as one short phrase for messages."""
    return "/".join(VIDEO_EXTENSIONS) + " (any case)"


def file_problem(path: str | os.PathLike[str]) -> str | None:
    """What makes ``path`` unusable as a media file, or None when it is a readable, non-empty regular file.

    Stat only: ``missing``, ``broken symbolic link``, ``symbolic link loop``, ``a directory``, ``not a regular
    file (a device, socket or pipe)``, ``not readable (permission denied)``, ``empty (zero-byte) file``.
    """
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return "broken symbolic link (its target is missing)" if os.path.islink(p) else "missing"
    except OSError as e:  # ELOOP: the links point at each other; ENOTDIR: a file where a folder should be
        if os.path.islink(p):
            return "symbolic link loop" if e.errno == 40 else f"unusable symbolic link ({e.strerror})"
        return f"not reachable ({e.strerror})"
    if stat.S_ISDIR(st.st_mode):
        return "a directory, not a video file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a device, socket or pipe)"
    if not os.access(p, os.R_OK):
        return "not readable (permission denied)"
    if st.st_size == 0:
        return "empty (zero-byte) file"
    return None


class VideoFinder:
    """Finds a clip by its stem in any accepted container (module docstring); one listing per directory."""

    def __init__(self) -> None:
        self._dirs: dict[Path, tuple[set[str], dict[str, list[str]]]] = {}

    def _listing(self, folder: Path) -> tuple[set[str], dict[str, list[str]]]:
        if folder not in self._dirs:
            names: set[str] = set()
            stems: dict[str, list[str]] = {}
            try:
                with os.scandir(folder) as it:
                    for entry in it:
                        names.add(entry.name)
                        stem, ext = os.path.splitext(entry.name)
                        if ext.lower() in VIDEO_EXTENSIONS:
                            stems.setdefault(stem, []).append(entry.name)
            except OSError:
                pass  # a missing or unreadable folder: nothing found; file_problem names the path
            self._dirs[folder] = (names, stems)
        return self._dirs[folder]

    def find(self, path: Path) -> Path | None:
        """``path`` if it exists, else the same stem with another accepted container, else None.

        ``path``'s own extension is tried first, then :data:`VIDEO_EXTENSIONS` in order (a clip downloaded
        twice in two containers resolves the same way every time).
        """
        names, stems = self._listing(path.parent)
        if path.name in names:
            return path
        stem, ext = os.path.splitext(path.name)
        if ext.lower() not in VIDEO_EXTENSIONS:  # a pattern without an extension: the whole name is the stem
            stem, ext = path.name, ""
        hits = stems.get(stem)
        if not hits:
            return None
        order = [ext.lower(), *VIDEO_EXTENSIONS]
        return path.parent / min(hits, key=lambda n: (order.index(os.path.splitext(n)[1].lower()), n))


def video_problems(samples: Iterable[Any]) -> list[tuple[str, str]]:
    """(path, problem) of every distinct video of ``samples`` (``Sample`` objects) that is not a readable,
    non-empty regular file, in first-seen order; stat only (:func:`file_problem`)."""
    from flamingo_eval.types import VideoRef

    seen: set[str] = set()
    out = []
    for sample in samples:
        for item in sample.media:
            if isinstance(item, VideoRef) and item.path not in seen:
                seen.add(item.path)
                problem = file_problem(item.path)
                if problem is not None:
                    out.append((item.path, problem))
    return out
