"""A bedside-monitor simulator: ORU^R01 (IHE PCD-01 style) vitals over one MLLP connection.

Every ``interval`` seconds it sends heart rate, SpO2, pulse rate, respiration rate and
temperature (NIBP every ``nibp_interval``) as slowly varying plausible values, with
their alarm limits in OBX-7 and an OBX-8 flag (``H``/``L`` outside the limits,
``HH``/``LL`` beyond the panic limits, see ``LIMITS``), plus the pleth waveform of the
interval as ``NA`` OBX chunks (100 Hz, one chunk per second) each followed by its
``MDC_ATTR_SAMP_RATE``. ``MonitorProfile.message_type`` ``ORF^R04^ORF_R04`` sends the
same rows as the query response some Philips monitors send. ``hold(vital, value)``
pins a vital (e.g. SpO2 at 82 for an alarm demo) and ``alarm_message`` composes an
IHE PCD-04 ORU^R40 alarm report (``start``/``end``). It waits for each ACK: ``AE``
or no ACK -> resend the same message (same MSH-10) up to ``max_resends`` times;
``AR`` -> drop the message and reconnect (as GE monitors do).

    python -m devices.hl7.simulator --host 127.0.0.1 --port 2575 [--interval 5] [--count N]
        [--message-type ORF^R04^ORF_R04] [--alarm-demo]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import math
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import hl7

from . import codes
from .escape import DEFAULT_SEPARATORS, escape
from .mllp import Frame, MLLPFramer, encode_frame
from .timestamp import format_timestamp

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorProfile:
    """Who the simulated monitor is and whom it monitors."""

    device_id: str = "0012A1FFFE000001"
    """EUI-64, 16 hex digits (MSH-3 and OBX-18)."""
    application: str = "HZSIM"
    facility: str = "HUIZHEN SIM"
    patient_id: str = "SIM0001"
    patient_name: tuple[str, str] = ("TEST", "PATIENT")
    """(family, given)."""
    ward: str = "ICU"
    bed: str = "01"
    charset: str = "UNICODE UTF-8"
    """MSH-18: the message is encoded in it ("GB 18030-2000", "8859/1", ...)."""
    waveform_rate: float = 100.0
    waveform_chunk: float = 1.0
    """Seconds of waveform per NA OBX."""
    nibp_interval: float = 300.0
    message_type: str = "ORU^R01^ORU_R01"
    """MSH-9: ``ORU^R01^ORU_R01`` or ``ORF^R04^ORF_R04`` (the same OBX rows)."""

    def __post_init__(self) -> None:
        if codes.codec_for_charset(self.charset) is None:
            raise ValueError(f"unsupported MSH-18 character set {self.charset!r}")
        if not self.waveform_rate > 0 or not self.waveform_chunk > 0:
            raise ValueError("waveform_rate and waveform_chunk must be positive")
        if self.message_type.split("^")[:2] not in (["ORU", "R01"], ["ORF", "R04"]):
            raise ValueError(f"unsupported message type {self.message_type!r}")

    @property
    def codec(self) -> str:
        codec = codes.codec_for_charset(self.charset)
        assert codec is not None
        return codec


@dataclass
class _Vital:
    value: float
    baseline: float
    low: float
    high: float
    volatility: float
    """Standard deviation of the change per sqrt(second)."""

    def advance(self, seconds: float, rng: random.Random) -> None:
        """Ornstein-Uhlenbeck step: a random walk pulled back towards the baseline."""
        pull = 1.0 - math.exp(-seconds / 120.0)
        noise = rng.gauss(0.0, self.volatility * math.sqrt(max(seconds, 0.0)))
        self.value += (self.baseline - self.value) * pull + noise
        self.value = min(max(self.value, self.low), self.high)


@dataclass
class VitalsModel:
    """Plausible, slowly varying adult vitals; pure (``rng`` and elapsed time given)."""

    rng: random.Random = field(default_factory=random.Random)
    hr: _Vital = field(default_factory=lambda: _Vital(72, 72, 45, 140, 0.8))
    spo2: _Vital = field(default_factory=lambda: _Vital(97.5, 97.5, 88, 100, 0.15))
    rr: _Vital = field(default_factory=lambda: _Vital(16, 16, 8, 30, 0.3))
    temp: _Vital = field(default_factory=lambda: _Vital(36.8, 36.8, 35.5, 39.5, 0.01))
    nibp_sys: _Vital = field(default_factory=lambda: _Vital(122, 122, 85, 180, 1.0))
    nibp_dia: _Vital = field(default_factory=lambda: _Vital(78, 78, 45, 110, 0.6))
    pleth_phase: float = 0.0

    def advance(self, seconds: float) -> None:
        for vital in (self.hr, self.spo2, self.rr, self.temp, self.nibp_sys, self.nibp_dia):
            vital.advance(seconds, self.rng)
        if self.nibp_dia.value > self.nibp_sys.value - 20:
            self.nibp_dia.value = self.nibp_sys.value - 20

    def pleth(self, count: int, rate: float) -> list[int]:
        """``count`` pleth samples (0..100 arbitrary units) continuing the last call's."""
        out = []
        beat_hz = self.hr.value / 60.0
        for _ in range(count):
            phase = self.pleth_phase % 1.0
            # A systolic upstroke, then a decay with a dicrotic notch.
            wave = math.exp(-((phase - 0.18) / 0.08) ** 2) \
                + 0.35 * math.exp(-((phase - 0.45) / 0.1) ** 2)
            out.append(round(10 + 80 * wave + self.rng.gauss(0.0, 0.8)))
            self.pleth_phase += beat_hz / rate
        return out


@dataclass(frozen=True)
class Limits:
    """Alarm limits of a vital: outside low..high is ``L``/``H``, beyond the panic ones
    ``LL``/``HH`` (adult defaults of a typical bedside monitor)."""

    low: float
    high: float
    panic_low: float
    panic_high: float

    def flag(self, value: float) -> str:
        if value < self.panic_low:
            return "LL"
        if value > self.panic_high:
            return "HH"
        if value < self.low:
            return "L"
        return "H" if value > self.high else ""

    @property
    def range(self) -> str:
        return f"{self.low:g}-{self.high:g}"


LIMITS = {
    "hr": Limits(50, 120, 40, 150),
    "pr": Limits(50, 120, 40, 150),
    "spo2": Limits(90, 100, 85, 101),
    "rr": Limits(8, 30, 5, 40),
    "temp": Limits(36.0, 38.5, 35.0, 40.0),
    "nibp_sys": Limits(90, 160, 70, 200),
    "nibp_dia": Limits(50, 95, 40, 120),
    "nibp_mean": Limits(60, 110, 50, 130),
}

_ALARM_VITALS = {
    "hr": ("147842", "MDC_ECG_HEART_RATE", "1.1.1.147842", "264864^MDC_DIM_BEAT_PER_MIN^MDC"),
    "spo2": ("150456", "MDC_PULS_OXIM_SAT_O2", "1.2.1.150456", "262688^MDC_DIM_PERCENT^MDC"),
    "rr": ("151562", "MDC_RESP_RATE", "1.3.1.151562", "264928^MDC_DIM_RESP_PER_MIN^MDC"),
}


def compose_oru(profile: MonitorProfile, model: VitalsModel, *, control_id: str,
                now: datetime, wave_start: datetime, wave: Sequence[int],
                nibp_at: datetime | None, held: Mapping[str, float] | None = None) -> str:
    """One ORU^R01 (or ORF^R04) message (text, segments ended by ``\\r``), like a GE B40.

    ``held`` replaces the model's value of those vitals ("spo2": 82.0).
    """
    held = held or {}
    seps = DEFAULT_SEPARATORS
    ts = format_timestamp(now)
    eui = profile.device_id
    obr_id = f"{eui}{now:%Y%m%d%H%M%S}^{escape(profile.application, seps)}^{eui}^EUI-64"
    segments = _header(profile, ts, profile.message_type, control_id,
                       "PCD_DEC_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO")
    segments.append(f"OBR|1|{obr_id}|{obr_id}|182777000^monitoring of patient^SCT|||{ts}")
    rows: list[str] = ["|69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X"]

    def numeric(vital: str, code: str, name: str, sub: str, value: float, digits: int,
                unit: str, at: str = ts) -> None:
        value = held.get(vital, value)
        text = f"{value:.{digits}f}"
        limits = LIMITS[vital]
        flag = limits.flag(float(text))
        rows.append(f"NM|{code}^{name}^MDC|{sub}|{text}|{unit}|{limits.range}|{flag}|||R|||{at}")

    numeric("hr", "147842", "MDC_ECG_HEART_RATE", "1.1.1.147842", model.hr.value, 0,
            "264864^MDC_DIM_BEAT_PER_MIN^MDC")
    numeric("spo2", "150456", "MDC_PULS_OXIM_SAT_O2", "1.2.1.150456", model.spo2.value, 0,
            "262688^MDC_DIM_PERCENT^MDC")
    numeric("pr", "149530", "MDC_PULS_OXIM_PULS_RATE", "1.2.1.149530", model.hr.value, 0,
            "264864^MDC_DIM_BEAT_PER_MIN^MDC")
    numeric("rr", "151562", "MDC_RESP_RATE", "1.3.1.151562", model.rr.value, 0,
            "264928^MDC_DIM_RESP_PER_MIN^MDC")
    numeric("temp", "150344", "MDC_TEMP", "1.4.1.150344", model.temp.value, 1,
            "268192^MDC_DIM_DEGC^MDC")
    if nibp_at is not None:
        at = format_timestamp(nibp_at)
        sys_, dia = model.nibp_sys.value, model.nibp_dia.value
        for code, name, value in (("150021", "SYS", sys_), ("150022", "DIA", dia),
                                  ("150023", "MEAN", dia + (sys_ - dia) / 3)):
            numeric(f"nibp_{name.lower()}", code, f"MDC_PRESS_BLD_NONINV_{name}",
                    f"1.5.1.{code}", value, 0, "266016^MDC_DIM_MMHG^MDC", at)
    chunk = max(1, round(profile.waveform_rate * profile.waveform_chunk))
    for first in range(0, len(wave), chunk):
        start = wave_start + timedelta(seconds=first / profile.waveform_rate)
        samples = "^".join(str(v) for v in wave[first:first + chunk])
        rows.append(f"NA|150452^MDC_PULS_OXIM_PLETH^MDC|1.2.1.150452|{samples}|"
                    f"262656^MDC_DIM_DIMLESS^MDC|||||R|||"
                    f"{format_timestamp(start, milliseconds=True)}")
        rows.append(f"NM|0^MDC_ATTR_SAMP_RATE^MDC|1.2.1.150452.1|{profile.waveform_rate:g}|"
                    "264608^MDC_DIM_PER_SEC^MDC|||||R")
    device = f"{eui}^EUI-64"
    for number, row in enumerate(rows, 1):
        padding = "|" * (15 - row.count("|"))  # row holds OBX-2..; device id in OBX-18
        segments.append(f"OBX|{number}|{row}{padding}|{device}")
    return "\r".join(segments) + "\r"


def _header(profile: MonitorProfile, ts: str, message_type: str, control_id: str,
            profile_id: str) -> list[str]:
    seps = DEFAULT_SEPARATORS
    eui = profile.device_id
    family, given = (escape(part, seps) for part in profile.patient_name)
    return [
        f"MSH|^~\\&|{escape(profile.application, seps)}^{eui}^EUI-64|"
        f"{escape(profile.facility, seps)}|||{ts}||{message_type}|{control_id}|P|2.6|||NE|AL||"
        f"{profile.charset}|||{profile_id}",
        f"PID|||{escape(profile.patient_id, seps)}^^^HOSP^MR||{family}^{given}^^^^^L",
        f"PV1||I|{escape(profile.ward, seps)}^^{escape(profile.bed, seps)}",
    ]


def compose_alarm(profile: MonitorProfile, *, control_id: str, now: datetime, vital: str,
                  value: float, phase: str, priority: str = "PH", high: bool = False,
                  text: str | None = None) -> str:
    """An IHE PCD-04 ORU^R40: one physiological alarm of ``vital`` (its limit crossed).

    Facets by OBX-4 ``<source>.n``: 1 the event (``MDC_EVT_LO``/``MDC_EVT_HI``, OBX-8
    ``priority~SP``, OBX-5 the monitor's text), 2 the source value and its limits,
    3 the phase (``start``/``continue``/``end``), 4 the alarm state, 5 inactivation.
    """
    seps = DEFAULT_SEPARATORS
    ts = format_timestamp(now)
    eui = profile.device_id
    code, name, sub, unit = _ALARM_VITALS[vital]
    event = "196648^MDC_EVT_HI^MDC" if high else "196670^MDC_EVT_LO^MDC"
    state = "inactive" if phase == "end" else "active"
    segments = _header(profile, ts, "ORU^R40^ORU_R40", control_id,
                       "IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.4.4^ISO")
    segments.append(f"OBR|1|{control_id}^{escape(profile.application, seps)}^{eui}^EUI-64||"
                    f"196616^MDC_EVT_ALARM^MDC|||{ts}")
    device = f"{eui}^EUI-64"
    rows = [
        f"ST|{event}|{sub}.1|{escape(text or '', seps)}|||{priority}~SP|||F|||{ts}",
        f"NM|{code}^{name}^MDC|{sub}.2|{value:g}|{unit}|{LIMITS[vital].range}||||F|||{ts}",
        f"ST|68481^MDC_ATTR_EVENT_PHASE^MDC|{sub}.3|{phase}||||||F|||{ts}",
        f"ST|68482^MDC_ATTR_ALARM_STATE^MDC|{sub}.4|{state}||||||F|||{ts}",
        f"ST|68483^MDC_ATTR_ALARM_INACTIVATION_STATE^MDC|{sub}.5|enabled||||||F|||{ts}",
    ]
    for number, row in enumerate(rows, 1):
        padding = "|" * (15 - row.count("|"))
        segments.append(f"OBX|{number}|{row}{padding}|{device}")
    return "\r".join(segments) + "\r"


@dataclass
class SimulatorStats:
    messages: int = 0
    acked: int = 0
    resent: int = 0
    failed: int = 0
    """Messages given up after ``max_resends`` (AE or no ACK)."""
    rejected: int = 0
    connects: int = 0


def _utc_now() -> datetime:
    return datetime.now(UTC)


class MonitorSimulator:
    """One simulated monitor: ``await MonitorSimulator(host, port).run(count)``."""

    def __init__(self, host: str, port: int, *, interval: float = 5.0,
                 profile: MonitorProfile | None = None, seed: int | None = None,
                 max_resends: int = 3, ack_timeout: float = 10.0,
                 retry_delay: float = 1.0, clock: Callable[[], datetime] = _utc_now,
                 alarm_demo: bool = False) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.host, self.port = host, port
        self.interval = interval
        self.profile = profile or MonitorProfile()
        self.model = VitalsModel(rng=random.Random(seed))
        self.max_resends = max_resends
        self.ack_timeout = ack_timeout
        self.retry_delay = retry_delay
        self.stats = SimulatorStats()
        self._clock = clock
        self._ids = itertools.count(1)
        self._wave_end: datetime | None = None
        self._last_nibp: datetime | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._framer = MLLPFramer()
        self._frames: deque[bytes] = deque()
        self.held: dict[str, float] = {}
        self.alarm_demo = alarm_demo

    def next_message(self, now: datetime) -> tuple[str, bytes]:
        """Advance the model to ``now``; the next message's control id and bytes."""
        self.model.advance(self.interval)
        wave_start = self._wave_end or now - timedelta(seconds=self.interval)
        count = max(0, round((now - wave_start).total_seconds() * self.profile.waveform_rate))
        wave = self.model.pleth(count, self.profile.waveform_rate)
        self._wave_end = wave_start + timedelta(seconds=count / self.profile.waveform_rate)
        nibp_at = None
        if self._last_nibp is None or \
                (now - self._last_nibp).total_seconds() >= self.profile.nibp_interval:
            nibp_at = self._last_nibp = now
        control_id = f"{self.profile.device_id[-6:]}{next(self._ids):08d}"
        text = compose_oru(self.profile, self.model, control_id=control_id, now=now,
                           wave_start=wave_start, wave=wave, nibp_at=nibp_at, held=self.held)
        return control_id, text.encode(self.profile.codec)

    def hold(self, vital: str, value: float | None) -> None:
        """Send ``value`` for ``vital`` (a ``LIMITS`` key) from now on; None lets it go."""
        if vital not in LIMITS:
            raise ValueError(f"unknown vital {vital!r}")
        if value is None:
            self.held.pop(vital, None)
        else:
            self.held[vital] = value

    def alarm_message(self, now: datetime, vital: str, phase: str, *, value: float,
                      priority: str = "PH", high: bool = False,
                      text: str | None = None) -> tuple[str, bytes]:
        """An ORU^R40 alarm report (``compose_alarm``): its control id and bytes."""
        control_id = f"{self.profile.device_id[-6:]}{next(self._ids):08d}"
        message = compose_alarm(self.profile, control_id=control_id, now=now, vital=vital,
                                value=value, phase=phase, priority=priority, high=high,
                                text=text)
        return control_id, message.encode(self.profile.codec)

    async def _alarm_demo(self, index: int) -> None:
        """Every 6 messages: SpO2 falls to 82 % (OBX-8 ``LL`` and a PCD-04 alarm
        ``start``) for two messages, then recovers (the alarm ``end``)."""
        step = index % 6
        if step == 2:
            self.hold("spo2", 82.0)
            await self.send(*self.alarm_message(self._clock(), "spo2", "start", value=82.0,
                                                text="SpO2 LOW"))
        elif step == 4:
            self.hold("spo2", None)
            await self.send(*self.alarm_message(self._clock(), "spo2", "end", value=95.0,
                                                text="SpO2 LOW"))

    async def run(self, count: int | None = None) -> SimulatorStats:
        """Send ``count`` messages (forever when None), one every ``interval`` seconds."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        try:
            for index in itertools.count() if count is None else range(count):
                if self.alarm_demo:
                    await self._alarm_demo(index)
                control_id, message = self.next_message(self._clock())
                await self.send(control_id, message)
                next_at += self.interval
                await asyncio.sleep(max(0.0, next_at - loop.time()))
        finally:
            await self.close()
        return self.stats

    async def send(self, control_id: str, message: bytes) -> str:
        """Send until ``AA``/``AR`` or out of resends; returns the last ACK code ("" = none)."""
        self.stats.messages += 1
        code = ""
        for attempt in range(self.max_resends + 1):
            if attempt:
                self.stats.resent += 1
                await asyncio.sleep(self.retry_delay)
            code = await self._try(control_id, message)
            if code == "AA":
                self.stats.acked += 1
                return code
            if code == "AR":
                self.stats.rejected += 1
                logger.warning("message %s rejected (AR): dropped, reconnecting", control_id)
                await self.close()
                return code
            logger.info("message %s: %s, attempt %d of %d", control_id, code or "no ACK",
                        attempt + 1, self.max_resends + 1)
        self.stats.failed += 1
        logger.warning("message %s given up after %d resends", control_id, self.max_resends)
        return code

    async def _try(self, control_id: str, message: bytes) -> str:
        try:
            reader, writer = await self._connection()
            writer.write(encode_frame(message))
            await writer.drain()
            async with asyncio.timeout(self.ack_timeout):
                return await self._ack_for(reader, control_id)
        except (OSError, TimeoutError, EOFError) as exc:
            logger.info("no ACK for %s (%s)", control_id, type(exc).__name__)
            await self.close()
            return ""

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            self._framer, self._frames = MLLPFramer(), deque()
            self.stats.connects += 1
            logger.info("connected to %s:%d", self.host, self.port)
        return self._reader, self._writer

    async def _ack_for(self, reader: asyncio.StreamReader, control_id: str) -> str:
        """The MSA-1 of the ACK whose MSA-2 is ``control_id`` (other ACKs are skipped)."""
        while True:
            while self._frames:
                code, acked_id = _read_msa(self._frames.popleft(), self.profile.codec)
                if acked_id == control_id:
                    return code
            data = await reader.read(65536)
            if not data:
                raise EOFError("connection closed by the receiver")
            self._frames.extend(e.payload for e in self._framer.feed(data)
                                if isinstance(e, Frame))

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _read_msa(payload: bytes, codec: str) -> tuple[str, str]:
    try:
        msa = hl7.parse(payload.decode(codec, "replace")).segment("MSA")
        return str(msa(1)), str(msa(2))
    except Exception:
        return "", ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devices.hl7.simulator",
                                     description="Simulated bedside monitor (HL7 ORU^R01 over "
                                                 "MLLP).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between messages")
    parser.add_argument("--count", type=int, default=None, help="messages to send (default: "
                        "until interrupted)")
    parser.add_argument("--device-id", default=MonitorProfile.device_id, help="EUI-64")
    parser.add_argument("--patient-id", default=MonitorProfile.patient_id)
    parser.add_argument("--charset", default=MonitorProfile.charset, help="MSH-18")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--message-type", default=MonitorProfile.message_type,
                        help="MSH-9: ORU^R01^ORU_R01 or ORF^R04^ORF_R04")
    parser.add_argument("--alarm-demo", action="store_true",
                        help="SpO2 falls to 82 %% every 6 messages (OBX-8 flags and ORU^R40 "
                             "alarm start/end)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        profile = MonitorProfile(device_id=args.device_id, patient_id=args.patient_id,
                                 charset=args.charset, message_type=args.message_type)
    except ValueError as exc:
        parser.error(str(exc))
    simulator = MonitorSimulator(args.host, args.port, interval=args.interval,
                                 profile=profile, seed=args.seed, alarm_demo=args.alarm_demo)
    try:
        stats = asyncio.run(simulator.run(args.count))
    except KeyboardInterrupt:
        stats = simulator.stats
    logger.info("sent %d messages: %d acknowledged AA, %d resends, %d given up, %d rejected",
                stats.messages, stats.acked, stats.resent, stats.failed, stats.rejected)
    return 0 if stats.acked == stats.messages else 1


if __name__ == "__main__":
    raise SystemExit(main())
