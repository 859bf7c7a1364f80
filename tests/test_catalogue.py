"""Every UI string has a zh-CN and an en entry, and every key the pages use exists."""

from __future__ import annotations

import json
import re

from contracts.catalogue import CATALOGUE_DIR, LANGUAGES, Catalogue, negotiate

WEB = CATALOGUE_DIR.parent
# t("key"), t('key'), errorText-free: keys written literally in the pages' scripts.
JS_KEY = re.compile(r"""\bt\(\s*["']([A-Za-z0-9_.\-]+)["']""")
HTML_KEY = re.compile(r"""data-i18n=["']([^"']+)["']""")
ATTR_KEYS = re.compile(r"""data-i18n-attr=["']([^"']+)["']""")


def test_every_area_file_is_listed_and_every_entry_has_both_languages() -> None:
    index = json.loads((CATALOGUE_DIR / "index.json").read_text(encoding="utf-8"))
    on_disk = {p.stem for p in CATALOGUE_DIR.glob("*.json")} - {"index"}
    assert set(index["areas"]) == on_disk
    seen: dict[str, str] = {}
    problems = []
    for area in index["areas"]:
        entries = json.loads((CATALOGUE_DIR / f"{area}.json").read_text(encoding="utf-8"))
        for key, entry in entries.items():
            if key in seen:
                problems.append(f"{key} is in {seen[key]} and {area}")
            seen[key] = area
            for language in LANGUAGES:
                text = entry.get(language)
                if not isinstance(text, str) or not text.strip():
                    problems.append(f"{area}: {key} lacks {language}")
            unknown = set(entry) - set(LANGUAGES)
            if unknown:
                problems.append(f"{area}: {key} has unknown languages {unknown}")
            placeholders = {lang: set(re.findall(r"\{(\w+)\}", entry.get(lang, "")))
                            for lang in LANGUAGES}
            if placeholders["zh-CN"] != placeholders["en"]:
                problems.append(f"{area}: {key} placeholders differ {placeholders}")
    assert not problems, "\n".join(problems)


def _used_keys() -> set[str]:
    used: set[str] = set()
    for path in WEB.rglob("*.js"):
        used |= set(JS_KEY.findall(path.read_text(encoding="utf-8")))
    for path in WEB.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        used |= set(HTML_KEY.findall(text))
        for spec in ATTR_KEYS.findall(text):
            used |= {pair.split(":", 1)[1].strip() for pair in spec.split(";") if ":" in pair}
    return used


def test_every_key_the_pages_use_is_in_the_catalogue() -> None:
    catalogue = Catalogue.load()
    missing = sorted(_used_keys() - set(catalogue.keys()))
    assert not missing, f"keys used by pages but not in the catalogue: {missing}"


def test_the_server_reads_the_same_catalogue() -> None:
    catalogue = Catalogue.load()
    assert catalogue.text("error.forbidden") == "您没有执行此操作的权限"
    assert catalogue.text("error.forbidden", "en") == "You are not allowed to do this"


def test_accept_language_negotiation() -> None:
    assert negotiate(None) == "zh-CN"
    assert negotiate("") == "zh-CN"
    assert negotiate("en-US,en;q=0.9") == "en"
    assert negotiate("zh-TW,zh;q=0.9,en;q=0.8") == "zh-CN"
    assert negotiate("fr-FR, en;q=0.5, zh;q=0.8") == "zh-CN"
    assert negotiate("de, fr") == "zh-CN"
    assert negotiate("en;q=0, zh;q=0.1") == "zh-CN"
    assert negotiate("en;q=abc, zh;q=0.1") == "zh-CN"
