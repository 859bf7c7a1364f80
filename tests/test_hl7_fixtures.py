"""Shared by the HL7 tests: messages (the GE B40 sample, a builder), stores on SQLite and
PostgreSQL, a running listener and a raw MLLP client. Its own tests check the fixtures.

PostgreSQL: ``HUIZHEN_TEST_POSTGRES_URL`` (default the local ``test`` database). Each
store gets its own schema, dropped afterwards, so concurrent runs do not clash. An
unreachable server or a missing driver FAILS the tests that use it: never a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hl7
import pytest
import sqlalchemy as sa

from devices.hl7.errors import MessageError
from devices.hl7.listener import HL7Listener, ListenerConfig, StoredCallback
from devices.hl7.oru import OruConfig, OruMessage, decode_oru
from devices.hl7.reference import decode_oru_reference
from devices.hl7.storage import SampleStore
from devices.vitals import SampleSink

PG_URL = os.environ.get("HUIZHEN_TEST_POSTGRES_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")
STORE_KINDS = ["sqlite", "postgresql"]

# The public GE B40/B20 sample (HL7 Reference Manual, PCD-01), as in hl7-vitals.md.
GE_SAMPLE = "\r".join([
    "MSH|^~\\&|VSP^080019FFFE134535^EUI-64|GE Healthcare|||20130122134100||ORU^R01^ORU_R01|"
    "004097134535|P|2.6|||NE|AL||UNICODE UTF-8|||PCD_DEC_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1"
    "^ISO",
    "PID|||HED12^^^PID^MR||LAZY^KITTY^^^^^L|||",
    "PV1||R|SURGERY^^V2",
    "OBR|1|080019FFFE13453520130122134100^VSP^080019FFFE134535^EUI-64|080019FFFE1345352013012213"
    "4100^VSP^080019FFFE134535^EUI-64|182777000^monitoring of patient^SCT|||20130122134100",
    "OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X",
    "OBX|43|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.22.1.2|100|262688^MDC_DIM_PERCENT^MDC|||||R|||||"
    "||080019FFFE0B4020^B40_GE",
    "OBX|45|NM|151562^MDC_RESP_RATE^MDC|1.20.1.1|18|264928^MDC_DIM_RESP_PER_MIN^MDC|||||R|||||||0"
    "80019FFFE0B4020^B40_GE",
    "OBX|49|NM|150344^MDC_TEMP^MDC|1.26.1.1|37.1|268192^MDC_DIM_DEGC^MDC|||||R|||||||080019FFFE0B"
    "4020^B40_GE",
]) + "\r"
GE_CONTROL_ID = "004097134535"
GE_PATIENT_ID = "HED12"
GE_PATIENT_DATA = ("HED12", "LAZY", "KITTY")
"""Strings that must never appear in a log line, an error message or an ACK."""


# ORF^R04 as some Philips monitors answer (MSA/QRD/QRF before the usual PID/OBR/OBX rows),
# with MDIL codes, OBX-7 limits and an OBX-8 flag.
ORF_SAMPLE = "\r".join([
    "MSH|^~\\&|IntelliVue^00091200BE0A1234^EUI-64|Philips|||20240305101500+0800||ORF^R04^ORF_R04|"
    "PH0000417|P|2.4|||AL|NE||UNICODE UTF-8",
    "MSA|AA|Q0001",
    "QRD|20240305101500+0800|R|I|Q0001|||1^RD|HED12|RES",
    "QRF|MON||20240305100000+0800|20240305101500+0800",
    "PID|||HED12^^^HOSP^MR||LAZY^KITTY",
    "OBR|1|||182777000^monitoring of patient^SCT|||20240305101500+0800",
    "OBX|1|NM|0002-4182^HR^MDIL|1.1.1.1|128|0004-0aa0^bpm^MDIL|50-120|H|||R|||20240305101455+0800",
    "OBX|2|NM|0002-4bb8^SpO2^MDIL|1.2.1.1|96|0004-0220^%^MDIL|90-100|N|||R|||20240305101455+0800",
    "OBX|3|NM|0002-500a^Resp^MDIL|1.3.1.1|17|0004-0ae0^rpm^MDIL|||||R|||20240305101455+0800",
]) + "\r"
ORF_CONTROL_ID = "PH0000417"
ORF_DEVICE = "00091200BE0A1234"


def r40(*rows: str, control_id: str = "ALM00001", sent_at: str = "20240305101600+0800",
        obr: str = "OBR|1|ALM1^ACME^0012A1FFFE000001^EUI-64||196616^MDC_EVT_ALARM^MDC|||"
                   "20240305101600+0800") -> str:
    """An ORU^R40 (IHE PCD-04); each row is an OBX from OBX-2 on, or a whole OBR segment."""
    segments = [
        "MSH|^~\\&|ACME^0012A1FFFE000001^EUI-64|ACME|||"
        f"{sent_at}||ORU^R40^ORU_R40|{control_id}|P|2.6|||AL|NE||UNICODE UTF-8|||"
        "IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.4.4^ISO",
        "PID|||HED12^^^PID^MR||LAZY^KITTY^^^^^L",
        "PV1||I|ICU^^12",
        obr,
    ]
    number = 0
    for row in rows:
        if row.startswith("OBR|"):
            segments.append(row)
            continue
        number += 1
        segments.append(f"OBX|{number}|{row}")
    return "\r".join(segments) + "\r"


def spo2_alarm_rows(phase: str, value: str = "82", priority: str = "PH~SP",
                    time: str = "20240305101558+0800", sub: str = "1.2.1.150456") -> list[str]:
    """The five facets of an SpO2-low alarm (event, source, phase, state, inactivation)."""
    state = "inactive" if phase == "end" else "active"
    return [
        f"ST|196670^MDC_EVT_LO^MDC|{sub}.1|SpO2 LOW|||{priority}|||F|||{time}",
        f"NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|{sub}.2|{value}|262688^MDC_DIM_PERCENT^MDC|90-100"
        f"||||F|||{time}",
        f"ST|68481^MDC_ATTR_EVENT_PHASE^MDC|{sub}.3|{phase}||||||F|||{time}",
        f"ST|68482^MDC_ATTR_ALARM_STATE^MDC|{sub}.4|{state}||||||F|||{time}",
        f"ST|68483^MDC_ATTR_ALARM_INACTIVATION_STATE^MDC|{sub}.5|enabled||||||F|||{time}",
    ]


R40_START = r40(*spo2_alarm_rows("start"))
R40_END = r40(*spo2_alarm_rows("end", value="95"), control_id="ALM00002")


def oru(*obx: str, charset: str = "UNICODE UTF-8", control_id: str = "MSG00001",
        patient: str = "HED12^^^PID^MR||LAZY^KITTY^^^^^L", sent_at: str = "20130122134100",
        message_type: str = "ORU^R01^ORU_R01", version: str = "2.6", obr_time: str = "",
        sender: str = "VSP^080019FFFE134535^EUI-64") -> str:
    """An ORU^R01 message; each ``obx`` is the segment from OBX-2 on (OBX-1 is numbered)."""
    segments = [
        f"MSH|^~\\&|{sender}|GE Healthcare|||{sent_at}||{message_type}|{control_id}|P|"
        f"{version}|||NE|AL||{charset}",
        f"PID|||{patient}",
        "PV1||R|SURGERY^^V2",
        f"OBR|1|X1^VSP|X1^VSP|182777000^monitoring of patient^SCT|||{obr_time}",
    ]
    segments += [f"OBX|{n}|{row}" for n, row in enumerate(obx, 1)]
    return "\r".join(segments) + "\r"


def nm(code: str, value: str, unit: str = "", *, time: str = "", status: str = "R",
       device: str = "080019FFFE0B4020^EUI-64", sub: str = "1.1.1.1") -> str:
    """An OBX (from OBX-2) with value type NM; ``code`` is OBX-3 (``code^name^system``)."""
    return f"NM|{code}|{sub}|{value}|{unit}|||||{status}|||{time}||||{device}"


def decode_both(raw: bytes, config: OruConfig | None = None) -> OruMessage:
    """``decode_oru(raw)``, checked against the python-hl7 reference reading of ``raw``.

    Both must give the same message (samples, alarms, skipped rows), or the same error
    (type, text and location). Every message the HL7 reader tests decode goes through
    here, so each fixture is read both ways.
    """
    outcomes: list[Any] = []
    errors: list[MessageError] = []
    for reader in (decode_oru, decode_oru_reference):
        try:
            outcomes.append(reader(raw, config))
        except MessageError as error:
            outcomes.append((type(error), str(error), error.location, error.code))
            errors.append(error)
    lean, reference = outcomes
    assert lean == reference, "the reader and the python-hl7 reference disagree"
    if errors:
        raise errors[0]
    return lean  # type: ignore[no-any-return]


def frame(payload: bytes) -> bytes:
    return b"\x0b" + payload + b"\x1c\r"


# --- stores --------------------------------------------------------------------------

def _postgres_engine() -> sa.Engine:
    try:
        engine = sa.create_engine(PG_URL)
        with engine.connect():
            pass
    except ModuleNotFoundError as exc:
        pytest.fail(f"no PostgreSQL driver for {PG_URL} ({exc}): install psycopg")
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_URL} is unreachable: {exc.orig}")
    return engine


@contextlib.contextmanager
def postgres_schema() -> Any:
    """A fresh schema in the test database, dropped on exit."""
    engine = _postgres_engine()
    name = f"hl7_test_{uuid.uuid4().hex[:16]}"
    with engine.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    try:
        yield name
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
        engine.dispose()


@contextlib.asynccontextmanager
async def open_store(kind: str, tmp_path: Path, **options: Any) -> AsyncIterator[SampleStore]:
    """A ``SampleStore`` on SQLite (in ``tmp_path``) or PostgreSQL (in its own schema)."""
    if kind == "sqlite":
        async with SampleStore(data_dir=tmp_path, **options) as store:
            yield store
        return
    assert kind == "postgresql", kind
    with postgres_schema() as schema:
        async with SampleStore(PG_URL, schema=schema, **options) as store:
            yield store


# --- listener and client --------------------------------------------------------------

@contextlib.asynccontextmanager
async def running_listener(sink: SampleSink, *, on_stored: StoredCallback | None = None,
                           **config: Any) -> AsyncIterator[HL7Listener]:
    listener = HL7Listener(sink, ListenerConfig(port=0, **config), on_stored=on_stored)
    await listener.start()
    try:
        yield listener
    finally:
        await listener.stop(grace=1.0)


class RawClient:
    """An MLLP client on plain asyncio streams: exact bytes out, frames in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_message(self, text: str, encoding: str = "utf-8") -> None:
        await self.send(frame(text.encode(encoding)))

    async def read_frame(self, timeout: float = 5.0) -> bytes:
        data = await asyncio.wait_for(self.reader.readuntil(b"\x1c\r"), timeout)
        assert data.startswith(b"\x0b"), data[:10]
        return data[1:-2]

    async def read_ack(self, timeout: float = 5.0, encoding: str = "utf-8") -> Any:
        return hl7.parse(( await self.read_frame(timeout)).decode(encoding))

    async def nothing_within(self, seconds: float) -> bool:
        """True if no byte arrives (and the connection stays open) for ``seconds``."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected bytes or end of stream: {data!r}")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


def msa(ack: Any) -> tuple[str, str, str]:
    """MSA-1, MSA-2, MSA-3 of a parsed ACK."""
    segment = ack.segment("MSA")
    return tuple(str(segment[i]) if i < len(segment) else "" for i in (1, 2, 3))  # type: ignore[return-value]


class RecordingSink:
    """A sink that keeps what it is given (and can be made to fail ``failures`` times)."""

    def __init__(self, failures: int = 0, then: SampleSink | None = None) -> None:
        self.batches: list[list[Any]] = []
        self.failures = failures
        self.then = then

    async def __call__(self, samples: Any) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("database down while storing HED12")  # patient data on purpose
        if self.then is not None:
            await self.then(samples)
        self.batches.append(list(samples))


# --- the fixtures' own tests ----------------------------------------------------------

def test_ge_sample_is_the_reference_message() -> None:
    message = hl7.parse(GE_SAMPLE)
    assert [str(s[0]) for s in message] == ["MSH", "PID", "PV1", "OBR", "OBX", "OBX", "OBX", "OBX"]
    assert str(message.segment("MSH")[10]) == GE_CONTROL_ID
    assert str(message.segment("MSH")[18]) == "UNICODE UTF-8"


def test_builder_numbers_obx_and_places_fields() -> None:
    message = hl7.parse(oru(nm("150456^MDC_PULS_OXIM_SAT_O2^MDC", "97", time="20240101")))
    obx = message.segment("OBX")
    assert str(obx[1]) == "1" and str(obx[5]) == "97"
    assert str(obx[14]) == "20240101" and str(obx[18]) == "080019FFFE0B4020^EUI-64"


def test_every_fixture_reads_the_same_with_python_hl7() -> None:
    """The reader and the python-hl7 reference agree on every fixture message (the tests of
    test_hl7_oru.py and test_hl7_alarms.py read theirs through ``decode_both`` too)."""
    from devices.hl7.simulator import MonitorProfile, MonitorSimulator, compose_alarm

    now = datetime(2024, 3, 5, 2, 16, tzinfo=UTC)
    messages = [GE_SAMPLE.encode(), ORF_SAMPLE.encode(), R40_START.encode(), R40_END.encode(),
                oru(nm("150456^MDC_PULS_OXIM_SAT_O2^MDC", "97", time="20240101")).encode()]
    for profile in (MonitorProfile(), MonitorProfile(charset="GB 18030-2000",
                                                     patient_id="住院東0042"),
                    MonitorProfile(message_type="ORF^R04^ORF_R04")):
        simulator = MonitorSimulator("127.0.0.1", 9, profile=profile, seed=2)
        simulator.hold("spo2", 84)
        messages += [simulator.next_message(now + timedelta(seconds=i))[1] for i in range(3)]
        messages.append(compose_alarm(profile, control_id="A1", now=now, vital="spo2",
                                      value=84, phase="start").encode(profile.codec))
    decoded = [decode_both(raw) for raw in messages]
    assert sum(len(m.samples) for m in decoded) > 50
    assert sum(len(m.alarms) for m in decoded) >= 10


def test_postgresql_is_reachable() -> None:
    """Fails (never skips) when the PostgreSQL the store tests need is not there."""
    with postgres_schema() as schema:
        assert schema.startswith("hl7_test_")
