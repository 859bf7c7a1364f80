"""Pure parsing of the account, user-admin and token request bodies.

Messages name the field and the rule, never the value (passwords, codes, tokens).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consult_api.accounts import normalise_username
from consult_api.directory import UserChange
from consult_api.errors import InvalidRequest
from consult_api.models import LANGUAGES
from consult_api.passwords import MAX_LENGTH
from consult_api.schemas import UserIn, parse_user
from consult_api.workflow import Role

MAX_SECRET = 512
MAX_LABEL = 200
MAX_NAME = 200
MAX_QUERY = 100


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def _secret(data: dict[str, Any], field: str, max_len: int = MAX_SECRET) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{field} must be a non-empty string")
    if len(value) > max_len:
        raise InvalidRequest(f"{field} must be at most {max_len} characters")
    return value


def _name(data: dict[str, Any], field: str, max_len: int = MAX_NAME) -> str:
    """A name or label: printable (no control characters; PostgreSQL refuses NUL)."""
    value = data.get(field)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{field} must be a non-empty string")
    if len(value) > max_len:
        raise InvalidRequest(f"{field} must be at most {max_len} characters")
    if not value.isprintable():
        raise InvalidRequest(f"{field} must not contain control characters")
    return value.strip()


def _id(data: dict[str, Any], field: str) -> int:
    value = data.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**31:
        raise InvalidRequest(f"{field} must be a positive integer")
    return value


@dataclass(frozen=True)
class SignIn:
    username: str
    password: str
    totp: str | None


def parse_sign_in(body: Any) -> SignIn:
    data = _object(body)
    raw = data.get("username")
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 64:
        raise InvalidRequest("username must be a non-empty string of at most 64 characters")
    totp = data.get("totp")
    if totp is not None and (not isinstance(totp, str) or len(totp) > 16):
        raise InvalidRequest("totp must be a string of at most 16 characters")
    return SignIn(username=raw.strip().lower(), password=_secret(data, "password", MAX_LENGTH),
                  totp=totp or None)


def parse_password_change(body: Any) -> tuple[str, str]:
    data = _object(body)
    return (_secret(data, "current_password", MAX_LENGTH),
            _secret(data, "new_password", MAX_LENGTH))


def parse_redeem(body: Any) -> tuple[str, str]:
    data = _object(body)
    return _secret(data, "token"), _secret(data, "password", MAX_LENGTH)


def parse_code(body: Any) -> str:
    return _secret(_object(body), "code", 16)


def parse_language(body: Any) -> str:
    language = _object(body).get("language")
    if language not in LANGUAGES:
        raise InvalidRequest(f"language must be one of {', '.join(LANGUAGES)}")
    return str(language)


def parse_new_user(body: Any) -> tuple[UserIn, str | None]:
    """The existing user fields plus an optional ``username`` (without one, the person
    cannot sign in until an admin gives them one)."""
    data = _object(body)
    username = data.get("username")
    return parse_user(data), None if username is None else normalise_username(username)


def parse_user_change(body: Any) -> UserChange:
    data = _object(body)
    known = {"display_name", "role", "hospital_id", "department_id", "disabled"}
    if not set(data) & known:
        raise InvalidRequest(f"give at least one of {', '.join(sorted(known))}")
    role = None
    if data.get("role") is not None:
        try:
            role = Role(str(data["role"]))
        except ValueError:
            raise InvalidRequest(
                f"role must be one of {', '.join(r.value for r in Role)}") from None
    disabled = data.get("disabled")
    if disabled is not None and not isinstance(disabled, bool):
        raise InvalidRequest("disabled must be true or false")
    return UserChange(
        display_name=None if data.get("display_name") is None else _name(data, "display_name"),
        role=role,
        hospital_id=None if data.get("hospital_id") is None else _id(data, "hospital_id"),
        department_id=None if data.get("department_id") is None
        else _id(data, "department_id"),
        department_given="department_id" in data, disabled=disabled)


def parse_department(body: Any) -> tuple[int, str]:
    data = _object(body)
    return _id(data, "hospital_id"), _name(data, "name")


def parse_api_token(body: Any) -> tuple[int, str, int]:
    data = _object(body)
    ttl = data.get("ttl")
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        raise InvalidRequest("ttl must be an integer number of seconds")
    return _id(data, "user_id"), _name(data, "label", MAX_LABEL), ttl


def query_id(raw: str | None, field: str) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 9 or int(raw) < 1:
        raise InvalidRequest(f"{field} must be a positive integer")
    return int(raw)


def query_role(raw: str | None) -> Role | None:
    if raw is None or raw == "":
        return None
    try:
        return Role(raw)
    except ValueError:
        raise InvalidRequest(f"role must be one of {', '.join(r.value for r in Role)}") from None


def query_text(raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    if len(raw) > MAX_QUERY or not raw.isprintable():
        raise InvalidRequest(f"q must be at most {MAX_QUERY} printable characters")
    return raw.strip()
