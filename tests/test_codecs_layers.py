"""Layer selectors on Chromium's VP8 L1T3 stream: what each consumer would receive."""

from __future__ import annotations

import av
import pytest
from aiortc.rtp import RtpPacket

from mediaserver.codecs import ForwardAll, LayerSelector, PacketFlags, TemporalLayerSelector
from mediaserver.codecs.vp8 import vp8_flags
from recorder.depacketizer import Vp8Depacketizer
from tests.rtp_fixtures import rtp_packets

TIDS = [(0, 2, 1, 2)[i % 4] for i in range(86)] + [0]  # frames of the fixture, in order


def frame_layers(selector: LayerSelector) -> list[int]:
    """The TID of each frame the selector lets through (all of its packets or none)."""
    kept: dict[int, list[bool]] = {}
    tids: dict[int, int] = {}
    for packet in rtp_packets("vp8-chromium-l1t3.bin"):
        flags = vp8_flags(packet.payload)
        assert flags.temporal_id is not None
        kept.setdefault(packet.timestamp, []).append(selector.select(flags))
        tids[packet.timestamp] = flags.temporal_id
    assert all(all(k) or not any(k) for k in kept.values()), "a frame was cut in half"
    return [tids[ts] for ts, k in kept.items() if k[0]]


def test_forward_all_and_packets_without_layers():
    assert frame_layers(ForwardAll()) == TIDS
    assert TemporalLayerSelector(0).select(PacketFlags(start=True))  # no TID: no layering


@pytest.mark.parametrize("target", [0, 1, 2])
def test_a_fixed_target_keeps_the_layers_up_to_it(target):
    assert frame_layers(TemporalLayerSelector(target)) == [t for t in TIDS if t <= target]


def test_switches_down_at_a_frame_start_and_up_only_at_a_layer_sync():
    selector = TemporalLayerSelector(2)
    packets = rtp_packets("vp8-chromium-l1t3.bin")
    decisions: list[tuple[int, int, bool]] = []  # (frame index, TID, kept) at frame starts
    frame = -1
    for packet in packets:
        flags = vp8_flags(packet.payload)
        frame += flags.start
        if frame == 20 and flags.start:
            selector.target = 0
        if frame == 40 and flags.start:
            selector.target = 2
        kept = selector.select(flags)
        if flags.start:
            decisions.append((frame, flags.temporal_id or 0, kept))
    dropped = [f for f, _, kept in decisions if not kept]
    # Down at frame 20 at once. Asked up at frame 40, it waits for the next layer-sync
    # frame: 41 (TL2 with Y, referencing TL0 only), and goes straight to TL2 there.
    assert [f for f in (40, 41, 42) if vp8_flags(frame_start(packets, f)).layer_sync] == [41, 42]
    assert dropped == [f for f in range(20, 41) if TIDS[f]]
    assert selector.current == 2


def frame_start(packets: list[RtpPacket], index: int) -> bytes:
    """The payload of the first packet of frame ``index``."""
    return [p.payload for p in packets if vp8_flags(p.payload).start][index]


def test_the_base_layer_alone_decodes_with_every_frame():
    """TL0 frames reference only TL0 frames: a consumer at target 0 decodes them all."""
    selector, depacketizer = TemporalLayerSelector(0), Vp8Depacketizer()
    frames, seq = [], 0
    for packet in rtp_packets("vp8-chromium-l1t3.bin"):
        if selector.select(vp8_flags(packet.payload)):  # the forwarder renumbers what it keeps
            frames += depacketizer.push(seq, packet.timestamp, bool(packet.marker),
                                        packet.payload, 0.0)
            seq += 1
    assert len(frames) == TIDS.count(0) and not any(f.after_loss for f in frames)
    codec = av.CodecContext.create("vp8", "r")
    pictures = [p for f in frames for p in codec.decode(av.Packet(f.data))]
    assert len(pictures) == len(frames)
    assert (pictures[0].width, pictures[0].height) == (640, 480)
    assert (pictures[-1].width, pictures[-1].height) == (480, 360)
