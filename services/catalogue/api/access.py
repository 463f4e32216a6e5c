"""Who may do what in the catalogue (tests/authz/matrix.csv is the spec).

Reading is public: no token is needed for institutions, guidelines, courses and offerings. A token, if
one is sent, must verify, and it widens what is seen: draft offerings are shown only to their
provider's own staff and to network admins; everyone else gets 404 for them and never finds them.

Changing needs a token: institutions and guidelines belong to the network admin; courses, offerings
and imports to the providing institution's staff (or the network admin). Another institution's staff
get 403 with a message naming both institutions.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from shared.auth import Principal, Role, authenticate, require
from shared.errors import Forbidden
from shared.http import problem_responses

Admin = Annotated[Principal, Depends(require(Role.NETWORK_ADMIN))]
ProviderStaff = Annotated[Principal, Depends(require(Role.PROVIDER_STAFF, Role.NETWORK_ADMIN))]

# OpenAPI: public routes whose answer a token widens (the empty requirement: no token needed).
OPTIONAL_TOKEN: dict[str, Any] = {"security": [{}, {"HTTPBearer": []}]}
WRITE_RESPONSES = problem_responses(401, 403)
WRITE_BY_ID_RESPONSES = problem_responses(401, 403, 404)


async def optional_caller(request: Request) -> Principal | None:
    """FastAPI dependency: the verified caller if a bearer token was sent (401 if it does not verify),
    else None (anonymous)."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None  # not ours (e.g. a proxy's Basic credentials): read as anonymous
    return await authenticate(request, HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip()))


MaybeCaller = Annotated[Principal | None, Depends(optional_caller)]


def check_provider(caller: Principal, provider_id: str, what: str = "courses and offerings") -> None:
    """403 unless the caller is the network admin or acts for `provider_id`."""
    if caller.acts_for(provider_id):
        return
    raise Forbidden(
        f"You act for {caller.institution_id!r}; only the provider staff of {provider_id!r} or a network admin "
        f"may change its {what}.",
        provider_id=provider_id,
    )


def draft_providers(caller: Principal | None) -> tuple[str, ...] | None:
    """Whose drafts the caller may see: None for all (network admin), else a tuple of providers (maybe empty)."""
    if caller is None:
        return ()
    if caller.is_admin:
        return None
    if caller.role is Role.PROVIDER_STAFF and caller.institution_id:
        return (caller.institution_id,)
    return ()


def sees_drafts_of(caller: Principal | None, provider_id: str) -> bool:
    allowed = draft_providers(caller)
    return allowed is None or provider_id in allowed
