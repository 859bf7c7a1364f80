"""Records service under read load: 50 concurrent signed-in clients listing and reading
consultations on PostgreSQL, with the audit on.

    python -m benchmarks.records_read [--clients 50] [--seconds 30] [--rate R] [--check]

One run, on this machine:

1. A scratch database ``huizhen_bench_<random>`` on the PostgreSQL server (``--postgres``,
   default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``: the server and the
   database to connect to for CREATE/DROP DATABASE), migrated and seeded with a province:
   20 hospitals (2 provincial, 18 county), 200 county doctors, 30 experts, 5
   coordinators, 2,000 consultations in every state with their transitions, materials
   metadata (no files) and published reports. Dropped at the end.
2. The real records service, ``python -m huizhen records``, in its own process on a free
   loopback port, configured through its environment only (a HUIZHEN_CONFIG of the caller
   does not apply).
3. A load process (asyncio + aiohttp): ``--clients`` distinct people (county doctors,
   experts, coordinators), each with its own cookie jar and connection, signs in with
   ``POST /api/v1/session`` (password checked by argon2, a real session cookie). Then:

   - baseline: every client loops on ``GET /api/v1/session`` (the cookie resolved to the
     users row, the person read back; no patient data, no audit) for
     ``--baseline-seconds``;
   - main: every client loops on ``GET /api/v1/consultations`` (list, audited: one row
     with the ids returned), ``GET /api/v1/consultations/{id}`` of one it may see (read,
     audited), and every ``--extra-every``-th cycle that consultation's materials and
     reports lists (both audited), for ``--seconds``.

   Closed loop by default (each client waits for its answer, no think time: the worst
   case); ``--rate R`` makes it open loop (R requests/s over all clients, Poisson
   arrivals, latency from the scheduled send time, so a slow server is not hidden by
   fewer requests).

Reported per operation: requests in the window, throughput, p50/p90/p99/max latency (ms),
errors (anything but a 200, and connection failures); the ratio of each operation's
p50/p99 to the baseline's; the records service process's CPU (psutil, user + system,
every thread) per request; and the audit: rows written per action during each phase,
against the requests the clients got answered (whole phase, warm-up included: every
audited request must have its row, and the baseline none).

A report: the exit status is 0 whatever the numbers (``--check`` makes it 1 when list or
read p99 is above 100 ms, any request failed, or the audit does not match). Progress on
stderr; the JSON to ``benchmarks/results/records_read-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa

from benchmarks.scratch_db import scratch_database

HOST = "127.0.0.1"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_P99_MS = 100.0
RESULTS = Path(__file__).with_name("results")

# Operations and the audit action each one writes (None: not audited).
LIST, READ, MATERIALS, REPORTS, SESSION = ("list", "read", "materials", "reports", "session")
AUDIT_ACTION = {LIST: "consultation.list", READ: "consultation.read",
                MATERIALS: "material.list", REPORTS: "report.read", SESSION: None}
MAIN_OPS = (LIST, READ, MATERIALS, REPORTS)

STATE_MIX = (("requested", 15), ("accepted", 10), ("scheduled", 15), ("in_session", 2),
             ("reported", 18), ("closed", 32), ("rejected", 4), ("cancelled", 4))
PATHS = {  # the transitions that lead to each state
    "requested": [], "accepted": ["accepted"], "scheduled": ["accepted", "scheduled"],
    "in_session": ["accepted", "scheduled", "in_session"],
    "reported": ["accepted", "scheduled", "in_session", "reported"],
    "closed": ["accepted", "scheduled", "in_session", "reported", "closed"],
    "rejected": ["rejected"], "cancelled": ["cancelled"],
}
SPECIALTIES = ("心血管内科", "神经内科", "呼吸内科", "消化内科", "肾内科", "内分泌科",
               "骨科", "普外科", "儿科", "影像科")
QUESTIONS = (
    "患者反复胸闷气短三个月，近一周加重，心电图提示ST段压低，请协助评估是否需要冠脉造影。",
    "突发左侧肢体无力四小时，头颅CT未见出血，请协助判断溶栓指征及后续治疗方案。",
    "慢性咳嗽伴低热两周，胸部CT示右上肺结节影，请协助鉴别诊断并给出进一步检查建议。",
    "上腹痛伴黑便两天，血红蛋白进行性下降，请协助评估内镜检查时机及输血指征。",
    "糖尿病史十年，近期肌酐升高，尿蛋白阳性，请协助调整降糖及肾脏保护方案。",
)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Person:
    user_id: int
    username: str
    role: str
    hospital_id: int


@dataclass
class Province:
    hospitals: int = 0
    doctors: int = 0
    experts: int = 0
    coordinators: int = 0
    consultations: int = 0
    transitions: int = 0
    materials: int = 0
    reports: int = 0
    states: dict[str, int] = field(default_factory=dict)
    clients: list[Person] = field(default_factory=list)


def _ids(session: Any, model: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Insert many rows (one ORM bulk INSERT), return their ids in the order given."""
    if not rows:
        return []
    result = session.execute(sa.insert(model).returning(model.id,
                                                        sort_by_parameter_order=True), rows)
    return [row[0] for row in result]


def seed_province(url: str, clients: int, password_hash: str, consultations: int,
                  rng: random.Random) -> Province:
    """Bulk-insert a province; ``clients`` people (3/5 county doctors, 3/10 experts, up to 5
    coordinators) get usernames ``bench-<n>`` and ``password_hash``."""
    from consult_api.db import make_engine, make_sessionmaker
    from consult_api.models import (
        Consultation,
        ConsultationTransition,
        Department,
        ExpertProfile,
        Hospital,
        Material,
        Report,
        User,
    )

    engine = make_engine(url)
    now = datetime.now(UTC)
    out = Province()
    try:
        with make_sessionmaker(engine)() as session, session.begin():
            province_ids = _ids(session, Hospital, [
                {"name": f"省第{i + 1}人民医院", "level": "province"} for i in range(2)])
            county_ids = _ids(session, Hospital, [
                {"name": f"第{i + 1}县人民医院", "level": "county"} for i in range(18)])
            out.hospitals = len(province_ids) + len(county_ids)
            departments = _ids(session, Department, [
                {"hospital_id": h, "name": s} for h in province_ids for s in SPECIALTIES])
            users: list[dict[str, Any]] = []
            for i in range(200):
                users.append({"hospital_id": county_ids[i % len(county_ids)],
                              "display_name": f"县医生{i + 1:03d}", "role": "requesting_doctor"})
            for i in range(30):
                users.append({"hospital_id": province_ids[i % 2],
                              "department_id": departments[i % len(departments)],
                              "display_name": f"专家{i + 1:02d}", "role": "expert"})
            for i in range(5):
                users.append({"hospital_id": province_ids[0],
                              "display_name": f"协调员{i + 1}", "role": "coordinator"})
            users.append({"hospital_id": province_ids[0], "display_name": "管理员",
                          "role": "admin"})
            for n, row in enumerate(users):
                row["username"] = f"user-{n + 1:04d}"
                row.setdefault("department_id", None)
                row["language"] = "zh-CN"
            user_ids = _ids(session, User, users)
            doctors = [(u, r["hospital_id"]) for u, r in zip(user_ids, users, strict=True)
                       if r["role"] == "requesting_doctor"]
            experts = [u for u, r in zip(user_ids, users, strict=True) if r["role"] == "expert"]
            coordinators = [u for u, r in zip(user_ids, users, strict=True)
                            if r["role"] == "coordinator"]
            out.doctors, out.experts, out.coordinators = (len(doctors), len(experts),
                                                          len(coordinators))
            session.execute(sa.insert(ExpertProfile), [
                {"user_id": e, "specialty": SPECIALTIES[i % len(SPECIALTIES)],
                 "availability": "周一至周五上午"} for i, e in enumerate(experts)])

            # Consultations: every state, spread over the county hospitals and the experts.
            states = [s for s, weight in STATE_MIX for _ in range(weight)]
            rows: list[dict[str, Any]] = []
            for i in range(consultations):
                doctor, hospital = doctors[rng.randrange(len(doctors))]
                state = states[i % len(states)]
                created = now - timedelta(days=90) + timedelta(minutes=60 * i % (90 * 24 * 60))
                expert = (rng.choice(experts) if state != "requested" or rng.random() < 0.5
                          else None)
                scheduled = state in ("scheduled", "in_session", "reported", "closed")
                start = created + timedelta(days=2)
                rows.append({
                    "requesting_hospital_id": hospital, "requesting_doctor_id": doctor,
                    "expert_id": expert, "patient_name": f"测试患者{i + 1:05d}",
                    "patient_sex": "female" if i % 2 else "male", "patient_age": 18 + i % 70,
                    "patient_record_number": f"BENCH{i + 1:07d}",
                    "patient_summary": "既往高血压病史五年，规律服药。" * 3,
                    "question": QUESTIONS[i % len(QUESTIONS)],
                    "urgency": ("routine", "routine", "urgent", "emergency")[i % 4],
                    "type": "interactive" if i % 5 else "offline", "state": state,
                    "slot_start": start if scheduled else None,
                    "slot_end": start + timedelta(minutes=30) if scheduled else None,
                    "room_name": f"consult-bench-{i + 1}" if scheduled else None,
                    "created_at": created, "updated_at": created + timedelta(days=3)})
            consultation_ids = _ids(session, Consultation, rows)
            out.consultations = len(consultation_ids)
            out.states = dict(Counter(r["state"] for r in rows))
            transitions: list[dict[str, Any]] = []
            materials: list[dict[str, Any]] = []
            reports: list[dict[str, Any]] = []
            for cid, row in zip(consultation_ids, rows, strict=True):
                previous, at = None, row["created_at"]
                for to in ["requested", *PATHS[row["state"]]]:
                    actor = (row["requesting_doctor_id"] if to in ("requested", "cancelled",
                                                                   "closed")
                             else coordinators[0] if to == "scheduled" else row["expert_id"])
                    transitions.append({"consultation_id": cid, "from_state": previous,
                                        "to_state": to, "actor_id": actor, "at": at,
                                        "note": ""})
                    previous, at = to, at + timedelta(hours=6)
                for m in range(rng.choice((0, 1, 1, 2, 3))):
                    kind = ("jpeg", "pdf", "dicom")[m % 3]
                    digest = secrets.token_hex(32)
                    materials.append({
                        "consultation_id": cid, "uploader_id": row["requesting_doctor_id"],
                        "kind": kind, "filename": f"检查资料{m + 1}.{kind[:3]}",
                        "size": 200_000 + m * 1000, "sha256": digest,
                        "stored_path": f"materials/{digest[:2]}/{digest}",
                        "created_at": row["created_at"],
                        "modality": "CT" if kind == "dicom" else None})
                if row["state"] in ("reported", "closed"):
                    reports.append({
                        "consultation_id": cid, "author_id": row["expert_id"], "version": 1,
                        "status": "published",
                        "sections": {"findings": "影像学检查提示轻度异常。",
                                     "advice": "建议门诊随访，一个月后复查。"},
                        "diagnosis": "待进一步明确", "created_at": at, "updated_at": at,
                        "published_at": at})
            session.execute(sa.insert(ConsultationTransition), transitions)
            if materials:
                session.execute(sa.insert(Material), materials)
            if reports:
                session.execute(sa.insert(Report), reports)
            out.transitions, out.materials, out.reports = (len(transitions), len(materials),
                                                           len(reports))

            # The benchmark's people: distinct users of every role, with a password.
            n_coord = min(len(coordinators), max(1, clients // 10))
            n_expert = min(len(experts), max(1, (clients * 3) // 10))
            n_doctor = clients - n_coord - n_expert
            by_hospital: dict[int, list[int]] = {}
            for d, h in doctors:
                by_hospital.setdefault(h, []).append(d)
            spread = [d for group in zip(*by_hospital.values(), strict=False) for d in group]
            chosen = ([(d, "requesting_doctor") for d in spread[:n_doctor]]
                      + [(e, "expert") for e in experts[:n_expert]]
                      + [(c, "coordinator") for c in coordinators[:n_coord]])
            hospital_of = dict(zip(user_ids, (r["hospital_id"] for r in users), strict=True))
            for n, (user_id, role) in enumerate(chosen):
                username = f"bench-{n + 1:03d}"
                session.execute(sa.update(User).where(User.id == user_id)
                                .values(username=username, password_hash=password_hash))
                out.clients.append(Person(user_id, username, role, hospital_of[user_id]))
    finally:
        engine.dispose()
    return out


def audit_counts(url: str) -> tuple[int, dict[str, int], int]:
    """(highest audit id, rows per "action outcome", audit_objects rows) now."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            top = connection.exec_driver_sql("SELECT coalesce(max(id), 0) FROM audit_log")
            high = int(top.scalar_one())
            rows = connection.exec_driver_sql(
                "SELECT action, outcome, count(*) FROM audit_log GROUP BY action, outcome")
            counts = {f"{a} {o}": int(n) for a, o, n in rows}
            objects = int(connection.exec_driver_sql(
                "SELECT count(*) FROM audit_objects").scalar_one())
            return high, counts, objects
    finally:
        engine.dispose()


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in sorted(after)
            if after[k] != before.get(k, 0)}


# --- the records service --------------------------------------------------------------------

class Service:
    """``python -m huizhen records`` on a free loopback port, environment explicit."""

    def __init__(self, url: str, data_dir: str, log_path: Path) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("HUIZHEN_") and k != "CONSULT_TEST_POSTGRES_URL"}
        env.update({
            "HUIZHEN_RECORDS_HOST": HOST, "HUIZHEN_RECORDS_PORT": str(self.port),
            "HUIZHEN_RECORDS_DATABASE_URL": url,
            "HUIZHEN_RECORDS_TOKEN_SECRET": secrets.token_urlsafe(32),
            "HUIZHEN_AUTH_TOKEN_SECRET": secrets.token_urlsafe(32),
            "HUIZHEN_STORAGE_DATA_DIR": data_dir, "PYTHONUNBUFFERED": "1",
        })
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "huizhen", "--log-level", "warning", "records"],
            env=env, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parents[1])  # this tree's huizhen and consult_api

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if b"listening on" in line:
                return
        raise RuntimeError(f"the records service did not start (see {self.log_path})")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


# --- the load process -----------------------------------------------------------------------

@dataclass
class PhaseResult:
    """One phase of the load process: latencies (s) in the window, per operation; every
    answered request of the phase per operation (warm-up and drain included, for the
    audit); errors per operation and kind."""

    window_s: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=dict)
    answered: dict[str, int] = field(default_factory=dict)
    errors: dict[str, dict[str, int]] = field(default_factory=dict)
    window_errors: dict[str, int] = field(default_factory=dict)
    list_kinds: dict[str, list[float]] = field(default_factory=dict)
    """List latencies (s) in the window by who lists what (the workspace's own calls)."""
    list_items: dict[str, int] = field(default_factory=dict)
    """Consultations those lists returned, in all."""


@dataclass
class LoadConfig:
    port: int
    people: list[dict[str, Any]]
    password: str
    seconds: float
    baseline_seconds: float
    warmup: float
    rate: float | None
    extra_every: int
    seed: int
    full_lists: bool = True


class Client:
    """One signed-in person: own cookie jar, own connection."""

    def __init__(self, base: str, person: dict[str, Any], rng: random.Random) -> None:
        import aiohttp

        self.base = base
        self.person = person
        self.rng = rng
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=60))
        self.visible: list[int] = []
        self.cycle = 0

    async def sign_in(self, password: str) -> None:
        async with self.http.post(self.base + "/api/v1/session", json={
                "username": self.person["username"], "password": password}) as response:
            body = await response.json()
            if response.status != 200:
                raise RuntimeError(f"sign-in of {self.person['username']} answered "
                                   f"{response.status} {body.get('code')}")

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.base + path) as response:
            body = await response.json()
            return response.status, body

    async def close(self) -> None:
        await self.http.close()


async def _load(config: LoadConfig, pipe: Connection) -> None:
    base = f"http://{HOST}:{config.port}"
    master = random.Random(config.seed)
    clients = [Client(base, p, random.Random(master.random())) for p in config.people]
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        # Sign-in is argon2 on the server: a few at a time, as people arrive.
        gate = asyncio.Semaphore(4)

        async def sign_in(c: Client) -> None:
            async with gate:
                await c.sign_in(config.password)

        await asyncio.gather(*(sign_in(c) for c in clients))
        log(f"load: {len(clients)} clients signed in in {loop.time() - started:.1f} s")
        # Each client's first list (not timed) gives the ids it may read.
        for c in clients:
            status, body = await c.get("/api/v1/consultations?limit=200")
            if status == 200:
                c.visible = [item["id"] for item in body["consultations"]]
        initial_lists = sum(1 for c in clients)
        pipe.send({"event": "ready", "initial_lists": initial_lists,
                   "visible": {c.person["username"]: len(c.visible) for c in clients}})
        for phase, seconds in (("baseline", config.baseline_seconds),
                               ("main", config.seconds)):
            assert pipe.recv() == "go"
            result = await _phase(clients, phase, seconds, config, pipe)
            pipe.send({"event": "done", "phase": phase, "result": asdict(result)})
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def _phase(clients: list[Client], phase: str, seconds: float, config: LoadConfig,
                 pipe: Connection) -> PhaseResult:
    loop = asyncio.get_running_loop()
    window_start = loop.time() + config.warmup
    window_end = window_start + seconds
    result = PhaseResult(window_s=seconds)
    ops = (SESSION,) if phase == "baseline" else MAIN_OPS
    for op in ops:
        result.latencies[op], result.answered[op] = [], 0
        result.errors[op], result.window_errors[op] = {}, 0

    async def marks() -> None:
        await asyncio.sleep(max(0.0, window_start - loop.time()))
        pipe.send({"event": "start", "phase": phase})
        await asyncio.sleep(max(0.0, window_end - loop.time()))
        pipe.send({"event": "end", "phase": phase})

    def next_ops(c: Client) -> list[tuple[str, str]]:
        """The client's next cycle: (operation, path)."""
        if phase == "baseline":
            return [(SESSION, "/api/v1/session")]
        c.cycle += 1
        steps = [(LIST, list_path(c.person["role"], c.cycle, config.full_lists))]
        if c.visible:
            cid = c.rng.choice(c.visible)
            steps.append((READ, f"/api/v1/consultations/{cid}"))
            if c.cycle % config.extra_every == 0:
                steps.append((MATERIALS, f"/api/v1/consultations/{cid}/materials"))
                steps.append((REPORTS, f"/api/v1/consultations/{cid}/reports"))
        return steps

    async def one(c: Client, op: str, path: str, began: float) -> None:
        kind_of_list = list_kind(c.person["role"], path) if op == LIST else None
        try:
            status, body = await c.get(path)
            kind = None if status == 200 else f"{status} {body.get('code', '')}".strip()
        except Exception as exc:  # a connection failure or a timeout is an error too
            status, body, kind = 0, None, type(exc).__name__
        done = loop.time()
        if kind is None:
            result.answered[op] += 1
            if op == LIST:
                c.visible = [item["id"] for item in body["consultations"]]
        else:
            result.errors[op][kind] = result.errors[op].get(kind, 0) + 1
        if window_start <= done < window_end:
            if kind is None:
                result.latencies[op].append(done - began)
                if kind_of_list is not None:
                    result.list_kinds.setdefault(kind_of_list, []).append(done - began)
                    result.list_items[kind_of_list] = (result.list_items.get(kind_of_list, 0)
                                                       + len(body["consultations"]))
            else:
                result.window_errors[op] += 1

    async def closed_loop(c: Client) -> None:
        while loop.time() < window_end:
            for op, path in next_ops(c):
                await one(c, op, path, loop.time())

    async def open_loop(c: Client, rate: float) -> None:
        """Poisson arrivals at ``rate``/s; each arrival runs the client's next step."""
        pending: set[asyncio.Task[None]] = set()
        queue: list[tuple[str, str]] = []
        due = loop.time() + c.rng.expovariate(rate)
        while due < window_end:
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not queue:
                queue = next_ops(c)
            op, path = queue.pop(0)
            task = asyncio.create_task(one(c, op, path, due))
            pending.add(task)
            task.add_done_callback(pending.discard)
            due += c.rng.expovariate(rate)
        if pending:
            await asyncio.gather(*pending)

    if config.rate:
        per_client = config.rate / len(clients)
        workers = [open_loop(c, per_client) for c in clients]
    else:
        workers = [closed_loop(c) for c in clients]
    await asyncio.gather(marks(), *workers)
    return result


def list_path(role: str, cycle: int, full_lists: bool = True) -> str:
    """The list a person's workspace page asks for (web_client/workspace/consultations.js,
    coordinator.js): a county doctor the first page of their hospital's consultations
    (``limit=50``), an expert their worklist (``?mine=1&limit=200``), a coordinator the
    incoming queue (``?state=requested&limit=200``) and, every other time, the first page of
    every consultation (the "all consultations" page; never with ``full_lists`` False)."""
    if role == "expert":
        return "/api/v1/consultations?mine=1&limit=200"
    if role == "coordinator" and (cycle % 2 or not full_lists):
        return "/api/v1/consultations?state=requested&limit=200"
    return "/api/v1/consultations?limit=50"


def list_kind(role: str, path: str) -> str:
    query = path.partition("?")[2]
    return f"{role} {'?' + query if query else 'all visible'}"


def _load_process(config: LoadConfig, pipe: Connection) -> None:
    try:
        asyncio.run(_load(config, pipe))
    except Exception as exc:
        pipe.send({"event": "failed", "message": f"{type(exc).__name__}: {exc}"})
    finally:
        pipe.close()


# --- the orchestrator -----------------------------------------------------------------------

@dataclass
class OpStats:
    op: str
    requests: int
    per_s: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    errors: int
    answered_in_phase: int
    audit_action: str | None
    audit_rows: int | None


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000.0, 2)


def op_stats(op: str, result: PhaseResult, audit: dict[str, int]) -> OpStats:
    lat = result.latencies[op]
    action = AUDIT_ACTION[op]
    return OpStats(
        op=op, requests=len(lat), per_s=len(lat) / result.window_s,
        p50_ms=_ms(percentile(lat, 0.5)), p90_ms=_ms(percentile(lat, 0.9)),
        p99_ms=_ms(percentile(lat, 0.99)), max_ms=_ms(max(lat) if lat else None),
        errors=sum(result.errors[op].values()), answered_in_phase=result.answered[op],
        audit_action=action,
        audit_rows=None if action is None else audit.get(f"{action} ok", 0))


@dataclass
class Cpu:
    server_s: float = 0.0
    loader_s: float = 0.0
    postgres_s: float = 0.0
    machine_busy_s: float = 0.0
    wall_s: float = 0.0


def _postgres_cpu() -> dict[int, float]:
    """User + system seconds of every ``postgres`` process we can read, by pid (the whole
    server: other users of it count too)."""
    found: dict[int, float] = {}
    for process in psutil.process_iter(["name"]):
        if process.info.get("name") == "postgres":
            with suppress(psutil.Error):
                times = process.cpu_times()
                found[process.pid] = times.user + times.system
    return found


class CpuWindow:
    def __init__(self, pid: int, loader_pid: int) -> None:
        self.process = psutil.Process(pid)
        self.loader = psutil.Process(loader_pid)
        self.start: tuple[float, ...] = ()
        self.postgres: dict[int, float] = {}

    def _now(self) -> tuple[float, ...]:
        own, loader = self.process.cpu_times(), self.loader.cpu_times()
        machine = psutil.cpu_times()
        busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return (own.user + own.system, loader.user + loader.system, busy, time.monotonic())

    def begin(self) -> None:
        self.start, self.postgres = self._now(), _postgres_cpu()

    def end(self) -> Cpu:
        """Postgres: processes alive at the end, less what they had used at the start (the
        backends that ended inside the window are not counted)."""
        postgres = sum(t - self.postgres.get(pid, 0.0) for pid, t in _postgres_cpu().items())
        server, loader, busy, wall = (b - a for a, b in zip(self.start, self._now(),
                                                            strict=True))
        return Cpu(server_s=server, loader_s=loader, postgres_s=postgres,
                   machine_busy_s=busy, wall_s=wall)


def _expect(pipe: Connection, event: str, timeout: float) -> dict[str, Any]:
    if not pipe.poll(timeout):
        raise RuntimeError(f"the load process sent no {event!r} within {timeout:.0f} s")
    message: dict[str, Any] = pipe.recv()
    if message.get("event") == "failed":
        raise RuntimeError(f"the load process failed: {message['message']}")
    if message.get("event") != event:
        raise RuntimeError(f"the load process sent {message.get('event')!r}, not {event!r}")
    return message


def run(args: argparse.Namespace) -> dict[str, Any]:
    from consult_api.db import upgrade
    from consult_api.passwords import default_hasher, hash_password

    rng = random.Random(args.seed)
    password = secrets.token_urlsafe(18)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    log_dir = RESULTS / f"records_read-{stamp}-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"started": stamp, "clients": args.clients,
                              "seconds": args.seconds, "baseline_seconds": args.baseline_seconds,
                              "warmup": args.warmup, "rate": args.rate,
                              "extra_every": args.extra_every, "cpus": os.cpu_count(),
                              "full_lists": not args.no_full_lists}
    with scratch_database(args.postgres, "huizhen_bench") as url, \
            tempfile.TemporaryDirectory(prefix="records-read-") as data_dir:
        log(f"scratch database {sa.make_url(url).database}: migrating ...")
        upgrade(url)
        log(f"seeding {args.consultations} consultations ...")
        began = time.monotonic()
        province = seed_province(url, args.clients, hash_password(default_hasher(), password),
                                 args.consultations, rng)
        log(f"seeded in {time.monotonic() - began:.1f} s: {province.hospitals} hospitals, "
            f"{province.doctors} doctors, {province.experts} experts, "
            f"{province.coordinators} coordinators, {province.consultations} consultations, "
            f"{province.materials} materials, {province.reports} reports")
        report["province"] = {k: v for k, v in asdict(province).items() if k != "clients"}
        service = Service(url, data_dir, log_dir / "records-service.log")
        context = multiprocessing.get_context("spawn")
        load_end, load_child = context.Pipe()
        loader = None
        try:
            service.wait_ready()
            log(f"records service pid {service.process.pid} on {HOST}:{service.port}")
            config = LoadConfig(port=service.port, people=[asdict(p) for p in province.clients],
                                password=password, seconds=args.seconds,
                                baseline_seconds=args.baseline_seconds, warmup=args.warmup,
                                rate=args.rate, extra_every=args.extra_every, seed=args.seed,
                                full_lists=not args.no_full_lists)
            loader = context.Process(target=_load_process, args=(config, load_child),
                                     daemon=True)
            loader.start()
            load_child.close()
            ready = _expect(load_end, "ready", 300)
            visible = list(ready["visible"].values())
            roles = Counter(p.role for p in province.clients)
            report["client_roles"] = dict(roles)
            report["visible_per_client"] = {"min": min(visible), "max": max(visible),
                                            "median": sorted(visible)[len(visible) // 2]}
            assert loader.pid is not None
            cpu_window = CpuWindow(service.process.pid, loader.pid)
            phases: dict[str, Any] = {}
            _, before, objects_before = audit_counts(url)
            for phase, seconds in (("baseline", args.baseline_seconds),
                                   ("main", args.seconds)):
                log(f"{phase}: {args.clients} clients, {args.warmup:g} s warm-up + "
                    f"{seconds:g} s window ...")
                load_end.send("go")
                _expect(load_end, "start", args.warmup + 60)
                cpu_window.begin()
                _expect(load_end, "end", seconds + 60)
                cpu = cpu_window.end()
                done = _expect(load_end, "done", 120)
                result = PhaseResult(**done["result"])
                _, after, objects_after = audit_counts(url)
                audit = delta(after, before)
                phases[phase] = {"result": result, "cpu": cpu, "audit": audit,
                                 "audit_objects": objects_after - objects_before}
                before, objects_before = after, objects_after
            loader.join(30)
        finally:
            if loader is not None and loader.is_alive():
                loader.terminate()
            service.stop()
    report.update(summarise(phases, args))
    path = RESULTS / f"records_read-{stamp}.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    log(f"JSON report: {path}")
    return report


def summarise(phases: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    base_result: PhaseResult = phases["baseline"]["result"]
    main_result: PhaseResult = phases["main"]["result"]
    base = op_stats(SESSION, base_result, phases["baseline"]["audit"])
    ops = [op_stats(op, main_result, phases["main"]["audit"]) for op in MAIN_OPS]
    mode = (f"open loop, {args.rate:g} requests/s offered" if args.rate
            else "closed loop, no think time")
    if args.no_full_lists:
        mode += "; coordinators list the queue only"
    print()
    print(f"Records service, {args.clients} signed-in clients ({mode}), PostgreSQL, audit on; "
          f"{os.cpu_count()} CPUs")
    print()
    print(f"{'operation':<34} {'requests':>8} {'req/s':>7} {'p50':>7} {'p90':>7} {'p99':>7} "
          f"{'max':>7} {'errors':>6} {'p50/base':>8} {'p99/base':>8}")

    def ratio(a: float | None, b: float | None) -> str:
        return "-" if a is None or not b else f"{a / b:.1f}x"

    def cell(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    rows = [("baseline GET /api/v1/session", base)] + [
        ({LIST: "list GET /consultations", READ: "read GET /consultations/{id}",
          MATERIALS: "materials GET .../materials",
          REPORTS: "reports GET .../reports"}[s.op], s) for s in ops]
    for name, s in rows:
        print(f"{name:<34} {s.requests:>8} {s.per_s:>7.1f} {cell(s.p50_ms):>7} "
              f"{cell(s.p90_ms):>7} {cell(s.p99_ms):>7} {cell(s.max_ms):>7} {s.errors:>6} "
              f"{ratio(s.p50_ms, base.p50_ms):>8} {ratio(s.p99_ms, base.p99_ms):>8}")
    print("(latency in ms over the window; errors over the whole phase; ratios: against "
          "the baseline's p50/p99 in this run)")
    print()
    print("list by who asks (the workspace's own calls):")
    list_kinds = {}
    for kind, values in sorted(main_result.list_kinds.items()):
        p50, p99 = _ms(percentile(values, 0.5)), _ms(percentile(values, 0.99))
        items = main_result.list_items.get(kind, 0) / len(values)
        list_kinds[kind] = {"requests": len(values), "p50_ms": p50, "p99_ms": p99,
                            "consultations_per_list": round(items, 1)}
        print(f"  {kind:<40} {len(values):>6} requests  p50 {cell(p50):>7}  p99 {cell(p99):>7}"
              f"  ({items:.0f} consultations per list)")
    print()
    cpu_lines = {}
    for phase, requests in (("baseline", base.requests),
                            ("main", sum(s.requests for s in ops))):
        cpu: Cpu = phases[phase]["cpu"]
        per_request = cpu.server_s * 1000.0 / requests if requests else float("nan")
        cpu_lines[phase] = per_request
        print(f"{phase}: {requests} requests in {cpu.wall_s:.1f} s; records service CPU "
              f"{cpu.server_s:.2f} s ({100 * cpu.server_s / cpu.wall_s:.0f}% of one core) -> "
              f"{per_request:.2f} ms per request; load process "
              f"{100 * cpu.loader_s / cpu.wall_s:.0f}%; all postgres processes "
              f"{100 * cpu.postgres_s / cpu.wall_s:.0f}%; machine "
              f"{100 * cpu.machine_busy_s / cpu.wall_s:.0f}% of one core (of "
              f"{100 * (os.cpu_count() or 1)}%)")
    print(f"  service CPU per request, main / baseline: "
          f"{cpu_lines['main'] / cpu_lines['baseline']:.1f}x")
    print()
    audit_ok = True
    main_audit: dict[str, int] = phases["main"]["audit"]
    base_audit: dict[str, int] = phases["baseline"]["audit"]
    print(f"audit rows written during the baseline phase: {sum(base_audit.values())} "
          f"{base_audit or ''} (expected 0)")
    audit_ok &= not base_audit
    print("audit rows written during the main phase (warm-up, window and drain), per action, "
          "against the requests answered 200 in the same phase:")
    for s in ops:
        match = s.audit_rows == s.answered_in_phase
        audit_ok &= match
        print(f"  {s.audit_action:<20} rows {s.audit_rows:>7}   requests {s.answered_in_phase:>7}"
              f"   {'match' if match else 'MISMATCH'}")
    expected = {f"{AUDIT_ACTION[s.op]} ok" for s in ops}
    others = {k: v for k, v in main_audit.items() if k not in expected}
    if others:
        audit_ok = False
        print(f"  other rows: {others}")
    print(f"  audit_objects rows added: {phases['main']['audit_objects']} (one per id a list "
          f"returned, one per object read)")
    errors = base.errors + sum(s.errors for s in ops)
    by_kind = {s.op: main_result.errors[s.op] for s in ops if main_result.errors[s.op]}
    if base_result.errors[SESSION]:
        by_kind[SESSION] = base_result.errors[SESSION]
    print(f"errors: {errors} {by_kind or ''}")
    worst = {s.op: s.p99_ms for s in ops if s.op in (LIST, READ)}
    passed = all(v is not None and v <= TARGET_P99_MS for v in worst.values())
    print(f"{'PASS' if passed else 'FAIL'}  p99 <= {TARGET_P99_MS:.0f} ms on list "
          f"({cell(worst[LIST])} ms) and read ({cell(worst[READ])} ms) with "
          f"{args.clients} signed-in clients, audit on")
    return {"baseline": asdict(base), "operations": [asdict(s) for s in ops],
            "cpu": {p: asdict(phases[p]["cpu"]) for p in phases},
            "cpu_ms_per_request": cpu_lines,
            "audit": {p: phases[p]["audit"] for p in phases},
            "audit_objects_added": {p: phases[p]["audit_objects"] for p in phases},
            "list_by_kind": list_kinds, "audit_matches": audit_ok, "errors": errors,
            "errors_by_kind": by_kind,
            "passed": passed}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.records_read",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=None,
                        help="open loop: requests/s offered over all clients (default: "
                             "closed loop, no think time)")
    parser.add_argument("--consultations", type=int, default=2000)
    parser.add_argument("--extra-every", type=int, default=4,
                        help="every N-th cycle also lists the consultation's materials and "
                             "reports")
    parser.add_argument("--no-full-lists", action="store_true",
                        help="coordinators list only the incoming queue, never every "
                             "consultation (shows what the unbounded list costs the others)")
    parser.add_argument("--postgres", default=os.environ.get("CONSULT_TEST_POSTGRES_URL",
                                                             DEFAULT_POSTGRES),
                        help="PostgreSQL server URL (its database is used for CREATE and "
                             "DROP DATABASE)")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when list or read p99 > 100 ms, a request failed or the "
                             "audit does not match")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up (finally) on SIGTERM
    if args.clients < 3:
        parser.error("--clients must be at least 3 (one of each role)")
    report = run(args)
    ok = report["passed"] and report["errors"] == 0 and report["audit_matches"]
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    threading.current_thread().name = "main"
    raise SystemExit(main())
