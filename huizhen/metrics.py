"""Prometheus ``/metrics``: this node's counters, read from the stats snapshots at scrape time.

Nothing is counted twice: a custom collector turns ``MediaServer.stats()`` (and the HL7
listener's counters) into metric families on each scrape, in a ``CollectorRegistry`` of
the app's own (no process-wide registry). Byte and packet counts are Prometheus counters:
rates (bitrate = ``rate(huizhen_producer_bytes_received_total[1m]) * 8``) are computed by
Prometheus. Labels are ids only (room names are bed or consultation ids, participants
their opaque ``p-…`` ids): never a person's name, never patient data.

A new field of a snapshot is one line in the tables below. A field that reads None
(e.g. a downstream without layer selection has no temporal layer) is left out.

Beside the server's own counters: what each page reports of its reception
(``client-stats``: frames decoded, freezes, packets lost, round trip), the latest report
per viewer and stream, from the signalling layer's ``ClientStatsBook``.

Access: an operator token (``stats`` grant) as ``Authorization: Bearer``, or a scraper
whose TCP peer address is in ``[metrics] allow``; anything else gets 401/403.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from config import MetricsSettings
from contracts.roles import STATS
from devices.hl7.listener import ListenerStats
from mediaserver.downstream import DownstreamStats
from mediaserver.setup_queue import SetupQueueStats
from mediaserver.stats import ProducerStats, RoomStats, ServerStats
from recorder.track_recorder import WriteCounters
from signaling import AUTHORITY, TokenError
from signaling.client_stats import ClientStreamStats, StreamReport

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
T = TypeVar("T")


@dataclass(frozen=True)
class Field(Generic[T]):
    """One metric read from one field of a snapshot record."""

    name: str
    help: str
    read: Callable[[T], int | float | None]  # None: no value for this record
    counter: bool = True


ROOM_FIELDS: tuple[Field[RoomStats], ...] = (
    Field("huizhen_room_participants", "Participants in the room (services included)",
          lambda r: r.participants, counter=False),
    Field("huizhen_room_publishers", "People in publisher seats", lambda r: r.publishers,
          counter=False),
    Field("huizhen_room_viewers", "People in viewer seats", lambda r: r.viewers,
          counter=False),
    Field("huizhen_room_transports", "Peer connections (publications and subscriptions)",
          lambda r: len(r.transports), counter=False),
    Field("huizhen_media_datagrams_dropped_unvalidated",
          "Datagrams from addresses that passed no ICE check", lambda r: r.dropped.unvalidated),
    Field("huizhen_media_datagrams_dropped_malformed",
          "Datagrams from the ICE pair that were too long or of no known kind",
          lambda r: r.dropped.malformed),
    Field("huizhen_media_datagrams_dropped_unauthenticated",
          "SRTP/SRTCP datagrams that failed authentication", lambda r: r.dropped.unauthenticated),
)
PRODUCER_FIELDS: tuple[Field[ProducerStats], ...] = (
    Field("huizhen_producer_packets_received", "RTP packets received from the publisher",
          lambda p: p.packets_received),
    Field("huizhen_producer_bytes_received", "RTP payload bytes received from the publisher",
          lambda p: p.octets_received),
    Field("huizhen_producer_keyframe_requests_sent", "PLIs sent to the publisher",
          lambda p: p.keyframe_requests_sent),
    Field("huizhen_producer_nacks_sent", "Sequence numbers NACKed to the publisher (retries too)",
          lambda p: p.nacks_sent),
    Field("huizhen_producer_retransmissions_received", "Retransmissions from the publisher",
          lambda p: p.retransmissions_received),
    Field("huizhen_producer_packets_recovered", "Lost packets recovered by retransmission",
          lambda p: p.packets_recovered),
    Field("huizhen_producer_packets_given_up", "Lost packets given up (too old or too many)",
          lambda p: p.packets_given_up),
    Field("huizhen_producer_nack_rtt_seconds", "Smoothed NACK-to-retransmission round trip",
          lambda p: (p.nack_rtt_ms or 0.0) / 1000, counter=False),
)
DOWNSTREAM_FIELDS: tuple[Field[DownstreamStats], ...] = (
    Field("huizhen_downstream_packets_sent",
          "RTP packets forwarded to a subscriber (or queued for the recorder)",
          lambda d: d.packets_sent),
    Field("huizhen_downstream_bytes_sent", "RTP payload bytes forwarded to a subscriber",
          lambda d: d.octets_sent),
    Field("huizhen_downstream_retransmissions",
          "Packets resent to answer the subscriber's NACKs", lambda d: d.retransmissions),
    Field("huizhen_downstream_nacks_received", "NACKed sequence numbers from the subscriber",
          lambda d: d.nacks_received),
    Field("huizhen_downstream_nacks_unanswerable",
          "Subscriber NACKs for packets not (yet) in the buffer", lambda d: d.nacks_unanswerable),
    Field("huizhen_downstream_keyframe_requests", "PLIs/FIRs received from the subscriber",
          lambda d: d.keyframe_requests),
    Field("huizhen_downstream_started", "1 once the downstream forwards (after a keyframe)",
          lambda d: int(d.started), counter=False),
    Field("huizhen_downstream_temporal_layer",
          "Highest VP8 temporal layer forwarded now (layer selection only)",
          lambda d: d.temporal_layer, counter=False),
    Field("huizhen_downstream_spatial_layer",
          "Simulcast stream forwarded now, 0 the smallest (simulcast only)",
          lambda d: d.spatial_layer, counter=False),
    Field("huizhen_downstream_target_bitrate_bps",
          "Bit rate the subscriber's downlink estimate allows (layer selection only)",
          lambda d: d.target_bitrate, counter=False),
    Field("huizhen_downstream_layer_switches", "Times the forwarded temporal layer changed",
          lambda d: d.layer_switches),
    Field("huizhen_downstream_copies_sent",
          "Second copies sent to a viewer whose link loses packets (retransmissions, base layer)",
          lambda d: d.copies_sent),
    Field("huizhen_downstream_nacks_held",
          "Subscriber NACKs not answered: asked again within 100 ms, or over the repair budget",
          lambda d: d.nacks_held),
)
CLIENT_FIELDS: tuple[Field[StreamReport], ...] = (
    Field("huizhen_client_frames_decoded", "Video frames the viewer's browser decoded",
          lambda r: r.frames_decoded),
    Field("huizhen_client_freezes", "Video freezes the viewer's browser counted",
          lambda r: r.freeze_count),
    Field("huizhen_client_freeze_seconds", "Seconds the viewer's video was frozen",
          lambda r: r.freeze_seconds),
    Field("huizhen_client_packets_lost", "Video packets the viewer's browser lost",
          lambda r: max(0, r.packets_lost)),
    Field("huizhen_client_jitter_seconds", "Video jitter at the viewer's browser",
          lambda r: r.jitter, counter=False),
    Field("huizhen_client_round_trip_seconds",
          "Round trip of the viewer's selected ICE candidate pair",
          lambda r: r.round_trip, counter=False),
)
HL7_FIELDS: tuple[Field[ListenerStats], ...] = (
    Field("huizhen_hl7_messages_received", "HL7 messages received", lambda s: s.messages),
    Field("huizhen_hl7_messages_acked", "HL7 messages acknowledged AA (stored, or resent)",
          lambda s: s.accepted),
    Field("huizhen_hl7_messages_duplicate", "HL7 resends acknowledged but not stored again",
          lambda s: s.duplicates),
    Field("huizhen_hl7_messages_rejected", "HL7 messages rejected (AR)", lambda s: s.rejected),
    Field("huizhen_hl7_messages_errored", "HL7 messages answered AE", lambda s: s.errors),
    Field("huizhen_hl7_samples_stored", "Vital-sign samples stored", lambda s: s.samples_stored),
    Field("huizhen_hl7_alarms_stored", "Alarms stored", lambda s: s.alarms_stored),
    Field("huizhen_hl7_connections_accepted", "MLLP connections accepted",
          lambda s: s.connections_accepted),
    Field("huizhen_hl7_connections_refused", "MLLP connections refused by the limits",
          lambda s: s.connections_refused),
)
SETUP_FIELDS: tuple[Field[SetupQueueStats], ...] = (
    Field("huizhen_setup_active", "Peer connections being set up now (ICE and DTLS)",
          lambda q: q.active, counter=False),
    Field("huizhen_setup_waiting", "Peer connection set-ups waiting for a slot now",
          lambda q: q.waiting, counter=False),
    Field("huizhen_setup_queued", "Peer connection set-ups that had to wait for a slot",
          lambda q: q.queued_total),
)
RECORDER_FIELDS: tuple[Field[WriteCounters], ...] = (
    Field("huizhen_recorder_frames_written", "Frames muxed into recordings",
          lambda w: w.frames),
    Field("huizhen_recorder_bytes_written", "Frame bytes muxed into recordings",
          lambda w: w.bytes),
    Field("huizhen_recorder_disk_free_bytes", "Free bytes on the recordings' disk",
          lambda w: w.disk_free_bytes, counter=False),
    Field("huizhen_recorder_stopped_for_space",
          "1 while recording is stopped because the recordings' disk is full",
          lambda w: None if w.stopped_for_space is None else int(w.stopped_for_space),
          counter=False),
)
ROOM_LABELS = ("room",)
PRODUCER_LABELS = ("room", "participant", "producer", "kind", "codec")
DOWNSTREAM_LABELS = ("room", "participant", "producer", "downstream", "type")
# participant: the viewer who reported; stream: the stream it receives.
CLIENT_LABELS = ("room", "participant", "stream")


class _Families(Generic[T]):
    """The metric families of one table, filled record by record."""

    def __init__(self, fields: tuple[Field[T], ...], labels: tuple[str, ...]) -> None:
        self._fields = fields
        self._metrics = [
            (CounterMetricFamily(f.name, f.help, labels=labels) if f.counter
             else GaugeMetricFamily(f.name, f.help, labels=labels))
            for f in fields]

    def add(self, record: T, labels: list[str]) -> None:
        for field, metric in zip(self._fields, self._metrics, strict=True):
            value = field.read(record)
            if value is not None:
                metric.add_metric(labels, value)

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._metrics)


class SnapshotCollector(Collector):
    """Reads the snapshots at scrape time; ``hl7`` returns None while no listener runs,
    ``recorder`` None when recording is off; ``clients`` the pages' latest reports."""

    def __init__(self, snapshot: Callable[[], ServerStats],
                 hl7: Callable[[], ListenerStats | None] = lambda: None,
                 recorder: Callable[[], WriteCounters | None] = lambda: None,
                 clients: Callable[[], Iterable[ClientStreamStats]] = tuple) -> None:
        self._snapshot = snapshot
        self._hl7 = hl7
        self._recorder = recorder
        self._clients = clients

    def collect(self) -> Iterable[Metric]:
        snapshot = self._snapshot()
        rooms = _Families(ROOM_FIELDS, ROOM_LABELS)
        producers = _Families(PRODUCER_FIELDS, PRODUCER_LABELS)
        downstreams = _Families(DOWNSTREAM_FIELDS, DOWNSTREAM_LABELS)
        layers = GaugeMetricFamily("huizhen_producer_layer_bitrate_bps",
                                   "Measured bit rate of each VP8 temporal layer of a publisher",
                                   labels=(*PRODUCER_LABELS, "layer"))
        for room in snapshot.rooms:
            rooms.add(room, [room.name])
            for producer in room.producers:
                labels = [room.name, producer.participant, producer.id, producer.kind,
                          producer.codec]
                producers.add(producer, labels)
                for layer, rate in enumerate(producer.layer_bitrates):
                    layers.add_metric([*labels, str(layer)], rate)
                for downstream in producer.downstreams:
                    downstreams.add(downstream, [room.name, producer.participant, producer.id,
                                                 downstream.id, downstream.kind])
        clients = _Families(CLIENT_FIELDS, CLIENT_LABELS)
        for client in self._clients():
            clients.add(client.report, [client.room, client.participant, client.report.stream])
        yield from rooms
        yield from producers
        yield layers
        yield from downstreams
        yield from clients
        yield from self._transports(snapshot)
        yield from _unlabelled(SETUP_FIELDS, snapshot.setup)
        yield from _unlabelled(HL7_FIELDS, self._hl7())
        yield from _unlabelled(RECORDER_FIELDS, self._recorder())

    @staticmethod
    def _transports(snapshot: ServerStats) -> Iterator[Metric]:
        family = GaugeMetricFamily("huizhen_transport_state",
                                   "Peer connections by owner, direction and state",
                                   labels=("room", "participant", "direction", "state"))
        for room in snapshot.rooms:
            counts: dict[tuple[str, str, str], int] = {}
            for t in room.transports:
                key = (t.participant, t.direction, t.state)
                counts[key] = counts.get(key, 0) + 1
            for (participant, direction, state), count in sorted(counts.items()):
                family.add_metric([room.name, participant, direction, state], count)
        yield family


def _unlabelled(fields: tuple[Field[T], ...], record: T | None) -> Iterator[Metric]:
    """Node-wide metrics of ``record``, none when there is no record."""
    if record is not None:
        families = _Families(fields, ())
        families.add(record, [])
        yield from families


def _allowed(remote: str | None, allow: tuple[Network, ...]) -> bool:
    if not remote or not allow:
        return False
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    return any(address in network for network in allow)


def check_scraper(request: web.Request, allow: tuple[Network, ...]) -> None:
    """Let in an allow-listed address or an operator token; raise 401/403 otherwise."""
    if _allowed(request.remote, allow):
        return
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.startswith("Bearer ") else ""
    challenge = {"WWW-Authenticate": 'Bearer realm="huizhen-metrics"'}
    try:
        grant = request.app[AUTHORITY].verify(token)
    except TokenError as exc:
        raise web.HTTPUnauthorized(text=exc.message, headers=challenge) from None
    if not grant.allows(STATS):
        raise web.HTTPForbidden(text="this token does not grant 'stats'")


def setup_metrics(app: web.Application, settings: MetricsSettings,
                  collector: SnapshotCollector) -> None:
    """``GET /metrics`` over a registry of this app's own (nothing when disabled)."""
    if not settings.enabled:
        return
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)

    async def metrics(request: web.Request) -> web.Response:
        # Text format 0.0.4: what every Prometheus version reads (names here are ASCII).
        check_scraper(request, settings.allow)
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4,
                                     "Cache-Control": "no-store"})

    app.router.add_get("/metrics", metrics)
