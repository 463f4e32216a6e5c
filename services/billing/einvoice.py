"""Invoice exports: PEPPOL BIS Billing 3.0 UBL (Invoice / CreditNote) and CSV of the lines. No I/O.

Education services between these institutions are exempt from VAT: every line and the one VAT
breakdown carry category `E` at 0 % with the exemption reason (VATEX-EU-132-1I, Directive
2006/112/EC art. 132(1)(i)). Seller is the payee (the provider), buyer the payer (the home institution).
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

CUSTOMIZATION_ID = "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
PROFILE_ID = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
NS = {
    "Invoice": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
    "CreditNote": "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
}
VAT_CATEGORY = "E"
EXEMPTION_CODE = "VATEX-EU-132-1I"
EXEMPTION_REASON = "Education services exempt from VAT (Directive 2006/112/EC art. 132(1)(i); AVL 39 §)"
COUNTRY = "FI"
OVT_SCHEME = "0216"  # EAS: Finnish OVT code (0037 + Y-tunnus digits [+ suffix])
BUSINESS_ID_SCHEME = "0212"  # ICD: Finnish Organization Identifier (Y-tunnus)
INVOICE_TYPE, CREDIT_NOTE_TYPE = "380", "381"
CSV_COLUMNS = (
    "document_number",
    "kind",
    "issue_date",
    "payee_id",
    "payer_id",
    "line_no",
    "commitment_id",
    "enrolment_id",
    "offering_id",
    "academic_year",
    "description",
    "amount",
    "vat_rate",
    "vat_amount",
    "currency",
)

for _prefix, _uri in NS.items():
    # The document's own namespace is the default one, as in every UBL sample.
    ET.register_namespace(_prefix if _prefix in ("cac", "cbc") else "", _uri)


@dataclass(frozen=True)
class Party:
    """An institution as the e-invoice names it; anything unknown falls back to what is known."""

    institution_id: str
    name: str | None = None
    business_id: str | None = None
    einvoice_address: str | None = None
    municipality: str | None = None

    @property
    def display_name(self) -> str:
        return self.name or self.institution_id

    @property
    def business_digits(self) -> str | None:
        digits = re.sub(r"\D", "", self.business_id or "")
        return digits or None

    @property
    def endpoint(self) -> tuple[str, str] | None:
        """(EAS scheme, address): the e-invoice address, else the OVT code made from the Y-tunnus."""
        address = (self.einvoice_address or "").strip()
        if address:
            scheme, sep, value = address.partition(":")
            if sep and re.fullmatch(r"\d{4}", scheme) and value:
                return scheme, value
            return OVT_SCHEME, address
        if self.business_digits:
            return OVT_SCHEME, f"0037{self.business_digits}"
        return None

    @property
    def vat_id(self) -> str | None:
        return f"{COUNTRY}{self.business_digits}" if self.business_digits else None


def money(value: Decimal) -> str:
    return f"{value:.2f}"


class _Doc:
    """A tiny builder that keeps UBL's element order readable."""

    def __init__(self, root: str) -> None:
        self.root = ET.Element(f"{{{NS[root]}}}{root}")

    @staticmethod
    def add(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        prefix, _, local = tag.partition(":")
        element = ET.SubElement(parent, f"{{{NS[prefix]}}}{local}", attrs)
        if text is not None:
            element.text = text
        return element

    def amount(self, parent: ET.Element, tag: str, value: Decimal, currency: str) -> None:
        self.add(parent, tag, money(value), currencyID=currency)


def _party(doc: _Doc, parent: ET.Element, wrapper: str, party: Party, *, seller: bool) -> None:
    node = doc.add(doc.add(parent, wrapper), "cac:Party")
    endpoint = party.endpoint
    if endpoint is not None:
        doc.add(node, "cbc:EndpointID", endpoint[1], schemeID=endpoint[0])
    doc.add(doc.add(node, "cac:PartyIdentification"), "cbc:ID", party.institution_id)
    doc.add(doc.add(node, "cac:PartyName"), "cbc:Name", party.display_name)
    address = doc.add(node, "cac:PostalAddress")
    if party.municipality:
        doc.add(address, "cbc:CityName", party.municipality)
    doc.add(doc.add(address, "cac:Country"), "cbc:IdentificationCode", COUNTRY)
    if party.vat_id is not None:
        scheme = doc.add(node, "cac:PartyTaxScheme")
        doc.add(scheme, "cbc:CompanyID", party.vat_id)
        doc.add(doc.add(scheme, "cac:TaxScheme"), "cbc:ID", "VAT")
    elif seller:
        # BR-E-02 wants a seller tax identifier on a VAT-exempt invoice; without a Y-tunnus the
        # network's own id is the only registration we know (tax scheme other than VAT, i.e. BT-32).
        scheme = doc.add(node, "cac:PartyTaxScheme")
        doc.add(scheme, "cbc:CompanyID", f"TARJOTIN:{party.institution_id}")
        doc.add(doc.add(scheme, "cac:TaxScheme"), "cbc:ID", "TAX")
    legal = doc.add(node, "cac:PartyLegalEntity")
    doc.add(legal, "cbc:RegistrationName", party.display_name)
    if party.business_id:
        doc.add(legal, "cbc:CompanyID", party.business_id, schemeID=BUSINESS_ID_SCHEME)


def _tax_category(doc: _Doc, parent: ET.Element, tag: str, vat_rate: Decimal, *, reason: bool) -> None:
    category = doc.add(parent, tag)
    doc.add(category, "cbc:ID", VAT_CATEGORY)
    doc.add(category, "cbc:Percent", f"{vat_rate.normalize():f}")
    if reason:
        doc.add(category, "cbc:TaxExemptionReasonCode", EXEMPTION_CODE)
        doc.add(category, "cbc:TaxExemptionReason", EXEMPTION_REASON)
    doc.add(doc.add(category, "cac:TaxScheme"), "cbc:ID", "VAT")


def render_ubl(document: Mapping[str, Any], seller: Party, buyer: Party) -> bytes:
    """A PEPPOL BIS Billing 3.0 Invoice, or CreditNote for a credit note, of one stored document."""
    credit = document["kind"] == "credit_note"
    root_name = "CreditNote" if credit else "Invoice"
    doc = _Doc(root_name)
    root, add = doc.root, doc.add
    currency: str = document["currency"]
    vat_rate: Decimal = document["vat_rate"]
    lines: Sequence[Mapping[str, Any]] = document["lines"]
    net_total: Decimal = sum((line["amount"] for line in lines), Decimal("0.00"))
    vat_amount: Decimal = document["vat_amount"]
    issue_date: date = document["issue_date"]
    due_date: date = document["due_date"]

    add(root, "cbc:CustomizationID", CUSTOMIZATION_ID)
    add(root, "cbc:ProfileID", PROFILE_ID)
    add(root, "cbc:ID", document["number"])
    add(root, "cbc:IssueDate", issue_date.isoformat())
    if not credit:
        add(root, "cbc:DueDate", due_date.isoformat())
    add(
        root,
        "cbc:CreditNoteTypeCode" if credit else "cbc:InvoiceTypeCode",
        CREDIT_NOTE_TYPE if credit else INVOICE_TYPE,
    )
    add(root, "cbc:Note", f"Tarjotin course enrolments, {document['period_start']} – {document['period_end']}")
    add(root, "cbc:DocumentCurrencyCode", currency)
    add(root, "cbc:BuyerReference", buyer.institution_id)
    period = add(root, "cac:InvoicePeriod")
    add(period, "cbc:StartDate", document["period_start"].isoformat())
    add(period, "cbc:EndDate", document["period_end"].isoformat())
    if credit and document.get("original_invoice_number"):
        reference = add(add(root, "cac:BillingReference"), "cac:InvoiceDocumentReference")
        add(reference, "cbc:ID", document["original_invoice_number"])
        if document.get("original_invoice_issue_date"):
            add(reference, "cbc:IssueDate", document["original_invoice_issue_date"].isoformat())
    _party(doc, root, "cac:AccountingSupplierParty", seller, seller=True)
    _party(doc, root, "cac:AccountingCustomerParty", buyer, seller=False)
    if credit:
        terms = f"Credited against invoice {document.get('original_invoice_number')}"
    else:
        terms = f"Payable by {due_date.isoformat()}"
    add(add(root, "cac:PaymentTerms"), "cbc:Note", terms)

    tax_total = add(root, "cac:TaxTotal")
    doc.amount(tax_total, "cbc:TaxAmount", vat_amount, currency)
    subtotal = add(tax_total, "cac:TaxSubtotal")
    doc.amount(subtotal, "cbc:TaxableAmount", net_total, currency)
    doc.amount(subtotal, "cbc:TaxAmount", vat_amount, currency)
    _tax_category(doc, subtotal, "cac:TaxCategory", vat_rate, reason=True)

    totals = add(root, "cac:LegalMonetaryTotal")
    doc.amount(totals, "cbc:LineExtensionAmount", net_total, currency)
    doc.amount(totals, "cbc:TaxExclusiveAmount", net_total, currency)
    doc.amount(totals, "cbc:TaxInclusiveAmount", net_total + vat_amount, currency)
    doc.amount(totals, "cbc:PayableAmount", net_total + vat_amount, currency)

    for line in lines:
        node = add(root, "cac:CreditNoteLine" if credit else "cac:InvoiceLine")
        add(node, "cbc:ID", str(line["line_no"]))
        add(node, "cbc:Note", f"Commitment {line['commitment_id']}, enrolment {line['enrolment_id']}")
        add(node, "cbc:CreditedQuantity" if credit else "cbc:InvoicedQuantity", "1", unitCode="C62")
        doc.amount(node, "cbc:LineExtensionAmount", line["amount"], currency)
        item = add(node, "cac:Item")
        add(item, "cbc:Description", line["description"])
        add(item, "cbc:Name", f"Course enrolment, offering {line['offering_id']}")
        add(add(item, "cac:SellersItemIdentification"), "cbc:ID", line["offering_id"])
        _tax_category(doc, item, "cac:ClassifiedTaxCategory", vat_rate, reason=False)
        for name, value in (
            ("Commitment", line["commitment_id"]),
            ("Enrolment", line["enrolment_id"]),
            ("Academic year", line["academic_year"]),
        ):
            prop = add(item, "cac:AdditionalItemProperty")
            add(prop, "cbc:Name", name)
            add(prop, "cbc:Value", str(value))
        price = add(node, "cac:Price")
        doc.amount(price, "cbc:PriceAmount", line["amount"], currency)

    return bytes(ET.tostring(root, encoding="UTF-8", xml_declaration=True))


def render_csv(document: Mapping[str, Any]) -> str:
    """The document's lines, one row each, with the document's number, parties and VAT fields."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    vat_rate = f"{document['vat_rate'].normalize():f}"
    for line in document["lines"]:
        writer.writerow(
            (
                document["number"],
                document["kind"],
                document["issue_date"].isoformat(),
                document["payee_id"],
                document["payer_id"],
                line["line_no"],
                line["commitment_id"],
                line["enrolment_id"],
                line["offering_id"],
                line["academic_year"],
                line["description"],
                money(line["amount"]),
                vat_rate,
                money(Decimal("0.00")),
                document["currency"],
            )
        )
    return out.getvalue()
