"""The research agent's internet backends: SearXNG web search and an http(s) page reader for `visit`.

Both refuse, by default, URLs whose host resolves to a loopback, private, link-local or otherwise non-public address,
so that a URL the model picked (perhaps from a hostile page) cannot reach services on the user's machine or network.
"""

from __future__ import annotations

import io
import ipaddress
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from frontier import __version__
from frontier.errors import ConfigError, FrontierError

DEFAULT_USER_AGENT = f"Mozilla/5.0 (compatible; frontier-research/{__version__})"
MAX_REDIRECTS = 10
# Waits before the 1st, 2nd, ... retry of a timed-out search grow linearly from this.
RETRY_BACKOFF_S = 0.5

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/x-markdown"})
PDF_TYPE = "application/pdf"

ALLOW_PRIVATE_HINT = "pass allow_private=True (CLI: --allow-private-urls) to allow private and local addresses"


class PageUnavailableError(FrontierError):
    """A web page could not be fetched or read; `visit` reports it to the model as inaccessible."""


class WebSearchError(FrontierError):
    """The SearXNG endpoint could not be reached or gave an answer that is not SearXNG's JSON."""


@dataclass(frozen=True)
class WebHit:
    """One search result, best first in the list `SearxngSearch.search` returns."""

    url: str
    title: str
    snippet: str


@dataclass(frozen=True)
class WebPage:
    """A page's main text; `url` is where the page was found after redirects, `title` is "" when it has none."""

    url: str
    title: str
    text: str


def _address_kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Which kind of non-public address this is, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    kinds = {
        "loopback": address.is_loopback,
        "link-local": address.is_link_local,
        "multicast": address.is_multicast,
        "unspecified": address.is_unspecified,
        "reserved": address.is_reserved,
        "private": address.is_private,
        "non-global": not address.is_global,
    }
    return next((kind for kind, matches in kinds.items() if matches), None)


@dataclass(frozen=True)
class UrlPolicy:
    """Which URLs outgoing requests may reach: http(s) only, and public addresses unless `allow_private`.

    Every address the host name resolves to is checked, so numeric spellings such as `0x7f000001` or `127.1` are
    caught too. `allowed_hosts` exempts host names exactly as written in URLs (e.g. a self-hosted service on the LAN).
    Known limit: the name is resolved again when connecting, so DNS rebinding (a host that answers differently the
    second time) can get past this check.
    """

    allow_private: bool = False
    allowed_hosts: frozenset[str] = frozenset()

    def refusal(self, url: httpx.URL) -> str | None:
        """Why `url` may not be requested, or None when it may."""
        if url.scheme not in ("http", "https"):
            return f"only http and https URLs can be fetched, not {url.scheme or 'a URL without a scheme'}"
        if not url.host:
            return "the URL has no host name"
        if self.allow_private or url.host in self.allowed_hosts:
            return None
        try:
            resolved = socket.getaddrinfo(url.host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as error:
            return f"could not resolve host {url.host} ({error})"
        for *_, sockaddr in resolved:
            address = ipaddress.ip_address(sockaddr[0])
            kind = _address_kind(address)
            if kind is not None:
                return f"{url.host} resolves to {address}, a {kind} address; {ALLOW_PRIVATE_HINT}"
        return None


def _parse_url(text: str, base: httpx.URL | None = None) -> httpx.URL:
    """`text` as a URL, relative to `base` when given (a redirect's Location)."""
    try:
        return base.join(text) if base is not None else httpx.URL(text)
    except httpx.InvalidURL as error:
        raise PageUnavailableError(f"{text!r} is not a valid URL ({error})") from error


def _decoded(url: str, body: bytes, charset: str) -> str:
    # A few wrongly declared bytes cost a replacement character each rather than the whole page.
    try:
        return body.decode(charset, errors="replace")
    except LookupError as error:
        raise PageUnavailableError(f"{url}: unknown charset {charset!r}") from error


class WebPageReader:
    """Fetches an http(s) page and returns its main text: HTML through trafilatura, PDF through pypdf, text as is.

    Redirects are followed one hop at a time so that every target passes the URL policy before it is requested.
    `timeout_s` bounds each network wait and the whole fetch; a body past `max_bytes` (after decompression) is refused
    rather than cut, since half a PDF or page would read as if it were the whole.
    """

    def __init__(
        self,
        *,
        timeout_s: float = 30.0,
        max_bytes: int = 5_000_000,
        allow_private: bool = False,
        allowed_hosts: Iterable[str] = (),
        user_agent: str = DEFAULT_USER_AGENT,
        client: httpx.Client | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ConfigError(f"timeout_s must be positive, got {timeout_s}")
        if max_bytes <= 0:
            raise ConfigError(f"max_bytes must be positive, got {max_bytes}")
        self.policy = UrlPolicy(allow_private, frozenset(host.lower() for host in allowed_hosts))
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self._headers = {
            "User-Agent": user_agent,
            "Accept": "text/html,application/xhtml+xml,application/pdf,text/plain;q=0.9,text/markdown;q=0.9",
        }
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client()

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> WebPageReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def read(self, url: str) -> WebPage:
        current = _parse_url(url)
        deadline = time.monotonic() + self.timeout_s
        for _ in range(MAX_REDIRECTS + 1):
            refusal = self.policy.refusal(current)
            if refusal is not None:
                raise PageUnavailableError(f"{current}: {refusal}")
            request = self._client.build_request("GET", current, headers=self._headers, timeout=self.timeout_s)
            try:
                response = self._client.send(request, stream=True, follow_redirects=False)
                try:
                    if response.is_redirect:
                        current = _parse_url(response.headers["Location"], base=current)
                        continue
                    media_type, body = self._body(current, response, deadline)
                finally:
                    response.close()
            except httpx.TimeoutException as error:
                raise PageUnavailableError(f"{current}: no answer within {self.timeout_s:g} s") from error
            except httpx.HTTPError as error:
                raise PageUnavailableError(f"{current}: {error}") from error
            return _page(str(current), media_type, response.charset_encoding, body)
        raise PageUnavailableError(f"{url}: more than {MAX_REDIRECTS} redirects")

    def _body(self, url: httpx.URL, response: httpx.Response, deadline: float) -> tuple[str, bytes]:
        """The media type and the (size-checked, decompressed) body of a non-redirect response."""
        if not response.is_success:
            raise PageUnavailableError(f"{url}: HTTP {response.status_code} {response.reason_phrase}")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media_type not in HTML_TYPES | TEXT_TYPES | {PDF_TYPE}:
            raise PageUnavailableError(
                f"{url}: content type {media_type or '(none)'} is not supported (HTML, plain text, markdown or PDF)"
            )
        too_large = f"{url}: page is larger than max_bytes={self.max_bytes:,}"
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise PageUnavailableError(too_large)
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > self.max_bytes:
                raise PageUnavailableError(too_large)
            if time.monotonic() > deadline:
                raise PageUnavailableError(f"{url}: download did not finish within {self.timeout_s:g} s")
        return media_type, bytes(body)


def _page(url: str, media_type: str, charset: str | None, body: bytes) -> WebPage:
    if media_type == PDF_TYPE:
        title, text = _pdf_text(url, body)
    elif media_type in HTML_TYPES:
        # Without a declared charset, trafilatura sniffs the encoding from the bytes and the page's meta tags.
        title, text = _html_text(url, _decoded(url, body, charset) if charset else body)
    else:
        title, text = "", _decoded(url, body, charset or "utf-8")
    text = text.strip()
    if not text:
        hint = " (it may need JavaScript)" if media_type in HTML_TYPES else ""
        raise PageUnavailableError(f"{url}: the {media_type} page has no readable text{hint}")
    return WebPage(url=url, title=title, text=text)


def _html_text(url: str, html: str | bytes) -> tuple[str, str]:
    """Title and main text; boilerplate (menus, footers) is dropped by trafilatura's extraction.

    When trafilatura finds no main content it returns nothing; the page's whole visible text (`html2txt`) is then
    better than no text, so this is a choice of extraction quality, not a relaxed check.
    """
    import trafilatura  # heavy (lxml, justext): imported only when a page is read

    document = trafilatura.bare_extraction(html, url=url, include_links=False, with_metadata=True)
    if document is None or not document.text:
        return "", trafilatura.html2txt(html)
    return document.title or "", document.text


def _pdf_text(url: str, body: bytes) -> tuple[str, str]:
    import pypdf

    try:
        reader = pypdf.PdfReader(io.BytesIO(body))
        text = "\n\n".join(page.extract_text() for page in reader.pages)
        title = reader.metadata.title if reader.metadata is not None else None
    except pypdf.errors.PyPdfError as error:
        raise PageUnavailableError(f"{url}: unreadable PDF ({error})") from error
    return title or "", text


class SearxngSearch:
    """Web search through a SearXNG instance's JSON API (`GET {base_url}/search?q=...&format=json`).

    Returns at most `k` results of SearXNG's first results page. Timeouts are retried `retries` times with a short,
    growing pause; any other failure is reported at once.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 20.0,
        retries: int = 2,
        allow_private: bool = False,
        allowed_hosts: Iterable[str] = (),
        client: httpx.Client | None = None,
    ) -> None:
        try:
            parsed = httpx.URL(base_url)
        except httpx.InvalidURL as error:
            raise ConfigError(f"SearXNG base URL {base_url!r} is not a valid URL ({error})") from error
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigError(f"SearXNG base URL {base_url!r} must be an http(s) URL such as http://localhost:8888")
        if timeout_s <= 0:
            raise ConfigError(f"timeout_s must be positive, got {timeout_s}")
        if retries < 0:
            raise ConfigError(f"retries must be 0 or more, got {retries}")
        self.base_url = base_url.rstrip("/")
        self.policy = UrlPolicy(allow_private, frozenset(host.lower() for host in allowed_hosts))
        self.timeout_s = timeout_s
        self.retries = retries
        self._search_url = httpx.URL(self.base_url + "/search")
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client()

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> SearxngSearch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def search(self, query: str, k: int = 10) -> list[WebHit]:
        if not query.strip():
            raise ConfigError("the search query is empty; give some words to search for")
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        refusal = self.policy.refusal(self._search_url)
        if refusal is not None:
            raise WebSearchError(f"SearXNG at {self.base_url}: {refusal}")
        return self._hits(self._get(query))[:k]

    def _get(self, query: str) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._client.get(
                    self._search_url,
                    params={"q": query, "format": "json"},
                    headers={"User-Agent": DEFAULT_USER_AGENT, "Accept": "application/json"},
                    timeout=self.timeout_s,
                    follow_redirects=False,
                )
            except httpx.TimeoutException as error:
                if attempt > self.retries:
                    raise WebSearchError(
                        f"SearXNG at {self.base_url} did not answer within {self.timeout_s:g} s ({attempt} tries)"
                    ) from error
            except httpx.HTTPError as error:
                raise WebSearchError(f"could not reach SearXNG at {self.base_url} ({error}); is it running?") from error
            time.sleep(RETRY_BACKOFF_S * attempt)

    def _hits(self, response: httpx.Response) -> list[WebHit]:
        where = f"SearXNG at {self.base_url}"
        if response.status_code == 403:
            raise WebSearchError(
                f"{where} refused format=json (HTTP 403): enable `json` under `search.formats` in its settings.yml"
            )
        if response.status_code == 429:
            raise WebSearchError(
                f"{where} rate-limited the request (HTTP 429): for a private instance set `server.limiter: false` "
                "in its settings.yml"
            )
        if not response.is_success:
            raise WebSearchError(f"{where} answered HTTP {response.status_code} {response.reason_phrase}")
        try:
            payload = response.json()
        except ValueError as error:
            content_type = response.headers.get("Content-Type", "no content type")
            raise WebSearchError(
                f"{where} answered {content_type} instead of JSON: check that base_url is the SearXNG root and that "
                "`json` is enabled under `search.formats` in its settings.yml"
            ) from error
        results = payload.get("results") if isinstance(payload, dict) else None
        if not isinstance(results, list):
            raise WebSearchError(f"{where} answered JSON without a `results` list; is it a SearXNG instance?")
        # SearXNG answers 200 with no results when every engine failed; that is an outage, not "nothing found".
        if not results and payload.get("unresponsive_engines"):
            failures = ", ".join(": ".join(map(str, engine)) for engine in payload["unresponsive_engines"])
            raise WebSearchError(f"{where} found nothing because its engines failed ({failures})")
        hits = []
        for result in results:
            if not isinstance(result, dict) or not isinstance(result.get("url"), str):
                raise WebSearchError(f"{where} answered a result without a url: {str(result)[:200]}")
            hits.append(
                WebHit(
                    url=result["url"], title=str(result.get("title") or ""), snippet=str(result.get("content") or "")
                )
            )
        return hits
