"""Whole answers of recent searches, for the current index generation only."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from datetime import date

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from services.catalogue.search.index import generation

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


# Where the middleware leaves the index generation it read for a search it could not answer, in the
# request's state (`scope["state"]`), so that the endpoint need not read it again: (database, generation).
GENERATION_READ = "search_generation"


def generation_read(scope: Scope, engine: AsyncEngine) -> int | None:
    """The index generation of `engine`'s database as the middleware read it for this request, if it did."""
    seen = scope.get("state", {}).get(GENERATION_READ)
    return seen[1] if seen is not None and seen[0] == engine.url else None


def repeat_key(query_string: bytes, today: date) -> tuple[str, bytes, date]:
    """The answer cache's key for an anonymous search by its raw query string (and the day: `open_now`)."""
    return ("query", query_string, today)


class RepeatedSearchMiddleware:
    """Answers an anonymous `GET` of the search whose exact query string was answered before, for the
    current index generation and day, straight from the answer cache (pure ASGI, innermost).

    On that path FastAPI would still route the request, parse and validate fifteen query parameters and
    solve the dependencies before the endpoint found the cached answer: ~1 ms of the ~1.5 ms of CPU such
    a request cost (docs/performance.md, eleventh round). The endpoint keeps anonymous answers under
    `repeat_key` as well as under their parsed criteria; anything else (a token, another query string, a
    new generation, a database error) goes the full way, with the generation it read (`generation_read`).
    """

    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app, self.path = app, path
        self.route: object = None  # the search's route, as the router put it in the scope (access metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and scope["path"] == self.path
            and not any(name == b"authorization" for name, _ in scope["headers"])
        ):
            answer = await self._kept(scope) if self.route is not None else None
            if answer is not None:
                scope["route"] = self.route
                await Response(answer, media_type="application/json")(scope, receive, send)
                return
            await self.app(scope, receive, send)
            self.route = scope.get("route", self.route)
            return
        await self.app(scope, receive, send)

    async def _kept(self, scope: Scope) -> bytes | None:
        state = scope["app"].state
        answers: AnswerCache | None = getattr(state, "search_cache", None)
        if answers is None or not len(answers):
            return None
        engine: AsyncEngine = state.engine
        try:
            async with engine.connect() as conn:
                index_generation = await generation(conn)
        except DBAPIError:
            return None  # the full path answers with the proper problem
        scope.setdefault("state", {})[GENERATION_READ] = (engine.url, index_generation)
        return answers.get(engine.url, index_generation, repeat_key(scope["query_string"], date.today()))
