"""Catalogue use cases: one function each, run inside the caller's transaction, events via the outbox."""

from services.catalogue.handlers.courses import CreateCourse, create_course, update_course
from services.catalogue.handlers.events import SOURCE
from services.catalogue.handlers.institutions import RegisterInstitution, register_institution, update_institution
from services.catalogue.handlers.offerings import (
    CreateOffering,
    cancel_offering,
    close_offering,
    complete_offering,
    create_offering,
    publish_drafts,
    publish_offering,
    touch_offerings,
    update_offering,
)
from services.catalogue.handlers.pricing import set_pricing_guideline

__all__ = [
    "SOURCE",
    "CreateCourse",
    "CreateOffering",
    "RegisterInstitution",
    "cancel_offering",
    "close_offering",
    "complete_offering",
    "create_course",
    "create_offering",
    "publish_drafts",
    "publish_offering",
    "register_institution",
    "set_pricing_guideline",
    "touch_offerings",
    "update_course",
    "update_institution",
    "update_offering",
]
