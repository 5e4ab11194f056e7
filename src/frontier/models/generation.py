"""Chat-formatted generation with any HF causal LM: input checks, left-padded batches, streaming, seeding."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import BatchEncoding, PreTrainedTokenizerBase, TextStreamer

from frontier.errors import ConfigError


@dataclass(frozen=True)
class SamplingSettings:
    """How to pick each next token. `temperature == 0` means greedy decoding (top_p is then unused)."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if not self.temperature >= 0:
            raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p!r}")

    def generate_kwargs(self) -> dict:
        if self.temperature == 0:
            return {
                "max_new_tokens": self.max_new_tokens,
                "do_sample": False,
                "temperature": None,
                "top_p": None,
                "top_k": None,
            }
        return {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": True,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": None,
        }


def chat_inputs(tokenizer: PreTrainedTokenizerBase, prompts: list[str]) -> BatchEncoding:
    """Apply the tokenizer's chat template to each user prompt and left-pad them into one batch.

    Left padding keeps every prompt's last token at the same position, which batched decoding needs.
    """
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise ConfigError(f"prompt {i} is empty; pass some text to generate from")
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = previous_side


@torch.inference_mode()
def generate_chat(
    model,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    settings: SamplingSettings,
    streamer: TextStreamer | None = None,
) -> list[str]:
    """Answer each prompt as the assistant; returns the decoded new text per prompt (special tokens removed)."""
    inputs = chat_inputs(tokenizer, prompts).to(model.device)
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    output = model.generate(
        **inputs, **settings.generate_kwargs(), pad_token_id=tokenizer.pad_token_id, streamer=streamer
    )
    new_tokens = output[:, inputs["input_ids"].shape[1] :]
    return tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
