"""Run an HL7 listener that stores samples durably: ``python -m devices.hl7``.

    python -m devices.hl7 --port 2575 [--database URL | --data-dir data]
    python -m devices.hl7.simulator --port 2575 --interval 5     # in another shell
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

from .listener import HL7Listener, ListenerConfig
from .storage import SampleStore


async def serve(config: ListenerConfig, store: SampleStore) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with store, HL7Listener(store.store, config):
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devices.hl7",
                                     description="HL7 ORU^R01 MLLP listener with durable "
                                                 "sample storage.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2575)
    parser.add_argument("--database", default=None,
                        help="SQLAlchemy URL (default: SQLite in --data-dir)")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--max-connections", type=int, default=64)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = ListenerConfig(host=args.host, port=args.port,
                            max_connections=args.max_connections)
    asyncio.run(serve(config, SampleStore(args.database, data_dir=args.data_dir)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
