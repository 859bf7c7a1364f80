"""A media node in a child process, so that a test can kill it outright (SIGKILL: no
goodbye to Redis, no closed sockets): ``python -m tests.cluster_child PORT``, its
settings from the HUIZHEN_* variables of its environment."""

from __future__ import annotations

import asyncio
import os
import sys

from config import load_settings
from huizhen.app import create_app
from tests.child_app import serve_forever


def main() -> None:
    port = int(sys.argv[1])
    settings = load_settings(environ={**os.environ, "HUIZHEN_SERVER_PORT": str(port)})
    asyncio.run(serve_forever(create_app(settings), port))


if __name__ == "__main__":
    main()
