"""Start-up mistakes end the real CLI with one line on stderr and a non-zero exit code, and
the demo secrets never listen on a network (the pure decision, then the real processes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import ConfigError, load_settings
from config.listen_check import (
    Secret,
    is_loopback,
    listen_problem,
    service_secrets,
    startup_problem,
)
from config.settings import default_value
from huizhen.running import ListenError, bind

STRONG = "b1f4c0ffee0123456789abcdef0123456789abcdef"
DEMO_AUTH = str(default_value("auth", "token_secret"))
DEMO_RECORDS = str(default_value("records", "token_secret"))
HOW = "to a random value of 32+ characters (e.g. from: openssl rand -hex 32)"


# --- the pure decision ---------------------------------------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost",
                                  "LOCALHOST", "localhost."])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.20.3.4", "192.168.1.10",
                                  "fe80::1", "consult.example.org", "localhost.example.org",
                                  "127.0.0.1.nip.io"])
def test_network_addresses(host: str) -> None:
    assert not is_loopback(host)


def auth(value: str, required: bool = True) -> Secret:
    return Secret("auth", "token_secret", value, DEMO_AUTH, required)


def test_demo_secret_is_fine_on_loopback_and_refused_on_a_network() -> None:
    assert listen_problem("127.0.0.1", 8080, [auth(DEMO_AUTH)]) is None
    assert listen_problem("localhost", 8080, [auth(DEMO_AUTH)]) is None
    assert listen_problem("0.0.0.0", 8080, [auth(DEMO_AUTH)]) == (
        "refusing to listen on 0.0.0.0:8080 with the demo auth.token_secret; "
        f"set HUIZHEN_AUTH_TOKEN_SECRET {HOW}")
    assert "refusing to listen on [::]:8080 with the demo" in str(
        listen_problem("::", 8080, [auth(DEMO_AUTH)]))
    assert "on 0.0.0.0:8080" in str(listen_problem("", 8080, [auth(DEMO_AUTH)]))
    assert listen_problem("10.0.0.5", 8080, [auth(STRONG)]) is None


def test_short_and_empty_secrets() -> None:
    # Too short is refused everywhere (the token authorities would refuse it anyway).
    assert listen_problem("127.0.0.1", 8080, [auth("x" * 31)]) == (
        f"auth.token_secret is too short (31 characters); set HUIZHEN_AUTH_TOKEN_SECRET {HOW}")
    assert listen_problem("127.0.0.1", 8080, [auth("x" * 32)]) is None
    assert listen_problem("127.0.0.1", 8080, [auth("")]) == (
        f"auth.token_secret is empty; set HUIZHEN_AUTH_TOKEN_SECRET {HOW}")
    assert "with an empty auth.token_secret" in str(listen_problem("0.0.0.0", 1, [auth("")]))
    # An optional secret may stay empty (its feature is off), but not be short.
    assert listen_problem("0.0.0.0", 1, [auth(STRONG), auth("", required=False)]) is None
    assert "too short" in str(listen_problem("0.0.0.0", 1, [auth(STRONG),
                                                            auth("short", required=False)]))


def test_each_service_checks_the_secrets_it_uses() -> None:
    network = {"HUIZHEN_SERVER_HOST": "0.0.0.0", "HUIZHEN_RECORDS_HOST": "192.168.1.20"}
    demo = load_settings(environ=network)
    assert "demo auth.token_secret" in str(startup_problem(demo, "serve"))
    assert "demo records.token_secret" in str(startup_problem(demo, "records"))
    # The records service also mints room tokens with auth.token_secret.
    only_records = load_settings(environ={**network, "HUIZHEN_RECORDS_TOKEN_SECRET": STRONG})
    assert "192.168.1.20:8090 with the demo auth.token_secret" in str(
        startup_problem(only_records, "records"))
    both = load_settings(environ={**network, "HUIZHEN_RECORDS_TOKEN_SECRET": STRONG,
                                  "HUIZHEN_AUTH_TOKEN_SECRET": STRONG[::-1]})
    assert startup_problem(both, "serve") is None
    assert startup_problem(both, "records") is None
    # A media server that hands recordings off needs the recorder's token.
    handing_off = load_settings(environ={**network, "HUIZHEN_AUTH_TOKEN_SECRET": STRONG,
                                         "HUIZHEN_RECORDER_HANDOFF_URL": "http://r/api"})
    assert "with an empty recorder.handoff_token; set HUIZHEN_RECORDER_HANDOFF_TOKEN" in str(
        startup_problem(handing_off, "serve"))
    assert [s.setting for s in service_secrets(both, "records")] == [
        "records.token_secret", "auth.token_secret", "recorder.handoff_token"]
    # The demo and the tests: loopback with the demo secrets.
    assert startup_problem(load_settings(environ={}), "serve") is None
    assert startup_problem(load_settings(environ={}), "records") is None


# --- the settings loader -------------------------------------------------------------------

@pytest.mark.parametrize(("env", "message"), [
    ({"HUIZHEN_SERVR_PORT": "9000"},
     "unknown environment variable HUIZHEN_SERVR_PORT (did you mean HUIZHEN_SERVER_PORT?)"),
    ({"huizhen_server_port": "9000"}, "did you mean HUIZHEN_SERVER_PORT?"),
    ({"HUIZHEN_AUTH_SECRET": "x"}, "unknown environment variable HUIZHEN_AUTH_SECRET"),
    ({"HUIZHEN_CONFG": "/etc/huizhen.toml"}, "did you mean HUIZHEN_CONFIG?"),
    ({"HUIZHEN_SERVER_PORT": "0"}, "server.port must be a port number from 1 to 65535"),
    ({"HUIZHEN_RECORDS_PORT": "70000"}, "records.port must be a port number from 1 to 65535"),
    ({"HUIZHEN_SERVER_PORT": "abc"}, "HUIZHEN_SERVER_PORT: expected an integer"),
])
def test_environment_mistakes(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=env)
    assert message in str(caught.value)


def test_documented_non_setting_variables_are_allowed(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text("[server]\nport = 9001\n")
    settings = load_settings(environ={"HUIZHEN_CONFIG": str(path),
                                      "HUIZHEN_SCREENSHOTS": "/tmp/shots",
                                      "HUIZHEN_BENCH_SECRET": "x",
                                      "HUIZHEN_TEST_POSTGRES_URL": "postgresql://t",
                                      "OTHER_SERVER_PORT": "1"})
    assert settings.server.port == 9001


@pytest.mark.parametrize(("content", "message"), [
    ("[server]\nport = 0\n", "server.port must be a port number from 1 to 65535"),
    ("[records]\nport = 70000\n", "records.port must be a port number"),
    ('[server]\nport = "abc"\n', "server.port must be an integer"),
    ("[auth]\ntoken_secret = 12\n", "auth.token_secret must be a string"),
    ('[recorder]\nenabled = "yes"\n', "recorder.enabled must be true or false"),
])
def test_file_mistakes(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "site.toml"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert message in str(caught.value)


def test_a_whole_number_is_a_number(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text("[media]\nanswer_timeout = 20\n")
    assert load_settings(path, environ={}).media.answer_timeout == 20.0


# --- the listening socket ------------------------------------------------------------------

@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_bind_reports_a_port_in_use_in_one_line(busy_port: int) -> None:
    with pytest.raises(ListenError) as caught:
        bind("127.0.0.1", busy_port)
    assert str(caught.value) == (
        f"cannot listen on 127.0.0.1:{busy_port}: address already in use")
    sockets = bind("127.0.0.1", 0)
    try:
        assert [s.getsockname()[0] for s in sockets] == ["127.0.0.1"]
    finally:
        for sock in sockets:
            sock.close()


# --- the real CLI --------------------------------------------------------------------------

def run_cli(command: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("HUIZHEN_")}
    clean.update({"HUIZHEN_STORAGE_DATA_DIR": str(tmp_path), **env})
    return subprocess.run([sys.executable, "-m", "huizhen", command], capture_output=True,
                          text=True, timeout=60, env=clean)


def assert_one_line(result: subprocess.CompletedProcess[str], expected: str,
                    code: int | None = None) -> None:
    assert result.returncode != 0
    if code is not None:
        assert result.returncode == code
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("huizhen: ")
    assert expected in lines[0], lines[0]
    assert "listening on" not in result.stdout


@pytest.mark.parametrize(("command", "env", "expected"), [
    ("serve", {"HUIZHEN_SERVER_HOST": "0.0.0.0"},
     "huizhen: refusing to listen on 0.0.0.0:8080 with the demo auth.token_secret; "
     f"set HUIZHEN_AUTH_TOKEN_SECRET {HOW}"),
    ("serve", {"HUIZHEN_SERVER_HOST": "::", "HUIZHEN_AUTH_TOKEN_SECRET": ""},
     "refusing to listen on [::]:8080 with an empty auth.token_secret"),
    ("records", {"HUIZHEN_RECORDS_HOST": "consult.example.org"},
     "refusing to listen on consult.example.org:8090 with the demo records.token_secret; "
     "set HUIZHEN_RECORDS_TOKEN_SECRET"),
    ("records", {"HUIZHEN_RECORDS_HOST": "0.0.0.0", "HUIZHEN_RECORDS_TOKEN_SECRET": STRONG},
     "with the demo auth.token_secret"),
    ("serve", {"HUIZHEN_AUTH_TOKEN_SECRET": "too-short"},
     "auth.token_secret is too short (9 characters)"),
    ("records", {"HUIZHEN_RECORDER_HANDOFF_TOKEN": "short"},
     "recorder.handoff_token is too short (5 characters)"),
])
def test_unsafe_secrets_are_refused(tmp_path: Path, command: str, env: dict[str, str],
                                    expected: str) -> None:
    result = run_cli(command, tmp_path, **env)
    assert_one_line(result, expected, code=2)
    assert not (tmp_path / "records.sqlite3").exists()  # refused before touching anything


@pytest.mark.parametrize(("command", "env", "expected"), [
    ("serve", {"HUIZHEN_SERVR_PORT": "9000"},
     "unknown environment variable HUIZHEN_SERVR_PORT (did you mean HUIZHEN_SERVER_PORT?)"),
    ("records", {"HUIZHEN_RECORDS_PORT": "0"}, "records.port must be a port number"),
    ("serve", {"HUIZHEN_SERVER_PORT": "70000"}, "server.port must be a port number"),
    ("serve", {"HUIZHEN_SERVER_PORT": "abc"}, "HUIZHEN_SERVER_PORT: expected an integer"),
])
def test_configuration_mistakes(tmp_path: Path, command: str, env: dict[str, str],
                                 expected: str) -> None:
    # EX_CONFIG: the systemd units do not restart on it (config/deploy/*.service).
    assert_one_line(run_cli(command, tmp_path, **env), expected, code=78)


def test_port_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text('[server]\nport = "abc"\n')
    assert_one_line(run_cli("serve", tmp_path, HUIZHEN_CONFIG=str(path)),
                    "server.port must be an integer", code=78)


@pytest.mark.parametrize("command", ["serve", "records"])
def test_port_in_use(tmp_path: Path, busy_port: int, command: str) -> None:
    variable = "HUIZHEN_SERVER_PORT" if command == "serve" else "HUIZHEN_RECORDS_PORT"
    result = run_cli(command, tmp_path, **{variable: str(busy_port)})
    # Not a configuration mistake: the port may be free on the service manager's restart.
    assert_one_line(result, f"huizhen: cannot listen on 127.0.0.1:{busy_port}: "
                            "address already in use", code=1)
    assert not (tmp_path / "records.sqlite3").exists()  # nothing migrated


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_records_database_unreachable(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://huizhen:s3cret-pw@127.0.0.1:{free_port()}/records"
    result = run_cli("records", tmp_path, HUIZHEN_RECORDS_PORT=str(free_port()),
                     HUIZHEN_RECORDS_DATABASE_URL=url)
    assert_one_line(result, "huizhen: cannot open the records database: connection failed")
    assert "s3cret-pw" not in result.stderr  # the URL's password is never printed
