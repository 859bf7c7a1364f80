"""Passwords and secrets at rest: argon2id hashing, the password policy, and the keyed
hashes that stand in the database for every random credential (session cookies, API tokens,
set-password links). Pure: no I/O, no clock.

A random credential is stored only as HMAC-SHA256 under the service's token secret (a
pepper), with a purpose prefix so a value of one kind can never be replayed as another; a
read of the database therefore yields nothing that signs anybody in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from consult_api.errors import InvalidRequest

MIN_LENGTH = 10
MAX_LENGTH = 256
API_TOKEN_PREFIX = "hz_"
# Spent on unknown usernames so that their answer takes as long as a wrong password.
_DUMMY_PASSWORD = "huizhen-no-such-user"


def default_hasher() -> PasswordHasher:
    """argon2id with the library's defaults (RFC 9106 low-memory profile)."""
    return PasswordHasher()


def hash_password(hasher: PasswordHasher, password: str) -> str:
    return hasher.hash(password)


def verify_password(hasher: PasswordHasher, stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored``; a missing hash spends one verification on a
    dummy hash and answers False (the same cost as a wrong password)."""
    if stored is None:
        stored = dummy_hash(hasher)
        password = password + "\x00"  # never matches the dummy
    try:
        return hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def dummy_hash(hasher: PasswordHasher) -> str:
    return hasher.hash(_DUMMY_PASSWORD)


def needs_rehash(hasher: PasswordHasher, stored: str) -> bool:
    try:
        return hasher.check_needs_rehash(stored)
    except InvalidHashError:
        return True


def _classes(password: str) -> int:
    kinds = (str.islower, str.isupper, str.isdigit)
    found = {i for c in password for i, kind in enumerate(kinds) if kind(c)}
    if any(not (c.islower() or c.isupper() or c.isdigit()) for c in password):
        found.add(len(kinds))  # punctuation, spaces, CJK and other characters
    return len(found)


def check_policy(password: str, username: str | None) -> None:
    """At least 10 characters, more than one class of character (lower case, upper case,
    digits, others), and not the username. Raises InvalidRequest code ``weak-password``;
    the message never repeats the password."""
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        raise InvalidRequest(f"the password must have at least {MIN_LENGTH} characters",
                             code="weak-password")
    if len(password) > MAX_LENGTH:
        raise InvalidRequest(f"the password must have at most {MAX_LENGTH} characters",
                             code="weak-password")
    if _classes(password) < 2:
        raise InvalidRequest("the password must mix kinds of characters (letters, digits, "
                             "others)", code="weak-password")
    if username and password.casefold() == username.casefold():
        raise InvalidRequest("the password must not be the username", code="weak-password")


def keyed_hash(pepper: str, purpose: str, value: str) -> str:
    """HMAC-SHA256 of ``value`` under the pepper, for one ``purpose``; 64 hex digits."""
    return hmac.new(pepper.encode(), f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def new_secret() -> str:
    """A random credential: 32 bytes, URL-safe base64."""
    return secrets.token_urlsafe(32)


def new_api_token() -> str:
    return API_TOKEN_PREFIX + new_secret()
