"""The room services the signalling sees, with the room's recording state added to `joined`.

Someone who joins while the recorder's disk is full gets ``"recording": {"state":
"stopped", "reason": "disk-full"}`` in the ``joined`` reply, as those already in the room
got the ``recording-state`` event (signaling/PROTOCOL.md).
"""

from __future__ import annotations

from typing import Any

from contracts.ptz import PtzRequest
from recorder.service import RecorderService
from signaling.services import Caller, RoomServices


class WithRecordingState:
    """A ``RoomServices`` that delegates to ``inner`` and adds ``recording`` to `joined`."""

    def __init__(self, inner: RoomServices, recorder: RecorderService) -> None:
        self._inner = inner
        self._recorder = recorder

    def room_state(self, room: str) -> dict[str, Any]:
        state = self._inner.room_state(room)
        recording = self._recorder.room_recording_state(room)
        return {**state, "recording": recording} if recording is not None else state

    async def ptz(self, caller: Caller, request: PtzRequest) -> None:
        await self._inner.ptz(caller, request)

    def participant_left(self, room: str, participant_id: str) -> None:
        self._inner.participant_left(room, participant_id)
