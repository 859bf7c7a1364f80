"""Per-token and per-address quotas across signalling sockets (sans-I/O bookkeeping).

One client must not starve the others: a token (keyed by its subject) may hold a
few sockets and a bounded number of peer connections, and one source address a
bounded number of sockets, however many sockets it opens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class QuotaLimits:
    """0 means unlimited."""

    sockets_per_token: int = 4
    peer_connections_per_token: int = 16
    sockets_per_address: int = 64


class Holder(Protocol):
    """A socket's session: it knows how many peer connections it holds right now."""

    def peer_connections(self) -> int: ...


class Quotas:
    """Who holds what. Counts are derived from the live holders, so they cannot drift."""

    def __init__(self, limits: QuotaLimits) -> None:
        self.limits = limits
        self._addresses: dict[str, int] = {}
        self._tokens: dict[str, set[Holder]] = {}

    def open_socket(self, address: str) -> bool:
        """Count a new socket from ``address``; False (and not counted) when over the limit."""
        count = self._addresses.get(address, 0)
        if self.limits.sockets_per_address and count >= self.limits.sockets_per_address:
            return False
        self._addresses[address] = count + 1
        return True

    def close_socket(self, address: str) -> None:
        count = self._addresses.get(address, 0) - 1
        if count > 0:
            self._addresses[address] = count
        else:
            self._addresses.pop(address, None)

    def claim_token(self, key: str, holder: Holder) -> bool:
        """Attach ``holder`` (a joined socket) to token ``key``; False when over the limit."""
        holders = self._tokens.setdefault(key, set())
        if holder in holders:
            return True
        if self.limits.sockets_per_token and len(holders) >= self.limits.sockets_per_token:
            if not holders:
                del self._tokens[key]
            return False
        holders.add(holder)
        return True

    def release_token(self, key: str, holder: Holder) -> None:
        holders = self._tokens.get(key)
        if holders is None:
            return
        holders.discard(holder)
        if not holders:
            del self._tokens[key]

    def may_add_peer_connection(self, key: str) -> bool:
        limit = self.limits.peer_connections_per_token
        if not limit:
            return True
        return sum(h.peer_connections() for h in self._tokens.get(key, ())) < limit

    def sockets(self, address: str) -> int:
        return self._addresses.get(address, 0)

    def tokens(self) -> int:
        return len(self._tokens)
