"""Reading a course-offering CSV file into checked rows. Pure: no I/O beyond the bytes given.

One row is one offering of a course. File-level problems (not UTF-8 text, broken quoting, missing
or unknown columns, no rows, too many rows) raise `Invalid`; a row's own problems are collected on
the row with its 1-based line number in the file (the header is line 1), so that the whole file can
be reported at once.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from services.catalogue.domain import LANGUAGES, DeliveryMode
from shared.errors import Invalid

MAX_ROWS = 5000
MAX_BYTES = 1024 * 1024

# Every column the importer reads, with what it means (also shown in the API docs).
COLUMNS: dict[str, str] = {
    "external_id": "required: the provider's own id of the offering; re-importing it updates that offering",
    "provider_id": "the providing institution's id; may be left out when the request gives `provider_id`",
    "code": "required: course code; the course is found (or created) by provider and code",
    "title_fi": "course title in Finnish (at least one title column must be present and filled)",
    "title_sv": "course title in Swedish",
    "title_en": "course title in English",
    "description_fi": "course description in Finnish",
    "description_sv": "course description in Swedish",
    "description_en": "course description in English",
    "subject": "required: e.g. mathematics",
    "level": "required: e.g. upper_secondary",
    "credits": "required: decimal with at most one decimal, e.g. 2.5 (or 2,5)",
    "languages": "required: languages of instruction, fi/sv/en separated by `;`, `|`, space or a quoted comma",
    "delivery_mode": "required: online_self_paced, online_scheduled or blended",
    "teacher_contact": "optional: a contact for the course",
    "start_date": "required: YYYY-MM-DD",
    "end_date": "required: YYYY-MM-DD",
    "enrolment_opens": "required: YYYY-MM-DD",
    "enrolment_closes": "required: YYYY-MM-DD",
    "min_participants": "optional: default 1 for a new offering",
    "max_participants": "required",
    "member_price": "optional euros, e.g. 120.00: default from the pricing guideline for a new offering",
    "external_price": "optional euros: default from the pricing guideline for a new offering",
    "free_cancellation_deadline": "optional YYYY-MM-DD: default start + the guideline's days for a new offering",
    "publish": "optional true/false (yes/no, 1/0, kyllä/ei): true publishes a draft; never unpublishes",
}
REQUIRED = (
    "external_id",
    "code",
    "subject",
    "level",
    "credits",
    "languages",
    "delivery_mode",
    "start_date",
    "end_date",
    "enrolment_opens",
    "enrolment_closes",
    "max_participants",
)
TITLES = ("title_fi", "title_sv", "title_en")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TRUE = {"true", "yes", "y", "1", "kyllä", "kylla", "k", "ja"}
FALSE = {"false", "no", "n", "0", "ei", "e", "nej", ""}


@dataclass
class Row:
    """One data row: what it says about its course and its offering, or why it cannot be used.

    In `course` and `offering` an empty optional cell is simply absent: for an existing course or
    offering it keeps what is there, for a new one the default applies.
    """

    line: int
    provider_id: str | None = None
    external_id: str | None = None
    code: str | None = None
    course: dict[str, Any] = field(default_factory=dict)
    offering: dict[str, Any] = field(default_factory=dict)
    publish: bool = False
    errors: list[str] = field(default_factory=list)


def decode(data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Invalid(f"The file is not UTF-8 text (byte {exc.start} cannot be read); save the CSV as UTF-8.") from exc
    if "\x00" in text:
        raise Invalid("The file is not a CSV text file (it contains NUL bytes).")
    return text


def _delimiter(first_line: str) -> str:
    """Comma unless the header uses semicolons or tabs (as spreadsheets set to Finnish do)."""
    counts = {d: first_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def read(data: bytes, default_provider: str | None, *, requested: bool = True) -> list[Row]:
    """Every data row of the file, parsed and checked on its own (not yet against the database).

    `default_provider` is the provider of rows without one. If it was `requested` (`?provider_id=`), a row
    naming another provider is an error; if it is only implied (the importer's own institution), such a row
    is left for the caller to judge.
    """
    text = decode(data)
    if not text.strip():
        raise Invalid("The file is empty; the first line must name the columns.", columns=list(COLUMNS))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text.lstrip().splitlines()[0]), strict=True)
    header: list[str] | None = None
    rows: list[Row] = []
    consumed = 0
    try:
        for record in reader:
            line, consumed = consumed + 1, reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if header is None:
                header = _check_header(record, default_provider)
                continue
            if len(rows) >= MAX_ROWS:
                raise Invalid(f"The file has more than {MAX_ROWS} rows; split it into smaller files.")
            rows.append(_row(line, header, record, default_provider, requested))
    except csv.Error as exc:
        raise Invalid(f"The file is not valid CSV at line {reader.line_num}: {exc}.") from exc
    if not rows:
        raise Invalid("The file has a header but no rows.")
    return rows


def _check_header(record: list[str], default_provider: str | None) -> list[str]:
    header = [cell.strip().lower() for cell in record]
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise Invalid(f"Columns appear twice: {', '.join(duplicates)}.", duplicate_columns=duplicates)
    unknown = [name for name in header if name not in COLUMNS]
    missing = [name for name in REQUIRED if name not in header]
    if not any(name in header for name in TITLES):
        missing.append("title_fi (or title_sv, title_en)")
    if "provider_id" not in header and default_provider is None:
        missing.append("provider_id (or ?provider_id= on the request)")
    if missing:
        also = f" Unknown columns: {', '.join(unknown)}." if unknown else ""
        raise Invalid(
            f"Required columns are missing: {', '.join(missing)}.{also} Line 1 must name the columns.",
            missing_columns=missing,
            unknown_columns=unknown or None,
        )
    if unknown:
        raise Invalid(
            f"Unknown columns: {', '.join(unknown)}. The columns are: {', '.join(COLUMNS)}.",
            unknown_columns=unknown,
        )
    return header


class _Cells:
    """The cells of one row by column name, each read with a message naming the column on failure."""

    def __init__(self, header: list[str], record: list[str], errors: list[str]) -> None:
        self.values = {name: value.strip() for name, value in zip(header, record, strict=False)}
        self.errors = errors

    def fail(self, name: str, message: str) -> None:
        self.errors.append(f"{name}: {message}")

    def text(self, name: str, max_length: int, *, required: bool = False) -> str | None:
        value = self.values.get(name, "")
        if not value:
            if required:
                self.fail(name, "is required")
            return None
        if len(value) > max_length:
            self.fail(name, f"is longer than {max_length} characters")
            return None
        return value

    def decimal(self, name: str, places: int, *, required: bool = False) -> Decimal | None:
        raw = self.text(name, 30, required=required)
        if raw is None:
            return None
        try:
            value = Decimal(raw.replace(",", ".") if "." not in raw else raw)
        except InvalidOperation:
            value = Decimal("NaN")
        if not value.is_finite():
            self.fail(name, f"{raw!r} is not a number")
        elif value < 0:
            self.fail(name, f"{raw} is negative")
        elif -min(int(value.normalize().as_tuple().exponent), 0) > places:
            self.fail(name, f"{raw} has more than {places} decimals")
        elif value >= Decimal(10) ** 10:
            self.fail(name, f"{raw} is too large")
        else:
            return value
        return None

    def integer(self, name: str, low: int, high: int, *, required: bool = False) -> int | None:
        raw = self.text(name, 10, required=required)
        if raw is None:
            return None
        if not raw.isdigit() or not low <= int(raw) <= high:
            self.fail(name, f"{raw!r} is not a whole number from {low} to {high}")
            return None
        return int(raw)

    def day(self, name: str, *, required: bool = False) -> date | None:
        raw = self.text(name, 10, required=required)
        if raw is None:
            return None
        try:
            if DATE.match(raw):
                return date.fromisoformat(raw)
        except ValueError:
            pass
        self.fail(name, f"{raw!r} is not a date of the form YYYY-MM-DD")
        return None

    def choice(self, name: str, allowed: tuple[str, ...]) -> str | None:
        raw = self.text(name, 50, required=True)
        if raw is not None and raw.lower() not in allowed:
            self.fail(name, f"{raw!r} is not one of {', '.join(allowed)}")
            return None
        return raw.lower() if raw else None

    def languages(self, name: str) -> list[str] | None:
        raw = self.text(name, 50, required=True)
        if raw is None:
            return None
        found = [part.lower() for part in re.split(r"[\s,;|/]+", raw) if part]
        wrong = [part for part in found if part not in LANGUAGES]
        if wrong or not found:
            self.fail(name, f"{raw!r} is not a list of fi, sv, en")
            return None
        return list(dict.fromkeys(found))

    def flag(self, name: str) -> bool:
        raw = self.values.get(name, "").lower()
        if raw in TRUE:
            return True
        if raw not in FALSE:
            self.fail(name, f"{raw!r} is neither true nor false")
        return False


def _row(line: int, header: list[str], record: list[str], default_provider: str | None, requested: bool) -> Row:
    row = Row(line=line)
    extra = record[len(header) :]
    if len(record) < len(header) or any(cell.strip() for cell in extra):
        row.errors.append(f"the row has {len(record)} values but the header has {len(header)} columns")
        return row
    cells = _Cells(header, record, row.errors)
    row.external_id = cells.text("external_id", 100, required=True)
    row.code = cells.text("code", 50, required=True)
    own_provider = cells.text("provider_id", 64)
    if own_provider and default_provider and requested and own_provider != default_provider:
        cells.fail("provider_id", f"{own_provider!r} differs from provider_id={default_provider!r} of the request")
    row.provider_id = own_provider or default_provider
    if row.provider_id is None:
        cells.fail("provider_id", "is required (or give ?provider_id= on the request)")

    titles = {lang: cells.text(f"title_{lang}", 300) for lang in LANGUAGES}
    if not any(titles.values()) and not any(f"title_{lang}: " in e for e in row.errors for lang in LANGUAGES):
        row.errors.append("title_fi, title_sv, title_en: at least one title is required")
    descriptions = {lang: cells.text(f"description_{lang}", 10000) for lang in LANGUAGES}
    course: dict[str, Any] = {
        "titles": {lang: text for lang, text in titles.items() if text},
        "descriptions": {lang: text for lang, text in descriptions.items() if text},
        "subject": cells.text("subject", 100, required=True),
        "level": cells.text("level", 50, required=True),
        "credits": cells.decimal("credits", 1, required=True),
        "languages": cells.languages("languages"),
        "delivery_mode": cells.choice("delivery_mode", tuple(DeliveryMode)),
    }
    if course["credits"] is not None and not 0 < course["credits"] <= 100:
        cells.fail("credits", f"{course['credits']} is not more than 0 and at most 100")
    contact = cells.text("teacher_contact", 200)
    if contact:
        course["teacher_contact"] = contact
    row.course = course

    offering: dict[str, Any] = {
        "start_date": cells.day("start_date", required=True),
        "end_date": cells.day("end_date", required=True),
        "enrolment_opens": cells.day("enrolment_opens", required=True),
        "enrolment_closes": cells.day("enrolment_closes", required=True),
        "max_participants": cells.integer("max_participants", 1, 10000, required=True),
        "min_participants": cells.integer("min_participants", 0, 10000),
        "member_price": cells.decimal("member_price", 2),
        "external_price": cells.decimal("external_price", 2),
        "free_cancellation_deadline": cells.day("free_cancellation_deadline"),
    }
    row.offering = {name: value for name, value in offering.items() if value is not None}
    row.publish = cells.flag("publish")
    return row
