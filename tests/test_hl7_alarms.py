"""OBX-7/OBX-8, alarms (abnormal flags and IHE PCD-04 ORU^R40), ORF^R04, time offsets, and
hostile input: every message is read by the reader and by the python-hl7 reference."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from devices.hl7.alarms import flag_priority
from devices.hl7.errors import ErrorCode, Location, MessageError, MessageRejected
from devices.hl7.oru import OruConfig, OruMessage, decode_oru
from devices.hl7.segments import MAX_FIELDS
from devices.hl7.simulator import MonitorProfile, MonitorSimulator, compose_alarm
from tests.test_hl7_fixtures import (
    GE_SAMPLE,
    ORF_CONTROL_ID,
    ORF_DEVICE,
    ORF_SAMPLE,
    R40_END,
    R40_START,
    decode_both,
    nm,
    oru,
    r40,
    spo2_alarm_rows,
)

SPO2 = "150456^MDC_PULS_OXIM_SAT_O2^MDC"
PERCENT = "262688^MDC_DIM_PERCENT^MDC"
CHINA = timezone(timedelta(hours=8))


def flagged(flags: str, value: str = "82", reference: str = "90-100") -> str:
    """An SpO2 OBX (from OBX-2) with OBX-7 and OBX-8."""
    return f"NM|{SPO2}|1.2.1.150456|{value}|{PERCENT}|{reference}|{flags}|||R|||20240305101500+0800"


# --- OBX-7 and OBX-8 ----------------------------------------------------------------------

def test_reference_range_and_abnormal_flags_are_read() -> None:
    message = decode_both(oru(flagged("LL"), flagged("H~PM", "101", "90-100"),
                              flagged("", "96", "90\\T\\100")).encode())
    low, high, normal = message.samples
    assert (low.reference_range, low.abnormal_flags) == ("90-100", ("LL",))
    assert (high.reference_range, high.abnormal_flags) == ("90-100", ("H", "PM"))
    assert (normal.reference_range, normal.abnormal_flags) == ("90&100", ())
    assert [(a.source, a.code, a.vital, a.priority, a.state, a.flags) for a in message.alarms] == [
        ("obx-8", "150456", "spo2", "high", "active", ("LL",)),
        ("obx-8", "150456", "spo2", "medium", "active", ("H", "PM")),  # PM: IHE priority
    ]
    first = message.alarms[0]
    assert first.observed_at == low.observed_at and first.patient_id == "HED12"
    assert first.device_id == "080019FFFE134535" and first.name == "MDC_PULS_OXIM_SAT_O2"


def test_samples_without_obx7_obx8_have_none() -> None:
    (sample,) = decode_both(oru(nm(SPO2, "97", PERCENT)).encode()).samples
    assert sample.reference_range is None and sample.abnormal_flags == ()


@pytest.mark.parametrize(("flags", "priority"), [
    (["HH"], "high"), (["LL"], "high"), (["AA"], "high"), ([">"], "high"), (["<"], "high"),
    (["H"], "medium"), (["L"], "medium"), (["A"], "medium"),
    (["U"], "low"), (["D"], "low"), (["W"], "low"),
    (["N"], None), ([], None), (["S"], None), (["H", "HH"], "high"), (["L", "PL"], "low"),
    (["PH"], None),  # a priority alone (no abnormality) is not an OBX-8 alarm
])
def test_flag_priority(flags: list[str], priority: str | None) -> None:
    assert flag_priority(flags) == priority


def test_normal_flag_gives_no_alarm() -> None:
    message = decode_both(oru(flagged("N", "96")).encode())
    assert message.samples[0].abnormal_flags == ("N",) and message.alarms == ()


# --- ORF^R04 ------------------------------------------------------------------------------

def test_orf_r04_is_read_like_oru_r01() -> None:
    message = decode_both(ORF_SAMPLE.encode())
    assert (message.header.message_code, message.header.trigger_event) == ("ORF", "R04")
    assert message.header.control_id == ORF_CONTROL_ID
    hr = message.samples[0]
    assert [(s.vital, s.value, s.unit) for s in message.samples] == [
        ("hr", 128.0, "bpm"), ("spo2", 96.0, "%"), ("rr", 17.0, "rpm")]
    assert all(s.device_id == ORF_DEVICE and s.patient_id == "HED12" for s in message.samples)
    assert (hr.reference_range, hr.abnormal_flags) == ("50-120", ("H",))
    (alarm,) = message.alarms
    assert (alarm.vital, alarm.priority, alarm.source) == ("hr", "medium", "obx-8")


@pytest.mark.parametrize("message_type", ["ORF^R01", "ORU^R04", "ORF^R40"])
def test_other_combinations_are_rejected(message_type: str) -> None:
    with pytest.raises(MessageRejected, match=r"MSH-9\.2: trigger event") as info:
        decode_both(oru(nm(SPO2, "97"), message_type=message_type).encode())
    assert info.value.code == ErrorCode.UNSUPPORTED_EVENT


# --- ORU^R40 (IHE PCD-04) -------------------------------------------------------------------

def test_r40_alarm_start_and_end() -> None:
    start, end = decode_both(R40_START.encode()), decode_both(R40_END.encode())
    assert start.samples == () and end.samples == ()  # alarm facets are not measurements
    (raised,), (cleared,) = start.alarms, end.alarms
    assert (raised.source, raised.code, raised.name, raised.vital) == (
        "pcd-04", "196670", "MDC_EVT_LO", "spo2")
    assert (raised.priority, raised.state, raised.text, raised.flags) == (
        "high", "active", "SpO2 LOW", ("PH", "SP"))
    assert raised.device_id == "0012A1FFFE000001" and raised.patient_id == "HED12"
    assert raised.observed_at == datetime(2024, 3, 5, 10, 15, 58, tzinfo=CHINA)
    assert (cleared.state, cleared.code, cleared.vital) == ("cleared", "196670", "spo2")


@pytest.mark.parametrize(("phase", "state", "expected"), [
    ("start", "active", "active"), ("present", "latched", "active"),
    ("continue", "active", "active"), ("end", "inactive", "cleared"),
    ("update", "inactive", "cleared"), ("end", "active", "cleared")])
def test_r40_phase_and_state(phase: str, state: str, expected: str) -> None:
    rows = spo2_alarm_rows(phase)
    rows[3] = rows[3].replace("|active|", f"|{state}|").replace("|inactive|", f"|{state}|")
    (alarm,) = decode_both(r40(*rows).encode()).alarms
    assert alarm.state == expected


@pytest.mark.parametrize(("priority", "expected"), [
    ("PH~SP", "high"), ("PM~SP", "medium"), ("PL~ST", "low"), ("PN~SA", "none"),
    ("L~PM~SP", "medium")])
def test_r40_priority(priority: str, expected: str) -> None:
    (alarm,) = decode_both(r40(*spo2_alarm_rows("start", priority=priority)).encode()).alarms
    assert alarm.priority == expected


def test_r40_two_alarms_grouped_by_sub_id_and_obr() -> None:
    hr_rows = [row.replace("1.2.1.150456", "1.1.1.147842")
               .replace("196670^MDC_EVT_LO", "196648^MDC_EVT_HI")
               .replace(SPO2, "147842^MDC_ECG_HEART_RATE^MDC").replace("SpO2 LOW", "HR HIGH")
               for row in spo2_alarm_rows("start", priority="PM~SP")]
    # Interleaved facets of two alarms under one OBR: OBX-4 tells them apart.
    interleaved = [row for pair in zip(spo2_alarm_rows("start"), hr_rows, strict=True)
                   for row in pair]
    spo2, hr = decode_both(r40(*interleaved).encode()).alarms
    assert (spo2.vital, spo2.name, spo2.priority) == ("spo2", "MDC_EVT_LO", "high")
    assert (hr.vital, hr.name, hr.priority, hr.text) == ("hr", "MDC_EVT_HI", "medium", "HR HIGH")
    # One alarm per OBR, facets numbered 1.0.0.0.n (event) / <source>.2 as some senders do.
    other = [row.replace("1.2.1.150456.1", "1.0.0.0.1").replace("1.2.1.150456.3", "1.0.0.0.3")
             for row in spo2_alarm_rows("end")]
    second_obr = "OBR|2|ALM2^ACME||196616^MDC_EVT_ALARM^MDC|||20240305101700+0800"
    first, second = decode_both(r40(*hr_rows, second_obr, *other).encode()).alarms
    assert (first.vital, first.state) == ("hr", "active")
    assert (second.vital, second.state, second.name) == ("spo2", "cleared", "MDC_EVT_LO")


def test_r40_event_value_coded_names_the_source() -> None:
    rows = spo2_alarm_rows("start")
    rows[0] = rows[0].replace("ST|196670^MDC_EVT_LO^MDC|1.2.1.150456.1|SpO2 LOW",
                              f"CWE|196670^MDC_EVT_LO^MDC|1.2.1.150456.1|{SPO2}")
    del rows[1]
    (alarm,) = decode_both(r40(*rows).encode()).alarms
    assert (alarm.vital, alarm.text) == ("spo2", None)


def test_simulator_alarm_messages_decode() -> None:
    profile = MonitorProfile()
    now = datetime(2024, 3, 5, 2, 16, tzinfo=UTC)
    start = compose_alarm(profile, control_id="A1", now=now, vital="spo2", value=82,
                          phase="start", text="SpO2 LOW")
    (alarm,) = decode_both(start.encode()).alarms
    assert (alarm.state, alarm.priority, alarm.vital, alarm.text, alarm.device_id) == (
        "active", "high", "spo2", "SpO2 LOW", profile.device_id)
    end = compose_alarm(profile, control_id="A2", now=now, vital="hr", value=70, phase="end",
                        priority="PM", high=True)
    (alarm,) = decode_both(end.encode()).alarms
    assert (alarm.state, alarm.priority, alarm.vital, alarm.name) == (
        "cleared", "medium", "hr", "MDC_EVT_HI")


def test_simulator_flags_values_outside_the_limits() -> None:
    simulator = MonitorSimulator("127.0.0.1", 0, seed=3)
    simulator.hold("spo2", 82)
    simulator.hold("hr", 130)
    now = datetime(2024, 3, 5, 2, 16, tzinfo=UTC)
    message = decode_both(simulator.next_message(now)[1])
    by_vital = {s.vital: s for s in message.samples if s.vital}
    assert by_vital["spo2"].abnormal_flags == ("LL",) and by_vital["spo2"].value == 82
    assert by_vital["spo2"].reference_range == "90-100"
    assert by_vital["hr"].abnormal_flags == ("H",)
    assert {(a.vital, a.priority) for a in message.alarms} >= {("spo2", "high"), ("hr", "medium")}
    simulator.hold("spo2", None)
    simulator.hold("hr", None)
    orf = MonitorSimulator("127.0.0.1", 0, seed=3,
                           profile=MonitorProfile(message_type="ORF^R04^ORF_R04"))
    message = decode_both(orf.next_message(now)[1])
    assert message.header.message_code == "ORF" and len(message.samples) >= 5


# --- time offsets ---------------------------------------------------------------------------

def test_times_keep_the_senders_offset() -> None:
    (sample,) = decode_both(oru(nm(SPO2, "97", time="20240305101500+0800")).encode()).samples
    assert sample.observed_at.utcoffset() == timedelta(hours=8)
    assert sample.observed_at.isoformat() == "2024-03-05T10:15:00+08:00"
    (west,) = decode_both(oru(nm(SPO2, "97", time="20240305101500-0330")).encode()).samples
    assert west.observed_at.utcoffset() == -timedelta(hours=3, minutes=30)


def test_times_without_offset_take_the_configured_zone() -> None:
    config = OruConfig(default_zone=ZoneInfo("Asia/Shanghai"))
    (sample,) = decode_both(oru(nm(SPO2, "97", time="20240305101500")).encode(),
                            config).samples
    assert sample.observed_at.utcoffset() == timedelta(hours=8)
    assert sample.observed_at.astimezone(UTC) == datetime(2024, 3, 5, 2, 15, tzinfo=UTC)
    (alarm,) = decode_both(r40(*spo2_alarm_rows("start", time="")).encode()
                           .replace(b"+0800", b""), config).alarms
    assert alarm.observed_at.utcoffset() == timedelta(hours=8)  # from OBR-7, no offset


# --- hostile input -------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "location"), [
    (oru(nm(SPO2, "9\x1c7")), Location("OBX", 1, 5)),
    (oru(nm(SPO2, "97", device="\x0b0800")), Location("OBX", 1, 18)),
    (GE_SAMPLE.replace("LAZY", "LA\x00ZY"), Location("PID", 1, 5)),
    (GE_SAMPLE.replace("|20130122134100||", "|2013\x1c0122134100||"), Location("MSH", 1, 7)),
])
def test_control_characters_inside_fields(text: str, location: Location) -> None:
    with pytest.raises(MessageError, match="control character") as info:
        decode_both(text.encode())
    assert info.value.location == location and info.value.ack_code == "AE"


def test_huge_field_counts() -> None:
    with pytest.raises(MessageError, match="fields") as info:
        decode_oru(oru(nm(SPO2, "97") + "|" * 100_000).encode())
    assert info.value.location == Location("OBX", 1)
    # Long but below the limit: read (the extra fields are ignored).
    row = nm(SPO2, "97") + "|x" * (MAX_FIELDS - 30)
    assert decode_both(oru(row).encode()).samples[0].value == 97.0
    # Huge component and repetition counts inside one field are only split, never fatal
    # (python-hl7 needs minutes for this one: the reader alone).
    many = decode_oru(oru(nm(SPO2 + "^x" * 50_000, "97", device="A~" * 50_000)).encode())
    assert many.samples[0].vital == "spo2"


def test_many_alarm_rows_are_read_in_one_pass() -> None:
    """20,000 event rows in one ORU^R40 (~1 MB): each its own alarm (grouping is by lookup,
    not by scanning the alarms read so far)."""
    rows = [f"ST|196670^MDC_EVT_LO^MDC|1.2.{i}.150456.1|x|||PL~SP|||F" for i in range(20_000)]
    message = decode_oru(r40(*rows).encode())
    assert len(message.alarms) == 20_000 and message.alarms[-1].priority == "low"


@pytest.mark.parametrize("text", [
    GE_SAMPLE[:GE_SAMPLE.index("OBX|43|") + 9],  # truncated inside OBX-2
    GE_SAMPLE.replace("|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|", "|NM|^~150456^MDC|"),
    GE_SAMPLE.replace("|100|262688", "|1^00|262688"),
    GE_SAMPLE.replace("1.22.1.2|100|", "1.22.1.2|10\\0|"),
    GE_SAMPLE.replace("OBX|45|NM|", "OBX|45|NM\\"),
    oru(nm(SPO2, "97", time="2024\\F\\0305")),
])
def test_separators_in_odd_places_and_truncation(text: str) -> None:
    with pytest.raises(MessageError) as info:
        decode_both(text.encode())
    assert info.value.location is not None


def test_blank_lines_and_lf_line_ends_are_tolerated() -> None:
    message = decode_both(b" \r\n\r\n" + GE_SAMPLE.replace("\r", "\n").encode())
    assert [s.value for s in message.samples] == [100.0, 18.0, 37.1]
    assert message.samples[0].observed_at == datetime(2013, 1, 22, 13, 41, tzinfo=UTC)


def _mutations(rng: random.Random, data: bytes) -> bytes:
    """One random edit: separators, MLLP/control bytes, deletions, duplications, cuts."""
    specials = [b"|", b"^", b"~", b"\\", b"&", b"\r", b"\x0b", b"\x1c", b"\x00", b"\n",
                b"\xff", b"\xe4\xbd", b"MSH|", b"OBX|", b"9", b"."]
    position = rng.randrange(len(data))
    choice = rng.randrange(5)
    if choice == 0:
        return data[:position] + rng.choice(specials) + data[position:]
    if choice == 1:
        return data[:position] + rng.choice(specials) + data[position + 1:]
    if choice == 2:
        return data[:position] + data[position + rng.randint(1, 20):]
    if choice == 3:
        return data[:position] + data[position:position + 40] * rng.randint(2, 5) + \
            data[position:]
    return data[:position]


FUZZ_SEEDS = [text.encode() for text in (GE_SAMPLE, ORF_SAMPLE, R40_START, R40_END,
              oru(flagged("HH~PH"), "NA|150452^MDC_PULS_OXIM_PLETH^MDC|1.2.1.150452|1^2^3||||||R",
                  "NM|0^MDC_ATTR_SAMP_RATE^MDC|1.2.1.150452.1|100|264608^MDC_DIM_PER_SEC^MDC|||||R",
                  "ST|0^N^L|1|a\\F\\b \\XE4BDA0\\||||||R"))] + [
    oru(nm(SPO2, "96", PERCENT), "ST|0^探头状态^99VENDOR|1.2.1.9|探头脱落 淺東||||||R",
        charset="GB 18030-2000", patient="住院東0042^^^HOSP^MR||王^東億").encode("gb18030")]


PATIENT_DATA = ("HED12", "LAZY", "KITTY", "住院", "東億")


def test_fuzz_mutated_fixtures_give_a_message_or_a_located_error() -> None:
    """6000 mutated fixtures (fixed seed): a decoded message, or a MessageError with a
    location and no patient data in its text; never another exception."""
    rng = random.Random(20261205)
    outcomes = {"decoded": 0, "error": 0}
    for i in range(6000):
        data = FUZZ_SEEDS[i % len(FUZZ_SEEDS)]
        for _ in range(rng.randint(1, 3)):
            data = _mutations(rng, data) or data
        try:
            result = decode_oru(data)
        except MessageError as error:
            assert error.location is not None, (data, error)
            assert not any(p in str(error) for p in PATIENT_DATA), (data, error)
            outcomes["error"] += 1
        else:
            assert isinstance(result, OruMessage)
            outcomes["decoded"] += 1
    assert outcomes["decoded"] > 100 and outcomes["error"] > 100, outcomes
