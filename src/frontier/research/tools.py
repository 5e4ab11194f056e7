"""The agent's tools under the reference's names, schemas and output texts: search, visit, PythonInterpreter.

Each tool checks its arguments (a bad call becomes an error the model reads, never an exception in the loop) and
returns the text that goes inside `<tool_response>`. Where results come from is pluggable: `search` takes any
`SearchBackend` (the embedded index or a SearXNG endpoint), `visit` any `PageSource` (index documents or http pages).
"""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from frontier.errors import FrontierError
from frontier.research.llm import ChatLLM, LLMError, LLMRefusedError
from frontier.research.parsing import PYTHON_TOOL
from frontier.research.prompts import EXTRACTOR_PROMPT, TOOL_SIGNATURES
from frontier.research.web import PageUnavailableError

# Queries in one `search` call are separated like this in the reference's output (so are pages in one `visit`).
RESULT_SEPARATOR = "\n=======\n"
# The reference's visit: a reply shorter than this is a failed extraction; retry on 70% of the page, 3 times, then on
# this many characters; parse the JSON up to 3 times.
MIN_EXTRACTION_CHARS = 10
SHRINK_FACTOR = 0.7
SHRINK_RETRIES = 3
LAST_RESORT_CHARS = 25_000
JSON_RETRIES = 3
EXTRACTOR_TEMPERATURE = 0.7


class ToolArgumentError(FrontierError, ValueError):
    """The model called a tool with missing or ill-typed arguments; the message goes back to it."""


@dataclass(frozen=True)
class SearchResult:
    title: str
    link: str  # a URL, or a document id for a local corpus (what `visit` accepts)
    snippet: str


@dataclass(frozen=True)
class Page:
    link: str
    title: str
    text: str


class SearchBackend(Protocol):
    def search(self, query: str, k: int) -> list[SearchResult]: ...


class PageSource(Protocol):
    def read(self, link: str) -> Page: ...


class Tool(Protocol):
    name: str
    signature: str  # its line inside <tools> in the system prompt

    def __call__(self, arguments: dict[str, Any], code: str | None = None) -> str: ...


def _string_list(arguments: dict[str, Any], key: str, tool: str) -> list[str]:
    """The reference accepts one string or a list of strings wherever its schema says array."""
    if key not in arguments:
        raise ToolArgumentError(f"Error: Tool {tool} requires the argument {key!r} (a list of strings).")
    value = arguments[key]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ToolArgumentError(f"Error: argument {key!r} of {tool} must be a non-empty list of non-empty strings.")
    return value


class SearchTool:
    """`search(query: list[str])`: the top `top_k` results of each query in the reference's text format."""

    name = "search"
    signature = TOOL_SIGNATURES["search"]

    def __init__(self, backend: SearchBackend, top_k: int = 10) -> None:
        self.backend = backend
        self.top_k = top_k

    def __call__(self, arguments, code=None):
        queries = _string_list(arguments, "query", self.name)
        return RESULT_SEPARATOR.join(self._one(query) for query in queries)

    def _one(self, query: str) -> str:
        results = self.backend.search(query, self.top_k)
        if not results:
            return f"No results found for '{query}'. Try with a more general query."
        lines = [f"{i}. [{r.title}]({r.link})\n\n{r.snippet}" for i, r in enumerate(results, 1)]
        return f"A Google search for '{query}' found {len(lines)} results:\n\n## Web Results\n" + "\n\n".join(lines)


Extractor = Callable[[str, str], "dict[str, str] | None"]


def visit_text(link: str, goal: str, evidence: str, summary: str) -> str:
    """The reference's visit output for one page."""
    return (
        f"The useful information in {link} for user goal {goal} as follows: \n\n"
        f"Evidence in page: \n{evidence}\n\nSummary: \n{summary}\n\n"
    )


# Refusals that mean "the prompt is too long" (400 is how vLLM and OpenAI say it; 413: payload too large).
TOO_LARGE_STATUSES = (400, 413)
UNAVAILABLE_EVIDENCE = "The provided webpage content could not be accessed. Please check the URL or file format."
UNAVAILABLE_SUMMARY = "The webpage content could not be processed, and therefore, no information is available."


class LLMExtractor:
    """The reference's goal-directed extraction: the extractor LLM returns JSON with rational / evidence / summary.

    Pages are first cut to `page_tokens` (the reference uses 95K; a small local model needs far less); a reply under
    10 characters means the page was too long, so the page shrinks to 70% and is retried, as the reference does.
    """

    def __init__(self, llm: ChatLLM, page_tokens: int = 95_000, max_tokens: int = 2048, seed: int | None = None):
        self.llm = llm
        self.page_tokens = page_tokens
        self.max_tokens = max_tokens
        self.seed = seed

    def _ask(self, page: str, goal: str) -> str:
        """The extractor's reply. A request refused as too large counts as an empty reply (the reference's "" on an
        API error), so the page is shrunk and asked again; any other failure (a wrong key or model name, a dead
        endpoint) propagates, since shrinking cannot fix it."""
        prompt = EXTRACTOR_PROMPT.format(webpage_content=page, goal=goal)
        try:
            reply = self.llm.complete(
                [{"role": "user", "content": prompt}], max_tokens=self.max_tokens, temperature=EXTRACTOR_TEMPERATURE,
                seed=self.seed,
            ).text  # fmt: skip
        except LLMRefusedError as exc:
            if exc.status not in TOO_LARGE_STATUSES:
                raise
            return ""
        return reply.replace("```json", "").replace("```", "").strip()

    def __call__(self, page: str, goal: str) -> dict[str, str] | None:
        page = self.llm.truncate(page, self.page_tokens)
        reply = self._ask(page, goal)
        for attempt in range(SHRINK_RETRIES + 1):
            if len(reply) >= MIN_EXTRACTION_CHARS:
                break
            page = page[: int(SHRINK_FACTOR * len(page))] if attempt < SHRINK_RETRIES else page[:LAST_RESORT_CHARS]
            reply = self._ask(page, goal)
        for _ in range(JSON_RETRIES):
            parsed = _json_object(reply)
            if parsed is not None and "evidence" in parsed and "summary" in parsed:
                return {key: str(parsed[key]) for key in ("evidence", "summary")}
            reply = self._ask(page, goal)
        return None


class GoalLinesExtractor:
    """An extractor without a model: the page's lines that share the most words with the goal, in page order.

    For small local models that cannot write the reference's JSON reliably; chosen explicitly (`--extractor
    lines`), never as a silent fallback. Evidence is capped at `max_chars`.
    """

    def __init__(self, max_chars: int = 2000, max_lines: int = 12) -> None:
        self.max_chars = max_chars
        self.max_lines = max_lines

    def __call__(self, page: str, goal: str) -> dict[str, str] | None:
        goal_words = _content_words(goal)
        lines = [line.strip() for line in page.splitlines() if line.strip()]
        scored = sorted(((len(goal_words & _content_words(line)), -i) for i, line in enumerate(lines)), reverse=True)[
            : self.max_lines
        ]
        chosen = sorted(-neg for score, neg in scored if score > 0)
        evidence, size = [], 0
        for i in chosen:
            if size + len(lines[i]) > self.max_chars:
                continue  # a long prose line must not crowd out the short field lines after it
            evidence.append(lines[i])
            size += len(lines[i]) + 1
        if not evidence:
            return {"evidence": "No line of this page mentions the goal's words.", "summary": "Nothing relevant found."}
        return {
            "evidence": "\n".join(evidence),
            "summary": f"{len(evidence)} lines of the page share words with the goal (chosen by word overlap).",
        }


STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "how",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "with",
        "does",
        "do",
        "did",
        "find",
        "information",
        "about",
    ]
)


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS and len(w) > 1}


def _json_object(text: str) -> dict | None:
    """The reply as JSON, or the span from its first `{` to its last `}` (the reference's repair)."""
    for candidate in (text, text[text.find("{") : text.rfind("}") + 1]):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


class VisitTool:
    """`visit(url: list[str], goal: str)`: goal-directed evidence and a summary per page, in the reference's text.

    A page that cannot be read, or whose extraction fails, gets the reference's fixed "could not be accessed" text.
    """

    name = "visit"
    signature = TOOL_SIGNATURES["visit"]

    def __init__(self, pages: PageSource, extractor: Extractor, max_seconds: float = 900.0) -> None:
        self.pages = pages
        self.extractor = extractor
        self.max_seconds = max_seconds

    def __call__(self, arguments, code=None):
        links = _string_list(arguments, "url", self.name)
        goal = arguments.get("goal")
        if not isinstance(goal, str) or not goal.strip():
            raise ToolArgumentError("Error: Tool visit requires the argument 'goal' (a non-empty string).")
        start = time.monotonic()
        parts = []
        for link in links:
            # The reference's 900 s budget per call: later pages are reported as unavailable, not read.
            if time.monotonic() - start > self.max_seconds:
                parts.append(visit_text(link, goal, UNAVAILABLE_EVIDENCE, UNAVAILABLE_SUMMARY))
                continue
            parts.append(self._one(link, goal))
        return RESULT_SEPARATOR.join(parts).strip()

    def _one(self, link: str, goal: str) -> str:
        try:
            page = self.pages.read(link)
        except PageUnavailableError:
            return visit_text(link, goal, UNAVAILABLE_EVIDENCE, UNAVAILABLE_SUMMARY)
        try:
            extracted = self.extractor(page.text, goal)
        except LLMRefusedError:
            raise  # a wrong extractor key or model name: the agent run stops and says so
        except LLMError as exc:  # the extractor gave up on this page after its retries; the call's other pages stay
            warnings.warn(f"visit could not extract {link}: {exc}", stacklevel=2)
            return visit_text(link, goal, UNAVAILABLE_EVIDENCE, UNAVAILABLE_SUMMARY)
        if extracted is None:
            return visit_text(link, goal, UNAVAILABLE_EVIDENCE, UNAVAILABLE_SUMMARY)
        return visit_text(link, goal, extracted["evidence"], extracted["summary"])


class PythonTool:
    """`PythonInterpreter`: runs the `<code>` block in the sandbox; output in the reference's text."""

    name = PYTHON_TOOL
    signature = TOOL_SIGNATURES[PYTHON_TOOL]

    def __init__(self, limits=None) -> None:
        from frontier.research.sandbox import SandboxLimits

        self.limits = limits or SandboxLimits()

    def __call__(self, arguments, code=None):
        from frontier.research.sandbox import format_python_result, run_python

        if code is None or not code.strip():
            return "[Python Interpreter Error]: Empty code."
        return format_python_result(run_python(code, self.limits))
