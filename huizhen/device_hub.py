"""Bedside devices wired to rooms: PTZ cameras, HL7 and serial monitors, vitals to clients.

This is part of the composition root: it alone imports both the device drivers and
the media server, and implements signalling's ``RoomServices`` interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from contracts.alarms import AlarmEvent
from contracts.patient_change import PatientChanged
from contracts.payload import Payload
from contracts.ptz import PtzRequest
from contracts.vitals import Reading, VitalsEvent
from devices.binding import BedBinding
from devices.hl7 import HL7Listener, ListenerConfig, OruConfig
from devices.hl7.alarms import flag_priority
from devices.hl7.storage import SampleStore
from devices.ptz_audit import PtzAudit
from devices.ptz_control import PtzDenied
from devices.ptz_service import CameraRefused, CameraUnavailable, Operator, PtzService
from devices.serial_monitors import CMS50D, NONIN, SerialMonitor
from devices.visca.camera import PtzCamera, Submitted
from devices.visca.codec import ErrorCode
from devices.visca.errors import (
    CameraOffline,
    MalformedReply,
    ViscaCommandError,
    ViscaError,
    ViscaTimeout,
)
from devices.visca.url import camera_from_url
from devices.vitals import VitalAlarm, VitalSample
from mediaserver import RoomBus
from signaling.services import Caller, ServiceError

logger = logging.getLogger(__name__)


class ViscaCameraPort:
    """Adapts a VISCA ``PtzCamera`` to the PTZ service's camera port.

    Each method submits its commands at once (so they reach the camera in call order)
    and returns on their ACK; the completion of home and preset recall is handed back
    as an awaitable. ``halt`` cancels a running home or recall in the camera (Command
    Cancel on its socket) before it sends the pan-tilt and zoom stops."""

    def __init__(self, camera: PtzCamera) -> None:
        self.camera = camera
        self._positioning: dict[int, Submitted] = {}

    @property
    def online(self) -> bool:
        return self.camera.online

    async def drive(self, pan: float, tilt: float, zoom: float) -> None:
        await self._send(self.camera.drive_packets(pan, tilt, zoom))

    async def halt(self) -> None:
        for submitted in list(self._positioning.values()):
            self.camera.cancel(submitted)
        await self._send(self.camera.stop_packets())

    async def recall_preset(self, preset: int) -> Awaitable[str]:
        return await self._position(self.camera.commands.preset_recall(preset))

    async def store_preset(self, preset: int) -> None:
        await self._send([self.camera.commands.preset_set(preset)])

    async def go_home(self) -> Awaitable[str]:
        return await self._position(self.camera.commands.home())

    async def _position(self, packet: bytes) -> Awaitable[str]:
        (submitted,) = await self._send([packet], self.camera.move_timeout)
        if not submitted.done.done():
            self._positioning[submitted.request_id] = submitted
            submitted.done.add_done_callback(
                lambda _: self._positioning.pop(submitted.request_id, None))
        return _outcome(submitted)

    async def _send(self, packets: list[bytes],
                    completion_timeout: float | None = None) -> list[Submitted]:
        try:
            submitted = [self.camera.submit(p, completion_timeout=completion_timeout)
                         for p in packets]
        except CameraOffline:
            raise CameraUnavailable("the camera is offline") from None
        for item in submitted:
            try:
                await asyncio.shield(item.accepted)
            except ViscaCommandError as exc:
                raise CameraRefused(exc.code_name,
                                    f"the camera refused the command ({exc.code_name})") from None
            except MalformedReply:
                raise CameraRefused("MALFORMED_REPLY",
                                    "the camera sent an unreadable reply") from None
            except (CameraOffline, ViscaTimeout):
                raise CameraUnavailable("the camera did not acknowledge the command") from None
            except ViscaError as exc:
                raise CameraRefused(type(exc).__name__,
                                    "the camera did not accept the command") from None
        return submitted


async def _outcome(submitted: Submitted) -> str:
    """How a home or recall ended, as the audit trail words it."""
    try:
        await asyncio.shield(submitted.done)
    except ViscaCommandError as exc:
        return "cancelled" if exc.code == ErrorCode.CANCELLED else f"error: {exc.code_name}"
    except ViscaError as exc:
        return f"error: {type(exc).__name__}"
    return "completed"


def reading(sample: VitalSample) -> Reading:
    """A sample as clients see it: measurements only, never the patient identifier."""
    return Reading(vital=sample.vital, code=sample.code, code_system=sample.code_system,
                   name=sample.name, unit=sample.unit, loinc=sample.loinc,
                   status=sample.status, observed_at=sample.observed_at, value=sample.value,
                   values=sample.values, sample_rate=sample.sample_rate, text=sample.text,
                   reference_range=sample.reference_range, flags=sample.abnormal_flags)


def alarm_key(alarm: VitalAlarm) -> str:
    """One alarm condition of a device: a later report with the same key updates or clears it."""
    return f"{alarm.device_id}/{alarm.source}/{alarm.code}/{alarm.vital or alarm.name}"


def alarm_event(alarm: VitalAlarm, key: str | None = None) -> AlarmEvent:
    """An alarm as clients see it (the ``alarm`` event): never the patient identifier."""
    return AlarmEvent(id=key or alarm_key(alarm), device=alarm.device_id, source=alarm.source,
                      code=alarm.code, name=alarm.name, vital=alarm.vital,
                      priority=alarm.priority, state=alarm.state, text=alarm.text,
                      flags=alarm.flags, observed_at=alarm.observed_at)


class DeviceHub:
    """Owns every bedside device of this node and routes its data to the bound rooms."""

    def __init__(self, bus: RoomBus, bindings: Sequence[BedBinding], database_url: str,
                 hl7_address: tuple[str, int] | None = None, hl7_zone: str = "UTC",
                 camera_options: dict[str, Any] | None = None,
                 hl7_options: dict[str, Any] | None = None) -> None:
        self.bus = bus
        self.bindings = list(bindings)
        self.store = SampleStore(database_url)
        self.hl7_address = hl7_address
        self.hl7_zone = hl7_zone
        self.camera_options = camera_options or {}
        self.hl7_options = hl7_options or {}
        self.audit: PtzAudit | None = None
        self.listener: HL7Listener | None = None
        self.ptz_services: dict[str, PtzService] = {}
        self.cameras: dict[str, PtzCamera] = {}
        self.serial_monitors: list[SerialMonitor] = []
        self._rooms_by_device: dict[str, list[str]] = {}
        self._monitored_rooms: set[str] = set()
        self._latest: dict[str, dict[str, VitalSample]] = {}
        self._alarms: dict[str, dict[str, VitalAlarm]] = {}  # device -> key -> active alarm
        self._patients: dict[str, str] = {}  # device -> last PID-3 seen (never sent out)
        self._patient_changed: dict[str, PatientChanged] = {}  # room -> last change event
        for binding in self.bindings:
            if binding.monitor is not None:
                self._rooms_by_device.setdefault(binding.monitor.device_id, []).append(
                    binding.room)
                self._monitored_rooms.add(binding.room)

    # ----------------------------------------------------------------- life cycle

    async def start(self) -> None:
        await self.store.open()
        self.audit = PtzAudit(self.store.engine)
        for binding in self.bindings:
            if binding.camera is not None:
                await self._start_camera(binding.room, binding.camera)
            monitor = binding.monitor
            if monitor is not None and monitor.scheme in ("nonin", "cms50d"):
                reader = SerialMonitor(monitor.device, NONIN if monitor.scheme == "nonin"
                                       else CMS50D, self.store_and_route, monitor.device_id)
                await reader.start()
                self.serial_monitors.append(reader)
        if self.hl7_address is not None:
            host, port = self.hl7_address
            self.listener = HL7Listener(
                self.store,
                ListenerConfig(host=host, port=port, oru=OruConfig(default_zone=self._zone()),
                               **self.hl7_options),
                on_stored=self.route,
            )
            await self.listener.start()
            logger.info("HL7 listener on %s:%d", host, self.listener.port)

    def _zone(self) -> Any:
        try:
            return ZoneInfo(self.hl7_zone)
        except (ZoneInfoNotFoundError, ValueError):
            logger.warning("unknown time zone %r for HL7 times; using UTC", self.hl7_zone)
            return UTC

    async def _start_camera(self, room: str, url: str) -> None:
        service: PtzService | None = None

        def state_changed(online: bool) -> None:
            logger.info("[%s] PTZ camera %s", room, "online" if online else "offline")
            if service is not None:
                service.camera_state_changed()

        camera = camera_from_url(url, on_state_change=state_changed, name=f"ptz-{room}",
                                 **self.camera_options)
        try:
            await camera.open()
        except Exception as exc:  # offline at start: the driver keeps re-probing
            logger.warning("[%s] PTZ camera not reachable yet: %s", room, type(exc).__name__)
        service = PtzService(
            room, ViscaCameraPort(camera), audit=self.audit,
            on_state=lambda state: self._send(room, state),
            on_command=lambda command: self._send(room, command))
        self.cameras[room] = camera
        self.ptz_services[room] = service

    async def stop(self) -> None:
        if self.listener is not None:
            await self.listener.stop()
        for reader in self.serial_monitors:
            await reader.stop()
        for service in self.ptz_services.values():
            with contextlib.suppress(Exception):
                await service.close()
        for camera in self.cameras.values():
            with contextlib.suppress(Exception):
                await camera.close()
        if self.audit is not None:
            self.audit.close()
        await self.store.close()

    # ----------------------------------------------------------------- vitals

    async def store_and_route(self, samples: Sequence[VitalSample]) -> None:
        """The sink for serial monitors: store durably, then send to the rooms."""
        await self.store.store(samples)
        self.route(samples)

    def route(self, samples: Sequence[VitalSample], alarms: Sequence[VitalAlarm] = ()) -> None:
        """Send stored samples and alarms to every participant of the rooms bound to their
        device (the listener's ``on_stored``; older callers pass samples only).

        Before that: a PID-3 other than the last one seen from the device raises
        ``patient-changed`` (the previous patient's latest values and alarms are
        dropped); a normal value clears the device's OBX-8 alarm of that measurement.
        """
        self._check_patients(samples, alarms)
        by_device: dict[str, list[VitalSample]] = {}
        for sample in samples:
            by_device.setdefault(sample.device_id, []).append(sample)
        for device_id, device_samples in by_device.items():
            self._clear_recovered(device_id, device_samples)
            for room in self._rooms_by_device.get(device_id, ()):
                latest = self._latest.setdefault(room, {})
                for sample in device_samples:
                    if sample.vital and sample.values is None:
                        latest[sample.vital] = sample
                self._send(room, VitalsEvent(device_id,
                                             tuple(reading(s) for s in device_samples)))
        for alarm in alarms:
            self._alarm(alarm)

    def _check_patients(self, samples: Sequence[VitalSample],
                        alarms: Sequence[VitalAlarm]) -> None:
        seen: dict[str, tuple[str, datetime]] = {}
        items: list[VitalSample | VitalAlarm] = [*samples, *alarms]
        for item in items:
            if item.patient_id and item.device_id not in seen:
                seen[item.device_id] = (item.patient_id, item.observed_at)
        for device_id, (patient_id, at) in seen.items():
            previous = self._patients.get(device_id)
            self._patients[device_id] = patient_id
            if previous is None or previous == patient_id:
                continue
            logger.info("monitor %s: the patient changed (PID-3)", device_id)
            self._alarms.pop(device_id, None)
            event = PatientChanged(device_id, at)
            for room in self._rooms_by_device.get(device_id, ()):
                self._latest.pop(room, None)
                self._patient_changed[room] = event
                self._send(room, event)

    def _clear_recovered(self, device_id: str, samples: Sequence[VitalSample]) -> None:
        """A measurement back to a normal value clears its OBX-8 alarm."""
        active = self._alarms.get(device_id)
        if not active:
            return
        for sample in samples:
            if sample.value is None or flag_priority(sample.abnormal_flags) is not None:
                continue  # no number (e.g. probe off) is not a recovery
            for alarm in list(active.values()):
                if alarm.source == "obx-8" and alarm.code == sample.code and \
                        alarm.vital == sample.vital:
                    cleared = replace(alarm, state="cleared", observed_at=sample.observed_at,
                                      flags=sample.abnormal_flags)
                    self._alarm(cleared)

    def _alarm(self, alarm: VitalAlarm) -> None:
        """Keep the device's active alarms; send what is new or changed to its rooms."""
        key = alarm_key(alarm)
        active = self._alarms.setdefault(alarm.device_id, {})
        known = active.get(key)
        if alarm.state == "cleared":
            if active.pop(key, None) is None:
                return  # nothing to clear
        else:
            active[key] = alarm
            if known is not None and (known.priority, known.flags, known.text) == (
                    alarm.priority, alarm.flags, alarm.text):
                return  # the same alarm, still on: nothing new for the rooms
        for room in self._rooms_by_device.get(alarm.device_id, ()):
            self._send(room, alarm_event(alarm, key))

    def _send(self, room_name: str, payload: Payload) -> None:
        """An application event to the room, serialised by its contract at this edge."""
        self._broadcast(room_name, payload.KIND, payload.to_json())

    def _broadcast(self, room_name: str, kind: str, body: dict[str, Any]) -> None:
        self.bus.publish(room_name, kind, body)

    # ----------------------------------------------------------------- RoomServices

    def room_state(self, room: str) -> dict[str, Any]:
        state: dict[str, Any] = {}
        label = next((b.label for b in self.bindings if b.room == room and b.label), None)
        if label is not None:
            state["bed"] = {"label": label}
        service = self.ptz_services.get(room)
        if service is not None:
            state["ptz"] = service.state().to_json()
        if room in self._monitored_rooms:
            state["vitals"] = [reading(s).to_json()
                               for s in self._latest.get(room, {}).values()]
            devices = [d for d, rooms in self._rooms_by_device.items() if room in rooms]
            state["alarms"] = [alarm_event(alarm, key).to_json() for device in devices
                               for key, alarm in self._alarms.get(device, {}).items()]
            if room in self._patient_changed:
                state["patientChanged"] = self._patient_changed[room].to_json()
        return state

    async def ptz(self, caller: Caller, request: PtzRequest) -> None:
        service = self.ptz_services.get(caller.room)
        if service is None:
            raise ServiceError("ptz-unavailable", "no PTZ camera is bound to this room")
        who = Operator(caller.participant_id, caller.name, caller.role, caller.subject)
        try:
            await service.request(who, request)
        except PtzDenied as exc:
            raise ServiceError("ptz-denied", exc.message) from None
        except CameraUnavailable as exc:
            raise ServiceError("camera-offline", exc.message) from None
        except CameraRefused as exc:
            raise ServiceError("camera-error", exc.message) from None

    def participant_left(self, room: str, participant_id: str) -> None:
        service = self.ptz_services.get(room)
        if service is not None:
            service.participant_left(participant_id)

