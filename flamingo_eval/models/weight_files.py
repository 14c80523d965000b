"""Weight files: what a file really is, its pickled names without loading it, and reading it safely.

Every model file the project reads (an OpenFlamingo ``checkpoint.pt``, an HF LM shard, a vision tower's
weights) goes through :func:`read_state_file`, so a bad file gives the same kind of one-line message wherever
it is named: a git-lfs pointer, an HTML page saved by a failed download, a text file, an empty or truncated
file, a plain ``pickle.dump`` (not ``torch.save``), a directory, a broken link or a symlink loop. The kind is
decided from the first bytes, never from the file name.

Reading is safe: safetensors, or ``torch.load(weights_only=True)`` (a pickle that would import or call
anything is refused before any of it runs). :func:`pickled_strings` lists the strings of a torch file's
pickle (its tensor names) with :mod:`pickletools`, which parses opcodes and executes nothing; it and
:func:`sniff` import neither torch nor safetensors, so configs can be checked before the heavy imports.
"""

from __future__ import annotations

import errno
import itertools
import os
import pickletools
import stat
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from flamingo_eval.errors import UserError

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["check_file", "check_weights_file", "pickled_strings", "read_state_file", "sniff"]

LFS_POINTER = b"version https://git-lfs.github.com/spec/"
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
"""The number ``torch.save`` pickles first in its legacy (non-zip) format."""
_HEAD = 1024
_STRING_OPS = {"BINUNICODE", "SHORT_BINUNICODE", "UNICODE", "BINUNICODE8", "BINSTRING", "SHORT_BINSTRING", "STRING"}


def check_file(path: Path, what: str, fix: str, dir_fix: str | None = None) -> Path:
    """``path`` when it is a regular file (symlinks followed); else one :class:`UserError` saying what it is.

    Args:
        path: The file.
        what: What the file is for, first words of the message (``"checkpoint"``).
        fix: How to point at the right file (``"pass model.checkpoint=FILE"``).
        dir_fix: The fix when ``path`` is a directory (default: ``fix``).
    """
    try:
        st = path.stat()
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UserError(f"{what} {path} is a symlink loop (a link that points back to itself); "
                            f"fix or replace the link, or {fix}") from None
        if path.is_symlink():
            raise UserError(f"{what} {path} is a broken symlink (to {os.readlink(path)}, which does not exist); "
                            f"fix the link, or {fix}") from None
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise UserError(f"{what} {path} does not exist; {fix}") from None
        raise UserError(f"cannot read {what} {path} ({e.strerror}); {fix}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{what} {path} is a directory, not a file; {dir_fix or fix}")
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{what} {path} is not a regular file; {fix}")
    return path


def sniff(path: Path) -> str:
    """What ``path`` holds, from its first bytes.

    Returns:
        ``empty`` | ``lfs`` (git-lfs pointer) | ``zip`` (``torch.save``) | ``pickle`` | ``safetensors`` |
        ``gguf`` | ``html`` | ``text`` | ``unknown``.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(_HEAD)
    if not head:
        return "empty"
    if head.startswith(LFS_POINTER):
        return "lfs"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head[:1] == b"\x80":
        return "pickle"
    if head.startswith(b"GGUF"):
        return "gguf"
    if len(head) > 8 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    lowered = head.lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or b"<html" in lowered[:512]:
        return "html"
    if b"\x00" not in head:
        try:
            head[: len(head) - 4 if len(head) == _HEAD else None].decode("utf-8")  # a cut multibyte char is fine
            return "text"
        except UnicodeDecodeError:
            pass
    return "unknown"


def _not_weights(path: Path, what: str, kind: str, fix: str) -> UserError:
    """The message for a file that holds no weights at all."""
    if kind == "lfs":
        return UserError(f"{what} {path} is a git-lfs pointer, not the weights: run `git lfs pull` in its "
                         "repository (or download the file itself)")
    if kind == "html":
        return UserError(f"{what} {path} is an HTML or XML page, not weights: the download saved a web page "
                         "(a login, error or redirect page); download the raw file again")
    if kind == "empty":
        return UserError(f"{what} {path} is empty (0 bytes): the download or copy did not finish; fetch it again")
    if kind == "gguf":
        return UserError(f"{what} {path} is a GGUF file (llama.cpp), not a PyTorch or safetensors state dict; "
                         "convert it to a Hugging Face directory first")
    if kind == "text":
        first = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[:1]
        shown = (first[0][:60] + "...") if first and len(first[0]) > 60 else (first[0] if first else "")
        return UserError(f"{what} {path} is a text file ({shown!r}), not weights; {fix}")
    with path.open("rb") as f:
        start = f.read(8).hex()
    return UserError(f"{what} {path} is not a torch.save, safetensors or pickle file (it starts with bytes "
                     f"{start}); {fix}")


def check_weights_file(path: Path, what: str = "weights file", fix: str = "pass a checkpoint file",
                       dir_fix: str | None = None) -> str:
    """What kind of weights file ``path`` is, reading only its first bytes and headers (no torch).

    Returns:
        ``safetensors`` | ``zip`` (``torch.save``) | ``legacy`` (pre-1.6 ``torch.save``).

    Raises:
        UserError: anything else, named for what it is (see :func:`check_file` for the arguments).
    """
    check_file(path, what, fix, dir_fix)
    kind = sniff(path)
    if kind == "safetensors" or (kind == "unknown" and path.suffix == ".safetensors"):
        problem = _safetensors_problem(path)
        if problem:
            raise UserError(f"{what} {path} is not a valid safetensors file ({problem}): it is damaged or "
                            "truncated; download or save it again")
        return "safetensors"
    if kind == "zip":
        try:
            with zipfile.ZipFile(path) as z:
                z.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise UserError(f"{what} {path} is a damaged or truncated torch.save file ({e}); download or save it "
                            "again") from None
        return kind
    if kind == "pickle":
        if _first_pickle(path) != TORCH_LEGACY_MAGIC:
            raise _plain_pickle(path, what)
        return "legacy"
    raise _not_weights(path, what, kind, fix)


def _safetensors_problem(path: Path) -> str | None:
    """Why the safetensors header of ``path`` is unusable (bad header, data past the end), or None."""
    import json

    size = path.stat().st_size
    with path.open("rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n <= 0 or n > size - 8:
            return f"header length {n} does not fit in {size} bytes"
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError):
            return "its header is not valid JSON"
    try:
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return "its header does not describe tensors"
    if ends and max(ends) > size - 8 - n:
        return f"its tensors need {max(ends) + 8 + n} bytes, the file has {size}"
    return None


def read_state_file(path: Path, what: str = "weights file", fix: str = "pass a checkpoint file",
                    dir_fix: str | None = None) -> object:
    """The object saved in a weights file, on CPU: a safetensors dict, or a weights-only ``torch.load``.

    Args:
        path: A ``.safetensors``, ``torch.save`` (zip or legacy) file; the kind is read from the content.
        what, fix, dir_fix: Words of the error messages (see :func:`check_file`).

    Raises:
        UserError: one line naming the file, what it actually is and the fix.
    """
    kind = check_weights_file(path, what, fix, dir_fix)
    if kind == "safetensors":
        return _read_safetensors(path, what)
    return _torch_load(path, what, mmap=kind == "zip")


def _read_safetensors(path: Path, what: str) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return dict(load_file(str(path), device="cpu"))
    except Exception as e:  # noqa: BLE001 - SafetensorError, and OSError/ValueError on truncated files
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{what} {path} is not a valid safetensors file ({detail}): it is damaged or truncated; "
                        "download or save it again") from None


def _torch_load(path: Path, what: str, mmap: bool) -> object:
    import pickle

    import torch

    try:
        with warnings.catch_warnings():  # pickle-protocol notices are about the file, not for the user
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        if "Unsupported operand" in str(e):  # e.g. pickle protocol 4 frames: not code, just unreadable safely
            raise UserError(f"{what} {path} was saved with a pickle protocol torch's weights-only reader does not "
                            "support; re-save it with torch.save(state_dict) (default protocol) or as .safetensors"
                            ) from None
        detail = next((ln.strip() for ln in str(e).splitlines() if "global" in ln.lower()), "")
        raise UserError(f"refused to load {what} {path}: it is a pickle that would import or run code "
                        f"({detail or 'not a weights-only file'}); only tensors are accepted. Re-save it as a "
                        "plain state dict or .safetensors from a trusted environment") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{what} {path} is a damaged or truncated torch.save file ({detail}); download or save "
                        "it again") from None


def _pickle_ops(f: IO[bytes]) -> Iterator[tuple[str, object]]:
    """(opcode name, argument) of ONE pickle read from ``f``; parsing only, nothing is executed."""
    for op, arg, _pos in pickletools.genops(f):
        yield op.name, arg


def _first_pickle(path: Path) -> object:
    """The value of the file's first pickle when it is just an int (torch's legacy magic number), else None."""
    try:
        with path.open("rb") as f:  # PROTO [FRAME] LONG1 [MEMOIZE] STOP: never reads further than 8 opcodes
            ops = [(n, a) for n, a in itertools.islice(_pickle_ops(f), 8) if n not in ("PROTO", "FRAME", "MEMOIZE")]
    except (ValueError, EOFError):
        return None
    if len(ops) != 2 or ops[1][0] != "STOP" or not isinstance(ops[0][1], int):
        return None
    return ops[0][1]


def _plain_pickle(path: Path, what: str) -> UserError:
    """A ``pickle.dump`` file: name what it would import, or say it holds no tensors."""
    imports: list[str] = []
    recent: list[str] = []
    try:
        with path.open("rb") as f:
            for name, arg in _pickle_ops(f):
                if name in _STRING_OPS:
                    recent = [*recent[-1:], str(arg)]
                elif name == "GLOBAL":
                    imports.append(str(arg).replace(" ", "."))
                elif name == "STACK_GLOBAL" and len(recent) == 2:
                    imports.append(".".join(recent))
    except (ValueError, EOFError):
        return UserError(f"{what} {path} is a damaged pickle (it ends early); download or save it again")
    if imports:
        return UserError(f"refused to load {what} {path}: it is a plain Python pickle (pickle.dump, not torch.save) "
                         f"that imports {imports[0]}, so loading it could run code; re-save it with "
                         "torch.save(state_dict) or as .safetensors from a trusted environment")
    return UserError(f"{what} {path} is a plain Python pickle of data without tensors (pickle.dump, not "
                     "torch.save): not a checkpoint")


def pickled_strings(path: Path) -> list[str]:
    """Every string in the pickle of a ``torch.save`` file (its tensor names among them), without torch.

    Zip format: the ``*/data.pkl`` member; legacy format: the pickles before the raw storage bytes.
    ``safetensors`` files give their tensor names from the JSON header. Anything else: ``[]``.
    """
    import json

    kind = sniff(path)
    try:
        if kind == "safetensors":
            with path.open("rb") as f:
                n = int.from_bytes(f.read(8), "little")
                return [k for k in json.loads(f.read(n)) if k != "__metadata__"]
        if kind == "zip":
            with zipfile.ZipFile(path) as z:
                member = next((m for m in z.namelist() if m.endswith("data.pkl") and m.count("/") == 1), None)
                if member is None:
                    return []
                with z.open(member) as f:
                    return [str(a) for n, a in _pickle_ops(f) if n in _STRING_OPS]
        if kind == "pickle":
            out: list[str] = []
            with path.open("rb") as f:
                for _ in range(4):  # magic number, protocol, sys info, the saved object
                    out += [str(a) for n, a in _pickle_ops(f) if n in _STRING_OPS]
            return out
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, UnicodeDecodeError):
        return []
    return []
