"""The network lab (tests/nethost.py) does what it says, measured with real sockets in
real namespaces: delay, loss, rate caps and outages. Bounds are generous: these check
the tool, they are not benchmarks. Needs root (ip netns, nft, tc).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.nethost import PREFIX, Host, NetLab, run

pytestmark = pytest.mark.netns

PORT = 9000

# One small program run inside the namespaces (the hosts have no ping or iperf).
PROBE = r"""
import json, socket, sys, time
mode, args = sys.argv[1], sys.argv[2:]
if mode == "echo":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", int(args[0])))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)
elif mode == "ping":
    host, port, count = args[0], int(args[1]), int(args[2])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    rtts = []
    for i in range(count):
        sent = time.monotonic()
        s.sendto(str(i).encode(), (host, port))
        try:
            while s.recv(64) != str(i).encode():
                pass
            rtts.append((time.monotonic() - sent) * 1000)
        except socket.timeout:
            pass
        time.sleep(0.02)
    print(json.dumps(rtts))
elif mode == "sink":  # UDP: counts per tag until an END datagram (or 30 s)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("0.0.0.0", int(args[0])))
    s.settimeout(30)
    print("ready", flush=True)
    counts, size, first, last = {}, 0, None, None
    try:
        while True:
            data = s.recv(65536)
            if data == b"END":
                break
            tag = data.split(b" ", 1)[0].decode()
            counts[tag] = counts.get(tag, 0) + 1
            size += len(data)
            last = time.monotonic()
            first = first or last
    except socket.timeout:
        pass
    print(json.dumps({"counts": counts, "bytes": size,
                      "seconds": (last - first) if first else 0}))
elif mode == "send":  # UDP: COUNT datagrams of SIZE bytes tagged TAG at RATE per second
    host, port, tag, count, size, rate = args[0], int(args[1]), args[2], int(args[3]), \
        int(args[4]), float(args[5])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    start = time.monotonic()
    payload = (tag + " ").encode().ljust(size, b".")
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        s.sendto(payload, (host, port))
    print("sent", flush=True)
elif mode == "end":
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"END", (args[0], int(args[1])))
elif mode == "tcp-sink":  # bytes and seconds of one connection
    server = socket.create_server(("0.0.0.0", int(args[0])))
    print("ready", flush=True)
    conn, _ = server.accept()
    size, first, last = 0, None, None
    while data := conn.recv(65536):
        size += len(data)
        last = time.monotonic()
        first = first or last
    print(json.dumps({"bytes": size, "seconds": last - first}))
elif mode == "tcp-send":  # as fast as the link allows for SECONDS
    conn = socket.create_connection((args[0], int(args[1])))
    end = time.monotonic() + float(args[2])
    block = b"x" * 16384
    while time.monotonic() < end:
        conn.sendall(block)
    conn.close()
"""


@pytest.fixture
def lab() -> Iterator[NetLab]:
    with NetLab() as net:
        yield net


def probe(host: Host, *args: object, timeout: float = 60) -> str:
    done = host.run([sys.executable, "-c", PROBE, *map(str, args)], timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout


def start(host: Host, *args: object) -> subprocess.Popen[str]:
    """A probe running in the background, once it printed ``ready``."""
    process = host.popen([sys.executable, "-c", PROBE, *map(str, args)],
                         stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def result(process: subprocess.Popen[str]) -> Any:
    out, _ = process.communicate(timeout=60)
    return json.loads(out)


def test_delay_each_way_adds_up_to_the_round_trip(lab: NetLab) -> None:
    a, b = lab.host("a"), lab.host("b")
    start(b, "echo", PORT)
    baseline = json.loads(probe(a, "ping", b.address, PORT, 20))
    lab.shape(a, direction="up", delay_ms=50)
    lab.shape(a, direction="down", delay_ms=50)
    delayed = json.loads(probe(a, "ping", b.address, PORT, 30))
    lab.shape(a, direction="up", delay_ms=50, jitter_ms=10)
    lab.shape(a, direction="down", delay_ms=50, jitter_ms=10)
    jittery = json.loads(probe(a, "ping", b.address, PORT, 60))
    print(f"\nRTT ms median: clean {statistics.median(baseline):.2f}, 50 ms each way "
          f"{statistics.median(delayed):.1f}, with 10 ms jitter {statistics.median(jittery):.1f} "
          f"(stdev {statistics.stdev(jittery):.1f}, {min(jittery):.1f}..{max(jittery):.1f})")
    assert len(baseline) == 20 and len(delayed) == 30 and len(jittery) == 60
    assert statistics.median(baseline) < 10
    assert 95 <= statistics.median(delayed) <= 130
    assert min(delayed) >= 99
    assert 90 <= statistics.median(jittery) <= 135
    assert statistics.stdev(jittery) >= 3  # jitter spreads the round trips
    assert min(jittery) >= 79  # ... within delay +- jitter each way

    lab.shape(a, direction="up")
    lab.shape(a, direction="down")
    again = json.loads(probe(a, "ping", b.address, PORT, 10))
    assert statistics.median(again) < 10


def test_loss_per_direction_is_near_the_percentage(lab: NetLab) -> None:
    a, b = lab.host("a"), lab.host("b")
    lab.shape(a, direction="up", loss_percent=10)
    lab.shape(a, direction="down", loss_percent=4)
    at_b, at_a = start(b, "sink", PORT), start(a, "sink", PORT)
    count = 3000
    senders = [host.popen([sys.executable, "-c", PROBE, "send", target.address, str(PORT), tag,
                           str(count), "200", "1000"], stdout=subprocess.PIPE)
               for host, target, tag in ((a, b, "up"), (b, a, "down"))]
    for sender in senders:
        sender.communicate(timeout=60)
    time.sleep(0.2)
    # END may itself be lost: send it until the sinks finish.
    for sink, host, target in ((at_b, a, b), (at_a, b, a)):
        while sink.poll() is None:
            probe(host, "end", target.address, PORT)
            time.sleep(0.1)
    up = 100 * (1 - result(at_b)["counts"].get("up", 0) / count)
    down = 100 * (1 - result(at_a)["counts"].get("down", 0) / count)
    print(f"\nmeasured loss over {count} datagrams: up {up:.1f} % (set 10), "
          f"down {down:.1f} % (set 4)")
    assert 7.5 <= up <= 12.5
    assert 2.5 <= down <= 5.5


def test_rate_cap_limits_udp_and_tcp(lab: NetLab) -> None:
    a, b = lab.host("a"), lab.host("b")
    lab.shape(a, direction="up", rate_kbit=400)
    sink = start(b, "sink", PORT)
    # 1 Mbit/s offered for 4 s: the cap lets about 400 kbit/s through.
    probe(a, "send", b.address, PORT, "udp", 500, 1000, 125)
    probe(a, "end", b.address, PORT)
    udp = result(sink)
    udp_kbit = udp["bytes"] * 8 / udp["seconds"] / 1000
    # Unshaped way back: the other direction is not capped.
    sink = start(a, "sink", PORT)
    probe(b, "send", a.address, PORT, "udp", 500, 1000, 125)
    probe(b, "end", a.address, PORT)
    back = result(sink)
    tcp_sink = start(b, "tcp-sink", PORT)
    probe(a, "tcp-send", b.address, PORT, 5)
    tcp = result(tcp_sink)
    tcp_kbit = tcp["bytes"] * 8 / tcp["seconds"] / 1000
    print(f"\n400 kbit/s cap: UDP {udp_kbit:.0f} kbit/s ({udp['counts']['udp']} of 500 "
          f"datagrams), TCP {tcp_kbit:.0f} kbit/s; uncapped way back "
          f"{back['counts']['udp']} of 500")
    assert 320 <= udp_kbit <= 480
    assert 250 <= tcp_kbit <= 460
    assert back["counts"]["udp"] == 500


def test_blackhole_drops_everything_until_switched_off(lab: NetLab) -> None:
    a, b = lab.host("a"), lab.host("b")
    at_b, at_a = start(b, "sink", PORT), start(a, "sink", PORT)

    def both_ways(tag: str) -> None:
        probe(a, "send", b.address, PORT, tag, 100, 200, 500)
        probe(b, "send", a.address, PORT, tag, 100, 200, 500)

    both_ways("before")
    lab.blackhole(a, True)
    both_ways("during")
    lab.blackhole(a, False)
    both_ways("after")
    time.sleep(0.2)
    probe(a, "end", b.address, PORT)
    probe(b, "end", a.address, PORT)
    to_b, to_a = result(at_b)["counts"], result(at_a)["counts"]
    print(f"\nreceived of 100 each: a->b {to_b}, b->a {to_a}")
    assert to_b == {"before": 100, "after": 100}
    assert to_a == {"before": 100, "after": 100}


def test_nothing_is_left_behind_even_after_a_failure() -> None:
    with pytest.raises(RuntimeError, match="boom"), NetLab() as net:
        host = net.host("x")
        sleeper = host.popen(["sleep", "600"])
        net.shape(host, direction="down", rate_kbit=1000, delay_ms=20, loss_percent=1)
        bridges = list(net.bridges.values())
        raise RuntimeError("boom")
    assert sleeper.poll() is not None
    assert not [n for n in run(["ip", "netns", "list"]).split()
                if n.startswith(f"{PREFIX}{net.pid}-")]
    assert bridges and all(b.process.poll() is not None for b in bridges)


def test_a_stale_namespace_of_a_dead_run_is_removed() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"{PREFIX}{dead.pid}-core"
    run(["ip", "netns", "add", stale])
    try:
        with NetLab() as net:
            net.host("y")
            assert stale not in run(["ip", "netns", "list"]).split()
    finally:
        subprocess.run(["ip", "netns", "delete", stale], capture_output=True, check=False)
