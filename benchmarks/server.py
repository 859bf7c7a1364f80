"""The real huizhen server with the latency probe, on a loopback port (benchmark child).

    python -m benchmarks.server --port 18080 [--layer-selection on|off]

Prints ``{"event": "ready", "url": ..., "pid": ...}`` once it accepts connections;
stops when stdin closes or on SIGTERM/SIGINT.

The probe stays outside the media server: the rooms get their transports from
``ProbedTransports``, whose publications stamp each packet with its datagram's
kernel arrival time and whose consumers record the latency of every copy sent.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from dataclasses import replace
from time import time_ns

from aiohttp import web
from aiortc import RTCRtpReceiver
from aiortc.rtp import RtpPacket

from benchmarks.common import (
    DEFAULT_REDIS_URL,
    HOST,
    bench_settings,
    emit,
    quiet_logging,
    serve_control,
)
from huizhen.app import create_app
from mediaserver import Consumer, LatencyProbe, MediaConfig, MediaServer, Producer
from mediaserver.aiortc_hooks import ArrivalStamps, ReceiverTap, SenderPort, SimulcastStreams
from mediaserver.codecs import PacketFlags
from mediaserver.transport import (
    AiortcTransports,
    Publication,
    Subscription,
    layer_selector,
)
from mediaserver.transport_factory import StateListener
from signaling import LATENCY_PROBE, MEDIA_SERVER


class ProbedConsumer(Consumer):
    """A consumer that records, for every copy it sends, the time since its arrival.

    ``write`` runs once per forwarded copy: it calls ``Consumer.write`` directly (no
    ``super()``) and appends the sample itself (no ``copy_sent`` call), so that the
    probe adds no Python call to the measured path beyond this method.
    """

    probe: LatencyProbe
    _forward = Consumer.write

    def write(self, packet: RtpPacket, flags: PacketFlags) -> bool:
        if self._forward(packet, flags):
            probe = self.probe
            probe.samples.append(time_ns() - probe.arrival_ns)
            return True
        return False


class ProbedPublication(Publication):
    """A publication whose packet taps set the probe's arrival time of each packet."""

    probe: LatencyProbe
    _stamps: ArrivalStamps | None = None

    def _tap(self, receiver: RTCRtpReceiver, producer: Producer,
             simulcast: SimulcastStreams | None = None) -> ReceiverTap:
        if self._stamps is None:  # the offer is applied: the ICE connections exist
            self._stamps = ArrivalStamps(self.pc)
            self.pc.on("connectionstatechange", self._hook_sockets)
        stamps, probe = self._stamps, self.probe

        def on_packet(packet: RtpPacket) -> None:
            probe.arrival_ns = stamps.current
            producer.on_packet(packet)

        # As the product's tap (Publication._tap), with the probe's stamp first.
        return ReceiverTap(receiver, on_packet, producer.on_sender_report, self.port_counters,
                           on_keyframe_needed=producer.request_keyframe,
                           recovery=producer.recovery, simulcast=simulcast)

    def _hook_sockets(self) -> None:
        if self._stamps is not None and self.pc.connectionState == "connected":
            self._stamps.hook_sockets()


class ProbedSubscription(Subscription):
    probe: LatencyProbe

    def _consumer(self, consumer_id: str, producer: Producer, port: SenderPort) -> Consumer:
        selector = layer_selector(producer, self.config)
        consumer = ProbedConsumer(consumer_id, producer.kind, producer, producer.templates,
                                  port, self.config.retransmission_buffer, selector,
                                  producer.layer_rates if selector is not None else None)
        consumer.probe = self.probe
        return consumer


class ProbedTransports(AiortcTransports):
    """The aiortc transports, instrumented with ``probe``."""

    def __init__(self, config: MediaConfig, probe: LatencyProbe) -> None:
        super().__init__(config)
        self.probe = probe

    def publication(self, transport_id: str, participant_id: str,
                    on_state: StateListener) -> Publication:
        publication = ProbedPublication(transport_id, participant_id, self.config, on_state)
        publication.probe = self.probe
        return publication

    def subscription(self, transport_id: str, participant_id: str, stream_id: str,
                     on_state: StateListener) -> Subscription:
        subscription = ProbedSubscription(transport_id, participant_id, stream_id, self.config,
                                          on_state)
        subscription.probe = self.probe
        return subscription


def install_probe(app: web.Application, layer_selection: bool = True) -> LatencyProbe:
    """Probe every room of ``app`` (before it serves) and publish the probe to the stats
    route (``LATENCY_PROBE``). ``layer_selection``: ``MediaConfig.layer_selection``."""
    probe = LatencyProbe()
    media: MediaServer = app[MEDIA_SERVER]
    config = replace(media.config, layer_selection=layer_selection)
    media.config = replace(config, transports=ProbedTransports(config, probe))
    app[LATENCY_PROBE] = probe
    return probe


async def run(port: int, record_dir: str | None, layer_selection: bool = True,
              cluster_prefix: str | None = None, redis_url: str = DEFAULT_REDIS_URL) -> None:
    settings = bench_settings(port, record_dir, cluster_prefix, redis_url)
    app = create_app(settings)
    install_probe(app, layer_selection)
    # aiohttp waits up to shutdown_timeout for open WebSocket handlers to end, and the
    # app does not close them on shutdown: cap the wait (the orchestrator stops the
    # clients first anyway).
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=3.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, HOST, port)
        await site.start()
        emit("ready", url=f"http://{HOST}:{port}", pid=os.getpid())
        await serve_control()
    finally:
        await asyncio.wait_for(runner.cleanup(), 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", default=None,
                        help="record every room into this directory (recorder scenario)")
    parser.add_argument("--layer-selection", choices=["on", "off"], default="on",
                        help="per-viewer VP8 temporal layer selection (default on)")
    parser.add_argument("--cluster-prefix", default=None,
                        help="a node of a cluster on Redis, under this key prefix")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    args = parser.parse_args()
    quiet_logging()
    asyncio.run(run(args.port, args.record, args.layer_selection == "on",
                    args.cluster_prefix, args.redis_url))


if __name__ == "__main__":
    main()
