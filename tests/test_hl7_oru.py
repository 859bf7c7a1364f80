"""ORU^R01 -> VitalSample: the GE sample, charsets, escapes, codes, waveforms, times, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from devices.hl7.codes import mdil_to_mdc
from devices.hl7.errors import ErrorCode, Location, MessageError, MessageRejected
from devices.hl7.escape import Separators, escape, unescape
from devices.hl7.oru import OruConfig, read_header
from devices.hl7.timestamp import format_timestamp, parse_timestamp
from tests.test_hl7_fixtures import GE_PATIENT_DATA, GE_SAMPLE, decode_both, nm, oru

SPO2 = "150456^MDC_PULS_OXIM_SAT_O2^MDC"
PERCENT = "262688^MDC_DIM_PERCENT^MDC"


def decode(text: str, encoding: str = "utf-8", config: OruConfig | None = None) -> list:
    return list(decode_both(text.encode(encoding), config).samples)


def test_ge_sample() -> None:
    message = decode_both(GE_SAMPLE.encode())
    assert message.header.control_id == "004097134535"
    assert message.skipped == 1  # the MDS grouping row
    at = datetime(2013, 1, 22, 13, 41, tzinfo=UTC)
    spo2, rr, temp = message.samples
    assert (spo2.vital, spo2.code, spo2.code_system, spo2.name) == (
        "spo2", "150456", "MDC", "MDC_PULS_OXIM_SAT_O2")
    assert (spo2.value, spo2.unit, spo2.loinc, spo2.status) == (100.0, "%", "59408-5", "R")
    assert (rr.vital, rr.value, rr.unit, rr.loinc) == ("rr", 18.0, "/min", "9279-1")
    assert (temp.vital, temp.value, temp.unit, temp.loinc) == ("temp", 37.1, "Cel", "8310-5")
    for sample in message.samples:
        assert sample.device_id == "080019FFFE0B4020"  # OBX-18
        assert sample.patient_id == "HED12"  # PID-3.1
        assert sample.observed_at == at  # no OBX-14: OBR-7, no zone: UTC by default
        assert sample.values is None and sample.text is None


def test_header_is_read_from_raw_bytes() -> None:
    header = read_header(GE_SAMPLE.encode())
    assert header.charset == "UNICODE UTF-8" and header.codec == "utf-8"
    assert header.device_id == "080019FFFE134535"
    assert (header.message_code, header.trigger_event, header.version) == ("ORU", "R01", "2.6")


def test_device_id_falls_back_to_msh3() -> None:
    (sample,) = decode(oru(nm(SPO2, "97", PERCENT, device="")))
    assert sample.device_id == "080019FFFE134535"


def test_device_id_prefers_the_eui64_repetition() -> None:
    (sample,) = decode(oru(nm(SPO2, "97", PERCENT, device="BED7^LOCAL~0011223344556677^EUI-64")))
    assert sample.device_id == "0011223344556677"


# --- character sets (MSH-18) -------------------------------------------------------------

def test_gb18030_with_separator_bytes_inside_characters() -> None:
    # 東 and 億 end in byte 0x7C ("|"), 淺 in 0x5C ("\\"): decoding must come before parsing.
    assert "東".encode("gb18030")[1:] == b"|" and "淺".encode("gb18030")[1:] == b"\\"
    text = oru(nm(SPO2, "96", PERCENT), "ST|0^探头状态^99VENDOR|1.2.1.9|探头脱落 淺東||||||R",
               charset="GB 18030-2000", patient="住院東0042^^^HOSP^MR||王^東億^^^^^L")
    spo2, status = decode(text, "gb18030")
    assert spo2.patient_id == "住院東0042" and spo2.value == 96.0
    assert status.text == "探头脱落 淺東" and status.name == "探头状态"


@pytest.mark.parametrize("charset", ["GB18030", "gb 18030", "GBK"])
def test_gb18030_spellings(charset: str) -> None:
    (sample,) = decode(oru(nm(SPO2, "96", PERCENT), charset=charset,
                           patient="床號-東^^^HOSP^MR"), "gb18030")
    assert sample.patient_id == "床號-東"


def test_utf8() -> None:
    (sample,) = decode(oru("ST|0^导联^99VENDOR|1|心电导联脱落 ✓||||||R",
                           patient="患者-0042^^^HOSP^MR||张^伟"))
    assert sample.patient_id == "患者-0042" and sample.text == "心电导联脱落 ✓"


def test_latin1() -> None:
    (sample,) = decode(oru("ST|0^Note^L|1|Müller||||||R", charset="8859/1"), "latin-1")
    assert sample.text == "Müller"


def test_no_msh18_means_ascii() -> None:
    text = oru(nm(SPO2, "97", PERCENT), charset="")
    assert decode(text, "ascii")[0].value == 97.0
    with pytest.raises(MessageError, match="not valid ASCII") as info:
        decode(text.replace("HED12", "HÉD12"), "utf-8")
    assert "segment 2 (PID)" in str(info.value) and "HÉD12" not in str(info.value)


def test_bytes_invalid_in_the_declared_charset_are_an_error() -> None:
    raw = oru(nm(SPO2, "97", PERCENT)).replace("HED12", "王").encode("gb18030")
    with pytest.raises(MessageError) as info:
        decode_both(raw)
    assert type(info.value) is MessageError and info.value.ack_code == "AE"
    assert info.value.location == Location("MSH", field=18)


def test_unknown_charset_is_rejected() -> None:
    with pytest.raises(MessageRejected, match=r"MSH-18: character set \(not an HL7 table "
                                              r"0211 name\) is not supported") as info:
        decode(oru(nm(SPO2, "97", PERCENT), charset="KLINGON-8"))
    assert info.value.ack_code == "AR" and info.value.code == ErrorCode.TABLE_VALUE_NOT_FOUND


def test_utf16_is_rejected() -> None:
    with pytest.raises(MessageRejected,
                       match="MSH-18: character set 'UNICODE UTF-16' is not supported"):
        decode(oru(nm(SPO2, "97", PERCENT), charset="UNICODE UTF-16"))


def test_header_values_run_into_by_patient_data_are_not_quoted() -> None:
    """A lost CR after MSH runs PID into MSH: only values shaped like codes are quoted."""
    text = oru(nm(SPO2, "97", PERCENT)).replace("UNICODE UTF-8\rPID|||", "UNICODE UTF-8")
    with pytest.raises(MessageRejected, match="MSH-18") as info:
        decode(text)
    assert not any(p in str(info.value) for p in GE_PATIENT_DATA), str(info.value)
    with pytest.raises(MessageRejected, match=r"MSH-9\.1: message type \(malformed\)"):
        decode(oru(nm(SPO2, "97"), message_type="HED12^R01"))
    with pytest.raises(MessageRejected, match=r"MSH-12: HL7 version \(malformed\)"):
        decode(oru(nm(SPO2, "97"), version="KITTY"))


# --- escapes ---------------------------------------------------------------------------------

def test_escapes_are_resolved_in_values_and_ids() -> None:
    text = oru("ST|0^Note^L|1|a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\.br\\g \\X4F4B\\ \\XE4BDA0\\||||||R",
               patient="HED\\T\\12^^^PID^MR")
    (sample,) = decode(text)
    assert sample.text == "a|b^c&d~e\\f\ng OK 你"
    assert sample.patient_id == "HED&12"


def test_escaped_code_name() -> None:
    (sample,) = decode(oru(nm("0002-4bb8^SpO2 \\T\\ PR^MDIL", "97", PERCENT)))
    assert sample.name == "SpO2 & PR"


def test_hex_escape_uses_the_message_charset() -> None:
    gb = "東".encode("gb18030").hex().upper()
    (sample,) = decode(oru(f"ST|0^N^L|1|\\X{gb}\\||||||R", charset="GB18030"), "gb18030")
    assert sample.text == "東"


@pytest.mark.parametrize(("value", "problem"), [
    ("a\\Fb", "unterminated"), ("\\X4\\", "even number"), ("\\XZZ\\", "non-hex"),
    ("\\Q\\", "unknown escape"), ("\\C2842\\", "character set switching")])
def test_bad_escapes(value: str, problem: str) -> None:
    with pytest.raises(MessageError, match=f"OBX-5 of OBX #1: .*{problem}") as info:
        decode(oru(f"ST|0^N^L|1|{value}||||||R"))
    assert info.value.ack_code == "AE"


def test_escape_roundtrip() -> None:
    seps = Separators()
    text = "a|b^c&d~e\\f\ng"
    assert unescape(escape(text, seps), seps) == text
    assert escape("plain", seps) == "plain"


def test_custom_separators() -> None:
    text = oru(nm(SPO2, "97", PERCENT)).replace("|", "#").replace("MSH#^~\\&", "MSH#^~\\&")
    (sample,) = decode(text)
    assert sample.value == 97.0 and sample.unit == "%"


@pytest.mark.parametrize("msh2", ["^~", "^^\\&", "^~a&"])
def test_bad_encoding_characters_are_rejected(msh2: str) -> None:
    with pytest.raises(MessageRejected, match="MSH-2"):
        read_header(oru(nm(SPO2, "97")).replace("^~\\&", msh2, 1).encode())


# --- codes and units ----------------------------------------------------------------------

def test_vendor_codes_are_kept() -> None:
    philips, mindray, unknown = decode(oru(
        nm("0002-4bb8^SpO2^MDIL", "97", "0004-0220^%^MDIL"),
        nm("101^HR^99MNDRY", "75", "^bpm^99MNDRY"),
        nm("999999^MDC_FUTURE_THING^MDC", "1.5", "999999^MDC_DIM_FUTURE^MDC"),
    ))
    assert (philips.code, philips.code_system, philips.vital) == ("0002-4bb8", "MDIL", "spo2")
    assert philips.unit == "%"  # the sender's unit text
    assert (mindray.code, mindray.code_system, mindray.name) == ("101", "99MNDRY", "HR")
    assert (mindray.vital, mindray.unit, mindray.value) == (None, "bpm", 75.0)
    assert (unknown.code, unknown.vital, unknown.unit) == ("999999", None, "MDC_DIM_FUTURE")


def test_mdil_is_partition_and_term() -> None:
    assert mdil_to_mdc("0002-4bb8") == "150456"
    assert mdil_to_mdc("0002-4182") == "147842"
    assert mdil_to_mdc("SpO2") is None


def test_the_table_of_vitals() -> None:
    rows = [
        ("147842^MDC_ECG_HEART_RATE^MDC", "264864^MDC_DIM_BEAT_PER_MIN^MDC", "hr", "/min",
         "8867-4"),
        ("149530^MDC_PULS_OXIM_PULS_RATE^MDC", "264864^MDC_DIM_BEAT_PER_MIN^MDC", "pr", "/min",
         "8889-8"),
        ("150021^MDC_PRESS_BLD_NONINV_SYS^MDC", "266016^MDC_DIM_MMHG^MDC", "nibp_sys", "mm[Hg]",
         "8480-6"),
        ("150022^MDC_PRESS_BLD_NONINV_DIA^MDC", "266016^MDC_DIM_MMHG^MDC", "nibp_dia", "mm[Hg]",
         "8462-4"),
        ("150023^MDC_PRESS_BLD_NONINV_MEAN^MDC", "266016^MDC_DIM_MMHG^MDC", "nibp_mean",
         "mm[Hg]", None),
        ("150033^MDC_PRESS_BLD_ART_SYS^MDC", "266016^MDC_DIM_MMHG^MDC", "art_sys", "mm[Hg]",
         None),
        ("150034^MDC_PRESS_BLD_ART_DIA^MDC", "266016^MDC_DIM_MMHG^MDC", "art_dia", "mm[Hg]",
         None),
        ("150035^MDC_PRESS_BLD_ART_MEAN^MDC", "266016^MDC_DIM_MMHG^MDC", "art_mean", "mm[Hg]",
         None),
    ]
    samples = decode(oru(*(nm(code, "80", unit) for code, unit, *_ in rows)))
    assert [(s.vital, s.unit, s.loinc) for s in samples] == [tuple(r[2:]) for r in rows]


def test_sender_loinc_is_used_when_the_table_has_none() -> None:
    (sample,) = decode(oru(nm("150023^MDC_PRESS_BLD_NONINV_MEAN^MDC^8478-0^Mean BP^LN", "90")))
    assert sample.loinc == "8478-0"


def test_ucum_units_are_kept() -> None:
    (sample,) = decode(oru(nm("8310-5^Body temperature^LN", "37", "Cel^degrees C^UCUM")))
    assert (sample.unit, sample.loinc) == ("Cel", "8310-5")


# --- rows that are not measurements, status, text ---------------------------------------------

def test_grouping_rows_are_skipped() -> None:
    message = decode_both(oru(
        "|69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X",
        "|70659^MDC_DEV_PRESS_BLD_NONINV_VMD^MDC|1.5.0.0|||||||X",
        nm(SPO2, "97", PERCENT)).encode())
    assert message.skipped == 2 and len(message.samples) == 1


def test_unavailable_measurement_is_kept_with_its_status() -> None:
    (sample,) = decode(oru(nm(SPO2, "", PERCENT, status="X")))
    assert sample.value is None and sample.status == "X" and sample.vital == "spo2"


def test_coded_value_is_text() -> None:
    (sample,) = decode(oru("CWE|184327^MDC_ECG_STAT_RHY^MDC|1|0^Sinus^MDC||||||F"))
    assert (sample.text, sample.status, sample.value) == ("0^Sinus^MDC", "F", None)


# --- waveforms -------------------------------------------------------------------------------

def test_waveform_with_sample_rate() -> None:
    samples = "^".join(str(i % 50) for i in range(250))
    wave, hr = decode(oru(
        f"NA|150452^MDC_PULS_OXIM_PLETH^MDC|1.2.1.150452|{samples}|262656^MDC_DIM_DIMLESS^MDC"
        "|||||R|||20240102030405.120+0800",
        "NM|0^MDC_ATTR_SAMP_RATE^MDC|1.2.1.150452.1|250|264608^MDC_DIM_PER_SEC^MDC|||||R",
        nm("147842^MDC_ECG_HEART_RATE^MDC", "70"),
    ))
    assert wave.is_waveform and wave.vital == "pleth" and wave.value is None
    assert wave.values == tuple(float(i % 50) for i in range(250))
    assert wave.sample_rate == 250.0 and wave.unit == "1"
    assert wave.observed_at == datetime(2024, 1, 1, 19, 4, 5, 120000, tzinfo=UTC)
    assert hr.vital == "hr"


def test_waveform_sample_period_in_ms() -> None:
    wave, = decode(oru(
        "NA|131330^MDC_ECG_ELEC_POTL_II^MDC|1.1.1.131330|0.1^-0.2^0.3|266418^MDC_DIM_MILLI_VOLT^"
        "MDC|||||R",
        "NM|67981^MDC_ATTR_TIME_PD_SAMP^MDC|1.1.1.131330.1|2|264338^MDC_DIM_MILLI_SEC^MDC|||||R",
    ))
    assert (wave.vital, wave.unit, wave.values, wave.sample_rate) == (
        "ecg", "mV", (0.1, -0.2, 0.3), 500.0)


def test_waveform_without_rate() -> None:
    (wave,) = decode(oru("NA|150452^MDC_PULS_OXIM_PLETH^MDC|1|1^2^3||||||R"))
    assert wave.values == (1.0, 2.0, 3.0) and wave.sample_rate is None


def test_sample_rate_attaches_to_its_own_waveform() -> None:
    first, second = decode(oru(
        "NA|150452^MDC_PULS_OXIM_PLETH^MDC|1.2.1.150452|1^2||||||R",
        "NA|131330^MDC_ECG_ELEC_POTL_II^MDC|1.1.1.131330|3^4||||||R",
        "NM|0^MDC_ATTR_SAMP_RATE^MDC|1.2.1.150452.1|100|264608^MDC_DIM_PER_SEC^MDC|||||R",
        "NM|0^MDC_ATTR_SAMP_RATE^MDC|1.1.1.131330.1|500|264608^MDC_DIM_PER_SEC^MDC|||||R",
    ))
    assert (first.sample_rate, second.sample_rate) == (100.0, 500.0)


def test_waveform_with_a_bad_sample() -> None:
    with pytest.raises(MessageError, match=r"OBX-5 of OBX #1: not a number \(waveform sample 3\)"):
        decode(oru("NA|150452^MDC_PULS_OXIM_PLETH^MDC|1|1^2^x^4||||||R"))


# --- observation time --------------------------------------------------------------------------

def test_time_precedence_obx14_obr7_msh7() -> None:
    obx, obr = decode(oru(nm(SPO2, "1", time="20240101120000+0100"), nm(SPO2, "2"),
                          obr_time="20240101100000", sent_at="20240101090000"))
    assert obx.observed_at == datetime(2024, 1, 1, 11, 0, tzinfo=UTC)
    assert obr.observed_at == datetime(2024, 1, 1, 10, 0, tzinfo=UTC)
    (msh,) = decode(oru(nm(SPO2, "3"), sent_at="20240101090000"))
    assert msh.observed_at == datetime(2024, 1, 1, 9, 0, tzinfo=UTC)


def test_device_zone_applies_to_times_without_zone() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    config = OruConfig(device_zones={"080019FFFE0B4020": shanghai})
    local, explicit = decode(oru(nm(SPO2, "1", time="20240101120000"),
                                 nm(SPO2, "2", time="20240101120000-0500")), config=config)
    assert local.observed_at.tzinfo is shanghai
    assert local.observed_at.astimezone(UTC) == datetime(2024, 1, 1, 4, 0, tzinfo=UTC)
    assert explicit.observed_at.astimezone(UTC) == datetime(2024, 1, 1, 17, 0, tzinfo=UTC)
    (gateway,) = decode(oru(nm(SPO2, "1", device="")), config=OruConfig(
        default_zone=timezone(timedelta(hours=2)),
        device_zones={"080019FFFE134535": shanghai}))
    assert gateway.observed_at.tzinfo is shanghai  # by the MSH-3 device id


def test_bad_observation_time() -> None:
    with pytest.raises(MessageError, match="OBX-14 of OBX #1: not a date/time"):
        decode(oru(nm(SPO2, "1", time="2024-01-01")))
    with pytest.raises(MessageError, match="OBX-14 of OBX #1: date/time out of range"):
        decode(oru(nm(SPO2, "1", time="20241301")))


def test_no_observation_time() -> None:
    with pytest.raises(MessageError, match="no observation time") as info:
        decode(oru(nm(SPO2, "1"), sent_at=""))
    assert info.value.code == ErrorCode.REQUIRED_FIELD_MISSING


@pytest.mark.parametrize(("text", "expected"), [
    ("20130122", datetime(2013, 1, 22, tzinfo=UTC)),
    ("2013012213", datetime(2013, 1, 22, 13, tzinfo=UTC)),
    ("201301221341", datetime(2013, 1, 22, 13, 41, tzinfo=UTC)),
    ("20130122134105.5", datetime(2013, 1, 22, 13, 41, 5, 500000, tzinfo=UTC)),
    ("20130122134105.1234567", datetime(2013, 1, 22, 13, 41, 5, 123456, tzinfo=UTC)),
    ("20130122134105+0530", datetime(2013, 1, 22, 8, 11, 5, tzinfo=UTC)),
    ("201301221341-0000", datetime(2013, 1, 22, 13, 41, tzinfo=UTC)),
])
def test_timestamps(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected and parsed.tzinfo is not None


@pytest.mark.parametrize("text", ["2013", "201301", "20130122T1341", "20130122134105+05",
                                  "20130122+2400", "20130230"])
def test_bad_timestamps(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_timestamp(text)
    assert text not in str(info.value)


def test_format_timestamp() -> None:
    zone = timezone(timedelta(hours=-3, minutes=-30))
    moment = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=zone)
    assert format_timestamp(moment) == "20240506070809-0330"
    assert format_timestamp(moment, milliseconds=True) == "20240506070809.123-0330"
    assert parse_timestamp(format_timestamp(moment, milliseconds=True)) == \
        moment.replace(microsecond=123000)
    with pytest.raises(ValueError, match="timezone-aware"):
        format_timestamp(datetime(2024, 1, 1))


# --- reject (AR) vs error (AE) ---------------------------------------------------------------

@pytest.mark.parametrize(("raw", "match"), [
    (b"hello world", "not an HL7 message"),
    (b"", "not an HL7 message"),
    (b"PID|||HED12", "not an HL7 message"),
    (b"BHS|^~\\&|x\rMSH|^~\\&|y", "batches"),
    (b"MSH|^~", "too short"),
])
def test_not_hl7_is_rejected(raw: bytes, match: str) -> None:
    with pytest.raises(MessageRejected, match=match):
        read_header(raw)


@pytest.mark.parametrize(("kwargs", "match", "code"), [
    ({"message_type": "ADT^A01^ADT_A01"}, "MSH-9.1: message type 'ADT'",
     ErrorCode.UNSUPPORTED_MESSAGE_TYPE),
    ({"message_type": "ORU^R30"}, "MSH-9.2: trigger event 'R30'", ErrorCode.UNSUPPORTED_EVENT),
    ({"version": "2.2"}, "MSH-12: HL7 version '2.2'", ErrorCode.UNSUPPORTED_VERSION),
    ({"version": ""}, "MSH-12", ErrorCode.UNSUPPORTED_VERSION),
    ({"control_id": ""}, "MSH-10: message control id is missing",
     ErrorCode.REQUIRED_FIELD_MISSING),
])
def test_unsupported_messages_are_rejected(kwargs: dict[str, str], match: str,
                                           code: ErrorCode) -> None:
    with pytest.raises(MessageRejected, match=match) as info:
        decode(oru(nm(SPO2, "97"), **kwargs))
    assert info.value.code == code


@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4", "2.5.1", "2.6", "2.7.1", "2.8"])
def test_supported_versions(version: str) -> None:
    assert decode(oru(nm(SPO2, "97"), version=version))[0].value == 97.0


def test_two_messages_in_one_frame_are_rejected() -> None:
    with pytest.raises(MessageRejected, match="more than one MSH"):
        decode(GE_SAMPLE + GE_SAMPLE)


@pytest.mark.parametrize(("row", "match"), [
    (nm(SPO2, "ninety"), r"OBX-5 of OBX #2: not a number \(value type NM\)"),
    (nm(SPO2, "NaN"), "OBX-5 of OBX #2: not a number"),
    (nm(SPO2, "97^98"), "OBX-5 of OBX #2: not a number"),
    ("|150456^MDC_PULS_OXIM_SAT_O2^MDC|1|97||||||R", "OBX-2 of OBX #2: value type missing"),
    (nm("", "97"), "OBX-3 of OBX #2: observation identifier missing"),
])
def test_malformed_observations_are_errors(row: str, match: str) -> None:
    with pytest.raises(MessageError, match=match) as info:
        decode(oru(nm(SPO2, "97"), row))
    assert type(info.value) is MessageError and info.value.ack_code == "AE"


def test_error_location_counts_obx_segments() -> None:
    with pytest.raises(MessageError) as info:
        decode(oru(nm(SPO2, "97"), nm(SPO2, "98"), nm(SPO2, "x")))
    assert info.value.location == Location("OBX", 3, 5)
    assert str(info.value) == "OBX-5 of OBX #3: not a number (value type NM)"


def test_errors_carry_no_patient_data() -> None:
    # (Errors do quote protocol codes from MSH-9, MSH-12 and MSH-18, which hold no patient data.)
    bad = [
        oru(nm(SPO2, "HED12")),
        oru(nm(SPO2, "97", time="LAZYKITTY")),
        oru("ST|0^N^L|1|KITTY \\Q\\||||||R"),
        oru(nm("KITTY\\Q\\^N^L", "97")),
        oru(nm(SPO2, "97", "\\KITTY")),
        GE_SAMPLE.replace("HED12", "HED12\\X4\\"),
    ]
    for text in bad:
        with pytest.raises(MessageError) as info:
            decode(text)
        message = str(info.value)
        assert not any(p in message for p in GE_PATIENT_DATA), message
