"""`frontier serve` over real HTTP: the official OpenAI client against real uvicorn servers (on free local ports)
serving the embedded SmolLM2, once with static decoding and once with (untrained, seeded) AutoDeco heads."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import openai
import pytest
import torch
from fastapi import FastAPI
from openai import OpenAI

from frontier.cli import main
from frontier.models import SamplingSettings, generate_chat
from frontier.serving import EMBEDDED_MODEL_NAME, create_app, default_model_name
from frontier.serving.server import serve_in_background as running_server

MODEL_NAME = "smollm2-test"
# Large enough for the aborted-stream test to be cut off mid-generation; other tests ask for a few tokens.
MAX_TOKENS_LIMIT = 400


@dataclass
class Served:
    port: int
    app: FastAPI

    @cached_property
    def openai(self) -> OpenAI:
        return OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key="unused", max_retries=0, timeout=60)

    @contextmanager
    def post(self, path: str, body: str | dict) -> Iterator[http.client.HTTPResponse]:
        """A raw POST (no client-side checks) whose connection closes on exit, even mid-stream."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            content = body if isinstance(body, str) else json.dumps(body)
            connection.request("POST", path, body=content, headers={"Content-Type": "application/json"})
            yield connection.getresponse()
        finally:
            connection.close()

    def client(self) -> OpenAI:
        return self.openai


@pytest.fixture(scope="module")
def static_server(embedded_model) -> Iterator[Served]:
    model, tokenizer = embedded_model
    app = create_app(model, tokenizer, MODEL_NAME, max_tokens_limit=MAX_TOKENS_LIMIT)
    with running_server(app) as port:
        served = Served(port, app)
        yield served
        served.client().close()


@pytest.fixture(scope="module")
def autodeco_server(embedded_model) -> Iterator[Served]:
    """The same model with untrained (seeded) heads: enough to test the protocol, not the heads' quality."""
    from frontier.autodeco.modeling import AutoDecoForCausalLM

    model, tokenizer = embedded_model
    trainable = [p.requires_grad for p in model.parameters()]
    torch.manual_seed(0)
    autodeco = AutoDecoForCausalLM(model)  # freezes the shared session model: restored below
    app = create_app(model, tokenizer, MODEL_NAME, autodeco, max_tokens_limit=MAX_TOKENS_LIMIT)
    try:
        with running_server(app) as port:
            served = Served(port, app)
            yield served
            served.client().close()
    finally:
        for parameter, flag in zip(model.parameters(), trainable, strict=True):
            parameter.requires_grad_(flag)


QUESTION = "What is the capital of France?"
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"  # greedy continues counting instead of stopping


def ask(question: str = QUESTION) -> list[dict]:
    return [{"role": "user", "content": question}]


def chat(served, **kwargs):
    kwargs = {"model": MODEL_NAME, "messages": ask(), "max_tokens": 12, **kwargs}
    return served.client().chat.completions.create(**kwargs)


def stream_chat(served, **kwargs) -> list:
    return list(chat(served, stream=True, **kwargs))


def content_of(chunks) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# ---- the happy paths ---------------------------------------------------------------------------------------------


def test_models_lists_the_served_model(static_server):
    (card,) = static_server.client().models.list().data
    assert (card.id, card.object, card.owned_by) == (MODEL_NAME, "model", "frontier")
    assert isinstance(card.created, int)


def test_greedy_chat_answers_like_generate_chat(static_server, embedded_model):
    model, tokenizer = embedded_model
    (expected,) = generate_chat(model, tokenizer, [QUESTION], SamplingSettings(max_new_tokens=12))
    response = chat(static_server, temperature=0)
    assert response.id.startswith("chatcmpl-") and response.object == "chat.completion"
    assert response.model == MODEL_NAME
    (choice,) = response.choices
    assert choice.index == 0 and choice.message.role == "assistant"
    assert choice.message.content == expected and "Paris" in expected
    assert choice.finish_reason in ("stop", "length")
    usage = response.usage
    assert usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= 12
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_the_next_turn_reads_only_its_new_tokens(static_server):
    """The usage reports (as OpenAI and vLLM do) how many prompt tokens came from the kept cache of the last turn."""
    first = chat(static_server, temperature=0, messages=ask("Name a colour."))
    messages = [*ask("Name a colour."), {"role": "assistant", "content": first.choices[0].message.content}]
    messages.append({"role": "user", "content": "And another one?"})
    second = chat(static_server, temperature=0, messages=messages)
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert first.usage.prompt_tokens < cached < second.usage.prompt_tokens


@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 1.0, "seed": 7}], ids=["greedy", "seeded"])
def test_streamed_deltas_add_up_to_the_full_answer(static_server, sampling):
    full = chat(static_server, **sampling)
    chunks = stream_chat(static_server, stream_options={"include_usage": True}, **sampling)
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert content_of(chunks) == full.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [full.choices[0].finish_reason]
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage.model_dump(exclude={"prompt_tokens_details"}) == full.usage.model_dump(
        exclude={"prompt_tokens_details"}
    )
    # The same prompt again: all of it but the last token (read again for its logits) comes from the kept cache.
    assert usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens - 1


def test_stream_without_include_usage_sends_no_usage(static_server):
    chunks = stream_chat(static_server, temperature=0, max_tokens=4)
    assert all(c.usage is None and c.choices for c in chunks)


def test_text_completions_single_and_batched(static_server):
    client = static_server.client()
    prompts = [COUNTING, "The capital of France is"]
    singles = [client.completions.create(model=MODEL_NAME, prompt=p, max_tokens=6, temperature=0) for p in prompts]
    assert singles[0].object == "text_completion" and singles[0].choices[0].logprobs is None
    assert singles[0].choices[0].text.strip().startswith("11")
    batched = client.completions.create(model=MODEL_NAME, prompt=prompts, max_tokens=6, temperature=0)
    assert [c.index for c in batched.choices] == [0, 1]
    assert [c.text for c in batched.choices] == [s.choices[0].text for s in singles]
    assert batched.usage.prompt_tokens == sum(s.usage.prompt_tokens for s in singles)
    stream = client.completions.create(model=MODEL_NAME, prompt=COUNTING, max_tokens=6, temperature=0, stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks) == singles[0].choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_streaming_never_splits_a_multibyte_character(static_server):
    request = {"model": MODEL_NAME, "prompt": "😀😃😄😁😆😅", "max_tokens": 8, "temperature": 0}
    full = static_server.client().completions.create(**request).choices[0].text
    pieces = [c.choices[0].text for c in static_server.client().completions.create(stream=True, **request)]
    assert "".join(pieces) == full and any(ord(ch) > 0xFFFF for ch in full)
    texts = [p for p in pieces if p]
    assert len(texts) < 8 and not any("\ufffd" in p for p in texts[:-1])  # only a cut-off last one may have it


def test_n_samples_several_choices_for_one_prompt(static_server):
    one = chat(static_server, temperature=0, max_tokens=1)
    response = chat(static_server, n=2, temperature=1.5, seed=3, max_tokens=8)
    assert [c.index for c in response.choices] == [0, 1]
    assert response.usage.prompt_tokens == one.usage.prompt_tokens  # the shared prompt counts once
    assert response.usage.completion_tokens <= 16
    chunks = stream_chat(static_server, n=2, temperature=1.5, seed=3, max_tokens=8)
    for choice in response.choices:
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices[0].index == choice.index)
        assert streamed == choice.message.content


def test_stop_strings_cut_the_answer(static_server):
    full = chat(static_server, temperature=0).choices[0].message.content
    assert "Paris" in full
    cut = full[: full.index("Paris")]
    response = chat(static_server, temperature=0, stop=["Paris", "no such text"])
    assert (response.choices[0].message.content, response.choices[0].finish_reason) == (cut, "stop")
    chunks = stream_chat(static_server, temperature=0, stop="Paris")
    assert content_of(chunks) == cut and not any("P" in (c.choices[0].delta.content or "") for c in chunks)


def test_seeded_sampling_is_reproducible(static_server):
    def sample(seed: int) -> str:
        poem = chat(static_server, temperature=1.5, seed=seed, max_tokens=8, messages=ask("Write a poem."))
        return poem.choices[0].message.content

    first = sample(1)
    assert sample(1) == first
    assert sample(2) != first


def test_presence_penalty_is_applied(static_server):
    def words(**kwargs) -> list[str]:
        reply = chat(static_server, temperature=0, max_tokens=40, messages=ask("Say hello again and again."), **kwargs)
        return reply.choices[0].message.content.split()

    plain, penalised = words(), words(presence_penalty=2.0)
    assert penalised != plain
    assert len(set(penalised)) / len(penalised) >= len(set(plain)) / len(plain)


def test_static_decoding_params_are_the_requested_values(static_server):
    response = chat(static_server, temperature=0.7, top_p=0.9, seed=0, extra_body={"return_decoding_params": True})
    params = response.choices[0].model_extra["decoding_params"]
    assert len(params["temperature"]) == len(params["top_p"]) == response.usage.completion_tokens
    assert params["temperature"] == pytest.approx([0.7] * len(params["temperature"]))
    assert params["top_p"] == pytest.approx([0.9] * len(params["top_p"]))
    assert "decoding_params" not in chat(static_server, temperature=0).choices[0].model_extra


# ---- AutoDeco ----------------------------------------------------------------------------------------------------


def test_autodeco_reports_per_token_decoding_params(autodeco_server):
    extra = {"return_decoding_params": True}
    response = chat(autodeco_server, seed=5, extra_body=extra)
    params = response.choices[0].model_extra["decoding_params"]
    assert len(params["temperature"]) == len(params["top_p"]) == response.usage.completion_tokens
    assert all(0 < t < 2 for t in params["temperature"]) and all(0 < p <= 1 for p in params["top_p"])
    assert len(set(params["temperature"])) > 1  # predicted per token, not one fixed value

    chunks = stream_chat(autodeco_server, seed=5, extra_body=extra, stream_options={"include_usage": True})
    assert content_of(chunks) == response.choices[0].message.content
    steps = [c.choices[0].model_extra["decoding_params"] for c in chunks if c.choices and c.choices[0].model_extra]
    assert [s["temperature"] for s in steps] == pytest.approx(params["temperature"])
    assert [s["top_p"] for s in steps] == pytest.approx(params["top_p"])


def test_autodeco_greedy_ignores_the_heads(autodeco_server, static_server):
    assert chat(autodeco_server, temperature=0).choices[0].message.content == (
        chat(static_server, temperature=0).choices[0].message.content
    )


# ---- errors ------------------------------------------------------------------------------------------------------

GOOD = {"model": MODEL_NAME, "messages": ask(), "max_tokens": 4}


@pytest.mark.parametrize(
    ("path", "body", "status", "param", "code"),
    [
        ("/v1/chat/completions", "{not json", 400, None, "invalid_json"),
        ("/v1/chat/completions", {**GOOD, "temperature": -1}, 400, "temperature", "invalid_value"),
        ("/v1/chat/completions", {**GOOD, "temperature": "hot"}, 400, "temperature", "invalid_type"),
        ("/v1/chat/completions", {**GOOD, "top_p": 0}, 400, "top_p", "invalid_value"),
        ("/v1/chat/completions", {**GOOD, "messages": []}, 400, "messages", "invalid_value"),
        ("/v1/chat/completions", {"model": MODEL_NAME}, 400, "messages", "missing_required_parameter"),
        ("/v1/chat/completions", {**GOOD, "messages": [{"role": "robot", "content": "hi"}]}, 400, "messages[0].role",
         "invalid_value"),
        ("/v1/chat/completions", {**GOOD, "model": "gpt-4o"}, 404, "model", "model_not_found"),
        ("/v1/chat/completions", {**GOOD, "max_tokens": 0}, 400, "max_tokens", "invalid_value"),
        ("/v1/chat/completions", {**GOOD, "max_tokens": MAX_TOKENS_LIMIT + 1}, 400, "max_tokens", "invalid_value"),
        ("/v1/chat/completions", {**GOOD, "n": 9}, 400, "n", "invalid_value"),
        ("/v1/chat/completions", {**GOOD, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop", "invalid_value"),
        ("/v1/completions", {"model": MODEL_NAME, "prompt": ""}, 400, "prompt", "invalid_value"),
        ("/v1/completions", {"model": MODEL_NAME, "prompt": "hello " * 9000, "max_tokens": 4}, 400, "prompt",
         "context_length_exceeded"),
        ("/v1/nowhere", {}, 404, None, "not_found"),
        ("/v1/chat/completions", {**GOOD, "seed": 2**64}, 400, "seed", "invalid_value"),
        ("/v1/chat/completions", {**GOOD, "logprobs": True}, 400, "logprobs", "invalid_value"),
        ("/v1/chat/completions", {**GOOD, "top_logprobs": 3}, 400, "top_logprobs", "invalid_value"),
        ("/v1/chat/completions", {**GOOD, "logit_bias": {"42": 5}}, 400, "logit_bias", "invalid_value"),
        ("/v1/chat/completions", {**GOOD, "response_format": {"type": "json_object"}}, 400, "response_format.type",
         "invalid_value"),
        ("/v1/chat/completions", {**GOOD, "tools": [{"type": "function"}]}, 400, "tools", "invalid_value"),
        ("/v1/chat/completions", {**GOOD, "functions": [{"name": "f"}]}, 400, "functions", "invalid_value"),
        ("/v1/chat/completions", {**GOOD, "function_call": "auto"}, 400, "function_call", "invalid_value"),
        ("/v1/completions", {"model": MODEL_NAME, "prompt": "Hi", "echo": True}, 400, "echo", "invalid_value"),
        ("/v1/completions", {"model": MODEL_NAME, "prompt": "Hi", "logprobs": 2}, 400, "logprobs", "invalid_value"),
        ("/v1/completions", {"model": MODEL_NAME, "prompt": "Hi", "best_of": 3}, 400, "best_of", "invalid_value"),
    ],
    ids=[
        "bad-json", "negative-temperature", "string-temperature", "zero-top-p", "empty-messages", "no-messages",
        "unknown-role", "unknown-model", "zero-max-tokens", "max-tokens-over-limit", "too-many-choices",
        "too-many-stops", "empty-prompt", "prompt-too-long", "unknown-path", "seed-too-large", "chat-logprobs",
        "top-logprobs", "logit-bias", "json-mode", "tools", "functions", "function-call", "echo",
        "completion-logprobs", "best-of",
    ],
)  # fmt: skip
def test_invalid_requests_get_openai_errors(static_server, path, body, status, param, code):
    with static_server.post(path, body) as response:
        assert response.status == status
        payload = json.loads(response.read())
    assert list(payload) == ["error"]
    error = payload["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert len(error["message"]) > 20


def test_off_values_of_unsupported_fields_and_developer_messages_are_accepted(static_server):
    off = {"logprobs": False, "top_logprobs": 0, "logit_bias": {}, "response_format": {"type": "text"},
           "tools": [], "tool_choice": "none", "user": "someone"}  # fmt: skip
    developer = [{"role": "developer", "content": "Answer briefly."}, *ask()]
    with static_server.post("/v1/chat/completions", {**GOOD, **off, "messages": developer}) as response:
        assert response.status == 200, response.read()


def test_openai_client_raises_its_usual_errors(static_server):
    with pytest.raises(openai.BadRequestError, match="temperature"):
        chat(static_server, temperature=-1)
    with pytest.raises(openai.BadRequestError, match="messages"):
        chat(static_server, messages=[])
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        chat(static_server, model="gpt-4o")


# ---- concurrency and disconnects ---------------------------------------------------------------------------------


def test_concurrent_requests_get_their_own_answers(static_server):
    questions = ["What is 2 plus 2?", QUESTION, "Name a colour.", "Say hello in Spanish."]

    def answer(question: str) -> str:
        return chat(static_server, temperature=0, max_tokens=6, messages=ask(question)).choices[0].message.content

    sequential = [answer(q) for q in questions]
    with ThreadPoolExecutor(len(questions)) as pool:
        assert list(pool.map(answer, questions)) == sequential
    assert len(set(sequential)) == len(questions)


def test_a_stream_dropped_by_the_client_stops_its_generation(static_server):
    engine = static_server.app.state.engine
    before = engine.cancelled
    body = {"model": MODEL_NAME, "prompt": COUNTING, "max_tokens": MAX_TOKENS_LIMIT, "temperature": 0, "stream": True}
    with static_server.post("/v1/completions", body) as response:  # hangs up after the first event
        assert response.status == 200 and response.readline().startswith(b"data: {")
    deadline = time.monotonic() + 20  # generating all 400 tokens would take far longer on a CPU
    while engine.cancelled == before:
        assert time.monotonic() < deadline, "the abandoned generation kept running"
        time.sleep(0.05)
    after = static_server.client().completions.create(model=MODEL_NAME, prompt=COUNTING, max_tokens=3, temperature=0)
    assert after.choices[0].text.strip().startswith("11")


# ---- the command line --------------------------------------------------------------------------------------------


def run_main(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse errors
        return exc.code


@pytest.mark.parametrize(
    ("args", "expected", "code"),
    [
        (["--heads", "{tmp}/missing"], "missing: no such folder", 1),
        (["--heads", "{tmp}"], "not an AutoDeco heads folder", 1),
        (["--model", "/no/such/model"], "/no/such/model: no such file or folder", 1),
        (["--port", "70000"], "expected a port number from 0 to 65535", 2),
        (["--max-tokens-limit", "0"], "expected a positive integer, got 0", 2),
    ],
    ids=["missing-heads", "not-heads", "missing-model", "bad-port", "zero-limit"],
)
def test_serve_argument_errors_are_one_line(capsys, tmp_path, args, expected, code):
    assert run_main(["serve", *[a.format(tmp=tmp_path) for a in args]]) == code
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err


def test_default_served_model_names(tmp_path):
    assert default_model_name(None) == EMBEDDED_MODEL_NAME == "smollm2-135m-instruct"
    assert default_model_name(tmp_path / "SmolLM2.Q4_1.gguf") == "SmolLM2.Q4_1"
    assert default_model_name(f"{tmp_path}/my-model/") == "my-model"
