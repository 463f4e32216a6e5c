"""The development token issuer: mints JWTs for any role and institution and serves its JWKS.

    python -m shared.devissuer token --role counsellor --institution kpedu
    python -m shared.devissuer token --role student --institution kpedu --learner-id s-1001
    python -m shared.devissuer serve            # JWKS + /token on 127.0.0.1:8105 (make run starts it)

The signing key (ES256) is made on first use under `$TARJOTIN_DATA_DIR/dev-issuer/` and never leaves
this machine; no key lives in the repository. Refuses to run with `TARJOTIN_ENV=production`, and
services in production refuse to trust it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shared.auth import DEFAULT_AUDIENCE, DEV_ISSUER, INSTITUTION_ROLES, Role

DEFAULT_PORT = 8105


def key_file() -> Path:
    explicit = os.environ.get("TARJOTIN_DEV_ISSUER_KEY_FILE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("TARJOTIN_DATA_DIR", "var/data")) / "dev-issuer" / "signing-key.pem"


def load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    path.with_name("public-key.pem").write_bytes(public)
    return key


def key_id(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def jwks(key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": key_id(key), "alg": "ES256", "use": "sig"})
    return {"keys": [jwk]}


def _opaque_subject(*parts: str | None) -> str:
    """A stable subject that does not spell out a learner id (subjects land in audit logs)."""
    return "dev-" + hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:16]


def mint(
    key: ec.EllipticCurvePrivateKey,
    *,
    role: str,
    institution: str | None = None,
    learner_id: str | None = None,
    subject: str | None = None,
    ttl_s: int = 3600,
    issuer: str = DEV_ISSUER,
    audience: str = DEFAULT_AUDIENCE,
    **extra: Any,
) -> str:
    """A signed access token. Validates only what the issuer must (a known role, an institution for staff)."""
    parsed = Role(role)
    if parsed in INSTITUTION_ROLES and not institution:
        raise ValueError(f"a {parsed.value} token needs --institution")
    if parsed is Role.STUDENT and not learner_id:
        raise ValueError("a student token needs --learner-id")
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject or _opaque_subject(parsed.value, institution, learner_id),
        "iat": now,
        "nbf": now,
        "exp": now + ttl_s,
        "jti": str(uuid.uuid4()),
        "role": parsed.value,
    }
    if institution:
        claims["institution"] = institution
    if learner_id:
        claims["learner_id"] = learner_id
    claims.update(extra)
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": key_id(key)})


def _refuse_production() -> None:
    if os.environ.get("TARJOTIN_ENV") == "production":
        sys.exit("devissuer: refusing to run with TARJOTIN_ENV=production")


def serve(host: str, port: int) -> None:
    import uvicorn
    from fastapi import FastAPI, HTTPException, Query

    key = load_or_create_key(key_file())
    app = FastAPI(title="Tarjotin development token issuer", docs_url=None, redoc_url=None)

    @app.get("/.well-known/jwks.json")
    async def keys() -> dict[str, Any]:
        return jwks(key)

    @app.get("/.well-known/openid-configuration")
    async def configuration() -> dict[str, Any]:
        return {"issuer": DEV_ISSUER, "jwks_uri": f"http://{host}:{port}/.well-known/jwks.json"}

    @app.get("/token")
    async def token(
        role: Role,
        institution: str | None = None,
        learner_id: str | None = None,
        sub: str | None = None,
        ttl_s: int = Query(3600, ge=1, le=86400),
    ) -> dict[str, str]:
        try:
            value = mint(key, role=role, institution=institution, learner_id=learner_id, subject=sub, ttl_s=ttl_s)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        return {"access_token": value, "token_type": "Bearer"}

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def main(argv: list[str] | None = None) -> int:
    _refuse_production()
    parser = argparse.ArgumentParser(prog="python -m shared.devissuer", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tok = sub.add_parser("token", help="print a signed token")
    tok.add_argument("--role", required=True, choices=[r.value for r in Role])
    tok.add_argument("--institution")
    tok.add_argument("--learner-id")
    tok.add_argument("--sub")
    tok.add_argument("--ttl", type=int, default=3600, help="seconds until expiry")
    srv = sub.add_parser("serve", help="serve the JWKS and /token")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=int(os.environ.get("TARJOTIN_DEV_ISSUER_PORT", DEFAULT_PORT)))
    sub.add_parser("jwks", help="print the JWKS")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.host, args.port)
        return 0
    key = load_or_create_key(key_file())
    if args.command == "jwks":
        print(json.dumps(jwks(key), indent=2))
        return 0
    try:
        print(
            mint(
                key,
                role=args.role,
                institution=args.institution,
                learner_id=args.learner_id,
                subject=args.sub,
                ttl_s=args.ttl,
            )
        )
    except ValueError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
