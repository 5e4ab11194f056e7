"""Multi-hop questions over the CIA World Factbook, with gold answers computed exactly from the knowledge graph.

Each template chains 2-3 supported edges of `frontier.research.knowledge` (facts the Factbook documents state), so
every answer can be read off the documents listed in the question's ``doc_ids``. A candidate question is dropped
when its answer is not unique in the graph (a second common neighbour, a capital name shared by two countries, a
population too close to call, a Factbook text that names several capitals or continents) or when the question gives
its answer away (the capital "Luxembourg" names the country). Population comparisons use the Factbook's own 2024/2025
figures and need a 10 % margin, so that the answer does not hinge on which year's estimate one reads.

The shipped set, ``frontier/research/data/factbook_multihop.jsonl``, is exactly what this command writes (a test
regenerates it and compares):

    python -m frontier.research.evalset --count 200 --seed 0 --output src/frontier/research/data/factbook_multihop.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from itertools import combinations
from pathlib import Path
from typing import Any

from frontier.errors import ConfigError, FrontierError
from frontier.io import atomic_write_text
from frontier.research.knowledge import Edge, KnowledgeGraph, knowledge_graph, normalize_name, strip_accents

# The shipped set; a plain path, as the package is installed from a directory or wheel, never imported from a zip.
DEFAULT_EVAL_SET = Path(__file__).with_name("data") / "factbook_multihop.jsonl"
# The larger of two populations must exceed the smaller by this factor to count as larger.
POPULATION_MARGIN = 1.10
_NUMBER_WORDS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
)
# Country names read with "the" inside a sentence: words that make a name a description, and plural or customary ones.
_ARTICLE_WORDS = {"Republic", "Kingdom", "United", "Islands", "States", "Territory", "Emirates", "Federation"}
_ARTICLE_NAMES = {"Netherlands", "Philippines", "Bahamas", "Gambia", "Maldives", "Comoros", "Seychelles", "Vatican"}


class EvalSetFormatError(FrontierError, ValueError):
    """An evaluation-set file or record is malformed; the message names the line and the field."""


@dataclass
class EvalQuestion:
    """A question, its gold answer (a short name or number) with accepted spellings, and the chain of facts behind it.

    ``path`` holds [subject, relation, object] triples by name, ``doc_ids`` the Factbook documents that state them.
    """

    id: str
    question: str
    answer: str
    aliases: list[str]
    hops: int
    path: list[list[str]]
    doc_ids: list[str]
    template: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, record: str | dict[str, Any], *, ignore_unknown_fields: bool = False) -> EvalQuestion:
        """Parse a JSON line (or its decoded object), checking every field's presence and type.

        Unknown fields are an error (a typo should not pass silently) unless `ignore_unknown_fields`, which lets a
        file written for a richer question type (a synthesized set's `difficulty`, `split`, ...) be read as this one.
        """
        if isinstance(record, str):
            try:
                record = json.loads(record)
            except json.JSONDecodeError as error:
                raise EvalSetFormatError(f"not valid JSON: {error.msg} at column {error.colno}") from None
        if not isinstance(record, dict):
            raise EvalSetFormatError(f"expected a JSON object, got {type(record).__name__}")
        expected = [field.name for field in fields(cls)]
        missing = [name for name in expected if name not in record]
        if missing:
            raise EvalSetFormatError(f"missing field(s): {', '.join(missing)}")
        unknown = sorted(set(record) - set(expected))
        if unknown and ignore_unknown_fields:
            record = {name: record[name] for name in expected}
        elif unknown:
            raise EvalSetFormatError(f"unknown field(s): {', '.join(unknown)}")
        checks: dict[str, tuple[Callable[[Any], bool], str]] = {
            "id": (_is_text, "a non-empty string"),
            "question": (_is_text, "a non-empty string"),
            "answer": (_is_text, "a non-empty string"),
            "template": (_is_text, "a non-empty string"),
            "aliases": (is_text_list, "a list of strings"),
            "doc_ids": (is_text_list, "a list of strings"),
            "hops": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "a positive integer"),
            "path": (
                lambda v: isinstance(v, list) and all(is_text_list(t) and len(t) == 3 for t in v),
                "a list of [subject, relation, object] string triples",
            ),
        }
        for name, (valid, description) in checks.items():
            if not valid(record[name]):
                raise EvalSetFormatError(f"field {name!r} must be {description}, got {record[name]!r}")
        return cls(**record)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def is_text_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def read_eval_set(
    path: str | Path, *, question_type: type[EvalQuestion] = EvalQuestion, ignore_unknown_fields: bool = False
) -> list[EvalQuestion]:
    """Read a JSONL file of questions of `question_type`; errors name the file, line and field. Blank lines are
    skipped; ids must be unique."""
    from frontier.research.evaluation import normalize_answer

    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise EvalSetFormatError(f"{path}: no such file") from None
    questions, seen = [], set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            question = question_type.from_json(line, ignore_unknown_fields=ignore_unknown_fields)
        except EvalSetFormatError as error:
            raise EvalSetFormatError(f"{path}:{number}: {error}") from None
        if question.id in seen:
            raise EvalSetFormatError(f"{path}:{number}: duplicate id {question.id!r}")
        empty = [gold for gold in (question.answer, *question.aliases) if not normalize_answer(gold)]
        if empty:  # scoring compares normalised strings: such a gold could only match an empty prediction
            raise EvalSetFormatError(
                f"{path}:{number}: answer or alias {empty[0]!r} is empty once normalised (only punctuation or articles)"
            )
        seen.add(question.id)
        questions.append(question)
    return questions


def write_eval_set(questions: list[EvalQuestion], path: str | Path) -> None:
    atomic_write_text(path, "".join(question.to_json() + "\n" for question in questions))


# --- building questions -------------------------------------------------------------------------------------------


def answer_aliases(graph: KnowledgeGraph, entity_id: str) -> list[str]:
    """Other accepted spellings of an entity: the sources' spellings in Latin script, and each without accents."""
    entity = graph.entity(entity_id)
    seen = {entity.name}
    aliases = []
    for spelling in (*entity.aliases, *(strip_accents(name) for name in entity.names)):
        if spelling not in seen and strip_accents(spelling).isascii():
            seen.add(spelling)
            aliases.append(spelling)
    return aliases


def _number_aliases(number: int) -> list[str]:
    return [_NUMBER_WORDS[number]] if number < len(_NUMBER_WORDS) else []


def make_question(
    graph: KnowledgeGraph,
    template: str,
    hops: int,
    text: str,
    answer: str,
    aliases: list[str],
    path: list[tuple[str, str, str | int]],
) -> EvalQuestion | None:
    """An EvalQuestion over `path` (triples of entity ids, relations and numbers), or None when the question text
    contains the answer or one of its spellings."""
    asked = normalize_name(text)
    if any(f" {normalize_name(name)} " in f" {asked} " for name in (answer, *aliases)):
        return None
    named_path = [[_label(graph, s), r, _label(graph, o)] for s, r, o in path]
    doc_ids = set()
    for subject, relation, obj in path:
        edge = _edge(graph, subject, relation, obj)
        own = getattr(graph.entity(subject), "doc_id", None)
        # a border is read off the subject's own document where it lists it; the neighbour's is then not needed
        doc_ids.update([own] if relation == "borders" and own in edge.doc_ids else edge.doc_ids)
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]
    return EvalQuestion(
        id=f"{template}-{digest}",
        question=text,
        answer=answer,
        aliases=aliases,
        hops=hops,
        path=named_path,
        doc_ids=sorted(doc_ids),
        template=template,
    )


def _label(graph: KnowledgeGraph, node: str | int) -> str:
    return graph.name(node) if isinstance(node, str) else str(node)


def _in_sentence(graph: KnowledgeGraph, country: str) -> str:
    """A country's name as it reads mid-sentence: "the Democratic Republic of the Congo", "the Netherlands"."""
    name = graph.name(country)
    bare = name.removeprefix("The ")
    if bare != name or bare in _ARTICLE_NAMES or _ARTICLE_WORDS & set(bare.split()):
        return f"the {bare}"
    return name


def _edge(graph: KnowledgeGraph, subject: str, relation: str, obj: str | int) -> Edge:
    if relation == "borders":
        edge = graph.border_edge(subject, str(obj))
    elif relation in ("population", "area"):
        edge = graph.value_edge(subject, relation)
    else:
        edge = next((e for e in graph.edges_from(subject, relation) if e.object == obj), None)
    if edge is None or not edge.supported:
        raise AssertionError(f"no supported edge {subject} -{relation}-> {obj}")  # a template bug, not user input
    return edge


def _identifying_capitals(graph: KnowledgeGraph) -> dict[str, str]:
    """country id -> its sole capital, for capitals no other country's capital shares a name with (so "the country
    whose capital is C" picks out one country) and that do not name the country ("Kuwait City")."""
    owners: dict[str, set[str]] = {}
    for edge in graph.edges:
        if edge.relation == "capital_of":
            for name in graph.entity(edge.subject).names:
                owners.setdefault(normalize_name(name), set()).add(str(edge.object))
    capitals = {}
    for country in graph.countries():
        city = graph.capital(country.id)
        if city is None:
            continue
        city_names = [normalize_name(name) for name in graph.entity(city).names]
        country_names = [normalize_name(name) for name in country.names]
        unique = all(owners[name] == {country.id} for name in city_names)
        telling = any(
            f" {a} " in f" {b} " or f" {b} " in f" {a} " or b.startswith(a) for a in city_names for b in country_names
        )
        if unique and not telling:
            capitals[country.id] = city
    return capitals


def _countries_with_population(graph: KnowledgeGraph) -> dict[str, int]:
    return {c.id: value for c in graph.countries() if (value := graph.value(c.id, "population")) is not None}


def _clearly_larger(first: int, second: int) -> bool:
    return first >= POPULATION_MARGIN * second


def exact_neighbours(graph: KnowledgeGraph, country: str) -> list[str] | None:
    """The neighbours of a country when they are beyond doubt: its own document lists each, each resolved, and no
    package claims another."""
    if not graph.complete_borders(country):
        return None
    neighbours = graph.neighbours(country)
    return neighbours if neighbours == graph.neighbours(country, supported_only=False) else None


def _capital_of_common_neighbour(graph: KnowledgeGraph) -> Iterator[EvalQuestion | None]:
    exact = {c.id: set(n) for c in graph.countries() if (n := exact_neighbours(graph, c.id))}
    for first, second in combinations(sorted(exact), 2):
        common = exact[first] & exact[second]
        if len(common) != 1:
            continue
        middle = common.pop()
        capital = graph.capital(middle)
        if capital is None:
            continue
        both = f"{_in_sentence(graph, first)} and {_in_sentence(graph, second)}"
        text = f"What is the capital of the country that borders both {both}?"
        path = [(first, "borders", middle), (second, "borders", middle), (capital, "capital_of", middle)]
        yield make_question(
            graph, "capital_of_common_neighbour", 2, text, graph.name(capital), answer_aliases(graph, capital), path
        )


def _most_populous_neighbour(graph: KnowledgeGraph) -> Iterator[tuple[str, list[str]]]:
    """(country, its neighbours by population, largest first) where the neighbours are exact, their populations
    known, and the first clearly ahead of the second."""
    population = _countries_with_population(graph)
    for country in graph.countries():
        neighbours = exact_neighbours(graph, country.id)
        if not neighbours or len(neighbours) < 2 or any(n not in population for n in neighbours):
            continue
        ranked = sorted(neighbours, key=lambda n: (-population[n], n))
        if _clearly_larger(population[ranked[0]], population[ranked[1]]):
            yield country.id, ranked


def _neighbour_populations(graph: KnowledgeGraph, country: str, ranked: list[str]) -> list[tuple[str, str, str | int]]:
    """The facts that rank a country's neighbours: each border, then each neighbour's population, largest first."""
    borders = [(country, "borders", neighbour) for neighbour in ranked]
    populations = [(neighbour, "population", graph.value(neighbour, "population")) for neighbour in ranked]
    return [*borders, *populations]


def _most_populous_neighbour_questions(graph: KnowledgeGraph) -> Iterator[EvalQuestion | None]:
    for country, ranked in _most_populous_neighbour(graph):
        winner = ranked[0]
        text = f"Which country bordering {_in_sentence(graph, country)} has the largest population?"
        path = _neighbour_populations(graph, country, ranked)
        yield make_question(
            graph, "most_populous_neighbour", 2, text, graph.name(winner), answer_aliases(graph, winner), path
        )


def _capital_of_most_populous_neighbour(graph: KnowledgeGraph) -> Iterator[EvalQuestion | None]:
    for country, ranked in _most_populous_neighbour(graph):
        capital = graph.capital(ranked[0])
        if capital is None:
            continue
        text = f"What is the capital of the most populous country bordering {_in_sentence(graph, country)}?"
        path = [*_neighbour_populations(graph, country, ranked), (capital, "capital_of", ranked[0])]
        yield make_question(
            graph,
            "capital_of_most_populous_neighbour",
            3,
            text,
            graph.name(capital),
            answer_aliases(graph, capital),
            path,
        )


def _currency_by_capital(graph: KnowledgeGraph) -> Iterator[EvalQuestion | None]:
    for country, capital in _identifying_capitals(graph).items():
        currency = graph.sole(country, "currency")
        if currency is None:
            continue
        text = f"What is the ISO 4217 code of the currency used in the country whose capital is {graph.name(capital)}?"
        path = [(capital, "capital_of", country), (country, "currency", currency)]
        yield make_question(
            graph, "currency_by_capital", 2, text, graph.name(currency), answer_aliases(graph, currency), path
        )


def _neighbour_count_by_capital(graph: KnowledgeGraph) -> Iterator[EvalQuestion | None]:
    for country, capital in _identifying_capitals(graph).items():
        neighbours = exact_neighbours(graph, country)
        if not neighbours:
            continue
        text = f"How many countries border the country whose capital is {graph.name(capital)}?"
        path = [(capital, "capital_of", country), *((country, "borders", n) for n in neighbours)]
        count = len(neighbours)
        yield make_question(graph, "neighbour_count_by_capital", 2, text, str(count), _number_aliases(count), path)


def _continent_by_capital(graph: KnowledgeGraph) -> Iterator[EvalQuestion | None]:
    for country, capital in _identifying_capitals(graph).items():
        continent = graph.sole(country, "in_continent")
        if continent is None:
            continue
        text = f"Which continent is the country whose capital is {graph.name(capital)} in?"
        path = [(capital, "capital_of", country), (country, "in_continent", continent)]
        yield make_question(
            graph, "continent_by_capital", 2, text, graph.name(continent), answer_aliases(graph, continent), path
        )


def _larger_population_capital(graph: KnowledgeGraph) -> Iterator[EvalQuestion | None]:
    population = _countries_with_population(graph)
    for edge in graph.edges:
        first, second = edge.subject, str(edge.object)
        if edge.relation != "borders" or not edge.supported or first not in population or second not in population:
            continue
        if hashlib.sha1(f"{first} {second}".encode()).digest()[0] % 2:  # so the larger is not always named first
            first, second = second, first
        winner, loser = (first, second) if population[first] >= population[second] else (second, first)
        capital = graph.capital(winner)
        if capital is None or not _clearly_larger(population[winner], population[loser]):
            continue
        text = (
            f"What is the capital of whichever of {_in_sentence(graph, first)} and {_in_sentence(graph, second)} has "
            "the larger population?"
        )
        path = [
            (winner, "population", population[winner]),
            (loser, "population", population[loser]),
            (capital, "capital_of", winner),
        ]
        yield make_question(
            graph, "larger_population_capital", 2, text, graph.name(capital), answer_aliases(graph, capital), path
        )


TEMPLATES: dict[str, Callable[[KnowledgeGraph], Iterator[EvalQuestion | None]]] = {
    "capital_of_common_neighbour": _capital_of_common_neighbour,
    "most_populous_neighbour": _most_populous_neighbour_questions,
    "capital_of_most_populous_neighbour": _capital_of_most_populous_neighbour,
    "currency_by_capital": _currency_by_capital,
    "neighbour_count_by_capital": _neighbour_count_by_capital,
    "continent_by_capital": _continent_by_capital,
    "larger_population_capital": _larger_population_capital,
}


def candidate_questions(template: str, graph: KnowledgeGraph | None = None) -> list[EvalQuestion]:
    """Every question `template` can ask of the graph, in a fixed order."""
    if template not in TEMPLATES:
        raise ConfigError(f"unknown template {template!r}; choose from {', '.join(TEMPLATES)}")
    graph = graph or knowledge_graph()
    return [question for question in TEMPLATES[template](graph) if question is not None]


def refuse_shipped_questions(questions, what: str) -> None:
    """ConfigError if any of `questions` is a question of the shipped evaluation set: `what` (training data) made
    from them would be tested on."""
    shipped = {q.question for q in read_eval_set(DEFAULT_EVAL_SET)}
    overlap = sum(q.question in shipped for q in questions)
    if overlap:
        raise ConfigError(
            f"{overlap} of these questions are in the shipped evaluation set ({DEFAULT_EVAL_SET.name}); {what} made "
            "from them would be tested on. Use training questions (python -m frontier.research.evalset --exclude "
            f"{DEFAULT_EVAL_SET.name} …, or a synthesized set's --split train)"
        )


def answer_names(questions) -> set[str]:
    """Normalised answers and aliases of `questions`."""
    return {normalize_name(name) for question in questions for name in (question.answer, *question.aliases)}


def path_names(question) -> set[str]:
    """Normalised names of the entities on a question's path (figures left out)."""
    return {normalize_name(x) for s, _, o in question.path for x in (s, o) if not str(x).isdigit()}


def generate_eval_set(
    count: int,
    seed: int,
    templates: list[str] | None = None,
    exclude: list[EvalQuestion] | None = None,
    allow_fewer: bool = False,
) -> list[EvalQuestion]:
    """`count` distinct questions drawn evenly across `templates` (default: all), the same for the same seed.

    A question is never drawn if it shares its text with one in `exclude`, or if an answer or alias of one in
    `exclude` is anywhere on its path (its own answer included): a training set made with `exclude=<the evaluation
    sets>` neither asks an evaluation question nor walks through an evaluation answer's facts. Fewer than `count`
    questions left is an error, or with `allow_fewer` the answer: all of them.
    """
    if count < 1:
        raise ConfigError(f"count must be a positive integer, got {count}")
    names = list(templates) if templates else list(TEMPLATES)
    excluded_texts = {q.question for q in exclude or []}
    excluded_names = answer_names(exclude or [])
    rng = random.Random(seed)
    pools = []
    for name in names:
        pool = [
            q
            for q in candidate_questions(name)
            if q.question not in excluded_texts
            and normalize_name(q.answer) not in excluded_names
            and not excluded_names & path_names(q)
        ]
        rng.shuffle(pool)
        pools.append(pool)
    chosen: list[EvalQuestion] = []
    asked: set[str] = set()
    # round robin, so the templates stay balanced until the smaller ones run out
    while len(chosen) < count and any(pools):
        for pool in pools:
            while pool and len(chosen) < count:
                question = pool.pop()
                if question.question not in asked:
                    asked.add(question.question)
                    chosen.append(question)
                    break
    if len(chosen) < count and not allow_fewer:
        raise ConfigError(
            f"only {len(chosen)} distinct questions exist for templates {', '.join(names)}"
            f"{' outside the excluded set' if exclude else ''}; ask for fewer"
        )
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m frontier.research.evalset", description="Write a multi-hop Factbook question set as JSONL."
    )
    parser.add_argument("--count", type=int, default=200, help="number of questions (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--output", type=Path, required=True, help="JSONL file to write")
    parser.add_argument(
        "--template", action="append", choices=list(TEMPLATES), help="restrict to this template (repeatable)"
    )
    parser.add_argument(
        "--exclude", type=Path, action="append", default=[],
        help="leave out questions whose text or answer is in this set (repeatable), e.g. to make a training set "
        f"disjoint from the shipped evaluation set {DEFAULT_EVAL_SET.name}",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        exclude = [q for path in args.exclude for q in read_eval_set(path, ignore_unknown_fields=True)]
        questions = generate_eval_set(args.count, args.seed, args.template, exclude=exclude)
    except FrontierError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    write_eval_set(questions, args.output)
    print(f"wrote {len(questions)} questions to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
