"""Tokens for tests: one signing key per test run, trusted by every service the tests start.

In-process apps verify with the public key file (`TARJOTIN_AUTH_PUBLIC_KEY_FILE`); the whole system
started by `tests.support.system.System` runs the development issuer on this same key and verifies
through its JWKS, as `make run` does.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from shared import devissuer

KEY_DIR = Path(tempfile.mkdtemp(prefix="tarjotin-test-issuer-"))
KEY_FILE = KEY_DIR / "signing-key.pem"
PUBLIC_KEY_FILE = KEY_DIR / "public-key.pem"
KEY = devissuer.load_or_create_key(KEY_FILE)


def install_env() -> None:
    """Point services built in this process (and the dev issuer of started systems) at the test key."""
    os.environ["TARJOTIN_AUTH_PUBLIC_KEY_FILE"] = str(PUBLIC_KEY_FILE)
    os.environ["TARJOTIN_DEV_ISSUER_KEY_FILE"] = str(KEY_FILE)
    os.environ.pop("TARJOTIN_AUTH_JWKS_URL", None)
    os.environ.pop("TARJOTIN_ENV", None)


def token(
    role: str = "network_admin",
    institution: str | None = None,
    learner_id: str | None = None,
    *,
    subject: str | None = None,
    ttl_s: int = 6 * 3600,
    **claims: Any,
) -> str:
    return devissuer.mint(
        KEY, role=role, institution=institution, learner_id=learner_id, subject=subject, ttl_s=ttl_s, **claims
    )


def bearer(
    role: str = "network_admin", institution: str | None = None, learner_id: str | None = None, **kwargs: Any
) -> dict[str, str]:
    """An Authorization header for a caller of `role` acting for `institution`."""
    return {"Authorization": f"Bearer {token(role, institution, learner_id, **kwargs)}"}


ADMIN = bearer("network_admin", subject="test-admin")
