import dataclasses
import json

import pytest

from frontier.errors import ConfigError
from frontier.research import agent as agent_module
from frontier.research.agent import AgentBudget, ResearchAgent, system_prompt
from frontier.research.prompts import CALLS_EXHAUSTED_MESSAGE, FORCED_ANSWER_PROMPT
from frontier.research.tools import Page, PageUnavailableError, SearchResult, SearchTool, VisitTool

PAGES = {
    "doc/france": Page("doc/france", "France", "Capital: Paris\nPopulation: 68 million\nBorders: Spain, Italy"),
    "doc/spain": Page("doc/spain", "Spain", "Capital: Madrid\nPopulation: 48 million"),
}


class ListSearch:
    def search(self, query, k):
        words = set(query.lower().split())
        hits = [p for p in PAGES.values() if words & {*p.text.lower().replace(",", " ").split(), p.title.lower()}]
        return [SearchResult(p.title, p.link, p.text[:40]) for p in hits[:k]]


class DictPages:
    def read(self, link):
        if link not in PAGES:
            raise PageUnavailableError(link)
        return PAGES[link]


def first_line_extractor(page, goal):
    return {"evidence": page.splitlines()[0], "summary": f"about {goal}"}


def tools():
    return [SearchTool(ListSearch(), top_k=3), VisitTool(DictPages(), first_line_extractor)]


def call(name, **arguments):
    return (
        f"<think>need {name}</think>\n<tool_call>\n"
        + json.dumps({"name": name, "arguments": arguments})
        + "\n</tool_call>"
    )


def test_search_visit_answer_records_the_whole_run(scripted_llm):
    llm = scripted_llm([
        call("search", query=["capital France"]),
        call("visit", url=["doc/france"], goal="capital"),
        "<think>found it</think>\n<answer>Paris</answer>",
    ])  # fmt: skip
    trajectory = ResearchAgent(llm, tools(), date="2026-01-02").run("What is the capital of France?", answer="Paris")
    assert (trajectory.termination, trajectory.prediction, trajectory.llm_calls) == ("answer", "Paris", 3)
    assert trajectory.tool_calls == {"search": 1, "visit": 1}
    roles = [m["role"] for m in trajectory.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user", "assistant"]
    search_response = trajectory.messages[3]["content"]
    assert search_response.startswith("<tool_response>\nA Google search for 'capital France' found")
    assert "1. [France](doc/france)" in search_response and search_response.endswith("\n</tool_response>")
    assert "Evidence in page: \nCapital: Paris" in trajectory.messages[5]["content"]
    assert llm.requests[0]["stop"] == ("\n<tool_response>", "<tool_response>")
    assert llm.requests[0]["messages"][0]["content"].endswith("Current date: 2026-01-02")
    record = json.loads(json.dumps(trajectory.to_json()))
    assert record["answer"] == "Paris" and [s["kind"] for s in record["steps"]] == ["assistant", "tool"] * 2 + [
        "assistant"
    ]
    assert record["prompt_tokens"] > 0 and record["completion_tokens"] > 0
    # The scripted model does not say how its turns ended (like an endpoint): no turn is listed as unsampled.
    assert trajectory.unsampled_ends == [] and record["unsampled_ends"] == []


def test_turns_the_model_ended_itself_are_not_listed(scripted_llm, monkeypatch):
    llm = scripted_llm([call("search", query=["capital France"]), "<answer>Paris</answer>"])
    replies = iter([False, True])  # the tool call was cut at a stop string; the answer ended on EOS
    complete = llm.complete
    monkeypatch.setattr(
        llm, "complete", lambda *a, **k: dataclasses.replace(complete(*a, **k), model_ended=next(replies))
    )
    trajectory = ResearchAgent(llm, tools(), date="2026-01-02").run("What is the capital of France?")
    assert trajectory.unsampled_ends == [2] and [s.model_ended for s in trajectory.steps if s.kind == "assistant"] == [
        False,
        True,
    ]


def test_system_prompt_lists_only_the_agents_tools():
    prompt = system_prompt(tools(), "2026-01-02")
    assert '"name": "search"' in prompt and '"name": "visit"' in prompt
    assert "PythonInterpreter" not in prompt and "google_scholar" not in prompt
    assert prompt.count("<tools>") == 2  # once in the instructions, once opening the list


def test_malformed_turns_and_bad_tools_become_error_responses(scripted_llm):
    llm = scripted_llm([
        "<tool_call>{oops</tool_call>",
        call("browse", url="x"),
        call("search", query=[]),
        call("visit", url=["doc/nowhere"], goal="g"),
        "no tags at all",
        "<answer>done</answer>",
    ])  # fmt: skip
    trajectory = ResearchAgent(llm, tools()).run("q")
    responses = [m["content"] for m in trajectory.messages if m["content"].startswith("<tool_response>")]
    assert "not a valid JSON" in responses[0]
    assert "Error: Tool browse not found" in responses[1]
    assert "non-empty list" in responses[2]
    assert "could not be accessed" in responses[3]
    assert "no tool call or answer" in responses[4]
    assert trajectory.termination == "answer"
    assert [s.error for s in trajectory.steps if s.kind == "tool"] == [True, True, True, False, True]


def test_failing_tool_does_not_end_the_run(scripted_llm):
    class Broken:
        name, signature = "search", "{}"

        def __call__(self, arguments, code=None):
            raise RuntimeError("index is on fire")

    llm = scripted_llm([call("search", query=["x"]), "<answer>a</answer>"])
    trajectory = ResearchAgent(llm, [Broken()]).run("q")
    assert "Error: Tool search failed: RuntimeError: index is on fire" in trajectory.messages[3]["content"]
    assert trajectory.termination == "answer"


def test_call_budget(scripted_llm):
    llm = scripted_llm([call("search", query=["France"])] * 3)
    trajectory = ResearchAgent(llm, tools(), AgentBudget(max_llm_calls=3)).run("q")
    assert trajectory.termination == "exceed available llm calls" and trajectory.llm_calls == 3
    assert trajectory.messages[-1]["content"] == CALLS_EXHAUSTED_MESSAGE


def test_wall_time_budget(monkeypatch, scripted_llm):
    clock = iter(range(0, 1000, 10))
    monkeypatch.setattr(agent_module.time, "monotonic", lambda: next(clock))
    llm = scripted_llm([call("search", query=["France"])] * 10)
    trajectory = ResearchAgent(llm, tools(), AgentBudget(max_seconds=25)).run("q")
    assert trajectory.termination == "timeout" and trajectory.llm_calls < 10


def test_context_cap_forces_an_answer(scripted_llm):
    llm = scripted_llm(
        [call("visit", url=["doc/france"], goal="everything"), "<think>ok</think><answer>Paris</answer>"]
    )
    trajectory = ResearchAgent(llm, tools(), AgentBudget(max_context_tokens=200)).run("q")
    assert trajectory.termination == "generate an answer as token limit reached"
    assert trajectory.prediction == "Paris"
    assert llm.requests[-1]["messages"][-1]["content"] == FORCED_ANSWER_PROMPT
    # the record keeps the tool response the forced turn replaced in the model's context
    assert any("Evidence in page" in m["content"] for m in trajectory.messages)

    llm = scripted_llm([call("visit", url=["doc/france"], goal="everything"), "I give up"])
    trajectory = ResearchAgent(llm, tools(), AgentBudget(max_context_tokens=200)).run("q")
    assert trajectory.termination == "format error: generate an answer as token limit reached"


def test_resum_summarises_and_restarts(scripted_llm):
    summarizer = scripted_llm(["<think>x</think><summary>France's capital is Paris.</summary>"])
    llm = scripted_llm([call("visit", url=["doc/france"], goal="capital"), "<answer>Paris</answer>"])
    budget = AgentBudget(max_context_tokens=2000, summarize_at=0.1)
    trajectory = ResearchAgent(llm, tools(), budget, summarizer=summarizer).run("Capital of France?")
    assert trajectory.termination == "answer"
    assert "Question\nCapital of France?" in summarizer.requests[0]["messages"][0]["content"]
    context = llm.requests[-1]["messages"]
    assert [m["role"] for m in context] == ["system", "user"]
    assert context[1]["content"].startswith("Question: Capital of France?\nBelow is a summary")
    assert "<summary>France's capital is Paris.</summary>" in context[1]["content"]
    assert [s.kind for s in trajectory.steps] == ["assistant", "tool", "summary", "assistant"]


def test_resum_cuts_a_single_message_too_long_for_the_summariser(scripted_llm):
    huge = Page("doc/huge", "Huge", "Capital: Paris. " + "filler " * 6000)
    visit = VisitTool(type("OnePage", (), {"read": lambda self, link: huge})(), lambda page, goal: {
        "evidence": page, "summary": "s"})  # fmt: skip
    summarizer = scripted_llm(["<summary>Paris.</summary>"], context_window=1500)
    llm = scripted_llm([call("visit", url=["doc/huge"], goal="capital"), "<answer>Paris</answer>"])
    budget = AgentBudget(max_context_tokens=40_000, summarize_at=0.1, max_tokens_per_turn=500)
    trajectory = ResearchAgent(llm, [visit], budget, summarizer=summarizer).run("Capital of France?")
    assert trajectory.termination == "answer"
    prompt = summarizer.requests[0]["messages"]
    assert summarizer.count_tokens(prompt) <= 1500 - 500 and "Capital: Paris." in prompt[0]["content"]


def test_a_forced_answer_right_after_resum_keeps_the_question_and_summary(scripted_llm):
    summarizer = scripted_llm(["<summary>" + "France's capital is Paris. " * 200 + "</summary>"])
    llm = scripted_llm([call("visit", url=["doc/france"], goal="capital"), "<answer>Paris</answer>"])
    budget = AgentBudget(max_context_tokens=600, summarize_at=0.1)
    trajectory = ResearchAgent(llm, tools(), budget, summarizer=summarizer).run("Capital of France?")
    assert trajectory.termination == "generate an answer as token limit reached"
    last = llm.requests[-1]["messages"][-1]["content"]
    assert last.startswith("Question: Capital of France?") and last.endswith(FORCED_ANSWER_PROMPT)


def test_a_tool_model_that_refuses_the_request_ends_the_run_with_the_reason(scripted_llm):
    from frontier.research.llm import LLMRefusedError

    def refusing_extractor(page, goal):
        raise LLMRefusedError("extractor at http://x refused the request: 401 bad key", 401)

    llm = scripted_llm([call("visit", url=["doc/france"], goal="capital"), "<answer>Paris</answer>"])
    trajectory = ResearchAgent(llm, [VisitTool(DictPages(), refusing_extractor)]).run("Capital of France?")
    assert trajectory.termination == "llm error" and "401 bad key" in trajectory.error


def test_llm_failure_is_a_termination_not_a_crash(scripted_llm):
    trajectory = ResearchAgent(scripted_llm([]), tools()).run("q")
    assert trajectory.termination == "llm error" and "script exhausted" in trajectory.error


def test_budget_and_window_are_checked(scripted_llm):
    with pytest.raises(ConfigError, match="max_llm_calls"):
        AgentBudget(max_llm_calls=0)
    with pytest.raises(ConfigError, match="summarize_at"):
        AgentBudget(summarize_at=1.5)
    with pytest.raises(ConfigError, match="max-tokens-per-turn"):
        ResearchAgent(scripted_llm([], context_window=8192), tools(), AgentBudget(max_tokens_per_turn=8000))
    agent = ResearchAgent(scripted_llm([], context_window=8192), tools(), AgentBudget(max_tokens_per_turn=512))
    assert agent.context_cap == 8192 - 512
