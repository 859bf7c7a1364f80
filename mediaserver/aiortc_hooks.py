"""Every use of aiortc's (and aioice's) private internals, in one place.

aiortc has no public API for forwarding RTP packets (its maintainer's view: it is
not built for an SFU). The forwarding path therefore hooks into a handful of
private methods and name-mangled attributes. All of them are listed in
``RECEIVER_HOOKS``/``SENDER_HOOKS``/... and checked with ``hasattr`` before use:
assigning to a renamed private attribute would silently create a new one and the
hook would stop working. ``tests/test_aiortc_hooks.py`` exercises every hook, so an
aiortc upgrade that moves one fails loudly. pyproject.toml pins aiortc exactly.

What is hooked:

* publisher side (``RTCRtpReceiver``): ``_handle_rtp_packet`` is replaced by a
  packet tap that keeps aiortc's RTCP statistics, REMB and RTX unwrapping, but
  skips depayloading, the jitter buffer and the decoder thread's queue, so no
  decoder is ever created. aiortc's ``NackGenerator`` (one NACK per gap, never
  repeated) is replaced by our ``NackScheduler``, which retries; its presence
  still says whether aiortc would NACK this kind (video) at all.
  ``_handle_rtcp_packet`` is wrapped to see the publisher's sender reports;
  ``_send_rtcp_pli`` asks for a keyframe, ``_send_rtcp_nack`` for lost packets.
  Simulcast: aiortc routes every SSRC of a section to its one receiver (by payload
  type) but never reads rids; ``read_rid_extensions`` configures the DTLS
  transport's ``_rtp_header_extensions_map`` with the rid extension ids, the tap
  demultiplexes streams by SSRC (``SimulcastStreams``) and adds each stream's RTX
  SSRC to ``_RTCRtpReceiver__rtx_ssrc`` (no ``a=ssrc-group`` names them).
* subscriber side (``RTCRtpSender``): the track never yields a frame, so aiortc
  never creates an encoder; ``send`` is wrapped to learn the negotiated payload
  types and extension IDs; ``_retransmit`` and ``_send_keyframe`` (NACK, PLI/FIR
  from the subscriber) are redirected to the consumer; the sender-report counters
  are written so aiortc's own RTCP loop reports the forwarded stream.
* transport (``RTCDtlsTransport`` / aioice ``Connection``): SRTP ``protect`` and
  the nominated candidate pair's datagram transport, to send a forwarded packet
  with one synchronous call instead of three awaited coroutines.
* media port guard (``MediaPortGuard``): media ports are public, and aiortc ends a
  whole transport on one bad datagram (``RTCDtlsTransport.__run`` lets anything
  ``_recv_next`` raises escape, e.g. pylibsrtp's ``ValueError`` for a datagram over
  1,500 bytes), while aioice hands every non-STUN datagram to DTLS whatever its
  source. The guard wraps, per instance: each aioice ``StunProtocol``'s
  ``datagram_received`` (drop non-STUN datagrams unless they come from the selected
  pair's remote address or another address that completed a check with our ICE
  credentials)
  and ``send_stun`` (learn the addresses whose checks carried our credentials),
  ``RTCIceTransport._recv`` (drop what has no acceptable shape),
  ``RTCDtlsTransport._setup_srtp`` (count SRTP authentication failures),
  ``_handle_rtp_data`` / ``_handle_rtcp_data`` (count what does not parse) and
  ``_recv_next`` (nothing it raises ends the transport).
* ICE consent race (aioice ``Connection``): ``_query_consent_task`` started by a
  ``connect()`` that resumed after the peer connection closed is cancelled
  (``release_after_close``), so closed sessions are freed.
* media start race (per instance: ``RTCIceTransport.start``,
  ``RTCDtlsTransport.start``, ``RTCRtpSender.send``, ``RTCRtpReceiver.receive``):
  once the peer connection is closing, aiortc's connect task starts nothing more,
  so a DTLS handshake that completes while ``close()`` is under way no longer starts
  RTP/RTCP tasks on a sender or receiver already stopped
  (``refuse_start_after_close``).
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import logging
import struct
import time
import weakref
from collections.abc import Callable
from typing import Any

import pylibsrtp
from aioice import stun
from aioice.ice import CandidatePair
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs import is_rtx
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
)
from aiortc.rtp import unwrap_rtx as aiortc_unwrap_rtx

from mediaserver.datagrams import PortCounters, is_stun, media_datagram_problem
from mediaserver.nack_scheduler import (
    Arrival,
    NackScheduler,
    NackSettings,
    RecoveryCounters,
    nack_batches,
)
from mediaserver.receiver_loss import ReceiverLoss
from mediaserver.send_port import SendParameters, SendPortListener

logger = logging.getLogger(__name__)

RECEIVER_METHODS = ("_handle_rtp_packet", "_handle_rtcp_packet", "_send_rtcp_pli",
                    "_send_rtcp_nack", "_send_rtcp")
RECEIVER_ATTRIBUTES = (
    "_RTCRtpReceiver__codecs",
    "_RTCRtpReceiver__rtx_ssrc",
    "_RTCRtpReceiver__remote_streams",
    "_RTCRtpReceiver__nack_generator",
    "_RTCRtpReceiver__remote_bitrate_estimator",
    "_RTCRtpReceiver__rtcp_ssrc",
)
SENDER_METHODS = ("send", "_retransmit", "_send_keyframe", "_handle_rtcp_packet")
SENDER_ATTRIBUTES = (
    "_ssrc",
    "_rtx_ssrc",
    "_RTCRtpSender__ntp_timestamp",
    "_RTCRtpSender__rtp_timestamp",
    "_RTCRtpSender__packet_count",
    "_RTCRtpSender__octet_count",
)
DTLS_ATTRIBUTES = ("_tx_srtp", "transport", "state")
ICE_CONNECTION_ATTRIBUTES = ("_nominated", "_queue", "get_component_candidates",
                             "_local_candidates", "_local_candidates_end")
# What MediaPortGuard wraps or reads (see the module docstring).
GUARD_DTLS_ATTRIBUTES = ("_recv_next", "_setup_srtp", "_handle_rtp_data", "_handle_rtcp_data",
                         "_rtp_router", "_rtp_header_extensions_map", "_rx_srtp", "transport",
                         "_data_receiver")
GUARD_ICE_TRANSPORT_ATTRIBUTES = ("_recv", "_connection")
GUARD_CONNECTION_ATTRIBUTES = ("_protocols", "_nominated", "_check_list", "gather_candidates",
                               "_local_candidates_end", "data_received")
GUARD_PROTOCOL_ATTRIBUTES = ("datagram_received", "send_stun", "local_candidate", "receiver")
GUARD_SRTP_METHODS = ("unprotect", "unprotect_rtcp")


class AiortcHookError(RuntimeError):
    """An aiortc internal that the forwarder relies on is missing: aiortc changed."""


def _require(obj: object, names: tuple[str, ...], what: str) -> None:
    missing = [name for name in names if not hasattr(obj, name)]
    if missing:
        raise AiortcHookError(
            f"aiortc internals changed: {what} lacks {', '.join(missing)}; "
            "mediaserver/aiortc_hooks.py must be updated for this aiortc version"
        )


def check_receiver(receiver: RTCRtpReceiver) -> None:
    _require(receiver, RECEIVER_METHODS + RECEIVER_ATTRIBUTES, "RTCRtpReceiver")


def check_sender(sender: RTCRtpSender) -> None:
    _require(sender, SENDER_METHODS + SENDER_ATTRIBUTES, "RTCRtpSender")


# --------------------------------------------------------------------------- publisher side

# The packet (and, for a simulcast tap, its spatial layer as a second argument).
PacketCallback = Callable[..., None]
# ssrc, ntp timestamp, rtp timestamp (and, for a simulcast tap, the spatial layer)
SenderReportCallback = Callable[..., None]


class SimulcastStreams:
    """Which SSRC carries which simulcast stream, learnt from the rid header extensions.

    Browsers announce no SSRCs for simulcast: each stream's first packets carry its
    rid (``rtp-stream-id``), its RTX packets the rid they repair
    (``repaired-rtp-stream-id``); later packets may carry neither. Pure bookkeeping:
    ``layer_of`` for a media SSRC, ``repaired`` for an RTX one. A stream that moves to
    a new SSRC (the publisher restarted it) replaces the old one.
    """

    def __init__(self, rids: tuple[str, ...]) -> None:
        self.rids = rids
        self.media: dict[int, int] = {}  # media SSRC -> layer
        self.ssrc_of: dict[int, int] = {}  # layer -> media SSRC
        self.rtx: dict[int, int] = {}  # RTX SSRC -> layer
        self.unknown = 0  # packets of an SSRC no rid named (yet): dropped
        self._estimate: int | None = None

    # A REMB more than the receive-side estimate while it is not falling (see ``remb``).
    REMB_HEADROOM = 1.3

    def remb(self, estimate: int) -> int:
        """The REMB to send the publisher for the receive-side ``estimate``.

        aiortc's estimator (like libwebrtc's receive side) never goes beyond 1.5 times
        the incoming rate, but a simulcast sender turns its next stream on only when
        its estimate covers that stream's whole minimum rate on top: measured with
        Chromium's q/h/f at 640x480, the estimate stayed at 840 kbit/s with q and h
        arriving and f never started. While the estimate is not falling (no delay
        build-up seen) the REMB leaves ``REMB_HEADROOM`` on top; a falling estimate
        (over-use) is passed on as is, and the sender's own loss-based control still
        bounds what it sends.
        """
        rising = self._estimate is None or estimate >= self._estimate
        self._estimate = estimate
        return int(estimate * self.REMB_HEADROOM) if rising else estimate

    def layer_of(self, ssrc: int, rid: str | None) -> int | None:
        layer = self.media.get(ssrc)
        if layer is not None or rid is None:
            return layer
        try:
            layer = self.rids.index(rid)
        except ValueError:
            return None
        old = self.ssrc_of.get(layer)
        if old is not None:
            del self.media[old]
        self.media[ssrc] = layer
        self.ssrc_of[layer] = ssrc
        return layer

    def repaired(self, rtx_ssrc: int, repaired_rid: str | None) -> int | None:
        """The media SSRC an RTX SSRC repairs (None: not known yet)."""
        layer = self.rtx.get(rtx_ssrc)
        if layer is None and repaired_rid is not None and repaired_rid in self.rids:
            layer = self.rtx[rtx_ssrc] = self.rids.index(repaired_rid)
        return None if layer is None else self.ssrc_of.get(layer)


class ReceiverTap:
    """Taps an ``RTCRtpReceiver``'s RTP packets without decoding them.

    For video, missing packets are NACKed by a ``NackScheduler``, again and again
    until they arrive or are given up: a task wakes when the next NACK is due
    (never more often than every ``NACK_TICK``) and ends when nothing is missing.
    When a hole is given up, ``on_keyframe_needed`` is called (the producer's
    throttled keyframe request).
    """

    NACK_TICK = 0.010

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        on_packet: PacketCallback,
        on_sender_report: SenderReportCallback,
        counters: PortCounters | None = None,
        *,
        on_keyframe_needed: Callable[..., None] | None = None,
        recovery: RecoveryCounters | None = None,
        nack_settings: NackSettings | None = None,
        simulcast: SimulcastStreams | None = None,
    ) -> None:
        check_receiver(receiver)
        # Simulcast: packets are demultiplexed into streams by SSRC (one receiver takes
        # every SSRC of the section); each stream has its own NACKs, PLIs and reports.
        self.simulcast = simulcast
        # Private members are reached through an untyped alias: they are not aiortc's API.
        private: Any = receiver
        self._receiver: Any = receiver
        self._on_packet = on_packet
        self._on_sender_report = on_sender_report
        self._counters = counters or PortCounters()
        self._codecs: dict[int, RTCRtpCodecParameters] = private._RTCRtpReceiver__codecs
        self._rtx_ssrc: dict[int, int] = private._RTCRtpReceiver__rtx_ssrc
        self._streams: dict[int, Any] = private._RTCRtpReceiver__remote_streams
        self._estimator = private._RTCRtpReceiver__remote_bitrate_estimator
        self._original_rtcp = receiver._handle_rtcp_packet
        private._handle_rtp_packet = self._handle_rtp_packet
        private._handle_rtcp_packet = self._handle_rtcp_packet
        self.last_ssrc: int | None = None
        # Upstream loss recovery (video: where aiortc itself would NACK).
        self.recovery = recovery if recovery is not None else RecoveryCounters()
        self._nack_settings = nack_settings or NackSettings()
        # One NACK scheduler per media SSRC (each stream has its own sequence numbers).
        self._nacks: dict[int, NackScheduler] = {}
        self._nacking = private._RTCRtpReceiver__nack_generator is not None
        self._nack_task: asyncio.Task[None] | None = None
        self._on_keyframe_needed = on_keyframe_needed or self._request_keyframe_soon
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def codec(self) -> RTCRtpCodecParameters | None:
        """The negotiated media codec (the first non-RTX one)."""
        for codec in self._codecs.values():
            if not is_rtx(codec):
                return codec
        return None

    async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        receiver = self._receiver
        if not receiver._enabled:
            return
        rtcp_ssrc = receiver._RTCRtpReceiver__rtcp_ssrc
        if self._estimator is not None and packet.extensions.abs_send_time is not None:
            remb = self._estimator.add(
                abs_send_time=packet.extensions.abs_send_time,
                arrival_time_ms=arrival_time_ms,
                payload_size=len(packet.payload) + packet.padding_size,
                ssrc=packet.ssrc,
            )
            if remb is not None and self.simulcast is not None:
                remb = (self.simulcast.remb(remb[0]), remb[1])
            if rtcp_ssrc is not None and remb is not None:
                await receiver._send_rtcp(
                    RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0,
                                   fci=pack_remb_fci(*remb))
                )
        codec = self._codecs.get(packet.payload_type)
        if codec is None:
            return
        simulcast = self.simulcast
        layer = 0
        if simulcast is not None:
            if is_rtx(codec):  # its layer is the repaired stream's, read once unwrapped
                media_ssrc = simulcast.repaired(packet.ssrc,
                                                packet.extensions.repaired_rtp_stream_id)
                if media_ssrc is not None:
                    self._rtx_ssrc[packet.ssrc] = media_ssrc
            else:
                found = simulcast.layer_of(packet.ssrc, packet.extensions.rtp_stream_id)
                if found is None:
                    simulcast.unknown += 1
                    return
                layer = found
        stats = self._streams.get(packet.ssrc)
        if stats is None:
            stats = self._new_stream_statistics(codec.clockRate)
            self._streams[packet.ssrc] = stats
        stats.add(packet)
        if is_rtx(codec):
            original_ssrc = self._rtx_ssrc.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if len(packet.payload) < 2:
                # No original sequence number: aiortc's unwrap would raise (its issue #129).
                # An empty payload with padding is a bandwidth probe (Chromium sends them).
                if len(packet.payload) == 1 or not packet.padding_size:
                    self._counters.malformed += 1
                return
            if original_ssrc is None and simulcast is None:
                original_ssrc = self._lone_media_ssrc(packet.ssrc)
            if original_ssrc is None or apt not in self._codecs:
                return
            packet = aiortc_unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
            if simulcast is not None:
                layer = simulcast.media.get(original_ssrc, 0)
            self.recovery.retransmissions_received += 1
            if self._nacking and self._track_loss(packet, True) is Arrival.DUPLICATE:
                # Already forwarded (an answer to a second NACK), too late, or a sender's
                # bandwidth probe: every viewer would receive it twice for nothing.
                self.recovery.retransmissions_unused += 1
                return
            # A recovered packet counts as received in the media stream's receiver
            # reports, as libwebrtc counts it: the sender's loss-based bandwidth estimate
            # must see the loss left after retransmission, not the raw link loss (2 %
            # raw loss would otherwise hold a Chromium publisher at its start bitrate).
            media_stats = self._streams.get(packet.ssrc)
            if media_stats is not None:
                media_stats.add(packet)
        elif self._nacking:
            self._track_loss(packet, retransmission=False)
        self.last_ssrc = packet.ssrc
        if simulcast is not None:
            self._on_packet(packet, layer)
        else:
            self._on_packet(packet)

    # ------------------------------------------------------------- upstream NACKs

    def _track_loss(self, packet: RtpPacket, retransmission: bool) -> Arrival:
        nacks = self._nacks.get(packet.ssrc)
        if nacks is None:  # a new stream: start afresh
            if self.simulcast is None:
                self._nacks.clear()  # one stream at a time: its new SSRC replaces it
            else:  # keep the streams that are still current
                for ssrc in [s for s in self._nacks if s not in self.simulcast.media]:
                    del self._nacks[ssrc]
            nacks = self._nacks[packet.ssrc] = NackScheduler(self._nack_settings, self.recovery)
        now = asyncio.get_running_loop().time()
        arrival = nacks.received(packet.sequence_number, now, retransmission)
        if arrival is Arrival.RESET:
            self._keyframe_needed(packet.ssrc)
        elif self._nack_task is None and nacks.next_wakeup() is not None:
            self._nack_task = asyncio.get_running_loop().create_task(self._run_nacks())
        return arrival

    async def _run_nacks(self) -> None:
        """NACK what is due, sleep until the next is due; end when nothing is missing."""
        loop = asyncio.get_running_loop()
        receiver = self._receiver
        try:
            while self._nacks and not self._stopped():
                wakeups = [w for n in self._nacks.values() if (w := n.next_wakeup()) is not None]
                if not wakeups:
                    return
                delay = min(wakeups) - loop.time()
                if delay > 0:
                    await asyncio.sleep(max(delay, self.NACK_TICK))
                    continue
                for ssrc, nacks in list(self._nacks.items()):
                    due = nacks.poll(loop.time())
                    for batch in nack_batches(due.sequence_numbers):
                        await receiver._send_rtcp_nack(ssrc, batch)
                    if due.keyframe_needed:
                        self._keyframe_needed(ssrc)
        finally:
            self._nack_task = None

    def _stopped(self) -> bool:
        receiver = self._receiver
        transport = receiver.transport
        return not receiver._enabled or transport is None or transport.state == "closed"

    def _keyframe_needed(self, ssrc: int) -> None:
        """A hole was given up on stream ``ssrc``: its decoder needs a keyframe."""
        simulcast = self.simulcast
        if simulcast is None:
            self._on_keyframe_needed()
        elif ssrc in simulcast.media:
            self._on_keyframe_needed(simulcast.media[ssrc])

    def _request_keyframe_soon(self, layer: int | None = None) -> None:
        task = asyncio.get_running_loop().create_task(self.request_keyframe(layer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _lone_media_ssrc(self, rtx_ssrc: int) -> int | None:
        """The media stream an RTX stream repairs when the offer did not say (no
        ``a=ssrc-group:FID``, as in Chromium's offers with rids): with one media stream on
        this receiver, that one (remembered). Otherwise retransmissions would be dropped
        and every lost packet cost a keyframe."""
        media = [ssrc for ssrc in self._streams
                 if ssrc != rtx_ssrc and ssrc not in self._rtx_ssrc]
        if self.last_ssrc is None or media != [self.last_ssrc]:
            return None
        self._rtx_ssrc[rtx_ssrc] = self.last_ssrc
        return self.last_ssrc

    def _new_stream_statistics(self, clock_rate: int) -> Any:
        from aiortc.rtcrtpreceiver import StreamStatistics

        return StreamStatistics(clock_rate)

    async def _handle_rtcp_packet(self, packet: Any) -> None:
        await self._original_rtcp(packet)
        if isinstance(packet, RtcpSrPacket):
            info = packet.sender_info
            simulcast = self.simulcast
            if simulcast is None:
                self._on_sender_report(packet.ssrc, info.ntp_timestamp, info.rtp_timestamp)
            elif packet.ssrc in simulcast.media:
                self._on_sender_report(packet.ssrc, info.ntp_timestamp, info.rtp_timestamp,
                                       simulcast.media[packet.ssrc])

    async def request_keyframe(self, layer: int | None = None) -> None:
        """Send a PLI to the publisher: for the stream (simulcast: of ``layer``)."""
        ssrc = self.last_ssrc
        if self.simulcast is not None and layer is not None:
            ssrc = self.simulcast.ssrc_of.get(layer)
        if ssrc is not None:
            await self._receiver._send_rtcp_pli(ssrc)


# --------------------------------------------------------------------------- subscriber side


class ForwardedTrack(MediaStreamTrack):
    """The track an SFU sender carries: it never yields a frame.

    aiortc's sender creates its encoder only after the first ``recv()`` returns,
    so a track that never returns keeps every encoder uncreated; packets are sent
    by the consumer through ``SenderPort`` (``RawRtpSink``) instead.
    """

    def __init__(self, kind: str, track_id: str) -> None:
        super().__init__()
        self.kind = kind
        self._id = track_id
        self._never: asyncio.Future[None] | None = None

    async def recv(self) -> Any:
        if self._never is None:
            self._never = asyncio.get_running_loop().create_future()
        await self._never
        raise RuntimeError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        super().stop()
        if self._never is not None and not self._never.done():
            self._never.cancel()


class SenderHooks:
    """Redirects an ``RTCRtpSender``'s NACK/PLI handling and SR counters to a consumer,
    and reports what the subscriber says about its downlink: the REMB bit rate that
    covers the sender's SSRC and the fraction lost of receiver reports about it."""

    def __init__(
        self,
        sender: RTCRtpSender,
        on_negotiated: Callable[[SendParameters], None],
        on_nack: Callable[[int], None],
        on_keyframe_request: Callable[[], None],
        on_remb: Callable[[int], None] | None = None,
        on_loss: Callable[[ReceiverLoss], None] | None = None,
    ) -> None:
        check_sender(sender)
        self._sender: Any = sender
        private: Any = sender
        original_send = sender.send
        original_rtcp = sender._handle_rtcp_packet

        async def handle_rtcp_packet(packet: Any) -> None:
            await original_rtcp(packet)
            ssrc = private._ssrc
            if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)) and on_loss is not None:
                for report in packet.reports:
                    if report.ssrc == ssrc:
                        on_loss(ReceiverLoss(report.fraction_lost / 256, report.packets_lost,
                                             report.highest_sequence))
            elif (isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP
                  and on_remb is not None):
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except ValueError:
                    return
                if ssrc in ssrcs:
                    on_remb(bitrate)

        async def send(parameters: RTCRtpSendParameters) -> None:
            await original_send(parameters)
            on_negotiated(_negotiated(sender, parameters))

        async def retransmit(sequence_number: int) -> None:
            on_nack(sequence_number)

        private.send = send
        private._retransmit = retransmit
        private._send_keyframe = on_keyframe_request
        private._handle_rtcp_packet = handle_rtcp_packet

    def set_report(self, ntp_timestamp: int, rtp_timestamp: int, packets: int, octets: int) -> None:
        """Values aiortc's RTCP loop puts in its next sender report."""
        sender = self._sender
        sender._RTCRtpSender__ntp_timestamp = ntp_timestamp
        sender._RTCRtpSender__rtp_timestamp = rtp_timestamp
        sender._RTCRtpSender__packet_count = packets
        sender._RTCRtpSender__octet_count = octets

    @property
    def transport(self) -> Any:
        return self._sender.transport


def _negotiated(sender: Any, parameters: RTCRtpSendParameters) -> SendParameters:
    codec = parameters.codecs[0]
    if codec.payloadType is None:
        raise AiortcHookError("negotiated codec has no payload type")
    rtx_pt = None
    for candidate in parameters.codecs:
        if is_rtx(candidate) and candidate.parameters.get("apt") == codec.payloadType:
            rtx_pt = candidate.payloadType
            break
    return SendParameters(
        payload_type=int(codec.payloadType),
        ssrc=sender._ssrc,
        rtx_payload_type=rtx_pt,
        rtx_ssrc=sender._rtx_ssrc,
        extension_ids={ext.uri: ext.id for ext in parameters.headerExtensions},
        mid=parameters.muxId,
        codec_name=codec.name,
    )


class RawRtpSink:
    """Protects and sends serialised RTP on a DTLS transport with one synchronous call."""

    __slots__ = ("_addr", "_dtls", "_nominated", "_pair", "_protect", "_sendto", "packets_sent")

    def __init__(self, dtls_transport: Any) -> None:
        _require(dtls_transport, DTLS_ATTRIBUTES, "RTCDtlsTransport")
        connection = dtls_transport.transport._connection
        _require(connection, ICE_CONNECTION_ATTRIBUTES, "aioice.Connection")
        self._dtls = dtls_transport
        self._nominated: dict[int, Any] = connection._nominated
        self._pair: Any = None
        self._protect: Callable[[bytes], bytes] | None = None
        self._sendto: Callable[[bytes, Any], None] | None = None
        self._addr: Any = None
        self.packets_sent = 0

    def send(self, packet: bytes) -> bool:
        """Send one packet; False when the transport is not (or no longer) connected."""
        sendto = self._sendto
        if sendto is None or self._nominated.get(1) is not self._pair:
            sendto = self._resolve()
            if sendto is None:
                return False
        sendto(self._protect(packet), self._addr)  # type: ignore[misc]
        self.packets_sent += 1
        return True

    def _resolve(self) -> Callable[[bytes, Any], None] | None:
        """Look up SRTP and the nominated pair's socket; cached until the pair changes."""
        self._sendto = None
        dtls = self._dtls
        if dtls.state != "connected" or dtls._tx_srtp is None:
            return None
        pair = self._nominated.get(1)
        if pair is None:
            return None
        transport = pair.protocol.transport
        if transport is None or transport.is_closing():
            return None
        self._protect = dtls._tx_srtp.protect
        self._pair, self._addr = pair, pair.remote_addr
        self._sendto = transport.sendto
        return self._sendto

    def close(self) -> None:
        """Stop sending: later calls return False."""
        self._dtls = _ClosedDtls()
        self._sendto = None


class _ClosedDtls:
    state = "closed"
    _tx_srtp = None


def _not_connected(packet: bytes) -> bool:
    return False


class SenderPort:
    """The ``SendPort`` of one ``RTCRtpSender``: ``SenderHooks`` for what the subscriber
    negotiates and asks, ``RawRtpSink`` for the packets.

    ``send`` is an attribute, not a method: once negotiated it *is* the raw sink's
    bound ``send``, so a forwarded copy costs one call, as before the port existed.
    """

    send: Callable[[bytes], bool]

    def __init__(self, sender: RTCRtpSender) -> None:
        self.send = _not_connected
        self._listener: SendPortListener | None = None
        self._sink: RawRtpSink | None = None
        self._closed = False
        self._hooks = SenderHooks(sender, on_negotiated=self._negotiated, on_nack=self._nack,
                                  on_keyframe_request=self._keyframe_request,
                                  on_remb=self._remb, on_loss=self._loss)

    def listen(self, listener: SendPortListener) -> None:
        self._listener = listener

    def set_report(self, ntp_timestamp: int, rtp_timestamp: int, packets: int,
                   octets: int) -> None:
        self._hooks.set_report(ntp_timestamp, rtp_timestamp, packets, octets)

    def close(self) -> None:
        self._closed = True
        self.send = _not_connected
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def _negotiated(self, parameters: SendParameters) -> None:
        # aiortc calls RTCRtpSender.send() only once DTLS is connected.
        if self._closed:
            return
        self._sink = RawRtpSink(self._hooks.transport)
        self.send = self._sink.send
        if self._listener is not None:
            self._listener.negotiated(parameters)

    def _nack(self, sequence_number: int) -> None:
        if self._listener is not None and not self._closed:
            self._listener.retransmit(sequence_number, time.monotonic())

    def _keyframe_request(self) -> None:
        if self._listener is not None and not self._closed:
            self._listener.keyframe_requested()

    def _remb(self, bitrate: int) -> None:
        if self._listener is not None and not self._closed:
            self._listener.remb_received(float(bitrate), time.monotonic())

    def _loss(self, report: ReceiverLoss) -> None:
        if self._listener is not None and not self._closed:
            self._listener.loss_reported(report, time.monotonic())


# --------------------------------------------------------------------------- ICE


def _ice_connections(pc: RTCPeerConnection) -> list[Any]:
    connections = []
    for transceiver in pc.getTransceivers():
        for dtls in (transceiver.sender.transport, transceiver.receiver.transport):
            if dtls is None:
                continue
            connection = dtls.transport._connection
            if connection not in connections:
                connections.append(connection)
    return connections


# --------------------------------------------------------------------------- ICE consent race
#
# When a peer connection is closed while ICE is just completing, aioice's
# ``Connection.connect()`` resumes after ``close()`` has run and starts the RFC 7675
# consent task anyway. That task loops over the (now empty) nominated pairs every few
# seconds, forever, and keeps the connection, its ICE transport and their buffers
# alive: about half a leaked connection per abruptly ended session. The functions
# below cancel such tasks once the peer connection has closed.

ICE_CONSENT_ATTRIBUTES = ("_closed", "_query_consent_task", "_early_checks_done",
                             "_check_list_state")
CONSENT_POLL_SECONDS = 0.25
CONSENT_GIVE_UP_SECONDS = 10.0


def check_ice_connection(connection: Any) -> None:
    _require(connection, ICE_CONSENT_ATTRIBUTES, "aioice.Connection")


def _connect_may_resume(connection: Any) -> bool:
    """Whether connect() started and has not yet read the check list's outcome."""
    outcome = connection._check_list_state
    return bool(connection._early_checks_done) and isinstance(outcome, asyncio.Queue) \
        and not outcome.empty()


def stop_orphan_consent(pc: RTCPeerConnection) -> tuple[int, bool]:
    """Cancel consent tasks of closed ICE connections of ``pc``.

    Returns how many were cancelled, and whether a connect() may still resume (and
    start another one) later.
    """
    stopped = 0
    pending = False
    for connection in _ice_connections(pc):
        check_ice_connection(connection)
        if not connection._closed:
            pending = True
            continue
        task = connection._query_consent_task
        if isinstance(task, asyncio.Task) and not task.done():
            task.cancel()
            stopped += 1
        pending = pending or _connect_may_resume(connection)
    return stopped, pending


async def release_after_close(pc: RTCPeerConnection) -> None:
    """Once ``pc`` is closed, stop consent tasks started by a late connect(), until none can."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CONSENT_GIVE_UP_SECONDS
    while True:
        await asyncio.sleep(CONSENT_POLL_SECONDS)
        try:
            _stopped, pending = stop_orphan_consent(pc)
        except AiortcHookError:
            logger.exception("the ICE consent workaround no longer fits aioice")
            return
        if not pending or loop.time() > deadline:
            return


# --------------------------------------------------------------------------- media start race
#
# ``RTCPeerConnection.__connect()`` runs as its own task, transceiver after
# transceiver: ICE ``start``, the DTLS ``start`` (handshake), then ``sender.send()`` /
# ``receiver.receive()``, which start the RTP and RTCP tasks (and a receiver's decoder
# thread). ``close()`` stops the senders and receivers first, then the DTLS and ICE
# transports, awaiting as it goes. A handshake that completes during those awaits
# (on a loaded machine) lets ``__connect()`` start a sender or receiver that
# ``close()`` has already passed: its RTCP task then sends a report into the closed
# transport every 0.5-1.5 s, forever, and holds the receiver, the transports and the
# peer connection (1-5 per 200 sessions under load). The next transceiver's ICE
# ``start`` raises ``InvalidStateError`` in that task, logged as an error that
# nobody retrieved. So once the peer connection is closing, each of these steps
# does nothing.

def refuse_start_after_close(pc: RTCPeerConnection) -> None:
    """Make the ICE and DTLS ``start``, each sender's ``send`` and each receiver's
    ``receive`` do nothing once ``pc`` is closing (``close()`` sets the signalling
    state first, before it stops anything).

    Call before ``setLocalDescription``: nothing starts before it (the transceivers
    and their transports exist by then, and ``__connect`` needs gathered candidates).
    """
    pc_ref = weakref.ref(pc)  # held by pc's own objects: no reference back to pc

    def closing() -> bool:
        current = pc_ref()
        return current is None or current.signalingState == "closed"

    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        _refuse_after_close(dtls.transport, "start", closing)
        _refuse_after_close(dtls, "start", closing)
        _refuse_after_close(transceiver.sender, "send", closing)
        _refuse_after_close(transceiver.receiver, "receive", closing)


def _refuse_after_close(obj: Any, method: str, closing: Callable[[], bool]) -> None:
    what = type(obj).__name__
    _require(obj, (method,), what)
    if getattr(obj, "_huizhen_start_guarded", False):  # a transport shared by transceivers
        return
    original = getattr(obj, method)

    async def start(parameters: Any) -> None:
        if closing():
            logger.debug("%s.%s after close: not started", what, method)
            return
        await original(parameters)

    setattr(obj, method, start)
    obj._huizhen_start_guarded = True


def restrict_host_addresses(pc: RTCPeerConnection, addresses: tuple[str, ...]) -> None:
    """Gather host candidates only on ``addresses`` (call before setLocalDescription).

    aioice gathers on every interface of the machine; a server usually must offer
    only its public (or, for the demo and tests, its loopback) address.
    """
    if not addresses:
        return
    for connection in _ice_connections(pc):
        _require(connection, ICE_CONNECTION_ATTRIBUTES, "aioice.Connection")
        if getattr(connection, "_huizhen_restricted", False):
            continue

        async def gather(connection: Any = connection) -> None:
            if connection._local_candidates_end:
                return
            connection._local_candidates_start = True
            for component in connection._components:
                connection._local_candidates += await connection.get_component_candidates(
                    component=component, addresses=list(addresses)
                )
            connection._local_candidates_end = True

        connection.gather_candidates = gather
        connection._huizhen_restricted = True


# --------------------------------------------------------------------------- media port guard

RTP_PARSE_ERRORS = (ValueError, struct.error, IndexError)  # UnicodeDecodeError is a ValueError


def _dtls_transports(pc: RTCPeerConnection) -> list[Any]:
    transports = []
    for transceiver in pc.getTransceivers():
        for dtls in (transceiver.sender.transport, transceiver.receiver.transport):
            if dtls is not None and dtls not in transports:
                transports.append(dtls)
    return transports


class CountingSrtpSession:
    """Wraps the receiving ``pylibsrtp.Session``: counts what fails, raises ``pylibsrtp.Error``.

    aiortc catches ``pylibsrtp.Error`` (and drops the datagram) but not the
    ``ValueError`` pylibsrtp raises for a packet too long for its buffer.
    """

    def __init__(self, session: Any, counters: PortCounters) -> None:
        _require(session, GUARD_SRTP_METHODS, "pylibsrtp.Session")
        self._session = session
        self._counters = counters

    def unprotect(self, data: bytes) -> bytes:
        return self._process(self._session.unprotect, data)

    def unprotect_rtcp(self, data: bytes) -> bytes:
        return self._process(self._session.unprotect_rtcp, data)

    def _process(self, unprotect: Callable[[bytes], bytes], data: bytes) -> bytes:
        try:
            return unprotect(data)
        except pylibsrtp.Error:
            self._counters.unauthenticated += 1
            raise
        except ValueError as exc:
            self._counters.malformed += 1
            logger.debug("dropped SRTP/SRTCP: %s", exc)
            raise pylibsrtp.Error(str(exc)) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


class MediaPortGuard:
    """Keeps strangers' and malformed datagrams away from one peer connection's DTLS.

    Install before ``setLocalDescription`` (the ICE sockets are guarded as soon as
    they are gathered). Everything is patched on this connection's own objects:
    other peer connections are untouched. Drops are counted in ``counters``.
    """

    def __init__(self, pc: RTCPeerConnection, counters: PortCounters, label: str = "") -> None:
        self.counters = counters
        self._label = label
        self._unexpected = 0
        for dtls in _dtls_transports(pc):
            self._guard_dtls(dtls)
        for connection in _ice_connections(pc):
            self._guard_connection(connection)

    # ------------------------------------------------------------- ICE: source addresses

    def _guard_connection(self, connection: Any) -> None:
        _require(connection, GUARD_CONNECTION_ATTRIBUTES, "aioice.Connection")
        if getattr(connection, "_huizhen_guarded", False):
            return
        connection._huizhen_guarded = True
        checked: set[tuple[str, int]] = set()
        connection._huizhen_checked = checked  # for tests and debugging
        original_gather = connection.gather_candidates

        async def gather_candidates() -> None:
            await original_gather()
            self._guard_protocols(connection, checked)

        connection.gather_candidates = gather_candidates
        if connection._local_candidates_end:
            self._guard_protocols(connection, checked)

    def _guard_protocols(self, connection: Any, checked: set[tuple[str, int]]) -> None:
        nominated: dict[int, Any] = connection._nominated
        check_list: list[Any] = connection._check_list
        counters = self.counters
        succeeded = CandidatePair.State.SUCCEEDED

        def validated(source: tuple[str, int], component: int) -> bool:
            pair = nominated.get(component)
            if pair is not None and pair.remote_addr == source:  # the selected pair: fast path
                return True
            # Any address that proved it knows the ICE credentials: it sent us an
            # authenticated check, or answered ours. With aggressive nomination (aioice
            # as the controlling agent) the peer may select another valid pair than ours.
            return source in checked or any(
                p.state is succeeded and p.remote_addr == source for p in check_list)

        for protocol in connection._protocols:
            _require(protocol, GUARD_PROTOCOL_ATTRIBUTES, "aioice.StunProtocol")
            if getattr(protocol, "_huizhen_guarded", False):
                continue
            original = protocol.datagram_received
            original_send_stun = protocol.send_stun
            component = protocol.local_candidate.component

            def send_stun(message: stun.Message, addr: tuple[str, int],
                          original_send_stun: Callable[..., None] = original_send_stun) -> None:
                # aioice answers a Binding request with success only once it carried our
                # credentials (aioice may handle the check itself later): learn it now.
                if (message.message_class == stun.Class.RESPONSE
                        and message.message_method == stun.Method.BINDING):
                    checked.add((addr[0], addr[1]))
                original_send_stun(message, addr)

            def datagram_received(data: bytes, addr: tuple[Any, ...], component: int = component,
                                  original: Callable[[bytes, Any], None] = original) -> None:
                if validated((addr[0], addr[1]), component):
                    if is_stun(data):
                        original(data, addr)
                    else:  # what aioice does after failing to parse it as STUN, minus the try
                        connection.data_received(data, component)
                elif _parses_as_stun(data):
                    original(data, addr)  # aioice authenticates STUN requests itself
                else:
                    counters.unvalidated += 1

            protocol.datagram_received = datagram_received
            protocol.send_stun = send_stun
            protocol._huizhen_guarded = True

    # ------------------------------------------------------------- DTLS: shape and parsing

    def _guard_dtls(self, dtls: Any) -> None:
        _require(dtls, GUARD_DTLS_ATTRIBUTES, "RTCDtlsTransport")
        if getattr(dtls, "_huizhen_guarded", False):
            return
        dtls._huizhen_guarded = True
        self._guard_ice_transport(dtls)
        counters, label = self.counters, self._label
        original_setup_srtp = dtls._setup_srtp
        original_recv_next = dtls._recv_next

        def setup_srtp() -> None:
            original_setup_srtp()
            if dtls._rx_srtp is not None:
                dtls._rx_srtp = CountingSrtpSession(dtls._rx_srtp, counters)

        async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
            try:
                packet = RtpPacket.parse(data, dtls._rtp_header_extensions_map)
            except RTP_PARSE_ERRORS as exc:
                counters.malformed += 1
                logger.debug("[%s] dropped RTP that does not parse: %r", label, exc)
                return
            receiver = dtls._rtp_router.route_rtp(packet)
            if receiver is not None:
                await receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)

        async def handle_rtcp_data(data: bytes) -> None:
            try:
                packets = RtcpPacket.parse(data)
            except RTP_PARSE_ERRORS as exc:
                counters.malformed += 1
                logger.debug("[%s] dropped RTCP that does not parse: %r", label, exc)
                return
            for packet in packets:
                for recipient in dtls._rtp_router.route_rtcp(packet):
                    await recipient._handle_rtcp_packet(packet)

        async def recv_next() -> None:
            try:
                await original_recv_next()
            except (ConnectionError, asyncio.CancelledError):
                raise  # the end of the transport, as aiortc means it
            except Exception:
                self._dropped_unexpectedly()

        dtls._setup_srtp = setup_srtp
        dtls._handle_rtp_data = handle_rtp_data
        dtls._handle_rtcp_data = handle_rtcp_data
        dtls._recv_next = recv_next

    def _guard_ice_transport(self, dtls: Any) -> None:
        ice_transport = dtls.transport
        _require(ice_transport, GUARD_ICE_TRANSPORT_ATTRIBUTES, "RTCIceTransport")
        if getattr(ice_transport, "_huizhen_guarded", False):
            return
        ice_transport._huizhen_guarded = True
        original_recv = ice_transport._recv
        counters, label = self.counters, self._label

        async def recv() -> bytes:
            while True:
                data: bytes = await original_recv()
                # A data channel registers a data receiver; media-only: no application data.
                problem = media_datagram_problem(data, dtls._data_receiver is not None)
                if problem is None:
                    return data
                counters.malformed += 1
                logger.debug("[%s] dropped a %d-byte datagram: %s", label, len(data), problem)

        ice_transport._recv = recv

    def _dropped_unexpectedly(self) -> None:
        """A datagram made aiortc (or a hook) raise: count it, keep the transport."""
        self.counters.malformed += 1
        self._unexpected += 1
        if self._unexpected == 1 or self._unexpected % 1000 == 0:
            logger.warning("[%s] dropped a datagram that raised while handled (%d so far)",
                           self._label, self._unexpected, exc_info=True)


def _parses_as_stun(data: bytes) -> bool:
    if not is_stun(data):
        return False
    try:
        stun.parse_message(data)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- latency probe

SIOCGSTAMPNS = 0x8907
_TIMESPEC = struct.Struct("@qq")


class ArrivalStamps:
    """Kernel arrival time of each datagram a publisher's ICE connection receives.

    Benchmark instrumentation only. The kernel receive timestamp of the socket's
    last datagram (``SIOCGSTAMPNS``) is read as each datagram leaves the socket and
    carried through aioice's receive queue beside it, so ``current`` is the arrival
    time of the datagram aiortc is processing now, including any time it waited
    in the kernel or in aioice's queue. Nanoseconds on ``time.time_ns()``'s clock.
    """

    def __init__(self, pc: RTCPeerConnection) -> None:
        self.current = 0
        self._pending = 0
        self._connections: list[Any] = []
        for connection in _ice_connections(pc):
            _require(connection, ICE_CONNECTION_ATTRIBUTES, "aioice.Connection")
            self._wrap_connection(connection)

    def _wrap_connection(self, connection: Any) -> None:
        stamps = self

        class StampedQueue(asyncio.Queue):  # type: ignore[type-arg]
            def _init(self, maxsize: int) -> None:
                self._queue: collections.deque[Any] = collections.deque()

            def _put(self, item: Any) -> None:
                self._queue.append((item, stamps._pending or time.time_ns()))
                stamps._pending = 0

            def _get(self) -> Any:
                item, stamps.current = self._queue.popleft()
                return item

        old = connection._queue
        queue: asyncio.Queue[Any] = StampedQueue()
        while not old.empty():
            queue.put_nowait(old.get_nowait())
        connection._queue = queue
        self._connections.append(connection)

    def hook_sockets(self) -> None:
        """Wrap each local socket's protocol to read kernel timestamps (after ICE connects)."""
        protocols = [p for c in self._connections for p in getattr(c, "_protocols", [])]
        for protocol in protocols:
            if getattr(protocol, "_huizhen_stamped", False):
                continue
            sock = protocol.transport.get_extra_info("socket")
            fd = sock.fileno()
            original = protocol.datagram_received

            def datagram_received(data: Any, addr: Any, fd: int = fd,
                                  original: Callable[..., None] = original) -> None:
                try:
                    raw = fcntl.ioctl(fd, SIOCGSTAMPNS, bytes(_TIMESPEC.size))
                    sec, nsec = _TIMESPEC.unpack(raw)
                    self._pending = sec * 1_000_000_000 + nsec
                except OSError:
                    self._pending = time.time_ns()
                original(data, addr)

            protocol.datagram_received = datagram_received
            protocol._huizhen_stamped = True



# --------------------------------------------------------------------------- negotiation

RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"


def read_rid_extensions(receiver: RTCRtpReceiver, rid_id: int, repaired_id: int | None) -> None:
    """Make the receiver's DTLS transport parse the rid header extensions.

    aiortc knows both URIs but never negotiates them, so its answer (and its
    extension map) leaves them out; the simulcast answer adds them with the offer's
    ids, and this teaches the transport's ``HeaderExtensionsMap`` the same ids
    (``configure`` only sets the ids of the URIs it is given). Call after
    setLocalDescription(answer).
    """
    dtls = receiver.transport
    _require(dtls, ("_rtp_header_extensions_map",), "RTCDtlsTransport")
    extensions = [RTCRtpHeaderExtensionParameters(id=rid_id, uri=RID_URI)]
    if repaired_id is not None:
        extensions.append(RTCRtpHeaderExtensionParameters(id=repaired_id, uri=REPAIRED_RID_URI))
    dtls._rtp_header_extensions_map.configure(RTCRtpParameters(headerExtensions=extensions))


def keep_first_codec(transceiver: Any) -> RTCRtpCodecParameters | None:
    """Answer with the publisher's first supported codec (and its RTX) only.

    A forwarding SFU maps one publisher codec onto each subscriber's payload type,
    so a publisher must not switch codecs mid-stream. Call between
    setRemoteDescription(offer) and createAnswer().
    """
    _require(transceiver, ("_codecs",), "RTCRtpTransceiver")
    codecs: list[RTCRtpCodecParameters] = transceiver._codecs
    media = next((c for c in codecs if not is_rtx(c)), None)
    if media is None:
        return None
    rtx = [c for c in codecs if is_rtx(c) and c.parameters.get("apt") == media.payloadType]
    kept = [media, *rtx[:1]]
    transceiver._codecs = kept
    return media
