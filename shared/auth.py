"""Who is calling: bearer JWTs verified in every service, and the caller's role and institution.

Tokens are OIDC-style access tokens signed by the network's identity provider (RS256 or ES256). A
service verifies the signature with a key from the issuer's JWKS (fetched once, refreshed when an
unknown `kid` shows up, at most every 30 s) or with one configured public key, then expiry,
not-before, issuer and audience. Symmetric algorithms and `none` are never accepted, and the
algorithm must match the key's type, so an RSA public key can never be used as an HMAC secret.

Claims Tarjotin reads: `sub`, `role` (one of `Role`), `institution` (the institution a staff member
acts for; a student's home institution) and, for students, `learner_id`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import httpx
import jwt
import structlog
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.errors import Forbidden, Unauthenticated

log = structlog.get_logger("auth")

DEV_ISSUER = "tarjotin-dev-issuer"
DEFAULT_AUDIENCE = "tarjotin"
ACCEPTED_ALGORITHMS = ("RS256", "ES256")
JWKS_REFRESH_S = 30.0
VERIFIED_CACHE_SIZE = 10_000


class Role(StrEnum):
    STUDENT = "student"
    COUNSELLOR = "counsellor"
    PROVIDER_STAFF = "provider_staff"
    FINANCE = "finance"
    NETWORK_ADMIN = "network_admin"
    OPERATIONS = "operations"
    PARTNER = "partner"


# Roles that always act for one institution (a student's is the home institution).
INSTITUTION_ROLES = frozenset({Role.STUDENT, Role.COUNSELLOR, Role.PROVIDER_STAFF, Role.FINANCE})
STAFF_ROLES = frozenset({Role.COUNSELLOR, Role.PROVIDER_STAFF, Role.FINANCE})


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller."""

    subject: str
    role: Role
    institution_id: str | None = None
    learner_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.NETWORK_ADMIN

    def acts_for(self, institution_id: str | None) -> bool:
        """True for the network admin, and for anyone acting for exactly this institution."""
        return self.is_admin or (self.institution_id is not None and self.institution_id == institution_id)

    def audit_fields(self) -> dict[str, str | None]:
        return {"actor": self.subject, "actor_role": self.role.value, "actor_institution_id": self.institution_id}


def _algorithm_for(key: Any) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise ValueError("the verification key must be an RSA or P-256 EC public key")


@dataclass(frozen=True, slots=True)
class _Key:
    key: Any
    algorithm: str


class Verifier:
    """Verifies bearer tokens against one issuer, audience and key source."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str | None = None,
        public_key_file: Path | None = None,
        leeway_s: int = 30,
    ) -> None:
        if not jwks_url and not public_key_file:
            raise ValueError("token verification needs a JWKS URL or a public key file")
        self.issuer, self.audience, self.jwks_url, self.leeway_s = issuer, audience, jwks_url, leeway_s
        self._keys: dict[str | None, _Key] = {}
        # Tokens already verified, until they expire: a counsellor's burst pays for one signature check.
        # Keyed by the whole token, so only the very same signed bytes hit.
        self._verified: dict[str, tuple[Principal, float]] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()
        if public_key_file:
            key = load_pem_public_key(Path(public_key_file).read_bytes())
            self._fixed: _Key | None = _Key(key, _algorithm_for(key))
        else:
            self._fixed = None

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._fetched_at < JWKS_REFRESH_S and self._fetched_at:
                return
            self._fetched_at = time.monotonic()
            assert self.jwks_url is not None
            async with httpx.AsyncClient(timeout=5.0) as client:
                response = await client.get(self.jwks_url)
                response.raise_for_status()
                data = response.json()
            keys: dict[str | None, _Key] = {}
            for jwk in data.get("keys", []):
                try:
                    parsed = jwt.PyJWK(jwk)
                except jwt.PyJWKError:
                    continue  # a key type we do not use (e.g. an encryption key)
                if parsed.algorithm_name in ACCEPTED_ALGORITHMS:
                    keys[parsed.key_id] = _Key(parsed.key, parsed.algorithm_name)
            self._keys = keys
            log.info("jwks loaded", keys=len(keys))

    async def _key_for(self, kid: str | None) -> _Key:
        if self._fixed is not None:
            return self._fixed
        if kid not in self._keys:
            try:
                await self._refresh()
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("jwks unavailable", error=repr(exc))
                raise Unauthenticated("The token's signing keys could not be loaded; try again shortly.") from exc
        found = self._keys.get(kid)
        if found is None:
            raise Unauthenticated("The token was signed with a key this network does not know.")
        return found

    async def verify(self, token: str) -> Principal:
        known = self._verified.get(token)
        if known is not None:
            if time.time() < known[1]:
                return known[0]
            del self._verified[token]
        principal, expires = await self._verify(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (principal, expires)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated("The bearer token is not a well-formed JWT.") from exc
        algorithm = header.get("alg")
        if algorithm not in ACCEPTED_ALGORITHMS:
            raise Unauthenticated(f"Tokens signed with {algorithm!r} are not accepted; use RS256 or ES256.")
        key = await self._key_for(header.get("kid"))
        if key.algorithm != algorithm:
            raise Unauthenticated("The token's algorithm does not match its signing key.")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("The token has expired; get a new one.") from exc
        except jwt.ImmatureSignatureError as exc:
            raise Unauthenticated("The token is not valid yet (nbf/iat in the future).") from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthenticated(f"The token is not meant for Tarjotin (audience must be {self.audience!r}).") from exc
        except jwt.InvalidIssuerError as exc:
            raise Unauthenticated("The token comes from an issuer this network does not trust.") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"The token lacks the {exc.claim!r} claim.") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated("The token's signature or claims are not valid.") from exc
        return principal_from_claims(claims), float(claims["exp"])


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    try:
        role = Role(str(claims.get("role")))
    except ValueError as exc:
        raise Forbidden(f"The token's role {claims.get('role')!r} is not one Tarjotin knows.") from exc
    institution = claims.get("institution")
    if institution is not None and (not isinstance(institution, str) or not institution):
        raise Unauthenticated("The token's institution claim must be a non-empty string.")
    if role in INSTITUTION_ROLES and not institution:
        raise Unauthenticated(f"A {role.value} token must name the institution it acts for (claim 'institution').")
    learner_id = claims.get("learner_id")
    if role is Role.STUDENT and (not isinstance(learner_id, str) or not learner_id):
        raise Unauthenticated("A student token must carry the student's learner_id.")
    return Principal(
        subject=str(claims["sub"]),
        role=role,
        institution_id=institution,
        learner_id=learner_id if role is Role.STUDENT else None,
    )


_bearer = HTTPBearer(auto_error=False, description="A JWT from the network's identity provider.")


async def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """FastAPI dependency: the verified caller, or 401."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthenticated("This needs a bearer token: send 'Authorization: Bearer <JWT>'.")
    verifier: Verifier = request.app.state.verifier
    principal = await verifier.verify(credentials.credentials)
    structlog.contextvars.bind_contextvars(actor=principal.subject, actor_role=principal.role.value)
    return principal


Caller = Annotated[Principal, Depends(authenticate)]


def require(*roles: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """FastAPI dependency: the verified caller, or 403 unless their role is one of `roles`."""
    allowed = frozenset(roles)
    names = ", ".join(sorted(r.value for r in allowed))

    async def dependency(caller: Caller) -> Principal:
        if caller.role not in allowed:
            raise Forbidden(f"A {caller.role.value} may not do this; it needs one of: {names}.")
        return caller

    return dependency


def verifier_from_settings(settings: Any) -> Verifier:
    return Verifier(
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        jwks_url=settings.auth_jwks_url or None,
        public_key_file=settings.auth_public_key_file,
        leeway_s=settings.auth_leeway_s,
    )
