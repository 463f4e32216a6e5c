"""Route: bulk CSV import of courses and offerings (provider staff of their own institution, or the network admin)."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.datastructures import UploadFile

from services.catalogue import imports
from services.catalogue.api.access import ProviderStaff, check_provider
from services.catalogue.api.common import IdempotencyKey, record
from services.catalogue.api.models import ImportReport
from services.catalogue.tables import idempotency_keys
from shared.errors import Invalid
from shared.http import correlation_id, problem_responses
from shared.idempotency import run_once, scoped_key
from shared.service import EngineDep

router = APIRouter(tags=["imports"])
CSV_TYPES = {"text/csv", "application/csv", "text/plain", "application/vnd.ms-excel"}
COLUMN_DOCS = "\n".join(f"- `{name}`: {text}" for name, text in imports.COLUMNS.items())


async def _file_bytes(request: Request) -> bytes:
    """The CSV, sent raw (`text/csv`) or as the `file` field of a multipart form; at most MAX_BYTES."""
    limit = imports.MAX_BYTES
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=10)
        upload = form.get("file")
        if isinstance(upload, UploadFile):
            data = await upload.read(limit + 1)
        elif isinstance(upload, str):
            data = upload.encode()
        else:
            raise Invalid("The multipart form has no field named `file`; send the CSV file in a field `file`.")
    elif kind in CSV_TYPES:
        chunks = bytearray()
        async for chunk in request.stream():
            chunks += chunk
            if len(chunks) > limit:
                break
        data = bytes(chunks)
    else:
        raise HTTPException(
            415, f"Send the CSV as text/csv, or as multipart/form-data with a field `file` (got {kind or 'nothing'})."
        )
    if len(data) > limit:
        raise HTTPException(413, f"The file is larger than {limit // 1024} KiB; split it into smaller files.")
    return data


@router.post(
    "/imports",
    response_model=ImportReport,
    responses=problem_responses(401, 403, 413, 415, 422),
    description=f"""Create or update courses and offerings from a CSV file (UTF-8; comma, semicolon or tab
separated; header on line 1; at most {imports.MAX_ROWS} rows and {imports.MAX_BYTES // 1024} KiB).

Every row is checked first; the good rows are then written together in one transaction and the bad
ones are reported with their line and reasons (a row is applied whole or not at all). Courses are
matched by provider and `code`, offerings by provider and `external_id`, so importing the same file
again reports `unchanged`. An empty optional cell keeps what an existing course or offering has (a new
one gets the default). `publish=true` publishes a draft (events through the outbox). A file that cannot be
read, or lacks required columns, is refused (422) and changes nothing. `dry_run=true` answers the same
report and changes nothing.

Provider staff import only their own institution's courses and offerings: `provider_id` defaults to it,
another institution's `provider_id` on the request is refused (403), and a row naming another provider is
rejected on its line. The network admin may import for any provider.

Columns:

{COLUMN_DOCS}
""",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
            },
        }
    },
)
async def import_csv(
    request: Request,
    engine: EngineDep,
    caller: ProviderStaff,
    provider_id: Annotated[str | None, Query(max_length=64, description="for rows without provider_id")] = None,
    dry_run: Annotated[bool, Query(description="check and report, change nothing")] = False,
    key: IdempotencyKey = None,
) -> JSONResponse:
    only_provider = None if caller.is_admin else caller.institution_id
    requested = provider_id is not None
    if provider_id is not None:
        check_provider(caller, provider_id)
    else:
        provider_id = only_provider  # provider staff import for their own institution by default
    data = await _file_bytes(request)
    imports.read(data, provider_id, requested=requested)  # a file that cannot be read is refused before any work
    cid = correlation_id(request)

    async def work(conn: AsyncConnection) -> tuple[int, dict[str, Any]]:
        rows = imports.read(data, provider_id, requested=requested)
        report = await imports.import_rows(conn, rows, cid, dry_run=dry_run, only_provider=only_provider)
        if not dry_run:
            applied = sorted({row.provider_id for row in rows if row.provider_id and not row.errors})
            await record(conn, caller, "import.apply", ",".join(applied)[:200] or provider_id)
        return 200, ImportReport.model_validate(report).model_dump(mode="json")

    if dry_run:
        async with engine.connect() as conn:
            transaction = await conn.begin()
            try:
                _status, body = await work(conn)
            finally:
                await transaction.rollback()
        return JSONResponse(body)
    fingerprint = {"sha256": hashlib.sha256(data).hexdigest(), "provider_id": provider_id}
    scoped = scoped_key(f"{request.method} {request.url.path}", caller.subject, key)
    status, body, replayed = await run_once(engine, idempotency_keys, scoped, fingerprint, work)
    if not replayed and status == 200 and body["created"] + body["updated"] >= imports.ANALYZE_FROM_ROWS:
        await imports.analyze_search_tables(engine)
    return JSONResponse(body, status_code=status)
