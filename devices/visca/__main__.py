"""Run the simulated camera for a demo.

    python -m devices.visca --udp 127.0.0.1:52381 --tcp 127.0.0.1:5678 --pty

prints where it listens (the pty's path for a serial driver) and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from devices.visca.simulated_camera import SimulatedCamera
from devices.visca.simulator import CameraSimulator
from devices.visca.sony_ip import DEFAULT_PORT


def endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devices.visca", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--udp", type=endpoint, metavar="HOST:PORT",
                        help=f"Sony VISCA over IP (the cameras' port is {DEFAULT_PORT})")
    parser.add_argument("--raw-udp", type=endpoint, metavar="HOST:PORT",
                        help="bare VISCA over UDP")
    parser.add_argument("--tcp", type=endpoint, metavar="HOST:PORT", help="bare VISCA over TCP")
    parser.add_argument("--pty", action="store_true", help="a serial line on a pseudo-terminal")
    parser.add_argument("--pan-nibbles", type=int, choices=(4, 5), default=4)
    parser.add_argument("--completion-delay", type=float, default=0.0, metavar="SECONDS",
                        help="delay every completion (a slow camera)")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    if not (args.udp or args.raw_udp or args.tcp or args.pty):
        parser.error("give at least one of --udp, --raw-udp, --tcp, --pty")
    return args


async def serve(args: argparse.Namespace) -> None:
    camera = SimulatedCamera(pan_nibbles=args.pan_nibbles, completion_delay=args.completion_delay)
    async with CameraSimulator(camera) as simulator:
        if args.pty:
            print(f"serial (pty): {await simulator.open_pty()}", flush=True)
        if args.udp:
            host, port = await simulator.serve_udp(*args.udp)
            print(f"Sony VISCA over UDP: {host}:{port}", flush=True)
        if args.raw_udp:
            host, port = await simulator.serve_raw_udp(*args.raw_udp)
            print(f"raw VISCA over UDP: {host}:{port}", flush=True)
        if args.tcp:
            host, port = await simulator.serve_tcp(*args.tcp)
            print(f"raw VISCA over TCP: {host}:{port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
