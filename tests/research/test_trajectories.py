"""Training trajectories: verified hop-path synthesis, rejection sampling of the agent, FAS mid-training text."""

import dataclasses
import json
import re

import pytest

from frontier.errors import ConfigError
from frontier.research.agent import ResearchAgent, Trajectory
from frontier.research.backends import ToolSettings, build_tools
from frontier.research.evalset import DEFAULT_EVAL_SET, EvalQuestion, read_eval_set
from frontier.research.evaluation import normalize_answer, read_records
from frontier.research.index import factbook_index
from frontier.research.knowledge import knowledge_graph
from frontier.research.parsing import parse_turn
from frontier.research.tools import GoalLinesExtractor
from frontier.research.trajectories import (
    AGENT_SOURCE,
    PATH_MODEL,
    PATH_SOURCE,
    PLANNING_SOURCE,
    REASONING_SOURCE,
    PathUnsupportedError,
    agent_trajectories,
    main,
    path_trajectory,
    planning_samples,
    read_questions,
    reasoning_samples,
    rejected_path,
    render_path_trajectory,
    write_midtraining_corpus,
)

DATE = "2025-06-01"
RECORD_KEYS = {f.name for f in dataclasses.fields(Trajectory)} | {"id", "source"}


@pytest.fixture(scope="module")
def tools(model_cache_dir):
    return build_tools(factbook_index(), GoalLinesExtractor(), ToolSettings())


@pytest.fixture(scope="module")
def questions():
    """The first shipped question of each template."""
    first = {}
    for question in read_eval_set(DEFAULT_EVAL_SET):
        first.setdefault(question.template, question)
    return list(first.values())


@pytest.fixture(scope="module")
def records(questions, tools):
    return [path_trajectory(question, tools, date=DATE) for question in questions]


def test_path_trajectories_are_agent_records_with_real_tool_responses(questions, records):
    assert all(record is not None for record in records), [
        q.id for q, r in zip(questions, records, strict=True) if r is None
    ]
    for question, record in zip(questions, records, strict=True):
        assert set(record) == RECORD_KEYS
        assert (record["id"], record["source"], record["model"]) == (question.id, PATH_SOURCE, PATH_MODEL)
        assert (record["termination"], record["prediction"], record["answer"]) == (
            "answer",
            question.answer,
            question.answer,
        )
        assert (record["prompt_tokens"], record["completion_tokens"], record["date"]) == (0, 0, DATE)
        assert record["context"] == record["messages"]
        messages = record["messages"]
        assert messages[0]["role"] == "system" and "<tools>" in messages[0]["content"]
        assert DATE in messages[0]["content"]
        assert messages[1] == {"role": "user", "content": question.question}
        roles = [m["role"] for m in messages[2:]]
        assert roles == ["assistant", "user"] * (len(roles) // 2) + ["assistant"]
        assert record["llm_calls"] == roles.count("assistant")
        responses = [m["content"] for m in messages[3::2]]
        assert all(r.startswith("<tool_response>\n") and r.endswith("\n</tool_response>") for r in responses)
        assert responses[0].startswith("<tool_response>\nA Google search for")
        assert sum(record["tool_calls"].values()) == len(responses) == sum(s["kind"] == "tool" for s in record["steps"])
    # a page is opened where the search snippets do not state a fact, which some template's questions need
    assert any("Evidence in page" in m["content"] for record in records for m in record["messages"])


def test_every_assistant_turn_parses_to_one_call_or_the_answer(questions, records):
    for question, record in zip(questions, records, strict=True):
        turns = [parse_turn(m["content"]) for m in record["messages"] if m["role"] == "assistant"]
        assert all(turn.error is None and turn.think for turn in turns)
        assert all(turn.tool_call is not None and turn.answer is None for turn in turns[:-1])
        assert all(turn.tool_call.name in ("search", "visit") for turn in turns[:-1])
        assert turns[-1].tool_call is None and turns[-1].answer == question.answer
        steps = [s for s in record["steps"] if s["kind"] == "assistant"]
        assert [s["tool"] for s in steps] == [t.tool_call.name if t.tool_call else None for t in turns]


def test_hop_facts_are_stated_in_the_tool_responses_before_the_thought_that_uses_them(questions, records):
    # Romania's neighbours: every population figure comes back from the tools in the Factbook's own formatting.
    question, record = questions[2], records[2]
    assert question.template == "capital_of_most_populous_neighbour"
    responses = "\n".join(m["content"] for m in record["messages"] if m["role"] == "user")
    for _, relation, value in question.path:
        if relation == "population":
            assert f"{int(value):,}" in responses
    # the gold ranking (largest first) is not the order the trajectory looks things up in
    queries = [
        s["arguments"]["query"][0] for s in record["steps"] if s["tool"] == "search" and s["kind"] == "assistant"
    ]
    assert queries[1:6] == [f"{name} population" for name in ("Bulgaria", "Hungary", "Moldova", "Serbia", "Ukraine")]


def test_a_page_is_opened_only_when_the_search_results_do_not_state_the_fact(questions, records):
    # the UAE's neighbours' populations: a figure in the search snippets is read there, otherwise a page is opened
    question, record = questions[1], records[1]
    assert question.template == "most_populous_neighbour"
    figures = {name: f"{int(value):,}" for name, relation, value in question.path if relation == "population"}
    messages = record["messages"]
    opened = {}
    for index, message in enumerate(messages):
        call = re.search(r'"query": \["(.+) population"\]', message["content"])
        if message["role"] == "assistant" and call and call.group(1) in figures:
            in_snippets = figures[call.group(1)] in messages[index + 1]["content"]
            visits = '"name": "visit"' in messages[index + 2]["content"]
            opened[call.group(1)] = (in_snippets, visits)
    assert set(opened) == set(figures) == {"Saudi Arabia", "Oman"}
    assert all(visits != in_snippets for in_snippets, visits in opened.values()), opened
    assert {in_snippets for in_snippets, _ in opened.values()} == {True, False}  # both cases occur
    # the UAE's "Location: ..., bordering the Gulf of Oman ..., between Oman and Saudi Arabia" snippet does not state
    # its borders ("bordering" is not the word "border"), so the land boundaries are read on its page
    first_search = next(i for i, m in enumerate(messages) if "border countries" in m["content"])
    assert '"goal": "land boundaries"' in messages[first_search + 2]["content"]


def test_rendering_is_deterministic(questions, records, tools):
    again = path_trajectory(questions[0], tools, date=DATE)
    assert again["messages"] == records[0]["messages"]


def test_a_fact_the_tools_do_not_state_drops_the_question(questions, tools):
    original = questions[0]  # the capital of the country bordering both Ethiopia and Tanzania
    wrong = dataclasses.replace(original, path=[["Ethiopia", "borders", "France"], *original.path[1:]])
    assert path_trajectory(wrong, tools, date=DATE) is None
    with pytest.raises(PathUnsupportedError, match="borders fact") as caught:
        render_path_trajectory(wrong, tools, date=DATE)
    assert caught.value.reason.startswith("borders fact not in")

    stranded = dataclasses.replace(original, path=[*original.path, ["Uganda", "borders", "Rwanda"]])
    with pytest.raises(PathUnsupportedError) as caught:
        render_path_trajectory(stranded, tools, date=DATE)
    assert caught.value.reason == "unreachable hop"

    nameless = dataclasses.replace(original, question="Which capital is it?")
    with pytest.raises(PathUnsupportedError) as caught:
        render_path_trajectory(nameless, tools, date=DATE)
    assert caught.value.reason == "question names no entity of its path"


@pytest.fixture(scope="module")
def synthesized():
    from frontier.research.synthesis import synthesize

    return synthesize(100, 0)


AMONG = re.compile(
    r"Among the countries (?:where (?P<language>.+?) is an official language|that use (?P<code>.+?)), only one fits "
    r"all of these: .+?\. That is (?P<country>.+?)\."
)


def _recognised(record) -> str:
    """The country the first thought names from the clues."""
    return re.search(r"That is (.+?); I will check it", record["messages"][2]["content"]).group(1)


def test_obfuscated_questions_start_from_the_country_their_clues_fit_alone(synthesized, tools):
    from frontier.research.synthesis import constraint_solver

    graph = knowledge_graph()
    solver = constraint_solver(graph)
    rendered, reasons, recognised_along = [], set(), 0
    for question in synthesized:
        try:
            rendered.append((question, render_path_trajectory(question, tools, date=DATE)))
        except PathUnsupportedError as error:
            reasons.add(error.reason)
    assert len(rendered) >= 10 and "question names no entity of its path" not in reasons
    assert "no described country is fixed by its own clues" in reasons
    for question, record in rendered:
        name = _recognised(record)
        (node,) = [i for i, entity in enumerate(question.nodes) if graph.name(entity) == name]
        fits = solver.countries
        for clue in question.constraints[node]:
            fits = fits & solver.members(clue)
            assert solver.phrase(clue) in record["messages"][2]["content"]
        assert fits == {question.nodes[node]}  # no other country fits the clues the thought lists
        assert record["prediction"] == question.answer
        assert record["messages"][-1]["content"].endswith(f"<answer>{question.answer}</answer>")
        queries = [s["arguments"]["query"][0] for s in record["steps"] if s["tool"] == "search" and s["arguments"]]
        assert len(queries) == len(set(queries))  # one lookup per entity and relation
        about = [query.startswith(name) for query in queries]
        assert about == sorted(about, reverse=True)  # every lookup about the recognised country comes first
        thoughts = " ".join(m["content"] for m in record["messages"] if m["role"] == "assistant")
        for match in AMONG.finditer(thoughts):  # recognised among the countries of a language or currency
            relation, via = (
                ("official_language", match["language"]) if match["language"] else ("currency", match["code"])
            )
            (entity,) = [e for e in question.nodes if graph.name(e) == match["country"]]
            (source,) = [e for e in question.nodes if graph.name(e) == via]
            fits = solver.project(f"{relation}_of", frozenset({source}))
            for clue in question.constraints[question.nodes.index(entity)]:
                fits = fits & solver.members(clue)
            assert fits == {entity}
            assert -1 < thoughts.find(f" {via}") < match.start()  # recognised after the step that found `via`
            recognised_along += 1
    assert recognised_along >= 1
    # the graph's largest cities and independence dates are looked up like any other fact
    assert {"largest_city_of", "independence"} <= {relation for q, _ in rendered for _, relation, _ in q.path}
    assert any(record["prediction"] == question.answer and question.steps[-1] == "largest_city"
               for question, record in rendered)  # fmt: skip


def test_a_country_recognised_along_the_chain_follows_the_hop_that_finds_its_language(questions):
    from frontier.research.trajectories import _hops

    path = [["Niger", "borders", "Nigeria"], ["Nigeria", "official_language", "English"],
            ["Ghana", "official_language", "English"]]  # fmt: skip
    question = dataclasses.replace(questions[0], path=path)
    recognition = "Among the countries where English is an official language, only one fits all of these: ..."
    hops = _hops(question, {"Niger"}, {("Ghana", "English"): recognition})
    assert [(hop.known, hop.targets) for hop in hops] == [
        ("Niger", ["Nigeria"]), ("Nigeria", ["English"]), ("Ghana", ["English"])
    ]  # fmt: skip
    assert [hop.recognition for hop in hops] == ["", "", recognition]


def test_figures_are_not_entities_to_look_up_or_share(questions):
    from frontier.research.trajectories import _hops, _observations

    question = dataclasses.replace(questions[0], path=[["Mali", "coastline", "0 km"], ["Niger", "coastline", "0 km"]])
    hops = _hops(question, {"Mali", "Niger"})
    assert [(hop.known, hop.targets) for hop in hops] == [("Mali", ["0 km"]), ("Niger", ["0 km"])]
    assert _observations(question, hops) == [[], []]  # not "0 km is common to Mali and Niger"
    question = dataclasses.replace(question, path=[["Chad", "independence", "1960"], ["Niger", "independence", "1960"]])
    hops = _hops(question, {"Chad", "Niger"})
    assert [hop.fact() for hop in hops] == [
        "Chad's independence date is in 1960",
        "Niger's independence date is in 1960",
    ]
    assert _observations(question, hops) == [[], []]  # years are not ranked "from largest to smallest"


def test_a_synthesized_train_split_renders_from_the_command_line(synthesized, tmp_path, capsys):
    from frontier.research.synthesis import write_questions

    source, output = tmp_path / "synthesized.jsonl", tmp_path / "paths.jsonl"
    write_questions(source, synthesized[:40])
    assert main(["--questions", str(source), "--output", str(output), "--split", "train", "--date", DATE]) == 0
    train = {q.id for q in synthesized[:40] if q.split == "train"}
    kept = [record["id"] for record in read_records(output)]
    assert kept and set(kept) <= train
    assert f"of {len(train)} questions" in capsys.readouterr().err


def test_planning_and_reasoning_samples(questions, records, tmp_path):
    for question, record in zip(questions, records, strict=True):
        [planning] = planning_samples(question, record)
        [reasoning] = reasoning_samples(question, record)
        assert planning["source"] == PLANNING_SOURCE and reasoning["source"] == REASONING_SOURCE
        assert planning["text"].startswith(question.question)
        assert "<think>" in planning["text"] and "<tool_call>" in planning["text"]
        assert "<answer>" not in planning["text"]
        words = f" {normalize_answer(planning['text'])} "
        assert not any(f" {normalize_answer(gold)} " in words for gold in [question.answer, *question.aliases])
        assert reasoning["text"].startswith(question.question)
        assert "<tool_response>" in reasoning["text"] and f"<answer>{question.answer}</answer>" in reasoning["text"]
    # the snippets are the tool lines that state the facts, not whole search pages
    reasoning = reasoning_samples(questions[0], records[0])[0]["text"]
    assert "border countries: Djibouti" in reasoning and "NAIROBI (capital)" in reasoning
    assert len(reasoning) < 2000

    samples = [
        s for q, r in zip(questions, records, strict=True) for s in planning_samples(q, r) + reasoning_samples(q, r)
    ]
    path = tmp_path / "mid.jsonl"
    assert write_midtraining_corpus(samples, path) == 2 * len(questions)
    assert [json.loads(line) for line in path.read_text().splitlines()] == samples


def test_samples_need_a_tool_call_first_and_an_answer_last(questions):
    question = questions[0]
    answered_at_once = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<answer>x"}]}
    assert planning_samples(question, answered_at_once) == []
    assert reasoning_samples(question, answered_at_once) == []


def make_question(qid, answer, aliases=()):
    return EvalQuestion(qid, f"question {qid}?", answer, list(aliases), 1, [], [], "test")


def test_rejection_sampling_keeps_correct_runs_and_resumes(scripted_llm, tmp_path):
    questions = [make_question("a", "Nairobi"), make_question("b", "6", ["six"]), make_question("c", "Paris")]
    output = tmp_path / "sft.jsonl"
    replies = ["<think>k</think><answer>nairobi</answer>", "<answer>Six</answer>", "<answer>Lyon</answer>"]
    llm = scripted_llm(replies)
    report = agent_trajectories(ResearchAgent(llm, [], date=DATE), questions, 1, output, seed=3)
    assert (report.kept, report.rejected, report.skipped) == (2, 1, 0)
    kept = read_records(output)
    assert [(r["id"], r["rollout"], r["source"], r["exact_match"]) for r in kept] == [
        ("a", 0, AGENT_SOURCE, True),
        ("b", 0, AGENT_SOURCE, True),
    ]
    assert set(RECORD_KEYS - {"id", "source"}) <= set(kept[0])
    assert [(r["id"], r["prediction"]) for r in read_records(rejected_path(output))] == [("c", "Lyon")]

    # a rerun skips what either file holds and only runs the new rollout
    llm = scripted_llm(["<answer>Nairobi</answer>", "<answer>7</answer>", "<answer>Paris</answer>"])
    report = agent_trajectories(ResearchAgent(llm, [], date=DATE), questions, 2, output, seed=3)
    assert (report.kept, report.rejected, report.skipped) == (2, 1, 3)
    assert len(llm.requests) == 3
    assert [(r["id"], r["rollout"]) for r in read_records(output)][2:] == [("a", 1), ("c", 1)]


def test_rejection_sampling_retries_runs_that_failed(scripted_llm, tmp_path):
    output = tmp_path / "sft.jsonl"
    questions = [make_question("a", "Nairobi")]
    agent_trajectories(ResearchAgent(scripted_llm([]), [], date=DATE), questions, 1, output)  # the LLM fails
    assert read_records(rejected_path(output))[0]["error"]
    report = agent_trajectories(
        ResearchAgent(scripted_llm(["<answer>Nairobi</answer>"]), [], date=DATE), questions, 1, output
    )
    assert (report.kept, report.skipped) == (1, 0)


def _write_questions(path, questions, **extra):
    path.write_text("".join(json.dumps({**dataclasses.asdict(q), **extra}) + "\n" for q in questions))


def test_main_renders_a_question_file_with_extra_fields(questions, tools, tmp_path, capsys):
    source = tmp_path / "questions.jsonl"
    _write_questions(source, questions[:3], difficulty="hard", split="train")
    assert [q.id for q in read_questions(source, "train")] == [q.id for q in questions[:3]]
    output, mid = tmp_path / "fas.jsonl", tmp_path / "mid.jsonl"
    args = ["--questions", str(source), "--output", str(output), "--limit", "2", "--midtraining", str(mid)]
    assert main([*args, "--date", DATE]) == 2  # a file with splits needs --split
    assert "holds questions of splits train; pass --split train" in capsys.readouterr().err
    assert main([*args, "--date", DATE, "--split", "train"]) == 0
    assert [r["id"] for r in read_records(output)] == [q.id for q in questions[:2]]
    assert len(read_records(mid)) == 4
    assert "kept 2 of 2 questions" in capsys.readouterr().err


def test_training_questions_come_from_one_split(questions, tmp_path):
    source = tmp_path / "questions.jsonl"
    _write_questions(source, questions[:2])
    with open(source, "a") as lines:
        lines.write(json.dumps({**dataclasses.asdict(questions[2]), "split": "test"}) + "\n")
        lines.write(json.dumps({**dataclasses.asdict(questions[3]), "split": "train"}) + "\n")
    assert [q.id for q in read_questions(source, "train")] == [questions[3].id]
    assert [q.id for q in read_questions(source, "test")] == [questions[2].id]
    with pytest.raises(ConfigError, match="holds questions of splits test, train; pass --split train"):
        read_questions(source)
    with pytest.raises(ConfigError, match=r"no question has split 'dev' \(found: test, train\)"):
        read_questions(source, "dev")
    _write_questions(source, questions[:2])
    assert len(read_questions(source)) == 2
    with pytest.raises(ConfigError, match=r"--split train: .* has no split field; drop --split"):
        read_questions(source, "train")
    with pytest.raises(ConfigError, match="no such file"):
        read_questions(tmp_path / "missing.jsonl")


def test_main_reports_drops_and_bad_files(questions, tools, tmp_path, capsys):
    source = tmp_path / "questions.jsonl"
    wrong = dataclasses.replace(questions[0], path=[["Ethiopia", "borders", "France"], *questions[0].path[1:]])
    _write_questions(source, [wrong, questions[3]])
    assert main(["--questions", str(source), "--output", str(tmp_path / "out.jsonl")]) == 0
    err = capsys.readouterr().err
    assert "kept 1 of 2 questions" in err and "dropped 1: borders fact not in" in err and wrong.id in err

    source.write_text('{"id": "x"}\n')
    assert main(["--questions", str(source), "--output", str(tmp_path / "out.jsonl")]) == 1
    assert "questions.jsonl:1: missing field(s)" in capsys.readouterr().err
    assert main(["--questions", str(source), "--output", str(tmp_path / "o.jsonl"), "--limit", "0"]) == 2
    assert main(["--questions", str(source), "--output", str(tmp_path / "o.jsonl"), "--top-k", "0"]) == 2
