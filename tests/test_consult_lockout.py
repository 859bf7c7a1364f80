"""The pure sign-in cores: lockout arithmetic, the per-address token bucket, the password
policy and the keyed hashes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher

from consult_api.errors import InvalidRequest
from consult_api.lockout import AddressLimiter, Failures, UnknownNames, after_failure, retry_after
from consult_api.passwords import (
    check_policy,
    keyed_hash,
    needs_rehash,
    new_api_token,
    verify_password,
)

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
FAST = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)


def test_five_failures_lock_for_fifteen_minutes_then_counting_starts_afresh() -> None:
    state = Failures()
    for count in range(1, 5):
        state = after_failure(state, T0)
        assert state == Failures(count, None) and retry_after(state, T0) == 0
    state = after_failure(state, T0)
    assert state == Failures(5, T0 + timedelta(minutes=15))
    assert retry_after(state, T0) == 900
    assert retry_after(state, T0 + timedelta(minutes=14, seconds=59, microseconds=1)) == 1
    later = T0 + timedelta(minutes=15)
    assert retry_after(state, later) == 0
    assert after_failure(state, later) == Failures(1, None)


def test_unknown_names_are_bounded() -> None:
    names = UnknownNames(limit=3)
    for name in ["a", "b", "c", "d"]:
        names.fail(name, T0)
    assert names.get("a") == Failures()  # the oldest was dropped
    assert names.get("d").count == 1
    for _ in range(4):
        names.fail("d", T0)
    assert retry_after(names.get("d"), T0) == 900


def test_the_address_bucket_refills_evenly() -> None:
    limiter = AddressLimiter(burst=4, window=timedelta(minutes=1))
    for _ in range(4):
        assert limiter.retry_after("10.0.0.1", T0) == 0
        limiter.fail("10.0.0.1", T0)
    assert limiter.retry_after("10.0.0.1", T0) == 15
    assert limiter.retry_after("10.0.0.2", T0) == 0  # other addresses are unaffected
    assert limiter.retry_after("10.0.0.1", T0 + timedelta(seconds=15)) == 0
    limiter.fail("10.0.0.1", T0 + timedelta(seconds=15))
    assert limiter.retry_after("10.0.0.1", T0 + timedelta(seconds=20)) == 10
    # A clock that steps back never refills (nor drains) the bucket.
    assert limiter.retry_after("10.0.0.1", T0) > 0


@pytest.mark.parametrize(("password", "ok"), [
    ("Ward-7 rounds", True), ("abcdefghij1", True), ("会诊中心2026年度", True),
    ("short-1A", False), ("abcdefghijkl", False), ("ABCDEFGHIJKL", False),
    ("123456789012", False), ("会诊中心会诊中心会诊中心", False), ("Li.Na.12345", True),
])
def test_password_policy(password: str, ok: bool) -> None:
    if ok:
        check_policy(password, "li.na")
    else:
        with pytest.raises(InvalidRequest) as raised:
            check_policy(password, "li.na")
        assert raised.value.code == "weak-password" and password not in raised.value.message


def test_the_password_must_not_be_the_username() -> None:
    with pytest.raises(InvalidRequest, match="username"):
        check_policy("Zhang.San-01", "zhang.san-01")


def test_verification_and_rehash() -> None:
    stored = FAST.hash("Ward-7 rounds")
    assert verify_password(FAST, stored, "Ward-7 rounds")
    assert not verify_password(FAST, stored, "ward-7 rounds")
    assert not verify_password(FAST, None, "huizhen-no-such-user")  # the dummy never matches
    assert not verify_password(FAST, "not-a-hash", "x")
    assert not needs_rehash(FAST, stored)
    assert needs_rehash(PasswordHasher(), stored)
    assert needs_rehash(FAST, "not-a-hash")


def test_keyed_hashes_depend_on_pepper_and_purpose() -> None:
    token = new_api_token()
    assert token.startswith("hz_") and len(token) == 46
    digest = keyed_hash("p" * 32, "api-token", token)
    assert len(digest) == 64 and token not in digest
    assert digest != keyed_hash("q" * 32, "api-token", token)
    assert digest != keyed_hash("p" * 32, "session", token)
