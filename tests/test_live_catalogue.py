"""The live pages' keys built at run time (`live.error.${code}`, `live.state.${state}`, ...)
exist in the catalogue: tests/test_catalogue.py sees only keys written literally."""

from __future__ import annotations

import re
from pathlib import Path

from contracts.catalogue import LANGUAGES, Catalogue
from mediaserver.seats import Seat
from signaling.tokens import ROLE_GRANTS

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = Catalogue.load()


def missing(keys: set[str]) -> list[str]:
    known = set(CATALOGUE.keys())
    return sorted(k for k in keys if k not in known)


def protocol_table_codes(heading: str) -> set[str]:
    """The first column of the table under ``## heading`` in signaling/PROTOCOL.md."""
    text = (ROOT / "signaling" / "PROTOCOL.md").read_text(encoding="utf-8")
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z-]+)`", section, re.MULTILINE))


def test_every_signalling_error_code_has_a_localised_text() -> None:
    codes = protocol_table_codes("Errors")
    assert {"unauthorized", "too-many-connections", "ptz-denied", "internal-error"} <= codes
    # ... and the page's own: the session ended by the server, the socket gone, no reply,
    # no camera or microphone, a redirect it cannot follow, a dead node no other took over
    # from, anything else.
    codes |= {"token-expired", "disconnected", "timeout", "device", "redirect-failed",
              "node-lost", "unknown"}
    assert missing({f"live.error.{code}" for code in codes}) == []


def test_every_stream_ended_reason_role_and_state_has_a_text() -> None:
    protocol = (ROOT / "signaling" / "PROTOCOL.md").read_text(encoding="utf-8")
    row = next(line for line in protocol.splitlines() if line.startswith("| `stream-ended`"))
    reasons = set(re.findall(r"`([a-z-]+)`", row.split("reason", 1)[1]))
    assert reasons == {"failed", "closed", "unpublished", "left"}
    keys = {f"ward.end-reason.{r}" for r in (*reasons, "unknown")}
    keys |= {f"live.role.{role}" for role in ROLE_GRANTS}
    # RTCPeerConnection.connectionState, and the server's transport states.
    keys |= {f"live.state.{s}" for s in ("new", "connecting", "connected", "disconnected",
                                         "failed", "closed", "unknown")}
    keys |= {f"recordings.status.{s}" for s in ("complete", "recovered", "recording",
                                                "invalid")}
    assert missing(keys) == []


def test_every_key_the_live_scripts_build_exists() -> None:
    ptz = (ROOT / "web_client" / "ptz.js").read_text(encoding="utf-8")
    directions = set(re.findall(r'\["([a-z-]+)", "[^"]+", (?:-?1|0), (?:-?1|0)\]', ptz))
    directions |= {"zoom-in", "zoom-out"}
    assert len(directions) == 10
    vitals = (ROOT / "web_client" / "vitals.js").read_text(encoding="utf-8")
    events = set(re.findall(r'MDC_EVT_\w+: "([a-z-]+)"', vitals))
    events |= set(re.findall(r'(?:\w+|"[<>]"): "(low|high|abnormal)"', vitals))
    assert {"low", "high", "abnormal", "asystole", "lead-off"} <= events
    keys = {f"live.ptz.direction.{d}" for d in directions}
    keys |= {f"live.alarm.event.{e}" for e in events}
    keys |= {f"live.alarm.priority.{p}" for p in ("high", "medium", "low", "none")}
    keys |= {f"live.ptz.motion.{m}" for m in ("move", "home", "preset-recall")}
    keys |= {"live.ptz.camera-online", "live.ptz.camera-offline"}
    keys |= {f"live.media.{m}" for m in ("video", "audio", "any")}
    keys |= {f"live.vital.{v}" for v in ("hr", "pr", "spo2", "rr", "temp", "nibp")}
    keys |= {f"live.wave.{w}" for w in ("pleth", "ecg", "resp", "co2")}
    keys |= {f"language.{language}" for language in LANGUAGES}
    # `room-full` errors name the limit (ui.js liveErrorText): one text per kind of seat.
    keys |= {f"live.error.room-full.{seat.limit_name}" for seat in Seat}
    assert missing(keys) == []


def test_the_chinese_texts_use_hospital_terms() -> None:
    keys = list(CATALOGUE.keys())
    zh = {key: CATALOGUE.text(key, "zh-CN") for key in keys}
    assert zh["live.vitals.title"] == "生命体征"
    assert zh["live.vital.hr"] == "心率" and zh["live.vital.nibp"] == "无创血压"
    assert zh["live.ptz.title"] == "摄像头控制" and zh["live.ptz.presets"] == "预置位"
    assert zh["live.ptz.home"] == "复位" and zh["live.ptz.zoom"] == "变焦"
    assert zh["live.role.expert"] == "会诊专家" and zh["ward.title"] == "床旁"
    assert zh["recordings.title"] == "教学录像"
    # No Chinese text of these areas is an untranslated English copy: Latin letters only in
    # the codes that stay as they are (SpO₂, CO₂).
    areas = {"live", "ward", "expert", "recordings", "landing", "vod"}
    latin_only = sorted(
        k for k, v in zh.items() if k.split(".")[0] in areas
        and re.search(r"[A-Za-z]", re.sub(r"\{\w+\}", "", v))
        and not re.search(r"[\u4e00-\u9fff]", v))
    assert latin_only == ["live.alarm.vital.spo2", "live.vital.spo2", "live.wave.co2",
                          "vod.spo2", "vod.wave.co2"], latin_only
