"""One small exception hierarchy; the HTTP edge maps each class to a status code.

Every ``message`` is safe to show to a client: it never contains patient data. Every
error also carries a ``code`` (kebab-case, stable): pages show the localised text for the
code from their message catalogue and fall back to ``message`` (English) only for codes
they do not know.
"""

from __future__ import annotations


class ConsultError(Exception):
    """Base of the consult_api errors. ``message`` is safe to show."""

    status = 500
    code = "internal-error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidRequest(ConsultError):
    status = 400
    code = "invalid-request"


class Unauthenticated(ConsultError):
    status = 401
    code = "unauthenticated"


class Forbidden(ConsultError):
    status = 403
    code = "forbidden"


class NotFound(ConsultError):
    status = 404
    code = "not-found"


class InvalidTransition(ConsultError):
    status = 409
    code = "invalid-transition"


class Unavailable(ConsultError):
    status = 503
    code = "unavailable"


class Unprocessable(ConsultError):
    status = 422
    code = "unprocessable"


class TooLarge(ConsultError):
    status = 413
    code = "too-large"


class UnsupportedType(ConsultError):
    status = 415
    code = "unsupported-type"


class Hidden(NotFound):
    """An object that exists but is hidden from this actor (a draft report): answered like
    a missing one (404, no existence leak) and audited as a refused attempt."""
