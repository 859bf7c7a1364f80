"""Light viewers: a real join, offer/answer, ICE and DTLS, then a counter on the socket.

A ``LightViewer`` joins the room over signalling, subscribes, answers the server's
offer with an aiortc ``RTCPeerConnection`` and lets aiortc run ICE and the DTLS
handshake, as any viewer does. Once its DTLS transport is connected, it takes over
the viewer's UDP socket: each SRTP datagram is counted and sequence-checked from its
plaintext header (``benchmarks.stream_tally.StreamTally``) and never decrypted or
parsed by aiortc; a few are decrypted with the session's SRTP key and checked as the
expected VP8 stream (``SampleCheck``). STUN and DTLS datagrams still go to aioice, so
the ICE consent checks of both sides (RFC 7675: the server closes a transport whose
consent expires) keep being answered. aiortc's receiver keeps sending its RTCP receiver
reports and SDES every second or so; the server needs nothing else to keep a viewer.

The hooks use aiortc's, aioice's and asyncio's private members, so they live here,
in benchmark code, each checked with ``hasattr`` first (a renamed member must fail
loudly, not leave a viewer that counts nothing):

* ``RTCDtlsTransport``: ``_ssl``, ``_srtp_profiles`` and ``_role`` to derive the
  receive key again (as ``_setup_srtp`` does; OpenSSL exports the same keying
  material any time after the handshake), and its ``statechange`` event, which fires
  synchronously right after ``_setup_srtp``, before aiortc's receive loop starts.
* aioice ``Connection``: ``_protocols`` (the local sockets) and ``_queue`` (datagrams
  received before the take-over that aiortc has not read yet: moved to the tally).
* asyncio's datagram transport: ``_sock``. ``pause_reading()`` takes the socket off
  the event loop (whose reader reads one datagram per wakeup and calls aioice's
  ``datagram_received``), and a ``SocketPoller`` shared by the process's viewers reads
  it instead: every ``interval`` (10 ms) one ``epoll.poll(0)`` over every viewer's
  socket, and each ready socket is drained with one ``recvfrom`` per datagram. Waking
  per datagram cost more than the counting itself (one loop iteration and one empty
  read per burst); a 10 ms delay changes no count, and the socket buffer (1 MB) holds
  a keyframe.
* ``RTCRtpReceiver._handle_rtp_packet``, replaced on the instance by a counter of
  packets that still reached aiortc (``stray``: 0 once the take-over works).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import select
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc.rtp import RtpPacket
from aiortc.sdp import SessionDescription

from benchmarks.common import quiet_logging
from benchmarks.stream_tally import SRTP_TAG_LENGTHS, SampleCheck, StreamTally
from benchmarks.subscribers import BenchSubscriber, arguments, count_instead_of_decoding, run

DTLS_ATTRIBUTES = ("_ssl", "_srtp_profiles", "_role", "transport", "state", "on")
CONNECTION_ATTRIBUTES = ("_protocols", "_queue")
PROTOCOL_ATTRIBUTES = ("transport", "datagram_received")
SOCKET_TRANSPORT_ATTRIBUTES = ("_sock", "pause_reading")
DATAGRAMS_PER_DRAIN = 256  # then the other sockets are served before more of this one
POLL_INTERVAL = 0.01  # seconds
PICTURE_SIZE = (640, 480)
RECEIVE_BUFFER = 1 << 20  # bytes (the kernel caps it at net.core.rmem_max)


class TakeOverError(RuntimeError):
    pass


def _require(obj: object, names: tuple[str, ...], what: str) -> None:
    missing = [name for name in names if not hasattr(obj, name)]
    if missing:
        raise TakeOverError(f"{what} has no {', '.join(missing)} any more: "
                            "update benchmarks/light_viewers.py")


@dataclass(frozen=True)
class SrtpKeys:
    key: bytes  # master key and salt of what this side receives
    profile: int  # pylibsrtp.Policy profile
    tag_length: int


def srtp_receive_keys(dtls: Any) -> SrtpKeys:
    """The SRTP receive key of a connected ``RTCDtlsTransport``, as ``_setup_srtp``
    derives it (RFC 5764 section 4.2: client key, server key, client salt, server salt)."""
    _require(dtls, DTLS_ATTRIBUTES, "RTCDtlsTransport")
    selected = dtls._ssl.get_selected_srtp_profile()
    profile = next(p for p in dtls._srtp_profiles if p.openssl_profile == selected)
    material = dtls._ssl.export_keying_material(
        b"EXTRACTOR-dtls_srtp", 2 * (profile.key_length + profile.salt_length))
    key = profile.get_key_and_salt(material, 0 if dtls._role == "server" else 1)
    return SrtpKeys(key, profile.libsrtp_profile, SRTP_TAG_LENGTHS[profile.libsrtp_profile])


def video_ssrc(offer_sdp: str) -> int:
    """The SSRC the server's offer announces for its (first) video track."""
    for media in SessionDescription.parse(offer_sdp).media:
        if media.kind != "video":
            continue
        for group in media.ssrc_group:
            if group.semantic == "FID":  # primary, retransmission
                return int(group.items[0])
        if media.ssrc:
            return int(media.ssrc[0].ssrc)
    raise ValueError("the offer announces no video SSRC")


KeyReader = Callable[[Any], SrtpKeys]


def drain(recvfrom: Callable[[int], tuple[bytes, Any]], to_ice: Callable[[bytes, Any], None],
          feed: Callable[[bytes], bytes | None], check: Callable[[bytes], object]) -> None:
    """Read a socket until it is empty (or DATAGRAMS_PER_DRAIN were read): SRTP to ``feed``
    (and its samples to ``check``), STUN and DTLS to aioice (``to_ice``)."""
    for _ in range(DATAGRAMS_PER_DRAIN):
        try:
            data, addr = recvfrom(2048)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # closed, or an ICMP error reported by the kernel
        if len(data) > 1 and 127 < data[0] < 192:
            sample = feed(data)
            if sample is not None:
                check(sample)
        else:
            to_ice(data, addr)  # STUN (consent) and DTLS


class SocketPoller:
    """Reads the sockets of many viewers every ``interval`` seconds, from one task."""

    def __init__(self, interval: float = POLL_INTERVAL) -> None:
        self.interval = interval
        self._epoll = select.epoll()
        self._readers: dict[int, Callable[[], None]] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, sock: socket.socket, reader: Callable[[], None]) -> None:
        """Poll ``sock`` (a closed socket leaves the epoll set by itself)."""
        fd = sock.fileno()
        self._readers[fd] = reader
        self._epoll.register(fd, select.EPOLLIN)
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        readers, poll = self._readers, self._epoll.poll
        while True:
            await asyncio.sleep(self.interval)
            for fd, _events in poll(0):
                reader = readers.get(fd)
                if reader is not None:
                    reader()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._epoll.close()


class LightViewer(BenchSubscriber):
    """One viewer: the real negotiation, then SRTP counted without decryption."""

    def __init__(self, index: int, size: tuple[int, int] | None = PICTURE_SIZE,
                 sample_every: int = 100, keys: KeyReader = srtp_receive_keys,
                 poller: SocketPoller | None = None) -> None:
        """``poller``: shared by the process's viewers (None: one of its own)."""
        super().__init__(index)
        self.poller = poller
        self._own_poller: SocketPoller | None = None
        self.size = size
        self.sample_every = sample_every
        self._read_keys = keys
        self.tally: StreamTally | None = None
        self.check: SampleCheck | None = None
        self.stray = 0  # RTP packets that reached aiortc's receiver
        self.error: str | None = None  # why the take-over failed

    def prepare(self, offer_sdp: str) -> None:
        self.tally = StreamTally(video_ssrc(offer_sdp), sample_every=self.sample_every)
        count_instead_of_decoding(self.pc, self._stray_packet)
        self._take_over_when_connected()

    async def _stray_packet(self, packet: RtpPacket, arrival_time_ms: int = 0) -> None:
        self.stray += 1

    def _take_over_when_connected(self) -> None:
        dtls_transports = {id(t.receiver.transport): t.receiver.transport
                           for t in self.pc.getTransceivers()}
        for dtls in dtls_transports.values():
            _require(dtls, DTLS_ATTRIBUTES, "RTCDtlsTransport")

            def on_state(dtls: Any = dtls) -> None:
                if dtls.state == "connected" and self.check is None:
                    try:
                        self._take_over(dtls)
                    except Exception as exc:  # reported by the snapshot, not swallowed
                        self.error = f"{type(exc).__name__}: {exc}"

            dtls.on("statechange", on_state)

    def _take_over(self, dtls: Any) -> None:
        """Runs synchronously as DTLS reports ``connected``: the keys exist and aiortc's
        receive loop has not started."""
        keys = self._read_keys(dtls)
        tally = self.tally
        assert tally is not None
        tally.overhead = keys.tag_length
        self.check = SampleCheck(keys.key, keys.profile, self.size)
        _require(dtls.transport, ("_connection",), "RTCIceTransport")
        connection = dtls.transport._connection
        _require(connection, CONNECTION_ATTRIBUTES, "aioice.Connection")
        self._move_queued(connection._queue)
        for protocol in connection._protocols:
            _require(protocol, PROTOCOL_ATTRIBUTES, "aioice.StunProtocol")
            self._take_over_socket(protocol)

    def _move_queued(self, queue: asyncio.Queue[Any]) -> None:
        """SRTP that arrived before the take-over and waits in aioice's queue."""
        kept = []
        while not queue.empty():
            item = queue.get_nowait()
            if item is not None and item[0] and 127 < item[0][0] < 192:
                self._srtp(item[0])
            else:
                kept.append(item)
        for item in kept:
            queue.put_nowait(item)

    def _take_over_socket(self, protocol: Any) -> None:
        transport = protocol.transport
        _require(transport, SOCKET_TRANSPORT_ATTRIBUTES, "asyncio datagram transport")
        sock = transport._sock
        # Room for a keyframe burst between two polls.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        transport.pause_reading()
        assert self.tally is not None and self.check is not None
        if self.poller is None:
            self.poller = self._own_poller = SocketPoller()
        self.poller.add(sock, functools.partial(drain, sock.recvfrom, protocol.datagram_received,
                                                self.tally.feed, self.check.check))

    def _srtp(self, datagram: bytes) -> None:
        sample = self.tally.feed(datagram)  # type: ignore[union-attr]
        if sample is not None:
            self.check.check(sample)  # type: ignore[union-attr]

    def counters(self) -> list[int]:
        """packets, payload bytes, frames, keyframes verified, expected (as RtpCounter)."""
        tally, check = self.tally, self.check
        if tally is None:
            return [0, 0, 0, 0, 0]
        return [tally.packets, tally.bytes, tally.frames,
                check.keyframes if check is not None else 0, tally.expected]

    def checks(self) -> dict[str, Any] | None:
        tally = self.tally.as_json() if self.tally is not None else {}
        check = self.check.as_json() if self.check is not None else {}
        return {**tally, **check, "stray": self.stray, "error": self.error}

    async def close(self) -> None:
        await super().close()
        if self._own_poller is not None:
            await self._own_poller.close()


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--sample-every", type=int, default=100,
                        help="decrypt and check one SRTP packet in this many (default 100)")
    parser.add_argument("--poll-interval", type=float, default=POLL_INTERVAL,
                        help=f"seconds between two reads of the sockets (default {POLL_INTERVAL})")
    args = parser.parse_args()
    quiet_logging()
    poller = SocketPoller(args.poll_interval)
    asyncio.run(run("huizhen", args.port, args.count, args.first, args.stream,
                    args.concurrency,
                    lambda index: LightViewer(index, sample_every=args.sample_every,
                                              poller=poller)))


if __name__ == "__main__":
    main()
