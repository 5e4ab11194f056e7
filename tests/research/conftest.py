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


CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Ids 0, 1, 2 are the tiny Llama's (tests/conftest.py) pad, bos and eos.
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@pytest.fixture(scope="session")
def char_tokenizer():
    """A fast character-level tokenizer (ASCII, 101 tokens) with a ChatML template: it fits the tiny Llama's vocab,
    and a random model over it puts real probability on any set of characters (49K-token vocabularies leave a random
    model near uniform)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [chr(code) for code in range(32, 127)] + ["\n"]
    vocab = {token: i for i, token in enumerate([*SPECIALS, "<unk>", *chars])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(SPECIALS)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=SPECIALS[1], eos_token=SPECIALS[2], pad_token=SPECIALS[0],
        unk_token="<unk>", chat_template=CHATML,
    )  # fmt: skip
