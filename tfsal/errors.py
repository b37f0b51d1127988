"""The one public error type and helpers that phrase "expected X, received Y"."""

from __future__ import annotations


class TfsalError(ValueError):
    """Raised for any bad input to tfsal; the message states what was expected and what came."""


def expected(what: str, received: object) -> TfsalError:
    """Build a `TfsalError` reading "expected <what>, received <received>"."""
    return TfsalError(f"expected {what}, received {received}")
