"""The deployment files in config/deploy/ (compose, systemd units, coturn, env examples)
say what the code accepts: every HUIZHEN_* variable they set is a setting with a valid
value, the commands they run exist, and the image holds every package the project has.

Nothing here starts Docker or systemd (neither runs on the test machines); what is
checked is what would otherwise fail only on the day a hospital deploys.
"""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "config" / "deploy"
SECRET = "a" * 64
PLACEHOLDER = re.compile(r"\$\{(\w+)(?::\?[^}]*)?\}")
COMPOSE_VARIABLES = {"HUIZHEN_SECRET": SECRET, "RECORDS_SECRET": "b" * 64,
                     "HANDOFF_SECRET": "c" * 64, "TURN_SECRET": "d" * 64,
                     "PUBLIC_HOST": "media.hospital.example", "PUBLIC_IP": "203.0.113.10"}


def interpolate(value: Any) -> Any:
    """Compose's ``${VAR}`` / ``${VAR:?message}`` with the variables an operator exports."""
    if isinstance(value, str):
        return PLACEHOLDER.sub(lambda m: COMPOSE_VARIABLES[m.group(1)], value)
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


def compose() -> dict[str, Any]:
    return interpolate(yaml.safe_load((DEPLOY / "compose.yaml").read_text("utf-8")))


def env_file(name: str, tmp_path: Path) -> dict[str, str]:
    """KEY=VALUE lines (systemd's EnvironmentFile), a secret file made where one is named."""
    env: dict[str, str] = {}
    for line in (DEPLOY / name).read_text("utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    if "HUIZHEN_ICE_TURN_SECRET_FILE" in env:
        secret = tmp_path / "turn-secret"
        secret.write_text("e" * 64 + "\n")
        env["HUIZHEN_ICE_TURN_SECRET_FILE"] = str(secret)
    return env


def test_every_compose_service_of_ours_has_valid_settings() -> None:
    services = compose()["services"]
    ours = {name: s for name, s in services.items() if s.get("image") == "huizhen:latest"}
    assert set(ours) == {"records", "node-1", "node-2"}
    nodes = {}
    for name, service in ours.items():
        settings = load_settings(environ=service["environment"])  # refuses unknown names
        assert settings.auth.token_secret == SECRET, name
        assert str(settings.storage.data_dir) == "/var/lib/huizhen"
        if name.startswith("node"):
            nodes[name] = settings
            assert service["command"] == ["python", "-m", "huizhen", "serve"]
            assert service["network_mode"] == "host"  # media is UDP on ports chosen at run time
        else:
            assert service["command"] == ["python", "-m", "huizhen", "records"]
    # Two nodes on one host: their own ports and public URLs, one Redis, one TURN secret.
    assert len({s.server.port for s in nodes.values()}) == 2
    assert len({s.cluster.node_url for s in nodes.values()}) == 2
    assert {s.cluster.redis_url for s in nodes.values()} == {"redis://127.0.0.1:6379/0"}
    assert all(s.turn is not None and s.turn.secret == COMPOSE_VARIABLES["TURN_SECRET"]
               for s in nodes.values())
    assert all(s.media.ice_addresses == ("203.0.113.10",) or
               list(s.media.ice_addresses) == ["203.0.113.10"] for s in nodes.values())
    # The recorder hands off to the records service with the token it expects.
    records = load_settings(environ=ours["records"]["environment"])
    assert all(s.recorder.handoff_token == records.recorder.handoff_token for s in nodes.values())
    assert all(s.recorder.handoff_url.startswith(f"http://127.0.0.1:{records.records.port}/")
               for s in nodes.values())
    # coturn gets the very secret the nodes mint credentials with.
    turn_command = " ".join(services["coturn"]["command"])
    assert f"--static-auth-secret={COMPOSE_VARIABLES['TURN_SECRET']}" in turn_command


def test_compose_refuses_to_start_without_the_secrets() -> None:
    text = (DEPLOY / "compose.yaml").read_text("utf-8")
    for variable in ("HUIZHEN_SECRET", "RECORDS_SECRET", "HANDOFF_SECRET", "TURN_SECRET"):
        assert f"${{{variable}:?" in text, variable  # compose stops with the message


@pytest.mark.parametrize("name", ["node.env.example", "records.env.example"])
def test_the_env_examples_are_valid_settings(name: str, tmp_path: Path) -> None:
    env = env_file(name, tmp_path)
    settings = load_settings(environ=env)
    assert len(settings.auth.token_secret) >= 32
    if name.startswith("node"):
        assert settings.cluster.redis_url.startswith("redis://")
        assert settings.turn is not None and settings.turn.secret == "e" * 64
        assert len(settings.recorder.handoff_token) >= 32
    else:
        assert settings.records.database_url.startswith("postgresql+psycopg://")
        assert settings.records.secure_cookies is True


@pytest.mark.parametrize(("unit", "command"), [("huizhen-node.service", "serve"),
                                               ("huizhen-records.service", "records")])
def test_the_systemd_units_run_real_commands(unit: str, command: str) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read(DEPLOY / unit)
    service = parser["Service"]
    assert service["ExecStart"].endswith(f"-m huizhen {command}")
    assert service["Restart"] == "on-failure"
    assert service["User"] == "huizhen" and service["NoNewPrivileges"] == "true"
    # The command exists (its --help exits 0) ...
    assert subprocess.run([sys.executable, "-m", "huizhen", command, "--help"],
                          cwd=ROOT, capture_output=True).returncode == 0
    # ... and a configuration mistake exits with a status the unit does not restart on
    # (2: unsafe secrets, 78: EX_CONFIG); a crash or a port still in use is restarted.
    assert service["RestartPreventExitStatus"].split() == ["2", "78"]
    bad = subprocess.run([sys.executable, "-m", "huizhen", command], cwd=ROOT,
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "HUIZHEN_SERVR_PORT": "1"})
    assert bad.returncode == 78, bad.stderr
    assert "HUIZHEN_SERVER_PORT" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_the_image_holds_every_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {line.split()[1] for line in (DEPLOY / "Dockerfile").read_text("utf-8").splitlines()
              if line.startswith("COPY ")}
    assert packages | {"web_client"} <= copied


def test_coturn_relays_only_to_what_it_is_allowed() -> None:
    lines = [line.strip() for line in (DEPLOY / "turnserver.conf").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert "use-auth-secret" in lines and "no-multicast-peers" in lines
    denied = {line.split("=", 1)[1] for line in lines if line.startswith("denied-peer-ip=")}
    assert {"10.0.0.0-10.255.255.255", "172.16.0.0-172.31.255.255",
            "192.168.0.0-192.168.255.255", "127.0.0.0-127.255.255.255"} <= denied
