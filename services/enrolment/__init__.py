"""Enrolment: students (personal data stays here), enrolments, seats and waitlists."""
