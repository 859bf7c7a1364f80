"""The delay bridge of the network lab: copies Ethernet frames between two interfaces,
holding each direction back by its own delay and jitter.

The kernel here has no netem qdisc, so delay lives in userspace. The lab runs one
bridge per host in its core namespace, between the host's veth peer (``HOST_SIDE``:
frames arriving there left the host, direction "up") and the veth that leads to the
lab's Linux bridge (``NET_SIDE``: frames arriving there go to the host, "down")::

    python tests/net_bridge.py HOST_SIDE NET_SIDE

Control lines on stdin, each answered ``ok`` (or ``error ...``) on stdout::

    delay up|down DELAY_MS JITTER_MS

End of stdin ends the bridge, so a killed lab never leaves one behind. It prints
``ready`` once both sockets are open.

Jitter adds a uniform random 0..2*JITTER_MS - JITTER_MS around the delay to each frame,
but frames of one direction are never reordered (a frame leaves no earlier than the one
before it), like queueing in a real path rather than netem's reordering jitter.
"""

from __future__ import annotations

import array
import collections
import contextlib
import fcntl
import os
import random
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SIOCETHTOOL = 0x8946
# Legacy ethtool "set" commands: tx checksum, scatter-gather, TSO, GSO, GRO.
ETHTOOL_OFFLOADS_OFF = (0x17, 0x19, 0x1F, 0x24, 0x2C)
MAX_FRAME = 65536


def disable_offloads(interface: str) -> None:
    """Turn off checksum and segmentation offloads on ``interface`` (in this namespace).

    Frames copied through a packet socket must be complete on the wire: with offloads
    on, veth hands over frames with partial checksums and 64 KiB TCP super-frames.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for command in ETHTOOL_OFFLOADS_OFF:
            value = array.array("I", [command, 0])
            request = struct.pack("16sP", interface.encode(), value.buffer_info()[0])
            # Not supported on a device (GRO on some): nothing to turn off.
            with contextlib.suppress(OSError):
                fcntl.ioctl(sock, SIOCETHTOOL, request)


@dataclass
class Direction:
    """One direction's delay line: frames waiting, in the order they leave."""

    delay_s: float = 0.0
    jitter_s: float = 0.0
    waiting: collections.deque[tuple[float, bytes]] = field(default_factory=collections.deque)
    last_release: float = 0.0

    def push(self, frame: bytes, now: float, rng: random.Random) -> None:
        hold = self.delay_s + (rng.uniform(-self.jitter_s, self.jitter_s) if self.jitter_s else 0)
        release = max(now + max(hold, 0.0), self.last_release)
        self.last_release = release
        self.waiting.append((release, frame))

    def due(self, now: float) -> list[bytes]:
        frames = []
        while self.waiting and self.waiting[0][0] <= now:
            frames.append(self.waiting.popleft()[1])
        return frames

    def next_release(self) -> float | None:
        return self.waiting[0][0] if self.waiting else None


def open_packet_socket(interface: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((interface, ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setblocking(False)
    return sock


def control(line: str, directions: dict[str, Direction]) -> str:
    """Apply one control line; the answer to print."""
    parts = line.split()
    try:
        if len(parts) != 4 or parts[0] != "delay" or parts[1] not in directions:
            raise ValueError("expected: delay up|down DELAY_MS JITTER_MS")
        delay_ms, jitter_ms = float(parts[2]), float(parts[3])
        if not (0 <= delay_ms <= 10_000 and 0 <= jitter_ms <= 10_000):
            raise ValueError("delay and jitter must be 0..10000 ms")
    except ValueError as exc:
        return f"error {exc}"
    direction = directions[parts[1]]
    direction.delay_s, direction.jitter_s = delay_ms / 1000, jitter_ms / 1000
    return "ok"


def send(sock: socket.socket, frame: bytes) -> None:
    # A full queue (a rate cap's tbf) or a vanished device: the frame is lost.
    with contextlib.suppress(OSError):
        sock.send(frame)


def run(host_side: str, net_side: str) -> None:
    for interface in (host_side, net_side):
        disable_offloads(interface)
    sockets = {"up": open_packet_socket(host_side), "down": open_packet_socket(net_side)}
    # Frames read on one side leave on the other.
    out = {"up": sockets["down"], "down": sockets["up"]}
    directions = {"up": Direction(), "down": Direction()}
    rng = random.Random()
    stdin = sys.stdin.fileno()
    print("ready", flush=True)
    pending = b""
    while True:
        releases = [r for d in directions.values() if (r := d.next_release()) is not None]
        timeout = max(0.0, min(releases) - time.monotonic()) if releases else None
        readable, _, _ = select.select([stdin, *sockets.values()], [], [], timeout)
        now = time.monotonic()
        for name, sock in sockets.items():
            if sock not in readable:
                continue
            while True:
                try:
                    frame, address = sock.recvfrom(MAX_FRAME)
                except BlockingIOError:
                    break
                if address[2] == PACKET_OUTGOING:
                    continue  # our own copy of a frame we sent on this side
                direction = directions[name]
                if direction.delay_s == 0 and direction.jitter_s == 0 and not direction.waiting:
                    send(out[name], frame)
                else:
                    direction.push(frame, now, rng)
        if stdin in readable:
            chunk = os.read(stdin, 4096)
            if not chunk:
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                print(control(line.decode(errors="replace"), directions), flush=True)
        now = time.monotonic()
        for name, direction in directions.items():
            for frame in direction.due(now):
                send(out[name], frame)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--no-offloads":
        disable_offloads(sys.argv[2])
    elif len(sys.argv) == 3:
        run(sys.argv[1], sys.argv[2])
    else:
        sys.exit("usage: net_bridge.py HOST_SIDE NET_SIDE | --no-offloads INTERFACE")
