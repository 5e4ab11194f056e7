"""The part of the server that touches the model: one generation at a time, streamed piece by piece.

Every request becomes a `Job` that `Engine.run` executes on a worker thread through `frontier.models.sampling`, so
the server, `frontier generate` and the evaluations share one sampling loop. The loop's `on_token` callback turns
each step into text `Piece`s (for streaming), applies stop sequences and aborts the loop when every choice is done
or the client went away, which is what frees the lock for the next request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from frontier.errors import ConfigError
from frontier.models.sampling import (
    can_cut_back,
    eos_id_tensor,
    prefill,
    prefill_continuing,
    sample,
    share_prefix,
    static_params,
)

# Two kept caches let an agent's conversation survive one interleaved call (e.g. its page-extractor LLM).
DEFAULT_PROMPT_CACHE_SIZE = 2
# A decoded prefix ending in this is cut inside a multi-byte character: wait for the next token.
REPLACEMENT_CHAR = "\ufffd"


class GenerationCancelled(Exception):
    """The client disconnected; the sampling loop was stopped early."""


class _AllChoicesDone(Exception):
    """Raised from on_token to leave the sampling loop once every choice has stopped (EOS, stop string, length)."""


@dataclass(frozen=True)
class Job:
    """One request: token ids per prompt, and how to sample `n` choices for each (temperature 0 = greedy)."""

    prompts: list[list[int]]
    max_tokens: int
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


@dataclass(frozen=True)
class Piece:
    """New text of choice `index` after one token, the (T, p) that token was drawn with, and why it ended if it did.

    `text` may be empty (the token finished a partial character, or could begin a stop sequence).
    """

    index: int
    text: str
    temperature: float
    top_p: float
    finish_reason: str | None = None


@dataclass
class Choice:
    """One choice as it grows: its text (cut before any stop sequence) and every token with its (T, p), EOS included."""

    index: int
    text: str = ""
    finish_reason: str | None = None
    eos: bool = False  # ended on an EOS token it sampled (not on a stop string or the token limit)
    tokens: list[int] = field(default_factory=list)
    temperatures: list[float] = field(default_factory=list)
    top_ps: list[float] = field(default_factory=list)
    emitted: int = 0  # characters of `text` already handed out as pieces
    cached_prompt_tokens: int = 0  # prompt tokens taken from a kept KV cache instead of read again

    def held_back(self, stop: Sequence[str]) -> int:
        """How many trailing characters not to stream yet: a split character, or a possible start of a stop string."""
        longest = len(self.text) - len(self.text.rstrip(REPLACEMENT_CHAR))
        for s in stop:
            for size in range(min(len(s) - 1, len(self.text)), longest, -1):
                if self.text.endswith(s[:size]):
                    longest = size
                    break
        return longest


@dataclass
class _ReadTokens:
    ids: list[int]  # the tokens `cache` holds, in order
    cache: object


class PromptCache:
    """The KV caches of the last few single-prompt jobs, kept so that a prompt that starts like one of them (the next
    turn of a chat or of an agent, which repeats the whole conversation so far) reads only its new tokens.

    Like vLLM's automatic prefix caching, but for one sequence at a time. A prompt that extends a whole entry takes
    that entry's cache and extends it in place; one that shares only part of it (a different question after the same
    system prompt) gets a copy that shares the common tensors, and the entry stays for the conversation it belongs to.
    """

    def __init__(self, capacity: int) -> None:
        if not isinstance(capacity, int) or capacity < 0:
            raise ConfigError(f"prompt_cache_size must be a whole number ≥ 0 (0 turns it off), got {capacity!r}")
        self.capacity = capacity
        self._entries: list[_ReadTokens] = []  # oldest first

    def take(self, ids: list[int]) -> tuple[object, int] | None:
        """(cache, reusable tokens) from the entry sharing the longest prefix with `ids`, or None: the entry's own
        cache (removed from the store) if `ids` extends all of it, else a copy sharing its tensors."""
        best, best_length = None, 0
        for entry in self._entries:
            length = _common_prefix_length(entry.ids, ids)
            if length > best_length:
                best, best_length = entry, length
        best_length = min(best_length, len(ids) - 1)  # the last prompt token is always read again
        if best is None or best_length == 0:
            return None
        if best_length < len(best.ids):
            return share_prefix(best.cache), best_length
        self._entries.remove(best)
        return best.cache, best_length

    def clear(self) -> None:
        self._entries.clear()

    def put(self, ids: list[int], cache) -> None:
        """Keep `cache`, which holds exactly `ids`; the oldest entry goes when more than `capacity` are kept."""
        if self.capacity == 0 or not can_cut_back(cache):
            return
        self._entries.append(_ReadTokens(list(ids), cache))
        del self._entries[: -self.capacity]


def _common_prefix_length(a: list[int], b: list[int]) -> int:
    length = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        length += 1
    return length


class Engine:
    """Runs jobs on `model` (and AutoDeco heads, if any) one at a time; safe to call from many threads.

    Single-prompt jobs keep their KV cache in a `PromptCache` of `prompt_cache_size` entries (0: none), so a
    multi-turn conversation reads each token once.
    """

    def __init__(self, model, tokenizer, autodeco=None, prompt_cache_size: int = DEFAULT_PROMPT_CACHE_SIZE) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.autodeco = autodeco
        self.max_positions: int | None = getattr(model.config, "max_position_embeddings", None)
        self.eos_ids = _eos_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.cancelled = 0  # generations stopped because the client left (for logs and tests)
        self._lock = threading.Lock()  # one generation at a time; also guards the prompt cache
        self.prompt_cache = PromptCache(prompt_cache_size)
        self._cached_weights = _weights_stamp(model)  # the weights the kept caches were computed with
        # Fast tokenizers raise "Already borrowed" when used from two threads at once.
        self._tokenizer_lock = threading.Lock()

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        with self._tokenizer_lock:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            # The template already holds the special tokens (as `chat_inputs` does).
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode_text(self, text: str) -> list[int]:
        with self._tokenizer_lock:
            return self.tokenizer(text)["input_ids"]

    def _decode(self, tokens: list[int]) -> str:
        with self._tokenizer_lock:
            return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def _decoding_params(self, temperature: float, top_p: float):
        if self.autodeco is None:
            return static_params(temperature, top_p)
        # Greedy ignores T; report the heads' own predictions rather than T̂ × 0.
        return self.autodeco.decoding_params(temperature if temperature > 0 else 1.0, top_p)

    def run(
        self,
        job: Job,
        on_piece: Callable[[Piece], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> list[Choice]:
        """Generate every choice of `job`; choice i*n + j is sample j of prompt i. Blocks while another job runs.

        Raises `GenerationCancelled` if `cancel` is set before the job finishes.
        """
        choices = [Choice(index) for index in range(len(job.prompts) * job.n)]
        device = self.model.device
        eos = set(self.eos_ids)

        def on_token(tokens: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor) -> None:
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled
            for row, choice in enumerate(choices):
                if choice.finish_reason is None:
                    piece = self._step(choice, int(tokens[row]), float(temperature[row]), float(top_p[row]), job, eos)
                    if on_piece is not None:
                        on_piece(piece)
            if all(choice.finish_reason is not None for choice in choices):
                raise _AllChoicesDone

        with self._lock:
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled
            generator = None
            if job.seed is not None:
                generator = torch.Generator(device=device).manual_seed(job.seed)
            weights = _weights_stamp(self.model)
            if weights != self._cached_weights:  # trained in between (RL updates the policy in place): all stale
                self.prompt_cache.clear()
                self._cached_weights = weights
            single = len(job.prompts) == 1
            kept = self.prompt_cache.take(job.prompts[0]) if single else None
            if kept is not None:
                cache, reused = kept
                prefix = prefill_continuing(self.model, job.prompts[0], cache, reused)
                for choice in choices:
                    choice.cached_prompt_tokens = reused
            else:
                prefix = prefill(self.model, *_left_pad(job.prompts, self.pad_id, device))
            stopped = None
            try:
                sample(
                    self.model, prefix.repeat(job.n) if job.n > 1 else prefix,
                    self._decoding_params(job.temperature, job.top_p), job.max_tokens, greedy=job.temperature == 0,
                    eos_token_id=self.eos_ids, pad_token_id=self.pad_id, generator=generator, on_token=on_token,
                    presence_penalty=job.presence_penalty, frequency_penalty=job.frequency_penalty,
                )  # fmt: skip
            except (_AllChoicesDone, GenerationCancelled) as stop:  # raised between two steps: the cache is whole
                stopped = stop
            if single:
                self._keep(job, prefix, choices)
            if isinstance(stopped, GenerationCancelled):
                self.cancelled += 1
                raise stopped
        return choices

    def _keep(self, job: Job, prefix, choices: list[Choice]) -> None:
        """Put the job's cache in the prompt cache. With n = 1 sampling extended it in place by every token but the
        last (never fed back); with n > 1 the samples ran on copies and it holds just the prompt. Either way the
        cache's length says how much of prompt + completion it holds, also after a cancelled generation."""
        held = prefix.cache.get_seq_length()
        tokens = job.prompts[0] + (choices[0].tokens if job.n == 1 else [])
        self.prompt_cache.put(tokens[:held], prefix.cache)

    def _step(self, choice: Choice, token: int, temperature: float, top_p: float, job: Job, eos: set[int]) -> Piece:
        """Add one token to `choice`; returns the text that is now safe to show."""
        choice.tokens.append(token)
        choice.temperatures.append(temperature)
        choice.top_ps.append(top_p)
        if token in eos:
            choice.finish_reason, choice.eos = "stop", True
        else:
            choice.text = self._decode(choice.tokens)  # the whole prefix: pieces of a character join up
            cut = min((i for i in (choice.text.find(s) for s in job.stop) if i >= 0), default=-1)
            if cut >= 0:
                choice.text, choice.finish_reason = choice.text[:cut], "stop"
            elif len(choice.tokens) >= job.max_tokens:
                choice.finish_reason = "length"
        end = len(choice.text) if choice.finish_reason else len(choice.text) - choice.held_back(job.stop)
        text = choice.text[choice.emitted : end] if end > choice.emitted else ""
        choice.emitted = max(choice.emitted, end)
        return Piece(choice.index, text, temperature, top_p, choice.finish_reason)


def _weights_stamp(model) -> tuple[tuple[int, int], ...]:
    """Identity and in-place version counter of every parameter: changes when a parameter is replaced or updated in
    place (optimizer steps, load_state_dict), which makes every kept KV cache stale. Writes through `.data` and to
    buffers go unseen; call `prompt_cache.clear()` after those."""
    return tuple((id(p), p._version) for p in model.parameters())


def _eos_ids(model, tokenizer) -> list[int]:
    """Every id that ends a turn: the model's (config and generation config) and the tokenizer's."""
    ids = eos_id_tensor(model, None, "cpu").tolist()
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(int(tokenizer.eos_token_id))
    return ids or [0]


def _left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad so every prompt ends at the last column, which batched decoding needs."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], dtype=torch.long, device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=torch.long, device=device)
    return ids, mask
