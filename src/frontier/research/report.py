"""The end of a run as a reader wants it: the answer, and numbered citations of the sources the agent used."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from frontier.research.agent import Trajectory
from frontier.research.evaluation import normalize_answer
from frontier.research.tools import RESULT_SEPARATOR, UNAVAILABLE_EVIDENCE

# A search result line in the reference's format: "1. [title](link)"; a link (a document id) may hold spaces and
# parentheses, so it runs to the line's last ")".
RESULT_LINE = re.compile(r"^\d+\. \[(?P<title>.*)\]\((?P<link>.*)\)$", re.MULTILINE)


@dataclass(frozen=True)
class Citation:
    link: str
    title: str
    how: str  # "visited", or "search result" when only a result's snippet carried the answer


def citations(trajectory: Trajectory) -> list[Citation]:
    """Pages the agent visited, in order, then search results whose snippet contains the answer; no duplicates."""
    titles: dict[str, str] = {}
    found: list[Citation] = []
    seen: set[str] = set()
    steps = trajectory.steps
    for step, result in itertools.pairwise(steps):
        if step.kind not in ("assistant", "forced_answer") or result.kind != "tool" or result.error:
            continue
        if step.tool == "search":
            for match in RESULT_LINE.finditer(result.content):
                titles.setdefault(match["link"], match["title"])
        elif step.tool == "visit":
            links = step.arguments.get("url", [])
            # One part per page; a page that could not be read is not cited, the call's other pages are.
            parts = result.content.split(RESULT_SEPARATOR)
            for link in [links] if isinstance(links, str) else links:
                part = next((p for p in parts if p.startswith(f"The useful information in {link} for")), "")
                if link not in seen and part and UNAVAILABLE_EVIDENCE not in part:
                    seen.add(link)
                    found.append(Citation(link, titles.get(link, link), "visited"))
    answer = normalize_answer(trajectory.prediction)
    if answer:
        for step in steps:
            if step.kind != "tool" or step.tool != "search":
                continue
            for block in re.split(r"\n(?=\d+\. \[)", step.content):
                match = RESULT_LINE.search(block)
                if match and match["link"] not in seen and answer in normalize_answer(block):
                    seen.add(match["link"])
                    found.append(Citation(match["link"], match["title"], "search result"))
    return found


def render_report(trajectory: Trajectory) -> str:
    """Markdown: the answer, how the run ended, and the numbered sources."""
    lines = [f"**Answer:** {trajectory.prediction or '(none)'}", ""]
    tools = ", ".join(f"{name} ×{count}" for name, count in sorted(trajectory.tool_calls.items())) or "no tools"
    lines.append(
        f"{trajectory.llm_calls} model calls ({tools}), {trajectory.prompt_tokens + trajectory.completion_tokens} "
        f"tokens, {trajectory.seconds:.1f} s; ended by: {trajectory.termination}"
    )
    sources = citations(trajectory)
    if sources:
        lines += ["", "Sources:"]
        lines += [f"[{i}] {c.title} — {c.link} ({c.how})" for i, c in enumerate(sources, 1)]
    return "\n".join(lines)
