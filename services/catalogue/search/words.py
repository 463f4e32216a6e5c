"""Words for search: folded to lower case without accents, weighted by where they stand in a course."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

MAX_TERM = 64
MAX_QUERY_TERMS = 8
# How much a word counts by where it stands; an exact word (not only a prefix) adds one.
WEIGHTS = {"code": 8, "title": 6, "subject": 3, "description": 1}
_WORD = re.compile(r"[^\W_]+")


def fold(text: str) -> str:
    """Lower case without accents, so `ä` and `a` meet: `Äidinkieli` → `aidinkieli`."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def words(text: str | None) -> list[str]:
    return [w[:MAX_TERM] for w in _WORD.findall(fold(text))] if text else []


def term_weights(course: Mapping[str, Any]) -> dict[str, int]:
    """The words of a course (keys as in `views.course_dict`) with the weight of their best place."""
    found: dict[str, int] = {}

    def add(terms: Iterable[str], weight: int) -> None:
        for term in terms:
            found[term] = max(found.get(term, 0), weight)

    code_words = words(course["code"])
    add([*code_words, "".join(code_words)[:MAX_TERM]], WEIGHTS["code"])
    for language in ("fi", "sv", "en"):
        add(words(course["titles"].get(language)), WEIGHTS["title"])
        add(words(course["descriptions"].get(language)), WEIGHTS["description"])
    add(words(course["subject"].replace("_", " ")), WEIGHTS["subject"])
    found.pop("", None)
    return found


def query_terms(q: str | None) -> list[str]:
    """The distinct words of a query, at most MAX_QUERY_TERMS of them."""
    return list(dict.fromkeys(words(q)))[:MAX_QUERY_TERMS]


def prefix_bounds(term: str) -> tuple[str, str]:
    """[low, high) holding exactly the strings that start with `term`, in code-point order."""
    following = ord(term[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # no surrogates in UTF-8
        following = 0xE000
    return term, term[:-1] + chr(following)


def title_key(titles: Mapping[str, str | None]) -> str:
    first = titles.get("fi") or titles.get("sv") or titles.get("en") or ""
    return fold(first)[:300]
