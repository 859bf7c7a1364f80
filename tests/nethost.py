"""A network lab for tests: hosts in Linux network namespaces, with loss, rate caps,
delay, jitter and outages between them. Needs root (CI runs as root).

    with NetLab() as lab:
        server, ward = lab.host("server"), lab.host("ward")
        lab.shape(ward, direction="up", rate_kbit=4000, loss_percent=2, delay_ms=30)
        proc = server.popen([...])

Shape of the network (one "core" namespace joins the hosts)::

    host ns            core ns
    eth0 ==veth== aN <-[net_bridge.py: delay, jitter]-> bN ==veth== cN --+
                                                                         br0 (Linux bridge)
    eth0 ==veth== aM <-[net_bridge.py]-> bM ==veth== cM -----------------+

- loss and outages: nftables in the core's bridge-family ``forward`` hook (``iifname
  cN``: the host's "up", ``oifname cN``: its "down"), ``numgen random`` per frame. Done
  there, not in the host's own output hook, where a drop would fail the sender's
  ``sendto`` with EPERM instead of losing the packet silently as a network does;
- rate caps: ``tbf`` on ``bN`` (up: frames the bridge sends towards the network) and on
  ``cN`` (down: frames the Linux bridge sends towards the host);
- delay and jitter: the host's bridge process (tests/net_bridge.py), per direction.

Every name carries this process's id (``hzlab<pid>-<host>``); closing the lab (also on
an exception) kills what its hosts run, stops the bridges and deletes the namespaces,
which takes the veths, qdiscs and nft table with them. Namespaces left by a killed run
(their pid is gone) are removed when the next lab starts.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

IP = "/usr/sbin/ip"
NFT = "/usr/sbin/nft"
TC = "/usr/sbin/tc"
CHROMIUM = "/usr/bin/chromium"
PREFIX = "hzlab"
SUBNET = "10.77.0"
BRIDGE = Path(__file__).with_name("net_bridge.py")
NFT_TABLE = "hzlab"

Direction = Literal["up", "down"]


class LabError(RuntimeError):
    """A command that builds or changes the lab failed."""


def run(argv: list[str], *, stdin: str | None = None) -> str:
    """Run a command of the lab; its stdout, or LabError with its stderr."""
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LabError(f"{shlex.join(argv)}: {result.stderr.strip() or result.returncode}")
    return result.stdout


def namespace_pids(netns: str) -> list[int]:
    try:
        return [int(p) for p in run([IP, "netns", "pids", netns]).split()]
    except LabError:
        return []


def kill_namespace(netns: str) -> None:
    """Kill every process in ``netns`` (all started by this lab), then delete it."""
    for _ in range(20):
        pids = namespace_pids(netns)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    with contextlib.suppress(LabError):
        run([IP, "netns", "delete", netns])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_namespaces(own_pid: int) -> list[str]:
    """Delete namespaces of labs whose process is gone (or this pid's, reused)."""
    removed = []
    for line in run([IP, "netns", "list"]).splitlines():
        name = line.split()[0] if line.strip() else ""
        match = re.fullmatch(rf"{PREFIX}(\d+)-.+", name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid == own_pid or not pid_alive(pid):
            kill_namespace(name)
            removed.append(name)
    return removed


@dataclass
class Shape:
    """What one direction of one host's link does to packets."""

    loss_percent: float = 0.0
    rate_kbit: int | None = None
    delay_ms: float = 0.0
    jitter_ms: float = 0.0


@dataclass
class Host:
    """A namespace with one IPv4 address on the lab's network."""

    name: str
    netns: str
    address: str
    index: int
    lab: NetLab = field(repr=False)
    processes: list[subprocess.Popen[Any]] = field(default_factory=list, repr=False)

    def argv(self, argv: list[str]) -> list[str]:
        """``argv`` prefixed to run inside this host's namespace."""
        return [IP, "netns", "exec", self.netns, *argv]

    def popen(self, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start a process inside the namespace; the lab kills it when it closes."""
        process = subprocess.Popen(self.argv(argv), **kw)
        self.processes.append(process)
        return process

    def run(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a process inside the namespace to its end; its output as text."""
        return subprocess.run(self.argv(argv), capture_output=True, text=True, timeout=timeout,
                              check=False)

    def chromium_executable(self) -> str:
        """A script that runs Debian's Chromium inside this namespace (for Playwright's
        ``chromium.launch(executable_path=...)``)."""
        path = self.lab.workdir / f"chromium-{self.name}"
        if not path.exists():
            path.write_text(f'#!/bin/sh\nexec {IP} netns exec {shlex.quote(self.netns)} '
                            f'{CHROMIUM} "$@"\n')
            path.chmod(0o755)
        return str(path)


@dataclass
class Bridge:
    """A host's running delay bridge (tests/net_bridge.py) and its control pipe."""

    process: subprocess.Popen[str]

    def command(self, line: str) -> None:
        stdin, stdout = self._pipes()
        stdin.write(line + "\n")
        stdin.flush()
        answer = stdout.readline().strip()
        if answer != "ok":
            raise LabError(f"delay bridge: {line!r}: {answer or 'no answer'}")

    def wait_ready(self) -> None:
        _, stdout = self._pipes()
        line = stdout.readline().strip()
        if line != "ready":
            raise LabError(f"delay bridge did not start (said {line!r})")

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        assert self.process.stdin is not None and self.process.stdout is not None
        return self.process.stdin, self.process.stdout

    def stop(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class NetLab:
    """Context manager: namespaces joined by veth pairs, shaped per host and direction."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.core = f"{PREFIX}{self.pid}-core"
        self.hosts: dict[str, Host] = {}
        self.shapes: dict[tuple[str, Direction], Shape] = {}
        self.bridges: dict[str, Bridge] = {}
        self.blackholed: set[str] = set()
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def workdir(self) -> Path:
        assert self._workdir is not None, "the lab is not open"
        return Path(self._workdir.name)

    def __enter__(self) -> NetLab:
        if os.geteuid() != 0:
            raise LabError("the network lab needs root (ip netns, nft, tc), as in CI")
        remove_stale_namespaces(self.pid)
        self._workdir = tempfile.TemporaryDirectory(prefix=f"{PREFIX}{self.pid}-")
        try:
            run([IP, "netns", "add", self.core])
            self._in_core([IP, "link", "set", "lo", "up"])
            self._in_core([IP, "link", "add", "br0", "type", "bridge"])
            self._in_core([IP, "link", "set", "br0", "up"])
            self._nft(f"""
                add table bridge {NFT_TABLE}
                add chain bridge {NFT_TABLE} forward {{ type filter hook forward priority 0; }}
            """)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def host(self, name: str) -> Host:
        """A new host ``name`` (letters, digits, '-'; at most 12 characters)."""
        if not re.fullmatch(r"[a-z0-9-]{1,12}", name) or name == "core":
            raise ValueError(f"host name {name!r}: use 1-12 of a-z, 0-9, '-' (not 'core')")
        if name in self.hosts:
            raise ValueError(f"host {name!r} exists already")
        index = len(self.hosts) + 1
        if index > 250:
            raise ValueError("at most 250 hosts")
        host = Host(name, f"{PREFIX}{self.pid}-{name}", f"{SUBNET}.{index + 1}", index, self)
        self.hosts[name] = host
        a, b, c = (f"{side}{index}" for side in "abc")
        run([IP, "netns", "add", host.netns])
        run([IP, "link", "add", "name", "eth0", "netns", host.netns, "type", "veth",
             "peer", "name", a, "netns", self.core])
        self._in_core([IP, "link", "add", "name", b, "type", "veth", "peer", "name", c])
        self._in_core([IP, "link", "set", c, "master", "br0"])
        for interface in (a, b, c):
            self._in_core([IP, "link", "set", interface, "up"])
        run(host.argv([IP, "addr", "add", f"{host.address}/24", "dev", "eth0"]))
        run(host.argv([IP, "link", "set", "eth0", "up"]))
        run(host.argv([IP, "link", "set", "lo", "up"]))
        # Packets leave complete (no partial checksums, no TSO super-frames) for the bridge.
        run(host.argv([sys.executable, str(BRIDGE), "--no-offloads", "eth0"]))
        with contextlib.suppress(LabError):  # no IPv6 noise in ICE candidates
            run(host.argv(["sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6"]))
        self._nft(f"""
            add chain bridge {NFT_TABLE} up{index}
            add chain bridge {NFT_TABLE} down{index}
            add rule bridge {NFT_TABLE} forward iifname "{c}" jump up{index}
            add rule bridge {NFT_TABLE} forward oifname "{c}" jump down{index}
        """)
        bridge = Bridge(subprocess.Popen(
            [IP, "netns", "exec", self.core, sys.executable, str(BRIDGE), a, b],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        self.bridges[name] = bridge
        bridge.wait_ready()
        return host

    def shape(self, host: Host, *, direction: Direction, loss_percent: float = 0,
              rate_kbit: int | None = None, delay_ms: float = 0,
              jitter_ms: float = 0) -> None:
        """Set what ``direction`` of ``host``'s link does ("up": packets leaving the host,
        "down": packets arriving at it), replacing the earlier shape of that direction.
        Can be called while traffic flows."""
        if direction not in ("up", "down"):
            raise ValueError(f"direction must be 'up' or 'down', not {direction!r}")
        if not 0 <= loss_percent <= 100:
            raise ValueError("loss_percent must be 0..100")
        if rate_kbit is not None and rate_kbit <= 0:
            raise ValueError("rate_kbit must be positive")
        if jitter_ms > delay_ms:
            raise ValueError("jitter_ms must not exceed delay_ms")
        shape = Shape(loss_percent, rate_kbit, delay_ms, jitter_ms)
        self.bridges[host.name].command(f"delay {direction} {delay_ms} {jitter_ms}")
        self._set_rate(host, direction, rate_kbit)
        self.shapes[(host.name, direction)] = shape
        self._write_filter(host, direction)

    def blackhole(self, host: Host, on: bool) -> None:
        """Drop every IPv4 packet to and from ``host`` (on), or stop doing so (off).
        ARP still passes, so the link comes back at once when it is switched off."""
        if on:
            self.blackholed.add(host.name)
        else:
            self.blackholed.discard(host.name)
        self._write_filter(host, "up")
        self._write_filter(host, "down")

    def close(self) -> None:
        """Remove everything the lab made; safe to call twice."""
        for host in self.hosts.values():
            for process in host.processes:
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        if _own_group(process):
                            os.killpg(process.pid, signal.SIGKILL)
                        else:
                            process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(5)
        for bridge in self.bridges.values():
            bridge.stop()
        self.bridges.clear()
        for host in self.hosts.values():
            kill_namespace(host.netns)
        self.hosts.clear()
        kill_namespace(self.core)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def _write_filter(self, host: Host, direction: Direction) -> None:
        chain = f"{direction}{host.index}"
        rules = [f"flush chain bridge {NFT_TABLE} {chain}"]
        if host.name in self.blackholed:
            rules.append(f"add rule bridge {NFT_TABLE} {chain} meta protocol != arp drop")
        loss = self.shapes.get((host.name, direction), Shape()).loss_percent
        if loss > 0:
            # Per 10000 so that fractional percentages (0.5 %) work.
            threshold = round(loss * 100)
            rules.append(f"add rule bridge {NFT_TABLE} {chain} meta protocol ip "
                         f"numgen random mod 10000 < {threshold} drop")
        self._nft("\n".join(rules))

    def _set_rate(self, host: Host, direction: Direction, rate_kbit: int | None) -> None:
        device = f"{'b' if direction == 'up' else 'c'}{host.index}"
        if rate_kbit is None:
            with contextlib.suppress(LabError):  # none set: nothing to delete
                self._in_core([TC, "qdisc", "del", "dev", device, "root"])
            return
        # A burst of ~20 ms at the rate (at least two full frames) and up to 100 ms of
        # queue, as in a small access router.
        burst = max(3200, rate_kbit * 1000 // 8 // 50)
        self._in_core([TC, "qdisc", "replace", "dev", device, "root", "tbf",
                       "rate", f"{rate_kbit}kbit", "burst", str(burst), "latency", "100ms"])

    def _in_core(self, argv: list[str]) -> str:
        return run([IP, "netns", "exec", self.core, *argv])

    def _nft(self, script: str) -> None:
        run([IP, "netns", "exec", self.core, NFT, "-f", "-"], stdin=script)


def _own_group(process: subprocess.Popen[Any]) -> bool:
    """Whether ``process`` leads a process group of its own (started with
    ``start_new_session=True``), so the whole group can be killed."""
    try:
        return os.getpgid(process.pid) == process.pid
    except ProcessLookupError:
        return False
