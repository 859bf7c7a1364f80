"""Time-limited TURN credentials: the pure minting, its configuration, the join reply, and a
real coturn (use-auth-secret) that allocates with them and refuses expired ones."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aioice import stun, turn

from config import ConfigError, Settings
from huizhen.app import create_app, token_authority
from signaling.client import SignalingClient
from signaling.turn import TurnServer, ice_servers_for, mint_turn_credentials
from tests.conftest import make_settings
from tests.coturn import coturn

SECRET = "ward-turn-secret-0123456789"


def test_minted_credentials_match_the_turn_rest_api_scheme():
    # Computed independently: printf '1700000600:p-abc123' |
    #   openssl dgst -sha1 -hmac north-ward-turn-secret -binary | base64
    username, password = mint_turn_credentials(b"north-ward-turn-secret", "p-abc123", 600,
                                               1_700_000_000.9)
    assert username == "1700000600:p-abc123"
    assert password == "7oFiORo4M/mu/21LdCxUJCbNCVk="


def test_a_negative_lifetime_mints_expired_credentials():
    username, _ = mint_turn_credentials(b"s", "p-1", -60, 1_700_000_000)
    assert username == "1699999940:p-1"


@pytest.mark.parametrize(("secret", "user"), [(b"", "p-1"), (b"s", ""), (b"s", "a:b")])
def test_bad_minting_input_is_refused(secret, user):
    with pytest.raises(ValueError):
        mint_turn_credentials(secret, user, 60, 0)


def test_the_turn_entry_follows_the_configured_servers():
    stun_server = {"urls": ["stun:stun.example.org"]}
    server = TurnServer(("turn:turn.example.org:3478",), b"north-ward-turn-secret", 600)
    servers = ice_servers_for((stun_server,), server, "p-abc123", 1_700_000_000)
    assert servers == [stun_server, {"urls": ["turn:turn.example.org:3478"],
                                     "username": "1700000600:p-abc123",
                                     "credential": "7oFiORo4M/mu/21LdCxUJCbNCVk="}]
    assert ice_servers_for((stun_server,), None, "p-1", 0) == [stun_server]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"HUIZHEN_ICE_TURN_URLS": '["turn:t:3478"]'},
     "ice.turn_urls needs a shared secret of at least 16 characters"),
    ({"HUIZHEN_ICE_TURN_URLS": '["stun:t:3478"]', "HUIZHEN_ICE_TURN_SECRET": SECRET},
     "ice.turn_urls: 'stun:t:3478' is not a turn: or turns: URL"),
    ({"HUIZHEN_ICE_TURN_SECRET": SECRET}, "ice.turn_secret is set but ice.turn_urls is empty"),
    ({"HUIZHEN_ICE_TURN_URLS": '["turn:t"]', "HUIZHEN_ICE_TURN_SECRET": SECRET,
      "HUIZHEN_ICE_TURN_SECRET_FILE": "/x"}, "give ice.turn_secret or ice.turn_secret_file"),
    ({"HUIZHEN_ICE_TURN_URLS": '["turn:t"]', "HUIZHEN_ICE_TURN_SECRET_FILE": "/nonexistent"},
     "ice.turn_secret_file: cannot read /nonexistent: No such file or directory"),
    ({"HUIZHEN_ICE_TURN_URLS": '["turn:t"]', "HUIZHEN_ICE_TURN_SECRET": SECRET,
      "HUIZHEN_ICE_TURN_TTL": "0"}, "ice.turn_ttl must be greater than 0"),
    ({"HUIZHEN_ICE_TRANSPORT_POLICY": "none"}, 'ice.transport_policy must be "all" or "relay"'),
])
def test_bad_turn_configuration_is_one_clear_line(overrides, message):
    with pytest.raises(ConfigError) as error:
        make_settings(**overrides)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_the_secret_is_read_from_a_file(tmp_path: Path):
    secret_file = tmp_path / "turn-secret"
    secret_file.write_text(SECRET + "\n")
    settings = make_settings(HUIZHEN_ICE_TURN_URLS='["turn:t:3478"]',
                             HUIZHEN_ICE_TURN_SECRET_FILE=str(secret_file),
                             HUIZHEN_ICE_TURN_TTL="3600")
    assert settings.turn is not None
    assert (settings.turn.urls, settings.turn.secret, settings.turn.ttl) == (
        ("turn:t:3478",), SECRET, 3600)


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[str]:
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    await web.TCPSite(runner, settings.server.host, settings.server.port).start()
    try:
        yield settings.server.base_url.replace("http", "ws", 1) + "/ws"
    finally:
        await runner.cleanup()


def turn_settings(url: str, **more: str) -> Settings:
    return make_settings(HUIZHEN_ICE_TURN_URLS=json.dumps([url]),
                         HUIZHEN_ICE_TURN_SECRET=SECRET, HUIZHEN_ICE_TURN_TTL="600",
                         HUIZHEN_ICE_SERVERS='[{"urls": ["stun:127.0.0.1:3478"]}]', **more)


async def join(settings: Settings, ws_url: str) -> dict[str, object]:
    client = SignalingClient(ws_url)
    await client.connect()
    try:
        token = token_authority(settings).mint(room="bed-1", role="expert", name="Dr. Li",
                                               ttl=600)
        return await client.join(token)
    finally:
        await client.close()


async def allocate(server: tuple[str, int], username: str, password: str) -> tuple[str, int]:
    """A TURN allocation (aioice's client): the relayed address coturn gave."""
    transport, _ = await turn.create_turn_endpoint(asyncio.DatagramProtocol, server,
                                                   username, password)
    try:
        relayed: tuple[str, int] = transport.get_extra_info("sockname")
        return relayed
    finally:
        transport.close()


async def test_the_join_reply_carries_credentials_coturn_accepts(tmp_path: Path):
    with coturn(tmp_path, SECRET) as turn_server:
        settings = turn_settings(turn_server.url, HUIZHEN_ICE_TRANSPORT_POLICY="relay")
        async with serving(settings) as ws_url:
            before = int(time.time())
            joined = await join(settings, ws_url)
        participant = joined["participant"]["id"]  # type: ignore[index]
        assert joined["iceTransportPolicy"] == "relay"
        stun_entry, turn_entry = joined["iceServers"]  # type: ignore[misc]
        assert stun_entry == {"urls": ["stun:127.0.0.1:3478"]}
        assert turn_entry["urls"] == [turn_server.url]
        expiry, user = turn_entry["username"].split(":")
        assert user == participant
        assert before + 600 <= int(expiry) <= int(time.time()) + 600
        expected = base64.b64encode(hmac.new(SECRET.encode(), turn_entry["username"].encode(),
                                             hashlib.sha1).digest()).decode()
        assert turn_entry["credential"] == expected

        relayed = await allocate(("127.0.0.1", turn_server.port), turn_entry["username"],
                                 turn_entry["credential"])
        assert relayed[0] == "127.0.0.1" and relayed[1] > 0


async def test_coturn_refuses_expired_and_forged_credentials(tmp_path: Path):
    with coturn(tmp_path, SECRET) as turn_server:
        address = ("127.0.0.1", turn_server.port)
        expired = mint_turn_credentials(SECRET.encode(), "p-late", -60, time.time())
        with pytest.raises(stun.TransactionFailed) as refused:
            await allocate(address, *expired)
        assert refused.value.response.attributes["ERROR-CODE"] == (401, "Unauthorized")
        forged = mint_turn_credentials(b"another-secret-0123456789", "p-x", 600, time.time())
        with pytest.raises(stun.TransactionFailed) as refused:
            await allocate(address, *forged)
        assert refused.value.response.attributes["ERROR-CODE"] == (401, "Unauthorized")


async def test_without_turn_the_join_reply_is_as_before(running_server):
    joined = await join(running_server.settings, running_server.ws_url)
    assert joined["iceServers"] == [] and joined["iceTransportPolicy"] == "all"
