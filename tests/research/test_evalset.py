"""The multi-hop Factbook question set: gold answers re-derived from the graph, uniqueness, JSONL, the shipped file."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from frontier.errors import ConfigError
from frontier.research.evalset import (
    DEFAULT_EVAL_SET,
    TEMPLATES,
    EvalQuestion,
    EvalSetFormatError,
    answer_names,
    candidate_questions,
    generate_eval_set,
    main,
    path_names,
    read_eval_set,
    write_eval_set,
)
from frontier.research.knowledge import Country, Edge, Entity, KnowledgeGraph, knowledge_graph, normalize_name


@pytest.fixture(scope="module")
def graph():
    return knowledge_graph()


# --- re-deriving answers from the question text, with plain graph queries ------------------------------------------


def _country(graph, name):
    (found,) = graph.resolve(name.removeprefix("the "))
    return found


def _two_countries(graph, text):
    """Split "X and Y" where either name may itself contain "and" (Bosnia and Herzegovina)."""
    splits = [
        (text[: m.start()], text[m.end() :])
        for m in re.finditer(" and ", text)
        if graph.resolve(text[: m.start()].removeprefix("the ")) and graph.resolve(text[m.end() :].removeprefix("the "))
    ]
    assert len(splits) == 1, text
    return _country(graph, splits[0][0]), _country(graph, splits[0][1])


def _country_of_capital(graph, city_name):
    (city,) = graph.resolve(city_name, kind="city")
    (country,) = graph.objects(city, "capital_of")
    return country


def _most_populous(graph, countries):
    return max(countries, key=lambda c: graph.value(c, "population"))


def _rederive(graph, question):
    text = question.question
    if match := re.fullmatch(r"What is the capital of the country that borders both (.+)\?", text):
        first, second = _two_countries(graph, match[1])
        (common,) = set(graph.neighbours(first)) & set(graph.neighbours(second))
        return graph.name(graph.capital(common))
    if match := re.fullmatch(r"Which country bordering (.+) has the largest population\?", text):
        return graph.name(_most_populous(graph, graph.neighbours(_country(graph, match[1]))))
    if match := re.fullmatch(r"What is the capital of the most populous country bordering (.+)\?", text):
        return graph.name(graph.capital(_most_populous(graph, graph.neighbours(_country(graph, match[1])))))
    if match := re.fullmatch(
        r"What is the ISO 4217 code of the currency used in the country whose capital is (.+)\?", text
    ):
        (currency,) = graph.objects(_country_of_capital(graph, match[1]), "currency")
        return graph.name(currency)
    if match := re.fullmatch(r"How many countries border the country whose capital is (.+)\?", text):
        return str(len(graph.neighbours(_country_of_capital(graph, match[1]))))
    if match := re.fullmatch(r"Which continent is the country whose capital is (.+) in\?", text):
        (continent,) = graph.objects(_country_of_capital(graph, match[1]), "in_continent")
        return graph.name(continent)
    if match := re.fullmatch(r"What is the capital of whichever of (.+) has the larger population\?", text):
        return graph.name(graph.capital(_most_populous(graph, _two_countries(graph, match[1]))))
    raise AssertionError(f"no template reads {text!r}")


@pytest.mark.parametrize("template", list(TEMPLATES))
def test_every_candidate_answer_rederives_from_the_graph(graph, template):
    questions = candidate_questions(template, graph)
    assert len(questions) >= 30, template
    for question in questions:
        assert _rederive(graph, question) == question.answer, question.question
        assert question.template == template and question.hops in (2, 3)
        assert question.doc_ids and all(doc.startswith("factbook/") for doc in question.doc_ids)
        assert f" {normalize_name(question.answer)} " not in f" {normalize_name(question.question)} "


def test_known_questions_have_the_right_answers(graph):
    by_text = {q.question: q for name in TEMPLATES for q in candidate_questions(name, graph)}
    cases = {
        "Which country bordering Lesotho has the largest population?": None,  # one neighbour: no comparison
        "What is the capital of the country that borders both Andorra and Portugal?": "Madrid",
        "What is the capital of whichever of France and Spain has the larger population?": "Paris",
        "How many countries border the country whose capital is Berlin?": "9",
        # countryinfo adds Suriname (beyond French Guiana), which France's document does not list: no exact count
        "How many countries border the country whose capital is Paris?": None,
        "What is the ISO 4217 code of the currency used in the country whose capital is Prague?": "CZK",
        "Which continent is the country whose capital is Berlin in?": "Europe",
    }
    for text, answer in cases.items():
        assert (by_text[text].answer if text in by_text else None) == answer, text
    berlin = by_text["How many countries border the country whose capital is Berlin?"]
    assert berlin.doc_ids == ["factbook/europe/gm"]  # Germany's own document lists all nine
    assert berlin.aliases == ["nine"]


# --- uniqueness on a hand-made graph -------------------------------------------------------------------------------


def _toy_graph(borders, capitals, populations=None):
    """Countries A-E; `borders` as pairs, `capitals` country -> city name, `populations` country -> number."""
    countries = [
        Country(f"country:{c}", "country", f"Land{c}", iso2=c * 2, iso3=c * 3, fips=c * 2, doc_id=f"factbook/x/{c}")
        for c in "ABCDE"
    ]
    cities = [Entity(f"city:{c}", "city", name) for c, name in capitals.items()]
    doc = "factbook/x/{}".format
    edges = [Edge(f"country:{a}", "borders", f"country:{b}", ("factbook",), (doc(a), doc(b)), True) for a, b in borders]
    edges += [Edge(f"city:{c}", "capital_of", f"country:{c}", ("factbook",), (doc(c),), True) for c in capitals]
    edges += [
        Edge(f"country:{c}", "population", n, ("factbook", "geonames"), (doc(c),), True)
        for c, n in (populations or {}).items()
    ]
    return KnowledgeGraph([*countries, *cities], edges, {}, {})


def test_a_second_common_neighbour_rules_the_question_out():
    capitals = {"C": "Cton", "D": "Dton"}
    unique = _toy_graph([("A", "C"), ("B", "C"), ("A", "D")], capitals)
    (question,) = TEMPLATES["capital_of_common_neighbour"](unique)
    assert question.question == "What is the capital of the country that borders both LandA and LandB?"
    assert question.answer == "Cton"
    ambiguous = _toy_graph([("A", "C"), ("B", "C"), ("A", "D"), ("B", "D")], capitals)
    assert list(TEMPLATES["capital_of_common_neighbour"](ambiguous)) == []


def test_a_capital_name_two_countries_share_identifies_neither():
    borders = [("A", "B"), ("C", "D")]
    distinct = _toy_graph(borders, {"A": "Kingston", "C": "Cton"})
    assert len(list(TEMPLATES["neighbour_count_by_capital"](distinct))) == 2
    shared = _toy_graph(borders, {"A": "Kingston", "C": "Kingston"})
    assert list(TEMPLATES["neighbour_count_by_capital"](shared)) == []
    telling = _toy_graph(borders, {"A": "LandA City", "C": "Cton"})  # "Kuwait City" gives the country away
    assert [q.answer for q in TEMPLATES["neighbour_count_by_capital"](telling)] == ["1"]


def test_populations_too_close_to_call_are_skipped():
    capitals = {c: f"{c}ton" for c in "ABC"}
    clear = _toy_graph([("A", "B"), ("A", "C")], capitals, {"A": 10, "B": 1000, "C": 800})
    (question,) = TEMPLATES["most_populous_neighbour"](clear)
    assert question.answer == "LandB"
    close = _toy_graph([("A", "B"), ("A", "C")], capitals, {"A": 10, "B": 1000, "C": 950})
    assert list(TEMPLATES["most_populous_neighbour"](close)) == []


# --- sampling --------------------------------------------------------------------------------------------------------


def test_generation_is_deterministic_balanced_and_distinct():
    questions = generate_eval_set(35, seed=1)
    assert questions == generate_eval_set(35, seed=1)
    assert questions != generate_eval_set(35, seed=2)
    assert len({q.question for q in questions}) == len({q.id for q in questions}) == 35
    assert Counter(q.template for q in questions) == dict.fromkeys(TEMPLATES, 5)
    subset = generate_eval_set(4, seed=1, templates=["continent_by_capital"])
    assert {q.template for q in subset} == {"continent_by_capital"}


def test_generation_rejects_bad_arguments():
    with pytest.raises(ConfigError, match="unknown template 'nope'"):
        generate_eval_set(5, seed=0, templates=["nope"])
    with pytest.raises(ConfigError, match="positive"):
        generate_eval_set(0, seed=0)
    with pytest.raises(ConfigError, match="distinct questions exist"):
        generate_eval_set(10_000, seed=0, templates=["continent_by_capital"])


# --- JSONL ---------------------------------------------------------------------------------------------------------


def _sample_question(**changes):
    fields = dict(
        id="q1",
        question="Which continent is the country whose capital is Berlin in?",
        answer="Europe",
        aliases=[],
        hops=2,
        path=[["Berlin", "capital_of", "Germany"], ["Germany", "in_continent", "Europe"]],
        doc_ids=["factbook/europe/gm"],
        template="continent_by_capital",
    )
    return EvalQuestion(**{**fields, **changes})


def test_jsonl_round_trip(tmp_path):
    questions = [_sample_question(), _sample_question(id="q2", aliases=["Europa"])]
    path = tmp_path / "set.jsonl"
    write_eval_set(questions, path)
    assert read_eval_set(path) == questions
    assert EvalQuestion.from_json(questions[1].to_json()) == questions[1]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        (json.dumps({"id": "q9"}), "missing field(s): question, answer"),
        (json.dumps({**_sample_question().__dict__, "hops": "2"}), "field 'hops' must be a positive integer"),
        (json.dumps({**_sample_question().__dict__, "path": [["a", "b"]]}), "field 'path' must be"),
        (json.dumps({**_sample_question().__dict__, "extra": 1}), "unknown field(s): extra"),
        (_sample_question().to_json(), "duplicate id 'q1'"),
    ],
)
def test_bad_lines_name_the_line_and_the_problem(tmp_path, line, message):
    path = tmp_path / "set.jsonl"
    path.write_text(_sample_question().to_json() + "\n\n" + line + "\n", encoding="utf-8")
    with pytest.raises(EvalSetFormatError) as error:
        read_eval_set(path)
    assert f"{path}:3: " in str(error.value) and message in str(error.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(EvalSetFormatError, match="no such file"):
        read_eval_set(tmp_path / "absent.jsonl")


# --- the shipped set and its command -------------------------------------------------------------------------------


def test_shipped_set_is_exactly_a_fresh_generation(tmp_path):
    """Fails when the generator or the graph changes; regenerate with the command in the evalset docstring."""
    assert DEFAULT_EVAL_SET.stat().st_size < 200_000
    shipped = read_eval_set(DEFAULT_EVAL_SET)
    fresh = generate_eval_set(200, seed=0)
    assert shipped == fresh
    write_eval_set(fresh, tmp_path / "fresh.jsonl")
    assert (tmp_path / "fresh.jsonl").read_bytes() == DEFAULT_EVAL_SET.read_bytes()


def test_command_writes_a_set(tmp_path, capsys):
    output = tmp_path / "small.jsonl"
    assert main(["--count", "7", "--seed", "3", "--output", str(output)]) == 0
    assert read_eval_set(output) == generate_eval_set(7, seed=3)
    assert main(["--count", "0", "--output", str(output)]) == 1
    assert "count must be a positive integer" in capsys.readouterr().err


def test_a_training_set_shares_no_question_or_answer_with_the_excluded_set(tmp_path, capsys):
    shipped = read_eval_set(DEFAULT_EVAL_SET)
    output = tmp_path / "train.jsonl"

    assert main(["--count", "250", "--seed", "1", "--exclude", str(DEFAULT_EVAL_SET), "--output", str(output)]) == 0

    train = read_eval_set(output)
    assert len(train) == 250
    assert not {q.question for q in train} & {q.question for q in shipped}
    assert not {normalize_name(q.answer) for q in train} & {normalize_name(q.answer) for q in shipped}
    held_out = answer_names(shipped)  # no training path walks through an evaluation answer's facts
    assert not [q.question for q in train if held_out & path_names(q)]
    with pytest.raises(ConfigError, match="outside the excluded set"):
        generate_eval_set(1000, seed=1, exclude=shipped)
    everything_left = generate_eval_set(1000, seed=1, exclude=shipped, allow_fewer=True)
    assert 250 <= len(everything_left) < 1000 and not [q for q in everything_left if held_out & path_names(q)]
