"""Question synthesis: walks, obfuscation, unique answers by the constraint solver, filters, the split, JSONL."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from types import SimpleNamespace

import pytest

from frontier.errors import ConfigError
from frontier.research.evalset import DEFAULT_EVAL_SET, EvalSetFormatError, read_eval_set
from frontier.research.knowledge import factbook_documents, factbook_field, knowledge_graph, normalize_name
from frontier.research.synthesis import (
    ANSWER_KINDS,
    CLOSED_BOOK_FILTER,
    HOPS,
    MAX_PER_ANSWER,
    RETRIEVAL_FILTER,
    STEPS,
    SynthesisFormatError,
    SynthesizedQuestion,
    about_range,
    between_range,
    closed_book_filter,
    constraint_solver,
    held_out_answers,
    main,
    random_walk,
    read_any_questions,
    read_synthesized,
    retrieval_filter,
    synthesize,
    write_questions,
)

COUNT = 300


@pytest.fixture(scope="module")
def graph():
    return knowledge_graph()


@pytest.fixture(scope="module")
def solver(graph):
    return constraint_solver(graph)


@pytest.fixture(scope="module")
def questions():
    return synthesize(COUNT, seed=0)


def _id(graph, name, kind="country"):
    (found,) = graph.resolve(name, kind)
    return found


# --- the pipeline's output ---------------------------------------------------------------------------------------


def test_seed_0_yields_the_requested_count_across_hops_and_answer_kinds(questions):
    assert len(questions) == COUNT
    assert set(Counter(q.hops for q in questions)) == set(HOPS)
    assert set(Counter(q.answer_id.split(":")[0] for q in questions)) == set(ANSWER_KINDS)
    assert max(Counter(q.answer_id for q in questions).values()) <= MAX_PER_ANSWER
    assert len({q.id for q in questions}) == len({normalize_name(q.question) for q in questions}) == COUNT


def test_the_same_seed_gives_the_same_questions_and_a_smaller_count_a_prefix(questions):
    again = synthesize(40, seed=0)
    assert [q.to_json() for q in again] == [q.to_json() for q in questions[:40]]
    assert [q.question for q in synthesize(40, seed=1)] != [q.question for q in again]


def test_determinism_does_not_depend_on_string_hashing(questions):
    script = "from frontier.research.synthesis import synthesize; print(synthesize(12, seed=0)[-1].to_json())"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env).stdout
    assert json.loads(out) == json.loads(questions[11].to_json())


def test_every_answer_rederives_uniquely_with_the_constraint_solver(graph, solver, questions):
    for q in questions:
        sets = solver.solve(q.steps, q.constraints)
        assert sets[-1] == {q.answer_id}, q.question
        assert q.nodes[-1] == q.answer_id and graph.name(q.answer_id) == q.answer
        # every node's true entity satisfies its constraints, and the walk follows supported edges
        assert all(node in found for node, found in zip(q.nodes, sets, strict=True))
        for step, source, target in zip(q.steps, q.nodes, q.nodes[1:], strict=False):
            relation, forward, _, _ = STEPS[step]
            if relation == "borders":
                assert target in graph.neighbours(source)
            elif forward:
                assert target in graph.objects(source, relation)
            else:
                assert target in graph.subjects(relation, source)
        assert q.hops == len(q.steps) and q.hops in HOPS and q.template == f"walk-{q.hops}hop"
        assert q.difficulty == q.hops + sum(map(len, q.constraints))
        assert q.constraints[0], "the starting country must be described"
        assert q.doc_ids and all(doc.startswith("factbook/") for doc in q.doc_ids)


def test_questions_name_neither_the_answer_nor_its_one_hop_neighbours(graph, questions):
    for q in questions:
        near = {q.answer_id}
        for edge in graph.edges:
            if isinstance(edge.object, str) and q.answer_id in (edge.subject, edge.object):
                near |= {edge.subject, edge.object}
        text = f" {normalize_name(q.question)} "
        for entity in near:
            for name in graph.entity(entity).names:
                assert f" {normalize_name(name)} " not in text, (q.question, name)
        # nor any country on the walk, whose descriptions stand in for their names
        for node in q.nodes[:-1]:
            if node.startswith("country:"):
                assert f" {normalize_name(graph.name(node))} " not in text, (q.question, node)


def test_numeric_ranges_hold_the_true_value_and_read_as_written(graph, solver, questions):
    checked = Counter()
    for q in questions:
        for node, constraints in zip(q.nodes, q.constraints, strict=True):
            for kind, value in constraints:
                if not kind.startswith(("population_", "area_")):
                    continue
                relation, style = kind.split("_")
                true = graph.value(node, relation)
                low, high = about_range(value)[1:] if style == "about" else value
                assert low <= true < high, (q.question, node, kind, value)
                assert solver.phrase([kind, value]) in q.question
                checked[style] += 1
    assert checked["about"] > 50 and checked["between"] > 50


def test_landlocked_comes_from_the_factbook_coastline(graph, questions):
    documents = factbook_documents()
    for q in questions:
        for node, constraints in zip(q.nodes, q.constraints, strict=True):
            for kind, _ in constraints:
                if kind in ("landlocked", "coastal"):
                    coastline = factbook_field(documents[graph.country(node).doc_id], "Geography", "Coastline")
                    assert coastline.startswith("0 km") == (kind == "landlocked"), (node, coastline)
                    assert [graph.name(node), "coastline", coastline] in q.path


# --- the solver and the obfuscation ------------------------------------------------------------------------------


def test_the_solver_executes_a_formula_as_set_operations(graph, solver):
    # the landlocked country of about 200 sq km whose name starts with L, its neighbour starting with S, its capital
    formula = [[["landlocked", None], ["area_about", 200], ["name_initial", "L"]], [["name_initial", "S"]], []]
    start, neighbour, capital = solver.solve(["borders", "capital"], formula)
    assert start == {_id(graph, "Liechtenstein")}
    assert neighbour == {_id(graph, "Switzerland")}
    assert [graph.name(city) for city in capital] == ["Bern"]
    assert solver.members(["landlocked", None]) >= {_id(graph, "Austria"), _id(graph, "Switzerland")}
    assert _id(graph, "France") not in solver.members(["landlocked", None])
    with pytest.raises(ConfigError, match="needs 3 constraint lists"):
        solver.solve(["borders", "capital"], [[]])


def test_largest_cities_and_independence_decades(graph, solver):
    brazil, niger = _id(graph, "Brazil"), _id(graph, "Niger")
    (city,) = solver.project("largest_city", frozenset({brazil}))
    assert graph.name(city) == "São Paulo"
    assert ("independence_decade", 1960) in solver.candidates(niger)
    assert solver.facts(("independence_decade", 1960), niger) == [(niger, "independence", 1960)]
    assert solver.phrase(["independence_decade", 1960]) == "with an independence date in the 1960s"
    sixties = solver.members(["independence_decade", 1960])
    assert niger in sixties and brazil not in sixties  # 1822
    # any year a text names may be taken for the date: France's "no official date" text names 1789
    assert _id(graph, "France") in solver.members(["independence_decade", 1780])
    assert _id(graph, "Norfolk Island") not in sixties  # "none (territory of Australia)"
    norway = _id(graph, "Norway")  # 1905: "the 1900s" would also read as the century
    assert graph.value(norway, "independence") == 1905
    assert not [c for c in solver.candidates(norway) if c[0] == "independence_decade"]


def test_projections_over_approximate_the_graph(graph, solver):
    curacao = _id(graph, "Curacao")
    # "English (official)" in Curacao's Factbook text is no graph edge; a reader could still take it as one
    assert "language:en" not in graph.objects(curacao, "official_language", supported_only=False)
    assert "language:en" in solver.project("official_language", frozenset({curacao}))
    france = _id(graph, "France")
    assert set(graph.neighbours(france)) <= solver.project("borders", frozenset({france}))


def test_number_ranges_and_phrases(solver):
    assert about_range(9_600_000) == (10_000_000, 9_500_000, 15_000_000)
    assert about_range(25_000) == (30_000, 25_000, 35_000)  # halves round up, as a reader rounds
    assert between_range(7_300_000) == (5_000_000, 10_000_000)
    assert between_range(10_000_000) == (10_000_000, 20_000_000)
    for value in [1, 7, 9, 10, 95, 149, 150, 999, 1000, 25_000, 96_000, 1_400_000_000, *range(1, 5000, 37)]:
        shown, low, high = about_range(value)
        assert low <= value < high and about_range(shown) == (shown, low, high)
        low, high = between_range(value)
        assert low <= value < high
    assert solver.phrase(["population_about", 10_000_000]) == "of about 10 million people"
    assert solver.phrase(["population_between", [5_000_000, 10_000_000]]) == "with between 5 and 10 million people"
    assert solver.phrase(["area_about", 80_000]) == "with an area of about 80,000 sq km"
    assert solver.phrase(["area_between", [500_000, 1_000_000]]) == "with an area between 500,000 and 1 million sq km"
    assert solver.phrase(["neighbour_count", 0]) == "with no land neighbours"
    assert solver.phrase(["continent", "continent:EU"]) == "in Europe"


def test_random_walks_follow_the_step_kinds(graph):
    rng = random.Random(3)
    for hops in HOPS * 20:
        walk = random_walk(graph, rng, hops)
        assert len(walk.steps) == hops and len(set(walk.nodes)) == hops + 1
        assert graph.entity(walk.nodes[0]).kind == "country"
        for step, source, target in zip(walk.steps, walk.nodes, walk.nodes[1:], strict=False):
            _, _, source_kind, target_kind = STEPS[step]
            assert (graph.entity(source).kind, graph.entity(target).kind) == (source_kind, target_kind)
        assert all(graph.entity(node).kind not in ("city", "continent") for node in walk.nodes[:-1])
    for hops in (1, 5):
        with pytest.raises(ConfigError, match="2 to 4 hops"):
            random_walk(graph, rng, hops)


# --- filters -----------------------------------------------------------------------------------------------------


def test_a_closed_book_hit_drops_the_question(questions):
    # a model that knows every third answer; of training questions, which the cap on test questions never skips
    known = {q.question: q.answer.upper() for q in questions[:30:3] if q.split == "train"}
    assert known
    asked = []

    def closed_book(text):
        asked.append(text)
        return known.get(text, "no idea")

    kept = synthesize(30, seed=0, closed_book=closed_book)
    assert len(kept) == 30 and len(asked) > 30 and set(known) <= set(asked)
    assert not set(known) & {q.question for q in kept}
    assert all(q.filters == [CLOSED_BOOK_FILTER] for q in kept)


def test_a_single_retrieval_hit_drops_the_question(questions):
    kept = synthesize(30, seed=0, single_retrieval=lambda q: len(q.doc_ids) <= 2)
    assert len(kept) == 30 and all(len(q.doc_ids) > 2 for q in kept)
    assert all(q.filters == [RETRIEVAL_FILTER] for q in kept)
    assert all(q.filters == [] for q in questions)


def test_retrieval_filter_asks_whether_one_search_finds_every_supporting_document():
    searches = []

    class Index:
        def search(self, query, k):
            searches.append((query, k))
            return [SimpleNamespace(doc_id=doc) for doc in ("factbook/europe/fr", "factbook/europe/sp")][:k]

    answered = retrieval_filter(Index(), k=2)
    assert answered(SimpleNamespace(question="q1", doc_ids=["factbook/europe/fr", "factbook/europe/sp"]))
    assert not answered(SimpleNamespace(question="q2", doc_ids=["factbook/europe/fr", "factbook/europe/gm"]))
    assert searches == [("q1", 2), ("q2", 2)]
    with pytest.raises(ConfigError, match="k >= 1"):
        retrieval_filter(Index(), k=0)


def test_closed_book_filter_returns_the_models_answer(scripted_llm):
    llm = scripted_llm(["<think>hmm</think><answer>Bern</answer>"])
    assert closed_book_filter(llm)("What is the capital of Switzerland?") == "Bern"
    assert "What is the capital of Switzerland?" in llm.requests[0]["messages"][0]["content"]


# --- the split ---------------------------------------------------------------------------------------------------


def test_no_test_answer_appears_in_training_and_eval_answers_are_test_side(graph, questions):
    held = held_out_answers(graph, 0, 0.2)
    evaluation = read_eval_set(DEFAULT_EVAL_SET)
    for question in evaluation:
        for kind in ANSWER_KINDS:
            assert set(graph.resolve(question.answer, kind)) <= held
    assert {"continent:EU", "currency:EUR"} <= held
    train = [q for q in questions if q.split == "train"]
    test = [q for q in questions if q.split == "test"]
    test_answers = {q.answer_id for q in test}
    for q in train:
        assert held.isdisjoint(q.entities) and test_answers.isdisjoint(q.entities), q.question
        assert set(q.nodes) <= set(q.entities)
    assert all(q.answer_id in held for q in test)
    assert 0 < len(test) <= 0.2 * len(questions)
    asked = {normalize_name(q.question) for q in evaluation}
    assert not any(normalize_name(q.question) in asked for q in questions)


def test_the_hash_split_is_seeded(graph):
    first, second = held_out_answers(graph, 0, 0.2), held_out_answers(graph, 1, 0.2)
    assert first != second and held_out_answers(graph, 0, 0.2) == first
    assert 0.15 < len(first - held_out_answers(graph, 0, 0.0)) / len(graph.entities) < 0.25


# --- files and arguments -----------------------------------------------------------------------------------------


def test_jsonl_round_trip(tmp_path, questions):
    path = tmp_path / "synth.jsonl"
    write_questions(path, questions[:25])
    assert read_synthesized(path) == questions[:25]
    assert all(isinstance(q, SynthesizedQuestion) for q in read_synthesized(path))
    with pytest.raises(EvalSetFormatError, match="unknown field"):
        read_eval_set(path)  # why the synthesis module has its own reader


def test_evaluation_reads_either_format_and_a_synthesized_split(tmp_path, questions):
    from frontier.research.evalset import DEFAULT_EVAL_SET

    path = tmp_path / "synth.jsonl"
    write_questions(path, questions[:40])
    test = read_any_questions(path, "test")
    assert test == [q for q in questions[:40] if q.split == "test"] and 0 < len(test) < 40
    assert read_any_questions(path) == questions[:40]
    assert read_any_questions(DEFAULT_EVAL_SET) == read_eval_set(DEFAULT_EVAL_SET)
    with pytest.raises(ConfigError, match=r"--split test: .* is not a `frontier research synthesize` file"):
        read_any_questions(DEFAULT_EVAL_SET, "test")
    with pytest.raises(EvalSetFormatError, match=r"missing\.jsonl: no such file"):
        read_any_questions(tmp_path / "missing.jsonl")
    write_questions(path, [q for q in questions[:40] if q.split == "train"])
    with pytest.raises(ConfigError, match="has no test questions"):
        read_any_questions(path, "test")


def test_malformed_files_name_the_line_and_field(tmp_path, questions):
    path = tmp_path / "bad.jsonl"
    record = json.loads(questions[0].to_json())
    path.write_text(questions[1].to_json() + "\n" + json.dumps({**record, "split": "dev"}) + "\n")
    with pytest.raises(SynthesisFormatError, match=r"bad.jsonl:2: field 'split' must be 'train' or 'test'"):
        read_synthesized(path)
    path.write_text(questions[1].to_json() + "\n" + questions[1].to_json() + "\n")
    with pytest.raises(SynthesisFormatError, match=r":2: duplicate id"):
        read_synthesized(path)
    with pytest.raises(SynthesisFormatError, match="no such file"):
        read_synthesized(tmp_path / "missing.jsonl")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"count": 0}, "count must be"), ({"hops": (5,)}, "hops must be"), ({"test_fraction": 1.0}, "test_fraction")],
)
def test_bad_arguments_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        synthesize(**{"count": 5, "seed": 0, **kwargs})


def test_main_writes_the_file(tmp_path, capsys):
    output = tmp_path / "out.jsonl"
    assert main(["--count", "6", "--seed", "2", "--hops", "2,3", "--output", str(output), "--no-filters"]) == 0
    written = read_synthesized(output)
    assert len(written) == 6 and {q.hops for q in written} <= {2, 3}
    assert "wrote 6 questions" in capsys.readouterr().err
    assert main(["--count", "2", "--hops", "7", "--output", str(output), "--no-filters"]) == 2  # a ConfigError
    assert main(["--output", str(output), "--no-filters", "--llm", "local"]) == 2
    assert "--llm runs the closed-book filter" in capsys.readouterr().err
