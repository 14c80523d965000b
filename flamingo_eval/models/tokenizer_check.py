"""Is a tokenizer usable? Files checked before torch loads; a loaded tokenizer must round-trip a short text.

transformers builds a tokenizer from a directory holding only ``config.json`` (a 1-token vocabulary that
encodes every text to nothing): every generation is then empty and a run would finish "complete" with
wrong results. Both checks turn that into one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flamingo_eval.errors import UserError

__all__ = ["ROUND_TRIP_TEXT", "check_round_trip", "check_tokenizer_dir", "tokenizer_files_problem"]

ROUND_TRIP_TEXT = "a red dog"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "vocab.txt", "tiktoken.model")
"""Any of these makes a vocabulary (``vocab.json`` goes with ``merges.txt``; ``tokenizer_config.json`` alone
does not)."""


def tokenizer_files_problem(path: Path) -> str | None:
    """Why directory ``path`` cannot hold a tokenizer (empty, or none of :data:`TOKENIZER_FILES`); None if it
    may, or if ``path`` is not a local directory (a hub id is checked by loading it)."""
    if not path.is_dir():
        return None
    names = {p.name for p in path.iterdir()}
    if not names:
        return f"{path} is empty"
    if not names & set(TOKENIZER_FILES):
        return (f"{path} has no tokenizer files (tokenizer.json, tokenizer.model or vocab.json + merges.txt; "
                f"it holds {', '.join(sorted(names)[:6])}{', ...' if len(names) > 6 else ''})")
    return None


def check_tokenizer_dir(path: str | None) -> None:
    """A local tokenizer directory that is empty or holds no tokenizer files: one line, before torch.

    Raises:
        UserError: naming the directory and the fix (``model.lm.tokenizer=DIR``).
    """
    problem = tokenizer_files_problem(Path(path).expanduser()) if path else None
    if problem:
        raise UserError(f"tokenizer directory {problem}; pass the model's own tokenizer directory as "
                        "model.lm.tokenizer=DIR")


def check_round_trip(tok: Any, path: str | Path, fix: str) -> None:
    """Raise one :class:`UserError` unless ``tok`` encodes and decodes ``"a red dog"`` back to itself."""
    ids = tok(ROUND_TRIP_TEXT, add_special_tokens=False)["input_ids"]
    back = " ".join(str(tok.decode(ids, skip_special_tokens=True)).split()) if ids else ""
    if back != ROUND_TRIP_TEXT:
        raise UserError(f"tokenizer '{path}' cannot round-trip a short text ({ROUND_TRIP_TEXT!r} -> {len(ids)} ids "
                        f"-> {back!r}; vocabulary of {len(tok)}): it is not a real tokenizer; {fix}")
