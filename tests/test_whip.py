"""WHIP and WHEP over real sockets: FFmpeg's WHIP muxer (through PyAV) publishes H.264
into a room, a real aiortc peer decodes the pictures; the HTTP edges refuse hostile input.

FFmpeg runs in a child process: PyAV keeps the GIL while the muxer waits for the HTTP
answer, which would stall the server's event loop in the same process.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from signaling import MEDIA_SERVER
from signaling.whip import SESSIONS, link_headers
from tests.conftest import RunningServer
from tests.fakes import Member
from tests.peers import Subscriber, make_publisher_offer, wait_for

ROOM = "bed-1"

# Run as `python -c`: publish `frames` pattern frames at 30 fps through the WHIP muxer.
PUBLISHER = """
import sys, time
import av
from huizhen.testpattern import pattern_frame
url, token, frames, cert, key = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
out = av.open(url, "w", format="whip", options={
    "authorization": token, "handshake_timeout": "10000", "cert_file": cert, "key_file": key})
try:
    video = out.add_stream("libx264", rate=30)
    video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
    video.codec_context.options = {"profile": "baseline", "tune": "zerolatency",
                                   "preset": "ultrafast", "g": "15", "bf": "0"}
    start = time.monotonic()
    for index in range(frames):
        frame = av.VideoFrame.from_ndarray(pattern_frame(index, 320, 240), format="bgr24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = index
        for packet in video.encode(frame):
            out.mux(packet)
        delay = start + (index + 1) / 30 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
finally:
    out.close()
print("published", flush=True)
"""


def write_ec_certificate(directory: Path) -> tuple[Path, Path]:
    """An ECDSA P-256 certificate for FFmpeg's DTLS: aiortc offers only ECDHE-ECDSA
    cipher suites, and FFmpeg's own generated certificate (gnutls build) is RSA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "whip-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def whip_offer() -> tuple[RTCPeerConnection, str]:
    pc, offer, _tracks = await make_publisher_offer(codec="VP8", audio=False)
    return pc, offer


async def test_ffmpeg_whip_publishes_h264_that_a_viewer_decodes(running_server: RunningServer,
                                                                tmp_path: Path) -> None:
    cert, key = write_ec_certificate(tmp_path)
    url = f"{running_server.base_url}/whip/{ROOM}"
    token = running_server.token("ward", ROOM, name="bedside encoder")
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PUBLISHER, url, token, "300", str(cert), str(key),
        cwd=Path(__file__).resolve().parent.parent,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    media = running_server.app[MEDIA_SERVER]
    viewer = Subscriber()
    try:
        await wait_for(lambda: (r := media.directory.local(ROOM)) is not None
                       and any(s.tracks for s in r.streams()), 20)
        room = media.directory.local(ROOM)
        assert room is not None
        stream = room.streams()[0]
        assert [t.codec for t in stream.tracks] == ["H264"]
        expert = room.join("expert", "expert", Member())
        subscription, offer = await room.subscribe(expert, stream.id)
        await room.answer(expert, subscription.id, await viewer.answer(offer))
        await wait_for(lambda: viewer.received.video_frames >= 60, 30)
        r = viewer.received
        numbers = r.frame_numbers[-30:]
        assert all(b > a for a, b in itertools.pairwise(numbers)), numbers
        assert r.mean_difference < 20, r.mean_difference
        room.leave(expert)
        # The session counts in the token's quotas like a signalling socket.
        sessions = running_server.app[SESSIONS]
        assert len(sessions.sessions) == 1
        stdout, stderr = await asyncio.wait_for(child.communicate(), 30)
        assert child.returncode == 0, stderr.decode()[-2000:]
        assert b"published" in stdout
        # FFmpeg DELETEs its session when it closes (or its DTLS shutdown ends it first).
        await wait_for(lambda: not sessions.sessions, 10)
        assert running_server.app[SESSIONS].quotas.tokens() == 0
        print(f"decoded {r.video_frames} H.264 frames published by FFmpeg; last numbers "
              f"{numbers[-3:]}")
    finally:
        await viewer.close()
        if child.returncode is None:
            child.kill()
            await child.wait()


async def test_whep_plays_a_stream_to_an_aiortc_offerer(running_server: RunningServer,
                                                        http: aiohttp.ClientSession) -> None:
    media = running_server.app[MEDIA_SERVER]
    room = media.room(ROOM)
    ward = room.join("ward", "ward", Member())
    pub_pc, offer, _tracks = await make_publisher_offer(codec="VP8", audio=True)
    _publication, answer = await room.publish(ward, offer)
    await pub_pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    viewer = Subscriber()
    viewer.pc.addTransceiver("video", direction="recvonly")
    viewer.pc.addTransceiver("audio", direction="recvonly")
    await viewer.pc.setLocalDescription(await viewer.pc.createOffer())
    token = running_server.token("observer", ROOM)
    async with http.post(f"{running_server.base_url}/whep/{ROOM}",
                         data=viewer.pc.localDescription.sdp,
                         headers={**bearer(token), "Content-Type": "application/sdp"}) as resp:
        assert resp.status == 201, await resp.text()
        assert resp.content_type == "application/sdp"
        location = resp.headers["Location"]
        assert location.startswith("/whep/session/")
        assert resp.headers["ETag"].startswith('"')
        assert resp.headers["Accept-Patch"] == "application/trickle-ice-sdpfrag"
        assert resp.headers.getall("Link", []) == []  # no ICE servers configured here
        await viewer.pc.setRemoteDescription(RTCSessionDescription(await resp.text(), "answer"))
    try:
        await wait_for(lambda: viewer.received.video_frames >= 60
                       and len(viewer.received.audio_samples) >= 50, 30)
        numbers = viewer.received.frame_numbers[-30:]
        assert all(b > a for a, b in itertools.pairwise(numbers)), numbers
        assert abs(viewer.received.audio_frequency() - 440) < 15
        # DELETE leaves: the viewer's subscription is gone, then the resource is.
        async with http.delete(running_server.base_url + location,
                               headers=bearer(token)) as resp:
            assert resp.status == 200
        assert all(not p.subscriptions for p in room.participants.values())
        assert [p.name for p in room.participants.values()] == ["ward"]
        async with http.delete(running_server.base_url + location,
                               headers=bearer(token)) as resp:
            assert resp.status == 404
    finally:
        await viewer.close()
        await pub_pc.close()
        room.leave(ward)


async def test_publisher_leaving_ends_the_whip_session_for_viewers(
        running_server: RunningServer, http: aiohttp.ClientSession) -> None:
    """DELETE of a WHIP session: the viewers get track-removed (StreamRemoved)."""
    pc, offer = await whip_offer()
    token = running_server.token("ward", ROOM)
    async with http.post(f"{running_server.base_url}/whip/{ROOM}", data=offer,
                         headers={**bearer(token), "Content-Type": "application/sdp"}) as resp:
        assert resp.status == 201, await resp.text()
        location = resp.headers["Location"]
    room = running_server.app[MEDIA_SERVER].directory.local(ROOM)
    assert room is not None
    watcher = Member()
    room.join("expert", "expert", watcher)
    [stream] = room.streams()
    async with http.delete(running_server.base_url + location, headers=bearer(token)) as resp:
        assert resp.status == 200
    kinds = [type(e).__name__ for e in watcher.events]
    assert "StreamRemoved" in kinds and "ParticipantLeft" in kinds, kinds
    assert room.streams() == []
    assert stream.id not in {s.id for s in room.streams()}
    await pc.close()


async def test_hostile_requests_get_clear_4xx(running_server: RunningServer,
                                             http: aiohttp.ClientSession) -> None:
    base = running_server.base_url
    ward = running_server.token("ward", ROOM)
    observer = running_server.token("observer", ROOM)
    sdp = {"Content-Type": "application/sdp"}
    pc, offer = await whip_offer()

    async def post(path: str, body: str | bytes, headers: dict[str, str]) -> tuple[int, str,
                                                                                   object]:
        async with http.post(base + path, data=body, headers=headers) as resp:
            return resp.status, await resp.text(), resp.headers

    status, text, headers = await post(f"/whip/{ROOM}", offer, sdp)
    assert status == 401 and text.startswith("unauthorized: ")
    assert headers["WWW-Authenticate"].startswith("Bearer")  # type: ignore[index]
    status, text, _ = await post(f"/whip/{ROOM}", offer, {**sdp, **bearer("not-a-jwt")})
    assert (status, text) == (401, "unauthorized: the token is malformed\n")
    expired = running_server.authority.mint(room=ROOM, role="ward", name="w", ttl=-60)
    status, text, _ = await post(f"/whip/{ROOM}", offer, {**sdp, **bearer(expired)})
    assert (status, text) == (401, "unauthorized: the token has expired\n")
    status, text, _ = await post(f"/whip/{ROOM}", offer, {**sdp, **bearer(observer)})
    assert (status, text) == (403, "forbidden: this token does not grant 'publish'\n")
    status, text, _ = await post("/whip/another-room", offer, {**sdp, **bearer(ward)})
    assert (status, text) == (403, "forbidden: this token is for another room\n")
    status, text, _ = await post(f"/whip/{ROOM}", offer,
                                 {"Content-Type": "text/plain", **bearer(ward)})
    assert status == 415 and "application/sdp" in text
    status, text, _ = await post(f"/whip/{ROOM}", "v=0\r\n" + "a=x\r\n" * 10000,
                                 {**sdp, **bearer(ward)})
    assert status == 413
    status, text, _ = await post(f"/whip/{ROOM}", "hello", {**sdp, **bearer(ward)})
    assert (status, text) == (400, "bad-sdp: the offer is not SDP (it must start with v=0)\n")
    status, text, _ = await post(f"/whip/{ROOM}", b"\xff\xfe", {**sdp, **bearer(ward)})
    assert status == 400 and text.count("\n") == 1
    no_fingerprint = "\r\n".join(line for line in offer.splitlines() if "fingerprint" not in line)
    status, text, _ = await post(f"/whip/{ROOM}", no_fingerprint, {**sdp, **bearer(ward)})
    assert status == 400 and text.startswith("bad-sdp: ") and text.count("\n") == 1
    # WHEP with nothing published yet.
    viewer = RTCPeerConnection()
    viewer.addTransceiver("video", direction="recvonly")
    await viewer.setLocalDescription(await viewer.createOffer())
    status, text, _ = await post(f"/whep/{ROOM}", viewer.localDescription.sdp,
                                 {**sdp, **bearer(observer)})
    assert (status, text) == (409, "no-stream: nothing is being published in this room yet\n")
    # Nothing was left behind by the refusals.
    assert not running_server.app[SESSIONS].sessions
    assert running_server.app[MEDIA_SERVER].directory.local(ROOM) is None

    # A real session, then PATCH.
    status, answer, headers = await post(f"/whip/{ROOM}", offer, {**sdp, **bearer(ward)})
    assert status == 201, answer
    location, etag = headers["Location"], headers["ETag"]  # type: ignore[index]
    frag = {"Content-Type": "application/trickle-ice-sdpfrag"}
    ufrag = next(x for x in offer.splitlines() if x.startswith("a=ice-ufrag:"))
    pwd = next(x for x in offer.splitlines() if x.startswith("a=ice-pwd:"))
    candidate = (f"{ufrag}\r\n{pwd}\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
                 "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
                 "a=end-of-candidates\r\n")

    async def patch(body: str, headers: dict[str, str]) -> tuple[int, str]:
        async with http.patch(base + location, data=body, headers=headers) as resp:
            return resp.status, await resp.text()

    assert await patch(candidate, {**frag, **bearer(ward), "If-Match": etag}) == (204, "")
    assert (await patch(candidate, {**frag, **bearer(ward), "If-Match": '"stale"'}))[0] == 412
    assert (await patch(candidate, {"Content-Type": "application/sdp", **bearer(ward)}))[0] == 415
    assert (await patch(candidate, frag))[0] == 401
    status, text = await patch("not an sdp fragment", {**frag, **bearer(ward)})
    assert (status, text) == (400, "bad-sdpfrag: line 1 is not an SDP line\n")
    restart = "a=ice-ufrag:newU\r\na=ice-pwd:newpasswordnewpassword12\r\n"
    status, text = await patch(restart, {**frag, **bearer(ward), "If-Match": "*"})
    assert status == 422 and text.startswith("ice-restart-unsupported: ")
    # The session goes on after the refused restart; another token's subject cannot touch it.
    other = running_server.token("ward", ROOM)
    assert (await patch(candidate, {**frag, **bearer(other)}))[0] == 404
    async with http.delete(base + "/whip/session/unknown", headers=bearer(ward)) as resp:
        assert resp.status == 404
    async with http.delete(base + location, headers=bearer(ward)) as resp:
        assert resp.status == 200
    async with http.delete(base + location, headers=bearer(ward)) as resp:
        assert resp.status == 404
    assert (await patch(candidate, {**frag, **bearer(ward)}))[0] == 404
    await pc.close()
    await viewer.close()


async def test_whip_sessions_count_in_the_token_quota(running_server: RunningServer,
                                                     http: aiohttp.ClientSession) -> None:
    token = running_server.token("ward", ROOM)
    limit = running_server.app[SESSIONS].quotas.limits.sockets_per_token
    pcs, statuses = [], []
    for _ in range(limit + 1):
        pc, offer = await whip_offer()
        pcs.append(pc)
        async with http.post(f"{running_server.base_url}/whip/{ROOM}", data=offer,
                             headers={**bearer(token), "Content-Type": "application/sdp"}
                             ) as resp:
            statuses.append((resp.status, (await resp.text()).split(":")[0]))
    assert [status for status, _ in statuses] == [201] * limit + [429]
    assert statuses[-1][1] == "too-many-connections"
    for pc in pcs:
        await pc.close()


async def test_token_expiry_ends_the_session(running_server: RunningServer,
                                             http: aiohttp.ClientSession) -> None:
    pc, offer = await whip_offer()
    token = running_server.authority.mint(room=ROOM, role="ward", name="w", ttl=2)
    async with http.post(f"{running_server.base_url}/whip/{ROOM}", data=offer,
                         headers={**bearer(token), "Content-Type": "application/sdp"}) as resp:
        assert resp.status == 201
    sessions = running_server.app[SESSIONS]
    assert len(sessions.sessions) == 1
    await wait_for(lambda: not sessions.sessions, 10)
    assert running_server.app[MEDIA_SERVER].directory.local(ROOM) is None
    await pc.close()


def test_link_headers_quote_credentials_and_skip_unsafe_entries() -> None:
    servers: list[dict[str, object]] = [{"urls": ["stun:stun.example.net"]},
               {"urls": ["turn:turn.example.net?transport=udp", "turns:t.example.net"],
                "username": "1700000000:u", "credential": 'p"w\\'},
               {"urls": "stun:<bad>"}, {"urls": ["turn:x"], "username": "a\nb",
                                         "credential": "c"}]
    assert link_headers(servers) == [
        '<stun:stun.example.net>; rel="ice-server"',
        '<turn:turn.example.net?transport=udp>; rel="ice-server"; username="1700000000:u"; '
        'credential="p\\"w\\\\"; credential-type="password"',
        '<turns:t.example.net>; rel="ice-server"; username="1700000000:u"; '
        'credential="p\\"w\\\\"; credential-type="password"',
    ]
