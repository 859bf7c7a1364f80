"""Contec CMS50D+ live data (sans-I/O): 5-byte packets at 60 Hz, 19200 baud 8O1.

Packet layout (reverse-engineered; only byte 0 has bit 7 set, which is how the stream syncs):

======  ==========================================================================
byte 0  bit 7 sync; bits 0-3 signal strength; bit 4 finger out; bit 5 SpO2 dropping;
        bit 6 pulse beep
byte 1  plethysmogram sample, 0..127
byte 2  bits 0-3 bargraph; bit 4 probe error; bit 5 searching; bit 6 = pulse rate bit 7
byte 3  pulse rate bits 0-6 (pulse rate 255 = no reading)
byte 4  SpO2 % (127 = no reading)
======  ==========================================================================

What the parser produces (``observed_at`` is estimated per packet, see below):
- SpO2 and pulse rate (same codes as Nonin) at a reduced cadence: for the first packet,
  whenever the reading's state changes (a value appears or disappears, finger out,
  searching), after a gap in the stream, and otherwise once every ``numerics_every``
  packets (60 = once a second).
  Finger out / probe error / searching / a sentinel value give ``value=None``,
  ``status="X"`` and the reason in ``text`` ("finger-out", "searching", "no-reading").
- The plethysmogram as batches of ``pleth_batch`` samples (``vital="pleth"``, MDC 150452,
  raw device units 0..127, ``sample_rate`` 60.0), ``observed_at`` = the first sample's
  time. A batch only ever holds contiguous samples: it is cut short when the finger
  comes out (no waveform is sent while it is out), at a gap in the stream, and at
  ``flush()``.

Time: a serial read returns several packets at once, so packet ``i`` of the ``k`` completed
by one ``feed`` is estimated at ``now - (k-1-i)/60 s``. Consecutive packets are then kept
exactly 1/60 s apart (the device's clock) as long as that stays within ``max_clock_error``
of the estimate; beyond that the clock re-anchors on the estimate. When the estimate is
that much later than the device clock, packets are missing (a silence, a stall): the
pleth batch ends there and numerics are due again. When it is that much earlier, the
bytes came faster than real time (a replay): the times jump back, the batch goes on.

Resync: a byte with bit 7 set always starts a new packet; bytes outside a packet and
unfinished packets are counted in ``discarded_bytes``. Packets with an impossible SpO2
(101..126) are counted in ``discarded_packets`` and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

from devices.serial_monitors.codes import (
    FINGER_OUT,
    NO_READING,
    PLETH,
    PULSE_RATE,
    SEARCHING,
    SPO2,
    as_utc,
    reading,
    waveform,
)
from devices.serial_monitors.protocol import SerialProtocol
from devices.vitals import VitalSample

SYNC = 0x80
PULSE_RATE_UNAVAILABLE = 255
SPO2_UNAVAILABLE = 127
MAX_SPO2 = 100
SAMPLE_RATE = 60.0


def _check_range(name: str, value: int, maximum: int) -> None:
    if not 0 <= value <= maximum:
        raise ValueError(f"CMS50D+ {name} must be in 0..{maximum}, got {value}")


@dataclass(frozen=True)
class CMS50DPacket:
    """One live-data packet."""

    SIZE: ClassVar[int] = 5

    pleth: int
    pulse_rate: int
    spo2: int
    signal_strength: int = 0
    bargraph: int = 0
    finger_out: bool = False
    spo2_dropping: bool = False
    beep: bool = False
    probe_error: bool = False
    searching: bool = False

    def __post_init__(self) -> None:
        _check_range("pleth", self.pleth, 127)
        _check_range("pulse rate", self.pulse_rate, 255)
        _check_range("SpO2", self.spo2, 127)
        _check_range("signal strength", self.signal_strength, 15)
        _check_range("bargraph", self.bargraph, 15)

    @classmethod
    def parse(cls, data: bytes) -> CMS50DPacket:
        if len(data) != cls.SIZE:
            raise ValueError(f"CMS50D+ packet must be {cls.SIZE} bytes, got {len(data)}")
        if not data[0] & SYNC:
            raise ValueError("CMS50D+ packet byte 0 lacks the sync bit (bit 7)")
        for index in range(1, cls.SIZE):
            if data[index] & SYNC:
                raise ValueError(f"CMS50D+ packet byte {index} has bit 7 set")
        return cls(
            signal_strength=data[0] & 0x0F,
            finger_out=bool(data[0] & 0x10),
            spo2_dropping=bool(data[0] & 0x20),
            beep=bool(data[0] & 0x40),
            pleth=data[1],
            bargraph=data[2] & 0x0F,
            probe_error=bool(data[2] & 0x10),
            searching=bool(data[2] & 0x20),
            pulse_rate=((data[2] & 0x40) << 1) | data[3],
            spo2=data[4],
        )

    def to_bytes(self) -> bytes:
        byte0 = (SYNC | self.signal_strength | self.finger_out << 4
                 | self.spo2_dropping << 5 | self.beep << 6)
        byte2 = (self.bargraph | self.probe_error << 4 | self.searching << 5
                 | (self.pulse_rate & 0x80) >> 1)
        return bytes((byte0, self.pleth, byte2, self.pulse_rate & 0x7F, self.spo2))

    @property
    def sensor_off(self) -> bool:
        """No finger in the sensor, or the probe reports an error: nothing is measured."""
        return self.finger_out or self.probe_error

    @property
    def reason(self) -> str:
        """Why a value would be unavailable in this packet."""
        if self.sensor_off:
            return FINGER_OUT
        return SEARCHING if self.searching else NO_READING

    @property
    def spo2_reading(self) -> int | None:
        measuring = not (self.sensor_off or self.searching)
        return self.spo2 if measuring and 0 < self.spo2 <= MAX_SPO2 else None

    @property
    def pulse_rate_reading(self) -> int | None:
        measuring = not (self.sensor_off or self.searching)
        ok = 0 < self.pulse_rate < PULSE_RATE_UNAVAILABLE
        return self.pulse_rate if measuring and ok else None


class CMS50DParser:
    def __init__(self, device_id: str, *, numerics_every: int = 60, pleth_batch: int = 60,
                 sample_rate: float = SAMPLE_RATE, max_clock_error: float = 0.25) -> None:
        if numerics_every < 1 or pleth_batch < 1:
            raise ValueError("numerics_every and pleth_batch must be at least 1")
        if sample_rate <= 0 or max_clock_error <= 0:
            raise ValueError("sample_rate and max_clock_error must be positive")
        self.device_id = device_id
        self.numerics_every = numerics_every
        self.pleth_batch = pleth_batch
        self.sample_rate = sample_rate
        self.discarded_bytes = 0
        self.discarded_packets = 0
        self.last_packet: CMS50DPacket | None = None
        self._period = timedelta(seconds=1 / sample_rate)
        self._max_clock_error = timedelta(seconds=max_clock_error)
        self._partial = bytearray()
        self._last_at: datetime | None = None
        self._numerics_key: tuple[bool, bool, str] | None = None
        self._since_numerics = 0
        self._pleth: list[float] = []
        self._pleth_at: datetime | None = None

    def feed(self, data: bytes, now: datetime) -> list[VitalSample]:
        at = as_utc(now)
        packets = self._packets(data)
        samples: list[VitalSample] = []
        for index, packet in enumerate(packets):
            estimate = at - (len(packets) - 1 - index) * self._period
            self._on_packet(packet, estimate, samples)
        return samples

    def flush(self) -> list[VitalSample]:
        """End of stream: the pending waveform batch; the next packet re-anchors the clock."""
        self.discarded_bytes += len(self._partial)
        self._partial.clear()
        self._last_at = None
        self._numerics_key = None
        return self._flush_pleth()

    def _packets(self, data: bytes) -> list[CMS50DPacket]:
        packets: list[CMS50DPacket] = []
        for byte in data:
            if byte & SYNC:
                self.discarded_bytes += len(self._partial)
                self._partial[:] = (byte,)
            elif self._partial:
                self._partial.append(byte)
                if len(self._partial) == CMS50DPacket.SIZE:
                    packet = CMS50DPacket.parse(bytes(self._partial))
                    self._partial.clear()
                    if MAX_SPO2 < packet.spo2 < SPO2_UNAVAILABLE:
                        self.discarded_packets += 1
                    else:
                        packets.append(packet)
            else:
                self.discarded_bytes += 1
        return packets

    def _on_packet(self, packet: CMS50DPacket, estimate: datetime,
                   samples: list[VitalSample]) -> None:
        at = self._timestamp(estimate, samples)
        self.last_packet = packet
        spo2, pulse_rate = packet.spo2_reading, packet.pulse_rate_reading
        key = (spo2 is None, pulse_rate is None, packet.reason)
        self._since_numerics += 1
        if key != self._numerics_key or self._since_numerics >= self.numerics_every:
            self._numerics_key = key
            self._since_numerics = 0
            samples.append(reading(SPO2, self.device_id, at, spo2, packet.reason))
            samples.append(reading(PULSE_RATE, self.device_id, at, pulse_rate, packet.reason))
        if packet.sensor_off:
            samples.extend(self._flush_pleth())
            return
        if not self._pleth:
            self._pleth_at = at
        self._pleth.append(float(packet.pleth))
        if len(self._pleth) >= self.pleth_batch:
            samples.extend(self._flush_pleth())

    def _timestamp(self, estimate: datetime, samples: list[VitalSample]) -> datetime:
        if self._last_at is not None:
            expected = self._last_at + self._period
            if estimate - expected > self._max_clock_error:
                # a silence, packets are missing: batches hold contiguous samples only,
                # and numerics are due again
                samples.extend(self._flush_pleth())
                self._numerics_key = None
            elif expected - estimate <= self._max_clock_error:
                self._last_at = expected
                return expected
            # else faster than real time (a replay, a burst): nothing is missing
        self._last_at = estimate
        return estimate

    def _flush_pleth(self) -> list[VitalSample]:
        if not self._pleth or self._pleth_at is None:
            return []
        sample = waveform(PLETH, self.device_id, self._pleth_at, self._pleth, self.sample_rate)
        self._pleth = []
        self._pleth_at = None
        return [sample]


CMS50D = SerialProtocol(name="cms50d", baudrate=19200, parity="O", parser_factory=CMS50DParser)
