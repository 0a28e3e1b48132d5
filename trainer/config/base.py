"""What every config section is built from: the strict base class and the bounds every
section shares. Its own module so that settings defined outside ``trainer.config`` (the
generated downstream tasks) can use them without importing the sections."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PATH_MAX = 4096
"""Linux's PATH_MAX: a longer path names nothing, and every variant stores its config."""
PathStr = Annotated[str, Field(max_length=PATH_MAX)]
SEED_BOUND = 2**31
"""Seeds lie in [0, 2**31): what torch, numpy and the store all accept."""


class Section(BaseModel):
    """Base of every config section: strict about unknown keys and types."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
