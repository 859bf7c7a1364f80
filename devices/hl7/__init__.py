"""HL7 v2 vital signs from bedside monitors: ORU^R01 (IHE PCD-01) over MLLP.

Sans-I/O cores: ``mllp`` (framing), ``oru`` (MSH-18 decoding, ORU^R01 ->
``VitalSample``), ``ack`` (ACK messages), ``escape`` and ``timestamp``; the tables
are in ``codes``. I/O shells: ``listener.HL7Listener`` (the MLLP server),
``storage.SampleStore`` (durable SQLAlchemy storage with group commit, each HL7
message once; ``store.store`` is a ``SampleSink``), ``decode_pool.DecodePool``
(large messages decoded in worker processes) and ``simulator.MonitorSimulator`` (a
monitor for tests and demos).

    store = SampleStore()                       # SQLite in ./data, WAL + synchronous=FULL
    await store.open()
    listener = HL7Listener(store, ListenerConfig(port=2575), on_stored=forward)
    await listener.start()
"""

from .errors import ErrorCode, HL7Error, Location, MessageError, MessageRejected, StorageError
from .listener import HL7Listener, ListenerConfig, ListenerStats
from .oru import MessageHeader, OruConfig, OruMessage, decode_oru, read_header

__all__ = [
    "ErrorCode",
    "HL7Error",
    "HL7Listener",
    "ListenerConfig",
    "ListenerStats",
    "Location",
    "MessageError",
    "MessageHeader",
    "MessageRejected",
    "OruConfig",
    "OruMessage",
    "StorageError",
    "decode_oru",
    "read_header",
]
