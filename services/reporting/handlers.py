"""Projections: every event is stored, then folded into the read models it concerns.

Each projection is idempotent (the consumer's inbox; and the `sequence` rule below, so replays and
rebuilds may run it again) and order-proof: an event whose `sequence` is not newer than what a state
row holds changes nothing, and counters move only by the difference between an aggregate's old and
new contribution (`domain.*_contribution`), i.e. only when its state actually changes.

Within a transaction (a consumer batch), the event-store rows, the aggregates' newest state rows and the
counter deltas are kept back and written as it commits, one statement per table: the state upsert
returns each aggregate's previous state, and the counters move by the difference (an aggregate's
events in one batch collapse into its newest: the differences telescope). See `_write_pending`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from services.reporting import domain
from services.reporting.tables import (
    BILLING_SIDES,
    billing_counts,
    commitment_states,
    credit_notes,
    document_counts,
    enrolment_states,
    event_store,
    home_counts,
    home_provider_counts,
    institution_billing_counts,
    institutions,
    invoices,
    offering_counts,
    offering_home_counts,
    offerings,
    provider_counts,
    read_model_generation,
)
from shared.db import insert_if_absent, upsert_if_newer
from shared.events import (
    CommitmentChargeable,
    CommitmentCreated,
    CreditNoteIssued,
    EnrolmentCompleted,
    EnrolmentWithdrawn,
    Envelope,
    InstitutionRegistered,
    InvoiceIssued,
    OfferingCancelled,
    OfferingUpdated,
)
from shared.events.billing import CommitmentFacts
from shared.events.enrolment import EnrolmentFacts

Projection = Callable[[AsyncConnection, Envelope], Awaitable[None]]


# Hot-path statements are built once per dialect and table and run with parameters (as
# shared.db.insert_if_absent does): building them with literal values per event cost more CPU than the
# database work itself.


def _dialect(conn: AsyncConnection) -> Any:
    return postgresql if conn.dialect.name == "postgresql" else sqlite


@functools.cache
def _counter_columns(table: sa.Table) -> tuple[str, ...]:
    keys = {c.name for c in table.primary_key.columns}
    return tuple(c.name for c in table.columns if isinstance(c.type, sa.BigInteger) and c.name not in keys)


@functools.cache
def _add_statement(dialect: Any, table: sa.Table) -> sa.Insert:
    stmt = dialect.insert(table)
    pk = [c.name for c in table.primary_key.columns]
    return stmt.on_conflict_do_update(
        index_elements=pk, set_={name: table.c[name] + stmt.excluded[name] for name in _counter_columns(table)}
    )


def _event_row(event: Envelope) -> dict[str, Any]:
    return {
        "event_id": event.id,
        "type": event.type,
        "subject": event.subject,
        "sequence": event.sequence,
        "time": event.time,
        "envelope": event.to_json(),
    }


async def store_event(conn: AsyncConnection, event: Envelope) -> bool:
    """Append the event to the event store; False if it is there already."""
    return await insert_if_absent(conn, event_store, _event_row(event))


STORED_LIMITS = {name: getattr(event_store.c[name].type, "length", None) for name in ("event_id", "type", "subject")}
MAX_SEQUENCE = 2**31 - 1


async def store_event_at_commit(conn: AsyncConnection, event: Envelope) -> None:
    """`store_event`, but inside a transaction the row joins the others of the batch, all written in one
    statement as it commits (see `add_to_counters`).

    PostgreSQL would refuse a value longer than its column at that commit, failing the whole batch again
    and again; it is refused here instead, failing this message alone, as a direct insert would.
    """
    pending = _pending(conn)
    if pending is None:
        await store_event(conn, event)
        return
    row = _event_row(event)
    if conn.dialect.name == "postgresql":
        too_long = [name for name, limit in STORED_LIMITS.items() if limit is not None and len(row[name]) > limit]
        if too_long or row["sequence"] > MAX_SEQUENCE:
            raise ValueError(f"event {event.id!r} does not fit the event store: {too_long or ['sequence']}")
    pending.events.append(row)


PENDING = "tarjotin.reporting.pending_writes"


@dataclass
class _Pending:
    """Writes of one transaction kept until it commits: event-store rows, counter deltas summed per row, and
    whether to raise the read models' generation."""

    transaction: Any
    raise_generation: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)
    counters: dict[sa.Table, dict[tuple[Any, ...], dict[str, Any]]] = field(default_factory=dict)
    states: dict[sa.Table, dict[str, _State]] = field(default_factory=dict)


Counted = list[tuple[sa.Table, dict[str, Any], dict[str, int]]]


@dataclass
class _State:
    """An aggregate's newest state row in this transaction, and what its change adds to which counters
    given the state it replaces (None for a new aggregate)."""

    row: dict[str, Any]
    deltas: Callable[[Any], Counted]


def _pending(conn: AsyncConnection) -> _Pending | None:
    """This transaction's pending writes; None where they must be written at once: outside a transaction,
    or inside a savepoint (one message at a time, after a handler failed), whose rollback must take them."""
    sync = conn.sync_connection
    assert sync is not None
    transaction = sync.get_transaction()
    if transaction is None or sync.in_nested_transaction():
        return None
    pending: _Pending | None = sync.info.get(PENDING)
    if pending is None or pending.transaction is not transaction:
        pending = sync.info[PENDING] = _Pending(transaction)
        if not sa.event.contains(sync.engine, "commit", _write_pending):
            sa.event.listen(sync.engine, "commit", _write_pending)
    return pending


async def add_to_counters(
    conn: AsyncConnection, table: sa.Table, key: Mapping[str, Any], delta: Mapping[str, int]
) -> None:
    """Add `delta` to the counter row `key` (created at zero if missing).

    Inside a transaction (a consumer batch, a rebuild) the deltas are summed per row and written as the
    transaction commits, one statement per table (`_write_pending`): a batch of events moving the same
    rows pays for each row once.
    """
    if not any(delta.values()):
        return
    pending = _pending(conn)
    if pending is None:
        params = {**key, **{name: delta.get(name, 0) for name in _counter_columns(table) if name not in key}}
        await conn.execute(_add_statement(_dialect(conn), table), params)
        return
    _add_pending(pending, table, key, delta)


def _add_pending(pending: _Pending, table: sa.Table, key: Mapping[str, Any], delta: Mapping[str, int]) -> None:
    rows = pending.counters.setdefault(table, {})
    row_key = tuple(key.values())
    row = rows.get(row_key)
    if row is None:
        row = rows[row_key] = {**key, **{name: 0 for name in _counter_columns(table) if name not in key}}
    for name, value in delta.items():
        row[name] += value


@functools.cache
def _store_statement(dialect: Any) -> sa.Insert:
    return dialect.insert(event_store).on_conflict_do_nothing(index_elements=["event_id"])


def _write_pending(sync: sa.Connection) -> None:
    """Before a transaction commits (SQLAlchemy's `commit` event, still inside it): write what it kept back.

    Counter rows in key order, so that competing consumers on PostgreSQL lock them in the same order.
    """
    pending = sync.info.pop(PENDING, None)
    if pending is None or pending.transaction is not sync.get_transaction():
        return  # kept by a transaction that rolled back: dropped with it
    dialect = postgresql if sync.dialect.name == "postgresql" else sqlite
    if pending.events:
        sync.execute(_store_statement(dialect), pending.events)
    _write_states(sync, pending)
    for table, rows in pending.counters.items():
        sync.execute(_add_statement(dialect, table), [rows[key] for key in sorted(rows)])
    if pending.raise_generation:  # last: the one row every batch writes stays locked the shortest time
        sync.execute(RAISE_GENERATION)


RAISE_GENERATION = (
    read_model_generation.update()
    .where(read_model_generation.c.id == 1)
    .values(generation=read_model_generation.c.generation + 1)
)


async def raise_generation(conn: AsyncConnection) -> None:
    """Mark the read models changed: the API's cached answers of older generations are no longer served."""
    await conn.execute(RAISE_GENERATION)


async def raise_generation_once(conn: AsyncConnection) -> None:
    """`raise_generation`, once per transaction (a consumer batch) however many events it projects, as it
    commits: the generation row is then locked (PostgreSQL) only for the commit, not the whole batch.

    Inside a savepoint (the consumer's one-by-one mode after a handler failed) it runs at once, every time:
    a savepoint rolled back would take the raise with it.
    """
    pending = _pending(conn)
    if pending is None:
        await raise_generation(conn)
    else:
        pending.raise_generation = True


def _difference(new: Mapping[str, int], old: Mapping[str, int]) -> dict[str, int]:
    return {name: new.get(name, 0) - old.get(name, 0) for name in set(new) | set(old)}


# --- institutions and offerings -------------------------------------------------------------------


async def project_institution(conn: AsyncConnection, event: Envelope) -> None:
    data = InstitutionRegistered.model_validate(event.data)
    values = {
        "name": data.names.fi or data.names.sv or data.names.en or data.institution_id,
        "member": data.member,
        "region": data.region,
        "municipality": data.municipality,
    }
    await upsert_if_newer(conn, institutions, {"id": data.institution_id}, event.sequence, values)


async def project_offering(conn: AsyncConnection, event: Envelope) -> None:
    """published/updated carry the whole offering: its details (by `info_version`) and status (by `version`)."""
    data = OfferingUpdated.model_validate({"status": "published", **event.data})
    info = {
        "provider_id": data.provider_id,
        "title": data.titles.fi or data.titles.sv or data.titles.en or data.offering_id,
        "subject": data.subject,
        "level": data.level,
        "credits": Decimal(data.credits),
        "academic_year": data.academic_year,
        "start_date": data.start_date,
        "end_date": data.end_date,
        "period": domain.period_of(data.start_date),
        "region": data.region,
        "max_participants": data.max_participants,
        "min_participants": data.min_participants,
    }
    key, seq = data.offering_id, event.sequence
    first = {"id": key, **info, "info_version": seq, "status": data.status, "version": seq}
    if not await insert_if_absent(conn, offerings, first):
        await conn.execute(
            offerings.update()
            .where(offerings.c.id == key, offerings.c.info_version < seq)
            .values(info_version=seq, **info)
        )
        await conn.execute(
            offerings.update()
            .where(offerings.c.id == key, offerings.c.version < seq)
            .values(status=data.status, version=seq)
        )
    # An offering appears in the participants report from its publication on, with zero counts.
    zeros = dict.fromkeys(domain.ENROLMENT_COUNTERS, 0)
    counts = {"offering_id": key, "provider_id": data.provider_id, "academic_year": data.academic_year, **zeros}
    await insert_if_absent(conn, offering_counts, counts)


async def project_offering_cancelled(conn: AsyncConnection, event: Envelope) -> None:
    """Carries the offering's version; may arrive before the publication it cancels."""
    data = OfferingCancelled.model_validate(event.data)
    first = {
        "id": data.offering_id,
        "provider_id": data.provider_id,
        "info_version": 0,
        "status": "cancelled",
        "version": event.sequence,
    }
    if not await insert_if_absent(conn, offerings, first):
        await conn.execute(
            offerings.update()
            .where(offerings.c.id == data.offering_id, offerings.c.version < event.sequence)
            .values(status="cancelled", version=event.sequence)
        )


# --- state rows with counters ---------------------------------------------------------------------


@functools.cache
def _advance_statement(
    dialect: Any, table: sa.Table, key: str, previous: tuple[tuple[str, str], ...], with_key: bool = False
) -> sa.Insert:
    stmt = dialect.insert(table)
    kept = {prev for prev, _ in previous}
    changes: dict[str, Any] = {prev: table.c[current] for prev, current in previous}  # the row as it was
    changes.update({c.name: stmt.excluded[c.name] for c in table.columns if c.name != key and c.name not in kept})
    returned = [table.c[key]] if with_key else []
    return stmt.on_conflict_do_update(
        index_elements=[key], set_=changes, where=table.c.version < stmt.excluded.version
    ).returning(*returned, *(table.c[prev] for prev, _ in previous))


async def advance_state(
    conn: AsyncConnection, table: sa.Table, key: str, previous: tuple[tuple[str, str], ...], row: Mapping[str, Any]
) -> tuple[bool, Any]:
    """Write the aggregate's state row unless it holds this `version` or a newer one, in one statement.

    Returns (changed, previous): `changed` is False for a stale or repeated event; `previous` is the
    state the row held before (its `prev_*` columns, None for a new aggregate). An upsert rather than
    SELECT … FOR UPDATE then write: one round trip, and atomic for competing consumers on PostgreSQL.
    """
    params = {**row, **{prev: None for prev, _ in previous}}
    returned = (await conn.execute(_advance_statement(_dialect(conn), table, key, previous), params)).first()
    if returned is None:
        return False, None
    return True, (None if returned[0] is None else returned)


ENROLMENT_PREVIOUS = (("prev_status", "status"), ("prev_late", "late"), ("prev_credits_centi", "credits_centi"))
COMMITMENT_PREVIOUS = (
    ("prev_status", "status"),
    ("prev_amount", "amount"),
    ("prev_chargeable_amount", "chargeable_amount"),
)
_STATE_TABLES: dict[sa.Table, tuple[str, tuple[tuple[str, str], ...]]] = {
    enrolment_states: ("enrolment_id", ENROLMENT_PREVIOUS),
    commitment_states: ("commitment_id", COMMITMENT_PREVIOUS),
}
# Aggregates a transaction keeps back before it writes them early (a rebuild replays every event in one
# transaction): bounds the memory; costs one statement per table per this many aggregates.
MAX_PENDING_STATES = 1000
_INT_BITS = ((sa.BigInteger, 63), (sa.SmallInteger, 15), (sa.Integer, 31))  # subclasses first


@functools.cache
def _limits(table: sa.Table) -> tuple[tuple[str, str, int], ...]:
    """(column, kind, limit) of a table's length-limited strings and integers."""
    found = []
    for column in table.columns:
        kind = column.type.impl if isinstance(column.type, sa.TypeDecorator) else column.type
        if isinstance(kind, sa.String) and kind.length:
            found.append((column.name, "length", kind.length))
        else:
            bits = next((bits for integer, bits in _INT_BITS if isinstance(kind, integer)), None)
            if bits is not None:
                found.append((column.name, "integer", 2**bits))
    return tuple(found)


def _check_fits(table: sa.Table, row: Mapping[str, Any]) -> None:
    """Refuse, now, a row PostgreSQL would refuse when the batch commits: that would fail the whole batch
    again and again (the consumer retries database failures), where this fails the one message."""
    for name, kind, limit in _limits(table):
        value: Any = row.get(name)
        if value is None:
            continue
        if isinstance(value, Decimal):  # money: euros kept as integer cents (fractions refused by to_cents)
            value = value * 100
        if (kind == "length" and len(value) > limit) or (kind == "integer" and not -limit <= value < limit):
            raise ValueError(f"{table.name}.{name} cannot hold {row[name]!r}")


async def advance_state_and_count(
    conn: AsyncConnection, table: sa.Table, row: dict[str, Any], deltas: Callable[[Any], Counted]
) -> None:
    """`advance_state`, then the counters moved by `deltas(previous)` if the state changed.

    Inside a transaction (a consumer batch, a rebuild) both wait for the commit (`_write_states`): the
    aggregate's newest row of the batch is written with the others of its table in one upsert, and the
    counters move by the difference from the state it replaced: the same sum as event by event.
    """
    key, previous = _STATE_TABLES[table]
    pending = _pending(conn)
    if pending is None:
        changed, before = await advance_state(conn, table, key, previous, row)
        if changed:
            for counter_table, counter_key, delta in deltas(before):
                await add_to_counters(conn, counter_table, counter_key, delta)
        return
    if conn.dialect.name == "postgresql":
        _check_fits(table, row)
    states = pending.states.setdefault(table, {})
    held = states.get(row[key])
    if held is None or held.row["version"] < row["version"]:
        states[row[key]] = _State(row, deltas)
    if sum(len(rows) for rows in pending.states.values()) >= MAX_PENDING_STATES:
        await conn.run_sync(_write_states, pending)


def _write_states(sync: sa.Connection, pending: _Pending) -> None:
    """Write the kept-back state rows, one upsert per table in key order; add what changed to the counters."""
    dialect = postgresql if sync.dialect.name == "postgresql" else sqlite
    for table, states in pending.states.items():
        key, previous = _STATE_TABLES[table]
        rows = [{**states[k].row, **{prev: None for prev, _ in previous}} for k in sorted(states)]
        for returned in sync.execute(_advance_statement(dialect, table, key, previous, with_key=True), rows):
            before = None if returned[1] is None else tuple(returned[1:])
            for counter_table, counter_key, delta in states[returned[0]].deltas(before):
                if any(delta.values()):
                    _add_pending(pending, counter_table, counter_key, delta)
    pending.states.clear()


async def project_enrolment(conn: AsyncConnection, event: Envelope) -> None:
    """Move the enrolment to the status its newest event implies, keeping every counter in step."""
    facts = EnrolmentFacts.model_validate(event.data)
    late, credits, grade = False, 0, None
    if event.routing_key == "enrolment.withdrawn":
        late = EnrolmentWithdrawn.model_validate(event.data).late
    outcome = None
    if event.routing_key == "enrolment.completed":
        completed = EnrolmentCompleted.model_validate(event.data)
        outcome, grade, credits = completed.outcome, completed.grade, domain.credits_centi(completed.credits_earned)
    new = domain.EnrolmentState(domain.enrolment_status(event.routing_key, outcome), late, credits)
    values = {
        "offering_id": facts.offering_id,
        "provider_id": facts.provider_id,
        "home_institution_id": facts.home_institution_id,
        "academic_year": facts.academic_year,
        "student_ref": facts.student_ref,
        "status": new.status,
        "late": new.late,
        "credits_centi": new.credits_centi,
        "grade": grade,
        "follow_up": domain.needs_follow_up(new),
        "status_at": event.time,
        "version": event.sequence,
    }
    row = {"enrolment_id": facts.enrolment_id, **values}
    dims = {"provider_id": facts.provider_id, "academic_year": facts.academic_year}
    offering_key = {"offering_id": facts.offering_id, **dims}
    offering_home_key = {"offering_id": facts.offering_id, "home_institution_id": facts.home_institution_id, **dims}
    pair_key = {"home_institution_id": facts.home_institution_id, **dims}
    provider_key = {"academic_year": facts.academic_year, "provider_id": facts.provider_id}
    home_key = {"academic_year": facts.academic_year, "home_institution_id": facts.home_institution_id}

    contribution = domain.enrolment_contribution(new)  # now: a refusal fails this message, not the commit

    def deltas(previous: Any) -> Counted:
        old = None if previous is None else domain.EnrolmentState(*previous)
        delta = _difference(contribution, domain.enrolment_contribution(old))
        return [
            (offering_counts, offering_key, delta),
            (offering_home_counts, offering_home_key, delta),
            (home_provider_counts, pair_key, delta),
            (provider_counts, provider_key, delta),
            (home_counts, home_key, delta),
        ]

    await advance_state_and_count(conn, enrolment_states, row, deltas)


async def project_commitment(conn: AsyncConnection, event: Envelope) -> None:
    """Same rule for commitments, by the commitment's sequence; counters per (year, payee, payer)."""
    facts = CommitmentFacts.model_validate(event.data)
    chargeable = Decimal(0)
    if event.routing_key == "commitment.created":
        status = CommitmentCreated.model_validate(event.data).status
    else:
        status = domain.STATUS_BY_COMMITMENT_EVENT[event.routing_key]
    if event.routing_key == "commitment.chargeable":
        chargeable = CommitmentChargeable.model_validate(event.data).chargeable_amount
    new = domain.CommitmentState(status, domain.to_cents(facts.amount), domain.to_cents(chargeable))
    contribution = domain.commitment_contribution(new)  # refuses an unknown status before anything is written
    values = {
        "enrolment_id": facts.enrolment_id,
        "offering_id": facts.offering_id,
        "payer_id": facts.payer_id,
        "payee_id": facts.payee_id,
        "academic_year": facts.academic_year,
        "amount": facts.amount,
        "chargeable_amount": chargeable,
        "status": status,
        "version": event.sequence,
    }
    row = {"commitment_id": facts.commitment_id, **values}
    key = {"academic_year": facts.academic_year, "payee_id": facts.payee_id, "payer_id": facts.payer_id}

    def deltas(previous: Any) -> Counted:
        old = None
        if previous is not None:
            status, amount, charged = previous
            old = domain.CommitmentState(status, domain.to_cents(amount), domain.to_cents(charged))
        delta = _difference(contribution, domain.commitment_contribution(old))
        return [(billing_counts, key, delta), *_billing_sides(key, delta)]

    await advance_state_and_count(conn, commitment_states, row, deltas)


async def project_invoice(conn: AsyncConnection, event: Envelope) -> None:
    """Invoices never change: one row each, counted by the year and time it was issued."""
    data = InvoiceIssued.model_validate(event.data)
    row = {
        "invoice_id": data.invoice_id,
        "number": data.number,
        "payee_id": data.payee_id,
        "payer_id": data.payer_id,
        "total": data.total,
        "commitment_count": len(data.commitment_ids),
        "period_start": data.period_start,
        "period_end": data.period_end,
        "issued_at": event.time,
        "academic_year": domain.academic_year_of(event.time),
    }
    if await insert_if_absent(conn, invoices, row):
        await _count_document(conn, row, {"invoice_count": 1, "invoiced_cents": domain.to_cents(data.total)})


async def project_credit_note(conn: AsyncConnection, event: Envelope) -> None:
    data = CreditNoteIssued.model_validate(event.data)
    row = {
        "credit_note_id": data.credit_note_id,
        "number": data.number,
        "invoice_id": data.invoice_id,
        "payee_id": data.payee_id,
        "payer_id": data.payer_id,
        "total": data.total,
        "issued_at": event.time,
        "academic_year": domain.academic_year_of(event.time),
    }
    if await insert_if_absent(conn, credit_notes, row):
        await _count_document(conn, row, {"credit_note_count": 1, "credited_cents": domain.to_cents(data.total)})


async def _count_document(conn: AsyncConnection, row: Mapping[str, Any], delta: Mapping[str, int]) -> None:
    """Documents never change: each counts once, when its row is first written."""
    key = {name: row[name] for name in ("academic_year", "payee_id", "payer_id")}
    for table, counter_key, counted in [(document_counts, key, delta), *_billing_sides(key, delta)]:
        await add_to_counters(conn, table, counter_key, counted)


def _billing_sides(key: Mapping[str, Any], delta: Mapping[str, int]) -> Counted:
    """A (year, payee, payer) counter `delta` in the roll-up: the payee's side as provider, the payer's as home."""
    year = key["academic_year"]
    return [
        (institution_billing_counts, {"academic_year": year, "institution_id": key[party], "side": side}, dict(delta))
        for party, side in zip(("payee_id", "payer_id"), BILLING_SIDES, strict=True)
    ]


def recorder(projections: Mapping[str, Projection]) -> Projection:
    """The one handler of the reporting queue: store every event, then project it."""

    async def record(conn: AsyncConnection, event: Envelope) -> None:
        await raise_generation_once(conn)
        await store_event_at_commit(conn, event)
        projection = projections.get(event.routing_key)
        if projection is not None:
            await projection(conn, event)

    return record
