"""Who may see and change which enrolments and students: pure checks on token claims, SQL scopes.

A student sees their own enrolments, a counsellor those of their institution's students, provider
staff those in their institution's offerings, a network admin everything. What a caller may not see
answers exactly like what does not exist (404); what they may see but not change answers 403.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from services.enrolment.tables import enrolments, offerings, students
from shared.auth import Principal, Role
from shared.errors import Forbidden, NotFound

# What enrolment reads select from: the scope below may name columns of all three tables.
ENROLMENT_SOURCE = enrolments.join(students, students.c.id == enrolments.c.student_id).join(
    offerings, offerings.c.id == enrolments.c.offering_id
)


def enrolment_not_found(enrolment_id: str) -> NotFound:
    return NotFound(f"Enrolment {enrolment_id!r} does not exist.")


def student_not_found(student_ref: str) -> NotFound:
    return NotFound(f"Student {student_ref!r} does not exist.")


def enrolment_scope(caller: Principal) -> sa.ColumnElement[bool]:
    """The enrolments `caller` may see, as a condition over `ENROLMENT_SOURCE`."""
    if caller.is_admin:
        return sa.true()
    if caller.role is Role.STUDENT:
        return sa.and_(
            students.c.home_institution_id == caller.institution_id, students.c.learner_id == caller.learner_id
        )
    if caller.role is Role.COUNSELLOR:
        return enrolments.c.home_institution_id == caller.institution_id
    if caller.role is Role.PROVIDER_STAFF:
        return offerings.c.provider_id == caller.institution_id
    return sa.false()


def student_scope(caller: Principal) -> sa.ColumnElement[bool]:
    """The students whose data `caller` may export or erase: their home institution's counsellors, admins."""
    if caller.is_admin:
        return sa.true()
    if caller.role is Role.COUNSELLOR:
        return students.c.home_institution_id == caller.institution_id
    return sa.false()


def check_may_request(caller: Principal, home_institution_id: str, learner_id: str) -> None:
    """Enrolling: a student only themself, a counsellor only their own institution's students. No I/O."""
    if caller.is_admin:
        return
    if caller.role is Role.STUDENT:
        if home_institution_id != caller.institution_id or learner_id != caller.learner_id:
            raise Forbidden(
                "A student may enrol only themself: home_institution_id must be your home institution "
                f"({caller.institution_id!r}) and student.learner_id the learner id of your token."
            )
        return
    if caller.role is Role.COUNSELLOR:
        if home_institution_id != caller.institution_id:
            raise Forbidden(
                f"A counsellor may enrol only students of their own institution ({caller.institution_id!r}), "
                f"not of {home_institution_id!r}."
            )
        return
    raise Forbidden(f"A {caller.role.value} may not enrol students.")


def check_may_withdraw(caller: Principal) -> None:
    """After the enrolment was found visible: the student, their counsellor or an admin withdraws."""
    if caller.role not in (Role.STUDENT, Role.COUNSELLOR, Role.NETWORK_ADMIN):
        raise Forbidden(
            f"A {caller.role.value} may not withdraw an enrolment; the student, their counsellor "
            "or a network admin can."
        )


def check_may_record_result(caller: Principal) -> None:
    """After the enrolment was found visible: the providing institution's staff or an admin records results."""
    if caller.role not in (Role.PROVIDER_STAFF, Role.NETWORK_ADMIN):
        raise Forbidden(
            f"A {caller.role.value} may not record results; the providing institution's staff or a network admin can."
        )


def visible_enrolment_query(caller: Principal, enrolment_id: str) -> sa.Select[Any]:
    return (
        sa.select(enrolments.c.id)
        .select_from(ENROLMENT_SOURCE)
        .where(enrolments.c.id == enrolment_id, enrolment_scope(caller))
    )
