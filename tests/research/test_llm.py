"""The OpenAI-compatible backend against a scripted endpoint: which errors are retried, and what a reply becomes."""

from __future__ import annotations

import httpx
import openai
import pytest

from frontier.research import llm as llm_module
from frontier.research.llm import LLMError, OpenAIChatLLM

MESSAGES = [{"role": "user", "content": "hi"}]


def _backend(replies: list[tuple[int, dict]], monkeypatch) -> tuple[OpenAIChatLLM, list[int]]:
    """An OpenAIChatLLM whose endpoint answers with `replies` in turn; returns it and the request count."""
    calls = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        status, body = replies[min(len(calls), len(replies)) - 1]
        return httpx.Response(status, json=body)

    monkeypatch.setattr(llm_module.time, "sleep", lambda seconds: None)
    llm = OpenAIChatLLM("served", "http://endpoint.test/v1", max_tries=4)
    transport = httpx.Client(transport=httpx.MockTransport(handle))
    llm.client = openai.OpenAI(api_key="x", base_url="http://endpoint.test/v1", max_retries=0, http_client=transport)
    return llm, calls


def _reply(message: dict) -> dict:
    return {
        "id": "c", "object": "chat.completion", "created": 0, "model": "served",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }  # fmt: skip


@pytest.mark.parametrize(("status", "hint"), [(401, "OPENAI_API_KEY"), (404, "model name"), (400, "too long")])
def test_a_refused_request_fails_at_once_with_what_to_fix(monkeypatch, status, hint):
    llm, calls = _backend([(status, {"error": {"message": "nope", "type": "invalid_request_error"}})], monkeypatch)
    with pytest.raises(LLMError, match=f"refused the request: {status} .*{hint}"):
        llm.complete(MESSAGES, max_tokens=8)
    assert len(calls) == 1


def test_rate_limits_server_errors_and_empty_replies_are_retried(monkeypatch):
    error = {"error": {"message": "busy", "type": "server_error"}}
    empty = {**_reply({"content": "x"}), "choices": []}
    llm, calls = _backend([(429, error), (500, error), (200, empty), (200, _reply({"content": "Paris"}))], monkeypatch)
    assert llm.complete(MESSAGES, max_tokens=8).text == "Paris"
    assert len(calls) == 4
    llm, calls = _backend([(200, empty)], monkeypatch)
    with pytest.raises(LLMError, match="a reply without choices"):
        llm.complete(MESSAGES, max_tokens=8)


def test_reasoning_returned_apart_is_put_back_in_think_tags(monkeypatch):
    reply = _reply({"content": "<answer>Paris</answer>", "reasoning_content": "The capital is Paris."})
    llm, _ = _backend([(200, reply)], monkeypatch)
    assert (
        llm.complete(MESSAGES, max_tokens=8).text == "<think>\nThe capital is Paris.\n</think>\n<answer>Paris</answer>"
    )
    thinking_only = _reply({"content": None, "reasoning": "Still thinking"})
    llm, _ = _backend([(200, thinking_only)], monkeypatch)
    assert llm.complete(MESSAGES, max_tokens=8).text == "<think>\nStill thinking\n</think>\n"
