"""Evaluate closed-book answers, single-shot RAG and the agent on a question set, like the reference's driver.

Each mode answers every question `rollouts` times; every answer is one JSON line in `<output>/<mode>/rollout<i>.jsonl`
(the trajectory plus the scores), appended as soon as it exists, so a crash or Ctrl-C loses at most the answers in
flight and a rerun skips what is already there. Scores: normalised exact match against the gold answer and its
aliases, token F1, and optionally an LLM judge with the reference's equivalence prompt. The summary reports the
reference's avg@k / best@1 / pass@k with a 95% interval, and the agent's behaviour (calls, tokens, seconds).
"""

from __future__ import annotations

import json
import os
import re
import string
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from frontier.errors import ConfigError, FrontierError
from frontier.io import atomic_write_bytes, atomic_write_json
from frontier.research.agent import ANSWER, ResearchAgent, Step, Trajectory
from frontier.research.llm import ChatLLM, LLMError, LLMRefusedError
from frontier.research.parsing import between
from frontier.research.prompts import CLOSED_BOOK_PROMPT, JUDGE_PROMPT, RAG_PROMPT
from frontier.research.tools import SearchBackend
from frontier.stats import wilson_interval

MODES = ("closed-book", "rag", "agent")


class Question(Protocol):
    id: str
    question: str
    answer: str
    aliases: list[str]


def normalize_answer(text: str) -> str:
    """SQuAD-style: lower case, no accents, punctuation (Unicode's too: ’ –), articles or extra spaces; digit-group
    commas dropped."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = "".join(" " if c in string.punctuation or unicodedata.category(c).startswith("P") else c for c in text)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, golds: Sequence[str]) -> bool:
    """Whether the prediction equals a gold string after `normalize_answer`; a gold that normalises to nothing
    (punctuation only) matches nothing, not the empty prediction."""
    normalized = normalize_answer(prediction)
    return any(normalized == gold for gold in map(normalize_answer, golds) if gold)


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """The best token-overlap F1 of the prediction against any gold string."""
    predicted = normalize_answer(prediction).split()
    best = 0.0
    for gold in golds:
        expected = normalize_answer(gold).split()
        common = sum((Counter(predicted) & Counter(expected)).values())
        if common:
            precision, recall = common / len(predicted), common / len(expected)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


class JudgeError(FrontierError, RuntimeError):
    """The judge's reply says neither Correct nor Incorrect."""


class Judge:
    """An LLM judge with the reference's equivalence prompt: "Correct" or "Incorrect".

    `max_tokens` leaves room for a reasoning model's <think> block, which is dropped before the verdict is read."""

    def __init__(self, llm: ChatLLM, max_tokens: int = 1024) -> None:
        self.llm = llm
        self.max_tokens = max_tokens

    def __call__(self, question: str, gold: str, prediction: str) -> bool:
        prompt = JUDGE_PROMPT.format(question=question, correct_answer=gold, response=prediction)
        reply = self.llm.complete([{"role": "user", "content": prompt}], max_tokens=self.max_tokens, temperature=0.0)
        return judge_verdict(reply.text)


def judge_verdict(reply: str) -> bool:
    """The verdict the prompt asks for: the reply's first word after any <think> block, markdown and punctuation
    aside, is "Correct" or "Incorrect" ("**Incorrect.** The correct answer is …" is Incorrect). Anything else (a
    sentence around the verdict, a reply cut off inside <think>) raises `JudgeError`: unreadable is not wrong, and
    guessing from prose ("Not correct.") would score it wrongly."""
    if reply.rfind("<think>") > reply.rfind("</think>"):
        raise JudgeError(f"the judge's reply ends inside <think> (raise its max_tokens): {reply[-200:]!r}")
    first = re.match(r"[\W_]*([a-z]+)", reply.rsplit("</think>", 1)[-1].lower())
    if first is None or first.group(1) not in ("correct", "incorrect"):
        raise JudgeError(f"the judge's reply does not start with Correct or Incorrect: {reply[-200:]!r}")
    return first.group(1) == "correct"


def _single_turn(llm: ChatLLM, question: str, prompt: str, max_tokens: int, seed: int | None) -> Trajectory:
    """A one-call answer in the agent's record format, so every mode is scored and summarised the same way."""
    messages = [{"role": "user", "content": prompt}]
    completion = llm.complete(messages, max_tokens=max_tokens, seed=seed)
    text = completion.text.strip()
    answer = between(text, "<answer>", "</answer>")
    step = Step(
        "assistant", text, completion.seconds, prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
    )  # fmt: skip
    return Trajectory(
        question=question, prediction=(answer if answer is not None else text).strip(),
        termination=ANSWER if answer is not None else "answer not found",
        messages=[*messages, {"role": "assistant", "content": text}], context=messages, steps=[step], model=llm.name,
        date="", llm_calls=1, prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens,
        seconds=completion.seconds,
    )  # fmt: skip


def closed_book_runner(llm: ChatLLM, max_tokens: int = 256) -> Callable[[str, int | None], Trajectory]:
    def run(question: str, seed: int | None) -> Trajectory:
        return _single_turn(llm, question, CLOSED_BOOK_PROMPT.format(question=question), max_tokens, seed)

    return run


def rag_runner(llm: ChatLLM, backend: SearchBackend, k: int = 5, max_tokens: int = 256):
    """Retrieve the top `k` passages for the question once, then answer from them."""

    def run(question: str, seed: int | None) -> Trajectory:
        results = backend.search(question, k)
        listing = "\n\n".join(f"[{i}] {r.title} ({r.link})\n{r.snippet}" for i, r in enumerate(results, 1))
        prompt = RAG_PROMPT.format(results=listing or "(no results)", question=question)
        trajectory = _single_turn(llm, question, prompt, max_tokens, seed)
        trajectory.tool_calls = {"search": 1}
        return trajectory

    return run


def agent_runner(agent: ResearchAgent):
    def run(question: str, seed: int | None) -> Trajectory:
        return agent.run(question, seed=seed)

    return run


@dataclass
class ModeSummary:
    """Scores and behaviour of one mode over the question set."""

    mode: str
    questions: int
    rollouts: int
    accuracy: float  # avg@k: the mean over rollouts of each rollout's exact-match accuracy
    accuracy_low: float
    accuracy_high: float
    best_at_1: float
    pass_at_k: float
    f1: float
    judge_accuracy: float | None
    llm_calls: float
    tool_calls: float
    tokens: float
    seconds: float
    terminations: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    judge_errors: int = 0  # answers the judge gave no readable verdict on (left out of judge_accuracy)


_APPEND_LOCK = threading.Lock()


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line with a single write, flushed to disk (threads share the lock)."""
    line = json.dumps(record, ensure_ascii=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with _APPEND_LOCK, path.open("a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def drop_cut_line(path: Path) -> None:
    """Remove a last line a crash left without its newline, so the next append starts on a fresh line."""
    if path.exists():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            atomic_write_bytes(path, data[: data.rfind(b"\n") + 1])


def read_records(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a results file; a line cut by a crash (the last one) is ignored and later rewritten."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


SETTINGS_NAME = "settings.json"


def check_run_settings(output: Path, settings: dict[str, Any], answered: bool) -> None:
    """Record in `output` the settings its answers are produced with, and refuse to add answers made with other ones
    (a resumed run would otherwise mix two models or budgets in one score). While no question has an answer (only
    failures: a wrong URL, say) the settings may change."""
    path = output / SETTINGS_NAME
    if not path.exists() or not answered:
        output.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, settings)
        return
    stored = json.loads(path.read_text(encoding="utf-8"))
    changed = sorted(key for key in set(stored) | set(settings) if stored.get(key) != settings.get(key))
    if changed:
        details = ", ".join(f"{key}: {stored.get(key)!r} then, {settings.get(key)!r} now" for key in changed)
        raise ConfigError(
            f"{output} holds answers made with other settings ({details}); rerun with those settings to resume, "
            "or give another --output (also for answers recorded by an older frontier, whose settings differ in form)"
        )


def _judged(judge: Judge | None, question: Question, record: dict[str, Any]) -> LLMRefusedError | None:
    """Add the judge's verdict to an answered record, or the reason there is none (`judge_error`: judged again on
    the next run). Returns a refusal by the judge's endpoint, which the caller raises once the record is saved."""
    if judge is None or record.get("error"):
        return None
    record.pop("judge_error", None)
    try:
        record["judge"] = judge(question.question, question.answer, record["prediction"])
    except (JudgeError, LLMError) as exc:
        record["judge_error"] = f"{type(exc).__name__}: {exc}"
        return exc if isinstance(exc, LLMRefusedError) else None
    return None


def evaluate(
    questions: Sequence[Question], runners: dict[str, Callable[[str, int | None], Trajectory]], output: Path, *,
    rollouts: int = 3, concurrency: int = 1, seed: int = 0, judge: Judge | None = None,
    on_done: Callable[[str, dict[str, Any]], None] | None = None, settings: dict[str, Any] | None = None,
) -> dict[str, ModeSummary]:  # fmt: skip
    """Answer every question with every runner `rollouts` times (skipping answers already in `output`).

    `settings` (JSON values: model, budgets, tools...) are recorded in `output`; answers already there must have
    been made with the same ones (`check_run_settings`)."""
    unknown = set(runners) - set(MODES)
    if unknown:
        raise ConfigError(f"unknown evaluation mode(s) {sorted(unknown)}; choose from {', '.join(MODES)}")
    if rollouts < 1 or concurrency < 1:
        raise ConfigError(f"rollouts and concurrency must be at least 1, got {rollouts} and {concurrency}")
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        raise ConfigError("question ids must be unique; the results files are keyed by them")
    tasks, rejudge = [], []
    for mode in runners:
        for rollout in range(rollouts):
            path = output / mode / f"rollout{rollout}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            drop_cut_line(path)
            latest = {r["id"]: r for r in read_records(path)}
            done = {i for i, r in latest.items() if not r.get("error")}
            tasks += [(mode, rollout, path, q) for q in questions if q.id not in done]
            if judge is not None:  # answers the judge has not scored yet: judged again, not answered again
                rejudge += [(path, q, latest[q.id]) for q in questions if q.id in done and "judge" not in latest[q.id]]

    def work(task) -> None:
        mode, rollout, path, q = task
        start = time.monotonic()
        try:
            trajectory = runners[mode](q.question, seed + 1000 * rollout)
            record = trajectory.to_json()
        except Exception as exc:  # one failed question is recorded and retried on the next run, not fatal
            record = {"question": q.question, "prediction": "[Failed]", "error": f"{type(exc).__name__}: {exc}"}
            record["seconds"] = time.monotonic() - start
        golds = [q.answer, *q.aliases]
        record.update(id=q.id, gold=q.answer, aliases=list(q.aliases), mode=mode, rollout=rollout)
        record["exact_match"] = exact_match(record["prediction"], golds)
        record["f1"] = token_f1(record["prediction"], golds)
        refused = _judged(judge, q, record)
        append_record(path, record)
        if refused is not None:  # a wrong judge key or model name: say so now, the answer itself is kept
            raise refused
        if on_done is not None:
            on_done(mode, record)

    if settings is not None:
        answered = any(not r.get("error") for path in output.glob("*/rollout*.jsonl") for r in read_records(path))
        check_run_settings(output, {**settings, "seed": seed}, answered=answered)

    def judge_again(item) -> None:
        path, q, record = item
        refused = _judged(judge, q, record)
        append_record(path, record)  # the latest record of an answer wins
        if refused is not None:
            raise refused

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for _ in pool.map(judge_again, rejudge):
            pass
        for _ in pool.map(work, tasks):
            pass
    return summarize(output, list(runners), questions, rollouts)


def summarize(
    output: Path, modes: Sequence[str], questions: Sequence[Question], rollouts: int
) -> dict[str, ModeSummary]:
    """Read the results files back and summarise each mode over `questions` (the latest record per answer wins)."""
    wanted = {q.id for q in questions}
    summaries = {}
    for mode in modes:
        by_rollout = []
        for rollout in range(rollouts):
            latest = {r["id"]: r for r in read_records(output / mode / f"rollout{rollout}.jsonl") if r["id"] in wanted}
            by_rollout.append(latest)
        records = [r for rollout in by_rollout for r in rollout.values()]
        if not records:
            continue
        per_question = [
            [float(rollout[q.id]["exact_match"]) for rollout in by_rollout if q.id in rollout] for q in questions
        ]
        per_question = [scores for scores in per_question if scores]
        means = [sum(s) / len(s) for s in per_question]
        # Questions are the sampled unit: a Wilson interval over them, each question's mean over its rollouts
        # counting as one observation (a t-interval over those means collapses at 0% and 100%).
        accuracy, low, high = wilson_interval(sum(means), len(means))
        per_rollout = [
            sum(r["exact_match"] for r in rollout.values()) / len(rollout) for rollout in by_rollout if rollout
        ]
        judged = [r["judge"] for r in records if "judge" in r]

        def mean_of(key, default=0.0, records=records):
            values = [r.get(key, default) for r in records]
            return sum(values) / len(values)

        summaries[mode] = ModeSummary(
            mode=mode, questions=len(per_question), rollouts=rollouts, accuracy=accuracy, accuracy_low=low,
            accuracy_high=high, best_at_1=max(per_rollout),
            pass_at_k=sum(max(s) for s in per_question) / len(per_question),
            f1=mean_of("f1"), judge_accuracy=sum(judged) / len(judged) if judged else None,
            llm_calls=mean_of("llm_calls"),
            tool_calls=sum(sum(r.get("tool_calls", {}).values()) for r in records) / len(records),
            tokens=sum(r.get("prompt_tokens", 0) + r.get("completion_tokens", 0) for r in records) / len(records),
            seconds=mean_of("seconds"), terminations=dict(Counter(r.get("termination", "error") for r in records)),
            errors=sum(1 for r in records if r.get("error")),
            judge_errors=sum(1 for r in records if r.get("judge_error")),
        )  # fmt: skip
    return summaries
