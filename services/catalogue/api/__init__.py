"""Catalogue HTTP routes: parse, call one handler in one transaction, answer."""

from fastapi import APIRouter

from services.catalogue.api import courses, imports, institutions, offerings

router = APIRouter()
for module in (institutions, courses, offerings, imports):
    router.include_router(module.router)

__all__ = ["router"]
