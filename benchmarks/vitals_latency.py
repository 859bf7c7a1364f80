"""Monitor-to-client latency: an HL7 ORU^R01 sent to the server until a room client has it.

    python -m benchmarks.vitals_latency [--clients 8] [--rate 10] [--seconds 20]

The real server runs in its own process (``python -m huizhen serve``) with its HL7
listener and one bed binding (room "bench" <- monitor 0012A1FFFE00BE01). In this
process, ``--clients`` signalling clients join the room and record when each
``vitals`` event arrives; one MLLP sender on a persistent connection sends a message
every 1/``--rate`` s, each carrying its own sequence number, and waits for its ACK.

Printed, over every (message, client) pair: the monitor-to-client latency p50/p99/max
(send of the HL7 frame -> the vitals event decoded at the client, one clock), and, as
the baseline measured in the same run, the send -> ACK latency (parse + durable
SQLite commit, fsync included): the difference is routing to the room plus the
WebSocket hop. The requirement is 200 ms. A report: it never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp

from config import load_settings
from devices.hl7.mllp import Frame, MLLPFramer, encode_frame
from huizhen.app import token_authority
from signaling.client import SignalingClient

DEVICE = "0012A1FFFE00BE01"
ROOM = "bench"
SECRET = "vitals-latency-benchmark-secret-0123456789"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def message(seq: int) -> bytes:
    ts = datetime.now(UTC).strftime("%Y%m%d%H%M%S.%f")[:-3] + "+0000"
    device = f"{DEVICE}^BENCH"
    obx_tail = "|R|||" + ts + "||||" + device

    def obx(n: int, code: str, sub: str, value: str, unit: str) -> str:
        return f"OBX|{n}|NM|{code}|{sub}|{value}|{unit}||||" + obx_tail

    segments = [
        f"MSH|^~\\&|BENCH^{DEVICE}^EUI-64|HUIZHEN BENCH|||{ts}||ORU^R01^ORU_R01|B{seq:08d}|P|2.6"
        "|||NE|AL||UNICODE UTF-8",
        "PID|||BENCH0001^^^PID^MR",
        f"OBR|1|B{seq}^BENCH|B{seq}^BENCH|182777000^monitoring of patient^SCT|||{ts}",
        obx(1, "147842^MDC_ECG_HEART_RATE^MDC", "1.1.1.1", str(60 + seq % 40),
            "264864^MDC_DIM_BEAT_PER_MIN^MDC"),
        obx(2, "99001^HZ_BENCH_SEQUENCE^99HZ", "1.1.1.2", str(seq), ""),
    ]
    return encode_frame("\r".join(segments).encode())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    port, hl7_port = free_port(), free_port()
    data_dir = tempfile.mkdtemp(prefix="huizhen-vitals-bench-")
    env = {**os.environ, "HUIZHEN_SERVER_PORT": str(port),
           "HUIZHEN_AUTH_TOKEN_SECRET": SECRET, "HUIZHEN_STORAGE_DATA_DIR": data_dir,
           "HUIZHEN_DEVICES_HL7_LISTEN": f"127.0.0.1:{hl7_port}",
           "HUIZHEN_DEVICES_BEDS": json.dumps([{"room": ROOM, "monitor": f"hl7:{DEVICE}"}])}
    server = subprocess.Popen([sys.executable, "-m", "huizhen", "--log-level", "WARNING",
                               "serve"], env=env, stdout=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(base + "/api/v1/health") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        authority = token_authority(load_settings(environ=env))
        received: list[dict[int, float]] = [{} for _ in range(args.clients)]
        clients = []
        for i in range(args.clients):
            client = SignalingClient(base.replace("http", "ws") + "/ws")
            await client.connect()
            await client.join(authority.mint(room=ROOM, role="observer", name=f"c{i}", ttl=600))
            clients.append(client)

        async def collect(i: int, client: SignalingClient) -> None:
            while True:
                event = await client.next_event("vitals", timeout=3600)
                now = time.perf_counter()
                for sample in event["samples"]:
                    if sample["code"] == "99001":
                        received[i][int(sample["value"])] = now

        collectors = [asyncio.create_task(collect(i, c)) for i, c in enumerate(clients)]
        reader, writer = await asyncio.open_connection("127.0.0.1", hl7_port)
        framer = MLLPFramer()
        sent: dict[int, float] = {}
        acked: dict[int, float] = {}
        count = int(args.rate * args.seconds)
        interval = 1.0 / args.rate
        start = time.perf_counter()
        for seq in range(count):
            delay = start + seq * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent[seq] = time.perf_counter()
            writer.write(message(seq))
            await writer.drain()
            ack = b""
            while not ack:
                for event in framer.feed(await reader.read(65536)):
                    if isinstance(event, Frame):
                        ack = event.payload
            acked[seq] = time.perf_counter()
            if b"MSA|AA|" not in ack:
                raise RuntimeError("the server did not acknowledge with AA")
        await asyncio.sleep(1.0)
        writer.close()
        for task in collectors:
            task.cancel()
        for client in clients:
            await client.close()
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    latencies = [(got[seq] - sent[seq]) * 1000 for got in received for seq in got]
    ack_latencies = [(acked[s] - sent[s]) * 1000 for s in acked]
    delivered = sum(len(got) for got in received)
    return {
        "messages": len(sent), "clients": args.clients,
        "delivered": delivered, "expected": len(sent) * args.clients,
        "client_p50_ms": percentile(latencies, 0.5), "client_p99_ms": percentile(latencies, 0.99),
        "client_max_ms": max(latencies) if latencies else float("nan"),
        "ack_p50_ms": percentile(ack_latencies, 0.5), "ack_p99_ms": percentile(ack_latencies, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rate", type=float, default=10.0, help="HL7 messages per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    r = asyncio.run(run(args))
    print(f"\nMonitor-to-client latency: {r['messages']} HL7 messages at {args.rate:g}/s, "
          f"{r['clients']} room clients, server in its own process")
    print(f"  delivered            {r['delivered']} of {r['expected']} (message, client) pairs")
    print(f"  monitor -> client    p50 {r['client_p50_ms']:.1f} ms   "
          f"p99 {r['client_p99_ms']:.1f} ms   max {r['client_max_ms']:.1f} ms")
    print(f"  baseline send -> ACK p50 {r['ack_p50_ms']:.1f} ms   p99 {r['ack_p99_ms']:.1f} ms"
          "   (parse + durable commit)")
    print(f"  routing + WebSocket hop (p50 difference): "
          f"{r['client_p50_ms'] - r['ack_p50_ms']:.1f} ms; ratio client/ACK p50 "
          f"{r['client_p50_ms'] / r['ack_p50_ms']:.2f}")
    verdict = "PASS" if r["client_p99_ms"] <= 200 else "FAIL"
    print(f"{verdict}  samples reach every participant within 200 ms (p99 "
          f"{r['client_p99_ms']:.1f} ms)")


if __name__ == "__main__":
    main()
