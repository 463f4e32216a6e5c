"""The authorisation matrix (`matrix.csv`): every route of the public API × every role, for a target of the
caller's own institution and one of another institution.

A row is `service,method,path,role,own,other`: `service` names the gateway prefix (`PREFIXES`), `path` is
relative to it (`/` is the prefix itself), and `own` and `other` are one of `OUTCOMES`.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MATRIX = Path(__file__).with_name("matrix.csv")
PREFIXES = {
    "catalogue": "/api/catalogue",
    "enrolments": "/api/enrolments",
    "billing": "/api/billing",
    "reports": "/api/reports",
}
ROLES = (
    "anonymous",
    "student",
    "counsellor",
    "provider_staff",
    "finance",
    "network_admin",
    "operations",
    "partner",
)
OUTCOMES = frozenset({"allow", "forbidden", "hidden", "filtered", "unauthenticated"})
Side = Literal["own", "other"]
SIDES: tuple[Side, Side] = ("own", "other")
_PARAM = re.compile(r"\{[^}/]+\}")


def route_shape(path: str) -> str:
    """A path with every `{parameter}` written `{}`, so that `/courses/{id}` and `/courses/{course_id}` match."""
    return _PARAM.sub("{}", path)


@dataclass(frozen=True, slots=True)
class Route:
    service: str
    method: str
    path: str

    @property
    def shape(self) -> tuple[str, str, str]:
        return self.service, self.method, route_shape(self.path)

    def url(self, *values: str) -> str:
        """The gateway path, with the path parameters filled in order of appearance."""
        given = iter(values)
        relative = _PARAM.sub(lambda _match: next(given), self.path)
        return PREFIXES[self.service] + ("" if relative == "/" else relative)

    def __str__(self) -> str:
        return f"{self.service} {self.method} {self.path}"


@dataclass(frozen=True, slots=True)
class Row:
    route: Route
    role: str
    own: str
    other: str

    def expected(self, side: Side) -> str:
        return self.own if side == "own" else self.other

    def test_id(self, side: Side) -> str:
        return f"{self.route.service}-{self.route.method}-{self.route.path}-{self.role}-{side}"


def load_matrix(path: Path = MATRIX) -> list[Row]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            Row(Route(r["service"], r["method"].upper(), r["path"]), r["role"], r["own"], r["other"])
            for r in csv.DictReader(handle)
        ]
