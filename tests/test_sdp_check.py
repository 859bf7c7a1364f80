"""SDP validation before negotiation: bad offers and answers get bad-sdp, leave nothing."""

from __future__ import annotations

import asyncio
import gc
import re

import pytest
from aiortc import RTCPeerConnection

from huizhen.testpattern import PatternVideoTrack, ToneAudioTrack
from mediaserver import Transport
from mediaserver.errors import BadSdpError
from mediaserver.sdp_check import candidate_ok, check_sdp
from signaling import MEDIA_SERVER
from signaling.client import SignalingClient, SignalingError
from tests.peers import Subscriber, wait_for

# What Chrome sends (abridged): mDNS host candidate, session-level nothing, BUNDLE.
CHROME_OFFER = "\r\n".join([
    "v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
    "a=group:BUNDLE 0", "a=extmap-allow-mixed", "a=msid-semantic: WMS",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0",
    "a=candidate:3011416520 1 udp 2113937151 4b7a0c49-4a57-4dbb-9b3e-0a5d0e3fd3c4.local "
    "54400 typ host generation 0 network-cost 999",
    "a=candidate:842163049 1 udp 1677729535 203.0.113.7 54400 typ srflx raddr 0.0.0.0 "
    "rport 0 generation 0 network-cost 999",
    "a=ice-ufrag:Xb4r", "a=ice-pwd:2dG8kM8dT4kq8tB6Mw2S3sRe", "a=ice-options:trickle",
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:actpass", "a=mid:0",
    "a=sendonly", "a=rtcp-mux", "a=rtpmap:96 VP8/90000", "a=rtpmap:97 rtx/90000",
    "a=fmtp:97 apt=96", "",
])


async def aiortc_offer() -> str:
    pc = RTCPeerConnection()
    pc.addTrack(PatternVideoTrack(160, 120, 15))
    pc.addTrack(ToneAudioTrack())
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return sdp


def without(sdp: str, prefix: str) -> str:
    return "".join(line + "\r\n" for line in sdp.splitlines() if not line.startswith(prefix))


def replace_first(sdp: str, prefix: str, line: str) -> str:
    lines = sdp.splitlines()
    index = next(i for i, x in enumerate(lines) if x.startswith(prefix))
    lines[index] = line
    return "\r\n".join(lines) + "\r\n"


def malformed(offer: str) -> dict[str, tuple[str, str]]:
    """name -> (sdp, a word the error message must contain)."""
    video_only = offer.split("m=audio")[0]
    return {
        "no fingerprint": (without(offer, "a=fingerprint"), "fingerprint"),
        "bad fingerprint": (replace_first(offer, "a=fingerprint",
                                          "a=fingerprint:sha-256 ZZ:11"), "fingerprint"),
        "no ice credentials": (without(offer, "a=ice-pwd"), "ICE"),
        "invalid candidate": (replace_first(offer, "a=candidate",
                                            "a=candidate:1 1 udp 99 not an ip"), "candidate"),
        "candidate with a bad port": (replace_first(offer, "a=candidate",
                                                    "a=candidate:1 1 udp 99 127.0.0.1 99999 "
                                                    "typ host"), "candidate"),
        "no media section": ("\r\n".join(offer.split("\r\n")[:4]) + "\r\n", "no audio or video"),
        "only data channel": (video_only.split("m=video")[0]
                              + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
                              "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\n",
                              "no audio or video"),
        "rejected sections only": (re.sub(r"^m=(audio|video) \d+", r"m=\1 0", offer,
                                          flags=re.MULTILINE), "no audio or video"),
        "garbage": ("hello, this is not SDP", "v=0"),
        "garbage line": (offer.replace("a=mid:0", "this is not a line"), "not an SDP line"),
        "nul byte": (offer.replace("a=mid:0", "a=mid:0\x00"), "not an SDP line"),
        "too large": (offer + "a=x:" + "y" * 40000 + "\r\n", "larger"),
        "too many sections": (offer + "".join(f"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:{i}\r\n"
                                              for i in range(5, 9)), "media sections"),
        "empty": ("", "non-empty"),
    }


async def test_good_descriptions_pass():
    offer = await aiortc_offer()
    assert check_sdp(offer, "offer") == offer
    assert check_sdp(CHROME_OFFER, "offer") == CHROME_OFFER
    assert candidate_ok("1 1 UDP 2130706431 ::1 5000 typ host")
    assert candidate_ok("x 1 tcp 1 10.0.0.1 9 typ host tcptype active")
    assert not candidate_ok("1 1 udp 1 10.0.0.1 9 typ host tcptype")  # an odd attribute


async def test_each_malformed_description_has_a_reason():
    offer = await aiortc_offer()
    for name, (sdp, reason) in malformed(offer).items():
        with pytest.raises(BadSdpError) as info:
            check_sdp(sdp, "offer")
        assert reason in str(info.value), (name, str(info.value))
        assert info.value.code == "bad-sdp"
    with pytest.raises(BadSdpError):
        check_sdp(12, "offer")


def server_transports() -> list[Transport]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, Transport)]


async def test_malformed_offers_are_refused_before_any_peer_connection(running_server):
    media = running_server.app[MEDIA_SERVER]
    offer = await aiortc_offer()
    ward = SignalingClient(running_server.ws_url)
    await ward.connect()
    await ward.join(running_server.token("ward"))
    own_pcs = sum(1 for o in gc.get_objects() if isinstance(o, RTCPeerConnection))
    for name, (sdp, reason) in malformed(offer).items():
        if len(sdp) > 60000:
            continue  # over the message limit: message-too-large, tested elsewhere
        with pytest.raises(SignalingError) as info:
            await ward.request({"type": "publish", "sdp": sdp})
        assert info.value.code in ("bad-sdp", "bad-message"), name
        if info.value.code == "bad-sdp":
            assert reason in info.value.message, (name, info.value.message)
        assert media.transports() == 0, name
    await asyncio.sleep(0)
    assert server_transports() == []
    gc.collect()
    assert sum(1 for o in gc.get_objects() if isinstance(o, RTCPeerConnection)) <= own_pcs
    # The offer's own events: nobody was told about a stream.
    with pytest.raises(TimeoutError):
        await ward.next_event("track-added", timeout=0.3)
    # The same socket still publishes a good offer.
    pub = RTCPeerConnection()
    pub.addTrack(PatternVideoTrack(160, 120, 15))
    stream = await ward.publish(pub)
    assert stream["tracks"][0]["kind"] == "video"
    await asyncio.gather(pub.close(), ward.close())


async def test_malformed_answers_end_their_subscription(running_server):
    media = running_server.app[MEDIA_SERVER]
    ward = SignalingClient(running_server.ws_url)
    await ward.connect()
    await ward.join(running_server.token("ward"))
    pub = RTCPeerConnection()
    pub.addTrack(PatternVideoTrack(160, 120, 15))
    stream = await ward.publish(pub)
    expert = SignalingClient(running_server.ws_url)
    await expert.connect()
    await expert.join(running_server.token("expert"))
    for name in ("no fingerprint", "invalid candidate", "no media section", "garbage"):
        offer = await expert.request({"type": "subscribe", "stream": stream["id"]})
        peer = Subscriber()
        answer = await peer.answer(offer["sdp"])
        sdp = malformed(answer)[name][0]
        with pytest.raises(SignalingError) as info:
            await expert.request({"type": "answer", "subscription": offer["subscription"],
                                  "sdp": sdp})
        assert info.value.code == "bad-sdp", name
        with pytest.raises(SignalingError) as info:
            await expert.request({"type": "unsubscribe", "subscription": offer["subscription"]})
        assert info.value.code == "not-found"
        assert media.transports() == 1  # the publication only
        await peer.close()
    await wait_for(lambda: len(server_transports()) == 1, 10)
    # A good answer still works on a new subscription.
    peer = Subscriber()
    await expert.subscribe(stream["id"], peer.pc)
    await wait_for(lambda: peer.received.video_frames >= 3, 30)
    await asyncio.gather(peer.close(), pub.close(), expert.close(), ward.close())
