"""ACK messages: swapped applications, control ids, MSA, ERR, the message's character set."""

from __future__ import annotations

from datetime import UTC, datetime

import hl7

from devices.hl7.ack import Acknowledgement, Responder, build_ack, encode_ack
from devices.hl7.errors import ErrorCode, Location, MessageError, MessageRejected
from devices.hl7.oru import decode_oru, read_header
from tests.test_hl7_fixtures import GE_CONTROL_ID, GE_PATIENT_DATA, GE_SAMPLE, nm, oru

NOW = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)


def fields(segment: object) -> list[str]:
    return [str(f) for f in segment]  # type: ignore[attr-defined]


def test_accept_ack_for_the_ge_sample() -> None:
    header = read_header(GE_SAMPLE.encode())
    text = build_ack(header, Acknowledgement.accept(), control_id="HZ1", now=NOW)
    ack = hl7.parse(text)
    msh = ack.segment("MSH")
    assert str(msh[3]) == "HUIZHEN"  # GE left MSH-5 empty: our application
    assert str(msh[5]) == "VSP^080019FFFE134535^EUI-64"  # the sender's MSH-3
    assert str(msh[6]) == "GE Healthcare"
    assert str(msh[7]) == "20240304050607+0000"
    assert str(msh[9]) == "ACK^R01^ACK"
    assert str(msh[10]) == "HZ1"
    assert (str(msh[11]), str(msh[12]), str(msh[18])) == ("P", "2.6", "UNICODE UTF-8")
    assert fields(ack.segment("MSA")) == ["MSA", "AA", GE_CONTROL_ID]
    assert [str(s[0]) for s in ack] == ["MSH", "MSA"]
    assert text.endswith("\r") and "\n" not in text


def test_receiving_application_becomes_sending() -> None:
    text = GE_SAMPLE.replace("|GE Healthcare|||", "|GE Healthcare|HIS^1.2.3^ISO|WARD7|", 1)
    ack = hl7.parse(build_ack(read_header(text.encode()), Acknowledgement.accept(),
                              control_id="1", now=NOW, responder=Responder("OTHER")))
    msh = ack.segment("MSH")
    assert (str(msh[3]), str(msh[4]), str(msh[5])) == (
        "HIS^1.2.3^ISO", "WARD7", "VSP^080019FFFE134535^EUI-64")


def test_error_ack_has_reason_and_err_segment() -> None:
    raw = oru(nm("150456^MDC_PULS_OXIM_SAT_O2^MDC", "97"),
              nm("150456^MDC_PULS_OXIM_SAT_O2^MDC", "LAZY")).encode()
    header = read_header(raw)
    try:
        decode_oru(raw, header=header)
    except MessageError as error:
        ack_info = Acknowledgement.for_error(error)
    ack = hl7.parse(build_ack(header, ack_info, control_id="2", now=NOW))
    assert fields(ack.segment("MSA")) == ["MSA", "AE", "MSG00001",
                                          "not a number (value type NM)"]
    err = ack.segment("ERR")
    assert str(err[2]) == "OBX^2^5"
    assert str(err[3]) == "102^Data type error^HL70357"
    assert str(err[4]) == "E"


def test_reject_ack() -> None:
    header = read_header(oru(nm("1^X^MDC", "1"), message_type="ADT^A01").encode())
    error = MessageRejected("message type 'ADT' is not supported (only ORU^R01)",
                            location=Location("MSH", field=9, component=1),
                            code=ErrorCode.UNSUPPORTED_MESSAGE_TYPE)
    ack = hl7.parse(build_ack(header, Acknowledgement.for_error(error), control_id="3", now=NOW))
    assert str(ack.segment("MSH")[9]) == "ACK^A01^ACK"
    assert fields(ack.segment("MSA"))[:3] == ["MSA", "AR", "MSG00001"]
    assert str(ack.segment("ERR")[3]) == "200^Unsupported message type^HL70357"


def test_not_stored_ack() -> None:
    header = read_header(GE_SAMPLE.encode())
    text = build_ack(header, Acknowledgement.not_stored(), control_id="4", now=NOW)
    ack = hl7.parse(text)
    assert fields(ack.segment("MSA")) == ["MSA", "AE", GE_CONTROL_ID, "not stored"]
    assert str(ack.segment("ERR")[3]) == "207^Application internal error^HL70357"
    assert not any(p in text for p in GE_PATIENT_DATA)


def test_v231_uses_err1() -> None:
    header = read_header(oru(nm("1^X^MDC", "1"), version="2.3.1").encode())
    ack_info = Acknowledgement("AE", "bad", ErrorCode.DATA_TYPE, Location("OBX", 4, 5))
    ack = hl7.parse(build_ack(header, ack_info, control_id="5", now=NOW))
    assert str(ack.segment("ERR")[1]) == "OBX^4^5^102&Data type error&HL70357"
    assert str(ack.segment("MSH")[12]) == "2.3.1"


def test_reason_is_escaped() -> None:
    header = read_header(GE_SAMPLE.encode())
    text = build_ack(header, Acknowledgement("AE", "a|b^c"), control_id="6", now=NOW)
    assert "MSA|AE|004097134535|a\\F\\b\\S\\c\r" in text


def test_ack_without_header_for_non_hl7() -> None:
    ack = hl7.parse(build_ack(None, Acknowledgement("AR", "not an HL7 message"),
                              control_id="7", now=NOW))
    assert str(ack.segment("MSH")[9]) == "ACK"
    assert fields(ack.segment("MSA")) == ["MSA", "AR", "", "not an HL7 message"]


def test_ack_is_encoded_in_the_message_charset() -> None:
    raw = oru(nm("1^X^MDC", "1"), charset="GB 18030-2000",
              sender="監護儀東^080019FFFE134535^EUI-64").encode("gb18030")
    header = read_header(raw)
    data = encode_ack(build_ack(header, Acknowledgement.accept(), control_id="8", now=NOW),
                      header)
    ack = hl7.parse(data.decode("gb18030"))
    assert str(ack.segment("MSH")[5]) == "監護儀東^080019FFFE134535^EUI-64"
    assert str(ack.segment("MSH")[18]) == "GB 18030-2000"
    assert "東".encode("gb18030") in data


def test_echoed_fields_with_control_bytes_are_escaped() -> None:
    from dataclasses import replace

    from devices.hl7.ack import safe_field
    from devices.hl7.escape import DEFAULT_SEPARATORS

    assert safe_field("ABC-1^X", DEFAULT_SEPARATORS) == "ABC-1^X"
    assert safe_field("A\x1cB\x0b\r\x7f", DEFAULT_SEPARATORS) == "A\\X1C\\B\\X0B\\\\X0D\\\\X7F\\"
    header = read_header(GE_SAMPLE.encode())
    bad = replace(header, control_id="12\x1c34", sending_application="VSP\x0b",
                  version="2.\x0d6")
    text = build_ack(bad, Acknowledgement("AE", "x"), control_id="HZ1", now=NOW)
    assert not any(ord(c) < 0x20 and c != "\r" for c in text)
    assert text.count("\r") == 3  # MSH, MSA, ERR: no segment break smuggled in
    assert "MSA|AE|12\\X1C\\34|x" in text
