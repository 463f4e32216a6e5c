"""Invoice runs: one invoice per (payee, payer) for what became due, credit notes for what no longer is.

Every commitment keeps `billed_amount` (invoiced minus credited). A run brings it to what is due
now (`domain.due`): more due → an invoice line, less due → a credit note line against the invoice
that billed it. So a commitment is never invoiced twice, a voided one is credited exactly once,
and a late withdrawal after a full invoice is credited the difference.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.billing import domain
from services.billing.domain import DocumentKind, Status
from services.billing.handlers.common import emit
from services.billing.handlers.lifecycle import charge_due
from services.billing.tables import commitments, invoice_counters, invoice_lines, invoice_runs, invoices
from shared.db import insert_ignoring_duplicates
from shared.events import CreditNoteIssued, InvoiceIssued

RUN_LOCK = 0x7A_6A_0B_11  # one invoice run at a time on PostgreSQL (SQLite has a single writer)

Group = tuple[str, str, str | None]  # payee, payer, credited invoice


async def _one_run_at_a_time(conn: AsyncConnection) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": RUN_LOCK})


async def next_number(conn: AsyncConnection, kind: DocumentKind, payee_id: str, year: int) -> str:
    """The payee's next number in the series: the counter row's update is atomic and held to commit."""
    key = {"payee_id": payee_id, "kind": kind, "year": year}
    await conn.execute(insert_ignoring_duplicates(conn, invoice_counters, {**key, "last_number": 0}))
    sequence = (
        await conn.execute(
            invoice_counters.update()
            .where(*(invoice_counters.c[name] == value for name, value in key.items()))
            .values(last_number=invoice_counters.c.last_number + 1)
            .returning(invoice_counters.c.last_number)
        )
    ).scalar_one()
    return domain.document_number(kind, payee_id, year, sequence)


async def _due_for_billing(conn: AsyncConnection, period_end: date, payee_id: str | None) -> list[sa.Row[Any]]:
    """Commitments whose due amount differs from what was billed, as of the period's end (locked);
    only those owed to `payee_id` when given."""
    only_payee = sa.true() if payee_id is None else commitments.c.payee_id == payee_id
    return list(
        (
            await conn.execute(
                sa.select(commitments)
                .where(
                    only_payee,
                    sa.or_(
                        sa.and_(
                            commitments.c.status == Status.CHARGEABLE,
                            commitments.c.chargeable_on <= period_end,
                            commitments.c.chargeable_amount != commitments.c.billed_amount,
                        ),
                        sa.and_(
                            commitments.c.status == Status.VOIDED,
                            commitments.c.voided_on <= period_end,
                            commitments.c.billed_amount != 0,
                        ),
                    ),
                )
                .order_by(commitments.c.payee_id, commitments.c.payer_id, commitments.c.created_at, commitments.c.id)
                .with_for_update()
            )
        ).all()
    )


async def _billing_invoice(conn: AsyncConnection, commitment_id: str) -> tuple[str, str]:
    """(id, number) of the latest invoice that billed this commitment: what its credit note refers to."""
    row = (
        await conn.execute(
            sa.select(invoices.c.id, invoices.c.number)
            .join(invoice_lines, invoice_lines.c.invoice_id == invoices.c.id)
            .where(invoice_lines.c.commitment_id == commitment_id, invoices.c.kind == DocumentKind.INVOICE)
            .order_by(invoices.c.issue_date.desc(), invoices.c.created_at.desc(), invoices.c.number.desc())
            .limit(1)
        )
    ).one()
    return row.id, row.number


async def _issue(
    conn: AsyncConnection,
    kind: DocumentKind,
    group: Group,
    lines: list[tuple[sa.Row[Any], Decimal]],
    *,
    run: dict[str, Any],
    correlation_id: str,
) -> dict[str, Any]:
    payee_id, payer_id, original_id = group
    issue_date: date = run["issue_date"]
    document_id = str(uuid.uuid4())
    number = await next_number(conn, kind, payee_id, issue_date.year)
    total = sum((amount for _, amount in lines), Decimal("0.00"))
    await conn.execute(
        invoices.insert().values(
            id=document_id,
            kind=kind,
            number=number,
            run_id=run["id"],
            payee_id=payee_id,
            payer_id=payer_id,
            issue_date=issue_date,
            due_date=issue_date + timedelta(days=domain.PAYMENT_TERM_DAYS),
            period_start=run["period_start"],
            period_end=run["period_end"],
            currency=domain.CURRENCY,
            vat_rate=domain.VAT_RATE,
            net_total=total,
            vat_amount=Decimal("0.00"),
            total=total,
            original_invoice_id=original_id,
            created_at=datetime.now(UTC),
        )
    )
    await conn.execute(
        invoice_lines.insert(),
        [
            {
                "invoice_id": document_id,
                "line_no": line_no,
                "commitment_id": row.id,
                "enrolment_id": row.enrolment_id,
                "offering_id": row.offering_id,
                "academic_year": row.academic_year,
                "description": domain.describe_line(
                    kind, row.offering_id, row.academic_year, row.amount, row.reason, row.charge_percent
                ),
                "amount": amount,
            }
            for line_no, (row, amount) in enumerate(lines, start=1)
        ],
    )
    for row, _ in lines:
        await conn.execute(
            commitments.update()
            .where(commitments.c.id == row.id)
            .values(billed_amount=domain.due(row.status, row.chargeable_amount))
        )
    commitment_ids = [row.id for row, _ in lines]
    if kind == DocumentKind.INVOICE:
        await emit(
            conn,
            InvoiceIssued(
                invoice_id=document_id,
                number=number,
                payee_id=payee_id,
                payer_id=payer_id,
                period_start=run["period_start"],
                period_end=run["period_end"],
                total=total,
                vat_rate=domain.VAT_RATE,
                commitment_ids=commitment_ids,
            ),
            document_id,
            1,
            correlation_id,
        )
    else:
        assert original_id is not None
        await emit(
            conn,
            CreditNoteIssued(
                credit_note_id=document_id,
                number=number,
                invoice_id=original_id,
                payee_id=payee_id,
                payer_id=payer_id,
                total=total,
                commitment_ids=commitment_ids,
            ),
            document_id,
            1,
            correlation_id,
        )
    return {
        "id": document_id,
        "kind": kind,
        "number": number,
        "payee_id": payee_id,
        "payer_id": payer_id,
        "total": total,
        "line_count": len(lines),
        "original_invoice_id": original_id,
    }


async def run_invoices(
    conn: AsyncConnection,
    period_start: date,
    period_end: date,
    *,
    today: date,
    correlation_id: str,
    payee_id: str | None = None,
) -> dict[str, Any]:
    """Invoice every chargeable commitment due by `period_end` and credit what was voided after invoicing.

    `payee_id` limits the run to what is owed to that one provider (its finance staff run their own
    invoices); without it the run covers the whole network.
    """
    domain.check_period(period_start, period_end)
    await _one_run_at_a_time(conn)
    await charge_due(conn, today)
    run = {
        "id": str(uuid.uuid4()),
        "period_start": period_start,
        "period_end": period_end,
        "issue_date": today,
        "payee_id": payee_id,
    }
    await conn.execute(invoice_runs.insert().values(**run, created_at=datetime.now(UTC)))

    to_invoice: dict[Group, list[tuple[sa.Row[Any], Decimal]]] = defaultdict(list)
    to_credit: dict[Group, list[tuple[sa.Row[Any], Decimal]]] = defaultdict(list)
    numbers: dict[str | None, str] = {}
    for row in await _due_for_billing(conn, period_end, payee_id):
        step = domain.adjustment(row.status, row.chargeable_amount, row.billed_amount)
        if step is None:
            continue
        if step.kind == DocumentKind.INVOICE:
            to_invoice[(row.payee_id, row.payer_id, None)].append((row, step.amount))
        else:
            original_id, numbers[original_id] = await _billing_invoice(conn, row.id)
            to_credit[(row.payee_id, row.payer_id, original_id)].append((row, step.amount))

    issued = [
        await _issue(conn, DocumentKind.INVOICE, group, lines, run=run, correlation_id=correlation_id)
        for group, lines in sorted(to_invoice.items(), key=lambda item: item[0][:2])
    ]
    credited = [
        await _issue(conn, DocumentKind.CREDIT_NOTE, group, lines, run=run, correlation_id=correlation_id)
        for group, lines in sorted(to_credit.items(), key=lambda item: (*item[0][:2], numbers[item[0][2]]))
    ]
    return {
        **run,
        "invoices": issued,
        "credit_notes": credited,
        "invoice_count": len(issued),
        "credit_note_count": len(credited),
        "invoiced_total": sum((d["total"] for d in issued), Decimal("0.00")),
        "credited_total": sum((d["total"] for d in credited), Decimal("0.00")),
    }
