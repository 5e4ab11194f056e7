"""WebSailor-style question synthesis over the Factbook knowledge graph: random walks, obfuscation, unique answers.

A question is a random walk of 2-4 supported edges (`random_walk`) from a country to the answer: a country, capital,
largest city, continent, currency or language. Every country on the way is described, never named: by its attributes
("a landlocked country of about 10 million people", "with an independence date in the 1960s", "whose capital's name
starts with 'B'", "with 3 land neighbours") and by its relation to the country before it ("bordering ...", "sharing an
official language with ...", "using the same currency as ..."). The description is a WebShaper-style formula: each
node's candidate set is the projection of the previous node's set through the walk's relation, intersected with one set
per attribute constraint.
`ConstraintSolver` executes it on the graph, and constraints are added in a seeded order until exactly one entity,
the answer, is left:

    What is the capital of the country of about 1 million people, bordering a country of about 2 million people?
    (Tallinn: Latvia -borders- Estonia -capital- Tallinn, one population range on each country)

Sets are over-approximated so that "exactly one" holds whichever source one believes: projections follow every edge
any source states (not only the Factbook-supported ones the walk takes) and every official language or currency code
the Factbook text names, and a number matches a range that it misses by up to `RANGE_MARGIN`. A question is dropped
when its text names the answer or one of the answer's one-hop neighbours, duplicates a shipped evaluation question,
is answered by one retrieval or closed-book (optional hooks), or, on the training side, touches a held-out answer
entity (`held_out_answers`: a seeded share of entities plus every answer of the shipped evaluation set).

    python -m frontier.research.synthesis --count 500 --seed 0 --output questions.jsonl [--no-filters]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frontier.errors import ConfigError
from frontier.research.evalset import (
    DEFAULT_EVAL_SET,
    EvalQuestion,
    EvalSetFormatError,
    answer_aliases,
    exact_neighbours,
    is_text_list,
    make_question,
    read_eval_set,
    write_eval_set,
)
from frontier.research.knowledge import (
    KnowledgeGraph,
    factbook_documents,
    factbook_field,
    knowledge_graph,
    mentions,
    normalize_name,
    parse_quantity,
    split_top_level,
    strip_accents,
)

if TYPE_CHECKING:
    from frontier.research.index import CorpusIndex
    from frontier.research.llm import ChatLLM

HOPS = (2, 3, 4)
ANSWER_KINDS = ("country", "city", "continent", "currency", "language")
# A walk step: the stored relation, whether it is read subject -> object, and the kinds it leads from and to.
STEPS: dict[str, tuple[str, bool, str, str]] = {
    "borders": ("borders", True, "country", "country"),
    "capital": ("capital_of", False, "country", "city"),
    "largest_city": ("largest_city_of", False, "country", "city"),
    "continent": ("in_continent", True, "country", "continent"),
    "official_language": ("official_language", True, "country", "language"),
    "official_language_of": ("official_language", False, "language", "country"),
    "currency": ("currency", True, "country", "currency"),
    "currency_of": ("currency", False, "currency", "country"),
}
STEP_RELATIONS = {relation for relation, _, _, _ in STEPS.values()}
# Cities and continents end a walk: going on from them only leads back to a country already described.
_TERMINAL_KINDS = {"city", "continent"}
# A figure matches a range it misses by up to this fraction (another year's estimate, a rounded reading), and a
# range is only used to describe a figure that lies this far inside it.
RANGE_MARGIN = 0.05
# Past this many attribute constraints a question reads as a list of clues rather than a question.
MAX_CONSTRAINTS = 6
# Questions per answer entity, so that the six continents and the euro do not fill the set.
MAX_PER_ANSWER = 5
# Walks tried per requested question before giving up on the count.
ATTEMPTS_PER_QUESTION = 40
# Restarts of a walk that hit a dead end before `random_walk` gives up on the graph.
_WALK_TRIES = 1000
CLOSED_BOOK_FILTER = "closed_book"
RETRIEVAL_FILTER = "single_retrieval"

Constraint = tuple[str, Any]  # (kind, value), e.g. ("population_about", 10000000), ("continent", "continent:EU")
Fact = tuple[str, str, str | int]  # (subject id, relation, object id or figure)


class SynthesisFormatError(EvalSetFormatError):
    """A synthesized-question file or record is malformed; the message names the line and the field."""


@dataclass(frozen=True)
class Walk:
    """Entity ids from the starting country to the answer, and the `STEPS` between them."""

    nodes: tuple[str, ...]
    steps: tuple[str, ...]

    @property
    def answer(self) -> str:
        return self.nodes[-1]


@dataclass
class SynthesizedQuestion(EvalQuestion):
    """An `EvalQuestion` plus its formula and bookkeeping.

    ``nodes`` are the walk's entity ids, ``steps`` and ``constraints`` (per node, ``[kind, value]`` pairs) the
    formula `ConstraintSolver.solve` executes; ``entities`` every entity id on the path; ``difficulty`` hops plus
    attribute constraints; ``split`` "train" or "test"; ``filters`` the filters the question passed.
    """

    answer_id: str
    nodes: list[str]
    entities: list[str]
    steps: list[str]
    constraints: list[list[list[Any]]]
    difficulty: int
    split: str
    filters: list[str]

    @classmethod
    def from_json(cls, record: str | dict[str, Any], *, ignore_unknown_fields: bool = False) -> SynthesizedQuestion:
        """Parse a JSON line, checking the `EvalQuestion` fields as it does and the synthesis fields here."""
        question = super().from_json(record, ignore_unknown_fields=ignore_unknown_fields)
        checks: dict[str, tuple[Callable[[Any], bool], str]] = {
            "answer_id": (lambda v: isinstance(v, str) and ":" in v, "an entity id such as 'country:FRA'"),
            "nodes": (is_text_list, "a list of entity ids"),
            "entities": (is_text_list, "a list of entity ids"),
            "steps": (lambda v: is_text_list(v) and set(v) <= set(STEPS), f"a list of steps from {list(STEPS)}"),
            "constraints": (_is_constraint_lists, "a list (one per node) of [kind, value] pairs"),
            "difficulty": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "a positive integer"),
            "split": (lambda v: v in ("train", "test"), "'train' or 'test'"),
            "filters": (is_text_list, "a list of filter names"),
        }
        for name, (valid, description) in checks.items():
            value = getattr(question, name)
            if not valid(value):
                raise SynthesisFormatError(f"field {name!r} must be {description}, got {value!r}")
        return question


def _is_constraint_lists(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(node, list) and all(isinstance(c, list) and len(c) == 2 and isinstance(c[0], str) for c in node)
        for node in value
    )


# --- numbers as ranges --------------------------------------------------------------------------------------------


def about_range(value: int) -> tuple[int, int, int]:
    """(shown, low, high): `value` rounded to one significant figure, and the half-open range that rounds to it."""
    exponent = math.floor(math.log10(value))
    unit = 10**exponent
    digit = math.floor(value / unit + 0.5)  # half up, as a reader rounds (round() would make 2.5 into 2)
    if digit == 10:
        digit, unit = 1, unit * 10
    low = 0.95 * unit if digit == 1 else (digit - 0.5) * unit  # 0.95 * 10^e is where 9.5 * 10^(e-1) rounds up
    high = 9.5 * unit if digit == 9 else (digit + 0.5) * unit
    return digit * unit, math.ceil(low), math.ceil(high)


def between_range(value: int) -> tuple[int, int]:
    """The 1-2-5 bracket [low, high) holding `value`: 7,300,000 -> (5,000,000, 10,000,000)."""
    unit = 10 ** math.floor(math.log10(value))
    steps = [unit, 2 * unit, 5 * unit, 10 * unit]
    low = max(step for step in steps if step <= value)
    return low, steps[steps.index(low) + 1]


def _inside(value: int, low: int, high: int) -> bool:
    """Whether `value` lies well inside [low, high), so a reader with a slightly different figure agrees."""
    return low * (1 + RANGE_MARGIN) <= value < high / (1 + RANGE_MARGIN)


def _near(value: int, low: int, high: int) -> bool:
    """Whether a reader could place `value` in [low, high): inside it or within the margin of it."""
    return low / (1 + RANGE_MARGIN) <= value < high * (1 + RANGE_MARGIN)


def format_quantity(value: int) -> str:
    """1000000 -> "1 million", 2500000000 -> "2.5 billion", 80000 -> "80,000"."""
    for scale, word in ((10**9, "billion"), (10**6, "million")):
        if value >= scale:
            return f"{value / scale:g} {word}"
    return f"{value:,}"


def _format_between(low: int, high: int) -> str:
    first, second = format_quantity(low), format_quantity(high)
    word = second.rsplit(" ", 1)[-1]
    if word in ("million", "billion") and first.endswith(f" {word}"):
        first = first.removesuffix(f" {word}")  # "between 5 and 10 million"
    return f"between {first} and {second}"


# --- the constraint solver ----------------------------------------------------------------------------------------


def _years(text: str | None) -> set[int] | None:
    """Every four-digit year a text names, or None when there is no text."""
    return None if text is None else {int(year) for year in re.findall(r"\b(\d{4})\b", text)}


def _key(constraint: Sequence[Any]) -> Constraint:
    """A constraint as a hashable tuple; JSON turns a range (low, high) into a list."""
    kind, value = constraint
    return kind, tuple(value) if isinstance(value, list) else value


def _initial(name: str) -> str | None:
    letter = strip_accents(name.strip())[:1].upper()
    return letter if "A" <= letter <= "Z" else None


def _factbook_mentions(graph: KnowledgeGraph, documents: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(country, relation, entity) pairs a reader of the Factbook could take as facts though the graph lacks them:
    the graph only has languages and currencies the packages propose ("English (official)" in Curacao's text is not
    an edge), so every language named in a part of the text marked official, and every currency code in the
    exchange-rate text, counts."""
    languages = [(e.id, [normalize_name(n) for n in e.names]) for e in graph.entities.values() if e.kind == "language"]
    currencies = {e.name for e in graph.entities.values() if e.kind == "currency"}
    pairs = []
    for country in graph.countries():
        document = documents[country.doc_id]
        text = factbook_field(document, "People and Society", "Languages", "Languages") or (
            factbook_field(document, "People and Society", "Languages") or ""
        )
        official = [normalize_name(part) for part in split_top_level(text) if re.search(r"\bofficial\b", part, re.I)]
        pairs += [
            (country.id, "official_language", language)
            for language, names in languages
            if any(mentions(part, name) for part in official for name in names)
        ]
        rates = factbook_field(document, "Economy", "Exchange rates", "Currency") or ""
        pairs += [
            (country.id, "currency", f"currency:{code}")
            for code in set(re.findall(r"\b[A-Z]{3}\b", rates)) & currencies
        ]
    return pairs


class ConstraintSolver:
    """Executes question formulas on the graph: every constraint is the set of entities it admits, every walk step
    a projection of sets (WebShaper's R(V)), and a node's candidates are the projection of the previous node's
    candidates intersected with its constraints."""

    def __init__(self, graph: KnowledgeGraph) -> None:
        self.graph = graph
        self.countries = frozenset(country.id for country in graph.countries())
        documents = factbook_documents()
        # coastline in km, None where the Factbook gives no plain figure (Saint Helena lists each island)
        self.coastline = {
            country.id: parse_quantity(factbook_field(documents[country.doc_id], "Geography", "Coastline"))
            for country in graph.countries()
        }
        # every year an "Independence" text names, as a reader might take any of them for the date; None: no text
        self.independence_years = {
            country.id: _years(factbook_field(documents[country.doc_id], "Government", "Independence"))
            for country in graph.countries()
        }
        # every edge any source states, and every language or currency the Factbook text might be read to state,
        # so that projections over-approximate
        pairs = [
            (edge.subject, edge.relation, str(edge.object)) for edge in graph.edges if edge.relation in STEP_RELATIONS
        ]
        pairs += _factbook_mentions(graph, documents)
        self._projections: dict[str, dict[str, set[str]]] = {step: defaultdict(set) for step in STEPS}
        for subject, relation, obj in pairs:
            for step, (step_relation, forward, _, _) in STEPS.items():
                if step_relation == relation:
                    source, target = (subject, obj) if forward else (obj, subject)
                    self._projections[step][source].add(target)
                    if relation == "borders":
                        self._projections[step][target].add(source)
        # a country whose Factbook map references name several continents (France) may be read as in any of them
        continents = {entity for entity in graph.entities if entity.startswith("continent:")}
        for country in graph.several_stated["in_continent"]:
            self._projections["continent"][country] |= continents
        self._members: dict[Constraint, frozenset[str]] = {}
        # the same few sets (all countries, their neighbours) are projected over and over while constraints are chosen
        self.project = lru_cache(maxsize=2**16)(self._project)
        self._adjacent: dict[str, set[str]] = defaultdict(set)
        for edge in graph.edges:
            if isinstance(edge.object, str):
                self._adjacent[edge.subject].add(edge.object)
                self._adjacent[edge.object].add(edge.subject)
        self._forbidden: dict[str, frozenset[str]] = {}
        self._candidates: dict[str, list[Constraint]] = {}
        self._phrases: dict[Constraint, str] = {}

    def forbidden_names(self, entity: str) -> frozenset[str]:
        """Normalised names of an entity and of its one-hop neighbours by any source's edges: a question about it
        must name none of them."""
        if entity not in self._forbidden:
            near = {entity, *self._adjacent[entity]}
            names = {normalize_name(name) for node in near for name in self.graph.entity(node).names}
            self._forbidden[entity] = frozenset(filter(None, names))
        return self._forbidden[entity]

    # sets

    def _project(self, step: str, entities: frozenset[str]) -> frozenset[str]:
        """The entities `step` leads to from any of `entities` (`project`, cached)."""
        projection = self._projections[step]
        return frozenset(target for entity in entities for target in projection.get(entity, ()))

    def solve(self, steps: Sequence[str], constraints: Sequence[Sequence[Constraint]]) -> list[frozenset[str]]:
        """Each node's candidate set, from the starting country (first set) to the answer (last set)."""
        if len(constraints) != len(steps) + 1:
            raise ConfigError(f"a formula of {len(steps)} steps needs {len(steps) + 1} constraint lists")
        current = self.countries
        sets = []
        for node, node_constraints in enumerate(constraints):
            if node:
                current = self.project(steps[node - 1], current)
            current = self.admitted(node_constraints, current)
            sets.append(current)
        return sets

    def admitted(self, constraints: Sequence[Sequence[Any]], among: frozenset[str]) -> frozenset[str]:
        """The entities of `among` that every constraint admits."""
        for constraint in constraints:
            among = among & self.members(constraint)
        return among

    def members(self, constraint: Sequence[Any]) -> frozenset[str]:
        """The countries a constraint admits; unknown attributes admit (a country without a coastline figure is
        both landlocked and coastal as far as uniqueness goes)."""
        key = _key(constraint)
        if key not in self._members:
            self._members[key] = frozenset(c for c in self.countries if self._admits(c, *key))
        return self._members[key]

    def _admits(self, country: str, kind: str, value: Any) -> bool:
        graph = self.graph
        if kind in ("landlocked", "coastal"):
            coastline = self.coastline[country]
            return coastline is None or (coastline == 0) == (kind == "landlocked")
        if kind.startswith(("population_", "area_")):
            relation, style = kind.split("_")
            low, high = about_range(value)[1:] if style == "about" else value
            figures = [int(edge.object) for edge in graph.edges_from(country, relation, supported_only=False)]
            return any(_near(figure, low, high) for figure in figures)
        if kind == "capital_initial":
            cities = graph.subjects("capital_of", country, supported_only=False)
            return any(_initial(name) == value for city in cities for name in graph.entity(city).names)
        if kind == "name_initial":
            return any(_initial(name) == value for name in graph.entity(country).names)
        if kind == "neighbour_count":
            counts = (len(graph.neighbours(country)), len(graph.neighbours(country, supported_only=False)))
            unresolved = len(graph.unresolved_borders.get(country, ()))
            return min(counts) <= value <= max(counts) + unresolved
        if kind == "independence_decade":
            years = self.independence_years[country]
            return years is None or any(value <= year < value + 10 for year in years)
        if kind == "continent":
            several = country in graph.several_stated["in_continent"]
            return several or value in graph.objects(country, "in_continent", supported_only=False)
        raise ConfigError(f"unknown constraint kind {kind!r}")

    # the true attributes of one country

    def candidates(self, country: str) -> list[Constraint]:
        """The constraints `country` satisfies by the Factbook, each stated clearly enough to describe it."""
        if country not in self._candidates:
            self._candidates[country] = self._find_candidates(country)
        return self._candidates[country]

    def _find_candidates(self, country: str) -> list[Constraint]:
        graph = self.graph
        found: list[Constraint] = []
        coastline = self.coastline[country]
        if coastline is not None:
            found.append(("landlocked" if coastline == 0 else "coastal", None))
        for relation in ("population", "area"):
            value = graph.value(country, relation)
            if not value:
                continue
            shown, low, high = about_range(value)
            if _inside(value, low, high):
                found.append((f"{relation}_about", shown))
            low, high = between_range(value)
            if _inside(value, low, high):
                found.append((f"{relation}_between", (low, high)))
        capital = graph.capital(country)
        if capital is not None:
            initials = {_initial(name) for name in graph.entity(capital).names}
            if len(initials) == 1 and None not in initials:
                found.append(("capital_initial", initials.pop()))
        if letter := _initial(graph.name(country)):
            found.append(("name_initial", letter))
        neighbours = exact_neighbours(graph, country)
        if neighbours is not None:
            found.append(("neighbour_count", len(neighbours)))
        if continent := graph.sole(country, "in_continent"):
            found.append(("continent", continent))
        # "the 1900s" reads as a century as well as a decade, so round decades are not used
        if (year := graph.value(country, "independence")) and year % 100 >= 10:
            found.append(("independence_decade", year // 10 * 10))
        return found

    def facts(self, constraint: Constraint, country: str) -> list[Fact]:
        """The facts behind a constraint on `country`, as path triples (coastlines are added by the caller)."""
        kind, value = constraint
        graph = self.graph
        if kind.startswith(("population_", "area_")):
            relation = kind.split("_")[0]
            return [(country, relation, graph.value(country, relation))]
        if kind == "capital_initial":
            return [(graph.capital(country), "capital_of", country)]
        if kind == "neighbour_count":
            return [(country, "borders", neighbour) for neighbour in graph.neighbours(country)]
        if kind == "continent":
            return [(country, "in_continent", value)]
        if kind == "independence_decade":
            return [(country, "independence", graph.value(country, "independence"))]
        return []

    def phrase(self, constraint: Sequence[Any]) -> str:
        """How a constraint reads: "landlocked" (before "country"), "of about 10 million people", "in Europe"."""
        key = _key(constraint)
        if key not in self._phrases:
            self._phrases[key] = self._phrase(*key)
        return self._phrases[key]

    def _phrase(self, kind: str, value: Any) -> str:
        if kind.endswith("_between"):
            value = _format_between(*value)
        elif kind.endswith("_about"):
            value = f"about {format_quantity(value)}"
        match kind:
            case "landlocked" | "coastal":
                return kind
            case "population_about" | "population_between":
                return f"with {value} people" if kind.endswith("between") else f"of {value} people"
            case "area_about" | "area_between":
                return f"with an area {'of ' if kind.endswith('about') else ''}{value} sq km"
            case "capital_initial":
                return f"whose capital's name starts with '{value}'"
            case "name_initial":
                return f"whose name starts with '{value}'"
            case "neighbour_count":
                return "with no land neighbours" if value == 0 else f"with {value} land neighbour{'s' * (value > 1)}"
            case "continent":
                return f"in {self.graph.name(value)}"
            case "independence_decade":
                # "independence date", not "independent since": the Factbook's date for Japan is its 1947 constitution
                return f"with an independence date in the {value}s"
        raise ConfigError(f"unknown constraint kind {kind!r}")


@lru_cache(maxsize=2)
def constraint_solver(graph: KnowledgeGraph) -> ConstraintSolver:
    """The solver over `graph`, built once per graph."""
    return ConstraintSolver(graph)


# --- walks --------------------------------------------------------------------------------------------------------


def _targets(graph: KnowledgeGraph, step: str, node: str) -> list[str]:
    """Where `step` leads from `node` over supported edges; capital and continent only where the Factbook states
    exactly one."""
    if step == "capital":
        return [capital] if (capital := graph.capital(node)) else []
    if step == "largest_city":
        return [city] if (city := graph.largest_city(node)) else []
    if step == "continent":
        return [continent] if (continent := graph.sole(node, "in_continent")) else []
    relation, forward, _, _ = STEPS[step]
    return graph.objects(node, relation) if forward else graph.subjects(relation, node)


def random_walk(graph: KnowledgeGraph, rng: random.Random, hops: int) -> Walk:
    """A walk of `hops` supported edges from a random country, never revisiting a node; capitals and continents
    only end it. Each step picks a kind of step first, then a target, so that borders do not crowd out the rest."""
    if hops not in HOPS:
        raise ConfigError(f"a walk has {HOPS[0]} to {HOPS[-1]} hops, got {hops}")
    countries = sorted(country.id for country in graph.countries())
    for _ in range(_WALK_TRIES):  # a dead end (a language only its own country speaks) restarts; most starts succeed
        nodes, steps = [rng.choice(countries)], []
        while len(steps) < hops:
            last = len(steps) == hops - 1
            kind = graph.entity(nodes[-1]).kind
            options = {}
            for step, (_, _, source, target) in STEPS.items():
                if source == kind and (last or target not in _TERMINAL_KINDS):
                    targets = [t for t in _targets(graph, step, nodes[-1]) if t not in nodes]
                    if targets:
                        options[step] = targets
            if not options:
                break
            step = rng.choice(sorted(options))
            steps.append(step)
            nodes.append(rng.choice(options[step]))
        if len(steps) == hops:
            return Walk(tuple(nodes), tuple(steps))
    raise ConfigError(f"no walk of {hops} hops found in {_WALK_TRIES} tries; the graph is too sparse for {hops} hops")


# --- composing a question -----------------------------------------------------------------------------------------


def names_any(text: str, names: Iterable[str]) -> bool:
    """Whether the text contains any of the normalised `names` as whole words."""
    words = f" {normalize_name(text)} "
    return any(f" {name} " in words for name in names)


_ADJECTIVES = ("landlocked", "coastal")
_RELATIVE_CLAUSES = ("capital_initial", "name_initial")
_RELATION_PHRASES = {
    "borders": "bordering",
    "official_language_of": "sharing an official language with",
    "currency_of": "using the same currency as",
}


def _describe(
    solver: ConstraintSolver, walk: Walk, chosen: list[list[Constraint]], sets: list[frozenset[str]], node: int
) -> str:
    """A noun phrase for walk node `node` (a country): adjectives, prepositional phrases, "whose" clauses, then the
    relation to the country before it, last, so that everything after "bordering" describes the inner country."""
    constraints = chosen[node]
    article = "the" if len(sets[node]) == 1 else "a"
    head = " ".join([article, *(kind for kind, _ in constraints if kind in _ADJECTIVES), "country"])
    phrases = ", ".join(solver.phrase(c) for c in constraints if c[0] not in (*_ADJECTIVES, *_RELATIVE_CLAUSES))
    clauses = " and ".join(solver.phrase(c) for c in constraints if c[0] in _RELATIVE_CLAUSES)
    relation = ""
    if node:
        step = walk.steps[node - 1]
        # a language or currency is described through the country before it
        inner = node - 1 if step == "borders" else node - 2
        relation = f"{_RELATION_PHRASES[step]} {_describe(solver, walk, chosen, sets, inner)}"
    groups = ", ".join(group for group in (phrases, clauses, relation) if group)
    return f"{head} {groups}" if groups else head


def _question_text(
    solver: ConstraintSolver, walk: Walk, chosen: list[list[Constraint]], sets: list[frozenset[str]]
) -> str:
    last = walk.steps[-1]
    if STEPS[last][3] == "country":
        return f"Which country is {_describe(solver, walk, chosen, sets, len(walk.steps))}?"
    subject = _describe(solver, walk, chosen, sets, len(walk.steps) - 1)
    return {
        "capital": f"What is the capital of {subject}?",
        "largest_city": f"What is the largest city of {subject}?",
        "continent": f"On which continent is {subject}?",
        "currency": f"What is the ISO 4217 code of the currency of {subject}?",
        "official_language": f"What is the official language of {subject}?",
    }[last]


def _reveals_answer(walk: Walk, node: int, constraint: Constraint) -> bool:
    """Whether a constraint spells part of the answer: its own initial, or its initial as a capital (the largest city
    may be the capital)."""
    last = len(walk.steps)
    return (constraint[0] == "name_initial" and node == last) or (
        constraint[0] == "capital_initial" and node == last - 1 and walk.steps[-1] in ("capital", "largest_city")
    )


def choose_constraints(
    solver: ConstraintSolver, walk: Walk, rng: random.Random, avoid: frozenset[str] = frozenset()
) -> tuple[list[list[Constraint]], list[frozenset[str]]] | None:
    """Attribute constraints per node that leave the answer as the only solution, or None when none do; constraints
    whose facts involve an entity in `avoid` are not used.

    Constraints are tried in a seeded order and kept when they shrink the answer's candidates (then all nodes'), until
    one answer is left and the starting country is described; then any constraint not needed is dropped again.
    """
    forbidden = solver.forbidden_names(walk.answer)
    options = [
        (node, constraint)
        for node, entity in enumerate(walk.nodes)
        if entity in solver.countries
        for constraint in solver.candidates(entity)
        if not _reveals_answer(walk, node, constraint)
        and not names_any(solver.phrase(constraint), forbidden)
        and avoid.isdisjoint(_fact_entities(solver.graph, solver.facts(constraint, entity)))
    ]
    rng.shuffle(options)
    chosen: list[list[Constraint]] = [[] for _ in walk.nodes]

    def done(sets: list[frozenset[str]]) -> bool:
        return len(sets[-1]) == 1 and bool(chosen[0])

    def score(sets: list[frozenset[str]]) -> tuple[int, int]:
        return len(sets[-1]), sum(len(s) for s in sets)

    sets = solver.solve(walk.steps, chosen)
    while not done(sets):
        for node, constraint in options:
            if constraint in chosen[node]:
                continue
            chosen[node].append(constraint)
            trial = solver.solve(walk.steps, chosen)
            # the start needs a description even once the answer is pinned down
            if score(trial) < score(sets) or (node == 0 and len(chosen[0]) == 1):
                sets = trial
                break
            chosen[node].pop()
        else:
            return None
    for node, constraint in [(n, c) for n, node_constraints in enumerate(chosen) for c in node_constraints]:
        chosen[node].remove(constraint)
        trial = solver.solve(walk.steps, chosen)
        if done(trial):
            sets = trial
        else:
            chosen[node].append(constraint)
    if sum(map(len, chosen)) > MAX_CONSTRAINTS:
        return None
    return chosen, sets


def _fact_entities(graph: KnowledgeGraph, facts: Sequence[Fact]) -> set[str]:
    return {node for fact in facts for node in (fact[0], fact[2]) if isinstance(node, str) and node in graph.entities}


def _walk_facts(walk: Walk) -> list[Fact]:
    """The walk's edges as stored triples (subject, relation, object)."""
    facts = []
    for step, source, target in zip(walk.steps, walk.nodes[:-1], walk.nodes[1:], strict=True):
        relation, forward, _, _ = STEPS[step]
        facts.append((source, relation, target) if forward or relation == "borders" else (target, relation, source))
    return facts


def compose_question(
    solver: ConstraintSolver, walk: Walk, rng: random.Random, held_out: frozenset[str]
) -> SynthesizedQuestion | None:
    """The question the walk asks, or None when no set of constraints makes its answer unique or the text names
    the answer or one of its one-hop neighbours. Its split is "test" when its answer is in `held_out`; a training
    question touches no entity in `held_out`, so no test answer appears anywhere in training."""
    graph = solver.graph
    train = walk.answer not in held_out
    if train and not held_out.isdisjoint(walk.nodes):
        return None
    found = choose_constraints(solver, walk, rng, held_out if train else frozenset())
    if found is None:
        return None
    chosen, sets = found
    text = _question_text(solver, walk, chosen, sets)
    if names_any(text, solver.forbidden_names(walk.answer)):
        return None
    facts = _walk_facts(walk)
    coastlines = []
    for node, node_constraints in enumerate(chosen):
        for constraint in node_constraints:
            facts += solver.facts(constraint, walk.nodes[node])
            if constraint[0] in ("landlocked", "coastal"):
                coastlines.append(walk.nodes[node])
    facts = list(dict.fromkeys(facts))
    hops = len(walk.steps)
    question = make_question(
        graph, f"walk-{hops}hop", hops, text, graph.name(walk.answer), answer_aliases(graph, walk.answer), facts
    )
    if question is None:
        return None
    documents = factbook_documents()
    for country in coastlines:
        doc_id = graph.country(country).doc_id
        coastline = factbook_field(documents[doc_id], "Geography", "Coastline")
        question.path.append([graph.name(country), "coastline", coastline])
        question.doc_ids = sorted({*question.doc_ids, doc_id})
    entities = {*walk.nodes, *_fact_entities(graph, facts)}
    count = sum(map(len, chosen))
    return SynthesizedQuestion(
        **{field.name: getattr(question, field.name) for field in fields(EvalQuestion)},
        answer_id=walk.answer,
        nodes=list(walk.nodes),
        entities=sorted(entities),
        steps=list(walk.steps),
        constraints=[
            [[kind, list(value) if isinstance(value, tuple) else value] for kind, value in node_constraints]
            for node_constraints in chosen
        ],
        difficulty=hops + count,
        split="train" if train else "test",
        filters=[],
    )


# --- the split and the filters ------------------------------------------------------------------------------------


def _hash_fraction(seed: int, entity: str) -> float:
    return int.from_bytes(hashlib.sha256(f"{seed}:{entity}".encode()).digest()[:8], "big") / 2**64


def held_out_answers(graph: KnowledgeGraph, seed: int, test_fraction: float) -> frozenset[str]:
    """Entities whose questions are test-only, and which no training question may touch: a seeded `test_fraction`
    of all entities, plus every entity the shipped evaluation set has as an answer."""
    held = {entity for entity in graph.entities if _hash_fraction(seed, entity) < test_fraction}
    for question in read_eval_set(DEFAULT_EVAL_SET):
        for name in (question.answer, *question.aliases):
            for kind in ANSWER_KINDS:
                held.update(graph.resolve(name, kind))
    return frozenset(held)


def closed_book_filter(llm: ChatLLM, max_tokens: int = 256, seed: int = 0) -> Callable[[str], str]:
    """A `closed_book` hook: the model's answer to the question without tools."""
    from frontier.research.evaluation import closed_book_runner  # it imports scipy (seconds); only filters need it

    run = closed_book_runner(llm, max_tokens)
    return lambda question: run(question, seed).prediction


def retrieval_filter(index: CorpusIndex, k: int = 5) -> Callable[[SynthesizedQuestion], bool]:
    """A `single_retrieval` hook: whether one search for the whole question finds every supporting document in the
    top `k` passages (`index`: a `CorpusIndex`, or anything with its `search(query, k)`)."""
    if k < 1:
        raise ConfigError(f"the retrieval filter needs k >= 1 passages, got {k}")

    def answered(question: SynthesizedQuestion) -> bool:
        found = {hit.doc_id for hit in index.search(question.question, k)}
        return set(question.doc_ids) <= found

    return answered


# --- the whole pipeline -------------------------------------------------------------------------------------------


def synthesize(
    count: int,
    seed: int,
    *,
    hops: Sequence[int] = HOPS,
    closed_book: Callable[[str], str] | None = None,
    single_retrieval: Callable[[SynthesizedQuestion], bool] | None = None,
    test_fraction: float = 0.2,
) -> list[SynthesizedQuestion]:
    """Up to `count` questions, the same for the same arguments (and a prefix of a larger count's).

    Walks cycle through `hops`. A question is kept when its answer is unique, its walk and text are new and not in
    the shipped evaluation set, its answer has fewer than `MAX_PER_ANSWER` questions, a training question touches
    no held-out answer (`held_out_answers`), test questions stay within `test_fraction` of those kept,
    `single_retrieval` (if given) says one search does not answer it, and the `closed_book` answer (if given) misses
    the gold. Fewer than `count` come back when `ATTEMPTS_PER_QUESTION * count` walks do not yield them.
    """
    if count < 1:
        raise ConfigError(f"count must be a positive integer, got {count}")
    if not hops or any(h not in HOPS for h in hops):
        raise ConfigError(f"hops must be among {list(HOPS)}, got {list(hops)}")
    if not 0 <= test_fraction < 1:
        raise ConfigError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if closed_book:
        from frontier.research.evaluation import exact_match  # it imports scipy (seconds); only this filter needs it
    graph = knowledge_graph()
    solver = constraint_solver(graph)
    rng = random.Random(seed)
    held_out = held_out_answers(graph, seed, test_fraction)
    evaluation = {normalize_name(q.question) for q in read_eval_set(DEFAULT_EVAL_SET)}
    ran = [name for name, hook in ((CLOSED_BOOK_FILTER, closed_book), (RETRIEVAL_FILTER, single_retrieval)) if hook]
    walks: set[Walk] = set()
    texts: set[str] = set(evaluation)
    answers: Counter[str] = Counter()
    splits: Counter[str] = Counter()
    kept: list[SynthesizedQuestion] = []
    for attempt in range(ATTEMPTS_PER_QUESTION * count):
        if len(kept) == count:
            break
        walk = random_walk(graph, rng, hops[attempt % len(hops)])
        if walk in walks or answers[walk.answer] == MAX_PER_ANSWER:
            continue
        walks.add(walk)
        question = compose_question(solver, walk, rng, held_out)
        if question is None or normalize_name(question.question) in texts:
            continue
        texts.add(normalize_name(question.question))
        # held-out answers are popular entities (every shipped-eval answer), so without a cap they crowd out training
        if question.split == "test" and splits["test"] + 1 > test_fraction * (len(kept) + 1):
            continue
        # the search is cheap and the model call is not, so the search filter goes first
        if single_retrieval and single_retrieval(question):
            continue
        if closed_book and exact_match(closed_book(question.question), [question.answer, *question.aliases]):
            continue
        answers[walk.answer] += 1
        splits[question.split] += 1
        kept.append(replace(question, filters=list(ran)))
    return kept


def write_questions(path: str | Path, questions: Sequence[SynthesizedQuestion]) -> None:
    """Write one JSON object per line, atomically."""
    write_eval_set(list(questions), path)


def read_synthesized(path: str | Path) -> list[SynthesizedQuestion]:
    """Read a file `write_questions` wrote; errors name the file, line and field."""
    try:
        return read_eval_set(path, question_type=SynthesizedQuestion)
    except EvalSetFormatError as error:
        hint = "; write one with python -m frontier.research.synthesis" if "no such file" in str(error) else ""
        raise SynthesisFormatError(f"{error}{hint}") from None


def read_any_questions(path: str | Path, split: str | None = None) -> list[EvalQuestion]:
    """An evaluation set in either format: `frontier research synthesize` output (recognised by its `split` field;
    `split` keeps that split only) or plain evaluation questions (then `split` must be None)."""
    if not Path(path).is_file():
        raise EvalSetFormatError(f"{path}: no such file")
    first = next((line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()), "")
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        record = None  # read_eval_set names the line and the error
    if not (isinstance(record, dict) and "split" in record):
        if split is not None:
            raise ConfigError(f"--split {split}: {path} is not a `frontier research synthesize` file (no split "
                              "field); drop --split")  # fmt: skip
        return read_eval_set(path)
    questions = read_synthesized(path)
    if split is None:
        return questions
    chosen = [q for q in questions if q.split == split]
    if not chosen:
        raise ConfigError(f"--split {split}: {path} has no {split} questions")
    return chosen


def run(args: argparse.Namespace) -> int:
    if args.no_filters and args.llm:
        raise ConfigError("--llm runs the closed-book filter; drop it or --no-filters")
    try:
        hops = [int(h) for h in args.hops.split(",") if h.strip()]
    except ValueError:
        raise ConfigError(f"--hops takes comma-separated integers such as 2,3, got {args.hops!r}") from None
    closed_book = single_retrieval = None
    if not args.no_filters:
        from frontier.research.index import factbook_index

        single_retrieval = retrieval_filter(factbook_index(), args.retrieval_k)
        if args.llm:
            from frontier.research.llm import load_llm

            closed_book = closed_book_filter(load_llm(args.llm))
    questions = synthesize(
        args.count, args.seed, hops=hops, closed_book=closed_book, single_retrieval=single_retrieval,
        test_fraction=args.test_fraction,
    )  # fmt: skip
    write_questions(args.output, questions)
    splits = Counter(q.split for q in questions)
    by_hops = dict(sorted(Counter(q.hops for q in questions).items()))
    print(
        f"wrote {len(questions)} questions to {args.output} ({splits['train']} train, {splits['test']} test; "
        f"by hops {json.dumps(by_hops)})",
        file=sys.stderr,
    )
    if len(questions) < args.count:
        print(f"warning: only {len(questions)} of {args.count} found; lower --count or widen --hops", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    from frontier.research.cli import SYNTHESIZE_HELP, add_synthesize_options, module_main

    return module_main("python -m frontier.research.synthesis", SYNTHESIZE_HELP, add_synthesize_options, run, argv)


if __name__ == "__main__":
    sys.exit(main())
