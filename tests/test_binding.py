"""Bed bindings from configuration: rooms to cameras and monitors."""

from __future__ import annotations

import pytest

from devices.binding import BindingError, MonitorAddress, parse_bindings, parse_monitor


def test_camera_urls_are_checked_without_opening_anything():
    beds = parse_bindings([{"room": "a", "camera": "visca-serial:///dev/ttyUSB7?baud=38400"},
                           {"room": "b", "camera": "visca-tcp://cam.local:5678?address=2"}])
    assert beds[0].camera == "visca-serial:///dev/ttyUSB7?baud=38400"
    for url in ("http://x", "visca-tcp://host", "visca-serial://", "visca-udp://h?speed=1"):
        with pytest.raises(BindingError):
            parse_bindings([{"room": "a", "camera": url}])


def test_monitor_addresses():
    assert parse_monitor("hl7:080019FFFE0B4020") == MonitorAddress("hl7", "080019FFFE0B4020")
    assert parse_monitor("nonin:///dev/ttyUSB1") == MonitorAddress(
        "nonin", "nonin:/dev/ttyUSB1", "/dev/ttyUSB1")
    for bad in ("hl7:", "serial:///dev/x", "cms50d://"):
        with pytest.raises(BindingError):
            parse_monitor(bad)


def test_bindings_refuse_duplicates_and_unknown_keys():
    beds = parse_bindings([{"room": "bed-1", "camera": "visca-udp://127.0.0.1:52381",
                            "monitor": "hl7:DEV1"}, {"room": "bed-2"}])
    assert [b.room for b in beds] == ["bed-1", "bed-2"]
    assert beds[1].camera is None and beds[1].monitor is None
    with pytest.raises(BindingError, match="bound twice"):
        parse_bindings([{"room": "a"}, {"room": "a"}])
    with pytest.raises(BindingError, match="unknown keys"):
        parse_bindings([{"room": "a", "cam": "x"}])
    with pytest.raises(BindingError, match=r"beds\[0\] \(a\): camera URL scheme"):
        parse_bindings([{"room": "a", "camera": "ftp://x"}])


def test_a_bed_label_is_kept_and_checked() -> None:
    beds = parse_bindings([{"room": "icu3-bed12", "label": " ICU 3 · 12 床 "},
                           {"room": "bed-2"}])
    assert [b.label for b in beds] == ["ICU 3 · 12 床", None]
    for bad, message in (("", "non-empty"), ("x" * 65, "longer than 64"),
                         ("a\nb", "control characters"), (12, "non-empty string")):
        with pytest.raises(BindingError, match=rf"beds\[0\] \(a\): label .*{message}"):
            parse_bindings([{"room": "a", "label": bad}])
