"""Domain errors: raised by pure rules and handlers, mapped to problem+json at the HTTP edge."""

from __future__ import annotations


class DomainError(Exception):
    """A request that the rules refuse; `kind` decides the HTTP status, the message is for people."""

    kind = "invalid"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(DomainError):
    kind = "not_found"


class Conflict(DomainError):
    kind = "conflict"


class Invalid(DomainError):
    kind = "invalid"


class Unauthenticated(DomainError):
    """No token, or one that does not verify: 401 with a `WWW-Authenticate: Bearer` challenge."""

    kind = "unauthenticated"


class Forbidden(DomainError):
    """A verified caller whose role may not do this at all (other institutions' items answer 404)."""

    kind = "forbidden"
