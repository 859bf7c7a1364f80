"""The server forwards: it creates no codec while subscribers decode the right pictures."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from huizhen.testpattern import PatternVideoTrack, ToneAudioTrack
from signaling import TokenAuthority
from signaling.client import SignalingClient
from tests.conftest import child_server
from tests.peers import Subscriber, prefer_codec, wait_for

SECRET = "codec-spy-secret-0123456789abcdef-0123"


POSITIVE_CONTROL = """
import json
import tests.codec_spy as codec_spy
counts = codec_spy.install()
import aiortc.codecs
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
aiortc.codecs.get_decoder(vp8)
aiortc.codecs.get_encoder(vp8)
h264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102)
aiortc.codecs.get_decoder(h264)
print(json.dumps(counts))
"""


def test_the_spy_counts_aiortc_codec_creation():
    """Positive control (in its own process): the instrumentation sees aiortc create codecs."""
    out = subprocess.run([sys.executable, "-c", POSITIVE_CONTROL], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    counts = json.loads(out)
    assert counts["get_decoder"] == 2 and counts["get_encoder"] == 1
    assert counts["H264Decoder"] == 1
    assert counts["Vp8Decoder"] == 1 and counts["Vp8Encoder"] == 1
    assert counts["av.CodecContext.create"] >= 1


@pytest.fixture
async def spy_server() -> AsyncIterator[str]:
    async with child_server("tests.codec_spy", SECRET) as url:
        yield url


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_no_decoder_or_encoder_in_the_server(spy_server, codec):
    authority = TokenAuthority(SECRET, "huizhen", "huizhen-media")
    ws_url = spy_server.replace("http", "ws") + "/ws"
    ward = SignalingClient(ws_url)
    await ward.connect()
    await ward.join(authority.mint(room="r", role="ward", name="w", ttl=60))
    pub = RTCPeerConnection()
    pub.addTrack(PatternVideoTrack(320, 240, 30))
    prefer_codec(pub, "video", codec)
    pub.addTrack(ToneAudioTrack(440))
    stream = await ward.publish(pub)
    assert stream["tracks"][0]["codec"] == codec

    experts, subs = [], []
    for i in range(2):
        client = SignalingClient(ws_url)
        await client.connect()
        await client.join(authority.mint(room="r", role="expert", name=f"e{i}", ttl=60))
        sub = Subscriber()
        await client.subscribe(stream["id"], sub.pc)
        experts.append(client)
        subs.append(sub)
    await wait_for(lambda: all(s.received.video_frames >= 60 and
                               len(s.received.audio_samples) >= 50 for s in subs), 40)
    for sub in subs:
        assert sub.received.mean_difference < 12
        assert abs(sub.received.audio_frequency() - 440) < 15

    async with aiohttp.ClientSession() as http, http.get(spy_server + "/_test/codecs") as r:
        counts = await r.json()
    # Subscribers decoded 60+ correct pictures and the tone, and the server made no codec.
    assert counts == {}, counts
    for client in [ward, *experts]:
        await client.close()
    await asyncio.gather(pub.close(), *(s.close() for s in subs))
