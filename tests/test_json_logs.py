"""``[logging] format = "json"``: one JSON object per line, from the formatter and from a
real ``huizhen serve`` process."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import urllib.request

import pytest

from huizhen.log_format import JsonFormatter, use_log_format
from tests.conftest import free_port, stop_process


def test_records_become_one_json_object_per_line():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("huizhen.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    use_log_format("json", logger)
    try:
        logger.info("[%s] 连接已建立 connected", "bed-12/p-1",
                    extra={"room": "bed-12", "participant": "p-1", "bytes": 1200})
        try:
            raise ValueError("bad\nvalue")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "[bed-12/p-1] 连接已建立 connected"
    assert (first["level"], first["logger"]) == ("INFO", "huizhen.test.json")
    assert (first["room"], first["participant"], first["bytes"]) == ("bed-12", "p-1", 1200)
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert "msg" not in first and "args" not in first  # no LogRecord internals
    assert second["level"] == "ERROR"
    assert second["exception"].startswith("Traceback") and "ValueError: bad" in second["exception"]


def test_values_json_cannot_hold_are_written_as_text():
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "m", None, None)
    record.path = object()
    assert json.loads(JsonFormatter().format(record))["path"].startswith("<object object")


def test_text_stays_the_default():
    handler = logging.StreamHandler(io.StringIO())
    logger = logging.getLogger("huizhen.test.text")
    logger.addHandler(handler)
    use_log_format("text", logger)
    logger.removeHandler(handler)
    assert not isinstance(handler.formatter, JsonFormatter)


@pytest.mark.timeout(60)
def test_a_server_logs_json_lines(tmp_path):
    port = free_port()
    env = {**os.environ, "HUIZHEN_SERVER_PORT": str(port), "HUIZHEN_LOGGING_FORMAT": "json",
           "HUIZHEN_RECORDER_ENABLED": "false", "HUIZHEN_STORAGE_DATA_DIR": str(tmp_path)}
    server = subprocess.Popen([sys.executable, "-m", "huizhen", "serve"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        assert "listening on" in server.stdout.readline()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health") as reply:
            assert reply.status == 200
    finally:
        stop_process(server)
    assert server.stderr is not None
    lines = [line for line in server.stderr.read().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line parses
    assert records, "the server logged nothing"
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
    access = [r for r in records if r["logger"] == "aiohttp.access"]
    assert any("GET /api/v1/health 200" in r["message"] for r in access), records
