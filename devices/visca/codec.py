"""VISCA packets (sans-I/O): command and inquiry builders, reply parsing, stream framing.

A packet is ``header ... FF``, at most 16 bytes. The controller's header is ``8x`` for
camera x (1..7) and ``88`` to broadcast; a camera's reply header is ``y0`` with
y = x + 8 (``90`` from camera 1). Positions travel as signed two's complement numbers
spread one nibble per byte (``0p 0q 0r 0s``). Byte values follow the Sony command lists
(EVI-D70, SRG-300H, BRC-H700, BRC-X400); models differ in speed ranges and in the width
of the pan position, which :class:`CameraProfile` captures.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum

MAX_PACKET = 16
TERMINATOR = 0xFF
BROADCAST = 0x88

COMMAND = 0x01
INQUIRY = 0x09

INTERFACE = 0x00
CAMERA = 0x04
PAN_TILT = 0x06

ZOOM_SPEED_MAX = 7


class ErrorCode(IntEnum):
    """The error byte of ``y0 6z ee FF``."""

    MESSAGE_LENGTH = 0x01
    SYNTAX = 0x02
    BUFFER_FULL = 0x03
    CANCELLED = 0x04
    NO_SOCKET = 0x05
    NOT_EXECUTABLE = 0x41


KNOWN_CODES = frozenset(ErrorCode)

ERROR_TEXT = {
    ErrorCode.MESSAGE_LENGTH: "message length error",
    ErrorCode.SYNTAX: "syntax error",
    ErrorCode.BUFFER_FULL: "command buffer full",
    ErrorCode.CANCELLED: "command cancelled",
    ErrorCode.NO_SOCKET: "no socket to cancel",
    ErrorCode.NOT_EXECUTABLE: "command not executable",
}


def error_text(code: int) -> str:
    """A short human description of an error code, known or not."""
    try:
        return ERROR_TEXT[ErrorCode(code)]
    except ValueError:
        return f"unknown error 0x{code:02X}"


class PacketKind(Enum):
    COMMAND = "command"
    INQUIRY = "inquiry"
    CANCEL = "cancel"
    BROADCAST = "broadcast"


class Direction(Enum):
    """Pan-tilt drive direction: the (pan, tilt) bytes of ``8x 01 06 01 VV WW pp tt FF``."""

    UP = (0x03, 0x01)
    DOWN = (0x03, 0x02)
    LEFT = (0x01, 0x03)
    RIGHT = (0x02, 0x03)
    UP_LEFT = (0x01, 0x01)
    UP_RIGHT = (0x02, 0x01)
    DOWN_LEFT = (0x01, 0x02)
    DOWN_RIGHT = (0x02, 0x02)
    STOP = (0x03, 0x03)

    @classmethod
    def from_signs(cls, pan: int, tilt: int) -> Direction:
        """Direction for signed speeds: pan > 0 right, < 0 left; tilt > 0 up, < 0 down."""
        pan_byte = 0x02 if pan > 0 else 0x01 if pan < 0 else 0x03
        tilt_byte = 0x01 if tilt > 0 else 0x02 if tilt < 0 else 0x03
        return cls((pan_byte, tilt_byte))


# -- nibbles -----------------------------------------------------------------------------


def nibble_range(count: int, *, signed: bool = True) -> tuple[int, int]:
    """The (lowest, highest) value ``count`` nibbles hold."""
    if count < 1:
        raise ValueError(f"nibble count must be at least 1, got {count}")
    bits = 4 * count
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def encode_nibbles(value: int, count: int, *, signed: bool = True) -> bytes:
    """``value`` as ``count`` bytes ``0p 0q ...``, most significant nibble first."""
    low, high = nibble_range(count, signed=signed)
    if not low <= value <= high:
        kind = "signed" if signed else "unsigned"
        raise ValueError(f"{value} does not fit in {count} {kind} nibbles ({low}..{high})")
    raw = value & ((1 << (4 * count)) - 1)
    return bytes((raw >> (4 * (count - 1 - i))) & 0x0F for i in range(count))


def decode_nibbles(data: bytes, *, signed: bool = True) -> int:
    """The number carried by ``0p 0q ...`` bytes (two's complement when ``signed``)."""
    if not data:
        raise ValueError("no nibbles to decode")
    raw = 0
    for index, byte in enumerate(data):
        if byte > 0x0F:
            raise ValueError(f"byte {index} of a position is 0x{byte:02X}, not a nibble 0x00..0x0F")
        raw = (raw << 4) | byte
    bits = 4 * len(data)
    if signed and raw >> (bits - 1):
        raw -= 1 << bits
    return raw


# -- commands and inquiries -------------------------------------------------------------


def check_address(address: int) -> int:
    if not 1 <= address <= 7:
        raise ValueError(f"camera address must be 1..7, got {address}")
    return address


@dataclass(frozen=True)
class CameraProfile:
    """What differs between models: speed ceilings, pan width, preset count."""

    pan_speed_max: int = 0x18
    tilt_speed_max: int = 0x17
    pan_nibbles: int = 4
    """4 (EVI-D70, SRG-300H) or 5 (BRC-H700, BRC-300, BRC-X400: ``VV 00`` then 5 pan nibbles)."""
    preset_count: int = 16
    """Presets are numbered 0..preset_count-1."""

    def __post_init__(self) -> None:
        for name in ("pan_speed_max", "tilt_speed_max"):
            value = getattr(self, name)
            if not 1 <= value <= 0x7F:
                raise ValueError(f"{name} must be 0x01..0x7F, got {value}")
        if self.pan_nibbles not in (4, 5):
            raise ValueError(f"pan_nibbles must be 4 or 5, got {self.pan_nibbles}")
        if not 1 <= self.preset_count <= 0xFF:
            # pp = 0xFF would read as the terminator.
            raise ValueError(f"preset_count must be 1..255, got {self.preset_count}")


EVI_D70 = CameraProfile()
BRC_H700 = CameraProfile(tilt_speed_max=0x18, pan_nibbles=5)


def _in_range(value: int, low: int, high: int, what: str) -> int:
    if not low <= value <= high:
        raise ValueError(f"{what} must be 0x{low:02X}..0x{high:02X}, got {value}")
    return value


class CommandSet:
    """Builds every command and inquiry for one camera address and model profile."""

    def __init__(self, address: int = 1, profile: CameraProfile = EVI_D70) -> None:
        self.address = check_address(address)
        self.profile = profile

    def _command(self, *body: int) -> bytes:
        return bytes((0x80 | self.address, COMMAND, *body, TERMINATOR))

    def _inquiry(self, *body: int) -> bytes:
        return bytes((0x80 | self.address, INQUIRY, *body, TERMINATOR))

    def pan_speed(self, speed: int) -> int:
        return _in_range(speed, 1, self.profile.pan_speed_max, "pan speed")

    def tilt_speed(self, speed: int) -> int:
        return _in_range(speed, 1, self.profile.tilt_speed_max, "tilt speed")

    # pan-tilt
    def drive(self, direction: Direction, pan_speed: int, tilt_speed: int) -> bytes:
        """Continuous pan-tilt drive ``8x 01 06 01 VV WW pp tt FF`` until stopped."""
        pan, tilt = direction.value
        return self._command(
            PAN_TILT, 0x01, self.pan_speed(pan_speed), self.tilt_speed(tilt_speed), pan, tilt
        )

    def pan_tilt_stop(self, pan_speed: int = 1, tilt_speed: int = 1) -> bytes:
        return self.drive(Direction.STOP, pan_speed, tilt_speed)

    def _position(self, code: int, pan: int, tilt: int, pan_speed: int, tilt_speed: int) -> bytes:
        speed = self.pan_speed(pan_speed)
        if self.profile.pan_nibbles == 5:
            # One speed for both axes on 5-nibble models: WW is sent as 00.
            speeds = (speed, 0x00)
        else:
            speeds = (speed, self.tilt_speed(tilt_speed))
        return self._command(
            PAN_TILT, code, *speeds,
            *encode_nibbles(pan, self.profile.pan_nibbles), *encode_nibbles(tilt, 4),
        )

    def absolute(self, pan: int, tilt: int, pan_speed: int, tilt_speed: int) -> bytes:
        """Move to (pan, tilt); completion comes when the camera gets there."""
        return self._position(0x02, pan, tilt, pan_speed, tilt_speed)

    def relative(self, pan: int, tilt: int, pan_speed: int, tilt_speed: int) -> bytes:
        """Move by (pan, tilt) from where the camera is."""
        return self._position(0x03, pan, tilt, pan_speed, tilt_speed)

    def home(self) -> bytes:
        return self._command(PAN_TILT, 0x04)

    def pan_tilt_reset(self) -> bytes:
        return self._command(PAN_TILT, 0x05)

    # zoom
    def zoom_stop(self) -> bytes:
        return self._command(CAMERA, 0x07, 0x00)

    def zoom_tele(self, speed: int | None = None) -> bytes:
        """Zoom in: standard speed (``02``), or variable ``2p`` with p = 0 (slow)..7 (fast)."""
        if speed is None:
            return self._command(CAMERA, 0x07, 0x02)
        return self._command(CAMERA, 0x07, 0x20 | _in_range(speed, 0, ZOOM_SPEED_MAX, "zoom speed"))

    def zoom_wide(self, speed: int | None = None) -> bytes:
        """Zoom out: standard speed (``03``), or variable ``3p`` with p = 0..7."""
        if speed is None:
            return self._command(CAMERA, 0x07, 0x03)
        return self._command(CAMERA, 0x07, 0x30 | _in_range(speed, 0, ZOOM_SPEED_MAX, "zoom speed"))

    def zoom_direct(self, position: int) -> bytes:
        return self._command(CAMERA, 0x47, *encode_nibbles(position, 4, signed=False))

    # focus
    def focus_stop(self) -> bytes:
        return self._command(CAMERA, 0x08, 0x00)

    def focus_far(self) -> bytes:
        return self._command(CAMERA, 0x08, 0x02)

    def focus_near(self) -> bytes:
        return self._command(CAMERA, 0x08, 0x03)

    def focus_direct(self, position: int) -> bytes:
        return self._command(CAMERA, 0x48, *encode_nibbles(position, 4, signed=False))

    def auto_focus(self) -> bytes:
        return self._command(CAMERA, 0x38, 0x02)

    def manual_focus(self) -> bytes:
        return self._command(CAMERA, 0x38, 0x03)

    def one_push_af(self) -> bytes:
        return self._command(CAMERA, 0x18, 0x01)

    # presets
    def _preset(self, action: int, number: int) -> bytes:
        last = self.profile.preset_count - 1
        return self._command(CAMERA, 0x3F, action, _in_range(number, 0, last, "preset number"))

    def preset_reset(self, number: int) -> bytes:
        return self._preset(0x00, number)

    def preset_set(self, number: int) -> bytes:
        return self._preset(0x01, number)

    def preset_recall(self, number: int) -> bytes:
        return self._preset(0x02, number)

    # power
    def power_on(self) -> bytes:
        return self._command(CAMERA, 0x00, 0x02)

    def power_standby(self) -> bytes:
        return self._command(CAMERA, 0x00, 0x03)

    # inquiries
    def power_inquiry(self) -> bytes:
        return self._inquiry(CAMERA, 0x00)

    def zoom_position_inquiry(self) -> bytes:
        return self._inquiry(CAMERA, 0x47)

    def focus_position_inquiry(self) -> bytes:
        return self._inquiry(CAMERA, 0x48)

    def pan_tilt_position_inquiry(self) -> bytes:
        return self._inquiry(PAN_TILT, 0x12)

    def version_inquiry(self) -> bytes:
        return self._inquiry(INTERFACE, 0x02)

    # interface
    def cancel(self, socket: int) -> bytes:
        """``8x 2z FF``: cancel the command executing in socket z (1 or 2)."""
        _in_range(socket, 1, 2, "socket")
        return bytes((0x80 | self.address, 0x20 | socket, TERMINATOR))


def address_set() -> bytes:
    """Broadcast Address Set ``88 30 01 FF``: the chain numbers itself from 1."""
    return bytes((BROADCAST, 0x30, 0x01, TERMINATOR))


def if_clear() -> bytes:
    """Broadcast IF_Clear ``88 01 00 01 FF``: every camera empties its command buffers."""
    return bytes((BROADCAST, COMMAND, 0x00, 0x01, TERMINATOR))


def classify(packet: bytes) -> PacketKind:
    """What a controller packet is, from its first two bytes (ValueError if none of them)."""
    check_packet(packet)
    if packet[0] == BROADCAST:
        return PacketKind.BROADCAST
    if packet[0] & 0xF8 != 0x80 or not 1 <= packet[0] & 0x07 <= 7:
        raise ValueError(f"0x{packet[0]:02X} is not a controller header 81..87 or 88")
    if packet[1] == COMMAND:
        return PacketKind.COMMAND
    if packet[1] == INQUIRY:
        return PacketKind.INQUIRY
    if packet[1] in (0x21, 0x22) and len(packet) == 3:
        return PacketKind.CANCEL
    raise ValueError(f"0x{packet[1]:02X} is neither command 01, inquiry 09 nor cancel 21/22")


def is_pan_tilt_motion(packet: bytes) -> bool:
    """A pan-tilt drive, absolute/relative move, home or reset (subject to the 200 ms rules)."""
    return (
        len(packet) >= 5 and packet[1] == COMMAND and packet[2] == PAN_TILT
        and packet[3] in (0x01, 0x02, 0x03, 0x04, 0x05)
    )


def is_pan_tilt_stop(packet: bytes) -> bool:
    """A pan-tilt stop (``8x 01 06 01 VV WW 03 03 FF``): it halts, so no 200 ms rule holds it."""
    return (
        len(packet) == 9 and packet[1] == COMMAND and packet[2] == PAN_TILT
        and packet[3] == 0x01 and packet[6:8] == b"\x03\x03"
    )


def check_packet(packet: bytes) -> bytes:
    """Validate the framing every VISCA packet shares: length, terminator, no inner FF."""
    if len(packet) < 3:
        raise ValueError(f"VISCA packet of {len(packet)} bytes is shorter than 3")
    if len(packet) > MAX_PACKET:
        raise ValueError(f"VISCA packet of {len(packet)} bytes is longer than {MAX_PACKET}")
    if packet[-1] != TERMINATOR:
        raise ValueError(f"VISCA packet ends with 0x{packet[-1]:02X}, not the FF terminator")
    if TERMINATOR in packet[:-1]:
        raise ValueError(f"VISCA packet has FF at byte {packet.index(TERMINATOR)} before its end")
    if not packet[0] & 0x80:
        raise ValueError(f"VISCA header 0x{packet[0]:02X} lacks the high bit")
    return packet


# -- replies -----------------------------------------------------------------------------


def reply_header(address: int) -> int:
    """``y0`` with y = x + 8: 0x90 for camera 1."""
    return (check_address(address) + 8) << 4


@dataclass(frozen=True)
class Ack:
    """``y0 4z FF``: the command went into socket z."""

    socket: int

    def serialize(self, address: int) -> bytes:
        return bytes((reply_header(address), 0x40 | self.socket, TERMINATOR))


@dataclass(frozen=True)
class Completion:
    """``y0 5z FF`` for a command in socket z; ``y0 50 ... FF`` with a payload for an inquiry."""

    socket: int
    payload: bytes = b""

    def serialize(self, address: int) -> bytes:
        return bytes((reply_header(address), 0x50 | self.socket, *self.payload, TERMINATOR))


@dataclass(frozen=True)
class ErrorReply:
    """``y0 6z ee FF``: error ``ee`` (see :class:`ErrorCode`) about socket z (0: none)."""

    socket: int
    code: int

    @property
    def text(self) -> str:
        return error_text(self.code)

    def serialize(self, address: int) -> bytes:
        return bytes((reply_header(address), 0x60 | self.socket, self.code, TERMINATOR))


Reply = Ack | Completion | ErrorReply


def parse_reply(data: bytes, address: int) -> Reply:
    """Parse one reply from camera ``address``; ValueError says what is wrong with it."""
    check_packet(data)
    expected = reply_header(address)
    if data[0] != expected:
        raise ValueError(
            f"reply header 0x{data[0]:02X} is not from camera {address} (expected 0x{expected:02X})"
        )
    kind, socket = data[1] >> 4, data[1] & 0x0F
    if socket > 2:
        raise ValueError(f"reply names socket {socket}; cameras have sockets 1 and 2")
    if kind == 0x4:
        if len(data) != 3 or socket == 0:
            raise ValueError(f"ACK must be y0 41/42 FF, got {data.hex(' ')}")
        return Ack(socket)
    if kind == 0x5:
        if socket and len(data) != 3:
            raise ValueError(f"completion for socket {socket} carries {len(data) - 3} bytes")
        return Completion(socket, bytes(data[2:-1]))
    if kind == 0x6:
        if len(data) != 4:
            raise ValueError(f"error reply must be 4 bytes y0 6z ee FF, got {len(data)}")
        code = data[2]
        return ErrorReply(socket, ErrorCode(code) if code in KNOWN_CODES else code)
    raise ValueError(f"reply type 0x{data[1]:02X} is none of ACK 4z, completion 5z, error 6z")


@dataclass(frozen=True)
class AddressSetReply:
    """``88 30 0n FF``: n - 1 cameras answered on the chain."""

    next_address: int

    @property
    def cameras(self) -> int:
        return self.next_address - 1

    def serialize(self) -> bytes:
        return bytes((BROADCAST, 0x30, self.next_address, TERMINATOR))


@dataclass(frozen=True)
class IfClearReply:
    """IF_Clear comes back as it was sent: ``88 01 00 01 FF``."""

    def serialize(self) -> bytes:
        return if_clear()


def parse_broadcast_reply(data: bytes) -> AddressSetReply | IfClearReply:
    check_packet(data)
    if data[0] != BROADCAST:
        raise ValueError(f"broadcast reply must start with 88, got 0x{data[0]:02X}")
    if data == if_clear():
        return IfClearReply()
    if len(data) == 4 and data[1] == 0x30:
        if not 2 <= data[2] <= 8:
            raise ValueError(f"address set reply names next address {data[2]}, not 2..8")
        return AddressSetReply(data[2])
    raise ValueError(f"unknown broadcast reply {data.hex(' ')}")


# -- inquiry payloads --------------------------------------------------------------------


@dataclass(frozen=True)
class PanTilt:
    pan: int
    tilt: int


@dataclass(frozen=True)
class Version:
    """The version inquiry's answer: vendor (0x0020 Sony), model, ROM version, sockets."""

    vendor: int
    model: int
    rom: int
    sockets: int

    def serialize(self) -> bytes:
        return (
            self.vendor.to_bytes(2, "big") + self.model.to_bytes(2, "big")
            + self.rom.to_bytes(2, "big") + bytes((self.sockets,))
        )


def _payload_length(payload: bytes, length: int, what: str) -> bytes:
    if len(payload) != length:
        raise ValueError(f"{what} reply carries {len(payload)} bytes, expected {length}")
    return payload


def encode_power(on: bool) -> bytes:
    return b"\x02" if on else b"\x03"


def decode_power(payload: bytes) -> bool:
    """True for ``02`` (on), False for ``03`` (standby)."""
    value = _payload_length(payload, 1, "power inquiry")[0]
    if value not in (0x02, 0x03):
        raise ValueError(f"power state 0x{value:02X} is neither on (02) nor standby (03)")
    return value == 0x02


def decode_zoom_position(payload: bytes) -> int:
    return decode_nibbles(_payload_length(payload, 4, "zoom position"), signed=False)


decode_focus_position = decode_zoom_position


def encode_pan_tilt(position: PanTilt, pan_nibbles: int = 4) -> bytes:
    return encode_nibbles(position.pan, pan_nibbles) + encode_nibbles(position.tilt, 4)


def decode_pan_tilt(payload: bytes, pan_nibbles: int = 4) -> PanTilt:
    """``0w.. 0z 0z 0z 0z``: pan in ``pan_nibbles`` nibbles, then tilt in 4."""
    _payload_length(payload, pan_nibbles + 4, "pan-tilt position")
    return PanTilt(
        decode_nibbles(payload[:pan_nibbles]), decode_nibbles(payload[pan_nibbles:])
    )


def decode_version(payload: bytes) -> Version:
    _payload_length(payload, 7, "version inquiry")
    return Version(
        vendor=int.from_bytes(payload[0:2], "big"),
        model=int.from_bytes(payload[2:4], "big"),
        rom=int.from_bytes(payload[4:6], "big"),
        sockets=payload[6],
    )


# -- framing -----------------------------------------------------------------------------


class ViscaFramer:
    """Cuts a serial or TCP byte stream into packets ending in FF.

    Bytes before a header (high bit set) are skipped. A packet that grows past
    ``max_size`` without its terminator is dropped together with everything up to the
    next FF, after which framing resumes; ``discarded`` and ``overflows`` count both.
    """

    def __init__(self, max_size: int = MAX_PACKET) -> None:
        self.max_size = max_size
        self.discarded = 0
        self.overflows = 0
        self._buffer = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> list[bytes]:
        packets: list[bytes] = []
        for byte in data:
            if self._skipping:
                self.discarded += 1
                self._skipping = byte != TERMINATOR
            elif not self._buffer:
                if byte & 0x80 and byte != TERMINATOR:
                    self._buffer.append(byte)
                else:
                    self.discarded += 1
            elif byte == TERMINATOR:
                self._buffer.append(byte)
                packets.append(bytes(self._buffer))
                self._buffer.clear()
            elif len(self._buffer) + 1 >= self.max_size:
                # No room left for the terminator: this is not a packet.
                self.discarded += len(self._buffer) + 1
                self.overflows += 1
                self._buffer.clear()
                self._skipping = True
            else:
                self._buffer.append(byte)
        return packets
