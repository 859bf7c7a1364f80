"""The aiortc transports: one RTCPeerConnection each, a publication (in) or a subscription (out).

Each publication and each subscription has its own peer connection, as in Galène:
adding or removing a stream never renegotiates anybody else's connection, and a
subscriber that goes away takes only its own connections with it.
``AiortcTransports`` is the default ``TransportFactory`` of a room.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters
from aiortc.sdp import candidate_from_sdp

from mediaserver.aiortc_hooks import (
    ForwardedTrack,
    MediaPortGuard,
    ReceiverTap,
    SenderPort,
    SimulcastStreams,
    keep_first_codec,
    read_rid_extensions,
    refuse_start_after_close,
    release_after_close,
    restrict_host_addresses,
)
from mediaserver.codecs import SimulcastSelector, TemporalLayerSelector
from mediaserver.consumer import Consumer
from mediaserver.datagrams import PortCounters
from mediaserver.errors import ClosedError, NegotiationError
from mediaserver.events import StreamInfo, TrackInfo
from mediaserver.layer_policy import MAX_TEMPORAL_LAYERS
from mediaserver.media_config import MediaConfig
from mediaserver.producer import Producer
from mediaserver.sdp_simulcast import SimulcastSection, answer_simulcast, simulcast_offer
from mediaserver.transport_factory import StateListener

logger = logging.getLogger(__name__)

MAX_SDP_BYTES = 32768
MAX_MEDIA_SECTIONS = 4

__all__ = ["AiortcTransports", "MediaConfig", "Publication", "Subscription", "Transport"]


class Transport:
    """Common life cycle: a peer connection, its state, and one idempotent close.

    Connection state changes (and a connect timeout, as ``closed``) are reported to
    ``on_state``; ``close()``, the owner's, is not.
    """

    direction = "none"

    def __init__(self, transport_id: str, participant_id: str, config: MediaConfig,
                 on_state: StateListener) -> None:
        self.id = transport_id
        self.participant_id = participant_id
        self.config = config
        self.closed = False
        self.state = "new"
        self._on_state = on_state
        # Datagrams this transport's media ports dropped (strangers, malformed, forged).
        self.port_counters = PortCounters()
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=list(config.ice_servers)))
        self.pc.on("connectionstatechange", self._connection_state_changed)
        self._loop = asyncio.get_running_loop()
        self._timeout = self._loop.call_later(config.connect_timeout, self._connect_timed_out)
        self._close_task: asyncio.Task[None] | None = None

    def _connection_state_changed(self) -> None:
        state = self.pc.connectionState
        if self.closed:
            return
        self.state = state
        if state == "connected":
            self._timeout.cancel()
        self._on_state(self, state)
        if state in ("failed", "closed"):
            self.close()

    def _connect_timed_out(self) -> None:
        if not self.closed and self.state != "connected":
            logger.info("[%s] transport %s did not connect in time", self.participant_id, self.id)
            self.close()
            self._on_state(self, "closed")

    async def _apply_local(self, description: RTCSessionDescription) -> str:
        restrict_host_addresses(self.pc, self.config.ice_addresses)
        MediaPortGuard(self.pc, self.port_counters, f"{self.participant_id} {self.id}")
        refuse_start_after_close(self.pc)
        await self.pc.setLocalDescription(description)
        return str(self.pc.localDescription.sdp)

    async def add_remote_candidate(self, candidate: str, mid: str | None) -> None:
        """A candidate the remote peer trickled (the value of an ``a=candidate`` line) for
        the section ``mid`` (None: the first). ValueError when it does not parse."""
        if self.closed:
            raise ClosedError(f"transport {self.id} is closed")
        parsed = candidate_from_sdp(candidate)
        parsed.sdpMid = mid
        parsed.sdpMLineIndex = 0 if mid is None else None
        await self.pc.addIceCandidate(parsed)

    def close(self) -> None:
        """Close once: media objects first (synchronously), then the peer connection."""
        if self.closed:
            return
        self.closed = True
        self._timeout.cancel()
        self._close_media()
        self.state = "closed"
        self._close_task = self._loop.create_task(self._close_pc())

    async def _close_pc(self) -> None:
        try:
            await self.pc.close()
        except Exception as exc:  # aiortc may fail to close a half-negotiated connection
            logger.debug("[%s] closing transport %s: %r", self.participant_id, self.id, exc)

    def pc_closed(self) -> bool:
        return self._close_task is not None and self._close_task.done()

    async def wait_closed(self) -> None:
        """Until the peer connection has closed and no late ICE consent task holds it."""
        if self._close_task is not None:
            await asyncio.shield(self._close_task)
            await release_after_close(self.pc)

    def _close_media(self) -> None:
        raise NotImplementedError


def _check_sdp(sdp: object, kind: str) -> str:
    if not isinstance(sdp, str) or not sdp.strip():
        raise NegotiationError(f"the {kind} must be a non-empty SDP string")
    if len(sdp) > MAX_SDP_BYTES:
        raise NegotiationError(f"the {kind} is larger than {MAX_SDP_BYTES} bytes")
    if not sdp.lstrip().startswith("v=0"):
        raise NegotiationError(f"the {kind} is not SDP (it must start with v=0)")
    sections = sum(1 for line in sdp.splitlines() if line.startswith("m="))
    if sections > MAX_MEDIA_SECTIONS:
        raise NegotiationError(f"the {kind} has more than {MAX_MEDIA_SECTIONS} media sections")
    return sdp


class Publication(Transport):
    """A participant's published tracks: one producer per incoming audio/video track."""

    direction = "publish"

    def __init__(self, transport_id: str, participant_id: str, config: MediaConfig,
                 on_state: StateListener) -> None:
        super().__init__(transport_id, participant_id, config, on_state)
        self.producers: list[Producer] = []

    async def negotiate(self, offer_sdp: str) -> str:
        """Apply the publisher's offer and return the answer SDP."""
        if self.closed:
            raise ClosedError(f"publication {self.id} is closed")
        sdp = _check_sdp(offer_sdp, "offer")
        simulcast = simulcast_offer(sdp) if self.config.simulcast else {}
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:  # aiortc raises ValueError, OperationError, ...
            logger.info("[%s] rejected publish offer: %s", self.participant_id, type(exc).__name__)
            raise NegotiationError(
                "the offer could not be applied (malformed or unsupported SDP)") from None
        transceivers = [t for t in self.pc.getTransceivers() if t.receiver.track is not None]
        if not transceivers:
            raise NegotiationError("the offer sends no audio or video track")
        if len(transceivers) > MAX_MEDIA_SECTIONS:
            raise NegotiationError(f"at most {MAX_MEDIA_SECTIONS} tracks per publication")
        layered: list[tuple[RTCRtpReceiver, SimulcastSection]] = []
        for index, transceiver in enumerate(transceivers):
            codec = keep_first_codec(transceiver)
            if codec is None:
                raise NegotiationError(f"no supported codec for the {transceiver.kind} track")
            section = simulcast.get(transceiver.mid or "") if transceiver.kind == "video" else None
            if section is not None and len(section.rids) > 1:
                layered.append((transceiver.receiver, section))
            else:
                section = None
            self.producers.append(self._producer(f"{self.id}-{index}", transceiver.kind, codec,
                                                 transceiver.receiver, section))
        try:
            answer = await self.pc.createAnswer()
            sdp = await self._apply_local(answer)
            for receiver, section in layered:
                read_rid_extensions(receiver, section.rid_extension, section.repaired_extension)
        except Exception as exc:  # an offer aiortc parsed but cannot answer
            logger.info("[%s] cannot answer publish offer: %s", self.participant_id,
                        type(exc).__name__)
            raise NegotiationError("the offer could not be answered (inconsistent SDP)") from None
        return answer_simulcast(sdp, {s.mid: s for _, s in layered})

    def _producer(self, producer_id: str, kind: str, codec: RTCRtpCodecParameters,
                  receiver: RTCRtpReceiver, simulcast: SimulcastSection | None = None
                  ) -> Producer:
        streams = SimulcastStreams(simulcast.rids) if simulcast is not None else None
        return Producer(producer_id, kind, codec.name, dict(codec.parameters),
                        lambda producer: self._tap(receiver, producer) if streams is None
                        else self._tap(receiver, producer, streams),
                        self.config.keyframe_interval,
                        spatial_layers=len(streams.rids) if streams is not None else 0)

    def _tap(self, receiver: RTCRtpReceiver, producer: Producer,
             simulcast: SimulcastStreams | None = None) -> ReceiverTap:
        """The packet source of one producer (instrumentation may wrap it in a subclass;
        ``simulcast`` is passed only for a simulcast producer)."""
        return ReceiverTap(receiver, producer.on_packet, producer.on_sender_report,
                           self.port_counters, on_keyframe_needed=producer.request_keyframe,
                           recovery=producer.recovery, simulcast=simulcast)

    def info(self) -> StreamInfo:
        return StreamInfo(
            id=self.id,
            participant_id=self.participant_id,
            tracks=tuple(TrackInfo(p.id, p.kind, p.codec_name) for p in self.producers),
            state=self.state,
        )

    def _close_media(self) -> None:
        for producer in self.producers:
            producer.close()


def _capabilities_for(producer_codec_name: str, kind: str, parameters: dict[str, object]
                      ) -> list[RTCRtpCodecCapability]:
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [
        c for c in capabilities
        if c.name.lower() == producer_codec_name.lower() and c.parameters == parameters
    ][:1]
    if not chosen:
        chosen = [c for c in capabilities if c.name.lower() == producer_codec_name.lower()][:1]
    rtx = [c for c in capabilities if c.name.lower() == "rtx"][:1]
    return chosen + rtx


class Subscription(Transport):
    """One subscriber's copy of one publication: a consumer per producer."""

    direction = "subscribe"

    def __init__(self, transport_id: str, participant_id: str, stream_id: str,
                 config: MediaConfig, on_state: StateListener) -> None:
        super().__init__(transport_id, participant_id, config, on_state)
        self.stream_id = stream_id
        self.consumers: list[Consumer] = []
        self._offered = False
        self._answered = False

    async def create_offer(self, producers: Sequence[Producer]) -> str:
        """Create the server's offer carrying one sendonly track per producer."""
        if self.closed:
            raise ClosedError(f"subscription {self.id} is closed")
        for producer in producers:
            self._attach(producer, self._sender_transceiver(producer))
        offer = await self.pc.createOffer()
        sdp = await self._apply_local(offer)
        self._offered = True
        return sdp

    async def answer_offer(self, producers: Sequence[Producer], offer_sdp: object) -> str:
        """Answer the subscriber's offer (WHEP: the player offers, recvonly): each of the
        offer's audio/video sections gets the next producer of its kind, in the producer's
        codec; sections left over are answered inactive."""
        if self.closed:
            raise ClosedError(f"subscription {self.id} is closed")
        if self._offered:
            raise NegotiationError("this subscription is already negotiated")
        self._offered = True
        sdp = _check_sdp(offer_sdp, "offer")
        # Transceivers made before the offer is applied take its sections of their kind
        # (aiortc matches them in order) and keep only their producer's codec.
        pending = [(producer, self._sender_transceiver(producer)) for producer in producers]
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:
            logger.info("[%s] rejected subscribe offer: %s", self.participant_id,
                        type(exc).__name__)
            raise NegotiationError("the offer could not be applied (malformed SDP, or it "
                                   "does not receive the stream's codecs)") from None
        for producer, transceiver in pending:
            if transceiver.mid is None:  # no section of the offer took this track
                if transceiver.sender.track is not None:
                    transceiver.sender.track.stop()
                continue
            self._attach(producer, transceiver)
        if not self.consumers:
            raise NegotiationError("the offer receives none of the stream's tracks")
        try:
            answer = await self.pc.createAnswer()
            sdp = await self._apply_local(answer)
        except Exception as exc:
            logger.info("[%s] cannot answer subscribe offer: %s", self.participant_id,
                        type(exc).__name__)
            raise NegotiationError("the offer could not be answered (inconsistent SDP)") from None
        self._answered = True
        return sdp

    def _sender_transceiver(self, producer: Producer) -> RTCRtpTransceiver:
        track: MediaStreamTrack = ForwardedTrack(producer.kind, producer.id)
        transceiver = self.pc.addTransceiver(track, direction="sendonly")
        transceiver.setCodecPreferences(
            _capabilities_for(producer.codec_name, producer.kind, producer.codec_parameters)
        )
        return transceiver

    def _attach(self, producer: Producer, transceiver: RTCRtpTransceiver) -> None:
        consumer = self._consumer(f"{self.id}-{len(self.consumers)}", producer,
                                  SenderPort(transceiver.sender))
        producer.add_downstream(consumer)
        self.consumers.append(consumer)

    def _consumer(self, consumer_id: str, producer: Producer, port: SenderPort) -> Consumer:
        """The consumer of one producer (instrumentation may wrap it in a subclass)."""
        selector = layer_selector(producer, self.config)
        return Consumer(consumer_id, producer.kind, producer, producer.templates, port,
                        self.config.retransmission_buffer, selector,
                        producer.layer_rates if selector is not None else None,
                        producer if isinstance(selector, SimulcastSelector) else None)

    async def accept_answer(self, answer_sdp: object) -> None:
        if self.closed:
            raise ClosedError(f"subscription {self.id} is closed")
        if not self._offered or self._answered:
            raise NegotiationError("no offer is waiting for an answer on this subscription")
        sdp = _check_sdp(answer_sdp, "answer")
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except Exception as exc:
            logger.info("[%s] rejected subscribe answer: %s", self.participant_id,
                        type(exc).__name__)
            raise NegotiationError(
                "the answer could not be applied (malformed or unsupported SDP)") from None
        self._answered = True

    def _close_media(self) -> None:
        for consumer in self.consumers:
            consumer.close()
        for transceiver in self.pc.getTransceivers():
            track = transceiver.sender.track
            if track is not None:
                track.stop()


def layer_selector(producer: Producer, config: MediaConfig
                   ) -> TemporalLayerSelector | SimulcastSelector | None:
    """A temporal layer selector for VP8 video (all layers until the viewer's downlink
    says otherwise), a simulcast selector (stream and temporal layers) for a simulcast
    producer, or None: audio and other codecs are forwarded whole. Without layer
    selection a simulcast producer's viewers get its primary (highest) stream."""
    if not config.layer_selection or producer.kind != "video":
        return None
    top = MAX_TEMPORAL_LAYERS - 1
    if producer.spatial_layers > 1:
        return SimulcastSelector(producer.primary_layer, top)
    if producer.codec_name.upper() != "VP8":
        return None
    return TemporalLayerSelector(top, current=top)


class AiortcTransports:
    """The default ``TransportFactory``: aiortc peer connections built with ``config``."""

    def __init__(self, config: MediaConfig) -> None:
        self.config = config

    def publication(self, transport_id: str, participant_id: str,
                    on_state: StateListener) -> Publication:
        return Publication(transport_id, participant_id, self.config, on_state)

    def subscription(self, transport_id: str, participant_id: str, stream_id: str,
                     on_state: StateListener) -> Subscription:
        return Subscription(transport_id, participant_id, stream_id, self.config, on_state)
