"""One renderer for every report: JSON, CSV (UTF-8, header row) or XLSX (XlsxWriter).

A view returns a `Report`: the JSON body, plus the rows and typed columns of its table form. The
format comes from `format=json|csv|xlsx` or else from the `Accept` header. In CSV and XLSX each item is
one row; nested objects become prefixed columns (`as_provider.committed` → `as_provider_committed`), and
a breakdown keyed by institution becomes one readable cell. In XLSX money is a number formatted
`#,##0.00`, counts are integers, rates are percentages; the header is bold and frozen, with an
autofilter and column widths that fit the content.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal

import orjson
import xlsxwriter  # type: ignore[import-untyped]
from fastapi import Response

from shared.errors import Invalid

Kind = Literal["text", "int", "money", "decimal", "rate", "date", "bool", "breakdown"]
Format = Literal["json", "csv", "xlsx"]
CSV = "text/csv"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MEDIA_TYPES: dict[str, Format] = {"application/json": "json", CSV: "csv", XLSX: "xlsx"}
MAX_WIDTH = 60


@dataclass(frozen=True)
class Column:
    """One column of a report's table form: a dotted path into an item, and how to show the value."""

    key: str
    kind: Kind = "text"

    @property
    def header(self) -> str:
        return self.key.replace(".", "_")


@dataclass(frozen=True)
class Report:
    name: str
    body: dict[str, Any]
    columns: Sequence[Column]
    rows: Sequence[Mapping[str, Any]] = field(default_factory=list)
    file_stem: str = ""

    @property
    def filename_stem(self) -> str:
        return self.file_stem or self.name


def choose_format(format_param: str | None, accept: str | None) -> Format:
    """`format=` wins; else the most preferred media type of `Accept` we can make; else JSON."""
    if format_param:
        chosen = format_param.strip().lower()
        if chosen not in ("json", "csv", "xlsx"):
            raise Invalid(f"format {format_param!r} is not one of json, csv, xlsx.")
        return chosen  # type: ignore[return-value]
    best: tuple[float, int, Format] | None = None
    for index, part in enumerate((accept or "").split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        kind = MEDIA_TYPES.get(media.lower())
        if kind is not None and quality > 0 and (best is None or (quality, -index) > (best[0], best[1])):
            best = (quality, -index, kind)
    return best[2] if best else "json"


def value_at(item: Mapping[str, Any], path: str) -> Any:
    value: Any = item
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def breakdown_text(value: Any) -> str:
    """`{"kao": {"held": 2, "confirmed": 1, "waitlisted": 0}}` → `kao: held 2, confirmed 1`."""
    if not isinstance(value, Mapping):
        return "" if value is None else str(value)
    parts = []
    for name, counts in value.items():
        shown = ", ".join(f"{k} {v}" for k, v in counts.items() if v) if isinstance(counts, Mapping) else str(counts)
        parts.append(f"{name}: {shown}" if shown else f"{name}: -")
    return "; ".join(parts)


def cell_text(value: Any, kind: Kind) -> str:
    if value is None:
        return ""
    if kind == "breakdown":
        return breakdown_text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_csv(report: Report) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([c.header for c in report.columns])
    for row in report.rows:
        writer.writerow([cell_text(value_at(row, c.key), c.kind) for c in report.columns])
    return out.getvalue().encode("utf-8")


def to_xlsx(report: Report) -> bytes:
    out = io.BytesIO()
    workbook = xlsxwriter.Workbook(out, {"in_memory": True})
    sheet = workbook.add_worksheet(report.name[:31])
    formats = {
        "header": workbook.add_format({"bold": True, "bottom": 1}),
        "money": workbook.add_format({"num_format": "#,##0.00"}),
        "int": workbook.add_format({"num_format": "0"}),
        "rate": workbook.add_format({"num_format": "0.00%"}),
        "decimal": workbook.add_format({"num_format": "0.0#"}),
        "date": workbook.add_format({"num_format": "yyyy-mm-dd"}),
    }
    widths = [len(c.header) for c in report.columns]
    for col, column in enumerate(report.columns):
        sheet.write_string(0, col, column.header, formats["header"])
    for r, item in enumerate(report.rows, start=1):
        for col, column in enumerate(report.columns):
            value = value_at(item, column.key)
            text = cell_text(value, column.kind)
            widths[col] = max(widths[col], len(text) + (2 if column.kind in ("money", "rate") else 0))
            if value is None or value == "":
                sheet.write_blank(r, col, None)
            elif column.kind == "money" or column.kind == "decimal":
                sheet.write_number(r, col, float(Decimal(str(value))), formats[column.kind])
            elif column.kind == "rate":
                sheet.write_number(r, col, float(Decimal(str(value))), formats["rate"])
            elif column.kind == "int":
                sheet.write_number(r, col, int(value), formats["int"])
            elif column.kind == "date":
                day = value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
                sheet.write_datetime(r, col, day, formats["date"])
            elif column.kind == "bool":
                sheet.write_boolean(r, col, bool(value))
            else:
                sheet.write_string(r, col, text)
    for col, width in enumerate(widths):
        sheet.set_column(col, col, min(max(width + 2, 8), MAX_WIDTH))
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, max(len(report.rows), 1), max(len(report.columns) - 1, 0))
    workbook.close()
    return out.getvalue()


@dataclass(frozen=True)
class Rendered:
    """A report in one format: what the HTTP answer carries (and what the response cache keeps)."""

    content: bytes
    media_type: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def response(self) -> Response:
        return Response(self.content, media_type=self.media_type, headers=dict(self.headers))


def rendered(report: Report, fmt: Format) -> Rendered:
    if fmt == "json":
        return Rendered(orjson.dumps(report.body), "application/json")
    if fmt == "csv":
        content, media_type, ext = to_csv(report), f"{CSV}; charset=utf-8", "csv"
    else:
        content, media_type, ext = to_xlsx(report), XLSX, "xlsx"
    disposition = f'attachment; filename="{report.filename_stem}.{ext}"'
    return Rendered(content, media_type, {"Content-Disposition": disposition})


def render(report: Report, fmt: Format) -> Response:
    return rendered(report, fmt).response()
