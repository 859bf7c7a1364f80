"""The demo province in the records service: hospitals, people, slots and one live consultation.

``huizhen demo`` seeds its own SQLite file (``demo-records.sqlite3`` in the data directory,
never the records service's ``records.sqlite3``, so demo passwords cannot end up in a real
records database) through the records service's own functions, so the rules hold as
for real data: a county hospital's doctor asks, the coordinator schedules the provincial
cardiologist now, and scheduling opens the live room the simulated bedside publishes into.

Seeding is idempotent: hospitals, departments and people are found by name (people by
username) before anything is added; a second start reuses them. The demo passwords are
public and printed (on loopback only); a demo account whose password no longer matches is
set back to it, so that what the demo prints always signs in.

The pure parts (the cast, the time windows) come first; ``prepare`` does the I/O.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.orm import Session

from consult_api import records, slots
from consult_api.accounts import utc
from consult_api.db import make_engine, make_sessionmaker, upgrade
from consult_api.errors import InvalidTransition
from consult_api.models import Consultation, Department, ExpertProfile, ExpertSlot, Hospital, User
from consult_api.passwords import default_hasher, hash_password, verify_password
from consult_api.schemas import ConsultationIn, PatientIn, ScheduleIn
from consult_api.workflow import Actor, ConsultationType, Role, State, Urgency

logger = logging.getLogger(__name__)

DATABASE_FILE = "demo-records.sqlite3"
CHINA = timezone(timedelta(hours=8))  # the clinics' hours are Beijing time

PROVINCIAL = "省人民医院"
COUNTY = "县人民医院"
CARDIOLOGY = "心血管内科"
TELEMEDICINE = "远程医学中心"
MEDICINE = "内科"
HOSPITALS: tuple[tuple[str, str], ...] = ((PROVINCIAL, "province"), (COUNTY, "county"))
DEPARTMENTS: tuple[tuple[str, str], ...] = (
    (PROVINCIAL, CARDIOLOGY), (PROVINCIAL, TELEMEDICINE), (COUNTY, MEDICINE))


@dataclass(frozen=True)
class DemoPerson:
    username: str
    password: str  # public: printed by the demo, which listens on loopback only
    display_name: str
    role: Role
    hospital: str
    department: str | None
    role_zh: str


PEOPLE: tuple[DemoPerson, ...] = (
    DemoPerson("demo-doctor", "Doctor-demo-1", "王建国", Role.REQUESTING_DOCTOR, COUNTY,
               MEDICINE, "申请医生"),
    DemoPerson("demo-expert", "Expert-demo-1", "李明华", Role.EXPERT, PROVINCIAL, CARDIOLOGY,
               "会诊专家"),
    DemoPerson("demo-coordinator", "Coordinator-demo-1", "张丽", Role.COORDINATOR, PROVINCIAL,
               TELEMEDICINE, "会诊协调员"),
    DemoPerson("demo-admin", "Admin-demo-1", "陈志强", Role.ADMIN, PROVINCIAL, None,
               "系统管理员"),
)
EXPERT_SPECIALTY = "心血管内科（冠心病、急性胸痛）"
EXPERT_AVAILABILITY = "工作日 9:00–11:00、15:00–16:00"

# The live consultation: made-up patient data, marked as such, found again by its number.
DEMO_RECORD_NUMBER = "DEMO-0001"
DEMO_PATIENT = PatientIn(
    name="演示患者（虚构）", sex="male", age=67, record_number=DEMO_RECORD_NUMBER,
    summary="【演示数据】胸痛3小时，伴大汗；心电图示V1–V4导联ST段抬高；肌钙蛋白升高。")
DEMO_QUESTION = "【演示数据】请协助判断是否需急诊PCI并转诊上级医院，转运途中如何处理？"

LIVE_SPAN = timedelta(hours=2)
LIVE_MIN_LEFT = timedelta(minutes=30)
SLOT_DAYS = 3
SLOT_HOURS = (9, 10, 15)  # Beijing time
SLOT_SPAN = timedelta(minutes=30)


# --- pure ------------------------------------------------------------------------------------

def live_window(now: datetime) -> tuple[datetime, datetime]:
    """The live consultation's time: from ``now`` floored to five minutes, for two hours."""
    start = now.astimezone(UTC).replace(second=0, microsecond=0)
    start -= timedelta(minutes=start.minute % 5)
    return start, start + LIVE_SPAN


def still_live(start: datetime, end: datetime, now: datetime) -> bool:
    """Whether a booked time covers ``now`` with at least half an hour left."""
    return utc(start) <= now and utc(end) - now >= LIVE_MIN_LEFT


def coming_slots(now: datetime) -> list[tuple[datetime, datetime]]:
    """The expert's free slots on the coming days (from tomorrow, Beijing time), in UTC."""
    today = now.astimezone(CHINA).date()
    found = []
    for days in range(1, SLOT_DAYS + 1):
        day = today + timedelta(days=days)
        for hour in SLOT_HOURS:
            start = datetime(day.year, day.month, day.day, hour, tzinfo=CHINA).astimezone(UTC)
            found.append((start, start + SLOT_SPAN))
    return found


def database_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / DATABASE_FILE}"


# --- the database ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Seeded:
    consultation_id: int
    room: str


class DemoSeedError(Exception):
    """The demo data cannot be prepared (one line for people)."""


def _stored_hashes(session: Session) -> dict[str, str | None]:
    names = [p.username for p in PEOPLE]
    return {name: stored for name, stored in session.execute(
        sa.select(User.username, User.password_hash).where(User.username.in_(names)))
        if name is not None}


def _hospital(session: Session, name: str, level: str) -> int:
    found = session.scalar(sa.select(Hospital.id).where(Hospital.name == name)
                           .order_by(Hospital.id).limit(1))
    return found if found is not None else records.add_hospital(session, name, level)


def _department(session: Session, hospital_id: int, name: str) -> int:
    found = session.scalar(sa.select(Department.id).where(
        Department.hospital_id == hospital_id, Department.name == name)
        .order_by(Department.id).limit(1))
    return found if found is not None else records.add_department(session, hospital_id, name)


def _person(session: Session, person: DemoPerson, hospital_id: int, department_id: int | None,
            new_hash: str | None, now: datetime) -> User:
    user = session.scalars(sa.select(User).where(User.username == person.username)).one_or_none()
    if user is None:
        user_id = records.add_user(session, hospital_id, person.display_name, person.role,
                                   department_id)
        user = session.get_one(User, user_id)
        user.username, user.language = person.username, "zh-CN"
    if new_hash is not None:
        user.password_hash, user.password_changed_at = new_hash, now
    # What the demo prints must sign in: not locked out, not disabled.
    user.disabled, user.failed_logins, user.locked_until = False, 0, None
    if person.role is Role.EXPERT and session.scalar(
            sa.select(ExpertProfile.id).where(ExpertProfile.user_id == user.id)) is None:
        records.add_expert_profile(session, user.id, EXPERT_SPECIALTY, EXPERT_AVAILABILITY)
    session.flush()
    return user


def _actor(user: User) -> Actor:
    return Actor(user_id=user.id, role=Role(user.role), hospital_id=user.hospital_id,
                 name=user.display_name)


def _clear_for(session: Session, expert_id: int, start: datetime, end: datetime,
               consultation_id: int | None) -> None:
    """Free slots of the expert in the live window give way; a booking there is refused."""
    for slot in slots.clashing(session, expert_id, start, end):
        if slot.consultation_id is None:
            session.delete(slot)
        elif slot.consultation_id != consultation_id:
            raise DemoSeedError(
                "the demo expert is booked by another consultation now; cancel it in the "
                f"workspace or delete {DATABASE_FILE} in the data directory")
    session.flush()


def _live_consultation(session: Session, doctor: User, expert: User, coordinator: User,
                       now: datetime) -> Seeded:
    """The demo consultation, scheduled now: the last one if it is still live (moved to now
    when its time has passed), else a new one requested and scheduled as people would."""
    c = session.scalars(sa.select(Consultation).where(
        Consultation.requesting_doctor_id == doctor.id,
        Consultation.patient_record_number == DEMO_RECORD_NUMBER,
        Consultation.expert_id == expert.id,
        Consultation.state.in_(slots.HOLDING_STATES))
        .order_by(Consultation.id.desc()).limit(1)).one_or_none()
    if c is not None and c.room_name is not None and c.slot_start is not None \
            and c.slot_end is not None:
        if not still_live(c.slot_start, c.slot_end, now):
            start, end = live_window(now)
            _clear_for(session, expert.id, start, end, c.id)
            session.execute(sa.update(ExpertSlot).where(ExpertSlot.consultation_id == c.id)
                            .values(start_at=start, end_at=end))
            c.slot_start, c.slot_end, c.updated_at = start, end, now
            logger.info("demo consultation %s moved to now", c.id)
        return Seeded(c.id, c.room_name)
    start, end = live_window(now)
    _clear_for(session, expert.id, start, end, None)
    consultation_id = records.create_consultation(session, _actor(doctor), ConsultationIn(
        patient=DEMO_PATIENT, question=DEMO_QUESTION, urgency=Urgency.URGENT,
        type=ConsultationType.INTERACTIVE, expert_id=expert.id), now)
    try:
        c = records.schedule(session, _actor(coordinator), consultation_id,
                             ScheduleIn(start=start, end=end, expert_id=expert.id), now)
    except InvalidTransition as exc:
        raise DemoSeedError(f"the demo consultation cannot be scheduled: {exc}") from None
    assert c.room_name is not None and c.state == State.SCHEDULED.value
    return Seeded(c.id, c.room_name)


def _free_slots(session: Session, expert: User, coordinator: User, now: datetime) -> None:
    for start, end in coming_slots(now):
        if not slots.clashing(session, expert.id, start, end):
            slots.add(session, expert.id, start, end, coordinator.id, now)


def seed(session: Session, new_hashes: dict[str, str], now: datetime) -> Seeded:
    """Everything the demo needs, found or added; ``new_hashes`` holds the password hashes
    of the demo people whose stored hash is missing or no longer the demo password."""
    hospitals = {name: _hospital(session, name, level) for name, level in HOSPITALS}
    departments = {(h, d): _department(session, hospitals[h], d) for h, d in DEPARTMENTS}
    users = {}
    for person in PEOPLE:
        department = None if person.department is None else departments[
            (person.hospital, person.department)]
        users[person.role] = _person(session, person, hospitals[person.hospital], department,
                                     new_hashes.get(person.username), now)
    doctor, expert = users[Role.REQUESTING_DOCTOR], users[Role.EXPERT]
    coordinator = users[Role.COORDINATOR]
    seeded = _live_consultation(session, doctor, expert, coordinator, now)
    _free_slots(session, expert, coordinator, now)
    return seeded


def _hashes_needed(stored: dict[str, str | None], hasher: PasswordHasher) -> dict[str, str]:
    """argon2 is slow on purpose: run outside any transaction (SQLite's write lock)."""
    return {p.username: hash_password(hasher, p.password) for p in PEOPLE
            if not verify_password(hasher, stored.get(p.username), p.password)}


def prepare(url: str, now: datetime, hasher: PasswordHasher | None = None) -> Seeded:
    """Migrate the demo database and seed it (blocking: run in a worker thread)."""
    upgrade(url)
    hasher = hasher or default_hasher()
    engine = make_engine(url)
    try:
        factory = make_sessionmaker(engine)
        stored = records.run_in_session(factory, _stored_hashes)
        new_hashes = _hashes_needed(stored, hasher)
        return records.run_in_session(factory, lambda s: seed(s, new_hashes, now))
    finally:
        engine.dispose()
