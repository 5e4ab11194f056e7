"""The research agent over the embedded CIA World Factbook: retrieval speed and quality, and closed-book vs
single-shot RAG vs the ReAct agent on the shipped multi-hop question set, with the embedded SmolLM2-135M.

The issue's targets: index build ≤ 60 s and retrieval p50 ≤ 20 ms on 2 cores. Accuracy is reported as measured; the
paper's numbers come from a 30B-A3B model trained for this format, which a 135M instruct model is not.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from frontier.reproduce.plots import bar_chart
from frontier.reproduce.registry import ClaimRow, ExperimentResult, Measurement, RunContext, Verdict, experiment

SOURCE = "issue 5; ../shared/anchors/deepresearch.md"
BUILD_TARGET_S = 60.0
P50_TARGET_MS = 20.0


@dataclass(frozen=True)
class Scale:
    closed_book_questions: int
    rag_questions: int
    agent_questions: int
    rollouts: int
    agent_llm_calls: int
    agent_tokens_per_turn: int
    answer_tokens: int  # closed-book and RAG: the answer is a name or a number


QUICK = Scale(closed_book_questions=8, rag_questions=8, agent_questions=2, rollouts=1, agent_llm_calls=3,
              agent_tokens_per_turn=128, answer_tokens=64)  # fmt: skip
FULL = Scale(closed_book_questions=200, rag_questions=200, agent_questions=50, rollouts=3, agent_llm_calls=8,
             agent_tokens_per_turn=512, answer_tokens=256)  # fmt: skip


def retrieval_queries() -> list[str]:
    """Questions of the shipped set, and short keyword queries a model writes ("capital of X", "X population")."""
    from frontier.research.evalset import DEFAULT_EVAL_SET, read_eval_set
    from frontier.research.knowledge import knowledge_graph

    questions = [q.question for q in read_eval_set(DEFAULT_EVAL_SET)]
    countries = sorted(c.name for c in knowledge_graph().countries())
    keywords = [f"capital of {name}" for name in countries[::2]] + [f"{name} population" for name in countries[1::2]]
    return questions + keywords


@experiment(
    "research-retrieval", "Factbook index: build time, query latency, and whether the evidence is found", "research"
)
def retrieval(ctx: RunContext) -> ExperimentResult:
    from frontier.research.corpus import factbook_documents
    from frontier.research.evalset import DEFAULT_EVAL_SET, read_eval_set
    from frontier.research.index import CorpusIndex, build_index

    command = "frontier reproduce --only research-retrieval" + ("" if ctx.quick else " --full")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        stats = build_index([], Path(tmp) / "index", documents=factbook_documents())
        build_s = time.perf_counter() - started
        index = CorpusIndex.open(Path(tmp) / "index")
        queries = retrieval_queries()
        for query in queries[:20]:  # warm the reader and the OS cache
            index.search(query, 10)
        latencies = []
        for query in queries:
            started = time.perf_counter()
            index.search(query, 10)
            latencies.append(1000 * (time.perf_counter() - started))
        questions = read_eval_set(DEFAULT_EVAL_SET)
        recall = {k: 0 for k in (1, 5, 10)}
        all_found = 0  # every supporting document in the top 10: what answering in one retrieval needs
        for q in questions:
            found = [hit.doc_id for hit in index.search(q.question, 10)]
            for k in recall:
                recall[k] += any(doc in q.doc_ids for doc in found[:k])
            all_found += all(doc in found for doc in q.doc_ids)
    p50, p95 = statistics.median(latencies), statistics.quantiles(latencies, n=20)[-1]
    rows = [
        ClaimRow(
            claim=f"The Factbook index builds in ≤ {BUILD_TARGET_S:.0f} s on 2 cores",
            measured=f"{build_s:.1f} s for {stats.documents} documents, {stats.passages} passages "
                     f"({stats.duplicates} duplicates dropped)",
            verdict=Verdict.PASS if build_s <= BUILD_TARGET_S else Verdict.FAIL, command=command, source=SOURCE,
        ),
        ClaimRow(
            claim=f"Retrieval p50 ≤ {P50_TARGET_MS:.0f} ms per query (top 10, BM25)",
            measured=f"p50 {p50:.2f} ms, p95 {p95:.2f} ms over {len(latencies)} queries",
            verdict=Verdict.PASS if p50 <= P50_TARGET_MS else Verdict.FAIL, command=command, source=SOURCE,
        ),
        ClaimRow(
            claim="Single-shot retrieval with the whole question as the query: how often it finds the evidence",
            measured="any supporting document: "
                     + ", ".join(f"R@{k} {100 * v / len(questions):.1f}%" for k, v in recall.items())
                     + f"; all of them in the top 10: {100 * all_found / len(questions):.1f}% (n={len(questions)})",
            verdict=Verdict.NOT_COMPARABLE, command=command, source=SOURCE,
            detail="the gap between 'any' and 'all' is what a multi-hop question needs further searches for",
        ),
    ]  # fmt: skip
    metrics = {"build_s": build_s, "index": asdict(stats), "latency_ms": {"p50": p50, "p95": p95, "all": latencies},
               "recall_any_support": {str(k): v / len(questions) for k, v in recall.items()},
               "recall_all_support_at_10": all_found / len(questions)}  # fmt: skip
    return ExperimentResult(rows=rows, metrics=metrics, seed=ctx.seed)


@experiment(
    "research-agent", "Closed-book vs single-shot RAG vs the ReAct agent on Factbook multi-hop questions", "research"
)
def agent_accuracy(ctx: RunContext) -> ExperimentResult:
    from frontier.research.agent import AgentBudget, ResearchAgent
    from frontier.research.backends import IndexSearch, ToolSettings, build_tools
    from frontier.research.evalset import DEFAULT_EVAL_SET, read_eval_set
    from frontier.research.evaluation import agent_runner, closed_book_runner, evaluate, rag_runner
    from frontier.research.index import factbook_index
    from frontier.research.llm import LocalLLM
    from frontier.research.tools import LLMExtractor

    command = "frontier reproduce --only research-agent" + ("" if ctx.quick else " --full")
    scale = QUICK if ctx.quick else FULL
    questions = read_eval_set(DEFAULT_EVAL_SET)
    llm = LocalLLM.load(progress=ctx.progress)
    index = factbook_index()
    tools = build_tools(index, LLMExtractor(llm, page_tokens=3000), ToolSettings(python=False))
    budget = AgentBudget(max_llm_calls=scale.agent_llm_calls, max_tokens_per_turn=scale.agent_tokens_per_turn)
    agent = ResearchAgent(llm, tools, budget)
    runs = {
        "closed-book": (closed_book_runner(llm, scale.answer_tokens), scale.closed_book_questions),
        "rag": (rag_runner(llm, IndexSearch(index), k=5, max_tokens=scale.answer_tokens), scale.rag_questions),
        "agent": (agent_runner(agent), scale.agent_questions),
    }
    output = ctx.out_dir / "research-agent"
    summaries = {}
    for mode, (runner, count) in runs.items():
        summaries |= evaluate(questions[:count], {mode: runner}, output, rollouts=scale.rollouts, seed=ctx.seed)
    rows = []
    for mode, s in summaries.items():
        rows.append(ClaimRow(
            claim=f"{mode}: exact-match accuracy of SmolLM2-135M-Instruct on Factbook multi-hop questions",
            measured=str(Measurement(round(100 * s.accuracy, 2), "%", round(100 * s.accuracy_low, 2),
                                     round(100 * s.accuracy_high, 2), s.questions))
                     + f"; F1 {100 * s.f1:.1f}%, {s.llm_calls:.1f} calls, {s.tool_calls:.1f} tool calls, "
                     f"{s.tokens:.0f} tokens, {s.seconds:.1f} s per question; ended by {s.terminations}",
            verdict=Verdict.NOT_COMPARABLE, command=command, source=SOURCE,
            detail="the paper's agent is a 30B-A3B model trained on this format; this base model is not",
        ))  # fmt: skip
    agent_s, rag_s = summaries["agent"], summaries["rag"]
    rows.append(ClaimRow(
        claim="The agent beats single-shot RAG (95% intervals apart)",
        measured=f"agent {100 * agent_s.accuracy:.1f}% [{100 * agent_s.accuracy_low:.1f}, "
                 f"{100 * agent_s.accuracy_high:.1f}] vs RAG {100 * rag_s.accuracy:.1f}% "
                 f"[{100 * rag_s.accuracy_low:.1f}, {100 * rag_s.accuracy_high:.1f}]",
        verdict=Verdict.PASS if agent_s.accuracy_low > rag_s.accuracy_high else Verdict.FAIL, command=command,
        source=SOURCE, detail="the base agent is expected to fail this; the agentic-training issue trains it",
    ))  # fmt: skip
    figure = ctx.figure_path("research-agent", "accuracy")
    bar_chart(figure, list(summaries), [100 * s.accuracy for s in summaries.values()], "exact match (%)",
              "SmolLM2-135M on Factbook multi-hop questions")  # fmt: skip
    metrics = {mode: asdict(s) for mode, s in summaries.items()}
    return ExperimentResult(rows=rows, metrics=metrics, figures=[str(figure.relative_to(ctx.out_dir))],
                            config={"scale": asdict(scale)}, seed=ctx.seed)  # fmt: skip
