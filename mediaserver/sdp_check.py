"""Validate an SDP offer or answer before any peer connection uses it (pure, no aiortc).

aiortc accepts descriptions that can never connect (no DTLS fingerprint, a
candidate line it skips, no ICE credentials) and only fails later, in background
tasks, after the client was told its stream was published. Checking here first
turns those into one clear ``bad-sdp`` error and no peer connection at all.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from mediaserver.errors import BadSdpError

MAX_SDP_BYTES = 32768
MAX_LINES = 1024
MAX_LINE_LENGTH = 2048
MAX_MEDIA_SECTIONS = 4
MAX_CANDIDATES_PER_SECTION = 32
MAX_FORMATS_PER_SECTION = 64

FINGERPRINT_HASHES = frozenset({"sha-1", "sha-224", "sha-256", "sha-384", "sha-512"})
CANDIDATE_TYPES = frozenset({"host", "srflx", "prflx", "relay"})
MEDIA_KINDS = frozenset({"audio", "video"})

_LINE = re.compile(r"^[a-z]=")
_ICE_CHARS = re.compile(r"^[A-Za-z0-9+/]+$")
_HEX_PAIRS = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){15,63}$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*$")


@dataclass
class _Section:
    """One level of attributes: the session, or one m= section."""

    kind: str = "session"
    port: int = 0
    proto: str = ""
    formats: list[str] = field(default_factory=list)
    fingerprint: bool = False
    ufrag: bool = False
    pwd: bool = False
    candidates: int = 0


def check_sdp(sdp: object, kind: str) -> str:
    """Return ``sdp`` if it is a description we can negotiate, else raise BadSdpError.

    ``kind`` ("offer" or "answer") only words the error message.
    """
    if not isinstance(sdp, str) or not sdp.strip():
        raise BadSdpError(f"the {kind} must be a non-empty SDP string")
    if len(sdp.encode("utf-8", "surrogatepass")) > MAX_SDP_BYTES:
        raise BadSdpError(f"the {kind} is larger than {MAX_SDP_BYTES} bytes")
    lines = sdp.replace("\r\n", "\n").split("\n")
    while lines and not lines[-1]:
        lines.pop()
    if len(lines) > MAX_LINES:
        raise BadSdpError(f"the {kind} has more than {MAX_LINES} lines")
    if not lines or lines[0].strip() != "v=0":
        raise BadSdpError(f"the {kind} is not SDP (it must start with v=0)")
    session = _Section()
    sections: list[_Section] = []
    for number, line in enumerate(lines, 1):
        _check_line(line, number, kind)
        if line.startswith("m="):
            if len(sections) >= MAX_MEDIA_SECTIONS:
                raise BadSdpError(f"the {kind} has more than {MAX_MEDIA_SECTIONS} media sections")
            sections.append(_media_line(line, number, kind))
        else:
            _attribute(sections[-1] if sections else session, line, number, kind)
    accepted = [s for s in sections if s.kind in MEDIA_KINDS and s.port != 0
                and "RTP/SAVP" in s.proto]
    if not accepted:
        raise BadSdpError(f"the {kind} has no audio or video section (DTLS-SRTP) we accept")
    for section in accepted:
        if not (session.fingerprint or section.fingerprint):
            raise BadSdpError(f"the {kind} has no DTLS fingerprint for its {section.kind} section")
        if not (session.ufrag or section.ufrag) or not (session.pwd or section.pwd):
            raise BadSdpError(f"the {kind} has no ICE ufrag/pwd for its {section.kind} section")
    return sdp


def _check_line(line: str, number: int, kind: str) -> None:
    if len(line) > MAX_LINE_LENGTH:
        raise BadSdpError(f"line {number} of the {kind} is longer than {MAX_LINE_LENGTH}")
    if not _LINE.match(line) or any(ord(c) < 0x20 and c != "\t" for c in line):
        raise BadSdpError(f"line {number} of the {kind} is not an SDP line")


def _media_line(line: str, number: int, kind: str) -> _Section:
    parts = line[2:].split()
    if len(parts) < 4:
        raise BadSdpError(f"line {number} of the {kind}: a media line needs port, proto, formats")
    port = parts[1].split("/", 1)[0]
    if not port.isdigit() or int(port) > 65535:
        raise BadSdpError(f"line {number} of the {kind}: the media port is not a port number")
    formats = parts[3:]
    if len(formats) > MAX_FORMATS_PER_SECTION:
        raise BadSdpError(f"line {number} of the {kind}: too many payload formats")
    if "RTP/" in parts[2] and not all(f.isdigit() and int(f) < 128 for f in formats):
        raise BadSdpError(f"line {number} of the {kind}: RTP payload types must be 0..127")
    return _Section(kind=parts[0], port=int(port), proto=parts[2], formats=formats)


def _attribute(section: _Section, line: str, number: int, kind: str) -> None:
    if not line.startswith("a="):
        return
    name, _, value = line[2:].partition(":")
    if name == "fingerprint":
        algorithm, _, digest = value.strip().partition(" ")
        if algorithm.lower() not in FINGERPRINT_HASHES or not _HEX_PAIRS.match(digest.strip()):
            raise BadSdpError(f"line {number} of the {kind}: malformed DTLS fingerprint")
        section.fingerprint = True
    elif name == "ice-ufrag":
        if not 4 <= len(value) <= 256 or not _ICE_CHARS.match(value):
            raise BadSdpError(f"line {number} of the {kind}: malformed ICE ufrag")
        section.ufrag = True
    elif name == "ice-pwd":
        if not 22 <= len(value) <= 256 or not _ICE_CHARS.match(value):
            raise BadSdpError(f"line {number} of the {kind}: malformed ICE pwd")
        section.pwd = True
    elif name == "candidate":
        section.candidates += 1
        if section.candidates > MAX_CANDIDATES_PER_SECTION:
            raise BadSdpError(f"the {kind} has more than {MAX_CANDIDATES_PER_SECTION} "
                              "candidates in one section")
        if not candidate_ok(value):
            raise BadSdpError(f"line {number} of the {kind}: the ICE candidate is not valid")


def candidate_ok(value: str) -> bool:
    """Whether ``value`` (after ``a=candidate:``) is a candidate RFC 8839 section 5.1 allows."""
    bits = value.split()
    if len(bits) < 8 or len(bits) % 2:
        return False
    foundation, component, transport, priority, address, port, typ, cand_type = bits[:8]
    if not 1 <= len(foundation) <= 32 or not _ICE_CHARS.match(foundation):
        return False
    if not component.isdigit() or not 1 <= int(component) <= 256:
        return False
    if transport.lower() not in ("udp", "tcp"):
        return False
    if not priority.isdigit() or int(priority) >= 2**32:
        return False
    if not _address_ok(address) or not port.isdigit() or int(port) > 65535:
        return False
    if typ != "typ" or cand_type not in CANDIDATE_TYPES:
        return False
    extensions = dict(zip(bits[8::2], bits[9::2], strict=True))
    if "raddr" in extensions and not _address_ok(extensions["raddr"]):
        return False
    rport = extensions.get("rport", "0")
    return rport.isdigit() and int(rport) <= 65535


def _address_ok(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        # Browsers hide host addresses behind mDNS names (<uuid>.local).
        return bool(_HOSTNAME.match(address))
    return True
