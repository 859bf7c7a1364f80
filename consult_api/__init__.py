"""consult_api: the consultation records service (requests, materials, reports, statistics).

SQLAlchemy 2 over SQLite by default, PostgreSQL in production; alembic migrations;
an aiohttp JSON API. Clinical words (Consultation, Patient, Expert) live here, not in
mediaserver.
"""
