"""HL7 v2 separators and escape sequences (HL7 v2 chapter 2.7).

``unescape`` resolves ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\Xhh..\\`` and the formatting
escapes (``\\.br\\`` is a line break). ``\\Xhh\\`` bytes are decoded with the
message's character set, so ``\\XE4BDA0\\`` is one character in a UTF-8 message.
Errors raise ``ValueError`` naming the problem, never the text.

(python-hl7 has an ``unescape`` too, but it logs the field's text on a bad escape,
which may be a patient's name, and turns ``\\Xhh\\`` bytes into code points one by one.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Separators:
    """The delimiters of one message: MSH-1 and the encoding characters of MSH-2."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @classmethod
    def from_msh(cls, field: str, encoding_characters: str) -> Separators:
        """From MSH-1 and MSH-2; ValueError unless they are distinct punctuation."""
        chars = field + encoding_characters
        if chars == "|^~\\&":
            return DEFAULT_SEPARATORS  # almost every message: skip the checks
        if not 4 <= len(chars) <= 6:
            raise ValueError(f"MSH-2 has {len(encoding_characters)} encoding characters, "
                             "expected 3 to 5")
        if len(set(chars)) != len(chars):
            raise ValueError("MSH-1/MSH-2 separators are not distinct")
        if any(not (c.isascii() and c.isprintable()) or c.isalnum() or c == " "
               for c in chars):
            raise ValueError("MSH-1/MSH-2 separators must be ASCII punctuation")
        parts = list(encoding_characters) + [""] * (4 - len(encoding_characters))
        return cls(field, parts[0], parts[1], parts[2] or "\\", parts[3] or "&")

    @property
    def encoding_characters(self) -> str:
        return self.component + self.repetition + self.escape + self.subcomponent


DEFAULT_SEPARATORS = Separators()

_FORMATTING = re.compile(r"\.(br|sp|ce|fi|nf|in|ti|sk)([+-]?\d*)")


def unescape(text: str, separators: Separators = DEFAULT_SEPARATORS,
             codec: str = "ascii") -> str:
    """``text`` with its escape sequences resolved; ValueError on a malformed one."""
    esc = separators.escape
    if esc not in text:
        return text
    out: list[str] = []
    pos = 0
    while True:
        start = text.find(esc, pos)
        if start < 0:
            out.append(text[pos:])
            return "".join(out)
        end = text.find(esc, start + 1)
        if end < 0:
            raise ValueError("unterminated escape sequence")
        out.append(text[pos:start])
        out.append(_resolve(text[start + 1:end], separators, codec))
        pos = end + 1


def _resolve(sequence: str, separators: Separators, codec: str) -> str:
    simple = {
        "F": separators.field,
        "S": separators.component,
        "T": separators.subcomponent,
        "R": separators.repetition,
        "E": separators.escape,
        "H": "",  # start of highlighting: display only
        "N": "",  # normal text
    }
    if sequence in simple:
        return simple[sequence]
    if sequence[:1] == "X":
        return _hex(sequence[1:], codec)
    formatting = _FORMATTING.fullmatch(sequence)
    if formatting is not None:
        command, number = formatting.groups()
        count = max(int(number or "1"), 1) if command in ("sp", "sk") else 1
        if command in ("br", "sp", "ce"):
            return "\n" * count
        return " " * count if command == "sk" else ""
    if sequence[:1] == "Z":
        return ""  # locally defined escape: no local meaning here
    if not sequence:
        raise ValueError("empty escape sequence")
    if sequence[:1] in ("C", "M"):
        raise ValueError("character set switching escapes (\\C..\\, \\M..\\) are not supported")
    raise ValueError("unknown escape sequence")


def _hex(digits: str, codec: str) -> str:
    if not digits or len(digits) % 2:
        raise ValueError("\\X..\\ escape needs an even number of hex digits")
    try:
        data = bytes.fromhex(digits)
    except ValueError:
        raise ValueError("\\X..\\ escape has non-hex digits") from None
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        raise ValueError(f"\\X..\\ escape is not valid {codec}") from None


def escape(text: str, separators: Separators = DEFAULT_SEPARATORS) -> str:
    """``text`` with separators, the escape character and line breaks escaped."""
    esc = separators.escape
    table = {
        separators.escape: f"{esc}E{esc}",
        separators.field: f"{esc}F{esc}",
        separators.component: f"{esc}S{esc}",
        separators.subcomponent: f"{esc}T{esc}",
        separators.repetition: f"{esc}R{esc}",
        "\n": f"{esc}.br{esc}",
        "\r": f"{esc}.br{esc}",
    }
    if not any(c in text for c in table):
        return text
    return "".join(table.get(c, c) for c in text)
