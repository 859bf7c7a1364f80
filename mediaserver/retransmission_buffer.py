"""A per-consumer ring of recently sent packets, to answer subscriber NACKs (sans-I/O)."""

from __future__ import annotations


class RetransmissionBuffer:
    """Keeps the last ``size`` packets sent to one subscriber, indexed by sequence number.

    Storing the plaintext packet (before SRTP) lets a retransmission be protected
    again with a fresh SRTP index, as RFC 3711 requires. A slot is checked against
    the requested sequence number, so a NACK for a packet that has already been
    overwritten gets nothing rather than the wrong packet.
    """

    __slots__ = ("_seqs", "_size", "_slots")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("retransmission buffer size must be positive")
        self._size = size
        self._slots: list[bytes | None] = [None] * size
        self._seqs: list[int] = [-1] * size

    def put(self, seq: int, packet: bytes) -> None:
        index = seq % self._size
        self._slots[index] = packet
        self._seqs[index] = seq

    def get(self, seq: int) -> bytes | None:
        index = seq % self._size
        if self._seqs[index] != seq:
            return None
        return self._slots[index]
