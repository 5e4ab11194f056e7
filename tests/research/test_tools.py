import json

import pytest

from frontier.errors import ConfigError
from frontier.research.agent import ResearchAgent
from frontier.research.backends import RoutedPages, ToolSettings, build_tools
from frontier.research.report import citations, render_report
from frontier.research.tools import (
    UNAVAILABLE_EVIDENCE,
    GoalLinesExtractor,
    LLMExtractor,
    Page,
    PageUnavailableError,
    PythonTool,
    SearchResult,
    SearchTool,
    ToolArgumentError,
    VisitTool,
)


class FixedSearch:
    def __init__(self, results):
        self.results = results
        self.queries = []

    def search(self, query, k):
        self.queries.append((query, k))
        return self.results[:k]


def test_search_output_is_the_reference_format():
    tool = SearchTool(FixedSearch([SearchResult("France", "doc/fr", "Capital: Paris")]), top_k=5)
    out = tool({"query": ["capital of France", "nothing"]})
    first, second = out.split("\n=======\n")
    assert first == (
        "A Google search for 'capital of France' found 1 results:\n\n## Web Results\n"
        "1. [France](doc/fr)\n\nCapital: Paris"
    )
    assert second.startswith("A Google search for 'nothing'")
    assert tool.backend.queries == [("capital of France", 5), ("nothing", 5)]
    # one string is accepted like the reference; an empty result says so
    assert SearchTool(FixedSearch([]))({"query": "x"}) == "No results found for 'x'. Try with a more general query."
    for bad in ({}, {"query": []}, {"query": [3]}, {"query": [" "]}):
        with pytest.raises(ToolArgumentError):
            tool(bad)


class Pages:
    def read(self, link):
        if link != "doc/fr":
            raise PageUnavailableError(link)
        return Page(link, "France", "Capital: Paris\nPopulation: 68 million\nCurrency: euro")


class Replies:
    """An extractor model replying from a script; records the page length it was shown."""

    name, context_window = "extractor", None

    def __init__(self, replies):
        self.replies, self.page_lengths = list(replies), []

    def complete(self, messages, **kwargs):
        from frontier.research.llm import Completion

        prompt = messages[0]["content"]
        page = prompt.split("## **Webpage Content** \n", 1)[1].split("\n\n## **User Goal**", 1)[0]
        self.page_lengths.append(len(page))
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return Completion(reply, 1, 1, "stop", 0.0)

    def truncate(self, text, max_tokens):
        return text[:max_tokens]


def test_visit_with_the_llm_extractor_and_its_retries():
    good = json.dumps({"rational": "r", "evidence": "Capital: Paris", "summary": "Paris is the capital."})
    llm = Replies(["", "short", f"```json\n{good}\n```"])
    out = VisitTool(Pages(), LLMExtractor(llm, page_tokens=40))({"url": "doc/fr", "goal": "capital"})
    assert out == (
        "The useful information in doc/fr for user goal capital as follows: \n\n"
        "Evidence in page: \nCapital: Paris\n\nSummary: \nParis is the capital."
    )
    # the page was cut to the token budget, then to 70% after each reply under 10 characters
    assert llm.page_lengths == [40, 28, 19]


def test_a_request_refused_as_too_long_shrinks_the_page_and_other_failures_propagate():
    from frontier.research.llm import LLMError, LLMRefusedError

    good = json.dumps({"rational": "r", "evidence": "Capital: Paris", "summary": "Paris is the capital."})
    llm = Replies([LLMRefusedError("400 prompt too long", 400), good])
    out = VisitTool(Pages(), LLMExtractor(llm, page_tokens=40))({"url": "doc/fr", "goal": "capital"})
    assert "Paris is the capital." in out and llm.page_lengths == [40, 28]
    refused = LLMRefusedError("401 bad key", 401)
    with pytest.raises(LLMRefusedError, match="401 bad key"):
        VisitTool(Pages(), LLMExtractor(Replies([refused])))({"url": "doc/fr", "goal": "capital"})
    # An extractor that gives up on one page (after its retries) costs that page only.
    llm = Replies([LLMError("no answer after 10 tries")])
    with pytest.warns(UserWarning, match="could not extract doc/fr"):
        out = VisitTool(Pages(), LLMExtractor(llm))({"url": ["doc/fr", "doc/missing"], "goal": "capital"})
    assert out.count(UNAVAILABLE_EVIDENCE) == 2


def test_visit_failures_give_the_reference_text():
    llm = Replies(["not json at all"] * 4)
    tool = VisitTool(Pages(), LLMExtractor(llm))
    out = tool({"url": ["doc/fr", "doc/missing"], "goal": "capital"})
    assert out.count(UNAVAILABLE_EVIDENCE) == 2 and "\n=======\n" in out
    assert len(llm.page_lengths) == 4  # one extraction and three JSON retries
    with pytest.raises(ToolArgumentError, match="goal"):
        tool({"url": ["doc/fr"]})


def test_goal_lines_extractor_keeps_matching_lines_in_order():
    page = "Intro\nPopulation: 68 million\nCapital: Paris\nCurrency: euro"
    extracted = GoalLinesExtractor()(page, "What is the population and capital?")
    assert extracted["evidence"] == "Population: 68 million\nCapital: Paris"
    # a matching line too long for the budget is skipped, not the end of the evidence
    long_page = "Background: the population " + "and history " * 300 + "\nPopulation: 68 million"
    assert GoalLinesExtractor(max_chars=200)(long_page, "population")["evidence"] == "Population: 68 million"


def test_python_tool_runs_in_the_sandbox():
    from frontier.research.sandbox import SandboxLimits

    tool = PythonTool(SandboxLimits(timeout_s=20))
    assert tool({}, "print(6 * 7)") == "stdout:\n42\n"
    assert tool({}, "open('/etc/passwd').read()").startswith("stderr:\n")
    assert tool({}, None) == "[Python Interpreter Error]: Empty code."


def test_routed_pages_and_tool_assembly():
    pages = RoutedPages(None)
    with pytest.raises(PageUnavailableError, match="web access is off"):
        pages.read("https://example.com")
    with pytest.raises(PageUnavailableError, match="no local corpus"):
        pages.read("doc/fr")
    with pytest.raises(ConfigError, match="something to search"):
        build_tools(None, GoalLinesExtractor())
    tools = build_tools(None, GoalLinesExtractor(), ToolSettings(searxng_url="http://localhost:8888", python=False))
    assert [t.name for t in tools] == ["search", "visit"]


def test_the_weaker_sandbox_is_announced_when_namespaces_are_unavailable(monkeypatch):
    from frontier.research import sandbox

    settings = ToolSettings(searxng_url="http://localhost:8888")
    monkeypatch.setattr(sandbox, "namespace_problem", lambda python=None: "user namespaces are disabled")
    with pytest.warns(RuntimeWarning, match=r"audit hooks only.*\(user namespaces are disabled\)"):
        tools = build_tools(None, GoalLinesExtractor(), settings)
    assert [t.name for t in tools] == ["search", "visit", "PythonInterpreter"]


def _search_visit_answer(scripted_llm, results: list[SearchResult], urls: list[str]):
    """A run that searches (finding `results`), visits `urls` and answers Paris."""
    tools = [SearchTool(FixedSearch(results)), VisitTool(Pages(), GoalLinesExtractor())]
    call = '<tool_call>{{"name": "{}", "arguments": {}}}</tool_call>'
    llm = scripted_llm([
        call.format("search", '{"query": ["capital France"]}'),
        call.format("visit", json.dumps({"url": urls, "goal": "capital"})),
        "<answer>Paris</answer>",
    ])  # fmt: skip
    return ResearchAgent(llm, tools).run("capital of France?")


def test_report_cites_visited_pages_and_answer_bearing_results(scripted_llm):
    results = [SearchResult("France", "doc/fr", "Capital: Paris"), SearchResult("Spain", "doc/es", "x")]
    trajectory = _search_visit_answer(scripted_llm, results, ["doc/es"])
    found = citations(trajectory)
    # doc/es was visited but unreadable: not a source; doc/fr's snippet carries the answer
    assert [(c.link, c.how) for c in found] == [("doc/fr", "search result")]
    report = render_report(trajectory)
    assert "**Answer:** Paris" in report and "[1] France — doc/fr (search result)" in report


def test_report_cites_the_readable_pages_of_a_visit_and_links_with_spaces(scripted_llm):
    results = [SearchResult("Notes", "notes/a (1).md", "Capital: Paris")]
    found = citations(_search_visit_answer(scripted_llm, results, ["doc/missing", "doc/fr"]))
    assert [(c.link, c.how) for c in found] == [("doc/fr", "visited"), ("notes/a (1).md", "search result")]
