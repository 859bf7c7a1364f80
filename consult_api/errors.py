"""One small exception hierarchy; the HTTP edge maps each class to a status code.

Every ``message`` is safe to show to a client: it never contains patient data.
"""

from __future__ import annotations


class ConsultError(Exception):
    """Base of the consult_api errors. ``message`` is safe to show."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(ConsultError):
    status = 400


class Unauthenticated(ConsultError):
    status = 401


class Forbidden(ConsultError):
    status = 403


class NotFound(ConsultError):
    status = 404


class InvalidTransition(ConsultError):
    status = 409


class Unavailable(ConsultError):
    status = 503


class Unprocessable(ConsultError):
    status = 422


class TooLarge(ConsultError):
    status = 413


class UnsupportedType(ConsultError):
    status = 415
