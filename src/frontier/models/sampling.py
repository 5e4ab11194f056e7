"""A token-by-token sampling loop over any Hugging Face causal LM in which a callback picks every step's temperature
and top-p from that step's final hidden state and logits.

Static decoding (one T and p for all tokens), AutoDeco (T and p predicted per token by its heads) and the server's
streaming all run through `sample`, so they differ only in the callback. `prefill` runs the prompt once and
`Prefix.repeat` shares it between several samples per prompt, which is what evaluations with N samples need.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch

from frontier.errors import ConfigError

# (final hidden states [B, H], logits [B, V]) → (temperature [B], top_p [B]) for this step.
DecodingParamsFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
# Called after every step with (tokens [B], temperature [B], top_p [B]); used for streaming.
OnToken = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]
# A temperature below this is treated as this (dividing logits by ~0 overflows).
MIN_TEMPERATURE = 1e-4
# How many of the most probable tokens `sample_next` looks for the nucleus among before it sorts the vocabulary.
NUCLEUS_CANDIDATES = 256


@dataclass
class Prefix:
    """The model's state after reading the prompts: last-position hidden [B, H] and logits [B, V], the KV cache,
    the attention mask [B, S] and the last position ids [B, 1]."""

    hidden: torch.Tensor
    logits: torch.Tensor
    cache: object
    attention_mask: torch.Tensor
    positions: torch.Tensor

    def repeat(self, n: int) -> Prefix:
        """A copy with each prompt's state n times in a row ([p0, p0, …, p1, p1, …]) for n samples per prompt.

        `sample` consumes the prefix it is given; repeating (n = 1: copying) leaves this one reusable.
        """
        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(n)  # in place, on the copy
        return Prefix(
            hidden=self.hidden.repeat_interleave(n, 0),
            logits=self.logits.repeat_interleave(n, 0),
            cache=cache,
            attention_mask=self.attention_mask.repeat_interleave(n, 0),
            positions=self.positions.repeat_interleave(n, 0),
        )


@dataclass
class SampledTokens:
    """New tokens [B, N] (pad after EOS) and the temperature and top-p each was drawn with [B, N]."""

    tokens: torch.Tensor
    temperatures: torch.Tensor
    top_ps: torch.Tensor


def _forward(model, input_ids, attention_mask, cache, positions):
    out = model(
        input_ids=input_ids, attention_mask=attention_mask, cache=cache, position_ids=positions, use_cache=True,
        output_hidden_states=True, logits_to_keep=1,
    )  # fmt: skip
    return out.hidden_states[-1][:, -1], out.logits[:, -1].float(), out.cache


@torch.no_grad()
def prefill(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Prefix:
    """Read (left-padded) prompts input_ids [B, S] once; returns the state sampling continues from."""
    from transformers import DynamicCache

    input_ids = input_ids.to(model.device)  # prompts are tokenised on the CPU; the model may live on a GPU
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(model.device, copy=True)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    # Models with a cache of their own (Kimi Linear's recurrent states) build it when handed none.
    own_cache = not getattr(model, "_supports_default_dynamic_cache", lambda: True)()
    cache = None if own_cache else DynamicCache(config=model.config)
    hidden, logits, cache = _forward(model, input_ids, mask, cache, positions)
    return Prefix(hidden, logits, cache, mask, positions[:, -1:])


def can_cut_back(cache) -> bool:
    """Whether `cache` can be cut back to its first n tokens and shared by `share_prefix`: transformers' dynamic
    per-token key/value cache can. Recurrent states (KDA, Mamba) and sliding windows hold a summary that cannot be
    rewound, and static caches are written in place."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    return isinstance(cache, DynamicCache) and all(type(layer) is DynamicLayer for layer in cache.layers)


def share_prefix(cache):
    """A cache that can be cut back and extended without touching `cache`: its layers are copied, their key and value
    tensors shared (a dynamic layer crops by slicing and grows by concatenating, so it never writes into them)."""
    if not can_cut_back(cache):
        raise ConfigError(f"a {type(cache).__name__} cannot share its prefix; only a DynamicCache of DynamicLayers can")
    shared = copy.copy(cache)
    shared.layers = [copy.copy(layer) for layer in cache.layers]
    return shared


@torch.no_grad()
def prefill_continuing(model, ids: list[int], cache, reuse: int) -> Prefix:
    """`prefill` of the one prompt `ids` when `cache` has already read its first `reuse` tokens (and maybe more,
    which are cut off): only ids[reuse:] are read. `cache` is updated in place and becomes the prefix's cache.

    The last prompt token is always read again (reuse < len(ids)): its hidden state and logits start the sampling.
    """
    held = cache.get_seq_length()
    if not 0 < reuse < len(ids) or reuse > held or not can_cut_back(cache):
        raise ConfigError(
            f"cannot continue a {len(ids)}-token prompt from {reuse} cached tokens of a cache holding {held} "
            f"({type(cache).__name__}, croppable: {can_cut_back(cache)}): need 0 < reuse < prompt length and ≤ held"
        )
    cache.crop(reuse - held)  # a negative count removes that many tokens from the end
    device = model.device
    new = torch.tensor([ids[reuse:]], dtype=torch.long, device=device)
    mask = torch.ones(1, len(ids), dtype=torch.long, device=device)
    positions = torch.arange(reuse, len(ids), device=device)[None]
    hidden, logits, cache = _forward(model, new, mask, cache, positions)
    return Prefix(hidden, logits, cache, mask, positions[:, -1:])


def static_params(temperature: float, top_p: float) -> DecodingParamsFn:
    """The same temperature and top-p for every token (ordinary sampling)."""

    def params(hidden: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = logits.shape[0]
        return logits.new_full((batch,), temperature), logits.new_full((batch,), top_p)

    return params


def hard_top_p_mask(probs: torch.Tensor, top_p: torch.Tensor | float) -> torch.Tensor:
    """Boolean [..., V]: the standard nucleus, tokens whose mass ranked above them is below p (the top-1 always)."""
    top_p = torch.as_tensor(top_p, dtype=probs.dtype, device=probs.device)
    if top_p.dim() == probs.dim() - 1:
        top_p = top_p.unsqueeze(-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_above = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_keep = mass_above < top_p
    sorted_keep[..., 0] = True
    return torch.empty_like(sorted_keep).scatter_(-1, order, sorted_keep)


def sample_next(
    logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor | float, generator: torch.Generator | None
) -> torch.Tensor:
    """One token per row from softmax(logits / T) restricted to the hard top-p nucleus; logits [B, V] → [B].

    The draw is `torch.multinomial(probs · hard_top_p_mask(probs, p), 1)`'s, the same token for the same generator:
    the argmax of the nucleus' probabilities divided by one Exp(1) number per vocabulary entry. What is faster is
    finding the nucleus (a sort of 49K probabilities costs more than a small model's decode step on a CPU): a row
    whose nucleus lies within its NUCLEUS_CANDIDATES most probable tokens looks only at those, a row with p ≥ 1 at
    the whole distribution, and only the others (including a NaN p, which keeps the top token) sort.
    """
    probs = torch.softmax(logits / temperature.clamp(min=MIN_TEMPERATURE)[:, None], dim=-1)
    top_p = torch.as_tensor(top_p, dtype=probs.dtype, device=probs.device).clamp(max=1.0).expand(probs.shape[0])
    race = probs / torch.empty_like(probs).exponential_(1, generator=generator)  # multinomial's own draw, per entry
    candidates, ids = probs.topk(min(NUCLEUS_CANDIDATES, probs.shape[-1]), dim=-1)  # most probable first
    mass_above = candidates.cumsum(dim=-1) - candidates
    within = mass_above[:, -1] >= top_p  # the last candidate is already outside the nucleus, so all later ones are
    whole = ~within & (top_p >= 1)
    tokens = race.argmax(dim=-1)  # right for the `whole` rows
    if within.any():
        keep = mass_above[within] < top_p[within, None]
        keep[:, 0] = True
        ranked = torch.where(keep, race[within].gather(-1, ids[within]), -1.0)
        tokens[within] = ids[within].gather(-1, ranked.argmax(dim=-1, keepdim=True)).squeeze(-1)
    masked = ~within & ~whole
    if masked.any():
        nucleus = hard_top_p_mask(probs[masked], top_p[masked])
        tokens[masked] = torch.where(nucleus, race[masked], -1.0).argmax(dim=-1)
    return tokens


def apply_penalties(logits: torch.Tensor, counts: torch.Tensor, presence: float, frequency: float) -> torch.Tensor:
    """logits − presence·[count > 0] − frequency·count: the OpenAI / vLLM repetition penalties; [B, V] each."""
    return logits - presence * (counts > 0).to(logits.dtype) - frequency * counts.to(logits.dtype)


def eos_id_tensor(model, eos_token_id: int | list[int] | None, device) -> torch.Tensor:
    """The stop ids: the given ones, else every EOS id of the model's config and generation config (chat models
    often name their end-of-turn token only in the latter)."""
    if eos_token_id is not None:
        ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    else:
        ids = []
        for config in (model.config, getattr(model, "generation_config", None)):
            eos = getattr(config, "eos_token_id", None)
            ids += [eos] if isinstance(eos, int) else list(eos or [])
    return torch.tensor(sorted(set(ids)), dtype=torch.long, device=device)


@torch.no_grad()
def sample(
    model,
    prefix: Prefix,
    decoding_params: DecodingParamsFn,
    max_new_tokens: int,
    *,
    greedy: bool = False,
    eos_token_id: int | list[int] | None = None,
    pad_token_id: int | None = None,
    generator: torch.Generator | None = None,
    on_token: OnToken | None = None,
    presence_penalty: float = 0.0,
    frequency_penalty: float = 0.0,
) -> SampledTokens:
    """Continue every row of `prefix` for up to max_new_tokens, stopping a row at its first EOS.

    After EOS a row's tokens are padding and its temperature / top-p are NaN (also in what `on_token` receives).
    Finished rows leave the batch (the cache keeps only live rows), so a batch costs what its live rows cost.
    greedy=True takes the argmax; the parameters are still computed and returned, so callers can inspect them.
    `prefix` is consumed (its cache is updated in place); pass `prefix.repeat(1)` to keep it.
    presence_penalty / frequency_penalty (OpenAI's and vLLM's meaning): every logit of a token this row has already
    generated is lowered by presence_penalty, plus frequency_penalty per time it was generated; the prompt does not
    count. The decoding-params callback sees the penalised logits, since they are what gets sampled.
    """
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    device = prefix.logits.device
    eos_ids = eos_id_tensor(model, eos_token_id, device)
    if pad_token_id is None:
        pad_token_id = model.config.pad_token_id
    if pad_token_id is None:
        pad_token_id = int(eos_ids[0]) if len(eos_ids) else 0
    batch = prefix.logits.shape[0]
    tokens = torch.full((batch, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    temperatures = torch.full((batch, max_new_tokens), float("nan"), device=device)
    top_ps = torch.full((batch, max_new_tokens), float("nan"), device=device)
    hidden, logits, cache = prefix.hidden, prefix.logits, prefix.cache
    mask, positions = prefix.attention_mask, prefix.positions
    live = torch.arange(batch, device=device)  # rows of the full batch still being generated
    penalised = presence_penalty != 0 or frequency_penalty != 0
    counts = torch.zeros_like(logits, dtype=torch.float32) if penalised else None  # generated tokens per row
    steps = 0
    for step in range(max_new_tokens):
        if counts is not None:
            logits = apply_penalties(logits, counts, presence_penalty, frequency_penalty)
        temperature, top_p = decoding_params(hidden, logits)
        token = logits.argmax(-1) if greedy else sample_next(logits, temperature, top_p, generator)
        tokens[live, step], temperatures[live, step], top_ps[live, step] = token, temperature.float(), top_p.float()
        if counts is not None:
            counts[torch.arange(len(token), device=device), token] += 1
        steps = step + 1
        if on_token is not None:
            on_token(tokens[:, step], temperatures[:, step], top_ps[:, step])
        running = ~torch.isin(token, eos_ids)
        if not running.any() or steps == max_new_tokens:
            break
        if not running.all():
            keep = running.nonzero().squeeze(-1)
            live, token, mask, positions = live[keep], token[keep], mask[keep], positions[keep]
            cache.batch_select_indices(keep)
            if counts is not None:
                counts = counts[keep]
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        positions = positions + 1
        hidden, logits, cache = _forward(model, token[:, None], mask, cache, positions)
    return SampledTokens(tokens[:, :steps], temperatures[:, :steps], top_ps[:, :steps])
