"""A per-consumer ring of recently sent packets, to answer subscriber NACKs (sans-I/O)."""

from __future__ import annotations

SEQ_HALF = 0x8000


class RetransmissionBuffer:
    """Keeps the last ``size`` packets sent to one subscriber, indexed by sequence number.

    Storing the plaintext packet (before SRTP) lets a retransmission be protected
    again with a fresh SRTP index, as RFC 3711 requires. A slot is checked against
    the requested sequence number, so a NACK for a packet that has already been
    overwritten gets nothing rather than the wrong packet.

    A NACK for a packet not (yet) here is usually one the server itself is missing
    from the publisher: ``awaited`` remembers it, briefly (at most ``MAX_AWAITED``
    numbers, none older than ``size`` packets), and ``put`` counts it in
    ``filled_late`` when that packet is finally sent (the publisher's retransmission,
    forwarded like any packet, is the subscriber's answer).
    """

    MAX_AWAITED = 64

    __slots__ = ("_awaited", "_seqs", "_size", "_slots", "filled_late")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("retransmission buffer size must be positive")
        self._size = size
        self._slots: list[bytes | None] = [None] * size
        self._seqs: list[int] = [-1] * size
        self._awaited: dict[int, None] = {}  # insertion order: oldest first
        self.filled_late = 0

    def put(self, seq: int, packet: bytes) -> None:
        index = seq % self._size
        self._slots[index] = packet
        self._seqs[index] = seq
        if self._awaited:
            self._settle(seq)

    def get(self, seq: int) -> bytes | None:
        index = seq % self._size
        if self._seqs[index] != seq:
            return None
        return self._slots[index]

    def awaited(self, seq: int) -> None:
        """A NACK found nothing for ``seq``: remember it until the packet is sent."""
        awaited = self._awaited
        awaited.pop(seq, None)
        awaited[seq] = None
        if len(awaited) > self.MAX_AWAITED:
            del awaited[next(iter(awaited))]

    @property
    def awaiting(self) -> list[int]:
        """Sequence numbers NACKed before they were here, oldest first."""
        return list(self._awaited)

    def _settle(self, seq: int) -> None:
        awaited = self._awaited
        if seq in awaited:
            del awaited[seq]
            self.filled_late += 1
        if awaited:  # forget the oldest once it is out of the buffer's reach
            oldest = next(iter(awaited))
            if self._size <= (seq - oldest) & 0xFFFF < SEQ_HALF:
                del awaited[oldest]
