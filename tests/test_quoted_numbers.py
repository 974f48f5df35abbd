"""Every measured number README.md and docs/ quote is the number its results file holds.

``docs/quoted_numbers.md`` declares each quoted number: the doc, the quoted text with the number
marked ``{{...}}``, the results file, where in it (a JSON Pointer, RFC 6901, for a ``.json`` file;
a phrase of the file with the number marked ``{{...}}`` for a ``.md`` file that has no JSON), and
a Python format spec (``.2f``, ``.0%``, ``len`` for the length of a list). Without rerunning
anything, the tests check

1. each declaration: the quoted text is in its doc (whitespace-insensitive), and the marked number
   is the file's value formatted as declared;
2. every *measured-looking* number in the prose of README.md and docs/ is the marked number of a
   declaration, inside a phrase of the allow-list, or in a section that quotes the papers.

Measured-looking (:data:`MEASURED`): a percentage (``49%``, ``2.5%``), a ratio (``1.84x``), a time
(``173 s``, ``0.04 s``, ``158.2 ms``, ``2096 CPU-s``, ``3 min``), or a decimal with at least three
significant digits (``12.01``, ``0.275``, ``1.0061``, ``10.0``; not ``0.05``, ``1.0``, ``0.9``, which
are settings). Integers without a unit (seeds, trials, images) are not scanned. Prose means outside
fenced code, inline code, link targets, HTML comments, headings and arXiv identifiers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DECLARATIONS = ROOT / "docs" / "quoted_numbers.md"
SCANNED = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").rglob("*.md") if p != DECLARATIONS)]
MARK = re.compile(r"\{\{(.+?)\}\}")

NUMBER = r"\d[\d,]*(?:\.\d+)?"
MEASURED = re.compile(
    r"(?<![\w.,/#§])(?:"
    rf"{NUMBER}\s?%"  # a percentage
    rf"|{NUMBER}x\b"  # a ratio: 1.84x
    rf"|{NUMBER}\s?(?:CPU-s|ms|min|s)\b"  # a time
    r"|\d+\.\d+(?![\d.])"  # a decimal: measured-looking with >= 3 significant digits (significant_digits)
    r")"
)
SKIPPED = [
    re.compile(r"^```.*?^```[^\n]*$", re.S | re.M),  # fenced code
    re.compile(r"`[^`\n]+`"),  # inline code
    re.compile(r"\]\([^)\s]+\)"),  # link targets
    re.compile(r"<!--.*?-->", re.S),  # HTML comments
    re.compile(r"^#{1,6} .*$", re.M),  # headings (section numbers)
    re.compile(r"arXiv:?\s?\d{4}\.\d{4,5}"),  # arXiv identifiers
]


def significant_digits(number: str) -> int:
    """Digits of a decimal without its leading zeros (trailing ones count): 12.01 -> 4, 0.05 -> 1, 10.0 -> 3."""
    return len(number.replace(",", "").replace(".", "").lstrip("0"))


def is_measured_looking(token: str) -> bool:
    if re.fullmatch(r"\d+\.\d+", token):
        return significant_digits(token) >= 3
    return True


# ----------------------------------------------------------------------------- text with positions
class Text:
    """A file's text, its whitespace-collapsed form (for matching phrases that wrap) and the map back."""

    def __init__(self, raw: str):
        self.raw = raw
        chars, where, prev_space = [], [], False
        for i, ch in enumerate(raw):
            space = ch.isspace()
            if space and prev_space:
                continue
            chars.append(" " if space else ch)
            where.append(i)
            prev_space = space
        self.flat = "".join(chars)
        self.where = where  # flat index -> raw index

    def find_all(self, phrase: str) -> list[int]:
        """Start positions (in ``flat``) of ``phrase`` with its whitespace collapsed."""
        needle = re.sub(r"\s+", " ", phrase)
        return [m.start() for m in re.finditer(re.escape(needle), self.flat)]

    def raw_span(self, start: int, end: int) -> tuple[int, int]:
        return self.where[start], self.where[end - 1] + 1


def prose_numbers(raw: str) -> list[tuple[int, int, str]]:
    """``(start, end, token)`` of each measured-looking number in the prose of ``raw``."""
    visible = raw
    for pattern in SKIPPED:
        visible = pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), visible)
    return [(m.start(), m.end(), m.group(0)) for m in MEASURED.finditer(visible) if is_measured_looking(m.group(0))]


def line_of(raw: str, pos: int) -> int:
    return raw.count("\n", 0, pos) + 1


# ----------------------------------------------------------------------------- the declarations
def table_rows(section: str) -> list[list[str]]:
    """The body rows of the first Markdown table under the ``## section`` heading of docs/quoted_numbers.md."""
    text = DECLARATIONS.read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in body.splitlines() if line.startswith("|")]
    out = []
    for line in rows[2:]:  # header and separator
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        out.append([c.replace("\\|", "|").strip("`") if c.startswith("`") else c.replace("\\|", "|") for c in cells])
    return out


@dataclass(frozen=True)
class Quote:
    doc: str
    quoted: str  # with the number marked {{...}}
    source: str
    path: str
    fmt: str

    @property
    def phrase(self) -> str:
        return MARK.sub(r"\1", self.quoted)

    @property
    def number(self) -> str:
        return MARK.search(self.quoted).group(1)

    def marked_span(self) -> tuple[int, int]:
        """Where the number sits inside :attr:`phrase`."""
        m = MARK.search(self.quoted)
        return m.start(), m.start() + len(m.group(1))


@dataclass(frozen=True)
class Allowed:
    doc: str  # a doc path or "*"
    pattern: re.Pattern
    why: str


@dataclass(frozen=True)
class PaperSection:
    doc: str
    heading: str
    source: str


def quotes() -> list[Quote]:
    return [Quote(*row[:5]) for row in table_rows("Quoted numbers")]


def allowed() -> list[Allowed]:
    return [Allowed(doc, re.compile(pattern), why) for doc, pattern, why in table_rows("Allowed numbers")]


def paper_sections() -> list[PaperSection]:
    return [PaperSection(*row[:3]) for row in table_rows("Sections that quote the papers")]


def json_value(data, pointer: str):
    """The value at a JSON Pointer (RFC 6901: ``/a/b/0``, ``~1`` for ``/``, ``~0`` for ``~``)."""
    if not pointer.startswith("/"):
        raise ValueError(f"a JSON Pointer starts with '/': {pointer!r}")
    for token in pointer[1:].split("/"):
        key = token.replace("~1", "/").replace("~0", "~")
        if isinstance(data, list):
            data = data[int(key)]
        else:
            if key not in data:
                raise KeyError(f"{key!r} not in {sorted(data)[:20]}")
            data = data[key]
    return data


def formatted(value, fmt: str) -> str:
    if fmt == "len":
        return str(len(value))
    return format(value, fmt)


# ----------------------------------------------------------------------------- 1. each declaration holds
@pytest.mark.parametrize("quote", quotes(), ids=lambda q: f"{q.doc}:{q.quoted[:60]}")
def test_quoted_number_is_the_results_files_value(quote):
    assert MARK.search(quote.quoted), f"no {{{{number}}}} marked in {quote.quoted!r}"
    doc = Text((ROOT / quote.doc).read_text(encoding="utf-8"))
    assert doc.find_all(quote.phrase), f"{quote.doc} does not contain the quoted text {quote.phrase!r}"
    source = ROOT / quote.source
    assert source.is_file(), f"results file {quote.source} does not exist"
    if source.suffix == ".json":
        value = json_value(json.loads(source.read_text(encoding="utf-8")), quote.path)
        assert formatted(value, quote.fmt) == quote.number, (
            f"{quote.doc} quotes {quote.number!r}; {quote.source} {quote.path} holds {value!r}, formatted {quote.fmt!r}: {formatted(value, quote.fmt)!r}"
        )
    else:  # a Markdown results file without JSON: the number in the declared phrase of that file
        held = MARK.search(quote.path)
        assert held, f"mark the number in the phrase of {quote.source}: {quote.path!r}"
        assert Text(source.read_text(encoding="utf-8")).find_all(MARK.sub(r"\1", quote.path)), f"{quote.source} does not contain {quote.path!r}"
        assert held.group(1) == quote.number, f"{quote.doc} quotes {quote.number!r}, {quote.source} says {held.group(1)!r}"


def test_declarations_are_well_formed():
    qs, allow, papers = quotes(), allowed(), paper_sections()
    assert len(qs) > 40 and allow and papers  # the tables were parsed
    for q in qs:
        assert (ROOT / q.doc).is_file() and q.doc in {str(p.relative_to(ROOT)) for p in SCANNED}, q.doc
        assert q.fmt == "len" or re.fullmatch(r"[,_]?(?:\.\d+)?[dfeg%]", q.fmt), f"format {q.fmt!r} of {q.quoted!r}"
    for a in allow:
        assert a.why and (a.doc == "*" or (ROOT / a.doc).is_file()), a
    for p in papers:
        assert p.heading in [h for h, _, _ in sections((ROOT / p.doc).read_text(encoding="utf-8"))], f"{p.doc} has no heading {p.heading!r}"


# ----------------------------------------------------------------------------- 2. nothing measured goes undeclared
def sections(raw: str) -> list[tuple[str, int, int]]:
    """``(heading, start, end)`` of each section of ``raw``, up to the next heading of the same or a higher level."""
    heads = [(m.start(), len(m.group(1)), m.group(2).strip()) for m in re.finditer(r"^(#{1,6}) (.*)$", raw, re.M)]
    out = []
    for i, (start, level, title) in enumerate(heads):
        end = next((s for s, lv, _ in heads[i + 1 :] if lv <= level), len(raw))
        out.append((title, start, end))
    return out


def covered_spans(path: Path, raw: str) -> list[tuple[int, int]]:
    """Raw spans whose numbers need no declaration of their own: marked numbers, allowed phrases, paper sections."""
    rel = path.relative_to(ROOT).as_posix()
    text = Text(raw)
    spans = []
    for q in quotes():
        if q.doc == rel:
            a, b = q.marked_span()
            spans += [text.raw_span(s + a, s + b) for s in text.find_all(q.phrase)]
    for entry in allowed():
        if entry.doc in ("*", rel):
            spans += [text.raw_span(m.start(), m.end()) for m in entry.pattern.finditer(text.flat) if m.end() > m.start()]
    for p in paper_sections():
        if p.doc == rel:
            spans += [(s, e) for title, s, e in sections(raw) if title == p.heading]
    return spans


@pytest.mark.parametrize("path", SCANNED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_measured_number_is_declared(path):
    raw = path.read_text(encoding="utf-8")
    spans = covered_spans(path, raw)
    undeclared = [  # a number is covered when its digits are (a unit after a marked number may stand outside the mark)
        f"{path.relative_to(ROOT).as_posix()}:{line_of(raw, s)}: {token!r} in: {raw[max(0, s - 60) : e + 30].strip()!r}"
        for s, e, token in prose_numbers(raw)
        if not any(a <= s and s + len(re.match(r"[\d,.]+", token).group(0)) <= b for a, b in spans)
    ]
    assert not undeclared, (
        "measured-looking numbers without a source: declare each in docs/quoted_numbers.md (results file and path), "
        "or remove it; settings and constants go on its short allow-list with a reason\n" + "\n".join(undeclared)
    )


# ----------------------------------------------------------------------------- the checks can fail
def test_the_scanner_sees_measured_numbers_and_skips_settings():
    found = [t for _, _, t in prose_numbers("AMUN 4.44 ± 2.75 at lr 0.05, 49% vs 41%, 1.84x, 173 s, 0.04 s, 158.2 ms, `12.34` [x](a/1.234.md)")]
    assert found == ["4.44", "2.75", "49%", "41%", "1.84x", "173 s", "0.04 s", "158.2 ms"]
    assert prose_numbers("torch 2.14.1, 3 seeds, 1,000 images, momentum 0.9, arXiv 2512.06993\n## 5.2 Reference models\n```\n12.345\n```") == []
    assert significant_digits("10.0") == 3 and significant_digits("0.05") == 1 and significant_digits("1.0061") == 5


def test_a_wrong_or_undeclared_number_fails(tmp_path):
    good = quotes()[0]
    wrong = Quote(good.doc, MARK.sub(lambda m: "{{" + m.group(1) + "9}}", good.quoted), good.source, good.path, good.fmt)
    with pytest.raises(AssertionError):
        test_quoted_number_is_the_results_files_value(wrong)
    fake = tmp_path / "README.md"
    fake.write_text("AMUN reached 3.14159 here.\n")
    assert [t for _, _, t in prose_numbers(fake.read_text())] == ["3.14159"]
    assert json_value({"a": [{"b/c": 1.5}]}, "/a/0/b~1c") == 1.5 and formatted([1, 2, 3], "len") == "3" and formatted(0.025, ".1%") == "2.5%"
