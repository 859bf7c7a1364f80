"""Simulcast in SDP (RFC 8851 rid, RFC 8853 simulcast), pure text in and out.

aiortc neither reads nor answers ``a=rid``/``a=simulcast`` and drops the
rtp-stream-id header extensions from its answer, so a browser that offers three
encodings sends only the first. ``simulcast_offer`` reads what a publisher offers
(validating every rid) and ``answer_simulcast`` writes the receiving side of it into
aiortc's answer: the rid extmaps with the offer's IDs, ``a=rid:<rid> recv`` per rid
and ``a=simulcast:recv <rids>``, which makes the browser send every encoding.

Spatial layers are numbered in the order of the offer's ``a=simulcast`` line: a
publisher lists its encodings from the lowest resolution to the highest (as the ward
page does), so layer 0 is the smallest picture and the last layer the full one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mediaserver.errors import BadSdpError

RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
MAX_LAYERS = 3
# RFC 8851 rid-id = 1*(alpha-numeric / "-" / "_"); the value travels in a one-byte
# header extension (RFC 8285), so at most 16 bytes.
MAX_RID_LENGTH = 16
_RID = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
_EXTMAP = re.compile(r"^a=extmap:(\d{1,3})(?:/\w+)? (\S+)")


@dataclass(frozen=True)
class SimulcastSection:
    """What one offered video section says about simulcast."""

    mid: str
    rids: tuple[str, ...]  # spatial layer order: lowest first
    rid_extension: int  # the offer's extmap id for rtp-stream-id
    repaired_extension: int | None  # and for repaired-rtp-stream-id (RTX), if offered

    def layer_of(self, rid: str) -> int | None:
        try:
            return self.rids.index(rid)
        except ValueError:
            return None


def _sections(sdp: str) -> list[list[str]]:
    """The session block then each m= section, as lists of lines."""
    blocks: list[list[str]] = [[]]
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            blocks.append([])
        blocks[-1].append(line)
    return blocks


def _rid_list(value: str) -> list[str]:
    """The rids of an ``a=simulcast:send`` value (RFC 8853 sc-str-list): alternatives
    (``,``) and paused streams (``~``) are accepted; each is validated."""
    rids: list[str] = []
    for stream in value.split(";"):
        for alternative in stream.split(","):
            rid = alternative.removeprefix("~")
            if not _RID.match(rid):
                raise BadSdpError("the offer's a=simulcast names an invalid rid "
                                  "(1 to 16 letters, digits, '-' or '_')")
            if rid not in rids:
                rids.append(rid)
    return rids


def _section(lines: list[str]) -> SimulcastSection | None:
    if not lines[0].startswith("m=video"):
        return None
    mid = ""
    declared: list[str] = []
    sent: list[str] | None = None
    extmaps: dict[str, int] = {}
    for line in lines:
        if line.startswith("a=mid:"):
            mid = line[6:].strip()
        elif line.startswith("a=rid:"):
            rid, _, rest = line[6:].partition(" ")
            if not _RID.match(rid):
                raise BadSdpError("the offer has an invalid rid (1 to 16 letters, digits, "
                                  "'-' or '_')")
            if rest.split(" ", 1)[0] != "send":
                raise BadSdpError("a publication's rids must be 'send'")
            if rid in declared:
                raise BadSdpError("the offer declares the same rid twice")
            declared.append(rid)
        elif line.startswith("a=simulcast:"):
            if sent is not None:
                raise BadSdpError("the offer has more than one a=simulcast line per section")
            direction, _, value = line[12:].strip().partition(" ")
            if direction != "send" or not value or " " in value.strip():
                raise BadSdpError("a publication's a=simulcast must be 'send <rids>'")
            sent = _rid_list(value.strip())
        elif (match := _EXTMAP.match(line)) is not None:
            extmaps[match.group(2)] = int(match.group(1))
    if sent is None:
        if declared:
            raise BadSdpError("the offer has a=rid lines but no a=simulcast line")
        return None
    if len(declared) > MAX_LAYERS:
        raise BadSdpError(f"at most {MAX_LAYERS} simulcast rids per video track")
    missing = [rid for rid in sent if rid not in declared]
    if missing:
        raise BadSdpError("the offer's a=simulcast names a rid without an a=rid line")
    rid_extension = extmaps.get(RID_URI)
    if rid_extension is None or not 1 <= rid_extension <= 14:
        raise BadSdpError("a simulcast offer must carry the rtp-stream-id header extension "
                          "(with a one-byte id, 1 to 14)")
    repaired = extmaps.get(REPAIRED_RID_URI)
    if repaired is not None and not 1 <= repaired <= 14:
        repaired = None
    if not mid:
        raise BadSdpError("a simulcast section must have an a=mid")
    return SimulcastSection(mid, tuple(sent), rid_extension, repaired)


def simulcast_offer(sdp: str) -> dict[str, SimulcastSection]:
    """The offer's simulcast video sections by mid (empty: no simulcast).

    Raises BadSdpError on a malformed or hostile rid/simulcast description: an
    invalid rid, more than ``MAX_LAYERS`` rids, a rid named but not declared, no
    rtp-stream-id extension to tell the streams apart.
    """
    out: dict[str, SimulcastSection] = {}
    for lines in _sections(sdp)[1:]:
        section = _section(lines)
        if section is not None:
            out[section.mid] = section
    return out


def answer_simulcast(answer: str, sections: dict[str, SimulcastSection]) -> str:
    """``answer`` with each simulcast section's receiving side written in.

    The rid extmaps take the offer's ids (replacing any line the answer had with the
    same id or URI); the ``a=rid``/``a=simulcast`` lines go at the section's end. A
    section the answer rejected (port 0) is left alone.
    """
    if not sections:
        return answer
    newline = "\r\n" if "\r\n" in answer else "\n"
    blocks = _sections(answer)
    out: list[str] = list(blocks[0])
    for lines in blocks[1:]:
        mid = next((line[6:].strip() for line in lines if line.startswith("a=mid:")), None)
        section = sections.get(mid) if mid is not None else None
        if section is None or lines[0].split(" ")[1:2] == ["0"]:
            out += lines
            continue
        trailing = 0
        while trailing < len(lines) and lines[len(lines) - 1 - trailing] == "":
            trailing += 1
        body = lines[:len(lines) - trailing]
        taken = {section.rid_extension, section.repaired_extension}
        body = [line for line in body if not _clashes(line, taken)]
        extmaps = [f"a=extmap:{section.rid_extension} {RID_URI}"]
        if section.repaired_extension is not None:
            extmaps.append(f"a=extmap:{section.repaired_extension} {REPAIRED_RID_URI}")
        where = next((i for i, line in enumerate(body) if line.startswith("a=extmap:")),
                     next((i for i, line in enumerate(body) if line.startswith("a=mid:")),
                          len(body) - 1) + 1)
        body[where:where] = extmaps
        body += [f"a=rid:{rid} recv" for rid in section.rids]
        body.append("a=simulcast:recv " + ";".join(section.rids))
        out += body + lines[len(lines) - trailing:]
    return newline.join(out)


def _clashes(line: str, taken: set[int | None]) -> bool:
    match = _EXTMAP.match(line)
    if match is None:
        return False
    return int(match.group(1)) in taken or match.group(2) in (RID_URI, REPAIRED_RID_URI)
