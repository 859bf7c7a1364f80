"""contracts: the typed payloads that cross packages (a leaf: it imports only the stdlib).

Each payload is a frozen dataclass with ``parse(data)`` (raising ``ValueError`` with a
message that names the bad field and never echoes its value), ``to_json()`` (exactly
the JSON clients receive, see signaling/PROTOCOL.md) and ``timeline_view()`` (what a
recording keeps of it: never staff names). The role vocabulary lives in
``contracts.roles``; the message catalogue the pages and the teaching video share
in ``contracts.catalogue``.
"""
