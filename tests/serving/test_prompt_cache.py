"""Prompt caching: a prompt that extends an earlier one (prompt + completion + more) reads only its new tokens, and
gets the same results as a fresh prefill."""

from __future__ import annotations

import threading

import pytest
import torch

from frontier.errors import ConfigError
from frontier.models.sampling import prefill, prefill_continuing, share_prefix
from frontier.serving.engine import Engine, GenerationCancelled, Job, PromptCache


def _ids(n: int, seed: int) -> list[int]:
    return torch.randint(3, 128, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def test_continuing_a_longer_cache_equals_a_fresh_prefill(tiny_llama):
    model = tiny_llama()
    ids = _ids(20, 0)
    other = prefill(model, torch.tensor([ids[:12] + _ids(5, 1)]))  # shares 12 tokens, then diverges
    continued = prefill_continuing(model, ids, other.cache, 12)
    fresh = prefill(model, torch.tensor([ids]))
    assert continued.cache.get_seq_length() == 20
    assert torch.allclose(continued.logits, fresh.logits, atol=1e-5)
    assert torch.allclose(continued.hidden, fresh.hidden, atol=1e-5)
    assert continued.positions.tolist() == fresh.positions.tolist() == [[19]]


@pytest.mark.parametrize("reuse", [0, 20, 13])
def test_continuing_refuses_what_the_cache_cannot_give(tiny_llama, reuse):
    model = tiny_llama()
    ids = _ids(20, 0)
    cache = prefill(model, torch.tensor([ids[:12]])).cache  # holds 12 tokens
    with pytest.raises(ConfigError, match="cannot continue a 20-token prompt"):
        prefill_continuing(model, ids, cache, reuse)


def test_a_recurrent_state_is_never_rewound():
    class RecurrentState:  # not a DynamicCache: a summary of the past, like KDA's
        def get_seq_length(self):
            return 12

    with pytest.raises(ConfigError, match="croppable: False"):
        prefill_continuing(None, _ids(20, 0), RecurrentState(), 5)
    cache = PromptCache(2)
    cache.put(_ids(12, 0), RecurrentState())
    assert cache.take(_ids(20, 0)) is None


def test_a_shared_prefix_leaves_the_original_cache_alone(tiny_llama):
    model = tiny_llama()
    ids = _ids(20, 0)
    original = prefill(model, torch.tensor([ids]))
    other = ids[:8] + _ids(6, 1)
    continued = prefill_continuing(model, other, share_prefix(original.cache), 8)
    assert torch.allclose(continued.logits, prefill(model, torch.tensor([other])).logits, atol=1e-5)
    assert original.cache.get_seq_length() == 20
    again = prefill_continuing(model, [*ids, 7], original.cache, 20)  # the original still holds all of ids
    assert torch.allclose(again.logits, prefill(model, torch.tensor([[*ids, 7]])).logits, atol=1e-5)


def _conversation(engine: Engine, turns: int = 3, seed: int = 0, **job) -> tuple[list[list[int]], list[int]]:
    """Each turn's prompt is the previous prompt + its completion + a few new tokens (a chat, an agent)."""
    prompt, completions, cached = _ids(9, seed), [], []
    for turn in range(turns):
        (choice,) = engine.run(Job([prompt], max_tokens=6, temperature=0, **job))
        completions.append(choice.tokens)
        cached.append(choice.cached_prompt_tokens)
        prompt = prompt + choice.tokens + _ids(4, seed * 100 + turn)
    return completions, cached


def test_a_conversation_reads_each_token_once_and_answers_the_same(tiny_llama, char_tokenizer):
    model = tiny_llama()
    with_cache, cached = _conversation(Engine(model, char_tokenizer))
    without, uncached = _conversation(Engine(model, char_tokenizer, prompt_cache_size=0))
    assert with_cache == without
    assert uncached == [0, 0, 0]
    # Turn 2 reuses turn 1's prompt and every completion token but the last, which was never fed back.
    lengths = [9, 9 + 6 + 4]
    assert cached == [0] + [length + 6 - 1 for length in lengths]


def test_two_interleaved_conversations_need_two_entries(tiny_llama, char_tokenizer):
    model = tiny_llama()

    def interleaved(engine):
        prompts = {0: _ids(9, 0), 1: _ids(9, 1)}
        cached = []
        for turn in range(2):
            for who in (0, 1):
                (choice,) = engine.run(Job([prompts[who]], max_tokens=4, temperature=0))
                cached.append(choice.cached_prompt_tokens)
                prompts[who] = prompts[who] + choice.tokens + _ids(3, 10 * who + turn)
        return cached

    assert interleaved(Engine(model, char_tokenizer, prompt_cache_size=2)) == [0, 0, 12, 12]
    assert interleaved(Engine(model, char_tokenizer, prompt_cache_size=1)) == [0, 0, 0, 0]


def test_a_call_sharing_only_the_system_prompt_keeps_the_conversation_whole(tiny_llama, char_tokenizer):
    """An agent's interleaved call (summary, page extraction) starts with the same system prompt: it reuses that
    much, and the agent's next turn still finds its whole conversation."""
    engine = Engine(tiny_llama(), char_tokenizer)
    system = {"role": "system", "content": "You answer questions about countries."}
    agent = [system, {"role": "user", "content": "Which country borders Chad?"}]
    (first,) = engine.run(Job([engine.encode_chat(agent)], max_tokens=5, temperature=0))
    aside = engine.encode_chat([system, {"role": "user", "content": "Summarise this page."}])
    (summary,) = engine.run(Job([aside], max_tokens=5, temperature=0))
    header = next(i for i, (a, b) in enumerate(zip(engine.encode_chat(agent), aside, strict=False)) if a != b)
    assert header > 40 and summary.cached_prompt_tokens == header  # the system turn and "<|im_start|>user\n"
    turn = engine.encode_chat(agent) + first.tokens[:-1]  # the conversation read so far, then a new turn
    (second,) = engine.run(Job([[*turn, *_ids(4, 3)]], max_tokens=5, temperature=0))
    assert second.cached_prompt_tokens == len(turn)


def test_n_samples_and_batches(tiny_llama, char_tokenizer):
    """n > 1 samples on copies, so the kept cache holds the prompt; a batch of prompts neither takes nor keeps."""
    model = tiny_llama()
    engine = Engine(model, char_tokenizer)
    prompt = _ids(9, 0)
    first = engine.run(Job([prompt], max_tokens=4, n=3, temperature=0.8, seed=0))
    again = engine.run(Job([prompt], max_tokens=4, n=3, temperature=0.8, seed=0))
    assert [c.tokens for c in first] == [c.tokens for c in again]
    assert [c.cached_prompt_tokens for c in again] == [8, 8, 8]
    batch = engine.run(Job([prompt, _ids(5, 1)], max_tokens=4, temperature=0))
    assert [c.cached_prompt_tokens for c in batch] == [0, 0]
    (single,) = engine.run(Job([prompt], max_tokens=4, temperature=0))
    assert single.cached_prompt_tokens == 8  # the batch left the kept cache alone


def test_a_cancelled_generation_leaves_a_usable_cache(tiny_llama, char_tokenizer):
    model = tiny_llama()
    engine = Engine(model, char_tokenizer)
    prompt = _ids(9, 0)
    cancel = threading.Event()
    pieces = []

    def on_piece(piece):
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.set()  # seen at the next step

    with pytest.raises(GenerationCancelled):
        engine.run(Job([prompt], max_tokens=20, temperature=0), on_piece=on_piece, cancel=cancel)
    follow_up = prompt + _ids(5, 2)
    (cached,) = engine.run(Job([follow_up], max_tokens=6, temperature=0))
    (fresh,) = Engine(model, char_tokenizer, prompt_cache_size=0).run(Job([follow_up], max_tokens=6, temperature=0))
    assert cached.cached_prompt_tokens == 9 and cached.tokens == fresh.tokens


def test_changed_weights_make_kept_caches_stale(tiny_llama, char_tokenizer):
    """RL updates the policy in place between rollouts: a cache computed with the old weights must not be reused."""
    model = tiny_llama()
    engine = Engine(model, char_tokenizer)
    prompt = _ids(9, 0)
    engine.run(Job([prompt], max_tokens=4, temperature=0))
    with torch.no_grad():
        model.model.layers[0].self_attn.k_proj.weight.mul_(3.0)
    (after,) = engine.run(Job([prompt + _ids(3, 1)], max_tokens=6, temperature=0))
    (fresh,) = Engine(model, char_tokenizer, prompt_cache_size=0).run(
        Job([prompt + _ids(3, 1)], max_tokens=6, temperature=0)
    )
    assert after.cached_prompt_tokens == 0 and after.tokens == fresh.tokens


def test_bad_sizes_are_refused():
    with pytest.raises(ConfigError, match="prompt_cache_size must be a whole number"):
        PromptCache(-1)
