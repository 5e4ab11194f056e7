"""SearXNG search and the http(s) page reader against a local test server; nothing leaves 127.0.0.1."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from frontier.errors import ConfigError
from frontier.research import web
from frontier.research.web import PageUnavailableError, SearxngSearch, WebHit, WebPageReader, WebSearchError

ARTICLE_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Rivers of Patagonia</title></head><body>
<header><nav><ul>
  <li><a href="/">Home</a></li><li><a href="/shop">Shop the winter sale</a></li>
  <li><a href="/login">Sign in to your account</a></li><li><a href="/newsletter">Subscribe to our newsletter</a></li>
</ul></nav></header>
<main><article>
  <h1>Rivers of Patagonia</h1>
  <p>The Baker River is the largest river in Chile by volume. It drains Lake Bertrand and flows about 170 kilometres
  to the Pacific Ocean near the village of Caleta Tortel, carrying meltwater from the Northern Patagonian Ice Field.</p>
  <p>Its turquoise colour comes from glacial flour, fine rock powder ground by glaciers and suspended in the water.
  Plans to dam the river were cancelled in 2014 after years of protests by residents and environmental groups.</p>
  <p>The Pascua River, further south, is shorter but nearly as powerful, fed by the O'Higgins and Chico glaciers
  through Lake O'Higgins, which straddles the border between Chile and Argentina.</p>
</article></main>
<footer><p>Copyright 2024 Example Media Group. All rights reserved.</p><p>Privacy policy | Cookie settings</p></footer>
</body></html>
"""

PLAIN_TEXT = "Line one of a plain text file.\nLine two, with the word tributary.\n"
MARKDOWN = "# Notes\n\n- The Baker River drains Lake Bertrand.\n"
SCRIPT_ONLY_HTML = "<html><head><title>App</title></head><body><script>render()</script></body></html>"
HUGE_SIZE = 100_000
CAPPED_MAX_BYTES = 10_000

SEARCH_RESULTS = [
    {"url": f"https://example.org/{i}", "title": f"Result {i}", "content": f"Snippet {i}", "engine": "x", "score": 1.0}
    for i in range(5)
]


def minimal_pdf(text: str, title: str) -> bytes:
    """A one-page PDF with one line of Helvetica text and a /Title, with a correct cross-reference table."""
    stream = f"BT /F1 24 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Title (%s) >>" % title.encode(),
    ]
    pdf = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(pdf))
        pdf += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(pdf)
    pdf += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    pdf += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    pdf += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(pdf)


PDF = minimal_pdf("Glacial flour makes the Baker River turquoise.", "River Notes")


class RecordingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.paths: list[str] = []
        self.hits: Counter[str] = Counter()
        self.release = threading.Event()  # set at teardown so slow handlers stop waiting

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request, client_address) -> None:
        # Slow endpoints outlive the clients that timed out on them; writing to a closed socket is expected.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    server: RecordingServer

    def log_message(self, format, *args) -> None:  # keep pytest's output to the tests' own
        pass

    def reply(self, status: int, content_type: str | None, body: bytes, length: bool = True, **headers: str) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        if length:
            self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        path = urlsplit(self.path).path
        self.server.hits[path] += 1
        port = self.server.server_address[1]
        if path == "/article":
            self.reply(200, "text/html; charset=utf-8", ARTICLE_HTML.encode())
        elif path == "/script-only":
            self.reply(200, "text/html", SCRIPT_ONLY_HTML.encode())
        elif path == "/text":
            self.reply(200, "text/plain; charset=utf-8", PLAIN_TEXT.encode())
        elif path == "/notes.md":
            self.reply(200, "text/markdown", MARKDOWN.encode())
        elif path == "/paper.pdf":
            self.reply(200, "application/pdf", PDF)
        elif path == "/image.png":
            self.reply(200, "image/png", b"\x89PNG\r\n\x1a\n" + bytes(64))
        elif path == "/huge":
            self.reply(200, "text/plain", b"x" * HUGE_SIZE)
        elif path == "/huge-unannounced":
            self.reply(200, "text/plain", b"x" * HUGE_SIZE, length=False)
        elif path == "/missing":
            self.reply(404, "text/html", b"<h1>Not Found</h1>")
        elif path == "/redirect-local":
            self.reply(302, None, b"", Location="/text")
        elif path == "/redirect-private":
            self.reply(302, None, b"", Location=f"http://localhost:{port}/text")
        elif path == "/redirect-loop":
            self.reply(302, None, b"", Location="/redirect-loop")
        elif path == "/slow" or path == "/slow/search" or (path == "/flaky/search" and self.server.hits[path] == 1):
            self.server.release.wait(3)
            self.reply(200, "text/plain", b"late")
        elif path == "/drip":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            for _ in range(30):
                self.wfile.write(b"drip ")
                self.wfile.flush()
                time.sleep(0.1)
        elif path in ("/search", "/flaky/search"):
            query = parse_qs(urlsplit(self.path).query)
            results = [] if query["q"] == ["nothing"] else SEARCH_RESULTS
            body = {"query": query["q"][0], "results": results, "unresponsive_engines": []}
            self.reply(200, "application/json", json.dumps(body).encode())
        elif path == "/outage/search":
            body = {"results": [], "unresponsive_engines": [["google", "CAPTCHA"], ["bing", "timeout"]]}
            self.reply(200, "application/json", json.dumps(body).encode())
        elif path == "/forbidden/search":
            self.reply(403, "text/html", b"<html><body>403 Forbidden</body></html>")
        elif path == "/html/search":
            self.reply(200, "text/html", b"<html><body>SearXNG</body></html>")
        else:
            self.reply(404, "text/plain", b"no such route")


@pytest.fixture(scope="module")
def running_server() -> Iterator[RecordingServer]:
    server = RecordingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def server(running_server: RecordingServer) -> RecordingServer:
    running_server.paths.clear()
    running_server.hits.clear()
    return running_server


@pytest.fixture
def reader() -> Iterator[WebPageReader]:
    with WebPageReader(allow_private=True, timeout_s=5) as page_reader:
        yield page_reader


def test_html_article_is_extracted_without_navigation_and_footer(server, reader):
    page = reader.read(server.url + "/article")
    assert page.title == "Rivers of Patagonia"
    assert "The Baker River is the largest river in Chile by volume" in page.text
    assert "Lake O'Higgins" in page.text
    for boilerplate in ("Shop the winter sale", "Sign in to your account", "Cookie settings", "All rights reserved"):
        assert boilerplate not in page.text


def test_plain_text_and_markdown_are_returned_as_is(server, reader):
    text = reader.read(server.url + "/text")
    assert (text.url, text.title, text.text) == (server.url + "/text", "", PLAIN_TEXT.strip())
    assert reader.read(server.url + "/notes.md").text == MARKDOWN.strip()


def test_pdf_text_and_title_are_extracted(server, reader):
    page = reader.read(server.url + "/paper.pdf")
    assert page.title == "River Notes"
    assert "Glacial flour makes the Baker River turquoise." in page.text


def test_unsupported_content_type_is_named(server, reader):
    with pytest.raises(PageUnavailableError, match=r"content type image/png is not supported"):
        reader.read(server.url + "/image.png")


def test_page_without_text_says_so(server, reader):
    with pytest.raises(PageUnavailableError, match=r"no readable text \(it may need JavaScript\)"):
        reader.read(server.url + "/script-only")


@pytest.mark.parametrize("path", ["/huge", "/huge-unannounced"])
def test_body_past_max_bytes_is_refused(server, path):
    with (
        WebPageReader(allow_private=True, max_bytes=CAPPED_MAX_BYTES) as capped,
        pytest.raises(PageUnavailableError, match=r"larger than max_bytes=10,000"),
    ):
        capped.read(server.url + path)


def test_http_error_status_is_reported(server, reader):
    with pytest.raises(PageUnavailableError, match=r"HTTP 404 Not Found"):
        reader.read(server.url + "/missing")


def test_redirects_are_followed_to_the_final_url(server, reader):
    page = reader.read(server.url + "/redirect-local")
    assert (page.url, page.text) == (server.url + "/text", PLAIN_TEXT.strip())
    assert server.paths == ["/redirect-local", "/text"]


def test_redirect_loop_stops(server, reader):
    with pytest.raises(PageUnavailableError, match=rf"more than {web.MAX_REDIRECTS} redirects"):
        reader.read(server.url + "/redirect-loop")


def test_redirect_to_a_private_address_is_refused_before_it_is_requested(server):
    # The first hop is allowed by name only; the redirect's localhost target must pass the address check on its own,
    # even through a client configured to follow redirects by itself.
    with (
        httpx.Client(follow_redirects=True) as client,
        WebPageReader(allowed_hosts={"127.0.0.1"}, client=client) as guarded,
        pytest.raises(PageUnavailableError, match=r"localhost resolves to .*, a loopback address; pass allow_private"),
    ):
        guarded.read(server.url + "/redirect-private")
    assert server.paths == ["/redirect-private"]


def test_allowed_hosts_admit_exactly_the_named_host(server):
    with WebPageReader(allowed_hosts={"127.0.0.1"}) as guarded:
        assert guarded.read(server.url + "/text").text == PLAIN_TEXT.strip()


def test_slow_server_times_out(server):
    with (
        WebPageReader(allow_private=True, timeout_s=0.3) as impatient,
        pytest.raises(PageUnavailableError, match=r"no answer within 0.3 s"),
    ):
        impatient.read(server.url + "/slow")


def test_whole_download_is_bounded_by_the_timeout(server):
    # Each chunk arrives well within the timeout, but the body as a whole would take three seconds.
    with (
        WebPageReader(allow_private=True, timeout_s=0.5) as impatient,
        pytest.raises(PageUnavailableError, match=r"download did not finish within 0.5 s"),
    ):
        impatient.read(server.url + "/drip")


def local_urls(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/text",
        f"http://localhost:{port}/text",
        f"http://127.1:{port}/text",
        f"http://0x7f000001:{port}/text",
        f"http://017700000001:{port}/text",
        f"http://0.0.0.0:{port}/text",
        f"http://[::1]:{port}/text",
        f"http://[::ffff:127.0.0.1]:{port}/text",
        "http://10.0.0.1/",
        "http://192.168.1.1/admin",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
    ]


def test_private_and_local_addresses_are_refused_before_connecting(server):
    with WebPageReader() as guarded:
        for url in local_urls(server.server_address[1]):
            with pytest.raises(PageUnavailableError, match=r"resolves to .* address; pass allow_private=True") as info:
                guarded.read(url)
            assert "--allow-private-urls" in str(info.value)
    assert server.paths == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.org/file.txt", "only http and https URLs can be fetched, not ftp"),
        ("file:///etc/passwd", "only http and https URLs can be fetched, not file"),
        ("javascript:alert(1)", "only http and https URLs can be fetched, not javascript"),
        ("not a url", "only http and https URLs can be fetched, not a URL without a scheme"),
        ("http://", "the URL has no host name"),
        ("http://[::1", "is not a valid URL"),
    ],
)
def test_other_schemes_and_garbage_are_refused(url, message):
    with WebPageReader(allow_private=True) as permissive, pytest.raises(PageUnavailableError, match=message):
        permissive.read(url)


def test_unresolvable_host_is_reported(monkeypatch):
    def no_such_host(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    with WebPageReader() as guarded, pytest.raises(PageUnavailableError, match=r"could not resolve host nowhere.test"):
        guarded.read("https://nowhere.test/")


def test_searxng_results_become_web_hits(server):
    with SearxngSearch(server.url + "/", allow_private=True) as search:
        hits = search.search("baker river", k=3)
    assert hits == [WebHit(f"https://example.org/{i}", f"Result {i}", f"Snippet {i}") for i in range(3)]
    assert parse_qs(urlsplit(server.paths[0]).query) == {"q": ["baker river"], "format": ["json"]}


def test_searxng_empty_results_are_an_empty_list(server):
    with SearxngSearch(server.url, allow_private=True) as search:
        assert search.search("nothing") == []


def test_searxng_engine_outage_is_not_reported_as_no_results(server):
    with (
        SearxngSearch(server.url + "/outage", allow_private=True) as search,
        pytest.raises(WebSearchError, match=r"engines failed \(google: CAPTCHA, bing: timeout\)"),
    ):
        search.search("baker river")


def test_searxng_without_json_format_explains_the_setting(server):
    with (
        SearxngSearch(server.url + "/forbidden", allow_private=True) as search,
        pytest.raises(WebSearchError, match=r"HTTP 403.*enable `json` under `search.formats` in its settings.yml"),
    ):
        search.search("baker river")


def test_searxng_non_json_answer_is_reported(server):
    with (
        SearxngSearch(server.url + "/html", allow_private=True) as search,
        pytest.raises(WebSearchError, match=r"answered text/html instead of JSON"),
    ):
        search.search("baker river")


def test_searxng_timeouts_are_retried_then_reported(server, monkeypatch):
    monkeypatch.setattr(web, "RETRY_BACKOFF_S", 0.01)
    with (
        SearxngSearch(server.url + "/slow", allow_private=True, timeout_s=0.3, retries=1) as search,
        pytest.raises(WebSearchError, match=r"did not answer within 0.3 s \(2 tries\)"),
    ):
        search.search("baker river")
    assert server.hits["/slow/search"] == 2


def test_searxng_timeout_then_answer_succeeds(server, monkeypatch):
    monkeypatch.setattr(web, "RETRY_BACKOFF_S", 0.01)
    with SearxngSearch(server.url + "/flaky", allow_private=True, timeout_s=0.3, retries=1) as search:
        assert len(search.search("baker river", k=10)) == len(SEARCH_RESULTS)
    assert server.hits["/flaky/search"] == 2


def test_searxng_not_running_is_reported():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe closes
    with (
        SearxngSearch(f"http://127.0.0.1:{port}", allow_private=True) as search,
        pytest.raises(WebSearchError, match=r"could not reach SearXNG .*is it running\?"),
    ):
        search.search("baker river")


def test_searxng_on_a_private_address_needs_allow_private(server):
    with SearxngSearch(server.url) as search, pytest.raises(WebSearchError, match=r"a loopback address; pass"):
        search.search("baker river")
    assert server.paths == []


@pytest.mark.parametrize("base_url", ["ftp://searx.example", "localhost:8888", "http://"])
def test_searxng_base_url_must_be_http(base_url):
    with pytest.raises(ConfigError, match=r"must be an http\(s\) URL"):
        SearxngSearch(base_url)
