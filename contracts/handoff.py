"""What the recorder and the records service agree on about a recording's hand-off.

The records service answers a hand-off whose room no consultation owns with HTTP 404 and
this error ``code``; the recorder then ends the hand-off as ``unclaimed`` (kept for an
admin to attach or discard) instead of retrying it forever.
"""

from __future__ import annotations

UNCLAIMED_ROOM_CODE = "room-unclaimed"
