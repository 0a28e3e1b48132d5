"""Where checkpoints and shared warm starts live: a local folder or an S3-compatible bucket.

A trial retried on another node must find its checkpoint there, so the service can put them
under a storage URI every node reaches (``ABLATE_STORAGE_URI=s3://bucket/prefix``) instead of
the controller's disk. A location is a plain ``str | Path``: one starting with ``s3://`` goes
through pyarrow's S3 filesystem (pyarrow is already installed for MLflow and Ray, so no second
AWS client stack), anything else is a local path. Credentials come from the standard AWS chain
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, ``~/.aws``, instance
roles); an S3-compatible server's address from ``ABLATE_STORAGE_ENDPOINT_URL`` (else
``AWS_ENDPOINT_URL``). Neither is ever part of a location, so neither reaches a spec or a log.

Writes are atomic on both. Locally: a temporary file in the same folder, fsync, rename, fsync of
the folder. On S3 a reader must never see a partial object, and pyarrow's output stream, closed
after a failure (by ``with`` or its destructor), completes the upload with what it got (tried
against moto: a 24 MiB half-written stream became the object). So the bytes are streamed to a
temporary key beside the target, and only a fully written one is copied over the target server
side (CopyObject replaces an object in one step: readers get the old bytes or the new, never a
mix); the temporary key is deleted either way (pyarrow then leaves an empty ``folder/`` marker
object, as it does for any deleted key). S3's CopyObject takes objects up to 5 GB, well
above a ``base`` trial's checkpoint.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import lru_cache
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

Location = str | Path
"""A local path, or an ``s3://bucket/key`` URI."""

STORAGE_URI_ENV = "ABLATE_STORAGE_URI"
ENDPOINT_ENV = "ABLATE_STORAGE_ENDPOINT_URL"
S3 = "s3://"
CHUNK = 8 << 20


def is_remote(loc: Location) -> bool:
    return isinstance(loc, str) and loc.startswith(S3)


def check_uri(uri: str) -> str:
    """``uri`` if it is a local path or a credential-free ``s3://bucket[/prefix]``, else
    ValueError (credentials belong in the AWS variables, never in a URI that gets logged)."""
    if "://" not in uri:
        return uri
    parts = urlsplit(uri)
    if parts.scheme != "s3":
        raise ValueError(f"storage URI: only local paths and s3:// are supported, not "
                         f"{parts.scheme}://")
    if not parts.hostname or "@" in parts.netloc or parts.query or parts.fragment:
        raise ValueError("storage URI: expected s3://bucket[/prefix]; credentials and "
                         "options go in the AWS_* / ABLATE_STORAGE_ENDPOINT_URL variables")
    return uri


def join(loc: Location, *parts: str) -> Location:
    """``loc`` / ``parts``, keeping a URI a URI and a path a path."""
    if is_remote(loc):
        return "/".join([str(loc).rstrip("/"), *(p.strip("/") for p in parts)])
    return Path(loc).joinpath(*parts)


def exists(loc: Location) -> bool:
    if not is_remote(loc):
        return Path(loc).exists()
    import pyarrow.fs as pafs

    fs, key = _s3(loc)
    return bool(fs.get_file_info(key).type == pafs.FileType.File)


def write_atomic(loc: Location, write: Callable[[IO[bytes]], object], mode: int = 0o600) -> None:
    """Call ``write`` on a temporary file (or object), then put it at ``loc`` in one step; a
    failure anywhere leaves what was at ``loc`` untouched. ``mode``: local files only."""
    if is_remote(loc):
        _write_s3(loc, write)
        return
    path = Path(loc)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(loc: Location, data: bytes, mode: int = 0o600) -> None:
    write_atomic(loc, lambda fh: fh.write(data), mode)


@contextmanager
def open_read(loc: Location) -> Iterator[IO[bytes]]:
    """A seekable file holding ``loc``'s bytes (``torch.load`` seeks). FileNotFoundError when
    there is none."""
    if not is_remote(loc):
        with open(loc, "rb") as fh:
            yield fh
        return
    yield io.BytesIO(_read_s3(loc))


def read_bytes(loc: Location) -> bytes:
    with open_read(loc) as fh:
        return fh.read()


def delete(loc: Location) -> None:
    """Remove the file or object at ``loc`` if there is one."""
    if not is_remote(loc):
        Path(loc).unlink(missing_ok=True)
        return
    if exists(loc):
        fs, key = _s3(loc)
        fs.delete_file(key)


def _read_s3(loc: Location, attempts: int = 5) -> bytes:
    """The whole object from one GET. pyarrow's streams read an object in ranged GETs, and a
    writer replacing it between two of them would hand us a mix of two checkpoints (seen
    against moto); one request returns one version. A HEAD before and after catches the object
    changing size (or time) between the HEAD that sized the GET and the GET itself."""
    import pyarrow.fs as pafs

    fs, key = _s3(loc)
    for _ in range(attempts):
        before = fs.get_file_info(key)
        if before.type != pafs.FileType.File:
            raise FileNotFoundError(loc)
        with fs.open_input_file(key) as src:
            data = bytes(src.read(before.size))
        after = fs.get_file_info(key)
        if len(data) == before.size == after.size and before.mtime == after.mtime:
            return data
    raise OSError(f"{loc} kept changing while it was read ({attempts} attempts)")


def _write_s3(loc: Location, write: Callable[[IO[bytes]], object]) -> None:
    fs, key = _s3(loc)
    parent, _, name = key.rpartition("/")
    tmp = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
    stream = fs.open_output_stream(tmp)
    try:
        write(stream)
        stream.close()
        fs.copy_file(tmp, key)
    finally:
        with suppress(Exception):
            stream.close()  # after a failure this may complete a partial temporary object
        with suppress(Exception):
            fs.delete_file(tmp)


def _s3(loc: Location) -> tuple[Any, str]:
    """pyarrow's S3 filesystem for the configured endpoint, and ``loc``'s bucket/key."""
    endpoint = os.environ.get(ENDPOINT_ENV) or os.environ.get("AWS_ENDPOINT_URL") or ""
    return _filesystem(endpoint), str(loc)[len(S3):]


@lru_cache(maxsize=8)
def _filesystem(endpoint: str) -> Any:
    import pyarrow.fs as pafs

    if not endpoint:
        return pafs.S3FileSystem(check_directory_existence_before_creation=True)
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    return pafs.S3FileSystem(endpoint_override=parts.netloc, scheme=parts.scheme,
                             check_directory_existence_before_creation=True)


def copy_to_local(loc: Location, dest: Path) -> Path:
    """``loc``'s bytes in the local file ``dest`` (for tools that want a path, such as an
    MLflow artifact upload)."""
    with open_read(loc) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, CHUNK)
    return dest


def size(loc: Location) -> int:
    """The byte size of the file or object at ``loc``; FileNotFoundError when there is none
    (an unreadable bucket raises pyarrow's OSError, naming it)."""
    if not is_remote(loc):
        path = Path(loc)
        if not path.is_file():
            raise FileNotFoundError(str(loc))
        return path.stat().st_size
    import pyarrow.fs as pafs

    fs, key = _s3(loc)
    info = fs.get_file_info(key)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(str(loc))
    return int(info.size)


@contextmanager
def open_stream(loc: Location) -> Iterator[IO[bytes]]:
    """``loc``'s bytes as a sequential stream (a shard read once from start to end)."""
    if not is_remote(loc):
        with open(loc, "rb") as fh:
            yield fh
        return
    fs, key = _s3(loc)
    with fs.open_input_stream(key) as src:
        yield src


def read_range(loc: Location, offset: int, length: int) -> bytes:
    """``length`` bytes of ``loc`` from ``offset`` (one ranged GET on S3): one sample of a
    shard, without reading the shard."""
    if not is_remote(loc):
        with open(loc, "rb") as fh:
            fh.seek(offset)
            return fh.read(length)
    fs, key = _s3(loc)
    with fs.open_input_file(key) as src:
        return bytes(src.read_at(length, offset))
