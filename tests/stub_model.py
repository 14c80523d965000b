"""The ``EvalModel`` members that test stubs (no weights, no device, no video) all answer the same way."""

from __future__ import annotations

from typing import Any


class StubExtras:
    """Mixed into a stub model: fp32 on the CPU, one device, not timed, no video decoded."""

    precision = "fp32"
    placement: str | None = None
    device = "cpu"
    timer: Any = None

    def media_stats(self) -> dict[str, Any]:
        return {}
