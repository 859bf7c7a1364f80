"""Mangled offers and answers get a clear error; the server never faults and keeps serving."""

from __future__ import annotations

import contextlib
import random

import pytest
from aiortc import RTCPeerConnection

from huizhen.testpattern import PatternVideoTrack, ToneAudioTrack
from signaling import SIGNALING_CONFIG
from signaling.client import SignalingClient, SignalingError
from tests.peers import Subscriber, wait_for


def mutations(sdp: str, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    lines = sdp.strip().split("\r\n")
    out = []
    for _ in range(count):
        mutated = list(lines)
        kind = rng.randrange(6)
        i = rng.randrange(1, len(mutated))
        if kind == 0:
            del mutated[i]
        elif kind == 1:
            mutated[i] = mutated[i][: rng.randrange(len(mutated[i]) + 1)]
        elif kind == 2:
            mutated[i] = mutated[i].replace(" ", "  ", 1) + " \x00garbage"
        elif kind == 3:
            mutated.insert(i, rng.choice(["m=video 0 RTP/AVP 0", "a=rtpmap:x y", "a=ssrc:",
                                          "a=fingerprint:sha-256 ZZ", "c=IN IP9 ::::",
                                          "a=ice-ufrag:", "m=" + "x" * 300]))
        elif kind == 4:
            mutated = mutated[: i]
        else:
            j = rng.randrange(1, len(mutated))
            mutated[i], mutated[j] = mutated[j], mutated[i]
        out.append("\r\n".join(mutated) + "\r\n")
    out.append(sdp.replace("m=video", "m=video\r\nm=audio 9 x\r\nm=audio 9 x\r\nm=audio 9 x"))
    return out


def allow_fast_clients(server) -> None:
    config = server.app[SIGNALING_CONFIG]  # fuzzing sends far more than a real client
    object.__setattr__(config, "messages_per_second", 1000.0)
    object.__setattr__(config, "message_burst", 1000)


async def test_mangled_publish_offers(running_server):
    allow_fast_clients(running_server)
    ward = SignalingClient(running_server.ws_url)
    await ward.connect()
    await ward.join(running_server.token("ward"))
    template = RTCPeerConnection()
    template.addTrack(PatternVideoTrack(160, 120, 15))
    template.addTrack(ToneAudioTrack())
    await template.setLocalDescription(await template.createOffer())
    codes = []
    for sdp in mutations(template.localDescription.sdp, 60, seed=7):
        try:
            reply = await ward.request({"type": "publish", "sdp": sdp})
            codes.append(reply["type"])
            await ward.request({"type": "unpublish", "stream": reply["stream"]["id"]})
        except SignalingError as exc:
            codes.append(exc.code)
    await template.close()
    assert "internal-error" not in codes, codes
    assert set(codes) <= {"published", "negotiation-failed", "bad-sdp"}, set(codes)
    assert codes.count("negotiation-failed") + codes.count("bad-sdp") >= 10
    # The same connection still publishes a good stream, and an expert still receives it.
    pub = RTCPeerConnection()
    pub.addTrack(PatternVideoTrack(160, 120, 15))
    stream = await ward.publish(pub)
    expert = SignalingClient(running_server.ws_url)
    await expert.connect()
    await expert.join(running_server.token("expert"))
    sub = Subscriber()
    await expert.subscribe(stream["id"], sub.pc)
    await wait_for(lambda: sub.received.video_frames >= 10, 30)
    await sub.close()
    await pub.close()
    await expert.close()
    await ward.close()


@pytest.mark.parametrize("seed", [1, 2])
async def test_mangled_subscribe_answers(running_server, seed):
    allow_fast_clients(running_server)
    ward = SignalingClient(running_server.ws_url)
    await ward.connect()
    await ward.join(running_server.token("ward"))
    pub = RTCPeerConnection()
    pub.addTrack(PatternVideoTrack(160, 120, 15))
    stream = await ward.publish(pub)
    expert = SignalingClient(running_server.ws_url)
    await expert.connect()
    await expert.join(running_server.token("expert"))
    peer = Subscriber()
    offer = await expert.request({"type": "subscribe", "stream": stream["id"]})
    good_answer = await peer.answer(offer["sdp"])
    codes = []
    for sdp in mutations(good_answer, 25, seed=seed):
        attempt = await expert.request({"type": "subscribe", "stream": stream["id"]})
        unsubscribe = {"type": "unsubscribe", "subscription": attempt["subscription"]}
        try:
            await expert.request({"type": "answer", "subscription": attempt["subscription"],
                                  "sdp": sdp})
        except SignalingError as exc:
            codes.append(exc.code)
            # A refused answer ends that subscription: the client must subscribe again.
            with pytest.raises(SignalingError, match="not-found"):
                await expert.request(unsubscribe)
            continue
        codes.append("answered")
        # An accepted answer whose transport then fails (say, a wrong fingerprint) may
        # already be gone; either way the request is answered.
        with contextlib.suppress(SignalingError):
            await expert.request(unsubscribe)
    assert "internal-error" not in codes, codes
    assert set(codes) <= {"answered", "negotiation-failed", "bad-sdp"}, set(codes)
    # The untouched answer on the first subscription still brings the pictures.
    await expert.request({"type": "answer", "subscription": offer["subscription"],
                          "sdp": good_answer})
    await wait_for(lambda: peer.received.video_frames >= 10, 30)
    await peer.close()
    await pub.close()
    await expert.close()
    await ward.close()
