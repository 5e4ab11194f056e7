"""Training text for the research agent: trajectories for SFT and FAS samples for agentic mid-training.

* `path_trajectory` renders a question's hop path as a whole run in the agent's exact record format: for each hop a
  planning thought and a `search`, a `visit` of the supporting Factbook page when the search finds it and its
  snippets do not already state the hop's facts, then the fact learned, and finally the deduction and the answer.
  The tools really run, and the trajectory is dropped unless every fact of the path is stated in what they returned
  (AgentFounder's first-order action synthesis, made checkable). An obfuscated question (`frontier research
  synthesize`) names no entity, so its run starts by recognising a country that its own clues fit alone ("Only one
  country fits all of these: ...") and checks those clues first.
* `agent_trajectories` is rejection sampling: the agent answers each question several times; correct runs are kept,
  the others go to a sidecar file (HAS-style training uses failed trajectories too).
* `planning_samples` (question -> analysis + first tool call) and `reasoning_samples` (question + the snippets that
  state the path's facts -> deduction + answer) are the FAS mid-training texts, in the agent's tags.

    python -m frontier.research.trajectories --questions FILE --output FILE [--split train] [--limit N]
                                             [--midtraining FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

from frontier.console import progress_steps
from frontier.errors import ConfigError, FrontierError
from frontier.io import atomic_write_text
from frontier.research.agent import ANSWER, ResearchAgent, Step, Trajectory, system_prompt
from frontier.research.backends import ToolSettings, build_tools
from frontier.research.evalset import EvalQuestion, read_eval_set, refuse_shipped_questions
from frontier.research.evaluation import Question, append_record, drop_cut_line, exact_match, read_records
from frontier.research.index import factbook_index
from frontier.research.knowledge import YEAR_RELATIONS, KnowledgeGraph, knowledge_graph, normalize_name
from frontier.research.parsing import parse_turn
from frontier.research.synthesis import STEPS, SynthesizedQuestion, constraint_solver, read_synthesized
from frontier.research.tools import RESULT_SEPARATOR, GoalLinesExtractor, Tool

PATH_MODEL = "path-synthesis"
PATH_SOURCE = "fas-path"
AGENT_SOURCE = "agent"
PLANNING_SOURCE = "fas-planning"
REASONING_SOURCE = "fas-reasoning"
# Longer tool-response lines are prose (a country's background); the facts sit on short field lines.
MAX_SNIPPET_CHARS = 500
SNIPPETS_PER_FACT = 2
DROP_EXAMPLES = 3  # dropped questions listed per reason by `main`

# The entity kinds of a relation's subject and object, to look names up in the graph; numbers have no kind.
_KINDS = {
    "borders": ("country", "country"),
    "capital_of": ("city", "country"),
    "largest_city_of": ("city", "country"),
    "currency": ("country", "currency"),
    "in_continent": ("country", "continent"),
    "official_language": ("country", "language"),
    "population": ("country", None),
    "area": ("country", None),
    "independence": ("country", None),
    "coastline": ("country", None),  # a synthesized question's "landlocked" / "coastal" clue: "0 km", "823 km (...)"
}
_ALL_KINDS = ("country", "city", "continent", "language", "currency")
_AMONG = {  # how a recognition among the countries of a language or currency begins
    "official_language": "Among the countries where {} is an official language",
    "currency": "Among the countries that use {}",
}
_SYMMETRIC = {"borders"}  # read from whichever end is known: "A borders B" is "B borders A"
_VALUE_RELATIONS = {"population", "area", "coastline", "independence"}  # figures, not entities to look up next
# A line states a fact of these relations only if it also names the relation, as a whole word: "Kenya" on Ethiopia's
# page is a border only on the "border countries" line, not in its space programme, and "bordering the Gulf of Oman,
# between Oman and Saudi Arabia" does not list the UAE's borders.
_CUES = {"borders": "border", "capital_of": "capital", "largest_city_of": "urban", "independence": "independence"}

# Passages, and so search results, are titled "<document> — <section>" (`corpus.chunk_document`); a visit reads the
# whole document.
_SECTION_SEPARATOR = " — "
_SEARCH_HEADER = re.compile(r"^\d+\. \[(.*)\]\((.*)\)$", re.MULTILINE)
_VISIT_HEADER = re.compile(r"^The useful information in (.+?) for user goal ")


class PathUnsupportedError(FrontierError):
    """A question's hop path cannot be rendered as a trajectory its tool results support; `reason` is the category."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class _Phrasing:
    """How a hop reads: `query`, `goal` and `want` take the known entity as {e}; `fact` takes {s} and {o} (and
    their possessives {s_of}, {o_of})."""

    query: str
    goal: str
    want: str
    fact: str


# By (relation, whether the known entity is the subject). Goals name the Factbook field: GoalLinesExtractor picks
# lines by shared words, and the entity's name would match its long background text instead.
_PHRASINGS = {
    ("borders", True): _Phrasing("{e} border countries", "land boundaries", "the countries that border {e}",
                                 "{s_of} border countries include {o}"),
    ("borders", False): _Phrasing("{e} border countries", "land boundaries", "the countries that border {e}",
                                  "{o_of} border countries include {s}"),
    ("capital_of", True): _Phrasing("{e} capital", "capital", "which country has {e} as its capital",
                                    "{s} is the capital of {o}"),
    ("capital_of", False): _Phrasing("{e} capital", "capital", "the capital of {e}", "the capital of {o} is {s}"),
    ("largest_city_of", True): _Phrasing("{e} major urban areas", "major urban areas population",
                                         "which country has {e} as its largest city", "{s} is the largest city of {o}"),
    ("largest_city_of", False): _Phrasing("{e} major urban areas", "major urban areas population",
                                          "the largest city of {e}", "the largest city of {o} is {s}"),
    ("independence", True): _Phrasing("{e} independence", "independence", "the independence date of {e}",
                                      "{s_of} independence date is in {o}"),
    ("population", True): _Phrasing("{e} population", "population total (est.)", "the population of {e}",
                                    "{s} has a population of {o}"),
    ("area", True): _Phrasing("{e} area", "area total sq km", "the area of {e}", "{s} has a total area of {o} sq km"),
    ("currency", True): _Phrasing("{e} currency exchange rates", "exchange rates currency", "the currency of {e}",
                                  "{s_of} currency has the ISO 4217 code {o}"),
    ("in_continent", True): _Phrasing("{e} map references continent", "map references", "which continent {e} is in",
                                      "{s} lies in {o}"),
    ("coastline", True): _Phrasing("{e} coastline", "coastline", "the coastline of {e}", "{s_of} coastline is {o}"),
    ("official_language", False): _Phrasing("{e} official language", "languages official",
                                            "a country where {e} is an official language",
                                            "{o} is an official language of {s}"),
    ("currency", False): _Phrasing("{e} currency", "exchange rates currency", "a country that uses {e}",
                                   "{s} uses the currency with the ISO 4217 code {o}"),
    ("official_language", True): _Phrasing("{e} official languages", "languages official",
                                           "the official languages of {e}", "{s_of} official languages include {o}"),
}  # fmt: skip

_OPENINGS = (
    "Let me break this question down.",
    "This question chains several facts together, so I will find them one at a time.",
    "I should work through this step by step.",
    "To answer this I need a few facts from the Factbook.",
)
_NEXT_PLANS = (
    "Next I need {want}. Let me search for it.",
    "Now I need {want}.",
    "The next step is {want}; I will search the Factbook.",
    "Now let me look up {want}.",
)
_VISIT_PLANS = (
    "Result {rank} is the Factbook page {link}; let me read it for the {goal}.",
    "The page {link} (result {rank}) should state this. Let me visit it and look at the {goal}.",
    "Let me open {link}, result {rank}, to read the {goal} there.",
)
_FACT_INTROS = ("{fact}.", "So {fact}.", "The tool results show that {fact}.", "Found it: {fact}.")


@dataclass
class _Hop:
    """Facts sharing a known entity and a relation, found with one search (and a visit, where its snippets fall
    short)."""

    known: str
    relation: str
    known_is_subject: bool
    targets: list[str] = field(default_factory=list)
    named: bool = True  # whether the question names the known entity
    recognition: str = ""  # the sentence that recognises the known entity just before this hop, if one does

    @property
    def phrasing(self) -> _Phrasing:
        words = self.relation.replace("_", " ")
        fallback = _Phrasing(f"{{e}} {words}", words, f"the {words} facts about {{e}}", f"{{s}} {words} {{o}}")
        return _PHRASINGS.get((self.relation, self.known_is_subject), fallback)

    def triples(self) -> list[tuple[str, str, str]]:
        return [
            (self.known, self.relation, t) if self.known_is_subject else (t, self.relation, self.known)
            for t in self.targets
        ]

    def fact(self) -> str:
        targets = _join([t if self.relation in YEAR_RELATIONS else _display(t) for t in self.targets])
        s, o = (self.known, targets) if self.known_is_subject else (targets, self.known)
        return self.phrasing.fact.format(s=s, o=o, s_of=_possessive(s), o_of=_possessive(o))


def _possessive(name: str) -> str:
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def _display(value: str) -> str:
    return f"{int(value):,}" if value.isdigit() else value


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _variant(options: Sequence[str], *key: object) -> str:
    """One of `options`, fixed by `key`: phrasing varies across questions but a rerun writes the same text."""
    digest = hashlib.sha1("|".join(map(str, key)).encode("utf-8")).digest()
    return options[int.from_bytes(digest[:4], "big") % len(options)]


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def _spellings(graph: KnowledgeGraph, name: str, kind: str | None) -> set[str]:
    """Normalised spellings of a path element: every name the graph knows it by, or a number with and without commas
    ("36544431", "36 544 431" as "36,544,431" normalises)."""
    if name.isdigit():
        return {name, normalize_name(f"{int(name):,}")}
    names = {name}
    for each in (kind,) if kind else _ALL_KINDS:
        for entity_id in graph.resolve(name, each):
            names.update(graph.entity(entity_id).names)
    return {spelling for n in names if (spelling := normalize_name(n))}


def mentions(text: str, spellings: set[str]) -> bool:
    """Whether normalised, space-padded `text` names one of `spellings` as whole words."""
    return any(f" {spelling} " in text for spelling in spellings)


class _Facts:
    """The spellings of each element of a question's path, and the lines of tool results that state its triples."""

    def __init__(self, question: EvalQuestion, graph: KnowledgeGraph) -> None:
        self.spellings: dict[str, set[str]] = {}
        for s, r, o in question.path:
            subject_kind, object_kind = _KINDS.get(r, (None, None))
            for name, kind in ((s, subject_kind), (o, object_kind)):
                spellings = self.spellings.setdefault(name, set())
                spellings |= _spellings(graph, name, kind)
                if name == question.answer:
                    spellings |= {normalize_name(alias) for alias in question.aliases}

    def stating_lines(self, blocks: list[tuple[str, str]], triple: Sequence[str]) -> list[tuple[str, str]]:
        """(page title, line) for each line of `blocks` ((page title, text) pairs) that, read with its page's title,
        names both ends of `triple` (and its relation, where a mere co-mention would be weak)."""
        s, r, o = triple
        cue = _CUES.get(r)
        lines = []
        for title, body in blocks:
            for line in body.splitlines():
                text = f" {normalize_name(f'{title} {line}')} "
                if (
                    (cue is None or mentions(text, {cue}))
                    and mentions(text, self.spellings[s])
                    and mentions(text, self.spellings[o])
                ):
                    lines.append((title, line.strip()))
        return lines


def _named_in_question(question: EvalQuestion, facts: _Facts) -> set[str]:
    """The path's entities the question names; a longer name is matched first, so "Guinea-Bissau" does not also
    count as "Guinea"."""
    text = f" {normalize_name(question.question)} "
    by_length = sorted(
        (
            (spelling, name)
            for name, spellings in facts.spellings.items()
            if not name.isdigit()
            for spelling in spellings
        ),
        key=lambda pair: -len(pair[0]),
    )
    named = set()
    for spelling, name in by_length:
        if f" {spelling} " in text:
            named.add(name)
            text = text.replace(f" {spelling} ", " | ")
    return named


def _hops(
    question: EvalQuestion, named: set[str], recognisable: dict[tuple[str, str], str] | None = None
) -> list[_Hop]:
    """The path as hops, each starting from an entity the question names or an earlier hop found; or, for a fact
    (country, relation, x) with x found and the pair in `recognisable`, from the country that sentence recognises."""
    if not named:
        # an obfuscated question ("the country with 4 land neighbours") gives no name to search for
        raise PathUnsupportedError("question names no entity of its path", f"{question.id}: {question.question}")
    known = set(named)
    pending = [tuple(triple) for triple in question.path]
    hops: list[_Hop] = []
    while pending:
        index = next((i for i, (s, _, o) in enumerate(pending) if s in known or o in known), None)
        if index is None:
            detail = f"{question.id}: no fact of {pending} starts from a name the question or an earlier hop gives"
            raise PathUnsupportedError("unreachable hop", detail)
        s, relation, o = pending.pop(index)
        recognition = (recognisable or {}).get((s, o), "") if s not in known else ""
        forward = s in known or relation in _SYMMETRIC or bool(recognition)
        start, target = (s, o) if s in known or recognition else (o, s)
        known.add(start)
        # one hop per (entity, relation, direction): a walk's border and a neighbour count's borders are one lookup
        hop = next((h for h in hops if (h.known, h.relation, h.known_is_subject) == (start, relation, forward)), None)
        if hop is None:
            hop = _Hop(start, relation, forward, named=start in named, recognition=recognition)
            hops.append(hop)
        if target not in hop.targets:
            hop.targets.append(target)
        if relation not in _VALUE_RELATIONS:
            known.add(target)
    # The path lists neighbours and lookups by the gold ranking (largest population first); in name order instead, a
    # model cannot learn to read the answer off the order. A run of sibling hops keeps its order when one of them
    # starts from another's finding or is recognised along the chain (it must follow the hop that found its language).
    ordered: list[_Hop] = []
    for _, run in groupby(hops, key=lambda hop: (hop.relation, hop.known_is_subject)):
        run = list(run)
        for hop in run:
            hop.targets.sort(key=normalize_name)
        found = {target for hop in run for target in hop.targets}
        keep = any(hop.known in found or hop.recognition for hop in run)
        ordered += run if keep else sorted(run, key=lambda h: normalize_name(h.known))
    return ordered


def _recognised_countries(question: SynthesizedQuestion, graph: KnowledgeGraph) -> list[tuple[str, str]]:
    """(name, the sentence that recognises it) of each country an obfuscated question describes whose own clues fit
    no other country: what an agent that knows its countries can name from the clues, and then check with the
    tools. About half the synthesized questions have one."""
    solver = constraint_solver(graph)
    recognised = []
    for entity, clues in zip(question.nodes, question.constraints, strict=True):
        if clues and solver.admitted(clues, solver.countries) == {entity}:
            name = graph.name(entity)
            listed = "; ".join(solver.phrase(clue) for clue in clues)
            recognised.append((name, (
                f"The question describes countries by clues instead of naming them. Only one country fits all of "
                f"these: {listed}. That is {name}; I will check it, and the rest of the chain, in the Factbook."
            )))  # fmt: skip
    return recognised


def _recognised_along_the_chain(question: SynthesizedQuestion, graph: KnowledgeGraph) -> dict[tuple[str, str], str]:
    """The sentences that recognise a country reached from a language or currency ("sharing an official language
    with ...", whichever way the chain is followed), keyed by (country, language or currency), where the country's
    own clues fit it alone among the countries of that language or currency. A search for "Portuguese official
    language" rarely surfaces the one country meant; an agent that knows which countries speak it picks it by the
    clues and checks them."""
    solver = constraint_solver(graph)
    recognised = {}
    for index, step in enumerate(question.steps):
        if STEPS[step][0] not in _AMONG:  # a walk step between a country and a language or currency, either way
            continue
        country_first = STEPS[step][2] == "country"
        country, via = (index, index + 1) if country_first else (index + 1, index)
        clues = question.constraints[country]
        relation = STEPS[step][0]
        among = solver.project(f"{relation}_of", frozenset({question.nodes[via]}))
        if clues and solver.admitted(clues, among) == {question.nodes[country]}:
            name, via_name = graph.name(question.nodes[country]), graph.name(question.nodes[via])
            listed = "; ".join(solver.phrase(clue) for clue in clues)
            recognised[name, via_name] = (
                f"{_AMONG[relation].format(via_name)}, only one fits all of these: {listed}. That is {name}."
            )
    return recognised


def _plan(question: EvalQuestion, hops: list[_Hop], recognition: str = "") -> str:
    """The first thought: what to find, in order. An entity is named only where the question names it (or
    `recognition`, the sentence that names a country an obfuscated question describes, does) and no earlier step
    decides on it ("the capital of whichever is larger" must not say which)."""
    steps: list[str] = []
    seen: set[str] = set()
    previous_generic: tuple[str, bool] | None = None
    for hop in hops:
        key = (hop.relation, hop.known_is_subject)
        kind = _KINDS.get(hop.relation, (None, None))[0 if hop.known_is_subject else 1] or "entity"
        if hop.named and hop.known not in seen:
            steps.append(hop.phrasing.want.format(e=hop.known))
            previous_generic = None
        elif previous_generic == key:
            steps[-1] = hop.phrasing.want.format(e=f"each {kind} found")  # one lookup per earlier finding
        else:
            steps.append(hop.phrasing.want.format(e=f"the {kind} found"))
            previous_generic = key
        seen |= {hop.known, *hop.targets}
    outline = steps[0] if len(steps) == 1 else ", then ".join(steps[:-1]) + ", and finally " + steps[-1]
    first = hops[0].phrasing.want.format(e=hops[0].known)
    opening = " ".join(filter(None, [_variant(_OPENINGS, question.id), recognition]))
    return f"{opening} I need {outline}. Let me start with {first}."


def _observations(question: EvalQuestion, hops: list[_Hop]) -> list[list[str]]:
    """What follows once each hop is done: a ranking when a run of numeric lookups ends, the finding sibling hops
    share, and a count when the last hop's findings answer "how many"."""
    after: list[list[str]] = [[] for _ in hops]
    index = 0
    for (relation, forward), run in groupby(hops, key=lambda hop: (hop.relation, hop.known_is_subject)):
        run = list(run)
        index += len(run)
        if len(run) < 2 or any(len(hop.targets) != 1 for hop in run):
            continue
        targets = [hop.targets[0] for hop in run]
        if forward and relation not in YEAR_RELATIONS and all(target.isdigit() for target in targets):
            ranked = sorted(run, key=lambda hop: -int(hop.targets[0]))
            listing = ", ".join(f"{hop.known} ({_display(hop.targets[0])})" for hop in ranked)
            after[index - 1].append(f"By {relation.replace('_', ' ')}, from largest to smallest: {listing}.")
        elif len(set(targets)) == 1 and relation not in _VALUE_RELATIONS:
            after[index - 1].append(f"{targets[0]} is common to {_join([hop.known for hop in run])}.")
    last = hops[-1]
    if question.answer.isdigit() and len(last.targets) == int(question.answer) and not last.targets[0].isdigit():
        after[-1].append(f"That is {question.answer} in all.")
    return after


def _think(text: str) -> str:
    return f"<think>\n{text}\n</think>\n"


def _call(name: str, arguments: dict[str, Any]) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "\n</tool_call>"


def _search_results(response: str) -> list[tuple[str, str, str]]:
    """(title, link, snippet) of each result in a `search` response."""
    heads = list(_SEARCH_HEADER.finditer(response))
    ends = [head.start() for head in heads[1:]] + [len(response)]
    return [(head.group(1), head.group(2), response[head.end() : end]) for head, end in zip(heads, ends, strict=False)]


def _blocks(response: str, titles: dict[str, str]) -> list[tuple[str, str]]:
    """(page title, text) of each search result and visited page in a tool response; `titles` maps the links seen in
    search results to their titles (a visit's text does not repeat the page's name)."""
    blocks = []
    for part in response.split(RESULT_SEPARATOR):
        if part.startswith("A Google search for"):
            blocks += [(title, snippet) for title, _, snippet in _search_results(part)]
        elif (visit := _VISIT_HEADER.match(part)) and "Evidence in page:" in part:
            title = titles.get(visit.group(1), "").split(_SECTION_SEPARATOR, 1)[0]
            blocks.append((title, part.split("Evidence in page:", 1)[1]))
    return blocks


class _Transcript:
    """The messages and steps of a synthesized run, kept exactly as `ResearchAgent` records them."""

    def __init__(self, tools: dict[str, Tool], date: str, question: str) -> None:
        self.tools = tools
        self.messages = [
            {"role": "system", "content": system_prompt(list(tools.values()), date)},
            {"role": "user", "content": question},
        ]
        self.steps: list[Step] = []
        self.tool_calls: Counter[str] = Counter()

    def assistant(self, content: str) -> None:
        turn = parse_turn(content)
        if turn.error is not None or turn.content != content:
            raise AssertionError(f"rendered turn does not parse: {turn.error or content!r}")  # a rendering bug
        call = turn.tool_call
        self.messages.append({"role": "assistant", "content": content})
        self.steps.append(
            Step("assistant", content, 0.0, think=turn.think, tool=call.name if call else None,
                 arguments=call.arguments if call else None)
        )  # fmt: skip

    def act(self, name: str, arguments: dict[str, Any]) -> str:
        """Run the real tool and record its response as the agent would."""
        start = time.monotonic()
        result = self.tools[name](arguments)
        self.tool_calls[name] += 1
        self.messages.append({"role": "user", "content": "<tool_response>\n" + result + "\n</tool_response>"})
        self.steps.append(Step("tool", result, time.monotonic() - start, tool=name))
        return result


def render_path_trajectory(question: EvalQuestion, tools: list[Tool], *, date: str) -> dict[str, Any]:
    """The question's hop path as a verified agent trajectory record; `PathUnsupportedError` says why it cannot be.

    The chain starts from the entities the question names; an obfuscated (synthesized) question names none, so it
    starts from a country recognised by its own clues, trying each such country until the tools support the chain.
    """
    by_name = {tool.name: tool for tool in tools}
    missing = {"search", "visit"} - set(by_name)
    if missing:
        raise ConfigError(f"path trajectories need the search and visit tools; missing {sorted(missing)}")
    graph = knowledge_graph()
    facts = _Facts(question, graph)
    if not isinstance(question, SynthesizedQuestion):
        return _render_from(question, _named_in_question(question, facts), "", {}, by_name, facts, graph, date)
    recognised = _recognised_countries(question, graph)
    if not recognised:
        detail = f"{question.id}: {question.question}"
        raise PathUnsupportedError("no described country is fixed by its own clues", detail)
    along = _recognised_along_the_chain(question, graph)
    failures: list[PathUnsupportedError] = []
    for name, recognition in recognised:
        try:
            return _render_from(question, {name}, recognition, along, by_name, facts, graph, date)
        except PathUnsupportedError as error:
            failures.append(error)
    raise failures[0]  # the first recognised country's reason: the one `main` counts the question under


def _render_from(
    question: EvalQuestion, named: set[str], recognition: str, recognisable: dict[tuple[str, str], str],
    by_name: dict[str, Tool], facts: _Facts, graph: KnowledgeGraph, date: str,
) -> dict[str, Any]:  # fmt: skip
    """`render_path_trajectory` with the chain starting from `named`, which `recognition` (if any) introduces, and
    the countries `recognisable` names recognised where the chain reaches them."""
    start = time.monotonic()
    hops = _hops(question, named, recognisable)
    if recognition:  # check the recognised country's own facts (its clues) before following the chain from it
        hops.sort(key=lambda hop: hop.known not in named)
    transcript = _Transcript(by_name, date, question.question)
    titles: dict[str, str] = {}
    observations = _observations(question, hops)
    thought = _plan(question, hops, recognition)
    for number, hop in enumerate(hops):
        if number > 0:
            plan = _variant(_NEXT_PLANS, question.id, number).format(want=hop.phrasing.want.format(e=hop.known))
            thought = " ".join(filter(None, [thought, hop.recognition, plan]))
        query = hop.phrasing.query.format(e=hop.known)
        transcript.assistant(_think(thought) + _call("search", {"query": [query]}))
        response = transcript.act("search", {"query": [query]})
        results = _search_results(response)
        for title, link, _ in results:
            titles.setdefault(link, title)
        blocks = _blocks(response, titles)
        unstated = [triple for triple in hop.triples() if not facts.stating_lines(blocks, triple)]
        # a page is opened only when the results' snippets leave a fact of the hop unstated: shorter runs
        page = _supporting_page(question, hop, graph, [link for _, link, _ in results]) if unstated else None
        if page is not None:
            rank = next(i for i, (_, link, _) in enumerate(results, 1) if link == page)
            goal = hop.phrasing.goal
            plan = _variant(_VISIT_PLANS, question.id, number).format(rank=rank, link=page, goal=goal)
            transcript.assistant(_think(plan) + _call("visit", {"url": [page], "goal": goal}))
            blocks += _blocks(transcript.act("visit", {"url": [page], "goal": goal}), titles)
            unstated = [triple for triple in unstated if not facts.stating_lines(blocks, triple)]
        if unstated:
            where = "the search results or the visited page" if page else "the search results (no page visited)"
            raise PathUnsupportedError(f"{hop.relation} fact not in {where}", f"{question.id}: {list(unstated[0])}")
        thought = _capitalized(_variant(_FACT_INTROS, question.id, number, "fact").format(fact=hop.fact()))
        thought = " ".join([thought, *observations[number]])
    # the deduction restates every fact found and what follows from them, the last hop's included
    deduction = [
        sentence
        for hop, found in zip(hops, observations, strict=True)
        for sentence in (_capitalized(hop.fact()) + ".", *found)
    ]
    deduction.append(f"So the answer is {question.answer}.")
    transcript.assistant(_think(" ".join(deduction)) + f"<answer>{question.answer}</answer>")
    trajectory = Trajectory(
        question=question.question, prediction=question.answer, termination=ANSWER, messages=transcript.messages,
        context=[dict(message) for message in transcript.messages], steps=transcript.steps, model=PATH_MODEL,
        date=date, llm_calls=sum(step.kind == "assistant" for step in transcript.steps),
        tool_calls=dict(transcript.tool_calls), seconds=time.monotonic() - start, answer=question.answer,
    )  # fmt: skip
    return {**trajectory.to_json(), "id": question.id, "source": PATH_SOURCE}


def path_trajectory(question: EvalQuestion, tools: list[Tool], *, date: str) -> dict[str, Any] | None:
    """`render_path_trajectory`, or None when the tools' results do not support the path."""
    try:
        return render_path_trajectory(question, tools, date=date)
    except PathUnsupportedError:
        return None


def _supporting_page(question: EvalQuestion, hop: _Hop, graph: KnowledgeGraph, links: list[str]) -> str | None:
    """The hop's supporting document among the search results: the known entity's own page first, else a target's;
    None when the search did not find one."""
    pages = []
    for name in (hop.known, *hop.targets):
        pages += [graph.country(country).doc_id for country in graph.resolve(name, "country")]
    return next((page for page in pages if page in question.doc_ids and page in links), None)


# --- rejection sampling ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplingReport:
    """What one `agent_trajectories` call did."""

    kept: int
    rejected: int
    skipped: int  # (question, rollout) pairs already in the output or rejected file


def rejected_path(output: Path) -> Path:
    """Where `agent_trajectories` puts the incorrect runs: beside `output`, "<stem>.rejected.jsonl"."""
    return output.with_name(f"{output.stem}.rejected.jsonl")


def learned_conversation(record: dict[str, Any]) -> str:
    """The key of the turns SFT learns in a trajectory record: "context", the last context its model saw (what an
    agent run's `unsampled_ends` index), where the record has one; else "messages". An agent run's `messages` also keep
    what that context replaced: the tool response before a forced answer, the turns before a ReSum restart."""
    return "context" if isinstance(record.get("context"), list) else "messages"


def agent_trajectories(
    agent: ResearchAgent, questions: Sequence[Question], rollouts: int, output: str | Path, *, seed: int = 0,
    progress: bool = False,
) -> SamplingReport:  # fmt: skip
    """Run `agent` on every question `rollouts` times; runs whose prediction exact-matches the gold answer or an
    alias are appended to `output`, the others to `rejected_path(output)`. A rerun skips every (question id, rollout)
    already in either file, except runs that ended in an error, which are retried."""
    if rollouts < 1:
        raise ConfigError(f"rollouts must be at least 1, got {rollouts}")
    output = Path(output)
    rejected_file = rejected_path(output)
    done = set()
    for path in (output, rejected_file):
        drop_cut_line(path)
        done |= {(r.get("id"), r.get("rollout")) for r in read_records(path) if not r.get("error")}
    runs = [(rollout, question) for rollout in range(rollouts) for question in questions]
    todo = [(rollout, question) for rollout, question in runs if (question.id, rollout) not in done]
    kept = rejected = 0
    with progress_steps("sampling the agent", total=len(todo), enabled=progress) as advance:
        for rollout, question in todo:
            # the evaluation's seeding, so a kept run can be reproduced with `frontier research eval`
            trajectory = agent.run(question.question, answer=question.answer, seed=seed + 1000 * rollout)
            correct = exact_match(trajectory.prediction, [question.answer, *question.aliases])
            record = {
                **trajectory.to_json(), "id": question.id, "rollout": rollout, "exact_match": correct,
                "source": AGENT_SOURCE,
            }  # fmt: skip
            append_record(output if correct else rejected_file, record)
            kept += correct
            rejected += not correct
            advance()
    return SamplingReport(kept, rejected, len(runs) - len(todo))


# --- mid-training text (FAS) -------------------------------------------------------------------------------------


def planning_samples(question: EvalQuestion, trajectory: dict[str, Any]) -> list[dict[str, str]]:
    """The planning action: the question, then the first assistant turn (analysis + first tool call); none when the
    run made no tool call first."""
    first = next((m["content"] for m in trajectory["messages"] if m["role"] == "assistant"), None)
    if first is None or parse_turn(first).tool_call is None:
        return []
    return [{"text": f"{question.question}\n\n{first}", "source": PLANNING_SOURCE}]


def reasoning_samples(question: EvalQuestion, trajectory: dict[str, Any]) -> list[dict[str, str]]:
    """The reasoning action: the question and the tool-response lines that state the path's facts, then the final
    turn (deduction + answer); none when the run did not end in an answer or no line states a fact."""
    messages = trajectory["messages"]
    if not messages or messages[-1]["role"] != "assistant" or parse_turn(messages[-1]["content"]).answer is None:
        return []
    responses = [m["content"] for m in messages if m["role"] == "user" and m["content"].startswith("<tool_response>")]
    titles: dict[str, str] = {}
    for response in responses:
        for title, link, _ in _search_results(response):
            titles.setdefault(link, title)
    blocks = [block for response in responses for block in _blocks(_unwrapped(response), titles)]
    facts = _Facts(question, knowledge_graph())
    snippets: dict[str, str] = {}  # line -> the title of the first page it came from, in order
    for triple in question.path:
        titles_by_line: dict[str, str] = {}
        for title, line in facts.stating_lines(blocks, triple):
            if len(line) <= MAX_SNIPPET_CHARS:
                titles_by_line.setdefault(line, title)
        # the shortest first: a field line ("Capital > name: Nairobi") before prose that mentions the same facts
        for line in sorted(titles_by_line, key=len)[:SNIPPETS_PER_FACT]:
            snippets.setdefault(line, titles_by_line[line])
    if not snippets:
        return []
    lines = [f"[{title}] {line}" if title else line for line, title in snippets.items()]
    knowledge = "<tool_response>\n" + "\n".join(lines) + "\n</tool_response>"
    return [{"text": f"{question.question}\n\n{knowledge}\n\n{messages[-1]['content']}", "source": REASONING_SOURCE}]


def _unwrapped(response: str) -> str:
    return response.removeprefix("<tool_response>\n").removesuffix("\n</tool_response>")


def write_midtraining_corpus(records: Iterable[dict[str, str]], path: str | Path) -> int:
    """Write `{"text", "source"}` records as JSONL (atomically); the number written."""
    lines = [json.dumps({"text": r["text"], "source": r["source"]}, ensure_ascii=False) + "\n" for r in records]
    atomic_write_text(path, "".join(lines))
    return len(lines)


# --- command line ------------------------------------------------------------------------------------------------


def read_questions(path: str | Path, split: str | None = None) -> list[EvalQuestion]:
    """Questions to make training data from: a JSONL file of `frontier research synthesize` records (read strictly,
    as `SynthesizedQuestion`s, whose clues obfuscated trajectories need) or of evaluation questions (fields
    `EvalQuestion` does not have are ignored). A file whose records carry a `split` (train / test) must be read with
    one, and only that split is returned: training data made from a whole synthesized set would include its
    held-out questions. (`synthesis.read_any_questions` is the evaluation's reader: any split, or all of them.)"""
    if not Path(path).is_file():
        raise ConfigError(f"{path}: no such file; give an evaluation set or a `frontier research synthesize` file")
    questions = read_eval_set(path, ignore_unknown_fields=True)
    records = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if all("constraints" in record for record in records):  # synthesized: the clues say which country to recognise
        questions = read_synthesized(path)
    splits = [record.get("split") for record in records]
    found = sorted({str(s) for s in splits if s is not None})
    if split is None:
        if found:
            raise ConfigError(f"{path} holds questions of splits {', '.join(found)}; pass --split train so that none "
                              "of its held-out questions becomes training data")  # fmt: skip
        return questions
    if not found:
        raise ConfigError(f"--split {split}: {path} has no split field; drop --split")
    chosen = [question for question, s in zip(questions, splits, strict=True) if s == split]
    if not chosen:
        raise ConfigError(f"{path}: no question has split {split!r} (found: {', '.join(found)}); pick one of those")
    return chosen


def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be a positive integer, got {args.limit}")
    if args.top_k < 1:
        raise ConfigError(f"--top-k must be a positive integer, got {args.top_k}")
    questions = read_questions(args.questions, args.split)[: args.limit]
    records, dropped = _render_all(questions, args.date, python=not args.no_python, top_k=args.top_k)
    atomic_write_text(args.output, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    print(f"kept {len(records)} of {len(questions)} questions -> {args.output}", file=sys.stderr)
    for reason, count in Counter(error.reason for error in dropped).most_common():
        print(f"  dropped {count}: {reason}", file=sys.stderr)
        for error in [error for error in dropped if error.reason == reason][:DROP_EXAMPLES]:
            print(f"    {error.detail}", file=sys.stderr)
    if args.midtraining is not None:
        by_id = {q.id: q for q in questions}
        samples = [
            sample
            for record in records
            for make in (planning_samples, reasoning_samples)
            for sample in make(by_id[record["id"]], record)
        ]
        count = write_midtraining_corpus(samples, args.midtraining)
        print(f"wrote {count} mid-training samples -> {args.midtraining}", file=sys.stderr)
    return 0


def read_training_questions(path: str | Path, split: str | None, what: str) -> list[EvalQuestion]:
    """`read_questions` for commands whose output is trained on (`what`): never a test split, never a question of
    the shipped evaluation set. (`trajectories` reads held-out questions too: their paths measure held-out loss.)"""
    if split == "test":
        raise ConfigError(f"--split test is held out for evaluation; {what} must come from --split train")
    questions = read_questions(path, split)
    refuse_shipped_questions(questions, what)
    return questions


def run_sampling(args: argparse.Namespace) -> int:
    """`frontier research sample`: rejection-sampled trajectories of the agent the options describe."""
    from frontier.research.cli import build_agent_from_args

    questions = read_training_questions(args.questions, args.split, "SFT data")[: args.limit]
    agent, _ = build_agent_from_args(args)
    agent.date = args.date  # the system prompt's date, as in `trajectories`, so both kinds of record train alike
    report = agent_trajectories(agent, questions, args.rollouts, args.output, seed=args.seed, progress=True)
    print(
        f"kept {report.kept} correct runs -> {args.output}; {report.rejected} wrong -> "
        f"{rejected_path(Path(args.output))}; {report.skipped} done before",
        file=sys.stderr,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    from frontier.research.cli import TRAJECTORIES_HELP, add_trajectories_options, module_main

    prog = "python -m frontier.research.trajectories"
    return module_main(prog, TRAJECTORIES_HELP, add_trajectories_options, run, argv)


def _render_all(
    questions: list[EvalQuestion], date: str, *, python: bool, top_k: int
) -> tuple[list[dict[str, Any]], list[PathUnsupportedError]]:
    tools = build_tools(factbook_index(), GoalLinesExtractor(), ToolSettings(top_k=top_k, python=python))
    records, dropped = [], []
    for question in questions:
        try:
            records.append(render_path_trajectory(question, tools, date=date))
        except PathUnsupportedError as error:
            dropped.append(error)
    return records, dropped


if __name__ == "__main__":
    sys.exit(main())
