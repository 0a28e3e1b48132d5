"""Where generated data and trained tokenizers are cached, and how they are written safely.

Cache files are named by a hash of everything that generates them, so a changed config never
reads a stale file, and are written to a temporary file in the same folder then ``os.replace``d,
so concurrent trials (several Ray workers) never see a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

CACHE_ENV = "ABLATE_DATA_CACHE"


def default_dir() -> Path:
    """Where generated data and tokenizers go when ``data.root`` names none: ``$ABLATE_DATA_CACHE``
    (the service points its trials there) or ``.ablate/data`` under the working directory."""
    return Path(os.environ.get(CACHE_ENV) or Path(".ablate") / "data")


def content_hash(payload: Any) -> str:
    """Short, stable hash of a JSON-able value."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write`` on a temporary file beside ``path``, then move it into place (what
    ``write`` returns, e.g. ``fh.write``'s byte count, is ignored)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; cache files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def writable_dir(preferred: Path | None) -> Path:
    """``preferred`` when it can be created and written, else the default cache folder
    (a read-only dataset folder must not stop training)."""
    if preferred is not None:
        try:
            preferred.mkdir(parents=True, exist_ok=True)
            if os.access(preferred, os.W_OK):
                return preferred
        except OSError:
            pass
    fallback = default_dir()
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback
