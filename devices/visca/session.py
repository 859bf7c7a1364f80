"""VISCA flow control for one camera (sans-I/O, ``now`` passed in).

The rules (Sony command lists):

- one packet in transit: the next one goes only after the previous command's ACK or
  error, or after an inquiry's, cancel's or broadcast's reply;
- a camera has two sockets, so at most two commands execute at once; a completion (or
  an error naming the socket) frees one. Inquiries need no socket and may overtake a
  command that waits for one; commands never overtake each other;
- a pan-tilt motion is cancelled no sooner than 200 ms after it started (its ACK, which
  comes after the camera received it), and the next pan-tilt motion goes no sooner
  than 200 ms after a "cancelled" reply (a pan-tilt stop is not held back);
- a command without ACK (or an inquiry without reply) within ``ack_timeout``, and an
  accepted command without completion within its completion timeout, fail with
  :class:`ViscaTimeout`.

Inputs are :meth:`ViscaSession.submit`, :meth:`~ViscaSession.cancel`,
:meth:`~ViscaSession.packet_received` and, from transports that know more than bytes,
:meth:`~ViscaSession.reply_lost` and :meth:`~ViscaSession.fail_in_transit`. Outputs come
from :meth:`~ViscaSession.poll`: packets to send and what became of each request. The
shell calls ``poll`` after every input and again at :meth:`~ViscaSession.next_deadline`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from devices.visca.codec import (
    BROADCAST,
    Ack,
    Completion,
    ErrorCode,
    ErrorReply,
    PacketKind,
    check_address,
    classify,
    is_pan_tilt_motion,
    is_pan_tilt_stop,
    parse_broadcast_reply,
    parse_reply,
)
from devices.visca.errors import ViscaCommandError, ViscaError, ViscaTimeout, WaitingFor

SOCKETS = 2
CANCEL_GUARD = 0.2


@dataclass(frozen=True)
class SendPacket:
    request_id: int
    packet: bytes


@dataclass(frozen=True)
class Acked:
    request_id: int
    socket: int


@dataclass(frozen=True)
class Completed:
    """A command finished, or an inquiry (``payload``), cancel or broadcast was answered."""

    request_id: int
    payload: bytes = b""


@dataclass(frozen=True)
class Failed:
    request_id: int
    error: ViscaError


SessionEvent = SendPacket | Acked | Completed | Failed


@dataclass(eq=False)
class _Request:
    id: int
    packet: bytes
    kind: PacketKind
    completion_timeout: float
    pan_tilt: bool = False
    sent_at: float = 0.0
    started_at: float = 0.0
    deadline: float = math.inf
    socket: int | None = None
    cancel_wanted: bool = False
    cancel_queued: bool = False
    cancel_of: _Request | None = None


class ViscaSession:
    def __init__(
        self,
        address: int = 1,
        *,
        ack_timeout: float = 1.0,
        completion_timeout: float = 10.0,
        cancel_guard: float = CANCEL_GUARD,
    ) -> None:
        if ack_timeout <= 0 or completion_timeout <= 0:
            raise ValueError("timeouts must be positive")
        self.address = check_address(address)
        self.ack_timeout = ack_timeout
        self.completion_timeout = completion_timeout
        self.cancel_guard = cancel_guard
        self._next_id = 1
        self._queue: deque[_Request] = deque()
        self._in_transit: _Request | None = None
        self._sockets: dict[int, _Request] = {}
        self._drive_hold_until = -math.inf
        self._events: list[SessionEvent] = []

    # -- state -------------------------------------------------------------------------

    @property
    def executing(self) -> dict[int, int]:
        """Socket -> id of the request executing in it."""
        return {socket: request.id for socket, request in self._sockets.items()}

    @property
    def in_transit(self) -> int | None:
        return self._in_transit.id if self._in_transit else None

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def idle(self) -> bool:
        return not (self._queue or self._in_transit or self._sockets)

    # -- inputs ------------------------------------------------------------------------

    def submit(self, packet: bytes, now: float, completion_timeout: float | None = None) -> int:
        """Queue a command, inquiry, cancel or broadcast; returns its request id."""
        kind = classify(packet)
        if kind is not PacketKind.BROADCAST and packet[0] & 0x07 != self.address:
            raise ValueError(f"packet for camera {packet[0] & 0x07}, session is for {self.address}")
        request = self._new(packet, kind, completion_timeout)
        if kind is PacketKind.CANCEL:
            self._queue.appendleft(request)
        else:
            self._queue.append(request)
        return request.id

    def cancel(self, request_id: int, now: float) -> None:
        """Withdraw a queued request, or cancel it in the camera once it has a socket."""
        for request in self._queue:
            if request.id == request_id and request.kind is not PacketKind.CANCEL:
                self._queue.remove(request)
                self._fail(request, ViscaCommandError(ErrorCode.CANCELLED))
                return
        if self._in_transit and self._in_transit.id == request_id:
            self._in_transit.cancel_wanted = self._in_transit.kind is PacketKind.COMMAND
            return
        for request in self._sockets.values():
            if request.id == request_id:
                self._queue_cancel(request)
                return

    def packet_received(self, packet: bytes, now: float) -> None:
        """A reply from the camera; ValueError (state unchanged) if it is malformed."""
        if packet[:1] == bytes((BROADCAST,)):
            parse_broadcast_reply(packet)
            request = self._in_transit
            if request is not None and request.kind is PacketKind.BROADCAST:
                self._in_transit = None
                self._complete(request, packet)
            return
        match parse_reply(packet, self.address):
            case Ack(socket):
                self._on_ack(socket, now)
            case Completion(socket, payload):
                self._on_completion(socket, payload, now)
            case ErrorReply(socket, code):
                self._on_error(socket, code, now)

    def reply_lost(self, now: float) -> None:
        """The transport learnt that the packet in transit reached the camera but its reply
        was lost (VISCA over IP: ``0F 01`` after a resend). A command is taken as done;
        an inquiry or broadcast is asked again."""
        request = self._in_transit
        if request is None:
            return
        self._in_transit = None
        if request.kind in (PacketKind.INQUIRY, PacketKind.BROADCAST):
            self._queue.appendleft(request)
        else:
            self._complete(request, b"")

    def fail_in_transit(self, error: ViscaError, now: float) -> None:
        """The transport rejected the packet in transit (e.g. a message type error)."""
        request = self._in_transit
        if request is not None:
            self._in_transit = None
            self._fail(request, error)

    def abort(self, error: ViscaError) -> None:
        """Fail every request, sent or not (camera offline, driver closed)."""
        requests = [*self._sockets.values(), *filter(None, [self._in_transit]), *self._queue]
        self._sockets.clear()
        self._in_transit = None
        self._queue.clear()
        for request in requests:
            self._fail(request, error)

    # -- outputs -----------------------------------------------------------------------

    def poll(self, now: float) -> list[SessionEvent]:
        """Apply timeouts, send the next packet if the rules allow, return all events."""
        self._expire(now)
        if self._in_transit is None:
            request = self._next_to_send(now)
            if request is not None:
                self._queue.remove(request)
                request.sent_at = now
                request.deadline = now + self.ack_timeout
                self._in_transit = request
                self._events.append(SendPacket(request.id, request.packet))
        events, self._events = self._events, []
        return events

    def next_deadline(self) -> float | None:
        """When :meth:`poll` must run next even if nothing arrives (None: not needed)."""
        times = [request.deadline for request in self._sockets.values()]
        if self._in_transit is not None:
            times.append(self._in_transit.deadline)
        else:
            head = self._head_command()
            if head is not None:
                ready = self._ready_at(head)
                if ready is not None and ready > -math.inf:
                    times.append(ready)
        finite = [t for t in times if t < math.inf]
        return min(finite) if finite else None

    # -- internals ---------------------------------------------------------------------

    def _new(self, packet: bytes, kind: PacketKind, timeout: float | None) -> _Request:
        request = _Request(
            id=self._next_id,
            packet=packet,
            kind=kind,
            completion_timeout=self.completion_timeout if timeout is None else timeout,
            # A stop is never held back: it must reach the camera at once, even right
            # after a cancel (the 200 ms rule is for the next motion).
            pan_tilt=is_pan_tilt_motion(packet) and not is_pan_tilt_stop(packet),
        )
        self._next_id += 1
        return request

    def _queue_cancel(self, target: _Request) -> None:
        if target.cancel_queued or target.socket is None:
            return
        target.cancel_queued = True
        packet = bytes((0x80 | self.address, 0x20 | target.socket, 0xFF))
        cancel = self._new(packet, PacketKind.CANCEL, None)
        cancel.cancel_of = target
        self._queue.appendleft(cancel)

    def _head_command(self) -> _Request | None:
        for request in self._queue:
            if request.kind is not PacketKind.INQUIRY:
                return request
        return None

    def _ready_at(self, request: _Request) -> float | None:
        """When ``request`` may go (-inf: now), or None while it waits for a socket."""
        if request.kind is PacketKind.CANCEL:
            target = self._sockets.get(request.packet[1] & 0x0F)
            if target is not None and target.pan_tilt:
                return target.started_at + self.cancel_guard
            return -math.inf
        if request.kind is PacketKind.COMMAND:
            if len(self._sockets) >= SOCKETS:
                return None
            if request.pan_tilt:
                return self._drive_hold_until
        return -math.inf

    def _next_to_send(self, now: float) -> _Request | None:
        # Drop cancels whose command finished meanwhile: nothing is left to cancel.
        for request in list(self._queue):
            target = request.cancel_of
            if target is not None and self._sockets.get(target.socket or 0) is not target:
                self._queue.remove(request)
                self._complete(request, b"")
        head = self._head_command()
        for request in self._queue:
            if request.kind is PacketKind.INQUIRY:
                return request
            if request is head:
                ready = self._ready_at(request)
                if ready is not None and ready <= now:
                    return request
        return None

    def _expire(self, now: float) -> None:
        request = self._in_transit
        if request is not None and request.deadline <= now:
            self._in_transit = None
            waiting: WaitingFor = "ack" if request.kind is PacketKind.COMMAND else "reply"
            self._fail(request, ViscaTimeout(waiting, self.ack_timeout))
        for socket, request in list(self._sockets.items()):
            if request.deadline <= now:
                del self._sockets[socket]
                self._fail(request, ViscaTimeout("completion", request.completion_timeout))

    def _on_ack(self, socket: int, now: float) -> None:
        request = self._in_transit
        if request is None or request.kind is not PacketKind.COMMAND:
            return  # a stray or late ACK
        self._in_transit = None
        previous = self._sockets.pop(socket, None)
        if previous is not None:
            # The camera reused the socket, so its command finished (completion lost).
            self._complete(previous, b"")
        request.socket = socket
        request.started_at = now
        request.deadline = now + request.completion_timeout
        self._sockets[socket] = request
        self._events.append(Acked(request.id, socket))
        if request.cancel_wanted:
            self._queue_cancel(request)

    def _on_completion(self, socket: int, payload: bytes, now: float) -> None:
        request = self._in_transit
        if socket == 0:
            if request is not None and request.kind is PacketKind.INQUIRY:
                self._in_transit = None
                self._complete(request, payload)
            return
        executing = self._sockets.pop(socket, None)
        if executing is not None:
            self._complete(executing, b"")
        elif request is not None and request.kind is PacketKind.COMMAND:
            # Completed before (or without) its ACK reaching us.
            self._in_transit = None
            self._events.append(Acked(request.id, socket))
            self._complete(request, b"")

    def _on_error(self, socket: int, code: int, now: float) -> None:
        request = self._in_transit
        if request is not None and request.kind is PacketKind.CANCEL:
            target_socket = request.packet[1] & 0x0F
            if code == ErrorCode.CANCELLED and socket == target_socket:
                self._in_transit = None
                cancelled = self._sockets.pop(socket, None)
                if cancelled is not None:
                    self._cancelled(cancelled, now)
                self._complete(request, b"")
                return
            if code == ErrorCode.NO_SOCKET:
                self._in_transit = None
                self._fail(request, ViscaCommandError(code, socket))
                return
        executing = self._sockets.pop(socket, None) if socket else None
        if executing is not None:
            if code == ErrorCode.CANCELLED:
                self._cancelled(executing, now)
            else:
                self._fail(executing, ViscaCommandError(code, socket))
        elif request is not None:
            self._in_transit = None
            self._fail(request, ViscaCommandError(code, socket or None))

    def _cancelled(self, request: _Request, now: float) -> None:
        if request.pan_tilt:
            self._drive_hold_until = max(self._drive_hold_until, now + self.cancel_guard)
        self._fail(request, ViscaCommandError(ErrorCode.CANCELLED, request.socket))

    def _complete(self, request: _Request, payload: bytes) -> None:
        self._events.append(Completed(request.id, payload))

    def _fail(self, request: _Request, error: ViscaError) -> None:
        self._events.append(Failed(request.id, error))
