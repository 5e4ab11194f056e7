"""Where `search` and `visit` get their results: the embedded index, a SearXNG endpoint, http(s) pages.

The tools see only `SearchResult`s and `Page`s; these adapters turn each backend's own records into them, and
`build_tools` assembles the agent's tool list from a few switches (what the CLI and the evaluation expose).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from frontier.errors import ConfigError
from frontier.research.index import CorpusIndex, DocumentNotFoundError
from frontier.research.tools import (
    Extractor,
    Page,
    PageUnavailableError,
    PythonTool,
    SearchResult,
    SearchTool,
    Tool,
    VisitTool,
)

WEB_SCHEMES = ("http://", "https://")


class IndexSearch:
    """`search` over a local index; a result's link is its document id, which `visit` accepts."""

    def __init__(self, index: CorpusIndex) -> None:
        self.index = index

    def search(self, query: str, k: int) -> list[SearchResult]:
        return [SearchResult(hit.title, hit.doc_id, hit.snippet) for hit in self.index.search(query, k)]


class IndexPages:
    """`visit` over a local index: the whole document behind a document id."""

    def __init__(self, index: CorpusIndex) -> None:
        self.index = index

    def read(self, link: str) -> Page:
        try:
            doc = self.index.document(link)
        except DocumentNotFoundError as exc:
            raise PageUnavailableError(str(exc)) from exc
        return Page(link, doc.title, doc.text)


class WebSearch:
    """`search` through a SearXNG-compatible JSON API."""

    def __init__(self, searxng) -> None:
        self.searxng = searxng

    def search(self, query: str, k: int) -> list[SearchResult]:
        return [SearchResult(hit.title or hit.url, hit.url, hit.snippet) for hit in self.searxng.search(query, k)]


class RoutedPages:
    """http(s) links go to the web reader (when web access is on), everything else to the local index."""

    def __init__(self, index: CorpusIndex | None, web_reader=None) -> None:
        self.local = IndexPages(index) if index is not None else None
        self.web_reader = web_reader

    def read(self, link: str) -> Page:
        if link.startswith(WEB_SCHEMES):
            if self.web_reader is None:
                raise PageUnavailableError(f"{link}: web access is off (enable it with --web-visit)")
            page = self.web_reader.read(link)
            return Page(page.url, page.title, page.text)
        if self.local is None:
            raise PageUnavailableError(f"{link}: not a URL, and no local corpus is loaded")
        return self.local.read(link)


@dataclass(frozen=True)
class ToolSettings:
    """Which tools the agent gets and what backs them."""

    top_k: int = 10
    searxng_url: str | None = None  # web search instead of the local index
    web_visit: bool = False  # let visit fetch http(s) pages
    allow_private_urls: bool = False
    python: bool = True


def build_tools(index: CorpusIndex | None, extractor: Extractor, settings: ToolSettings = ToolSettings()) -> list[Tool]:
    """search + visit (+ PythonInterpreter): the reference's tools over the chosen backends."""
    if settings.searxng_url is not None:
        import httpx

        from frontier.research.web import SearxngSearch

        # The SearXNG URL comes from the user, not the model: a self-hosted instance on localhost is allowed by
        # name while the policy stays strict for everything the model asks `visit` to fetch.
        host = httpx.URL(settings.searxng_url).host
        backend = WebSearch(
            SearxngSearch(settings.searxng_url, allow_private=settings.allow_private_urls, allowed_hosts=[host])
        )
    elif index is not None:
        backend = IndexSearch(index)
    else:
        raise ConfigError("the agent needs something to search: a local index (--corpus) or --web-search URL")
    reader = None
    if settings.web_visit:
        from frontier.research.web import WebPageReader

        reader = WebPageReader(allow_private=settings.allow_private_urls)
    tools: list[Tool] = [SearchTool(backend, settings.top_k), VisitTool(RoutedPages(index, reader), extractor)]
    if settings.python:
        from frontier.research.sandbox import namespace_problem

        problem = namespace_problem()
        if problem is not None:  # said once per process: model-written code is then contained less
            warnings.warn(
                f"the python tool runs model-written code under audit hooks only, a weaker sandbox than user "
                f"namespaces, which are unavailable here ({problem})",
                RuntimeWarning,
                stacklevel=2,
            )
        tools.append(PythonTool())
    return tools
