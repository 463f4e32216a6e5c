"""Totals and facet counts from a columnar copy of the search rows, one per index generation.

Counting a match's facets in SQL groups every hit by its facet values: 5-20 ms for a broad search over
10,000 offerings, the bulk of an uncached search (docs/performance.md, eleventh round). The rows a search
filters on are few columns of few distinct values each, so each API process keeps them as numpy arrays of
codes (`Columns`, ~0.5 MB for 10,000 offerings) and counts a match with `bincount` in well under a
millisecond. The copy is read once per index generation (`search_state.generation`, bumped in the same
transaction as every change to the rows) and kept only if the generation did not move while it was read,
so a count never mixes two states of the catalogue. Why in the API process: docs/decisions/011.

The page of hits comes from the copy too: the rows are read in start-date order, the offering ids once
more in title order (as the database orders the titles: its collation decides, as in SQL), price order is
a stable sort of the start-date order by price, and a page is the masked rows of a sort's order, sliced.
Only ranking by the words' relevance stays in SQL.

Words stay in SQL (the course word index, one range read per word); their courses become a mask here.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Collection, Hashable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalogue.search.index import generation
from services.catalogue.tables import offering_search

if TYPE_CHECKING:
    from services.catalogue.search.query import Criteria

Mask = NDArray[np.bool_]

# Criteria fields compared for equality, with the offering_search column each one filters.
EQUAL = {
    "subject": "subject",
    "level": "level",
    "delivery_mode": "delivery_mode",
    "provider": "provider_id",
    "region": "region",
    "academic_year": "academic_year",
    "status": "status",
}
# Facets counted by value, with their columns; languages are counted per language from a list column.
FACET_COLUMNS = {
    "subject": "subject",
    "level": "level",
    "delivery_mode": "delivery_mode",
    "provider": "provider_id",
    "region": "region",
}
FACETS = ("subject", "level", "language", "delivery_mode", "provider", "region")
LANGUAGES = ("fi", "sv", "en")

_d = offering_search.c
# The sorts a page can be in apart from relevance, each as its ORDER BY; the last key, the offering id, is
# unique, so each is a total order and `-start_date` is `start_date` reversed.
ORDERS: dict[str, tuple[sa.ColumnElement[Any], ...]] = {
    "start_date": (_d.start_date, _d.offering_id),
    "-start_date": (_d.start_date.desc(), _d.offering_id.desc()),
    "title": (_d.title_key, _d.start_date, _d.offering_id),
    "price": (_d.member_price, _d.start_date, _d.offering_id),
}
# Dates and euros come back as stored (ISO text or dates; integer cents), converted once per distinct value.
_COLUMNS: dict[str, sa.ColumnElement[Any]] = {
    "course_id": _d.course_id,
    "provider_id": _d.provider_id,
    "subject": _d.subject,
    "level": _d.level,
    "languages": _d.languages,
    "delivery_mode": _d.delivery_mode,
    "region": _d.region,
    "academic_year": _d.academic_year,
    "status": _d.status,
    "enrolment_opens": sa.type_coerce(_d.enrolment_opens, sa.String),
    "enrolment_closes": sa.type_coerce(_d.enrolment_closes, sa.String),
}
_PRICE = sa.type_coerce(_d.member_price, sa.BigInteger)
_ROWS = sa.select(_d.offering_id, *_COLUMNS.values(), _PRICE).order_by(*ORDERS["start_date"])
# Ranks in the same statement (window functions) would be one snapshot, but cost SQLite 105 ms against 42.
_BY_TITLE = sa.select(_d.offering_id).order_by(*ORDERS["title"])
_DATES = ("enrolment_opens", "enrolment_closes")


@dataclass(frozen=True)
class Column:
    """One column as a code per row, and the value of each code (`values[codes[row]]`)."""

    codes: NDArray[np.int32]
    values: list[Any]
    index: dict[Any, int]

    @classmethod
    def of(cls, values: Sequence[Any], convert: Callable[[Any], Any] | None = None) -> Column:
        index = {value: code for code, value in enumerate(dict.fromkeys(values))}
        codes = np.fromiter(map(index.__getitem__, values), dtype=np.int32, count=len(values))
        distinct = list(index)
        if convert is not None:
            distinct = [None if value is None else convert(value) for value in distinct]
            index = {value: code for code, value in enumerate(distinct)}
        return cls(codes, distinct, index)

    def where(self, test: Callable[[Any], bool]) -> Mask:
        """Rows whose value passes `test` (tested once per distinct value; NULL never passes)."""
        passes = np.fromiter((value is not None and test(value) for value in self.values), dtype=np.bool_)
        return passes[self.codes]

    def containing(self, text: str) -> Mask:
        """Rows whose text contains `text` (as SQL's `LIKE '%text%'` in the page statement)."""
        return self.where(lambda value: text in value)

    def equal(self, value: Any) -> Mask:
        code = self.index.get(value)
        if code is None:
            return np.zeros(len(self.codes), dtype=np.bool_)
        return self.codes == code

    def counts(self, mask: Mask) -> list[dict[str, Any]]:
        """How many rows of the mask have each value (NULL and absent values left out)."""
        found = np.bincount(self.codes[mask], minlength=len(self.values))
        return [
            {"value": self.values[code], "count": int(found[code])}
            for code in np.flatnonzero(found).tolist()
            if self.values[code] is not None
        ]


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


_serials = itertools.count(1)


class Columns:
    """The search rows of one index generation, column by column, in start-date order."""

    def __init__(self, rows: Sequence[Sequence[Any]], by_title: Sequence[str]) -> None:
        """`rows` as `_ROWS` reads them, in start-date order; `by_title`, the offering ids in title order."""
        names = list(_COLUMNS)
        by_column = list(zip(*rows, strict=True)) if rows else [() for _ in range(len(names) + 2)]
        self.serial = next(_serials)  # tells this copy from any other, even of the same generation
        self.size = len(rows)
        self.ids: list[str] = list(by_column[0])
        self.columns = {
            name: Column.of(values, _day if name in _DATES else None)
            for name, values in zip(names, by_column[1:], strict=False)
        }
        self.price_cents = np.fromiter(by_column[1 + len(names)], dtype=np.int64, count=self.size)
        in_start_order = np.arange(self.size, dtype=np.int32)
        self.orders = {
            "start_date": in_start_order,
            "-start_date": in_start_order[::-1],
            "price": np.argsort(self.price_cents, kind="stable").astype(np.int32),
            "title": self._rows_of(by_title),
        }
        self.day_numbers = {name: self._day_numbers(self.columns[name]) for name in _DATES}
        self.speaks = {language: self.columns["languages"].containing(language) for language in LANGUAGES}

    def _rows_of(self, ids: Sequence[str]) -> NDArray[np.int32]:
        """The rows of these offering ids, in their order. Ids read by another statement than the rows may
        differ from them if a change landed in between: then this copy is not kept (`ColumnStore.get`), and
        for the one search that reads it rows not in `ids` come last."""
        row_of = {offering_id: row for row, offering_id in enumerate(self.ids)}
        rows = [row_of[offering_id] for offering_id in ids if offering_id in row_of]
        if len(rows) < self.size:
            rows += sorted(set(range(self.size)) - set(rows))
        return np.array(rows, dtype=np.int32)

    @staticmethod
    def _day_numbers(column: Column) -> NDArray[np.int32]:
        ordinals = np.fromiter((day.toordinal() for day in column.values), dtype=np.int32, count=len(column.values))
        return ordinals[column.codes]

    def match(self, criteria: Criteria, courses: Collection[str] | None) -> Mask:
        """The rows a search matches: the same conditions as its SQL page (`query._conditions`); `courses`,
        when the search has words, are the courses that have them all."""
        mask = np.ones(self.size, dtype=np.bool_)
        c = self.columns
        if courses is not None:
            course = c["course_id"]
            wanted = np.zeros(len(course.values), dtype=np.bool_)
            wanted[[course.index[i] for i in courses if i in course.index]] = True
            mask &= wanted[course.codes]
        for name, column in EQUAL.items():
            value = getattr(criteria, name)
            if value is not None:
                mask &= c[column].equal(value)
        if criteria.language:
            language = criteria.language
            mask &= self.speaks[language] if language in self.speaks else c["languages"].containing(language)
        if criteria.open_on:
            day = criteria.open_on.toordinal()
            mask &= c["status"].equal("published")
            mask &= (self.day_numbers["enrolment_opens"] <= day) & (self.day_numbers["enrolment_closes"] >= day)
        if criteria.drafts_of is not None:
            public = ~c["status"].equal("draft")
            for provider in criteria.drafts_of:
                public |= c["provider_id"].equal(provider)
            mask &= public
        if criteria.min_price is not None:
            mask &= self.price_cents >= int((Decimal(criteria.min_price) * 100).to_integral_value(ROUND_CEILING))
        if criteria.max_price is not None:
            mask &= self.price_cents <= int((Decimal(criteria.max_price) * 100).to_integral_value(ROUND_FLOOR))
        return mask

    def page(self, mask: Mask, sort: str, offset: int, limit: int) -> list[str]:
        """The ids of one page of the match in a sort of `ORDERS` (relevance is ranked in SQL, and without
        words it is start date: `query.page_sort`)."""
        order = self.orders[sort]
        return [self.ids[row] for row in order[mask[order]][offset : offset + limit].tolist()]

    def count(self, mask: Mask) -> tuple[int, dict[str, list[dict[str, Any]]]]:
        """The total and each facet's counts of a match, every facet with all filters applied, most first."""
        found = {facet: self.columns[column].counts(mask) for facet, column in FACET_COLUMNS.items()}
        found["language"] = [
            {"value": language, "count": n}
            for language in LANGUAGES
            if (n := int(np.count_nonzero(mask & self.speaks[language])))
        ]
        return int(np.count_nonzero(mask)), {
            facet: sorted(found[facet], key=lambda item: (-item["count"], item["value"])) for facet in FACETS
        }


async def read_columns(conn: AsyncConnection) -> Columns:
    rows = (await conn.execute(_ROWS)).all()
    return Columns(rows, (await conn.execute(_BY_TITLE)).scalars().all())


class ColumnStore:
    """The columns of the latest index generation seen, for one database at a time; one per API process.

    Concurrent searches of a new generation wait for one read instead of each reading the rows."""

    def __init__(self) -> None:
        self._kept: tuple[Hashable, int, Columns] | None = None
        self._lock = asyncio.Lock()

    async def get(self, conn: AsyncConnection, index_generation: int) -> Columns:
        """The columns of `index_generation` (as read by this connection), read now if not kept."""
        stamp = (conn.engine.url, index_generation)
        kept = self._kept
        if kept is not None and kept[:2] == stamp:
            return kept[2]
        async with self._lock:
            kept = self._kept
            if kept is not None and kept[:2] == stamp:
                return kept[2]
            columns = await read_columns(conn)
            # On PostgreSQL each statement sees the latest commit: the rows belong to `index_generation`
            # only if no change committed between the two reads of the generation (every change bumps it).
            newer_kept = kept is not None and kept[0] == stamp[0] and kept[1] > index_generation
            if not newer_kept and await generation(conn) == index_generation:
                self._kept = (*stamp, columns)
            return columns

    def clear(self) -> None:
        self._kept = None
