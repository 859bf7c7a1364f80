"""PtzCamera over real loopback sockets: Sony VISCA over UDP (header, sequence numbers,
RESET, resends, 0F 01), raw VISCA over TCP and over UDP."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable

import pytest

from devices.visca import (
    BRC_H700,
    PanTilt,
    PtzCamera,
    RawUdpTransport,
    SerialTransport,
    SonyUdpTransport,
    TcpTransport,
    ViscaTimeout,
    camera_from_url,
)
from devices.visca.codec import CommandSet
from devices.visca.simulated_camera import SimulatedCamera
from devices.visca.simulator import CameraSimulator
from devices.visca.sony_ip import PayloadType, SonyIpMessage

RESET_DATAGRAM = bytes.fromhex("02 00 00 01 00 00 00 01 01")


async def eventually(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def simulator() -> AsyncIterator[CameraSimulator]:
    async with CameraSimulator(SimulatedCamera(speed_scale=4.0)) as simulator:
        yield simulator


def sony(host: str, port: int) -> SonyUdpTransport:
    return SonyUdpTransport(host, port, retransmit_interval=0.1, max_retransmits=2)


def camera_on(transport: SonyUdpTransport | TcpTransport | RawUdpTransport,
              states: list[bool] | None = None, **options: object) -> PtzCamera:
    settings: dict[str, object] = {"ack_timeout": 1.0, "probe_interval": 0.05}
    if states is not None:
        settings["on_state_change"] = states.append
    settings.update(options)
    return PtzCamera(transport, **settings)  # type: ignore[arg-type]


def executed(simulator: CameraSimulator, packet: bytes) -> int:
    return simulator.camera.executed.count(packet)


async def test_sony_udp_resets_then_numbers_every_message(simulator: CameraSimulator) -> None:
    address = await simulator.serve_udp()
    # Numbering, not timing, is under test: a generous wait for each ACK (a loaded CI
    # machine once kept one past 1 s).
    async with camera_on(sony(*address), ack_timeout=5.0) as camera:
        assert camera.online
        await camera.move(pan_speed=0x18, tilt_speed=0x10)
        await asyncio.sleep(0.05)
        assert (await camera.position()).pan > 0
        await camera.stop()
        await camera.absolute(-400, 300)
        assert await camera.position() == PanTilt(-400, 300)
        await camera.preset_set(1)
        await camera.home()
        await camera.preset_recall(1)
        assert await camera.position() == PanTilt(-400, 300)
    messages = simulator.datagrams
    assert messages[0].serialize() == RESET_DATAGRAM  # the reference's example, byte for byte
    numbers = [m.sequence for m in messages[1:]]
    assert numbers == sorted(numbers) and set(numbers) == set(range(1, numbers[-1] + 1))
    kinds = {m.payload[1]: m.payload_type for m in messages[1:]}
    assert kinds[0x09] is PayloadType.INQUIRY and kinds[0x01] is PayloadType.COMMAND


async def test_a_lost_request_is_resent_with_the_same_sequence_number(
    simulator: CameraSimulator,
) -> None:
    address = await simulator.serve_udp()
    async with camera_on(sony(*address)) as camera:
        simulator.drop_requests = 1
        await camera.preset_set(5)
    copies = [m for m in simulator.datagrams if m.payload == camera.commands.preset_set(5)]
    assert len(copies) >= 2 and all(c == copies[0] for c in copies)  # same number, same bytes
    assert executed(simulator, camera.commands.preset_set(5)) == 1


async def test_a_lost_reply_then_0f01_means_the_command_already_ran(
    simulator: CameraSimulator,
) -> None:
    address = await simulator.serve_udp()
    transport = sony(*address)
    async with camera_on(transport) as camera:
        simulator.drop_replies = 2  # the ACK and the completion
        await camera.preset_set(6)  # resent, answered 0F 01: done, not run twice
        assert 6 in simulator.camera.presets
        assert transport.link.resends >= 1
        simulator.drop_replies = 1  # an inquiry's reply: asked again under a new number
        before = len(simulator.datagrams)
        assert await camera.power_state() is True
        assert camera.online
    preset = [m.sequence for m in simulator.datagrams if m.payload == camera.commands.preset_set(6)]
    assert len(preset) >= 2 and len(set(preset)) == 1
    assert executed(simulator, camera.commands.preset_set(6)) == 1
    inquiry = camera.commands.power_inquiry()
    numbers = [m.sequence for m in simulator.datagrams[before:] if m.payload == inquiry]
    assert numbers[0] == numbers[1] and numbers[-1] == numbers[0] + 1


async def test_counters_out_of_step_are_reset(simulator: CameraSimulator) -> None:
    host, port = await simulator.serve_udp()
    async with camera_on(sony(host, port)) as camera:
        # Another controller talks to the camera with its own, higher numbers.
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            other.setblocking(False)

            async def ask(message: SonyIpMessage, answers: int) -> set[bytes]:
                other.sendto(message.serialize(), (host, port))
                return {await asyncio.wait_for(loop.sock_recv(other, 64), 2)
                        for _ in range(answers)}

            home = CommandSet(1).home()
            ack = SonyIpMessage(PayloadType.REPLY, 1000, bytes.fromhex("90 41 FF"))
            assert ack.serialize() in await ask(
                SonyIpMessage(PayloadType.COMMAND, 1000, home), 2  # ACK and completion
            )
            # An inquiry sent as a command is refused with 0F 02 (message type error).
            inquiry = SonyIpMessage(PayloadType.COMMAND, 1001, CommandSet(1).power_inquiry())
            assert await ask(inquiry, 1) == {
                SonyIpMessage(PayloadType.CONTROL_REPLY, 1001, bytes.fromhex("0F 02")).serialize()
            }
        await camera.zoom_to(0x0800)  # 0F 01 on first send: RESET, then sent again
        assert await camera.zoom_position() == 0x0800
    resets = [m for m in simulator.datagrams if m.payload_type is PayloadType.CONTROL]
    assert len(resets) == 2


async def test_sony_udp_offline_and_back_resets_again(simulator: CameraSimulator) -> None:
    address = await simulator.serve_udp()
    states: list[bool] = []
    async with camera_on(sony(*address), states, ack_timeout=0.3) as camera:
        simulator.camera.responding = False
        with pytest.raises(ViscaTimeout):
            await camera.position()
        assert not camera.online
        simulator.camera.responding = True
        await eventually(lambda: camera.online)
        assert await camera.position() == PanTilt(0, 0)
    assert states == [True, False, True]
    resets = [m for m in simulator.datagrams if m.payload_type is PayloadType.CONTROL]
    assert len(resets) >= 2


async def test_sony_udp_five_nibble_pan(simulator: CameraSimulator) -> None:
    simulator.camera = SimulatedCamera(
        pan_nibbles=5, pan_limits=(-100_000, 100_000), tilt_speed_max=0x18, speed_scale=2000.0
    )
    address = await simulator.serve_udp()
    async with camera_on(sony(*address), profile=BRC_H700) as camera:
        await camera.absolute(70_000, -100)
        assert await camera.position() == PanTilt(70_000, -100)


def test_sony_udp_reaches_address_1_only() -> None:
    with pytest.raises(ValueError, match="reaches camera address 1 only"):
        PtzCamera(SonyUdpTransport("127.0.0.1"), address=2)


async def test_raw_tcp(simulator: CameraSimulator) -> None:
    host, port = await simulator.serve_tcp()
    states: list[bool] = []
    async with camera_on(TcpTransport(host, port), states) as camera:
        assert (await camera.version()).sockets == 2
        await camera.relative(100, 100)
        assert await camera.position() == PanTilt(100, 100)
        await camera.move(zoom_speed=-3)
        await camera.stop()
        # The camera drops off the network, then comes back on the same port.
        await simulator.close()
        await eventually(lambda: not camera.online)
        await simulator.serve_tcp(host, port)
        await eventually(lambda: camera.online)
        assert await camera.position() == PanTilt(100, 100)
    assert states == [True, False, True]


async def test_raw_udp(simulator: CameraSimulator) -> None:
    address = await simulator.serve_raw_udp()
    async with camera_on(RawUdpTransport(*address)) as camera:
        await camera.zoom_to(0x2000)
        assert await camera.zoom_position() == 0x2000
        assert await camera.power_state() is True


async def test_camera_url_and_normalised_moves(simulator: CameraSimulator) -> None:
    host, port = await simulator.serve_udp()
    async with camera_from_url(f"visca-udp://{host}:{port}", probe_interval=0.05) as camera:
        await camera.move_normalised(1.0, -0.01, 0.5)
        assert simulator.camera.executed[-2:] == [
            bytes.fromhex("81 01 06 01 18 01 02 02 FF"),  # right at 0x18, down at 0x01
            bytes.fromhex("81 01 04 07 23 FF"),  # tele, speed 4 of 8 -> p = 3
        ]
        await camera.move_normalised(0, 0, 0)
        assert simulator.camera.executed[-2:] == [
            bytes.fromhex("81 01 06 01 01 01 03 03 FF"), bytes.fromhex("81 01 04 07 00 FF"),
        ]
        for bad in (1.5, float("nan")):
            with pytest.raises(ValueError, match=r"pan must be -1\.\.1"):
                await camera.move_normalised(bad, 0)


async def test_standalone_simulator_for_demos() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "devices.visca", "--udp", "127.0.0.1:0", "--pty",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        lines = [(await asyncio.wait_for(process.stdout.readline(), 20)).decode()
                 for _ in range(2)]
        pty_path = lines[0].removeprefix("serial (pty): ").strip()
        host, port = lines[1].removeprefix("Sony VISCA over UDP: ").strip().rsplit(":", 1)
        async with camera_on(sony(host, int(port))) as over_ip:
            await over_ip.absolute(50, 60)
            async with PtzCamera(SerialTransport(pty_path), probe_interval=0.05) as over_serial:
                # One camera behind both ports.
                assert await over_serial.position() == PanTilt(50, 60)
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 20) == 0


async def test_close_while_opening_returns_at_once(simulator: CameraSimulator) -> None:
    address = await simulator.serve_udp()
    simulator.camera.responding = False
    states: list[bool] = []
    slow = SonyUdpTransport(*address, retransmit_interval=1.0, max_retransmits=5)
    camera = camera_on(slow, states)
    opening = asyncio.ensure_future(camera.open())
    await asyncio.sleep(0.05)
    await camera.close()
    await asyncio.wait_for(opening, 1)
    assert camera.closed and not camera.online and states == []
    assert not slow.is_open
