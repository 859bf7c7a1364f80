"""Every monitor message counts once: resends (same MSH-3/4/10) are acknowledged AA again
but neither stored nor passed on twice; control bytes in echoed MSH fields never break
the ACK's framing nor the connection; the sender's UTC offset survives storage."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import hl7
import hl7.mllp
import pytest

from devices.hl7.storage import SampleStore
from devices.vitals import VitalAlarm, VitalSample
from tests.test_devices_room import ROOM, Bedside, bedside  # noqa: F401  (the fixture)
from tests.test_hl7_fixtures import (
    GE_CONTROL_ID,
    GE_SAMPLE,
    RawClient,
    frame,
    msa,
    nm,
    oru,
    running_listener,
)

SPO2 = "150456^MDC_PULS_OXIM_SAT_O2^MDC"


async def send_with_python_hl7(port: int, text: str, times: int) -> list[str]:
    """python-hl7's MLLP client: ``text`` ``times`` times on one connection; MSA-1 of each."""
    reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", port, encoding="utf-8")
    codes = []
    try:
        for _ in range(times):
            writer.writemessage(hl7.parse(text))
            await writer.drain()
            ack = await asyncio.wait_for(reader.readmessage(), 5)
            codes.append(str(ack.segment("MSA")[1]))
    finally:
        writer.close()
        await writer.wait_closed()
    return codes


def table_counts(path: Path) -> tuple[int, list[str]]:
    """Sample rows, and the control ids in the messages table."""
    connection = sqlite3.connect(path)
    try:
        samples = connection.execute("SELECT count(*) FROM vital_samples").fetchone()[0]
        messages = connection.execute(
            "SELECT control_id FROM hl7_messages ORDER BY id").fetchall()
    finally:
        connection.close()
    return samples, [row[0] for row in messages]


async def test_a_message_sent_three_times_is_stored_and_passed_on_once(tmp_path: Path) -> None:
    calls: list[tuple[Sequence[VitalSample], Sequence[VitalAlarm]]] = []
    async with SampleStore(data_dir=tmp_path) as store, \
            running_listener(store, on_stored=lambda s, a: calls.append((s, a))) as listener:
        codes = await send_with_python_hl7(listener.port, GE_SAMPLE, 2)
        # The third copy comes on a new connection, as after a lost ACK and a reconnect.
        codes += await send_with_python_hl7(listener.port, GE_SAMPLE, 1)
    assert codes == ["AA", "AA", "AA"]
    # One row set (the GE sample has 3 samples) and one message row.
    assert table_counts(tmp_path / "vitals.sqlite3") == (3, [GE_CONTROL_ID])
    assert len(calls) == 1 and [s.vital for s in calls[0][0]] == ["spo2", "rr", "temp"]
    assert calls[0][1] == ()
    assert (listener.stats.accepted, listener.stats.duplicates) == (3, 2)


async def test_resends_reach_the_room_once(bedside: Bedside) -> None:  # noqa: F811
    client = await bedside.client("observer")
    try:
        assert await send_with_python_hl7(bedside.hl7_port, GE_SAMPLE, 3) == ["AA"] * 3
        event = await client.next_event("vitals", 5)
        assert {s["vital"] for s in event["samples"]} == {"spo2", "rr", "temp"}
        # A new message (another control id) is the very next event: no copy came between.
        marker = GE_SAMPLE.replace(GE_CONTROL_ID, "004097134536").replace("|100|", "|91|")
        assert await send_with_python_hl7(bedside.hl7_port, marker, 1) == ["AA"]
        event = await client.next_event("vitals", 5)
        assert {s["vital"]: s["value"] for s in event["samples"]}["spo2"] == 91
    finally:
        await client.close()
    assert table_counts(bedside.settings.storage.data_dir / "devices.sqlite3") == (
        6, [GE_CONTROL_ID, "004097134536"])


def with_msh_field(text: str, number: int, value: str) -> str:
    """``text`` with MSH-``number`` replaced by ``value`` (MSH-1 is the field separator)."""
    msh, rest = text.split("\r", 1)
    fields = msh.split("|")
    fields[number - 1] = value
    return "|".join(fields) + "\r" + rest


@pytest.mark.parametrize(("field", "value"), [
    (10, "0040\x1c97134535"), (10, "AB\x1c\x07CD\x7f"), (3, "VSP\x1c^080019FFFE134535^EUI-64"),
    (12, "2.\x1c6")])
async def test_a_control_byte_in_an_echoed_field_gets_a_framed_error_ack(
        field: int, value: str) -> None:
    calls: list[object] = []
    async with running_listener(lambda samples: _none(), on_stored=lambda s, a: calls.append(s)
                                ) as listener:
        client = await RawClient.connect(listener.port)
        await client.send(frame(with_msh_field(GE_SAMPLE, field, value).encode()))
        data = await asyncio.wait_for(client.reader.readuntil(b"\x1c\r"), 5)
        # Exactly one frame: 0x0B, no framing or control byte inside, 0x1C 0x0D.
        assert data[:1] == b"\x0b" and data.count(b"\x1c") == 1 and b"\x0b" not in data[1:]
        assert not any(b < 0x20 and b != 0x0D for b in data[1:-2])
        ack = hl7.parse(data[1:-2].decode())
        code, control_id, _ = msa(ack)
        assert code in ("AE", "AR")
        if field == 10:  # the control id is echoed with the byte escaped, not dropped
            assert "\\X1C\\" in data.decode() and control_id.startswith(value[:2])
        # The connection is still usable: the next message on it is accepted.
        await client.send_message(GE_SAMPLE)
        assert msa(await client.read_ack())[:2] == ("AA", GE_CONTROL_ID)
        await client.close()
    assert len(calls) == 1


async def _none() -> None:
    return None


async def test_the_senders_offset_survives_storage(tmp_path: Path) -> None:
    text = oru(nm(SPO2, "97", "262688^MDC_DIM_PERCENT^MDC", time="20240601195900+0800"),
               nm(SPO2, "96", "262688^MDC_DIM_PERCENT^MDC", time="20240601115900-0030"),
               control_id="TZ000001")
    async with SampleStore(data_dir=tmp_path) as store, running_listener(store) as listener:
        client = await RawClient.connect(listener.port)
        await client.send_message(text)
        assert msa(await client.read_ack())[:2] == ("AA", "TZ000001")
        await client.close()
        rows = [r.sample for r in await store.samples_since()]
    assert [r.observed_at.isoformat() for r in rows] == ["2024-06-01T19:59:00+08:00",
                                                         "2024-06-01T11:59:00-00:30"]
    assert rows[0].observed_at.utcoffset() == timedelta(hours=8)
    connection = sqlite3.connect(tmp_path / "vitals.sqlite3")
    try:
        assert connection.execute("SELECT observed_at, observed_offset FROM vital_samples "
                                  "ORDER BY id").fetchall() == [
            ("2024-06-01 11:59:00.000000", 480), ("2024-06-01 12:29:00.000000", -30)]
    finally:
        connection.close()


async def test_reference_range_flags_and_alarms_arrive_in_the_database(tmp_path: Path) -> None:
    """Through the listener: OBX-7/OBX-8 columns and the alarms table, stored once."""
    flagged = (f"NM|{SPO2}|1.2.1.150456|82|262688^MDC_DIM_PERCENT^MDC|90-100|LL|||R|||"
               "20240305101500+0800")
    text = oru(flagged, control_id="FLAG0001")
    calls: list[tuple[Sequence[VitalSample], Sequence[VitalAlarm]]] = []
    async with SampleStore(data_dir=tmp_path) as store, \
            running_listener(store, on_stored=lambda s, a: calls.append((s, a))) as listener:
        for _ in range(2):  # and a resend
            client = await RawClient.connect(listener.port)
            await client.send_message(text)
            assert msa(await client.read_ack())[:2] == ("AA", "FLAG0001")
            await client.close()
    assert len(calls) == 1 and len(calls[0][1]) == 1
    connection = sqlite3.connect(tmp_path / "vitals.sqlite3")
    try:
        assert connection.execute(
            "SELECT value, reference_range, abnormal_flags, observed_offset FROM vital_samples"
        ).fetchall() == [(82.0, "90-100", '["LL"]', 480)]
        assert connection.execute(
            "SELECT a.source, a.code, a.priority, a.state, a.flags, a.observed_offset, "
            "m.control_id FROM vital_alarms a JOIN hl7_messages m ON m.id = a.message_id"
        ).fetchall() == [("obx-8", "150456", "high", "active", '["LL"]', 480, "FLAG0001")]
    finally:
        connection.close()
