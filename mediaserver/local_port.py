"""LocalPort: a ``SendPort`` inside the process, for a reader that subscribes like a viewer.

A consumer writes serialised RTP to its port. For an in-process reader (the recorder)
this port turns those bytes back into ``RtpPacket`` objects (aiortc's parser) and
hands them to the reader as an ordinary ``Downstream`` write; the consumer's sender
report values become the reader's ``sender_report``. So everything a consumer does to
a stream (a keyframe start, simulcast switches with continuous numbering, picture ids
and timestamps, translated sender reports) reaches the reader unchanged, without a
second copy of that machinery. The reader is bound after the port is built (the
reader's factory needs the consumer, which needs the port); nothing is delivered
before.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiortc.rtp import RtpPacket

from mediaserver.codecs import NO_FLAGS

if TYPE_CHECKING:
    from mediaserver.codecs import PayloadParser
    from mediaserver.downstream import Downstream
    from mediaserver.send_port import SendParameters, SendPortListener

logger = logging.getLogger(__name__)


class LocalPort:
    """Delivers a consumer's packets to an in-process ``Downstream`` (``bind``).

    ``parser`` re-reads each payload's flags for a reader that reads them
    (``reads_flags``); other readers get ``NO_FLAGS``, as from a producer. Closing the
    port (the consumer was released) tells a reader that is still open that its track
    ended (``producer_closed``); a reader that closed itself is not called back.
    """

    __slots__ = ("_listener", "_parser", "_reader", "closed")

    def __init__(self, parser: PayloadParser | None = None) -> None:
        self._parser = parser
        self._listener: SendPortListener | None = None
        self._reader: Downstream | None = None
        self.closed = False

    @property
    def reader(self) -> Downstream | None:
        return self._reader

    def bind(self, reader: Downstream) -> None:
        """Deliver to ``reader`` from now on (once)."""
        if self._reader is not None:
            raise ValueError("this port already has a reader")
        self._reader = reader

    def connect(self, parameters: SendParameters) -> None:
        """The in-process "transport" is up at once: tell the listening consumer."""
        if self._listener is not None and not self.closed:
            self._listener.negotiated(parameters)

    # ----------------------------------------------------------------- SendPort

    def listen(self, listener: SendPortListener) -> None:
        self._listener = listener

    def send(self, data: bytes) -> bool:
        reader = self._reader
        if reader is None or self.closed or reader.closed:
            return False
        packet = RtpPacket.parse(data)  # our own consumer's bytes: well formed
        flags = NO_FLAGS
        parser = self._parser
        if parser is not None and packet.payload and reader.reads_flags:
            flags = parser(packet.payload)
        return reader.write(packet, flags)

    def set_report(self, ntp_timestamp: int, rtp_timestamp: int, packets: int,
                   octets: int) -> None:
        reader = self._reader
        if reader is not None and not self.closed and not reader.closed:
            reader.sender_report(ntp_timestamp, rtp_timestamp)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        reader = self._reader
        if reader is not None and not reader.closed:
            try:
                reader.producer_closed()
            except Exception:
                logger.exception("reader %s failed on close", reader.id)

    # ----------------------------------------------------------------- the reader's side

    def keyframe_requested(self) -> None:
        """The reader asks for a keyframe, as a viewer's PLI would."""
        if self._listener is not None and not self.closed:
            self._listener.keyframe_requested()
