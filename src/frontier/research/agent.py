"""The ReAct loop of Tongyi DeepResearch (`inference/react_agent.py`), with budgets, ReSum and a trajectory record.

    messages = [system prompt + tools + date, question]
    repeat: the model writes <think>…</think> then <tool_call>…</tool_call> or <answer>…</answer>
            a tool call runs and its result comes back as a user turn <tool_response>…</tool_response>
    until an answer, or a budget runs out: LLM calls, wall time, or context tokens

Past the context cap the reference replaces the last turn with an instruction to answer now and makes one final call;
with `summarize_at` set, ReSum first compresses the history into a summary and restarts from it. Nothing the model
writes can crash the loop: malformed turns and failing tools become error tool responses.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from frontier.errors import ConfigError
from frontier.research.llm import DEFAULT_TEMPERATURE, DEFAULT_TOP_P, ChatLLM, LLMError, LLMRefusedError
from frontier.research.parsing import Turn, between, parse_turn
from frontier.research.prompts import (
    CALLS_EXHAUSTED_MESSAGE,
    FORCED_ANSWER_PROMPT,
    RESUM_RESTART_PROMPT,
    RESUM_SUMMARY_PROMPT,
    RESUM_SUMMARY_PROMPT_WITH_LAST,
    SYSTEM_PROMPT_HEAD,
    SYSTEM_PROMPT_TAIL,
)
from frontier.research.tools import Tool, ToolArgumentError

STOP_SEQUENCES = ("\n<tool_response>", "<tool_response>")

# Termination reasons, as the reference names them (plus timeout and llm error, which it reports differently).
ANSWER = "answer"
FORCED_ANSWER = "generate an answer as token limit reached"
FORCED_FORMAT_ERROR = "format error: generate an answer as token limit reached"
CALLS_EXHAUSTED = "exceed available llm calls"
NO_ANSWER = "answer not found"
TIMEOUT = "timeout"
LLM_ERROR = "llm error"
# Room left beside a truncated message in the summary prompt: it is written as a dict repr, which adds a few tokens.
SUMMARY_MARGIN_TOKENS = 64


@dataclass(frozen=True)
class AgentBudget:
    """Limits of one run; the defaults are the reference's (100 calls, 10K tokens a turn, 150 min, 110K context)."""

    max_llm_calls: int = 100
    max_tokens_per_turn: int = 10_000
    max_seconds: float = 150 * 60
    max_context_tokens: int = 110 * 1024
    summarize_at: float | None = None  # ReSum at this fraction of the context cap; None: only the forced answer

    def __post_init__(self) -> None:
        for name in ("max_llm_calls", "max_tokens_per_turn", "max_context_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"AgentBudget.{name} must be at least 1, got {getattr(self, name)}")
        if self.max_seconds <= 0:
            raise ConfigError(f"AgentBudget.max_seconds must be positive, got {self.max_seconds}")
        if self.summarize_at is not None and not 0 < self.summarize_at < 1:
            raise ConfigError(f"AgentBudget.summarize_at must be in (0, 1), got {self.summarize_at}")


@dataclass
class Step:
    """One event of a run, for the live view and the trajectory: a model turn, a tool result, or a summary."""

    kind: str  # "assistant", "tool", "summary", "forced_answer"
    content: str
    seconds: float
    think: str | None = None
    tool: str | None = None
    arguments: dict[str, Any] | None = None
    code: str | None = None
    error: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    context_tokens: int | None = None
    model_ended: bool | None = None  # a model turn: whether the model sampled its end-of-turn token


@dataclass
class Trajectory:
    """Everything about one run; `to_json()` is one line of the trajectory JSONL the training pipeline reads.

    `messages` is the whole conversation in order, summaries included (as the user turns that restarted it);
    `context` is the last context the model saw.
    """

    question: str
    prediction: str
    termination: str
    messages: list[dict[str, str]]
    context: list[dict[str, str]]
    steps: list[Step]
    model: str
    date: str
    llm_calls: int = 0
    tool_calls: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    answer: str | None = None  # the gold answer, when the question came from an evaluation set
    # Indices into `context` (not `messages`) of the assistant turns whose end-of-turn token the model did not sample
    # (a stop string or the token limit ended them): RL and SFT learn from `context` and leave that token unlearned.
    unsampled_ends: list[int] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def system_prompt(tools: list[Tool], date: str) -> str:
    """The reference's system prompt with only the tools this agent really has."""
    signatures = "\n".join(t.signature for t in tools)
    return f"{SYSTEM_PROMPT_HEAD}<tools>\n{signatures}\n</tools>{SYSTEM_PROMPT_TAIL}{date}"


class ResearchAgent:
    """Answers a question with `llm` and `tools`; `summarizer` (default: the same model) writes ReSum summaries."""

    def __init__(
        self, llm: ChatLLM, tools: list[Tool], budget: AgentBudget = AgentBudget(), *,
        temperature: float = DEFAULT_TEMPERATURE, top_p: float = DEFAULT_TOP_P, summarizer: ChatLLM | None = None,
        date: str | None = None,
    ) -> None:  # fmt: skip
        names = [t.name for t in tools]
        if len(set(names)) != len(names):
            raise ConfigError(f"tool names must be unique, got {names}")
        self.llm = llm
        self.tools = {t.name: t for t in tools}
        self.budget = budget
        self.temperature = temperature
        self.top_p = top_p
        self.summarizer = summarizer or llm
        self.date = date or datetime.date.today().strftime("%Y-%m-%d")
        self.context_cap = budget.max_context_tokens
        if llm.context_window is not None:
            # Leave room for one full turn after the last check.
            self.context_cap = min(self.context_cap, llm.context_window - budget.max_tokens_per_turn)
            if self.context_cap < 1024:
                raise ConfigError(
                    f"{llm.name} attends to {llm.context_window} tokens, which leaves {self.context_cap} for the "
                    f"conversation after a {budget.max_tokens_per_turn}-token turn; lower --max-tokens-per-turn"
                )

    def run(
        self, question: str, *, answer: str | None = None, seed: int | None = None,
        on_step: Callable[[Step], None] | None = None,
    ) -> Trajectory:  # fmt: skip
        run = _Run(self, question, answer, seed, on_step)
        run.loop()
        return run.trajectory


class _Run:
    """The state of one question: kept apart from the agent so one agent can answer many questions at once."""

    def __init__(self, agent: ResearchAgent, question: str, answer, seed, on_step) -> None:
        self.agent = agent
        self.seed = seed
        self.on_step = on_step
        self.start = time.monotonic()
        self.calls_left = agent.budget.max_llm_calls
        self.summary: str | None = None
        context = [
            {"role": "system", "content": system_prompt(list(agent.tools.values()), agent.date)},
            {"role": "user", "content": question},
        ]
        self.trajectory = Trajectory(
            question=question, prediction="", termination=NO_ANSWER, messages=list(context), context=context,
            steps=[], model=agent.llm.name, date=agent.date, answer=answer,
        )  # fmt: skip

    @property
    def context(self) -> list[dict[str, str]]:
        return self.trajectory.context

    def _append(self, role: str, content: str) -> None:
        message = {"role": role, "content": content}
        self.context.append(message)
        self.trajectory.messages.append(dict(message))

    def _emit(self, step: Step) -> None:
        self.trajectory.steps.append(step)
        if self.on_step is not None:
            self.on_step(step)

    def _call(self, messages, kind: str) -> tuple[Turn, Step]:
        budget = self.agent.budget
        completion = self.agent.llm.complete(
            messages, max_tokens=budget.max_tokens_per_turn, stop=STOP_SEQUENCES, temperature=self.agent.temperature,
            top_p=self.agent.top_p, seed=None if self.seed is None else self.seed + self.trajectory.llm_calls,
        )  # fmt: skip
        self.trajectory.llm_calls += 1
        self.trajectory.prompt_tokens += completion.prompt_tokens
        self.trajectory.completion_tokens += completion.completion_tokens
        turn = parse_turn(completion.text)
        call = turn.tool_call
        step = Step(
            kind, turn.content, completion.seconds, think=turn.think, tool=call.name if call else None,
            arguments=call.arguments if call else None, code=call.code if call else None,
            prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens,
            model_ended=completion.model_ended,
        )  # fmt: skip
        return turn, step

    def _append_turn(self, turn: Turn, step: Step) -> None:
        self._append("assistant", turn.content)
        if step.model_ended is False:
            self.trajectory.unsampled_ends.append(len(self.context) - 1)

    def _finish(self, termination: str, prediction: str = "") -> None:
        self.trajectory.termination = termination
        self.trajectory.prediction = prediction
        self.trajectory.seconds = time.monotonic() - self.start

    def loop(self) -> None:
        try:
            self._loop()
        except LLMError as exc:
            self.trajectory.error = str(exc)
            self._finish(LLM_ERROR)

    def _loop(self) -> None:
        budget = self.agent.budget
        while self.calls_left > 0:
            if time.monotonic() - self.start > budget.max_seconds:
                return self._finish(TIMEOUT)
            self.calls_left -= 1
            turn, step = self._call(self.context, "assistant")
            self._append_turn(turn, step)
            self._emit(step)
            if turn.answer is not None:
                return self._finish(ANSWER, turn.answer)
            self._append("user", "<tool_response>\n" + self._act(turn) + "\n</tool_response>")
            if self.calls_left == 0:
                # The reference overwrites the last turn so the record shows why the run stopped.
                self.context[-1]["content"] = CALLS_EXHAUSTED_MESSAGE
                self.trajectory.messages[-1]["content"] = CALLS_EXHAUSTED_MESSAGE
                return self._finish(CALLS_EXHAUSTED)
            tokens = self.agent.llm.count_tokens(self.context)
            self.trajectory.steps[-1].context_tokens = tokens
            if budget.summarize_at is not None and tokens >= budget.summarize_at * self.agent.context_cap:
                tokens = self._summarize(tokens)
            if tokens > self.agent.context_cap:
                return self._forced_answer()
        self._finish(NO_ANSWER)

    def _act(self, turn: Turn) -> str:
        """Run the turn's tool call; the text for the tool response, errors included."""
        start = time.monotonic()
        call = turn.tool_call
        if call is None:
            result, error, name = turn.error, True, None
        else:
            name = call.name
            tool = self.agent.tools.get(name)
            error = True
            if tool is None:
                result = f"Error: Tool {name} not found"
            else:
                self.trajectory.tool_calls[name] = self.trajectory.tool_calls.get(name, 0) + 1
                try:
                    result, error = tool(call.arguments, call.code), False
                except ToolArgumentError as exc:
                    result = str(exc)
                except LLMRefusedError as exc:  # a tool's model refused the request (wrong key or name)
                    self._emit(Step("tool", f"Error: Tool {name} failed: {exc}", time.monotonic() - start, tool=name,
                                    error=True))  # fmt: skip
                    raise  # the run ends with the reason
                except Exception as exc:  # a failing backend must not end the run; the model can try otherwise
                    result = f"Error: Tool {name} failed: {type(exc).__name__}: {exc}"
        self._emit(Step("tool", result, time.monotonic() - start, tool=name, error=error))
        return result

    def _summarize(self, tokens: int) -> int:
        """ReSum: compress the conversation so far into a summary and restart from it; the new context size."""
        start = time.monotonic()
        summarizer = self.agent.summarizer
        reply_tokens = min(4096, self.agent.budget.max_tokens_per_turn)
        room = (summarizer.context_window or self.agent.context_cap + reply_tokens) - reply_tokens
        history = self.context[2:]
        prompt = self._summary_prompt(history)
        # The summariser may not fit the whole history: drop the oldest turns (the previous summary stays).
        while len(history) > 1 and summarizer.count_tokens([{"role": "user", "content": prompt}]) > room:
            history = history[1:]
            prompt = self._summary_prompt(history)
        if history and summarizer.count_tokens([{"role": "user", "content": prompt}]) > room:
            # One message alone is too long (a huge tool response): keep its beginning, whatever fits.
            fixed = summarizer.count_tokens([{"role": "user", "content": self._summary_prompt([])}])
            message = history[0]
            kept = summarizer.truncate(message["content"], max(room - fixed - SUMMARY_MARGIN_TOKENS, 0))
            history = [{**message, "content": kept}]
            prompt = self._summary_prompt(history)
        reply = summarizer.complete(
            [{"role": "user", "content": prompt}], max_tokens=reply_tokens, temperature=DEFAULT_TEMPERATURE,
            top_p=DEFAULT_TOP_P, seed=self.seed,
        )  # fmt: skip
        text = reply.text.split("</think>", 1)[-1]
        summary = between(text, "<summary>", "</summary>")
        summary = (summary if summary is not None else text).strip()
        self._emit(Step("summary", summary, time.monotonic() - start, prompt_tokens=reply.prompt_tokens))
        if not summary:
            return tokens
        self.summary = f"<summary>{summary}</summary>"
        self.context[:] = self.context[:1]
        self.trajectory.unsampled_ends.clear()  # they indexed the context just dropped
        self._append("user", RESUM_RESTART_PROMPT.format(question=self.trajectory.question, summary=self.summary))
        return self.agent.llm.count_tokens(self.context)

    def _summary_prompt(self, history: list[dict[str, str]]) -> str:
        template = RESUM_SUMMARY_PROMPT if self.summary is None else RESUM_SUMMARY_PROMPT_WITH_LAST
        # The reference fills {{{name}}} markers with str.replace; the history is each message's dict repr.
        return (
            template.replace("{{{question}}}", self.trajectory.question)
            .replace("{{{last_summary}}}", self.summary or "")
            .replace("{{{recent_history_messages}}}", "\n".join(str(m) for m in history))
        )

    def _forced_answer(self) -> None:
        """The reference's last resort: replace the last turn with "answer now" and make one final call. Right after
        a ReSum restart the last turn holds the question and the summary, so "answer now" is added to it instead."""
        restarted = self.summary is not None and len(self.context) == 2
        last = self.context[-1]
        last["content"] = f"{last['content']}\n\n{FORCED_ANSWER_PROMPT}" if restarted else FORCED_ANSWER_PROMPT
        self.trajectory.messages.append({"role": "user", "content": FORCED_ANSWER_PROMPT})
        turn, step = self._call(self.context, "forced_answer")
        self._append_turn(turn, step)
        self._emit(step)
        if turn.answer is not None:
            return self._finish(FORCED_ANSWER, turn.answer)
        self._finish(FORCED_FORMAT_ERROR, turn.content)
