"""Whole answers of recent searches, for the current index generation only."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

# A page of 50 offerings is ~30-45 KB of JSON: the byte budget, not the entry count, bounds a full cache.
ENTRIES = 2000
BYTES = 32 * 1024 * 1024


class AnswerCache:
    """Search answers (the response bytes) keyed by everything they depend on — the normalised query, the
    page, whose drafts the caller sees — for one *stamp* at a time: the database and its index generation
    (`search_state.generation`, bumped in the same transaction as every change that a search could show).

    The generation is read from the database for every request (API processes and the worker may be
    separate processes, or several), so an answer is served only while the index it was computed from is
    current: a newer generation empties the cache, an older one (a request that read it just before a
    change committed) neither reads nor fills it. Least recently used answers go first, within ENTRIES
    answers and BYTES bytes. One per API process.
    """

    def __init__(self, entries: int = ENTRIES, max_bytes: int = BYTES) -> None:
        self.entries = entries
        self.max_bytes = max_bytes
        self._stamp: tuple[Hashable, int] | None = None
        self._answers: OrderedDict[Hashable, bytes] = OrderedDict()
        self._bytes = 0

    def _current(self, database: Hashable, generation: int) -> bool:
        """Whether answers of this database and generation may be kept; moves on to a newer generation."""
        stamp = self._stamp
        if stamp is not None and stamp[0] == database:
            if generation == stamp[1]:
                return True
            if generation < stamp[1]:
                return False
        self.clear()
        self._stamp = (database, generation)
        return True

    def get(self, database: Hashable, generation: int, key: Hashable) -> bytes | None:
        if self._stamp != (database, generation):
            return None
        found = self._answers.get(key)
        if found is not None:
            self._answers.move_to_end(key)
        return found

    def put(self, database: Hashable, generation: int, key: Hashable, answer: bytes) -> None:
        if len(answer) > self.max_bytes or not self._current(database, generation):
            return
        previous = self._answers.pop(key, None)
        if previous is not None:
            self._bytes -= len(previous)
        self._answers[key] = answer
        self._bytes += len(answer)
        while len(self._answers) > self.entries or self._bytes > self.max_bytes:
            _key, dropped = self._answers.popitem(last=False)
            self._bytes -= len(dropped)

    def clear(self) -> None:
        self._answers.clear()
        self._bytes = 0
        self._stamp = None

    def __len__(self) -> int:
        return len(self._answers)
