"""The tantivy corpus index: search, documents, incremental builds, crash safety, re-ranking, the Factbook."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frontier.errors import ConfigError, FrontierError
from frontier.research.index import (
    EMBEDDINGS,
    GENERATIONS_DIR,
    CorpusIndex,
    DocumentNotFoundError,
    IndexCorruptError,
    IndexNotFoundError,
    RerankUnavailableError,
    build_index,
    factbook_index,
)

NOTES = {
    "animals/zebra.md": "# Zebras\n\nZebras have black and white stripes and live on the savanna.\n",
    "animals/owl.md": "# Owls\n\nOwls hunt at night; the barn owl swallows its prey whole.\n",
    "music.txt": "Instruments\nThe xylophone is a percussion instrument made of wooden bars.\n",
    "space.html": "<html><head><title>Moons</title></head><body><p>Jupiter has dozens of moons, "
    "and Ganymede is the largest moon in the solar system.</p></body></html>",
}


def write_corpus(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus", NOTES)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A read-only index over NOTES, shared by the tests that only search."""
    root = tmp_path_factory.mktemp("notes")
    build_index([write_corpus(root / "corpus", NOTES)], root / "index")
    return CorpusIndex.open(root / "index")


def generations(index_dir):
    return sorted(p.name for p in (index_dir / GENERATIONS_DIR).iterdir())


def test_search_finds_a_distinctive_word(built):
    assert (built.documents, len(built)) == (4, 4)
    hits = built.search("xylophone", k=3)
    assert hits[0].doc_id == "music.txt"
    assert hits[0].passage_id == "music.txt#0"
    assert hits[0].title == "Instruments"
    assert "xylophone" in hits[0].snippet
    assert built.search("largest moon of Jupiter")[0].title == "Moons"
    assert built.search("the stripes of a zebra")[0].doc_id == "animals/zebra.md"


def test_snippets_are_bounded(tmp_path):
    long_text = "# Long\n\n" + " ".join(f"filler{n} words here." for n in range(400)) + " needle at the end."
    build_index([write_corpus(tmp_path / "c", {"long.md": long_text})], tmp_path / "index")
    hits = CorpusIndex.open(tmp_path / "index").search("needle")
    assert hits and all(len(hit.snippet) <= 520 for hit in hits)
    assert "needle" in hits[0].snippet


@settings(max_examples=150, deadline=None)
@given(query=st.text(max_size=80))
def test_any_query_string_returns_a_list(built, query):
    assert isinstance(built.search(query), list)


@pytest.mark.parametrize(
    "query",
    ["", "   ", "AND (", 'x"', "title:foo", "NOT", "a OR", "[a TO b]", "*", "\x00", "🙂", "-owl +zebra", "a" * 500],
)
def test_query_syntax_is_not_interpreted(built, query):
    built.search(query)


def test_field_looking_queries_search_the_words(built):
    assert built.search("title:xylophone")[0].doc_id == "music.txt"


def test_document_round_trip_and_unknown_ids(built):
    doc = built.document("animals/owl.md")
    assert (doc.title, doc.text) == ("Owls", NOTES["animals/owl.md"])
    assert doc.source.endswith("/corpus/animals/owl.md")
    with pytest.raises(DocumentNotFoundError, match=r"did you mean 'animals/owl\.md'") as caught:
        built.document("animals/owls.md")
    assert isinstance(caught.value, FrontierError | KeyError)
    assert not str(caught.value).startswith("'")


def test_missing_and_damaged_indexes_say_how_to_build_one(corpus, tmp_path):
    with pytest.raises(IndexNotFoundError, match="frontier research index PATH"):
        CorpusIndex.open(tmp_path / "nowhere")
    build_index([corpus], tmp_path / "index")
    (CorpusIndex.open(tmp_path / "index").generation / "manifest.json").write_text("{not json")
    with pytest.raises(IndexCorruptError, match=r"rebuild it with `frontier research index PATH --output \S+/index`"):
        CorpusIndex.open(tmp_path / "index")


def test_an_empty_corpus_is_a_config_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="nothing to index"):
        build_index([tmp_path / "empty"], tmp_path / "index")


def test_duplicate_passages_are_indexed_once_and_promoted_when_the_first_goes(tmp_path):
    same = "# Shared\n\nAn identical paragraph about quokkas.\n"
    corpus = write_corpus(
        tmp_path / "c",
        {"a.md": same, "b.md": same.replace("identical paragraph", "IDENTICAL \n paragraph"), "c.md": "# C"},
    )
    stats = build_index([corpus], tmp_path / "index")
    assert (stats.documents, stats.passages, stats.duplicates) == (3, 2, 1)
    assert [hit.doc_id for hit in CorpusIndex.open(tmp_path / "index").search("quokkas")] == ["a.md"]
    (corpus / "a.md").unlink()
    stats = build_index([corpus], tmp_path / "index")
    assert (stats.documents, stats.passages, stats.duplicates, stats.removed) == (2, 2, 0, 1)
    assert [hit.doc_id for hit in CorpusIndex.open(tmp_path / "index").search("quokkas")] == ["b.md"]


def test_incremental_builds_touch_only_what_changed(corpus, tmp_path):
    index_dir = tmp_path / "index"
    first = build_index([corpus], index_dir)
    assert (first.added, first.removed, first.unchanged) == (4, 0, 0)
    (corpus / "animals" / "owl.md").write_text("# Owls\n\nOwls can rotate their heads 270 degrees.\n")
    (corpus / "music.txt").unlink()
    (corpus / "new.md").write_text("# Narwhals\n\nThe narwhal has a long tusk.\n")
    (corpus / "picture.png").write_bytes(b"\x89PNG")
    second = build_index([corpus], index_dir)
    assert (second.added, second.removed, second.unchanged, second.documents, second.skipped) == (2, 1, 2, 4, 1)
    index = CorpusIndex.open(index_dir)
    assert index.search("xylophone") == []
    assert index.search("narwhal tusk")[0].doc_id == "new.md"
    assert index.search("rotate heads")[0].doc_id == "animals/owl.md"
    assert index.search("barn swallows") == []
    assert "270 degrees" in index.document("animals/owl.md").text
    assert generations(index_dir) == ["000002"]
    unchanged = build_index([corpus], index_dir)
    assert (unchanged.added, unchanged.removed, unchanged.unchanged) == (0, 0, 4)
    assert generations(index_dir) == ["000002"]  # nothing changed, nothing rewritten


def test_an_index_inside_its_own_corpus_folder_does_not_index_itself(corpus):
    first = build_index([corpus], corpus / "index")
    second = build_index([corpus], corpus / "index")
    assert first.documents == second.documents == 4 and (second.added, second.unchanged) == (0, 4)


def test_unreadable_files_are_reported_and_the_rest_is_indexed(corpus, tmp_path):
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 truncated")
    stats = build_index([corpus], tmp_path / "index")
    assert stats.documents == 4
    assert stats.skipped == 1
    assert [failure.split(":")[0] for failure in stats.failures] == ["broken.pdf"]


def test_progress_reports_every_document(corpus, tmp_path):
    calls = []
    build_index([corpus], tmp_path / "index", progress=lambda stage, done, total: calls.append((stage, done, total)))
    assert calls == [("documents", n, 4) for n in range(1, 5)]


KILLABLE_BUILD = """
import sys, time
from frontier.research.index import build_index

def progress(stage, done, total):
    if done == 3:
        print("indexing", flush=True)
        time.sleep(60)

build_index([sys.argv[1]], sys.argv[2], progress=progress)
"""


def test_a_build_killed_midway_leaves_the_previous_index_usable(corpus, tmp_path):
    index_dir = tmp_path / "index"
    build_index([corpus], index_dir)
    write_corpus(corpus, {f"extra/{n:02d}.md": f"# Extra {n}\n\nPangolin number {n}.\n" for n in range(20)})
    (corpus / "music.txt").unlink()
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILLABLE_BUILD), str(corpus), str(index_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "indexing"  # the new generation is half written now
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert any(name.startswith("tmp-") for name in generations(index_dir))
    index = CorpusIndex.open(index_dir)
    assert index.documents == 4
    assert index.search("xylophone")[0].doc_id == "music.txt"
    assert index.search("pangolin") == []
    stats = build_index([corpus], index_dir)
    assert (stats.added, stats.removed, stats.documents) == (20, 1, 23)
    assert generations(index_dir) == ["000002"]  # the killed build's temp folder is gone
    index = CorpusIndex.open(index_dir)
    assert index.search("pangolin number 7")[0].doc_id == "extra/07.md"
    assert index.search("xylophone") == []


def test_plain_search_never_imports_the_embedding_model(built):
    script = (
        "import sys; from frontier.research.index import CorpusIndex; "
        f"CorpusIndex.open({str(built.generation.parent.parent)!r}).search('owl'); "
        "print(sorted(m for m in ('torch', 'sentence_transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


RERANK_NOTES = {
    # Every note shares only "report" with the query; the cat note is the longest, so BM25 ranks it last.
    "markets.md": "# Note 1\n\nReport: stock markets fell sharply.\n",
    "weather.md": "# Note 2\n\nReport: heavy rain flooded the valley.\n",
    "cat.md": "# Note 3\n\nReport: the feline curled up on the warm windowsill and dozed all afternoon long.\n",
}


def test_rerank_puts_the_paraphrased_passage_first(tmp_path):
    index_dir = tmp_path / "index"
    build_index([write_corpus(tmp_path / "c", RERANK_NOTES)], index_dir)
    with pytest.raises(RerankUnavailableError, match="--rerank"):
        CorpusIndex.open(index_dir, rerank=True)
    stats = build_index([tmp_path / "c"], index_dir, rerank=True)
    assert (stats.added, stats.unchanged) == (0, 3)  # embeddings added, nothing re-read
    embeddings = np.load(CorpusIndex.open(index_dir).generation / EMBEDDINGS)
    assert (embeddings.shape, embeddings.dtype) == ((3, 384), np.float16)
    index = CorpusIndex.open(index_dir, rerank=True)
    query = "report about a sleeping kitten"
    assert index.search(query, rerank=False)[-1].doc_id == "cat.md"
    reranked = index.search(query)
    assert reranked[0].doc_id == "cat.md"
    assert len(reranked) == 3


@pytest.fixture(scope="module")
def factbook(tmp_path_factory):
    return factbook_index(tmp_path_factory.mktemp("cache"))


def test_factbook_index_answers_country_questions(factbook):
    assert (factbook.documents, factbook.passages > 5000) == (256, True)
    assert factbook.generation.parent.parent.name == "factbook-0.1.2"
    hits = factbook.search("capital of France", k=5)
    assert hits[0].doc_id == "factbook/europe/fr"
    assert any("Paris" in hit.snippet for hit in hits)
    assert factbook.search("Mongolia population")[0].title.startswith("Mongolia")
    france = factbook.document("factbook/europe/fr")
    assert "Government > Capital > name: Paris" in france.text
    assert "Belgium 556 km" in france.text


def test_factbook_index_is_built_once(factbook):
    again = factbook_index(factbook.generation.parent.parent.parent.parent)
    assert again.generation == factbook.generation
