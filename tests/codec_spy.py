"""Run the real server in a child process that counts every codec created in it.

``python -m tests.codec_spy PORT SECRET`` serves the normal app plus
``GET /_test/codecs``: how many decoders and encoders (aiortc's codec classes,
its ``get_decoder``/``get_encoder`` factories, and PyAV ``CodecContext.create``)
were created in the server process. Counting in a separate process keeps the
test's own decoding subscribers out of the count.
"""

from __future__ import annotations

import asyncio
import collections
import sys
import tempfile
from typing import Any

CODEC_CLASSES = [
    ("aiortc.codecs.vpx", "Vp8Decoder"), ("aiortc.codecs.vpx", "Vp8Encoder"),
    ("aiortc.codecs.h264", "H264Decoder"), ("aiortc.codecs.h264", "H264Encoder"),
    ("aiortc.codecs.opus", "OpusDecoder"), ("aiortc.codecs.opus", "OpusEncoder"),
    ("aiortc.codecs.g711", "PcmuDecoder"), ("aiortc.codecs.g711", "PcmuEncoder"),
    ("aiortc.codecs.g711", "PcmaDecoder"), ("aiortc.codecs.g711", "PcmaEncoder"),
]


def install() -> collections.Counter[str]:
    """Patch every codec creation path of aiortc and PyAV to count into the returned Counter."""
    import importlib

    import aiortc.codecs
    import aiortc.rtcrtpreceiver
    import aiortc.rtcrtpsender
    import av

    counts: collections.Counter[str] = collections.Counter()
    for module_name, class_name in CODEC_CLASSES:
        cls = getattr(importlib.import_module(module_name), class_name)
        original_init = cls.__init__

        def counting_init(self: Any, *args: Any, _o: Any = original_init,
                          _n: str = class_name, **kwargs: Any) -> None:
            counts[_n] += 1
            _o(self, *args, **kwargs)

        cls.__init__ = counting_init

    for name in ("get_decoder", "get_encoder"):
        original = getattr(aiortc.codecs, name)

        def factory(codec: Any, _o: Any = original, _n: str = name) -> Any:
            counts[_n] += 1
            return _o(codec)

        for module in (aiortc.codecs, aiortc.rtcrtpreceiver, aiortc.rtcrtpsender):
            if hasattr(module, name):
                setattr(module, name, factory)

    real_codec_context = av.CodecContext

    class CountingCodecContext:
        @staticmethod
        def create(*args: Any, **kwargs: Any) -> Any:
            counts["av.CodecContext.create"] += 1
            return real_codec_context.create(*args, **kwargs)

    av.CodecContext = CountingCodecContext
    return counts


async def serve(port: int, secret: str) -> None:
    from aiohttp import web

    from config import load_settings
    from huizhen.app import create_app

    counts = install()
    settings = load_settings(environ={
        "HUIZHEN_SERVER_HOST": "127.0.0.1", "HUIZHEN_SERVER_PORT": str(port),
        "HUIZHEN_AUTH_TOKEN_SECRET": secret,
        "HUIZHEN_STORAGE_DATA_DIR": tempfile.mkdtemp(prefix="huizhen-codec-spy-"),
    })
    app = create_app(settings)

    async def report(request: web.Request) -> web.Response:
        return web.json_response(dict(counts))

    app.router.add_get("/_test/codecs", report)
    from tests.child_app import serve_forever

    await serve_forever(app, port)


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), sys.argv[2]))
