"""Admin: people (create with a set-password link, change, disable, reset), hospitals and
departments, and machines' API tokens."""

from __future__ import annotations

from aiohttp import web

from consult_api import accounts, directory
from consult_api.account_schemas import (
    parse_api_token,
    parse_department,
    parse_new_user,
    parse_user_change,
    query_id,
    query_role,
    query_text,
)
from consult_api.auth import require_role
from consult_api.http import CLOCK, PEPPER, actor_of, in_db, json_body, path_id
from consult_api.workflow import Role


async def create_user(request: web.Request) -> web.Response:
    """201 ``{"id","set_password_url","link_expires_at"}`` (the link only with a username)."""
    actor = actor_of(request)
    data, username = parse_new_user(await json_body(request))
    now, pepper = request.app[CLOCK](), request.app[PEPPER]
    result = await in_db(request, lambda s: directory.create_user(s, pepper, actor, data,
                                                                 username, now))
    return web.json_response(result, status=201)


async def list_users(request: web.Request) -> web.Response:
    actor = actor_of(request)
    hospital_id = query_id(request.query.get("hospital_id"), "hospital_id")
    role = query_role(request.query.get("role"))
    text = query_text(request.query.get("q"))
    found = await in_db(request, lambda s: directory.list_users(s, actor, hospital_id, role,
                                                               text))
    return web.json_response({"users": found})


async def change_user(request: web.Request) -> web.Response:
    actor = actor_of(request)
    user_id = path_id(request, "user")
    change = parse_user_change(await json_body(request))
    now = request.app[CLOCK]()
    return web.json_response(await in_db(request, lambda s: directory.change_user(
        s, actor, user_id, change, now)))


async def reset_user(request: web.Request) -> web.Response:
    actor = actor_of(request)
    user_id = path_id(request, "user")
    now, pepper = request.app[CLOCK](), request.app[PEPPER]
    return web.json_response(await in_db(request, lambda s: directory.reset_user(
        s, pepper, actor, user_id, now)))


async def list_hospitals(request: web.Request) -> web.Response:
    actor_of(request)
    return web.json_response({"hospitals": await in_db(request, directory.list_hospitals)})


async def list_departments(request: web.Request) -> web.Response:
    actor_of(request)
    hospital_id = query_id(request.query.get("hospital_id"), "hospital_id")
    found = await in_db(request, lambda s: directory.list_departments(s, hospital_id))
    return web.json_response({"departments": found})


async def create_department(request: web.Request) -> web.Response:
    actor = actor_of(request)
    hospital_id, name = parse_department(await json_body(request))
    new_id = await in_db(request, lambda s: directory.create_department(s, actor, hospital_id,
                                                                       name))
    return web.json_response({"id": new_id}, status=201)


async def issue_api_token(request: web.Request) -> web.Response:
    """201 ``{"id","token","expires_at"}``: the token is shown only here."""
    actor = actor_of(request)
    require_role(actor, Role.ADMIN)
    user_id, label, ttl = parse_api_token(await json_body(request))
    now, pepper = request.app[CLOCK](), request.app[PEPPER]
    token_id, token, expires = await in_db(request, lambda s: accounts.issue_api_token(
        s, pepper, user_id, label, ttl, now))
    return web.json_response({"id": token_id, "token": token,
                              "expires_at": accounts.utc(expires).isoformat()}, status=201)


async def list_api_tokens(request: web.Request) -> web.Response:
    actor = actor_of(request)
    return web.json_response({"tokens": await in_db(
        request, lambda s: accounts.list_api_tokens(s, actor))})


async def revoke_api_token(request: web.Request) -> web.Response:
    actor = actor_of(request)
    token_id = path_id(request, "API token")
    now = request.app[CLOCK]()
    await in_db(request, lambda s: accounts.revoke_api_token(s, actor, token_id, now))
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/users", create_user)
    app.router.add_get("/api/v1/users", list_users)
    app.router.add_patch("/api/v1/users/{id}", change_user)
    app.router.add_post("/api/v1/users/{id}/reset", reset_user)
    app.router.add_get("/api/v1/hospitals", list_hospitals)
    app.router.add_get("/api/v1/departments", list_departments)
    app.router.add_post("/api/v1/departments", create_department)
    app.router.add_post("/api/v1/api-tokens", issue_api_token)
    app.router.add_get("/api/v1/api-tokens", list_api_tokens)
    app.router.add_delete("/api/v1/api-tokens/{id}", revoke_api_token)
