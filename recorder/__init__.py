"""recorder: writes every session without transcoding, and renders teaching video on demand.

The recorder is a participant of the room: it consumes producers' RTP packets in
process (a ``mediaserver.Downstream`` attached with ``Room.attach``), remuxes them
with PyAV, and keeps a timeline of vitals, PTZ moves and joins beside the media. It
imports mediaserver, never signaling or consult_api; it hands artefacts to the
records service over HTTP.
"""
