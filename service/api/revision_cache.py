"""A bounded, thread-safe cache of rendered answers, each filed under the revision it was made at.

One slot per key (say, an experiment's comparison in one format with one set of options) holds
the body and the revision of the data it was derived from. A lookup with the data's current
revision hits only if the slot's revision is that one, so a change of the data is never answered
from the cache, and an outdated body is replaced in place rather than left to crowd out live
ones. Least recently used slots go first once there are more than ``max_entries`` or their
bodies exceed ``max_bytes`` together (a body larger than that is answered, never kept).

Concurrent misses of one key and revision compute once: the others wait for that result
(``single flight``), so 32 clients asking for a fresh HTML report cost one render, not 32.
Routes run in a thread pool, hence the lock; it is never held while computing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

__all__ = ["CacheStats", "RevisionCache"]

Answer = tuple[bytes, str]
"""(body, media type)."""


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    entries: int = 0
    bytes: int = 0


@dataclass
class _Flight:
    """A computation in progress that others with the same key and revision wait for."""

    done: threading.Event = field(default_factory=threading.Event)
    answer: Answer | None = None


class RevisionCache:
    """LRU of ``key -> (revision, answer)`` bounded by entries and by body bytes."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._slots: OrderedDict[Hashable, tuple[Hashable, Answer]] = OrderedDict()
        self._bytes = 0
        self._flights: dict[tuple[Hashable, Hashable], _Flight] = {}
        self._lock = threading.Lock()
        self.stats = CacheStats()

    def get(self, key: Hashable, revision: Hashable) -> Answer | None:
        """The answer filed under ``key`` if it was made at ``revision``."""
        with self._lock:
            return self._get(key, revision)

    def _get(self, key: Hashable, revision: Hashable) -> Answer | None:
        slot = self._slots.get(key)
        if slot is None or slot[0] != revision:
            self.stats.misses += 1
            return None
        self._slots.move_to_end(key)
        self.stats.hits += 1
        return slot[1]

    def put(self, key: Hashable, revision: Hashable, answer: Answer) -> None:
        """File ``answer`` (made at ``revision``) under ``key``, replacing what was there."""
        with self._lock:
            self._drop(key)
            size = len(answer[0])
            if size > self.max_bytes or self.max_entries < 1:
                return
            self._slots[key] = (revision, answer)
            self._bytes += size
            while len(self._slots) > self.max_entries or self._bytes > self.max_bytes:
                self._drop(next(iter(self._slots)))
            self.stats.entries, self.stats.bytes = len(self._slots), self._bytes

    def _drop(self, key: Hashable) -> None:
        slot = self._slots.pop(key, None)
        if slot is not None:
            self._bytes -= len(slot[1][0])

    def get_or_compute(self, key: Hashable, revision: Hashable,
                       compute: Callable[[], Answer]) -> Answer:
        """The cached answer, or ``compute()``'s, filed; one computation per key and revision
        at a time (the others wait for it). An exception reaches the caller that computed and
        each waiter then computes for itself (a refused query is never cached)."""
        with self._lock:
            hit = self._get(key, revision)
            if hit is not None:
                return hit
            flight = self._flights.get((key, revision))
            leader = flight is None
            if leader:
                flight = self._flights[(key, revision)] = _Flight()
        assert flight is not None
        if not leader:
            flight.done.wait()
            return flight.answer if flight.answer is not None else compute()
        try:
            flight.answer = compute()
            self.put(key, revision, flight.answer)
            return flight.answer
        finally:
            with self._lock:
                self._flights.pop((key, revision), None)
            flight.done.set()

    def clear(self) -> None:
        with self._lock:
            self._slots.clear()
            self._bytes = 0
            self.stats.entries = self.stats.bytes = 0
