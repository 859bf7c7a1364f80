"""ICD-10 codes (seeded with a starter set), reports.diagnosis_code, Chinese report templates.

The starter set is ``consult_api/data/icd10_starter.csv`` (code, name_zh, name_en, chapter):
common diagnoses of county-to-province consultations, WHO ICD-10 codes with the Chinese
clinical names. A hospital imports its full edition with ``huizhen records-import-icd10``.

The report templates seeded in English by 0003 get Chinese names and section titles (the
English ones kept as ``name_en`` / ``title_en``), and four Chinese templates are added:
imaging, ECG, pathology and critical care consultations.

Revision ID: 0006
Revises: 0005
"""

import csv
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STARTER_CSV = Path(__file__).resolve().parents[2] / "data" / "icd10_starter.csv"
STARTER_EDITION = "ICD-10 starter"

# specialty, English name as seeded by 0003, Chinese name, sections (key, zh, en)
CONVERTED = [
    ("general", "General consultation report", "通用会诊报告", [
        ("findings", "病情所见", "Findings"),
        ("impression", "诊断印象", "Impression"),
        ("recommendations", "诊疗建议", "Recommendations")]),
    ("cardiology", "Cardiology consultation report", "心血管内科会诊报告", [
        ("history", "病史摘要", "Clinical history"),
        ("ecg", "心电图", "ECG"),
        ("echo", "超声心动图", "Echocardiography"),
        ("impression", "诊断印象", "Impression"),
        ("recommendations", "诊疗建议", "Recommendations")]),
    ("radiology", "Radiology report", "放射科报告", [
        ("technique", "检查方法", "Technique"),
        ("findings", "影像所见", "Findings"),
        ("impression", "印象", "Impression")]),
    ("neurology", "Neurology consultation report", "神经内科会诊报告", [
        ("history", "病史", "History"),
        ("examination", "神经系统查体", "Neurological examination"),
        ("imaging", "影像学检查", "Imaging"),
        ("impression", "诊断印象", "Impression"),
        ("recommendations", "诊疗建议", "Recommendations")]),
]

# specialty, Chinese name, English name, sections (key, zh, en)
ADDED = [
    ("imaging", "影像会诊", "Imaging consultation", [
        ("examination", "检查项目", "Examination"),
        ("findings", "影像所见", "Findings"),
        ("impression", "印象", "Impression"),
        ("recommendations", "建议", "Recommendations")]),
    ("ecg", "心电会诊", "ECG consultation", [
        ("rate_rhythm", "心率与节律", "Rate and rhythm"),
        ("waveforms", "波形分析", "Waveform analysis"),
        ("ecg_diagnosis", "心电图诊断", "ECG diagnosis"),
        ("recommendations", "建议", "Recommendations")]),
    ("pathology", "病理会诊", "Pathology consultation", [
        ("specimen", "标本信息", "Specimen"),
        ("gross", "大体所见", "Gross description"),
        ("microscopic", "镜下所见", "Microscopic description"),
        ("pathological_diagnosis", "病理诊断", "Pathological diagnosis"),
        ("recommendations", "建议", "Recommendations")]),
    ("icu", "重症监护会诊", "Critical care consultation", [
        ("summary", "病情摘要", "Clinical summary"),
        ("vitals", "生命体征与监护", "Vital signs and monitoring"),
        ("assessment", "评估", "Assessment"),
        ("plan", "诊疗建议", "Treatment recommendations"),
        ("transfer", "转诊意见", "Transfer advice")]),
]

templates = sa.table(
    "report_templates",
    sa.column("id", sa.Integer),
    sa.column("specialty", sa.String),
    sa.column("name", sa.String),
    sa.column("name_en", sa.String),
    sa.column("sections", sa.JSON),
)


def _sections(rows: list[tuple[str, str, str]]) -> list[dict[str, str]]:
    return [{"key": key, "title": zh, "title_en": en} for key, zh, en in rows]


def _starter_rows() -> list[dict[str, str | None]]:
    with STARTER_CSV.open(encoding="utf-8", newline="") as f:
        return [{"code": row["code"], "name_zh": row["name_zh"], "name_en": row["name_en"],
                 "edition": STARTER_EDITION, "chapter": row["chapter"] or None}
                for row in csv.DictReader(f)]


def upgrade() -> None:
    codes = op.create_table(
        "icd10_codes",
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("name_zh", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=300), nullable=False),
        sa.Column("edition", sa.String(length=100), nullable=False),
        sa.Column("chapter", sa.String(length=10), nullable=True),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_icd10_codes")),
    )
    assert codes is not None
    op.bulk_insert(codes, _starter_rows())

    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.add_column(sa.Column("diagnosis_code", sa.String(length=20), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_reports_diagnosis_code_icd10_codes"),
                                    "icd10_codes", ["diagnosis_code"], ["code"])

    with op.batch_alter_table("report_templates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name_en", sa.String(length=200), nullable=True))

    bind = op.get_bind()
    for specialty, english, chinese, sections in CONVERTED:
        # Only the rows as 0003 seeded them: a site's own edits are left alone.
        bind.execute(templates.update()
                     .where(templates.c.specialty == specialty, templates.c.name == english)
                     .values(name=chinese, name_en=english, sections=_sections(sections)))
    op.bulk_insert(templates, [
        {"specialty": specialty, "name": chinese, "name_en": english,
         "sections": _sections(sections)}
        for specialty, chinese, english, sections in ADDED])


def downgrade() -> None:
    bind = op.get_bind()
    template_id = sa.column("template_id", sa.Integer)
    used = sa.select(template_id).select_from(sa.table("reports")).where(
        template_id.is_not(None))
    for specialty, chinese, *_ in ADDED:
        bind.execute(templates.delete().where(templates.c.specialty == specialty,
                                              templates.c.name == chinese,
                                              templates.c.id.not_in(used)))
    for specialty, english, chinese, sections in CONVERTED:
        bind.execute(templates.update()
                     .where(templates.c.specialty == specialty, templates.c.name == chinese)
                     .values(name=english, sections=[{"key": key, "title": en}
                                                     for key, _zh, en in sections]))
    with op.batch_alter_table("report_templates", schema=None) as batch_op:
        batch_op.drop_column("name_en")
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_reports_diagnosis_code_icd10_codes"),
                                 type_="foreignkey")
        batch_op.drop_column("diagnosis_code")
    op.drop_table("icd10_codes")
