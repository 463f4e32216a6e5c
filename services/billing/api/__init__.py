"""Billing HTTP routes: commitments, policies and invoices, every one behind a bearer token.

Who may call what is in `services.billing.access` (and `tests/authz/matrix.csv`); every state
change writes an audit row in its own transaction.
"""

from fastapi import APIRouter

from services.billing.api import commitments, invoices, policies
from services.billing.api.common import retrying_conflicts
from services.billing.api.invoices import negotiate
from services.billing.api.schemas import (
    BulkAccept,
    BulkReject,
    CommitmentRead,
    Decision,
    DocumentSummary,
    InvoiceLineRead,
    InvoiceRead,
    InvoiceRunCreate,
    InvoiceRunRead,
    InvoiceSummaryRead,
    PolicyBody,
    PolicyRead,
)

router = APIRouter()
router.include_router(commitments.router)
router.include_router(policies.router)
router.include_router(invoices.router)

__all__ = [
    "BulkAccept",
    "BulkReject",
    "CommitmentRead",
    "Decision",
    "DocumentSummary",
    "InvoiceLineRead",
    "InvoiceRead",
    "InvoiceRunCreate",
    "InvoiceRunRead",
    "InvoiceSummaryRead",
    "PolicyBody",
    "PolicyRead",
    "negotiate",
    "retrying_conflicts",
    "router",
]
