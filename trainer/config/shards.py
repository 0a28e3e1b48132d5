"""Shard lists as specs name them: brace patterns, torch-free (the service confines them).

``/data/cc3m/{00000..00127}.tar`` or ``s3://bucket/cc3m/{000..009}.tar``; ``::`` joins several
patterns, as in WebDataset. The expansion is ``braceexpand``'s, the one WebDataset itself uses
(``webdataset.shardlists.expand_urls``), minus its environment-variable substitution: a spec
must not read the worker's environment.
"""

from __future__ import annotations

from braceexpand import braceexpand

MAX_SHARDS = 1_000_000
"""More shards than any corpus has: a pattern like ``{0..999999999}`` is refused, not built."""


def expand(pattern: str, field: str = "data.train_shards") -> list[str]:
    """Every shard ``pattern`` names, in order, without duplicates; ValueError naming ``field``
    when it names none or too many."""
    out: list[str] = []
    seen: set[str] = set()
    for part in pattern.split("::"):
        part = part.strip()
        if not part:
            continue
        for name in braceexpand(part):
            if name not in seen:
                seen.add(name)
                out.append(name)
            if len(out) > MAX_SHARDS:
                raise ValueError(f"{field}: {pattern!r} names over {MAX_SHARDS} shards")
    if not out:
        raise ValueError(f"{field}: {pattern!r} names no shard")
    return out
