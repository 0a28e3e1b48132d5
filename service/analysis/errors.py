"""The one error the analysis raises when it refuses its input."""

from __future__ import annotations


class AnalysisError(ValueError):
    """An argument or input ``analyze`` cannot work with.

    ``field`` names what to blame (an ``analyze`` argument such as ``"baseline"`` or
    ``"alpha"``, or a part of the view such as ``"view.variants"``) so a caller can map it onto
    its own inputs without reading the message; ``reason`` says what is wrong with it. A
    ``ValueError`` so callers that predate it keep catching it.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def __reduce__(self) -> tuple[type[AnalysisError], tuple[str, str]]:
        """Pickle by ``(field, reason)``: the default would call ``cls(message)``."""
        return type(self), (self.field, self.reason)
