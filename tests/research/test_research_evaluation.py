import json
from dataclasses import dataclass, field

import pytest

from frontier.errors import ConfigError
from frontier.research.agent import ResearchAgent
from frontier.research.evaluation import (
    Judge,
    JudgeError,
    agent_runner,
    closed_book_runner,
    evaluate,
    exact_match,
    judge_verdict,
    normalize_answer,
    rag_runner,
    read_records,
    token_f1,
)
from frontier.research.tools import SearchResult


@dataclass
class Q:
    id: str
    question: str
    answer: str
    aliases: list[str] = field(default_factory=list)


def test_normalisation_and_scores():
    assert normalize_answer("  The São Tomé!  ") == "sao tome"
    assert normalize_answer("68,374,591") == "68374591"
    assert exact_match("the Czech Republic", ["Czechia", "Czech Republic"])
    assert not exact_match("Paris, France", ["Paris"])
    assert token_f1("Paris, France", ["Paris"]) == pytest.approx(2 / 3)
    assert token_f1("", ["Paris"]) == 0.0
    assert exact_match("Cote d’Ivoire", ["Cote d'Ivoire"]) and exact_match("Guinea–Bissau", ["Guinea-Bissau"])
    assert not exact_match("", ["Paris", "-"])  # a gold of punctuation only matches nothing


def test_judge_verdicts_are_read_or_refused():
    assert judge_verdict("**Correct**") and judge_verdict("<think>is it incorrect? no</think>\nCorrect.")
    assert not judge_verdict("Incorrect") and not judge_verdict("**Incorrect.** The correct answer is Paris.")
    prose = ["The correct answer is Paris, so Lyon is Incorrect.", "Not correct.", "Is it correct? Incorrect"]
    for unreadable in ("<think>so it looks correct, but let me", "Maybe", "<think>x</think>", *prose):
        with pytest.raises(JudgeError):
            judge_verdict(unreadable)


def test_answers_the_judge_could_not_read_are_judged_again_not_answered_again(tmp_path, scripted_llm):
    llm = Responder({"France": "Paris", "Czechia": "Prague"})
    runners = {"closed-book": closed_book_runner(llm)}
    first = evaluate(QUESTIONS, runners, tmp_path, rollouts=1, judge=Judge(scripted_llm(["Correct", "Perhaps"])))
    assert first["closed-book"].judge_errors == 1 and first["closed-book"].judge_accuracy == 1.0
    calls = llm.calls
    second = evaluate(QUESTIONS, runners, tmp_path, rollouts=1, judge=Judge(scripted_llm(["Incorrect"])))
    assert llm.calls == calls  # nothing answered again
    assert second["closed-book"].judge_errors == 0 and second["closed-book"].judge_accuracy == 0.5


def test_accuracy_intervals_stay_within_0_and_1_and_never_collapse(tmp_path):
    llm = Responder({"France": "Lyon", "Czechia": "Brno"})
    summary = evaluate(QUESTIONS, {"closed-book": closed_book_runner(llm)}, tmp_path, rollouts=3)["closed-book"]
    assert summary.accuracy == 0.0 and summary.accuracy_low == 0.0 and 0.5 < summary.accuracy_high < 1.0


def test_answers_made_with_other_settings_are_not_resumed(tmp_path):
    llm = Responder({"France": "Paris", "Czechia": "Prague"})
    runners = {"closed-book": closed_book_runner(llm)}
    evaluate(QUESTIONS, runners, tmp_path, rollouts=1, settings={"llm": "model-a"})
    evaluate(QUESTIONS, runners, tmp_path, rollouts=2, settings={"llm": "model-a"})  # more rollouts: same run
    with pytest.raises(ConfigError, match="llm: 'model-a' then, 'model-b' now"):
        evaluate(QUESTIONS, runners, tmp_path, rollouts=1, settings={"llm": "model-b"})
    # Other questions in the same folder are the same run too: their answers would sit in one score.
    with pytest.raises(ConfigError, match="other settings"):
        evaluate(QUESTIONS[1:], runners, tmp_path, rollouts=1, settings={"llm": "model-b"})
    # A run that only recorded failures (a wrong URL, say) may be rerun with corrected settings.
    down = Responder({"France": "Paris", "Czechia": "Prague"}, fail_on={"France", "Czechia"})
    failing = {"closed-book": closed_book_runner(down)}
    evaluate(QUESTIONS, failing, tmp_path / "fresh", rollouts=1, settings={"llm": "wrong-url"})
    evaluate(QUESTIONS, runners, tmp_path / "fresh", rollouts=1, settings={"llm": "right-url"})


class Responder:
    """Answers by the question text: a real callable LLM stand-in whose answers do not depend on call order."""

    name, context_window = "responder", None

    def __init__(self, answers, fail_on=()):
        self.answers, self.fail_on, self.calls = answers, set(fail_on), 0

    def complete(self, messages, *, max_tokens, stop=(), temperature=0.6, top_p=0.95, seed=None):
        from frontier.research.llm import Completion

        self.calls += 1
        text = messages[-1]["content"]
        for key, value in self.answers.items():
            if key in text:
                if key in self.fail_on:
                    raise RuntimeError("backend down")
                return Completion(f"<think>ok</think><answer>{value}</answer>", 10, 5, "stop", 0.0)
        return Completion("no idea", 10, 2, "stop", 0.0)

    def count_tokens(self, messages):
        return 10

    def truncate(self, text, max_tokens):
        return text


QUESTIONS = [Q("q1", "capital of France?", "Paris"), Q("q2", "capital of Czechia?", "Prague", ["Praha"])]


def test_closed_book_scores_rollouts_and_resumes(tmp_path):
    llm = Responder({"France": "Paris", "Czechia": "Praha"}, fail_on={"Czechia"})
    summary = evaluate(QUESTIONS, {"closed-book": closed_book_runner(llm)}, tmp_path, rollouts=2)
    records = read_records(tmp_path / "closed-book" / "rollout0.jsonl")
    assert {r["id"] for r in records} == {"q1", "q2"}
    failed = next(r for r in records if r["id"] == "q2")
    assert failed["prediction"] == "[Failed]" and "backend down" in failed["error"]
    assert summary["closed-book"].errors == 2
    # the rerun skips answered questions and retries the failed ones
    llm.fail_on.clear()
    calls = llm.calls
    summary = evaluate(QUESTIONS, {"closed-book": closed_book_runner(llm)}, tmp_path, rollouts=2)
    assert llm.calls - calls == 2
    s = summary["closed-book"]
    assert (s.accuracy, s.pass_at_k, s.best_at_1, s.errors) == (1.0, 1.0, 1.0, 0)
    assert s.llm_calls == 1 and s.terminations == {"answer": 4}


def test_cut_last_line_is_ignored_and_redone(tmp_path):
    llm = Responder({"France": "Paris", "Czechia": "Prague"})
    evaluate(QUESTIONS, {"closed-book": closed_book_runner(llm)}, tmp_path, rollouts=1)
    path = tmp_path / "closed-book" / "rollout0.jsonl"
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # a crash mid-write
    summary = evaluate(QUESTIONS, {"closed-book": closed_book_runner(llm)}, tmp_path, rollouts=1)
    assert summary["closed-book"].questions == 2 and summary["closed-book"].accuracy == 1.0


def test_rag_sees_retrieved_passages(tmp_path):
    class Backend:
        def search(self, query, k):
            return [SearchResult("France", "doc/fr", "Capital: Paris")][:k]

    llm = Responder({"Capital: Paris": "Paris"})
    summary = evaluate(QUESTIONS[:1], {"rag": rag_runner(llm, Backend(), k=3)}, tmp_path, rollouts=1)
    assert summary["rag"].accuracy == 1.0 and summary["rag"].tool_calls == 1


def test_agent_mode_concurrency_and_judge(tmp_path, scripted_llm):
    class Agentish:
        """Answers through the real agent loop: one search-free answer per question."""

        name, context_window = "agentish", None

        def complete(self, messages, **kwargs):
            from frontier.research.llm import Completion

            question = messages[1]["content"]
            answer = "Paris" if "France" in question else "Brno"
            return Completion(f"<answer>{answer}</answer>", 100, 4, "stop", 0.0)

        def count_tokens(self, messages):
            return 100

    judge_llm = scripted_llm(["Correct", "Incorrect", "Correct", "Perhaps"])
    summary = evaluate(
        QUESTIONS, {"agent": agent_runner(ResearchAgent(Agentish(), []))}, tmp_path, rollouts=2, concurrency=4,
        judge=Judge(judge_llm),
    )  # fmt: skip
    s = summary["agent"]
    assert s.accuracy == 0.5 and s.pass_at_k == 0.5 and s.judge_accuracy is not None
    record = read_records(tmp_path / "agent" / "rollout1.jsonl")[0]
    assert {"messages", "steps", "termination", "exact_match", "f1"} <= set(record)
    records = [r for i in range(2) for r in read_records(tmp_path / "agent" / f"rollout{i}.jsonl")]
    # An unreadable verdict is recorded as a judge error and left out of the judge's score, never counted wrong.
    assert sum("judge_error" in r for r in records) == 1 and sum("judge" in r for r in records) == 3
    json.dumps(record)


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown evaluation mode"):
        evaluate(QUESTIONS, {"oracle": None}, tmp_path)
    with pytest.raises(ConfigError, match="unique"):
        evaluate([QUESTIONS[0], QUESTIONS[0]], {"closed-book": None}, tmp_path)


def test_a_refused_judge_request_is_raised_once_the_answer_is_saved(tmp_path):
    from frontier.research.llm import LLMRefusedError

    class RefusingJudge:
        name, context_window = "judge", None

        def complete(self, messages, **kwargs):
            raise LLMRefusedError("judge at http://x refused the request: 401 bad key", 401)

    llm = Responder({"France": "Paris"})
    with pytest.raises(LLMRefusedError, match="401"):
        evaluate(QUESTIONS[:1], {"closed-book": closed_book_runner(llm)}, tmp_path, rollouts=1,
                 judge=Judge(RefusingJudge()))  # fmt: skip
    (record,) = read_records(tmp_path / "closed-book" / "rollout0.jsonl")
    assert record["prediction"] == "Paris" and "401" in record["judge_error"]
