"""Code tables: MDC observations and units, vendor codes, and MSH-18 character sets.

IEEE 11073 MDC codes are sent in OBX-3 as ``<code>^<name>^MDC``; the numeric code
is ``partition * 65536 + term`` (e.g. 150456 = 2 * 65536 + 0x4BB8). Philips sends
the same terms as MDIL ``pppp-tttt`` hex (``0002-4bb8^SpO2^MDIL``), which
``mdil_to_mdc`` turns into the MDC number. Codes no table knows are kept as sent:
``lookup_observation`` returns None and the sample keeps the sender's code and name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Observation:
    """What the tables know about an observation code."""

    code: str
    """The MDC code, e.g. "150456"."""
    name: str
    """The MDC reference id, e.g. "MDC_PULS_OXIM_SAT_O2"."""
    vital: str
    """Short key for displays: "spo2", "hr", "pleth", ..."""
    loinc: str | None = None


_OBSERVATIONS = (
    Observation("147842", "MDC_ECG_HEART_RATE", "hr", "8867-4"),
    Observation("149530", "MDC_PULS_OXIM_PULS_RATE", "pr", "8889-8"),
    Observation("150456", "MDC_PULS_OXIM_SAT_O2", "spo2", "59408-5"),
    Observation("150021", "MDC_PRESS_BLD_NONINV_SYS", "nibp_sys", "8480-6"),
    Observation("150022", "MDC_PRESS_BLD_NONINV_DIA", "nibp_dia", "8462-4"),
    Observation("150023", "MDC_PRESS_BLD_NONINV_MEAN", "nibp_mean"),
    Observation("150033", "MDC_PRESS_BLD_ART_SYS", "art_sys"),
    Observation("150034", "MDC_PRESS_BLD_ART_DIA", "art_dia"),
    Observation("150035", "MDC_PRESS_BLD_ART_MEAN", "art_mean"),
    Observation("151562", "MDC_RESP_RATE", "rr", "9279-1"),
    Observation("150344", "MDC_TEMP", "temp", "8310-5"),
    # Waveforms (OBX-2 NA).
    Observation("150452", "MDC_PULS_OXIM_PLETH", "pleth"),
    Observation("131329", "MDC_ECG_ELEC_POTL_I", "ecg"),
    Observation("131330", "MDC_ECG_ELEC_POTL_II", "ecg"),
    Observation("131331", "MDC_ECG_ELEC_POTL_V1", "ecg"),
    Observation("131332", "MDC_ECG_ELEC_POTL_V2", "ecg"),
    Observation("131333", "MDC_ECG_ELEC_POTL_V3", "ecg"),
    Observation("131334", "MDC_ECG_ELEC_POTL_V4", "ecg"),
    Observation("131335", "MDC_ECG_ELEC_POTL_V5", "ecg"),
    Observation("131336", "MDC_ECG_ELEC_POTL_V6", "ecg"),
    Observation("131389", "MDC_ECG_ELEC_POTL_III", "ecg"),
    Observation("131390", "MDC_ECG_ELEC_POTL_AVR", "ecg"),
    Observation("131391", "MDC_ECG_ELEC_POTL_AVL", "ecg"),
    Observation("131392", "MDC_ECG_ELEC_POTL_AVF", "ecg"),
)

OBSERVATIONS_BY_CODE: dict[str, Observation] = {o.code: o for o in _OBSERVATIONS}
OBSERVATIONS_BY_NAME: dict[str, Observation] = {o.name: o for o in _OBSERVATIONS}

_ECG_NAME = re.compile(r"MDC_ECG_(ELEC_POTL|LEAD)(_[A-Z0-9]+)?")


def lookup_observation(code: str, system: str, name: str) -> Observation | None:
    """The known observation for OBX-3 ``code^name^system``, or None (keep as sent)."""
    system = system.upper()
    if system in ("MDC", "") and code in OBSERVATIONS_BY_CODE:
        return OBSERVATIONS_BY_CODE[code]
    if system == "MDIL":
        mdc = mdil_to_mdc(code)
        if mdc is not None and mdc in OBSERVATIONS_BY_CODE:
            return OBSERVATIONS_BY_CODE[mdc]
    if system in ("MDC", ""):
        if name in OBSERVATIONS_BY_NAME:
            return OBSERVATIONS_BY_NAME[name]
        if _ECG_NAME.fullmatch(name):
            return Observation(code, name, "ecg")
    return None


_MDIL = re.compile(r"([0-9A-Fa-f]{4})-([0-9A-Fa-f]{4})")


def mdil_to_mdc(code: str) -> str | None:
    """Philips MDIL ``pppp-tttt`` (hex partition and term) as an MDC number, or None."""
    match = _MDIL.fullmatch(code)
    if match is None:
        return None
    return str(int(match.group(1), 16) * 65536 + int(match.group(2), 16))


# MDC units (OBX-6 ``code^name^MDC``) -> UCUM.
_UNITS = (
    ("262656", "MDC_DIM_DIMLESS", "1"),
    ("262688", "MDC_DIM_PERCENT", "%"),
    ("264864", "MDC_DIM_BEAT_PER_MIN", "/min"),
    ("264928", "MDC_DIM_RESP_PER_MIN", "/min"),
    ("266016", "MDC_DIM_MMHG", "mm[Hg]"),
    ("265987", "MDC_DIM_KILO_PASCAL", "kPa"),
    ("266048", "MDC_DIM_CM_H2O", "cm[H2O]"),
    ("268192", "MDC_DIM_DEGC", "Cel"),
    ("266560", "MDC_DIM_FAHR", "[degF]"),
    ("266418", "MDC_DIM_MILLI_VOLT", "mV"),
    ("264320", "MDC_DIM_SEC", "s"),
    ("264338", "MDC_DIM_MILLI_SEC", "ms"),
    ("264608", "MDC_DIM_PER_SEC", "/s"),
    ("264640", "MDC_DIM_HZ", "Hz"),
)

UCUM_BY_CODE: dict[str, str] = {code: ucum for code, _, ucum in _UNITS}
UCUM_BY_NAME: dict[str, str] = {name: ucum for _, name, ucum in _UNITS}


def ucum_unit(code: str, name: str, system: str) -> str | None:
    """The UCUM unit for OBX-6 ``code^name^system``, or None when no table knows it."""
    system = system.upper()
    if system in ("UCUM", "UCUM_CS") and code:
        return code
    if system in ("MDC", "") and code in UCUM_BY_CODE:
        return UCUM_BY_CODE[code]
    return UCUM_BY_NAME.get(name)


# Waveform facets (IHE PCD waveform content): the sample rate of the waveform whose
# OBX-4 sub-id is the facet's parent. MDC_ATTR_SAMP_RATE is often sent with code 0.
SAMPLE_RATE_NAMES = frozenset({"MDC_ATTR_SAMP_RATE"})
SAMPLE_PERIOD_NAMES = frozenset({"MDC_ATTR_TIME_PD_SAMP"})
SAMPLE_PERIOD_CODES = frozenset({"67981"})
RATE_UNITS_PER_SECOND = {"/s": 1.0, "Hz": 1.0, "/min": 1.0 / 60.0}
PERIOD_UNITS_SECONDS = {"s": 1.0, "ms": 1e-3}


# HL7 table 0211 (MSH-18) -> Python codec. Only ASCII-compatible character sets: MLLP
# framing and reading MSH before decoding need the ASCII bytes to mean ASCII.
_CHARSETS = {
    "": "ascii",
    "ASCII": "ascii",
    "ISO IR6": "ascii",
    "8859/1": "iso8859-1",
    "ISO IR100": "iso8859-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "UTF8": "utf-8",
    "GB 18030-2000": "gb18030",
    "GB18030-2000": "gb18030",
    "GB 18030": "gb18030",
    "GB18030": "gb18030",
    # Not in table 0211 but sent by Chinese systems; GB 18030 is a superset of both.
    "GBK": "gb18030",
    "GB2312": "gb18030",
    "KS X 1001": "euc_kr",
    "BIG-5": "big5",
    "BIG5": "big5",
}


# HL7 table 0211 as defined (whether supported here or not): the only MSH-18 values an
# error message quotes (anything else may be patient data run into MSH by a lost CR).
TABLE_0211 = frozenset({
    "ASCII", "8859/1", "8859/2", "8859/3", "8859/4", "8859/5", "8859/6", "8859/7", "8859/8",
    "8859/9", "8859/15", "ISO IR6", "ISO IR14", "ISO IR87", "ISO IR100", "ISO IR159",
    "GB 18030-2000", "KS X 1001", "CNS 11643-1992", "BIG-5", "UNICODE", "UNICODE UTF-8",
    "UNICODE UTF-16", "UNICODE UTF-32",
})


def codec_for_charset(charset: str) -> str | None:
    """The Python codec for an MSH-18 value (case and spacing tolerant), or None."""
    return _CHARSETS.get(" ".join(charset.upper().split()))
