"""Every filesystem path a spec can name stays under the roots the service allows.

A spec is written by whoever can POST; its trials run as the service's user on the service's
nodes. So each path a config can name (data folders, annotations, tokenizers, pretrained
weights, an MRC teacher) must resolve, symlinks followed, under the service's data dir or one of
``ABLATE_DATA_ROOTS``; anything else is refused at POST (a 4xx naming the field) and again by the
worker just before it opens anything (a symlink swapped in after the POST). Generated data
(``dataset: shapes``) is written, so its root must lie under the data dir itself: a worker never
creates a directory a spec names elsewhere. Relative paths are refused: a worker's working
directory is Ray's, not the submitter's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from service.settings import Settings
from trainer import storage
from trainer.config import TrainConfig
from trainer.config.shards import expand


@dataclass(frozen=True)
class PathRefusal:
    """A config path outside the allowed roots: the dotted field and why."""

    field: str
    reason: str


def allowed_roots(settings: Settings) -> list[Path]:
    """The data dir and the configured data roots, resolved (symlinks followed)."""
    return [_real(settings.data_dir), *(_real(Path(r)) for r in settings.data_roots)]


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path.expanduser()))


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _where(roots: list[Path]) -> str:
    return "one of the allowed roots (the service's data dir or ABLATE_DATA_ROOTS)" \
        if len(roots) > 1 else "the service's data dir (add others with ABLATE_DATA_ROOTS)"


def _named_paths(config: TrainConfig) -> list[tuple[str, str]]:
    """(dotted field, value) of every path the config names, in a fixed order."""
    found = [
        ("data.root", config.data.root),
        ("data.tokenizer_path", config.data.tokenizer_path),
        ("model.vision.pretrained", config.model.vision.pretrained),
        ("model.text.pretrained", config.model.text.pretrained),
        ("objectives.mrc_kl.teacher", config.objectives.mrc_kl.teacher),
    ]
    return [(field, value) for field, value in found if value]


def check_config_paths(config: TrainConfig, settings: Settings) -> list[PathRefusal]:
    """Each path of ``config`` that resolves outside the allowed roots (empty: all confined)."""
    roots = allowed_roots(settings)
    data_dir = roots[0]
    out: list[PathRefusal] = []
    for field, value in _named_paths(config):
        raw = Path(value).expanduser()
        if not raw.is_absolute():
            out.append(PathRefusal(field, f"{value!r} is relative; give an absolute path under "
                                          f"{_where(roots)}"))
            continue
        real = _real(raw)
        allowed = [data_dir] if field == "data.root" and config.data.dataset == "shapes" \
            else roots
        if not _under(real, allowed):
            what = (f"it must lie under {_where(roots)}" if allowed == roots else
                    "generated data is written, so it must lie under the service's data dir")
            out.append(PathRefusal(field, f"{value!r} resolves outside the allowed roots; {what}"))
        elif field == "data.root" and config.data.dataset != "shapes" and not real.is_dir():
            out.append(PathRefusal(field, f"{value!r} is not an existing directory"))
    if config.data.annotations:
        out.extend(_check_annotations(config, roots))
    out.extend(_check_shards(config, roots))
    return out


def _check_shards(config: TrainConfig, roots: list[Path]) -> list[PathRefusal]:
    """Every shard a shard list names: a local one absolute and under the allowed roots
    (symlinks followed), an s3:// one without credentials in it (the bucket's own credentials,
    the service's, decide what it may read)."""
    out: list[PathRefusal] = []
    for split in ("train", "val", "test"):
        field = f"data.{split}_shards"
        pattern = getattr(config.data, f"{split}_shards")
        if not pattern:
            continue
        try:
            shards = expand(pattern, field)
        except ValueError as err:
            out.append(PathRefusal(field, str(err).removeprefix(f"{field}: ")))
            continue
        for shard in shards:
            reason = _shard_refusal(shard, roots)
            if reason:
                out.append(PathRefusal(field, reason))
                break
    return out


def _shard_refusal(shard: str, roots: list[Path]) -> str | None:
    if "://" in shard:
        try:
            storage.check_uri(shard)
        except ValueError as err:
            return f"{shard!r}: {err}"
        return None
    raw = Path(shard).expanduser()
    if not raw.is_absolute():
        return f"{shard!r} is relative; give an absolute path under {_where(roots)}"
    if not _under(_real(raw), roots):
        return f"{shard!r} resolves outside the allowed roots; it must lie under {_where(roots)}"
    return None


def _check_annotations(config: TrainConfig, roots: list[Path]) -> list[PathRefusal]:
    """``data.annotations`` is read relative to ``data.root``; ``..`` chains, absolute paths and
    symlinks must still land under the allowed roots."""
    assert config.data.annotations is not None
    root = Path(config.data.root).expanduser() if config.data.root else None
    if root is None or not root.is_absolute():
        return []  # data.root is refused (or required by the trainer) on its own
    real = _real(root / config.data.annotations)
    if _under(real, roots):
        return []
    return [PathRefusal("data.annotations", f"{config.data.annotations!r} resolves outside the "
                                            f"allowed roots; it must lie under {_where(roots)}")]
