"""The agent with real models: the embedded SmolLM2 in-process, and the same model behind `frontier serve` through the
`openai` backend (the path a vLLM-served Tongyi-DeepResearch takes). SmolLM2 rarely follows the tool format, so these
tests check the plumbing (prompts, stop strings, token accounting, records, CLI), not the answers."""

from __future__ import annotations

import json

import pytest

from frontier.cli import main
from frontier.research.agent import AgentBudget, ResearchAgent
from frontier.research.llm import LocalLLM, OpenAIChatLLM
from frontier.research.tools import GoalLinesExtractor, Page, SearchResult, SearchTool, VisitTool
from frontier.serving import create_app
from frontier.serving.server import serve_in_background

BUDGET = AgentBudget(max_llm_calls=2, max_tokens_per_turn=24)


class OnePage:
    def search(self, query, k):
        return [SearchResult("Mongolia", "doc/mongolia", "Capital: Ulaanbaatar")]

    def read(self, link):
        return Page(link, "Mongolia", "Capital: Ulaanbaatar\nPopulation: 3.3 million")


def tools():
    return [SearchTool(OnePage()), VisitTool(OnePage(), GoalLinesExtractor())]


@pytest.fixture(scope="module")
def served(embedded_model):
    model, tokenizer = embedded_model
    with serve_in_background(create_app(model, tokenizer, "smollm2-test")) as port:
        yield f"http://127.0.0.1:{port}/v1"


def check_run(trajectory, llm_name):
    assert trajectory.model == llm_name
    assert 1 <= trajectory.llm_calls <= 2
    assert trajectory.termination in {"answer", "exceed available llm calls"}
    # the system prompt alone is about 700 tokens: the count is the model's, not an estimate of the reply
    assert trajectory.prompt_tokens > 600 and trajectory.completion_tokens > 0
    assert trajectory.messages[0]["content"].startswith("You are a deep research assistant.")
    json.dumps(trajectory.to_json())


def test_agent_with_the_embedded_model(embedded_model):
    llm = LocalLLM(*embedded_model, name="smollm2")
    check_run(ResearchAgent(llm, tools(), BUDGET).run("What is the capital of Mongolia?", seed=0), "smollm2")


def test_agent_through_the_openai_backend_against_frontier_serve(served):
    llm = OpenAIChatLLM("smollm2-test", served, max_tries=1)
    trajectory = ResearchAgent(llm, tools(), BUDGET).run("What is the capital of Mongolia?", seed=0)
    check_run(trajectory, "smollm2-test")


def test_cli_ask_json_through_an_endpoint(served, capsys, tmp_path, model_cache_dir):
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "mongolia.md").write_text("# Mongolia\n\nThe capital of Mongolia is Ulaanbaatar.\n")
    assert main(["research", "index", str(corpus), "--output", str(tmp_path / "index")]) == 0
    argv = [
        "research", "ask", "What is the capital of Mongolia?", "--llm", f"openai:smollm2-test@{served}",
        "--corpus", str(tmp_path / "index"), "--max-llm-calls", "2", "--max-tokens-per-turn", "24", "--json",
        "--no-python", "--trajectory", str(tmp_path / "runs.jsonl"),
    ]  # fmt: skip
    assert main(argv) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["question"] == "What is the capital of Mongolia?" and record["model"] == "smollm2-test"
    saved = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert saved == [record]
    # without --trajectory the record still lands, in the frontier cache
    default = model_cache_dir / "research" / "trajectories.jsonl"
    before = len(default.read_text().splitlines()) if default.exists() else 0
    assert main(argv[:-2]) == 0
    assert len(default.read_text().splitlines()) == before + 1


def test_cli_eval_is_resumable(served, tmp_path, capsys):
    argv = [
        "research", "eval", "--limit", "2", "--rollouts", "1", "--modes", "closed-book,rag", "--llm",
        f"openai:smollm2-test@{served}", "--max-tokens-per-turn", "12", "--output", str(tmp_path / "out"),
    ]  # fmt: skip
    assert main(argv) == 0
    files = [tmp_path / "out" / mode / "rollout0.jsonl" for mode in ("closed-book", "rag")]
    first = [path.read_text() for path in files]
    assert all(len(text.splitlines()) == 2 for text in first)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(summary) == {"closed-book", "rag"} and summary["rag"]["questions"] == 2
    table = capsys.readouterr().out
    assert "closed-book" in table and "rag" in table
    assert main(argv) == 0  # everything answered already: nothing is asked again
    assert [path.read_text() for path in files] == first


def test_cli_sample_keeps_correct_runs_apart_and_resumes(served, tmp_path, capsys):
    from frontier.research.evalset import DEFAULT_EVAL_SET

    # Shipped questions reworded (sampling refuses the shipped evaluation set itself), split into train and test.
    lines = DEFAULT_EVAL_SET.read_text().splitlines()[:3]
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(
        json.dumps({**json.loads(line), "question": "Tell me: " + json.loads(line)["question"], "split": split}) + "\n"
        for line, split in zip(lines, ["train", "test", "train"], strict=True)
    ))  # fmt: skip
    output = tmp_path / "agent.jsonl"
    argv = [
        "research", "sample", "--questions", str(questions), "--split", "train", "--output", str(output),
        "--rollouts", "1", "--llm", f"openai:smollm2-test@{served}", "--max-llm-calls", "1",
        "--max-tokens-per-turn", "12", "--no-python", "--date", "2026-01-01",
    ]  # fmt: skip
    assert main(argv) == 0
    kept = output.read_text().splitlines() if output.exists() else []
    rejected = (tmp_path / "agent.rejected.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in kept + rejected]
    train_ids = [json.loads(line)["id"] for line in (lines[0], lines[2])]
    assert sorted(r["id"] for r in records) == sorted(train_ids)  # the test question is never sampled
    assert [r["exact_match"] for r in records] == [True] * len(kept) + [False] * len(rejected)
    assert all(r["source"] == "agent" for r in records)
    assert all("2026-01-01" in r["messages"][0]["content"] for r in records)
    assert f"kept {len(kept)} correct runs" in capsys.readouterr().err
    assert main(argv) == 0  # everything sampled already: nothing runs again
    assert "2 done before" in capsys.readouterr().err
    assert main(argv[:4] + argv[6:]) == 2  # no --split on a file with splits
    assert "pass --split train" in capsys.readouterr().err
