"""How a config refuses input: one error naming the field and the reason."""

from __future__ import annotations

from pydantic import ValidationError


class ConfigError(ValueError):
    """A config that cannot be built; ``field`` names where, the message says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def describe_validation_error(err: ValidationError) -> list[dict[str, str]]:
    """pydantic's errors as ``[{"field": "a.b", "reason": "..."}]``."""
    out = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        msg = e["msg"].removeprefix("Value error, ")
        # our validators say "field: reason" for the field inside the section they check
        head, sep, rest = msg.partition(": ")
        if sep and head.replace("_", "").replace(".", "").isalnum() and " " not in head:
            loc.append(head)
            msg = rest
        out.append({"field": ".".join(loc) or "<root>", "reason": msg})
    return out
