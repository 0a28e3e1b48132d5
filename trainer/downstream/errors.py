"""How a downstream annotation file is refused: one error naming the file, the record and the
field, raised at load so that a bad file stops a run before any training starts."""

from __future__ import annotations

from pathlib import Path


class DownstreamDataError(ValueError):
    """An annotation file that cannot be used. ``record`` is the 0-based index of the record
    in the file's list (None for the file as a whole), ``field`` the record's key (with an
    index for list items, e.g. ``images[1]``; None for the record as a whole). The message
    names the file by its name: ``vqa_train.json: record 3: field 'answer': expected a list of
    strings``; ``file`` keeps the full path."""

    def __init__(
        self, file: str | Path, record: int | None, field: str | None, reason: str
    ) -> None:
        parts = [Path(file).name or str(file)]
        if record is not None:
            parts.append(f"record {record}")
        if field is not None:
            parts.append(f"field {field!r}")
        super().__init__(": ".join([*parts, reason]))
        self.file = Path(file)
        self.record = record
        self.field = field
        self.reason = reason
