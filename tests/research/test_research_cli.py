"""`frontier research` option wiring: which backends and budgets the flags produce, and one-line errors."""

from __future__ import annotations

import pytest

from frontier.cli import build_parser, main
from frontier.research.backends import IndexSearch, RoutedPages, WebSearch
from frontier.research.cli import build_agent_from_args
from frontier.research.llm import OpenAIChatLLM, parse_llm_spec
from frontier.research.tools import GoalLinesExtractor, LLMExtractor

ENDPOINT = "openai:served-model@http://127.0.0.1:9/v1"  # never contacted: building the agent does not call it


def agent_for(*flags):
    args = build_parser().parse_args(["research", "ask", "a question", "--llm", ENDPOINT, *flags])
    return build_agent_from_args(args, progress=False)


def test_web_flags_pick_the_web_backends():
    agent, backend = agent_for("--web-search", "http://localhost:8888", "--web-visit", "--no-python", "--extractor",
                               "lines")  # fmt: skip
    assert isinstance(backend, WebSearch) and list(agent.tools) == ["search", "visit"]
    visit = agent.tools["visit"]
    assert isinstance(visit.pages, RoutedPages) and visit.pages.web_reader is not None and visit.pages.local is None
    assert isinstance(visit.extractor, GoalLinesExtractor)
    assert isinstance(agent.llm, OpenAIChatLLM) and agent.llm.name == "served-model"


def test_endpoint_defaults_are_the_references(tmp_path):
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "a.md").write_text("# A\n\nSome text.\n")
    assert main(["research", "index", str(corpus), "--output", str(tmp_path / "index")]) == 0
    agent, backend = agent_for("--corpus", str(tmp_path / "index"), "--summarize-at", "0.9")
    assert isinstance(backend, IndexSearch) and list(agent.tools) == ["search", "visit", "PythonInterpreter"]
    assert (agent.budget.max_llm_calls, agent.budget.max_tokens_per_turn) == (100, 10_000)
    assert agent.budget.max_context_tokens == 110 * 1024 and agent.budget.summarize_at == 0.9
    assert (agent.temperature, agent.top_p) == (0.6, 0.95)
    extractor = agent.tools["visit"].extractor
    assert isinstance(extractor, LLMExtractor) and extractor.page_tokens == 95_000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["research", "ask", "q", "--llm", "gpt4"], "expected local, local:PATH or openai:MODEL@BASE_URL"),
        (["research", "ask", "q", "--llm", "openai:model"], "expected openai:MODEL@BASE_URL"),
        (["research", "ask", "  "], "the question is empty"),
        (["research", "ask", "q", "--corpus", "/nonexistent/index"], "frontier research index"),
        (["research", "eval", "--modes", "oracle"], "choose from closed-book, rag, agent"),
        (["research", "ask", "q", "--llm", ENDPOINT, "--device", "cpu"], "--device and --dtype apply to a local model"),
        (["research", "ask", "q", "--device", "tpu"], "device 'tpu' is not a device name"),
        (
            ["research", "sample", "--questions", "q.jsonl", "--split", "test", "--output", "o.jsonl"],
            "--split test is held out for evaluation",
        ),
    ],
)
def test_bad_options_are_one_line_errors(argv, message, capsys):
    assert main(argv) in (1, 2)
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0


def test_research_without_a_command_prints_help(capsys):
    assert main(["research"]) == 2
    assert "index" in capsys.readouterr().out


def test_llm_specs():
    assert parse_llm_spec("local").path is None and parse_llm_spec("local:/m").path == "/m"
    spec = parse_llm_spec("openai:org/model@https://host:8000/v1")
    assert (spec.model, spec.base_url) == ("org/model", "https://host:8000/v1")
