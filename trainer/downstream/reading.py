"""What every annotation loader shares: a bounded JSON read, typed access to a record's fields
and image paths confined to their root. Each refusal is a DownstreamDataError naming the file,
the record and the field."""

from __future__ import annotations

import json
import math
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from trainer.downstream.errors import DownstreamDataError

DEFAULT_MAX_BYTES = 1 << 30
"""Annotation files larger than this (1 GiB) are refused unread; VQA v2's largest is ~0.1 GiB."""


def describe(value: object) -> str:
    """A JSON value's kind, for messages ("found a number")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def read_records(file: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> list[Any]:
    """The file's top-level JSON list, read only when it is a regular file of at most
    ``max_bytes`` bytes; refused when it is not JSON, not a list, or an empty list."""
    path = Path(file)
    if not path.is_file():
        raise DownstreamDataError(path, None, None, "no such file")
    size = path.stat().st_size
    if size > max_bytes:
        raise DownstreamDataError(
            path, None, None, f"{size} bytes, over the limit of {max_bytes} bytes"
        )
    with path.open("rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew since the stat
        raise DownstreamDataError(path, None, None, f"over the limit of {max_bytes} bytes")
    try:
        value = json.loads(data)
    except json.JSONDecodeError as err:
        raise DownstreamDataError(
            path, None, None, f"not valid JSON (line {err.lineno} column {err.colno}: {err.msg})"
        ) from None
    except (UnicodeDecodeError, RecursionError) as err:
        raise DownstreamDataError(path, None, None, f"not valid JSON ({err})") from None
    if not isinstance(value, list):
        raise DownstreamDataError(
            path, None, None, f"expected a JSON list of records, found {describe(value)}"
        )
    if not value:
        raise DownstreamDataError(path, None, None, "contains no records")
    return value


class ImageRoot:
    """The folder a file's image paths are relative to. A path is accepted when it is
    relative, stays under the root once ``..`` and symbolic links are resolved, and names an
    existing regular file. Accepted paths are remembered, so an image shared by many records
    is checked once."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._real = self.root.resolve() if self.root.is_dir() else None
        self._seen: dict[str, Path] = {}

    def require(self, file: Path) -> None:
        """Refuse the whole ``file`` when the root is not a directory."""
        if self._real is None:
            raise DownstreamDataError(
                file, None, None, f"image root {str(self.root)!r} is not a directory"
            )

    def resolve(self, relative: str) -> Path:
        """The image's path (root / relative, normalised); ValueError with the reason."""
        hit = self._seen.get(relative)
        if hit is not None:
            return hit
        if self._real is None:
            raise ValueError(f"image root {str(self.root)!r} is not a directory")
        if "\0" in relative:
            raise ValueError("image path contains a NUL character")
        if PurePosixPath(relative).is_absolute() or PureWindowsPath(relative).is_absolute():
            raise ValueError(
                f"image path {relative!r} is absolute; expected a path relative to the root"
            )
        normal = posixpath.normpath(relative)
        if normal == ".." or normal.startswith("../"):
            raise ValueError(f"image path {relative!r} escapes the image root through '..'")
        path = self.root / normal
        try:
            real = path.resolve()
        except (OSError, RuntimeError) as err:  # a symbolic-link loop, among others
            raise ValueError(f"image path {relative!r} cannot be resolved ({err})") from None
        if not real.is_relative_to(self._real):
            raise ValueError(
                f"image path {relative!r} resolves outside the image root (a symbolic link)"
            )
        if not real.is_file():
            raise ValueError(f"image file {relative!r} not found under the image root")
        self._seen[relative] = path
        return path


@dataclass(frozen=True)
class Fields:
    """Typed access to one record's fields; every refusal names file, record and field."""

    file: Path
    index: int
    raw: Mapping[str, Any]

    @classmethod
    def of(cls, file: Path, index: int, raw: object) -> Fields:
        if not isinstance(raw, dict):
            raise DownstreamDataError(
                file, index, None, f"expected a JSON object, found {describe(raw)}"
            )
        return cls(file, index, raw)

    def fail(self, field: str, reason: str) -> DownstreamDataError:
        return DownstreamDataError(self.file, self.index, field, reason)

    def has(self, field: str) -> bool:
        return field in self.raw

    def get(self, field: str) -> Any:
        if field not in self.raw:
            raise self.fail(field, "missing")
        return self.raw[field]

    def text(self, field: str) -> str:
        """A required, non-blank string."""
        value = self.get(field)
        if not isinstance(value, str):
            raise self.fail(field, f"expected a string, found {describe(value)}")
        if not value.strip():
            raise self.fail(field, "expected a non-empty string")
        return value

    def optional_text(self, field: str) -> str | None:
        return self.text(field) if self.raw.get(field) is not None else None

    def identifier(self, field: str) -> int | str:
        """A required integer or non-blank string (question ids, ref ids)."""
        value = self.get(field)
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise self.fail(field, f"expected an integer or a string, found {describe(value)}")
        if isinstance(value, str) and not value.strip():
            raise self.fail(field, "expected a non-empty identifier")
        return value

    def optional_identifier(self, field: str) -> int | str | None:
        return self.identifier(field) if self.raw.get(field) is not None else None

    def strings(self, field: str) -> tuple[str, ...]:
        """A required, non-empty list of strings."""
        value = self.get(field)
        if not isinstance(value, list):
            raise self.fail(field, f"expected a list of strings, found {describe(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.fail(f"{field}[{i}]", f"expected a string, found {describe(item)}")
        if not value:
            raise self.fail(field, "expected a non-empty list of strings")
        return tuple(value)

    def numbers(self, field: str, count: int) -> tuple[float, ...]:
        """A required list of ``count`` finite numbers."""
        value = self.get(field)
        if not isinstance(value, list) or len(value) != count:
            found = f"{len(value)} item(s)" if isinstance(value, list) else describe(value)
            raise self.fail(field, f"expected a list of {count} numbers, found {found}")
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, int | float):
                raise self.fail(f"{field}[{i}]", f"expected a number, found {describe(item)}")
            if not math.isfinite(item):
                raise self.fail(f"{field}[{i}]", f"expected a finite number, found {item!r}")
        return tuple(float(v) for v in value)

    def image(self, field: str, raw: object, root: ImageRoot, suffix: str = "") -> Path:
        """``raw`` (the field's value) as a relative image path, plus ``suffix``, resolved
        under ``root``."""
        if not isinstance(raw, str):
            raise self.fail(field, f"expected an image path (a string), found {describe(raw)}")
        if not raw.strip():
            raise self.fail(field, "expected a non-empty image path")
        try:
            return root.resolve(raw + suffix)
        except ValueError as err:
            raise self.fail(field, str(err)) from None
