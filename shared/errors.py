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
