"""The simulcast SDP rewrite, on Chromium's real offer (three rids, VP8 L1T3 each)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from mediaserver.errors import BadSdpError
from mediaserver.sdp_simulcast import (
    REPAIRED_RID_URI,
    RID_URI,
    SimulcastSection,
    answer_simulcast,
    simulcast_offer,
)

# Chromium's createOffer() text (CRLF) for a 640x480 camera with three encodings.
OFFER = (Path(__file__).parent / "fixtures" / "sdp" / "chromium-simulcast-offer.sdp"
         ).read_bytes().decode()


def video_section(sdp: str) -> list[str]:
    lines = sdp.replace("\r\n", "\n").split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("m=video"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("m=")),
               len(lines))
    return lines[start:end]


def test_chromium_offer_names_three_streams_lowest_first_and_the_rid_extensions():
    sections = simulcast_offer(OFFER)
    assert sections == {"1": SimulcastSection("1", ("q", "h", "f"), 10, 11)}
    assert sections["1"].layer_of("f") == 2 and sections["1"].layer_of("x") is None


async def test_aiortc_answer_gets_the_receiving_side_with_the_offer_ids():
    pc = RTCPeerConnection()
    try:
        await pc.setRemoteDescription(RTCSessionDescription(OFFER, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        plain = pc.localDescription.sdp
        assert "a=simulcast" not in plain and RID_URI not in plain  # what aiortc drops
        answer = answer_simulcast(plain, simulcast_offer(OFFER))
    finally:
        await pc.close()
    video = video_section(answer)
    while video and not video[-1]:
        video.pop()
    assert video[-4:] == ["a=rid:q recv", "a=rid:h recv", "a=rid:f recv",
                          "a=simulcast:recv q;h;f"]
    assert f"a=extmap:10 {RID_URI}" in video and f"a=extmap:11 {REPAIRED_RID_URI}" in video
    audio = answer.split("m=audio", 1)[1].split("m=video", 1)[0]
    assert "a=rid" not in audio and RID_URI not in audio
    assert answer.count("\r\n") == plain.count("\r\n") + 6  # six lines added, CRLF kept
    extmap_ids = [line.split(" ")[0] for line in video if line.startswith("a=extmap")]
    assert len(extmap_ids) == len(set(extmap_ids))  # no id given twice


def test_an_offer_without_simulcast_is_answered_unchanged():
    plain = OFFER.replace("a=simulcast:send q;h;f\r\n", "").replace("a=rid:q send\r\n", "")
    plain = plain.replace("a=rid:h send\r\n", "").replace("a=rid:f send\r\n", "")
    assert simulcast_offer(plain) == {}
    assert answer_simulcast("v=0\r\nm=video 9 x 96\r\na=mid:1\r\n", {}) == (
        "v=0\r\nm=video 9 x 96\r\na=mid:1\r\n")


def test_paused_and_alternative_streams_are_read():
    offer = OFFER.replace("a=simulcast:send q;h;f", "a=simulcast:send ~q;h,f")
    assert simulcast_offer(offer)["1"].rids == ("q", "h", "f")


@pytest.mark.parametrize(("edit", "message"), [
    (("a=rid:q send", "a=rid:q<script> send"), "invalid rid"),
    (("a=rid:q send", "a=rid:qqqqqqqqqqqqqqqqq send"), "invalid rid"),
    (("a=simulcast:send q;h;f", "a=simulcast:send q;h;f;../x"), "invalid rid"),
    (("a=rid:f send", "a=rid:f send\r\na=rid:g send"), "at most 3"),
    (("a=simulcast:send q;h;f", "a=simulcast:send q;h;f;z"), "without an a=rid"),
    (("a=rid:q send", "a=rid:q recv"), "must be 'send'"),
    (("a=simulcast:send q;h;f", "a=simulcast:recv q;h;f"), "'send <rids>'"),
    (("a=simulcast:send q;h;f", "a=simulcast:send q;h;f\r\na=simulcast:send q"),
     "more than one"),
    (("a=rid:h send", "a=rid:q send"), "same rid twice"),
    (("a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n", ""), "rtp-stream-id"),
    (("a=simulcast:send q;h;f\r\n", ""), "no a=simulcast"),
])
def test_hostile_or_malformed_rids_are_refused_with_a_clear_error(edit, message):
    offer = OFFER.replace(*edit)
    assert offer != OFFER
    with pytest.raises(BadSdpError, match=message) as raised:
        simulcast_offer(offer)
    assert raised.value.code == "bad-sdp"
