"""Who may see and decide what in billing: the tenant rules, apart from the routes that apply them.

- A commitment is visible to the counsellors and finance staff of its payer (the home institution)
  and of its payee (the provider), and to the network admin. Only the payer's staff (or the admin)
  decide it: the provider can see what it is owed but cannot accept on the payer's behalf.
- An invoice or credit note is visible to the finance staff of its payer and payee, and to the admin.
- A commitment policy is visible to the institution's own counsellors and finance staff, and the admin.

What a caller may not see answers 404, exactly as if it did not exist, so ids of other schools'
commitments and invoices reveal nothing. What a caller sees but may not do answers 403.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from shared.auth import Principal
from shared.errors import Forbidden, NotFound


def sees(caller: Principal, payer_id: str, payee_id: str) -> bool:
    """A commitment or invoice between `payer_id` and `payee_id`: the admin, or staff of either side."""
    return caller.acts_for(payer_id) or caller.acts_for(payee_id)


def scope(caller: Principal, table: sa.Table) -> sa.ColumnElement[bool]:
    """The SQL condition that keeps a list of `table` (with payer_id, payee_id) to what the caller sees."""
    if caller.is_admin:
        return sa.true()
    if caller.institution_id is None:
        return sa.false()
    return sa.or_(table.c.payer_id == caller.institution_id, table.c.payee_id == caller.institution_id)


def check_decisions(caller: Principal, ids: Sequence[str], parties: Mapping[str, Any], accept: bool) -> None:
    """May the caller accept or reject these commitments (`parties`: id → row with payer_id, payee_id)?

    Unknown or invisible ids answer 404, naming them, so that none is decided; ids the caller sees
    only as the payee answer 403: the payer's staff decide what the payer pays.
    """
    verb = "accepted" if accept else "rejected"
    hidden = [i for i in ids if i not in parties or not sees(caller, parties[i].payer_id, parties[i].payee_id)]
    if hidden:
        if len(ids) == 1:
            raise NotFound(f"Commitment {hidden[0]!r} does not exist.")
        raise NotFound(f"No commitment has these ids, so none was {verb}: {', '.join(hidden)}.", missing=hidden)
    not_payer = [i for i in ids if not caller.acts_for(parties[i].payer_id)]
    if not_payer:
        listed = ", ".join(f"{i} (payer {parties[i].payer_id})" for i in not_payer)
        raise Forbidden(
            f"Only the paying institution's counsellors or finance staff decide a commitment; "
            f"{caller.institution_id} is the provider of {listed}, so none was {verb}.",
            not_payer=not_payer,
        )


def check_policy_visible(caller: Principal, institution_id: str) -> None:
    if not caller.acts_for(institution_id):
        raise NotFound(f"Institution {institution_id!r} is not known to billing.")


def check_document_visible(caller: Principal, document: Mapping[str, Any], invoice_id: str) -> None:
    if not sees(caller, document["payer_id"], document["payee_id"]):
        raise NotFound(f"No invoice or credit note has id {invoice_id!r}.")


def invoice_run_payee(caller: Principal, requested: str | None) -> str | None:
    """The provider an invoice run is limited to: the admin may name one or none (the whole network);
    finance staff run only their own institution's invoices as the payee."""
    if caller.is_admin:
        return requested
    if requested is not None and requested != caller.institution_id:
        raise Forbidden(
            f"Finance staff of {caller.institution_id} run invoices only for {caller.institution_id} "
            f"as the provider, not for {requested}."
        )
    return caller.institution_id
