"""Reconcile invoices against commitments, to the cent.

    python -m services.billing.reconcile [--database-url URL]

Per (payee, payer) and overall: invoice totals − credit note totals must equal the chargeable
amounts of the commitments that have been invoiced and not voided. Every document's total must
also equal the sum of its lines. Prints a table; exits 1 on any difference. Run it after an invoice
run: a commitment voided or re-priced since the last run shows up as a difference (listed under
"awaiting the next invoice run") until the next run credits or invoices it.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from services.billing import domain
from services.billing.settings import Settings
from services.billing.tables import commitments, invoice_lines, invoices

ZERO = Decimal("0.00")


@dataclass
class Row:
    payee_id: str
    payer_id: str
    invoiced: Decimal = ZERO
    credited: Decimal = ZERO
    expected: Decimal = ZERO

    @property
    def net(self) -> Decimal:
        return self.invoiced - self.credited

    @property
    def difference(self) -> Decimal:
        return self.net - self.expected


@dataclass
class Reconciliation:
    rows: list[Row]
    total: Row
    documents_off: list[str] = field(default_factory=list)
    awaiting_run: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.documents_off and all(r.difference == 0 for r in [*self.rows, self.total])


def _cents(column: Any) -> Any:
    return sa.func.coalesce(sa.func.sum(sa.type_coerce(column, sa.BigInteger)), 0)


def _euros(cents: Any) -> Decimal:
    return (Decimal(int(cents)) / 100).quantize(Decimal("0.01"))


async def reconcile(conn: AsyncConnection) -> Reconciliation:
    rows: dict[tuple[str, str], Row] = {}

    def row(payee: str, payer: str) -> Row:
        return rows.setdefault((payee, payer), Row(payee, payer))

    documents = await conn.execute(
        sa.select(invoices.c.payee_id, invoices.c.payer_id, invoices.c.kind, _cents(invoices.c.total)).group_by(
            invoices.c.payee_id, invoices.c.payer_id, invoices.c.kind
        )
    )
    for payee, payer, kind, cents in documents.all():
        if kind == domain.DocumentKind.INVOICE:
            row(payee, payer).invoiced += _euros(cents)
        else:
            row(payee, payer).credited += _euros(cents)

    invoiced_ids = (
        sa.select(invoice_lines.c.commitment_id)
        .join(invoices, invoices.c.id == invoice_lines.c.invoice_id)
        .where(invoices.c.kind == domain.DocumentKind.INVOICE)
    )
    owed = await conn.execute(
        sa.select(commitments.c.payee_id, commitments.c.payer_id, _cents(commitments.c.chargeable_amount))
        .where(commitments.c.status == domain.Status.CHARGEABLE, commitments.c.id.in_(invoiced_ids))
        .group_by(commitments.c.payee_id, commitments.c.payer_id)
    )
    for payee, payer, cents in owed.all():
        row(payee, payer).expected += _euros(cents)

    line_sums = (
        sa.select(invoice_lines.c.invoice_id, _cents(invoice_lines.c.amount).label("cents"))
        .group_by(invoice_lines.c.invoice_id)
        .subquery()
    )
    documents_off = [
        f"{r.number}: total {r.total} ≠ lines {_euros(r.cents or 0)} + VAT {r.vat_amount}"
        for r in (
            await conn.execute(
                sa.select(
                    invoices.c.number, invoices.c.total, invoices.c.vat_amount, invoices.c.net_total, line_sums.c.cents
                )
                .outerjoin(line_sums, line_sums.c.invoice_id == invoices.c.id)
                .order_by(invoices.c.number)
            )
        ).all()
        if r.total != _euros(r.cents or 0) + r.vat_amount or r.net_total != _euros(r.cents or 0)
    ]
    awaiting = [
        f"{r.id} ({r.payee_id} → {r.payer_id}, {r.status}): billed {r.billed_amount}, "
        f"due {domain.due(r.status, r.chargeable_amount)}"
        for r in (
            await conn.execute(
                sa.select(commitments).where(
                    sa.or_(
                        sa.and_(
                            commitments.c.status == domain.Status.CHARGEABLE,
                            commitments.c.billed_amount != 0,
                            commitments.c.billed_amount != commitments.c.chargeable_amount,
                        ),
                        sa.and_(commitments.c.status != domain.Status.CHARGEABLE, commitments.c.billed_amount != 0),
                    )
                )
            )
        ).all()
    ]
    ordered = [rows[key] for key in sorted(rows)]
    total = Row("ALL", "ALL")
    for r in ordered:
        total.invoiced += r.invoiced
        total.credited += r.credited
        total.expected += r.expected
    return Reconciliation(ordered, total, documents_off, awaiting)


def format_table(result: Reconciliation) -> str:
    header = ("payee", "payer", "invoiced", "credited", "net", "expected", "difference")
    body = [
        (r.payee_id, r.payer_id, *(f"{v:.2f}" for v in (r.invoiced, r.credited, r.net, r.expected, r.difference)))
        for r in [*result.rows, result.total]
    ]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]

    def fmt(line: tuple[str, ...]) -> str:
        return "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )

    lines = [fmt(header), "  ".join("-" * w for w in widths), *(fmt(line) for line in body)]
    if result.documents_off:
        lines += ["", "Documents whose total does not match their lines:", *(f"  {d}" for d in result.documents_off)]
    if result.awaiting_run:
        lines += ["", "Commitments awaiting the next invoice run:", *(f"  {c}" for c in result.awaiting_run)]
    lines += ["", "OK: invoices reconcile with commitments." if result.ok else "DIFFERENCES FOUND."]
    return "\n".join(lines)


async def _run(url: str) -> Reconciliation:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return await reconcile(conn)
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.billing.reconcile", description="Reconcile invoices against commitments, to the cent."
    )
    parser.add_argument("--database-url", help="the billing database (default: TARJOTIN_BILLING_DATABASE_URL)")
    args = parser.parse_args(argv)
    url = args.database_url or Settings().database_url
    result = asyncio.run(_run(url))
    print(format_table(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
