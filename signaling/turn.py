"""Time-limited TURN credentials (the TURN REST API scheme coturn's ``use-auth-secret`` reads).

The server and the TURN server share one secret; nobody stores per-user TURN passwords.
For each participant the server mints::

    username = "<expiry, unix seconds>:<participant id>"
    password = base64(HMAC-SHA1(secret, username))

and the TURN server recomputes the password from the username and refuses it once the
expiry has passed. The user part is an opaque id (it shows in the TURN server's logs):
never a name or anything about a patient.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

SEPARATOR = ":"


def mint_turn_credentials(secret: bytes, user: str, ttl_s: int, now: float) -> tuple[str, str]:
    """``(username, password)`` valid until ``now + ttl_s`` (a negative ``ttl_s`` mints
    credentials that have already expired, which tests use)."""
    if not secret:
        raise ValueError("the TURN secret is empty")
    if not user or SEPARATOR in user:
        raise ValueError("the TURN user id must be non-empty and contain no ':'")
    username = f"{int(now) + ttl_s}{SEPARATOR}{user}"
    digest = hmac.new(secret, username.encode("utf-8"), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class TurnServer:
    """TURN URLs sharing one ``use-auth-secret`` secret, and the credentials' lifetime."""

    urls: tuple[str, ...]
    secret: bytes
    ttl_s: int

    def ice_server(self, user: str, now: float) -> dict[str, Any]:
        """One RTCIceServer (the browser's JSON shape) with credentials minted for ``user``."""
        username, password = mint_turn_credentials(self.secret, user, self.ttl_s, now)
        return {"urls": list(self.urls), "username": username, "credential": password}


def ice_servers_for(static: tuple[dict[str, object], ...], turn: TurnServer | None,
                    user: str, now: float) -> list[dict[str, object]]:
    """What a participant's page gets: the configured servers, then the minted TURN one."""
    servers = list(static)
    if turn is not None:
        servers.append(turn.ice_server(user, now))
    return servers
