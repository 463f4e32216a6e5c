"""Token verification as an attacker would probe it: forged, expired, `alg=none`, HS/RS confusion."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import APIRouter, Depends, FastAPI
from pydantic import ValidationError

from shared import auth, devissuer
from shared.auth import Principal, Role, Verifier, require
from shared.errors import Forbidden, Unauthenticated
from shared.http import install_problem_handlers
from shared.settings import DEV_ISSUER, DEV_JWKS_URL, ServiceSettings
from tests.support.auth import KEY, PUBLIC_KEY_FILE, token
from tests.support.system import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def verifier() -> Verifier:
    return Verifier(issuer=DEV_ISSUER, audience="tarjotin", public_key_file=PUBLIC_KEY_FILE)


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": DEV_ISSUER,
        "aud": "tarjotin",
        "sub": "u1",
        "iat": now,
        "exp": now + 600,
        "role": "counsellor",
        "institution": "kpedu",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


async def test_a_valid_token_gives_the_caller(verifier: Verifier) -> None:
    who = await verifier.verify(token("counsellor", "kpedu", subject="liisa"))
    assert who == Principal(subject="liisa", role=Role.COUNSELLOR, institution_id="kpedu")
    assert who.acts_for("kpedu") and not who.acts_for("sakky")
    student = await verifier.verify(token("student", "kpedu", "s-1"))
    assert (student.role, student.institution_id, student.learner_id) == (Role.STUDENT, "kpedu", "s-1")
    admin = await verifier.verify(token("network_admin"))
    assert admin.is_admin and admin.acts_for("anything")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"aud": "another-network"}, "audience"),
        ({"iss": "https://evil.example"}, "issuer"),
        ({"sub": None}, "'sub'"),
        ({"exp": None}, "'exp'"),
    ],
)
async def test_bad_claims_are_refused(verifier: Verifier, overrides: dict[str, Any], message: str) -> None:
    forged = jwt.encode(claims(**overrides), KEY, algorithm="ES256")
    with pytest.raises(Unauthenticated, match=message):
        await verifier.verify(forged)


async def test_a_token_signed_by_another_key_is_refused(verifier: Verifier) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(Unauthenticated, match="signature"):
        await verifier.verify(jwt.encode(claims(role="network_admin"), other, algorithm="ES256"))


async def test_a_tampered_payload_is_refused(verifier: Verifier) -> None:
    header, _payload, signature = token("counsellor", "kpedu").split(".")
    tampered = f"{header}.{b64(claims(role='network_admin'))}.{signature}"
    with pytest.raises(Unauthenticated):
        await verifier.verify(tampered)


async def test_alg_none_is_refused(verifier: Verifier) -> None:
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims(role='network_admin'))}."
    with pytest.raises(Unauthenticated, match="'none' are not accepted"):
        await verifier.verify(unsigned)


async def test_hmac_with_the_public_key_as_secret_is_refused(verifier: Verifier) -> None:
    """The classic RS/HS confusion: sign HS256 with the (public) verification key."""
    secret = PUBLIC_KEY_FILE.read_bytes()
    header = b64({"alg": "HS256", "typ": "JWT"})
    payload = b64(claims(role="network_admin"))
    import hashlib
    import hmac

    signature = base64.urlsafe_b64encode(
        hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    ).rstrip(b"=")
    with pytest.raises(Unauthenticated, match="'HS256' are not accepted"):
        await verifier.verify(f"{header}.{payload}.{signature.decode()}")


async def test_an_algorithm_that_does_not_match_the_key_is_refused(verifier: Verifier) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(Unauthenticated, match="does not match"):
        await verifier.verify(jwt.encode(claims(), rsa_key, algorithm="RS256"))


async def test_garbage_is_not_a_token(verifier: Verifier) -> None:
    with pytest.raises(Unauthenticated, match="well-formed"):
        await verifier.verify("not-a-jwt")


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"role": "superuser"}, Forbidden, "not one Tarjotin knows"),
        ({"role": "finance", "institution": None}, Unauthenticated, "must name the institution"),
        ({"role": "student", "learner_id": None}, Unauthenticated, "learner_id"),
        ({"role": "counsellor", "institution": ""}, Unauthenticated, "institution"),
    ],
)
async def test_roles_need_their_claims(
    verifier: Verifier, overrides: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await verifier.verify(jwt.encode(claims(**overrides), KEY, algorithm="ES256"))


async def test_an_rs256_public_key_file_accepts_rs256_only(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "rsa.pem").write_bytes(pem)
    verifier = Verifier(issuer=DEV_ISSUER, audience="tarjotin", public_key_file=tmp_path / "rsa.pem")
    assert (await verifier.verify(jwt.encode(claims(), rsa_key, algorithm="RS256"))).institution_id == "kpedu"
    with pytest.raises(Unauthenticated, match="does not match"):
        await verifier.verify(jwt.encode(claims(), KEY, algorithm="ES256"))


# --- over HTTP -------------------------------------------------------------------------------------


def tiny_app(verifier: Verifier) -> FastAPI:
    app = FastAPI()
    app.state.verifier = verifier
    install_problem_handlers(app)
    router = APIRouter()

    @router.get("/finance-only")
    async def finance_only(caller: Principal = Depends(require(Role.FINANCE))) -> dict[str, str]:
        return {"hello": caller.subject}

    app.include_router(router)
    return app


async def test_http_answers_401_and_403_as_problems(verifier: Verifier) -> None:
    transport = httpx.ASGITransport(app=tiny_app(verifier))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        anonymous = await client.get("/finance-only")
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"] == "application/problem+json"
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        assert "bearer token" in anonymous.json()["detail"]
        basic = await client.get("/finance-only", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert basic.status_code == 401
        expired = token("finance", "kpedu", ttl_s=-120)
        assert (await client.get("/finance-only", headers={"Authorization": f"Bearer {expired}"})).status_code == 401
        wrong_role = await client.get("/finance-only", headers={"Authorization": f"Bearer {token('counsellor', 'x')}"})
        assert wrong_role.status_code == 403
        assert "needs one of: finance" in wrong_role.json()["detail"]
        ok = await client.get(
            "/finance-only", headers={"Authorization": f"Bearer {token('finance', 'x', subject='f')}"}
        )
        assert (ok.status_code, ok.json()) == (200, {"hello": "f"})


# --- JWKS from the development issuer ---------------------------------------------------------------


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    key_file = tmp_path / "issuer" / "signing-key.pem"
    port = free_port()
    env = {"TARJOTIN_DEV_ISSUER_KEY_FILE": str(key_file), "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.devissuer", "serve", "--port", str(port)], cwd=ROOT, env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{url}/.well-known/jwks.json", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the development issuer did not start")
        yield url, key_file
    finally:
        process.terminate()
        process.wait(10)


async def test_jwks_verification_with_the_development_issuer(
    issuer: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, key_file = issuer
    verifier = Verifier(issuer=DEV_ISSUER, audience="tarjotin", jwks_url=f"{url}/.well-known/jwks.json")
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{url}/token", params={"role": "finance", "institution": "sakky"})
    issued = answer.json()["access_token"]
    who = await verifier.verify(issued)
    assert (who.role, who.institution_id) == (Role.FINANCE, "sakky")
    # A key the issuer never published (an attacker's, with a made-up kid) is refused after one refresh.
    monkeypatch.setattr(auth, "JWKS_REFRESH_S", 0.0)
    stranger = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(claims(role="network_admin"), stranger, algorithm="ES256", headers={"kid": "made-up"})
    with pytest.raises(Unauthenticated, match="does not know"):
        await verifier.verify(forged)
    # Same kid as the real key, but signed by the attacker: the signature check catches it.
    real_kid = devissuer.key_id(devissuer.load_or_create_key(key_file))
    forged = jwt.encode(claims(role="network_admin"), stranger, algorithm="ES256", headers={"kid": real_kid})
    with pytest.raises(Unauthenticated, match="signature"):
        await verifier.verify(forged)


async def test_an_unreachable_jwks_refuses_rather_than_trusts() -> None:
    verifier = Verifier(
        issuer=DEV_ISSUER, audience="tarjotin", jwks_url=f"http://127.0.0.1:{free_port()}/.well-known/jwks.json"
    )
    with pytest.raises(Unauthenticated, match="could not be loaded"):
        await verifier.verify(token("finance", "x"))


# --- settings: unsafe configurations refuse to start --------------------------------------------------


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> ServiceSettings:
    for name in ("TARJOTIN_AUTH_PUBLIC_KEY_FILE", "TARJOTIN_AUTH_JWKS_URL", "TARJOTIN_AUTH_ISSUER", "TARJOTIN_ENV"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return ServiceSettings()


def test_development_trusts_the_local_issuer_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = settings(monkeypatch)
    assert (chosen.auth_issuer, chosen.auth_jwks_url) == (DEV_ISSUER, DEV_JWKS_URL)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "TARJOTIN_AUTH_ISSUER"),
        ({"TARJOTIN_AUTH_ISSUER": DEV_ISSUER, "TARJOTIN_AUTH_JWKS_URL": "https://idp.example/jwks"}, "ISSUER"),
        ({"TARJOTIN_AUTH_ISSUER": "https://idp.example"}, "JWKS_URL or"),
        ({"TARJOTIN_AUTH_ISSUER": "https://idp.example", "TARJOTIN_AUTH_JWKS_URL": DEV_JWKS_URL}, "development"),
        ({"TARJOTIN_AUTH_ISSUER": "https://idp.example", "TARJOTIN_AUTH_JWKS_URL": "http://idp/jwks"}, "https"),
    ],
)
def test_production_refuses_unsafe_auth_settings(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(monkeypatch, TARJOTIN_ENV="production", **env)


def test_production_starts_with_a_real_identity_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = settings(
        monkeypatch,
        TARJOTIN_ENV="production",
        TARJOTIN_AUTH_ISSUER="https://idp.example",
        TARJOTIN_AUTH_JWKS_URL="https://idp.example/jwks",
    )
    assert chosen.auth_issuer == "https://idp.example"


def test_the_development_issuer_refuses_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARJOTIN_ENV", "production")
    with pytest.raises(SystemExit, match="refusing"):
        devissuer.main(["token", "--role", "network_admin"])


def test_the_issuer_cli_refuses_a_staff_token_without_institution(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        devissuer.main(["token", "--role", "counsellor"])
    assert "needs --institution" in capsys.readouterr().err


async def test_a_verified_token_is_remembered_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = Verifier(issuer=DEV_ISSUER, audience="tarjotin", public_key_file=PUBLIC_KEY_FILE, leeway_s=0)
    decoded = []
    real_decode = jwt.decode

    def counting_decode(*args: Any, **kwargs: Any) -> Any:
        decoded.append(1)
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(auth.jwt, "decode", counting_decode)
    short = token("finance", "kpedu", ttl_s=1)
    assert (await verifier.verify(short)).role is Role.FINANCE
    assert (await verifier.verify(short)).role is Role.FINANCE
    assert len(decoded) == 1  # the second came from the cache
    # Another token with the same claims but one changed byte of signature is not the cached one.
    header, payload, signature = short.split(".")
    altered = f"{header}.{payload}.{signature[:-2]}{'A' if signature[-2] != 'A' else 'B'}{signature[-1]}"
    with pytest.raises(Unauthenticated):
        await verifier.verify(altered)
    await asyncio.sleep(1.2)
    with pytest.raises(Unauthenticated, match="expired"):
        await verifier.verify(short)
