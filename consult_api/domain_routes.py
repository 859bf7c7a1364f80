"""HTTP handlers of the scheduling and referral area: experts' slots and the appointments
calendar, two-way referrals, notifications; and the signed webhooks' dispatcher."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web
from sqlalchemy.orm import Session

from consult_api import appointments, notifications, referrals, webhooks
from consult_api.http import CLOCK, SESSIONS, actor_of, in_db, json_body, path_id
from consult_api.schemas import consultation_summary, parse_flag

# --- slots and appointments --------------------------------------------------------------------

async def list_slots(request: web.Request) -> web.Response:
    actor = actor_of(request)
    expert_id = path_id(request, "expert")
    window = appointments.parse_range(request.query, request.app[CLOCK]())
    found = await in_db(request, lambda s: appointments.list_slots(s, actor, expert_id, window))
    return web.json_response({"slots": found})


async def create_slot(request: web.Request) -> web.Response:
    actor = actor_of(request)
    expert_id = path_id(request, "expert")
    data = appointments.parse_slot(await json_body(request))
    now = request.app[CLOCK]()
    result = await in_db(request, lambda s: appointments.create_slot(s, actor, expert_id,
                                                                     data, now))
    return web.json_response(result, status=201)


async def delete_slot(request: web.Request) -> web.Response:
    actor = actor_of(request)
    slot_id = path_id(request, "slot")
    await in_db(request, lambda s: appointments.delete_slot(s, actor, slot_id))
    return web.Response(status=204)


async def post_appointment(request: web.Request) -> web.Response:
    actor = actor_of(request)
    consultation_id = path_id(request)
    slot_id = appointments.parse_appointment(await json_body(request))
    now = request.app[CLOCK]()
    result = await in_db(request, lambda s: consultation_summary(
        appointments.assign(s, actor, consultation_id, slot_id, now)))
    return web.json_response(result)


async def list_appointments(request: web.Request) -> web.Response:
    actor = actor_of(request)
    now = request.app[CLOCK]()
    window = appointments.parse_range(request.query, now)
    expert_id = appointments.parse_expert_filter(request.query)
    found = await in_db(request, lambda s: appointments.calendar(s, actor, window, expert_id,
                                                                 now))
    return web.json_response({"appointments": found})


# --- referrals ---------------------------------------------------------------------------------

async def create_referral(request: web.Request) -> web.Response:
    actor = actor_of(request)
    data = referrals.parse_referral(await json_body(request))
    now = request.app[CLOCK]()
    result = await in_db(request, lambda s: referrals.create(s, actor, data, now))
    return web.json_response(result, status=201)


async def list_referrals(request: web.Request) -> web.Response:
    actor = actor_of(request)
    direction, state = referrals.parse_filter(request.query)
    now = request.app[CLOCK]()
    found = await in_db(request, lambda s: referrals.listing(s, actor, direction, state, now))
    return web.json_response({"referrals": found})


async def get_referral(request: web.Request) -> web.Response:
    actor = actor_of(request)
    referral_id = path_id(request, "referral")
    now = request.app[CLOCK]()
    return web.json_response(await in_db(request, lambda s: referrals.read(s, actor,
                                                                          referral_id, now)))


async def post_referral_transition(request: web.Request) -> web.Response:
    actor = actor_of(request)
    referral_id = path_id(request, "referral")
    data = referrals.parse_move(await json_body(request))
    now = request.app[CLOCK]()
    return web.json_response(await in_db(request, lambda s: referrals.move(s, actor,
                                                                          referral_id, data,
                                                                          now)))


async def post_referral_note(request: web.Request) -> web.Response:
    actor = actor_of(request)
    referral_id = path_id(request, "referral")
    text = referrals.parse_note(await json_body(request))
    now = request.app[CLOCK]()
    result = await in_db(request, lambda s: referrals.add_note(s, actor, referral_id, text,
                                                               now))
    return web.json_response(result, status=201)


# --- notifications -----------------------------------------------------------------------------

async def list_notifications(request: web.Request) -> web.Response:
    actor = actor_of(request)
    unread_only = parse_flag(request.query, "unread")
    return web.json_response(await in_db(request, lambda s: notifications.listing(
        s, actor, unread_only=unread_only)))


async def read_notification(request: web.Request) -> web.Response:
    actor = actor_of(request)
    notification_id = path_id(request, "notification")
    now = request.app[CLOCK]()
    return web.json_response(await in_db(request, lambda s: notifications.mark_read(
        s, actor, notification_id, now)))


async def read_all_notifications(request: web.Request) -> web.Response:
    actor = actor_of(request)
    now = request.app[CLOCK]()

    def work(s: Session) -> dict[str, Any]:
        return {"marked": notifications.mark_all_read(s, actor, now), "unread": 0}

    return web.json_response(await in_db(request, work))


def add_routes(app: web.Application, targets: Sequence[webhooks.WebhookTarget] = (),
               retry: webhooks.RetryPolicy | None = None) -> None:
    """Register this area's routes, and the webhooks (delivered after each commit)."""
    app.router.add_get("/api/v1/experts/{id}/slots", list_slots)
    app.router.add_post("/api/v1/experts/{id}/slots", create_slot)
    app.router.add_delete("/api/v1/slots/{id}", delete_slot)
    app.router.add_post("/api/v1/consultations/{id}/appointment", post_appointment)
    app.router.add_get("/api/v1/appointments", list_appointments)
    app.router.add_post("/api/v1/referrals", create_referral)
    app.router.add_get("/api/v1/referrals", list_referrals)
    app.router.add_get("/api/v1/referrals/{id}", get_referral)
    app.router.add_post("/api/v1/referrals/{id}/transitions", post_referral_transition)
    app.router.add_post("/api/v1/referrals/{id}/notes", post_referral_note)
    app.router.add_get("/api/v1/notifications", list_notifications)
    app.router.add_post("/api/v1/notifications/read-all", read_all_notifications)
    app.router.add_post("/api/v1/notifications/{id}/read", read_notification)
    webhooks.configure(app, targets, retry)
    webhooks.install(app, SESSIONS)
