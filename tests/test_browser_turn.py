"""Chromium through a real coturn with minted credentials and ``[ice] transport_policy =
"relay"``: the ward page publishes and the expert page decodes, every selected candidate
pair relayed; credentials minted already expired are refused by coturn (401)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from huizhen.app import create_app, token_authority
from signaling import SIGNALING_CONFIG
from tests.conftest import RunningServer, make_settings
from tests.coturn import Coturn, coturn
from tests.test_browser import Chromium, chromium, frames_decoded, wait_joined  # noqa: F401

pytestmark = pytest.mark.browser

ROOM = "bed-12"

# Every peer connection of the page: the local candidate type of its selected pair.
SELECTED_TYPES = """async () => {
  const types = [];
  for (const pc of window.huizhen.peerConnections) {
    const report = await pc.getStats();
    let pairId = null;
    report.forEach((s) => { if (s.type === "transport") pairId = s.selectedCandidatePairId; });
    const pair = pairId && report.get(pairId);
    const local = pair && report.get(pair.localCandidateId);
    types.push(local ? local.candidateType : null);
  }
  return types;
}"""

# A peer connection made the way the pages make theirs, gathering with the join reply's
# ICE servers and policy: the candidate types found and the ICE errors reported.
GATHER = """async () => {
  const pc = window.huizhen.session.client.createPeerConnection();
  const errors = [];
  const types = [];
  pc.onicecandidateerror = (e) => errors.push(e.errorCode);
  pc.onicecandidate = (e) => { if (e.candidate) types.push(e.candidate.type); };
  pc.createDataChannel("probe");
  const done = new Promise((resolve) => {
    pc.onicegatheringstatechange = () => {
      if (pc.iceGatheringState === "complete") resolve();
    };
  });
  await pc.setLocalDescription();
  await done;
  const policy = pc.getConfiguration().iceTransportPolicy;
  pc.close();
  return {errors, types, policy};
}"""


@dataclasses.dataclass
class RelayServer:
    running: RunningServer
    turn: Coturn


async def serve(turn: Coturn, ttl: int) -> AsyncIterator[RunningServer]:
    settings = make_settings(HUIZHEN_ICE_TURN_URLS=json.dumps([turn.url]),
                             HUIZHEN_ICE_TURN_SECRET=turn.secret,
                             HUIZHEN_ICE_TRANSPORT_POLICY="relay")
    app = create_app(settings)
    config = app[SIGNALING_CONFIG]
    assert config.turn is not None
    if ttl != config.turn.ttl_s:
        # Credentials minted already expired (configuration refuses a lifetime <= 0).
        app[SIGNALING_CONFIG] = dataclasses.replace(
            config, turn=dataclasses.replace(config.turn, ttl_s=ttl))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, settings.server.host, settings.server.port).start()
    try:
        yield RunningServer(app, settings, token_authority(settings),
                            settings.server.base_url)
    finally:
        await runner.cleanup()


@pytest.fixture
async def relay(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[RelayServer]:
    ttl = int(getattr(request, "param", 600))
    with coturn(tmp_path) as turn:
        async for running in serve(turn, ttl):
            yield RelayServer(running, turn)


def page_url(server: RunningServer, page: str, role: str, name: str, extra: str = "") -> str:
    token = server.token(role, room=ROOM, name=name)
    return f"{server.base_url}/{page}.html#token={token}{extra}"


async def test_ward_and_expert_pages_play_through_the_relay(
        relay: RelayServer, chromium: Chromium) -> None:  # noqa: F811
    server = relay.running
    expert = await chromium.open("expert", page_url(server, "expert", "expert", "Dr. Relay"))
    await wait_joined(expert)
    ward = await chromium.open("ward", page_url(server, "ward", "ward", "Ward nurse",
                                                "&autostart=1"))
    frames = await frames_decoded(expert, 60, 40, chromium.log)
    assert frames >= 60

    expert_types = await expert.evaluate(SELECTED_TYPES)
    ward_types = await ward.evaluate(SELECTED_TYPES)
    print(f"\nexpert decoded {frames} frames; selected local candidates: "
          f"expert {expert_types}, ward {ward_types}")
    assert expert_types and set(expert_types) == {"relay"}, chromium.log
    assert ward_types and set(ward_types) == {"relay"}, chromium.log


@pytest.mark.parametrize("relay", [-60], indirect=True)
async def test_expired_credentials_are_refused(relay: RelayServer,
                                               chromium: Chromium) -> None:  # noqa: F811
    expert = await chromium.open("expert", page_url(relay.running, "expert", "expert",
                                                    "Dr. Late"))
    await wait_joined(expert)
    gathered: dict[str, Any] = await expert.evaluate(GATHER)
    assert gathered["policy"] == "relay"
    assert 401 in gathered["errors"], (gathered, chromium.log)
    assert gathered["types"] == []  # no relay candidate, and the policy allows no other
