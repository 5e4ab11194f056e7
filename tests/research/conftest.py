"""A scripted chat model for agent and evaluation tests: replays fixed replies and records every request."""

import pytest

from frontier.research.llm import Completion, LLMError


class ScriptedLLM:
    """Replays fixed replies and records every request; ~4 characters per token."""

    def __init__(self, replies, context_window=None, name="scripted"):
        self.replies = list(replies)
        self.requests = []
        self.context_window = context_window
        self.name = name

    def complete(self, messages, *, max_tokens, stop=(), temperature=0.6, top_p=0.95, seed=None):
        self.requests.append({"messages": [dict(m) for m in messages], "stop": stop, "max_tokens": max_tokens})
        if not self.replies:
            raise LLMError("script exhausted")
        reply = self.replies.pop(0)
        return Completion(reply, self.count_tokens(messages), len(reply) // 4, "stop", 0.01)

    def count_tokens(self, messages):
        return sum(len(m["content"]) for m in messages) // 4

    def truncate(self, text, max_tokens):
        return text[: max_tokens * 4]


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads; on a busy 2-core machine thread contention makes them 10x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def scripted_llm():
    return ScriptedLLM
