"""What may reach DTLS/SRTP on a media port, and how many datagrams were dropped (sans-I/O).

Media ports are public: anybody can send anything to them. A datagram that has
passed the address check (it comes from the validated ICE pair) is still checked
for shape before aiortc sees it, by RFC 7983 demultiplexing on the first byte:

* 20-63: DTLS. Every record header must be well formed and the records must fill
  the datagram exactly (DTLS 1.2 plaintext headers and DTLS 1.3 unified headers).
* 128-191: SRTP or SRTCP, at least a fixed RTP header (12 bytes) long.
* anything else (STUN is consumed by the ICE layer before this point): malformed.

No datagram longer than ``MAX_DATAGRAM`` bytes is accepted: libsrtp's buffer is
1,500 bytes and pylibsrtp raises ``ValueError`` beyond it.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_DATAGRAM = 1500
DTLS_CONTENT_TYPES = frozenset({20, 21, 22, 23, 25})  # ccs, alert, handshake, data, ack
DTLS_APPLICATION_DATA = 23
DTLS_VERSIONS = frozenset({0xFEFF, 0xFEFD, 0xFEFC})  # DTLS 1.0, 1.2, 1.3 (legacy field)
DTLS_PLAIN_HEADER = 13
RTP_HEADER = 12


@dataclass
class PortCounters:
    """Datagrams a transport's media ports dropped, by cause (never reset)."""

    unvalidated: int = 0  # not from the validated ICE pair: dropped before DTLS
    malformed: int = 0  # from the pair, but too long, unparseable or of no known kind
    unauthenticated: int = 0  # SRTP/SRTCP that failed authentication (or replayed)

    def as_json(self) -> dict[str, int]:
        return {
            "datagramsDroppedUnvalidated": self.unvalidated,
            "datagramsDroppedMalformed": self.malformed,
            "datagramsDroppedUnauthenticated": self.unauthenticated,
        }

    def add(self, other: PortCounters) -> None:
        self.unvalidated += other.unvalidated
        self.malformed += other.malformed
        self.unauthenticated += other.unauthenticated


def is_stun(data: bytes) -> bool:
    """First byte 0-3 (RFC 7983): the ICE layer parses and authenticates it."""
    return bool(data) and data[0] < 4


def media_datagram_problem(data: bytes, application_data: bool = True) -> str | None:
    """Why ``data`` must not reach DTLS/SRTP, or None when its shape is acceptable.

    ``application_data``: whether DTLS application data may arrive (only a data
    channel carries it; media-only transports drop it before OpenSSL does).
    """
    if not data:
        return "empty datagram"
    if len(data) > MAX_DATAGRAM:
        return f"datagram longer than {MAX_DATAGRAM} bytes"
    first = data[0]
    if 20 <= first <= 63:
        return dtls_records_problem(data, application_data)
    if 128 <= first <= 191:
        return None if len(data) >= RTP_HEADER else "SRTP/SRTCP shorter than an RTP header"
    return f"no media protocol starts with byte {first}"


def dtls_records_problem(data: bytes, application_data: bool = True) -> str | None:
    """Check that ``data`` is a sequence of well-formed DTLS records filling it exactly."""
    pos = 0
    while pos < len(data):
        first = data[pos]
        if first & 0xE0 == 0x20:  # DTLS 1.3 unified header (RFC 9147 section 4)
            end = _unified_record_end(data, pos)
            if end is None:
                return "truncated DTLS 1.3 record"
            pos = end
            continue
        if first not in DTLS_CONTENT_TYPES:
            return f"unknown DTLS content type {first}"
        if first == DTLS_APPLICATION_DATA and not application_data:
            return "DTLS application data on a transport without a data channel"
        if len(data) < pos + DTLS_PLAIN_HEADER:
            return "truncated DTLS record header"
        version = int.from_bytes(data[pos + 1:pos + 3], "big")
        if version not in DTLS_VERSIONS:
            return f"unknown DTLS version 0x{version:04x}"
        length = int.from_bytes(data[pos + 11:pos + 13], "big")
        pos += DTLS_PLAIN_HEADER + length
        if pos > len(data):
            return "DTLS record longer than the datagram"
    return None


def _unified_record_end(data: bytes, pos: int) -> int | None:
    flags = data[pos]
    if flags & 0x10:  # connection ids are never negotiated by WebRTC peers
        return None
    header = 1 + (2 if flags & 0x08 else 1)
    if not flags & 0x04:  # no length: the record runs to the end of the datagram
        return len(data) if len(data) > pos + header else None
    if len(data) < pos + header + 2:
        return None
    length = int.from_bytes(data[pos + header:pos + header + 2], "big")
    end = pos + header + 2 + length
    return end if length and end <= len(data) else None
