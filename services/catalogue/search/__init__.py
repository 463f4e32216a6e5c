"""Catalogue search: a word index of courses kept in the catalogue's own tables, facets, sorting.

Why a token table and not FTS5/tsvector: see docs/decisions/005-catalogue-search-and-import.md.
Words are folded (lower case, accents off: `Äidinkieli` → `aidinkieli`) both when indexed and when
searched, and every searched word of two or more letters is a prefix (`matem` finds `matematiikka`).
"""

from __future__ import annotations

from services.catalogue.search.cache import AnswerCache
from services.catalogue.search.facets import FACETS
from services.catalogue.search.index import generation, index_courses, index_offerings, next_generation
from services.catalogue.search.query import Criteria, FacetCache, Found, page_sort, search
from services.catalogue.search.words import (
    MAX_QUERY_TERMS,
    MAX_TERM,
    WEIGHTS,
    fold,
    prefix_bounds,
    query_terms,
    term_weights,
    title_key,
    words,
)

__all__ = [
    "FACETS",
    "MAX_QUERY_TERMS",
    "MAX_TERM",
    "WEIGHTS",
    "AnswerCache",
    "Criteria",
    "FacetCache",
    "Found",
    "fold",
    "generation",
    "index_courses",
    "index_offerings",
    "next_generation",
    "page_sort",
    "prefix_bounds",
    "query_terms",
    "search",
    "term_weights",
    "title_key",
    "words",
]
