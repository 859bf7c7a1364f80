"""Whether a service may start with the secrets it was given, on the address it was given.

The demo secrets in ``default.toml`` are public, so a server that uses them must not be
reachable from a network: on a loopback address (the demo, the tests) they are allowed,
anywhere else the service refuses to start. A secret shorter than 32 characters is refused
everywhere (HS256 needs a key at least as long as the hash, RFC 7518 3.2).

``listen_problem`` is the pure decision; ``startup_problem`` gathers its inputs from the
settings of one service.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from config.settings import Settings, default_value, env_name

MIN_SECRET = 32
HOW_TO_SET = "a random value of 32+ characters (e.g. from: openssl rand -hex 32)"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost",
                            "ip6-loopback"})

Service = Literal["serve", "records"]


@dataclass(frozen=True)
class Secret:
    """One secret a service uses: its setting (``section.key``), its value, the public demo
    value it must not keep on a network ("" when there is none), and whether the service
    needs it at all (an optional secret may stay empty: its feature is then off)."""

    section: str
    key: str
    value: str
    demo: str
    required: bool

    @property
    def setting(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def how(self) -> str:
        return f"set {env_name(self.section, self.key)} to {HOW_TO_SET}"


def is_loopback(host: str) -> bool:
    """True only for addresses no other machine can reach: 127.0.0.0/8, ::1, localhost.
    An empty host or 0.0.0.0 / :: listens on every interface; any other name may resolve
    to a network address."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def address(host: str, port: int) -> str:
    """``host:port`` as people write it (IPv6 in brackets; every interface as 0.0.0.0)."""
    shown = host.strip() or "0.0.0.0"
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"{shown}:{port}"


def listen_problem(host: str, port: int, secrets: list[Secret]) -> str | None:
    """Why a service with these secrets must not listen on host:port, or None if it may."""
    network = not is_loopback(host)
    where = address(host, port)
    for secret in secrets:
        if not secret.value:
            if not secret.required:
                continue
            if network:
                return f"refusing to listen on {where} with an empty {secret.setting}; " \
                       f"{secret.how}"
            return f"{secret.setting} is empty; {secret.how}"
        if network and secret.demo and secret.value == secret.demo:
            return f"refusing to listen on {where} with the demo {secret.setting}; " \
                   f"{secret.how}"
        if len(secret.value) < MIN_SECRET:
            return f"{secret.setting} is too short ({len(secret.value)} characters); " \
                   f"{secret.how}"
    return None


def _secret(section: str, key: str, value: str, required: bool) -> Secret:
    demo = default_value(section, key)
    return Secret(section, key, value, demo if isinstance(demo, str) else "", required)


def service_secrets(settings: Settings, service: Service) -> list[Secret]:
    """The secrets ``huizhen serve`` or ``huizhen records`` uses.

    The media server signs room tokens (and playback tickets) with ``auth.token_secret``
    and, when it hands recordings off, authenticates with ``recorder.handoff_token``. The
    records service signs its API tokens with ``records.token_secret``, mints room tokens
    with ``auth.token_secret``, and accepts hand-offs with ``recorder.handoff_token`` when
    that is set (empty: hand-off off)."""
    recorder = settings.recorder
    if service == "serve":
        hands_off = recorder.enabled and bool(recorder.handoff_url)
        return [_secret("auth", "token_secret", settings.auth.token_secret, True),
                _secret("recorder", "handoff_token", recorder.handoff_token, hands_off)]
    return [_secret("records", "token_secret", settings.records.token_secret, True),
            _secret("auth", "token_secret", settings.auth.token_secret, True),
            _secret("recorder", "handoff_token", recorder.handoff_token, False)]


def startup_problem(settings: Settings, service: Service) -> str | None:
    """Why ``service`` must not start with ``settings``, or None."""
    if service == "serve":
        host, port = settings.server.host, settings.server.port
    else:
        host, port = settings.records.host, settings.records.port
    return listen_problem(host, port, service_secrets(settings, service))
