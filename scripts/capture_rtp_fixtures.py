"""Capture the RTP fixtures of tests/fixtures/rtp/ from real encoders.

    .venv/bin/python scripts/capture_rtp_fixtures.py aiortc     # VP8 and H.264, aiortc
    .venv/bin/python scripts/capture_rtp_fixtures.py chromium   # VP8 L1T3, Chromium

A fixture file is a run of records: a 2-byte big-endian length, then one whole RTP
packet (header and payload) of that length. ``tests/rtp_fixtures.py`` reads them.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import struct
import sys
from pathlib import Path
from typing import Any

import av
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtp import RtpPacket

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from huizhen.testpattern import pattern_frame  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "rtp"
FRAMES = 20
KEYFRAME_EVERY = 10


def write(path: Path, packets: list[bytes]) -> None:
    path.write_bytes(b"".join(struct.pack("!H", len(p)) + p for p in packets))
    print(f"{path.relative_to(ROOT)}: {len(packets)} packets, {path.stat().st_size} bytes")


def aiortc_packets(codec: str, payload_type: int, width: int, height: int) -> list[bytes]:
    """RTP packets of FRAMES test-pattern pictures, a keyframe forced every KEYFRAME_EVERY."""
    encoder: Any = Vp8Encoder() if codec == "VP8" else H264Encoder()
    packets, seq = [], 1000
    for index in range(FRAMES):
        picture = av.VideoFrame.from_ndarray(pattern_frame(index, width, height), format="bgr24")
        picture.pts = index * 3000
        picture.time_base = fractions.Fraction(1, 90000)
        payloads, timestamp = encoder.encode(picture, force_keyframe=index % KEYFRAME_EVERY == 0)
        for i, payload in enumerate(payloads):
            packet = RtpPacket(payload_type=payload_type, marker=int(i == len(payloads) - 1),
                               sequence_number=seq, timestamp=timestamp, ssrc=0x1234)
            packet.payload = payload
            packets.append(packet.serialize())
            seq += 1
    return packets


def capture_aiortc() -> None:
    # 640x480 frames fit one packet each; 1280x720 keyframes span several (FU-A for H.264).
    for width, height in ((640, 480), (1280, 720)):
        write(OUT / f"vp8-aiortc-{width}x{height}.bin", aiortc_packets("VP8", 96, width, height))
        write(OUT / f"h264-aiortc-{width}x{height}.bin",
              aiortc_packets("H264", 102, width, height))


async def capture_chromium(count: int) -> None:
    """Chromium's fake camera published to the real server, VP8 L1T3, tapped at the producer."""
    from aiohttp import web
    from playwright.async_api import async_playwright, expect

    from huizhen.app import create_app, token_authority
    from mediaserver.codecs import PacketFlags
    from mediaserver.downstream import DownstreamStats
    from signaling import MEDIA_SERVER
    from tests.conftest import make_settings
    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

    settings = make_settings()
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, settings.server.host, settings.server.port).start()
    token = token_authority(settings).mint(room="bed-12", role="ward", name="ward", ttl=600)
    packets: list[bytes] = []
    done = asyncio.Event()

    class Tap:
        """Keeps every packet (padding included) from the first keyframe on; stops after
        ``count`` packets, at the end of a frame."""

        id = "capture"
        closed = False
        reads_flags = True

        def write(self, packet: RtpPacket, flags: PacketFlags) -> bool:
            if done.is_set() or not (packets or flags.keyframe):
                return False
            packets.append(packet.serialize())
            if len(packets) >= count and packet.marker:
                done.set()
            return True

        def sender_report(self, ntp_timestamp: int, rtp_timestamp: int) -> None:
            pass

        def producer_closed(self) -> None:
            done.set()

        def close(self) -> None:
            pass

        def stats(self) -> DownstreamStats:
            return DownstreamStats(self.id, "capture", packets_sent=len(packets))

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                   args=CHROMIUM_ARGS)
        page = await browser.new_page()
        url = f"{settings.server.base_url}/ward.html#token={token}&autostart=1&codec=VP8"
        await page.goto(url)
        await expect(page.locator("#publication-state")).to_have_attribute(
            "data-state", "connected", timeout=15_000)
        mode = await page.evaluate("""async () => {
            for (const pc of window.huizhen.peerConnections) {
                for (const sender of pc.getSenders()) {
                    if (!sender.track || sender.track.kind !== "video") continue;
                    const params = sender.getParameters();
                    params.encodings[0].scalabilityMode = "L1T3";
                    await sender.setParameters(params);
                    return sender.getParameters().encodings[0].scalabilityMode;
                }
            }
            return null;
        }""")
        print("scalabilityMode:", mode)
        await asyncio.sleep(1)
        room = app[MEDIA_SERVER].directory.local("bed-12")
        assert room is not None
        video = next(p for participant in room.participants.values()
                     for publication in participant.publications.values()
                     for p in publication.producers if p.kind == "video")
        video.add_downstream(Tap())
        video.request_keyframe()
        await asyncio.wait_for(done.wait(), 30)
        await browser.close()
    await runner.cleanup()
    write(OUT / "vp8-chromium-l1t3.bin", packets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", choices=["aiortc", "chromium"])
    parser.add_argument("--packets", type=int, default=120, help="chromium: packets to keep")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.source == "aiortc":
        capture_aiortc()
    else:
        asyncio.run(capture_chromium(args.packets))


if __name__ == "__main__":
    main()
