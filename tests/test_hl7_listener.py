"""The MLLP listener, end to end over loopback: real clients, a real store, bytes on the wire."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import hl7
import hl7.mllp
import pytest

from devices.hl7.listener import HL7Listener, ListenerConfig
from devices.hl7.storage import SampleStore
from devices.vitals import VitalAlarm, VitalSample
from tests.test_hl7_fixtures import (
    GE_CONTROL_ID,
    GE_PATIENT_DATA,
    GE_SAMPLE,
    STORE_KINDS,
    RawClient,
    RecordingSink,
    frame,
    msa,
    nm,
    open_store,
    oru,
    running_listener,
)

SPO2 = "150456^MDC_PULS_OXIM_SAT_O2^MDC"
MALFORMED = oru(nm(SPO2, "ninety-seven"), control_id="BAD00001")


@pytest.mark.parametrize("kind", STORE_KINDS)
async def test_python_hl7_client_gets_aa_after_rows_are_stored(kind: str, tmp_path: Path) -> None:
    """python-hl7's own MLLP client sends the GE sample; the rows are in the database."""
    async with open_store(kind, tmp_path) as store, running_listener(store.store) as listener:
        reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", listener.port,
                                                            encoding="utf-8")
        try:
            writer.writemessage(hl7.parse(GE_SAMPLE))
            await writer.drain()
            ack = await asyncio.wait_for(reader.readmessage(), 5)
        finally:
            writer.close()
            await writer.wait_closed()
        assert str(ack.segment("MSA")).startswith(f"MSA|AA|{GE_CONTROL_ID}")
        rows = {r.sample.vital: r.sample for r in await store.samples_since()}
        assert set(rows) == {"spo2", "rr", "temp"}  # the MDS grouping row is not stored
        assert (rows["spo2"].value, rows["spo2"].unit, rows["spo2"].loinc) == (100, "%", "59408-5")
        assert (rows["rr"].value, rows["rr"].unit, rows["rr"].loinc) == (18, "/min", "9279-1")
        assert (rows["temp"].value, rows["temp"].unit, rows["temp"].loinc) == (37.1, "Cel",
                                                                              "8310-5")
        assert {r.patient_id for r in rows.values()} == {"HED12"}
        assert {r.device_id for r in rows.values()} == {"080019FFFE0B4020"}
    if kind == "sqlite":  # and an independent reader of the file sees them
        connection = sqlite3.connect(tmp_path / "vitals.sqlite3")
        try:
            assert sorted(connection.execute(
                "SELECT vital, value, unit, loinc FROM vital_samples").fetchall()) == [
                ("rr", 18.0, "/min", "9279-1"), ("spo2", 100.0, "%", "59408-5"),
                ("temp", 37.1, "Cel", "8310-5")]
        finally:
            connection.close()


async def test_bad_message_then_good_message_on_one_connection() -> None:
    sink = RecordingSink()
    async with running_listener(sink) as listener:
        client = await RawClient.connect(listener.port)
        await client.send_message(MALFORMED)
        assert msa(await client.read_ack()) == ("AE", "BAD00001", "not a number (value type NM)")
        await client.send_message(oru(control_id="WRONG001", message_type="ADT^A01"))
        assert msa(await client.read_ack())[:2] == ("AR", "WRONG001")
        await client.send(frame(b"this is not HL7"))
        assert msa(await client.read_ack())[:3] == ("AR", "", "not an HL7 message (it does "
                                                          "not start with MSH)")
        await client.send_message(GE_SAMPLE)
        assert msa(await client.read_ack())[:2] == ("AA", GE_CONTROL_ID)
        await client.close()
    assert [len(b) for b in sink.batches] == [3]
    assert (listener.stats.accepted, listener.stats.errors, listener.stats.rejected) == (1, 1, 2)


async def test_ack_only_after_the_store_returned(tmp_path: Path) -> None:
    release = asyncio.Event()
    entered = asyncio.Event()
    async with SampleStore(data_dir=tmp_path) as store:
        async def gated_store(samples: Sequence[VitalSample]) -> None:
            entered.set()
            await release.wait()
            await store.store(samples)

        async with running_listener(gated_store) as listener:
            client = await RawClient.connect(listener.port)
            await client.send_message(GE_SAMPLE)
            await asyncio.wait_for(entered.wait(), 5)
            assert await client.nothing_within(0.3)  # held: no ACK while the store waits
            assert await store.samples_since() == []
            release.set()
            assert msa(await client.read_ack())[:2] == ("AA", GE_CONTROL_ID)
            assert len(await store.samples_since()) == 3  # committed before the ACK came
            await client.close()


async def test_store_failure_gives_ae_and_no_aa(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    stored: list[Sequence[VitalSample]] = []
    sink = RecordingSink(failures=1)
    async with running_listener(sink, on_stored=lambda s, _a: stored.append(s)) as listener:
        client = await RawClient.connect(listener.port)
        await client.send_message(GE_SAMPLE)
        ack_bytes = await client.read_frame()
        assert msa(hl7.parse(ack_bytes.decode()))[:3] == ("AE", GE_CONTROL_ID, "not stored")
        assert b"HED12" not in ack_bytes and b"database" not in ack_bytes
        assert await client.nothing_within(0.3)  # and no AA follows
        assert stored == [] and sink.batches == []
        await client.send_message(GE_SAMPLE)  # the sender resends: now it is stored
        assert msa(await client.read_ack())[:2] == ("AA", GE_CONTROL_ID)
        await client.close()
    assert len(stored) == 1 and listener.stats.store_failures == 1
    assert "HED12" not in caplog.text and "database down" not in caplog.text


async def test_on_stored_sees_samples_after_the_ack() -> None:
    seen: list[tuple[str, ...]] = []

    async def forward(samples: Sequence[VitalSample], alarms: Sequence[VitalAlarm]) -> None:
        assert alarms == ()
        seen.append(tuple(s.vital or "" for s in samples))
        raise RuntimeError("room gone")  # must not affect the sender

    async with running_listener(RecordingSink(), on_stored=forward) as listener:
        client = await RawClient.connect(listener.port)
        for _ in range(2):
            await client.send_message(GE_SAMPLE)
            assert msa(await client.read_ack())[0] == "AA"
        await client.close()
    assert seen == [("spo2", "rr", "temp")] * 2


async def test_messages_on_one_connection_are_processed_in_order() -> None:
    order: list[str] = []

    async def slow_first(samples: Sequence[VitalSample]) -> None:
        value = samples[0].value
        await asyncio.sleep(0.2 if value == 0 else 0)
        order.append(str(value))

    async with running_listener(slow_first) as listener:
        client = await RawClient.connect(listener.port)
        ids = [f"ORD{i:05d}" for i in range(5)]
        await client.send(b"".join(frame(oru(nm(SPO2, str(i)), control_id=c).encode())
                                   for i, c in enumerate(ids)))
        acks = [msa(await client.read_ack()) for _ in ids]
        await client.close()
    assert [a[:2] for a in acks] == [("AA", c) for c in ids]
    assert order == ["0.0", "1.0", "2.0", "3.0", "4.0"]


async def test_a_sender_that_half_closes_still_gets_every_ack(tmp_path: Path) -> None:
    """Messages, then the end of the sender's stream (shutdown of its write side): the
    ACKs of all of them still arrive, each after its commit, then the connection ends."""
    ids = [f"EOF{i:05d}" for i in range(3)]
    async with SampleStore(data_dir=tmp_path) as store, running_listener(store) as listener:
        client = await RawClient.connect(listener.port)
        await client.send(b"".join(frame(oru(nm(SPO2, str(90 + i)), control_id=c).encode())
                                   for i, c in enumerate(ids)))
        client.writer.write_eof()
        acks = [msa(await client.read_ack()) for _ in ids]
        assert await asyncio.wait_for(client.reader.read(), 5) == b""  # then closed
        await client.close()
        assert [r.sample.value for r in await store.samples_since()] == [90, 91, 92]
    assert [a[:2] for a in acks] == [("AA", c) for c in ids]


async def test_messages_keep_their_order_across_reads_and_the_decode_pool(
        tmp_path: Path) -> None:
    """A large waveform (decoded in the pool), then small messages sent while it is being
    decoded, on one connection: ACKs and the store's rows keep the order they were sent."""
    wave = "^".join(str(i % 1000) for i in range(100_000))
    big = oru(f"NA|150452^MDC_PULS_OXIM_PLETH^MDC|1|{wave}||||||R", control_id="ORDBIG01")
    small = [f"ORDSML{i:02d}" for i in range(3)]
    async with SampleStore(data_dir=tmp_path) as store, \
            running_listener(store, decode_workers=0) as listener:
        client = await RawClient.connect(listener.port)
        await client.send_message(big)
        for i, control_id in enumerate(small):
            await asyncio.sleep(0.01)
            await client.send_message(oru(nm(SPO2, str(95 + i)), control_id=control_id))
        acks = [msa(await client.read_ack(timeout=20)) for _ in range(4)]
        await client.close()
    assert [a[:2] for a in acks] == [("AA", c) for c in ["ORDBIG01", *small]]
    connection = sqlite3.connect(tmp_path / "vitals.sqlite3")
    try:
        stored = [row[0] for row in connection.execute(
            "SELECT control_id FROM hl7_messages ORDER BY id")]
    finally:
        connection.close()
    assert stored == ["ORDBIG01", *small]


async def test_charsets_escapes_vendor_codes_and_waveforms(tmp_path: Path) -> None:
    gb = oru(nm(SPO2, "96", "262688^MDC_DIM_PERCENT^MDC"),
             "ST|0^探头状态^99VENDOR|1.2.1.9|探头脱落 淺東||||||R",
             charset="GB 18030-2000", control_id="GB000001",
             patient="住院東0042^^^HOSP^MR||王^東億^^^^^L")
    utf8 = oru("ST|0^导联^99VENDOR|1|心电导联脱落 a\\F\\b\\.br\\c\\XE29C93\\||||||R",
               control_id="U8000001", patient="患者-0042^^^HOSP^MR||张^伟")
    wave = "^".join(str(i % 97) for i in range(1000))
    vendor = oru(nm("0002-4bb8^SpO2^MDIL", "97", "0004-0220^%^MDIL"),
                 nm("101^HR^99MNDRY", "75", "^bpm^99MNDRY"),
                 f"NA|150452^MDC_PULS_OXIM_PLETH^MDC|1.2.1.150452|{wave}|262656^MDC_DIM_DIMLESS"
                 "^MDC|||||R|||20240101120000.000+0000",
                 "NM|0^MDC_ATTR_SAMP_RATE^MDC|1.2.1.150452.1|100|264608^MDC_DIM_PER_SEC^MDC",
                 control_id="VND00001", patient="V-1^^^HOSP^MR")
    async with SampleStore(data_dir=tmp_path) as store, \
            running_listener(store.store) as listener:
        client = await RawClient.connect(listener.port)
        await client.send_message(gb, "gb18030")
        ack = await client.read_frame()
        assert msa(hl7.parse(ack.decode("gb18030")))[:2] == ("AA", "GB000001")
        assert b"|GB 18030-2000" in ack  # the ACK names the message's character set
        await client.send_message(utf8, "utf-8")
        assert msa(await client.read_ack())[:2] == ("AA", "U8000001")
        await client.send_message(vendor, "utf-8")
        assert msa(await client.read_ack())[:2] == ("AA", "VND00001")
        await client.close()
        rows = [r.sample for r in await store.samples_since()]
    by_code = {(s.patient_id, s.code): s for s in rows}
    assert by_code["住院東0042", "150456"].value == 96.0
    assert by_code["住院東0042", "0"].text == "探头脱落 淺東"
    assert by_code["患者-0042", "0"].text == "心电导联脱落 a|b\nc✓"
    philips, mindray = by_code["V-1", "0002-4bb8"], by_code["V-1", "101"]
    assert (philips.code_system, philips.vital, philips.unit) == ("MDIL", "spo2", "%")
    assert (mindray.code_system, mindray.name, mindray.unit, mindray.vital) == (
        "99MNDRY", "HR", "bpm", None)
    pleth = by_code["V-1", "150452"]
    assert pleth.values == tuple(float(i % 97) for i in range(1000))
    assert (pleth.sample_rate, pleth.vital, pleth.value) == (100.0, "pleth", None)
    assert len(rows) == 6


async def test_garbage_and_oversized_frames_then_the_stream_recovers() -> None:
    sink = RecordingSink()
    async with running_listener(sink, max_message_size=2048) as listener:
        client = await RawClient.connect(listener.port)
        big = oru("ST|0^N^L|1|" + "x" * 4000 + "||||||R", control_id="BIG00001")
        await client.send(b"\r\nnoise" + frame(big.encode()) + b"junk" + frame(GE_SAMPLE.encode()))
        assert msa(await client.read_ack())[:3] == ("AR", "BIG00001",
                                                    "message larger than 2048 bytes")
        assert msa(await client.read_ack())[:2] == ("AA", GE_CONTROL_ID)
        await client.close()
    assert listener.stats.bytes_discarded == 11 and listener.stats.frames_too_large == 1
    assert len(sink.batches) == 1


async def test_a_large_waveform_does_not_hold_up_other_connections() -> None:
    wave = "^".join(str(i % 1000) for i in range(200_000))  # ~0.8 MB: ~0.1 s to decode
    big = oru(f"NA|150452^MDC_PULS_OXIM_PLETH^MDC|1|{wave}||||||R", control_id="BIG00001")
    sink = RecordingSink()
    async with running_listener(sink) as listener:
        slow, quick = await RawClient.connect(listener.port), await RawClient.connect(
            listener.port)
        await slow.send_message(big)
        await asyncio.sleep(0.05)
        await quick.send_message(GE_SAMPLE)
        first = await asyncio.wait_for(asyncio.gather(quick.read_ack(), slow.read_ack()), 20)
        assert [msa(a)[:2] for a in first] == [("AA", GE_CONTROL_ID), ("AA", "BIG00001")]
        for client in (slow, quick):
            await client.close()
    assert len(sink.batches[1][0].values or ()) == 200_000
    assert len(sink.batches[0]) == 3  # the GE sample was stored first


async def test_many_connections_and_the_limit() -> None:
    async with running_listener(RecordingSink(), max_connections=3) as listener:
        clients = [await RawClient.connect(listener.port) for _ in range(3)]
        for client in clients:  # each one is served: the listener holds all three
            await client.send_message(GE_SAMPLE)
            assert msa(await client.read_ack())[0] == "AA"
        extra = await RawClient.connect(listener.port)
        assert await asyncio.wait_for(extra.reader.read(), 5) == b""  # refused: closed at once
        assert listener.stats.connections_refused == 1
        await clients[0].close()
        await asyncio.sleep(0.1)
        again = await RawClient.connect(listener.port)
        await again.send_message(GE_SAMPLE)
        assert msa(await again.read_ack())[0] == "AA"
        for client in [*clients[1:], extra, again]:
            await client.close()


async def test_idle_connections_are_closed() -> None:
    async with running_listener(RecordingSink(), idle_timeout=0.2) as listener:
        client = await RawClient.connect(listener.port)
        await client.send_message(GE_SAMPLE)
        assert msa(await client.read_ack())[0] == "AA"
        assert await asyncio.wait_for(client.reader.read(), 5) == b""
        assert listener.stats.connections_idle_closed == 1
        await client.close()


async def test_stop_closes_connections_and_is_idempotent() -> None:
    listener = HL7Listener(RecordingSink(), ListenerConfig(port=0))
    await listener.start()
    client = await RawClient.connect(listener.port)
    await client.send_message(GE_SAMPLE)
    assert msa(await client.read_ack())[0] == "AA"
    await listener.stop(grace=1)
    await listener.stop()
    assert await asyncio.wait_for(client.reader.read(), 5) == b""
    assert listener.connection_count == 0
    with pytest.raises(RuntimeError, match="stopped"):
        await listener.start()
    await client.close()


async def test_stop_lets_a_message_in_progress_finish() -> None:
    release = asyncio.Event()

    async def slow(samples: Sequence[VitalSample]) -> None:
        await release.wait()

    listener = HL7Listener(slow, ListenerConfig(port=0))
    await listener.start()
    client = await RawClient.connect(listener.port)
    await client.send_message(GE_SAMPLE)
    await asyncio.sleep(0.1)
    stopping = asyncio.create_task(listener.stop(grace=5))
    await asyncio.sleep(0.1)
    release.set()
    assert msa(await client.read_ack())[0] == "AA"
    await stopping
    await client.close()


async def test_logs_carry_no_patient_data(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_listener(RecordingSink(failures=1), max_message_size=4096) as listener:
        client = await RawClient.connect(listener.port)
        messages = [GE_SAMPLE, GE_SAMPLE, MALFORMED.replace("ninety-seven", "HED12"),
                    GE_SAMPLE.replace("SCT|||20130122134100", "SCT|||KITTY"),
                    GE_SAMPLE.replace("PID|||HED12", "PID|||HED12\\Q\\"),
                    GE_SAMPLE.replace("\rPV1", "\rNTE|1||" + "LAZY" * 2000 + "\rPV1")]
        codes = []
        for text in messages:
            await client.send_message(text)
            codes.append(msa(await client.read_ack())[0])
        await client.close()
    assert codes == ["AE", "AA", "AE", "AE", "AE", "AR"]
    assert listener.stats.messages == 6
    assert not any(p in caplog.text for p in GE_PATIENT_DATA), caplog.text
    for expected in ("not stored", "OBX-5 of OBX #1", "OBR-7 of OBR #1", "PID-3",
                     "more than 4096 bytes"):
        assert expected in caplog.text


async def test_per_address_limit_leaves_room_for_other_monitors() -> None:
    """Eight idle connections from one address: the ninth from it is refused, while a
    monitor at another address is served (64 idle connections used to lock all out)."""
    async with running_listener(RecordingSink(), max_connections_per_address=8) as listener:
        crowd = [await RawClient.connect(listener.port) for _ in range(8)]
        ninth = await RawClient.connect(listener.port)
        assert await asyncio.wait_for(ninth.reader.read(), 5) == b""  # closed at once
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port,
                                                       local_addr=("127.0.0.2", 0))
        other = RawClient(reader, writer)
        await other.send_message(GE_SAMPLE)
        assert msa(await other.read_ack())[:2] == ("AA", GE_CONTROL_ID)
        for client in crowd[:7]:  # the first eight are still open and served
            assert await client.nothing_within(0.01)
        await crowd[7].send_message(GE_SAMPLE)
        assert msa(await crowd[7].read_ack())[0] == "AA"
        assert listener.stats.connections_refused == 1
        await crowd[0].close()
        await asyncio.sleep(0.1)
        tenth = await RawClient.connect(listener.port)  # a freed place can be taken again
        await tenth.send_message(GE_SAMPLE)
        assert msa(await tenth.read_ack())[0] == "AA"
        for client in [*crowd[1:], ninth, other, tenth]:
            await client.close()


async def test_a_connection_that_never_sends_a_message_is_closed_early() -> None:
    async with running_listener(RecordingSink(), first_message_timeout=0.3,
                                idle_timeout=30) as listener:
        silent, partial, monitor = [await RawClient.connect(listener.port) for _ in range(3)]
        await partial.send(b"\x0bMSH|^~\\&|half a message")  # never completed
        await monitor.send_message(GE_SAMPLE)
        assert msa(await monitor.read_ack())[0] == "AA"
        assert await asyncio.wait_for(silent.reader.read(), 5) == b""
        assert await asyncio.wait_for(partial.reader.read(), 5) == b""
        # The monitor that did send a message keeps its connection (long idle timeout).
        assert await monitor.nothing_within(0.5)
        await monitor.send_message(GE_SAMPLE)
        assert msa(await monitor.read_ack())[0] == "AA"
        assert listener.stats.connections_idle_closed == 2
        for client in (silent, partial, monitor):
            await client.close()


def test_listener_limits_come_from_the_devices_settings() -> None:
    from config import ConfigError, load_settings

    default = load_settings(environ={}).devices.hl7_listener_options()
    assert default == {"max_connections": 256, "max_connections_per_address": 8,
                       "first_message_timeout": 60.0, "idle_timeout": 3900.0,
                       "decode_workers": 2}
    options = load_settings(environ={
        "HUIZHEN_DEVICES_HL7_MAX_CONNECTIONS_PER_ADDRESS": "3",
        "HUIZHEN_DEVICES_HL7_FIRST_MESSAGE_TIMEOUT": "5.5",
        "HUIZHEN_DEVICES_HL7_DECODE_WORKERS": "0"}).devices.hl7_listener_options()
    config = ListenerConfig(**options)
    assert (config.max_connections_per_address, config.first_message_timeout,
            config.decode_workers) == (3, 5.5, 0)
    for bad in ({"HUIZHEN_DEVICES_HL7_MAX_CONNECTIONS_PER_ADDRESS": "0"},
                {"HUIZHEN_DEVICES_HL7_IDLE_TIMEOUT": "-1"}):
        with pytest.raises(ConfigError):
            load_settings(environ=bad)
