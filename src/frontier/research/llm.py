"""Chat models the agent can drive: a local transformers model, or any OpenAI-compatible endpoint.

Both take chat messages and return text, so the agent loop, the `visit` extractor and the ReSum summariser never know
which one runs. `parse_llm_spec` reads the CLI's `--llm local[:PATH] | openai:MODEL@BASE_URL`.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from typing import Protocol

from frontier.errors import BackendUnavailableError, ConfigError, FrontierError

# Reference sampling (inference/react_agent.py); the run script overrides temperature with 0.85.
DEFAULT_TEMPERATURE = 0.6
DEFAULT_TOP_P = 0.95
REFERENCE_PRESENCE_PENALTY = 1.1
# Without a tokenizer for an endpoint's model, context is estimated at this many characters per token.
CHARS_PER_TOKEN = 3.5


class LLMError(FrontierError, RuntimeError):
    """The model could not be reached or returned nothing after every retry."""


class LLMRefusedError(LLMError):
    """The endpoint refused the request (a 4xx status that another try cannot change): `status` says which."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or a stop string) or "length"
    seconds: float
    # Whether the model sampled its end-of-turn (EOS) token itself (False: a stop string or the token limit ended the
    # turn; None: the backend does not say). On-policy RL learns an end-of-turn token only where it was sampled.
    model_ended: bool | None = None


class ChatLLM(Protocol):
    """What the agent needs from a model."""

    name: str
    context_window: int | None  # tokens the model can attend to; None when unknown (endpoints)

    def complete(
        self, messages: list[dict[str, str]], *, max_tokens: int, stop: tuple[str, ...] = (),
        temperature: float = DEFAULT_TEMPERATURE, top_p: float = DEFAULT_TOP_P, seed: int | None = None,
    ) -> Completion: ...  # fmt: skip

    def count_tokens(self, messages: list[dict[str, str]]) -> int: ...

    def truncate(self, text: str, max_tokens: int) -> str: ...


class LocalLLM:
    """A local causal LM (default: the embedded SmolLM2-135M-Instruct), optionally with AutoDeco heads.

    Sampling uses the reference's presence penalty (1.1) unless told otherwise, as the endpoint backend does.

    Generation goes through the server's `Engine`, so stop strings, EOS handling and AutoDeco sampling are the same
    code `frontier serve` runs; calls from several threads are serialised by it.
    """

    def __init__(
        self, model, tokenizer, *, name: str = "local", autodeco=None,
        presence_penalty: float = REFERENCE_PRESENCE_PENALTY,
    ) -> None:  # fmt: skip
        from frontier.serving.engine import Engine

        self.name = name
        self.presence_penalty = presence_penalty
        self.tokenizer = tokenizer
        self.engine = Engine(model, tokenizer, autodeco)
        self.context_window = self.engine.max_positions

    @classmethod
    def load(
        cls, path: str | None = None, *, heads: str | None = None, progress: bool = True, device="cpu", dtype=None
    ) -> LocalLLM:
        """Load `path` on `device` ("auto": a CUDA GPU when there is one) in `dtype`. Without a path: with `heads`, the
        base they were trained on, else the embedded SmolLM2."""
        import torch

        from frontier.models import load_causal_lm
        from frontier.serving.server import check_heads_folder, default_model_name

        if heads is not None:
            check_heads_folder(heads)
            from frontier.autodeco.modeling import base_for_heads

            path = base_for_heads(heads, path)
        model, tokenizer = load_causal_lm(path, progress=progress, device=device, dtype=dtype or torch.float32)
        autodeco = None
        if heads is not None:
            from frontier.autodeco.modeling import AutoDecoForCausalLM

            autodeco = AutoDecoForCausalLM.from_pretrained(heads, base_model=model)
        name = default_model_name(path)
        return cls(model, tokenizer, name=name, autodeco=autodeco)

    def complete(
        self, messages, *, max_tokens, stop=(), temperature=DEFAULT_TEMPERATURE, top_p=DEFAULT_TOP_P, seed=None
    ):
        from frontier.serving.engine import Job

        start = time.perf_counter()
        prompt = self.engine.encode_chat(messages)
        if self.context_window is not None:
            room = self.context_window - len(prompt)
            if room <= 0:
                raise ConfigError(
                    f"{self.name}: the prompt has {len(prompt)} tokens but the model attends to {self.context_window}; "
                    "lower --max-context-tokens so the agent summarises or answers earlier"
                )
            max_tokens = min(max_tokens, room)
        job = Job(
            [prompt], max_tokens, temperature=temperature, top_p=top_p, seed=seed, stop=tuple(stop),
            presence_penalty=self.presence_penalty,
        )  # fmt: skip
        (choice,) = self.engine.run(job)
        return Completion(
            choice.text,
            len(prompt),
            len(choice.tokens),
            choice.finish_reason or "length",
            time.perf_counter() - start,
            model_ended=choice.eos,
        )

    def count_tokens(self, messages):
        return len(self.engine.encode_chat(messages))

    def truncate(self, text, max_tokens):
        ids = self.engine.encode_text(text)
        if len(ids) <= max_tokens:
            return text
        return self.tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)


class OpenAIChatLLM:
    """Any OpenAI-compatible chat endpoint (vLLM, llama.cpp server, Ollama, `frontier serve`, OpenAI).

    Retries as the reference does: exponential backoff with jitter capped at 30 s; an empty reply counts as a
    failure. Token counts come from the endpoint's `usage`; before a call, context size is estimated from characters
    unless `tokenizer` (a local HF tokenizer folder for the served model) is given.
    """

    def __init__(
        self, model: str, base_url: str, *, api_key: str | None = None, timeout_s: float = 600.0, max_tries: int = 10,
        presence_penalty: float | None = REFERENCE_PRESENCE_PENALTY, tokenizer: str | None = None,
        context_window: int | None = None,
    ) -> None:  # fmt: skip
        try:
            import openai
        except ImportError as exc:
            raise BackendUnavailableError("the openai backend needs the openai package: pip install openai") from exc
        self.name = model
        self.base_url = base_url
        self.max_tries = max_tries
        self.presence_penalty = presence_penalty
        self.context_window = context_window
        key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"  # local servers ignore the key, as the reference
        self.client = openai.OpenAI(api_key=key, base_url=base_url, timeout=timeout_s, max_retries=0)
        self._errors = (openai.APIError, openai.APIConnectionError, openai.APITimeoutError)
        self.tokenizer = None
        if tokenizer is not None:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer, local_files_only=True)

    def complete(
        self, messages, *, max_tokens, stop=(), temperature=DEFAULT_TEMPERATURE, top_p=DEFAULT_TOP_P, seed=None
    ):
        extra = {} if self.presence_penalty is None else {"presence_penalty": self.presence_penalty}
        last_error = "empty response"
        start = time.perf_counter()
        for attempt in range(self.max_tries):
            try:
                response = self.client.chat.completions.create(
                    model=self.name, messages=messages, max_tokens=max_tokens, stop=list(stop) or None,
                    temperature=temperature, top_p=top_p, seed=seed, **extra,
                )  # fmt: skip
                choice = response.choices[0] if response.choices else None
                text = _with_reasoning(choice.message) if choice is not None else ""
                if text.strip():
                    usage = response.usage
                    return Completion(
                        text,
                        usage.prompt_tokens if usage else self.count_tokens(messages),
                        usage.completion_tokens if usage else self._estimate(text),
                        "length" if choice.finish_reason == "length" else "stop",
                        time.perf_counter() - start,
                    )
                last_error = "empty response" if choice is not None else "a reply without choices"
            except self._errors as exc:
                status = getattr(exc, "status_code", None)
                if status is not None and 400 <= status < 500 and status not in RETRIED_STATUSES:
                    # Sending the same request again cannot help: a wrong key, model name or oversized prompt.
                    message = f"{self.name} at {self.base_url} refused the request: {_refusal(exc)}"
                    raise LLMRefusedError(message, status) from None
                last_error = f"{type(exc).__name__}: {exc}"
            if attempt < self.max_tries - 1:
                time.sleep(min(2**attempt + random.uniform(0, 1), 30.0))
        raise LLMError(f"{self.name} at {self.base_url}: no answer after {self.max_tries} tries ({last_error})")

    def _estimate(self, text: str) -> int:
        return int(len(text) / CHARS_PER_TOKEN) + 1

    def count_tokens(self, messages):
        if self.tokenizer is not None:
            return len(self.tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True))
        return sum(self._estimate(m["content"]) + 4 for m in messages)

    def truncate(self, text, max_tokens):
        if self.tokenizer is not None:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            return text if len(ids) <= max_tokens else self.tokenizer.decode(ids[:max_tokens])
        return text[: int(max_tokens * CHARS_PER_TOKEN)]


# Client errors worth another try (request timeout, conflict, rate limit); any other 4xx is final.
RETRIED_STATUSES = (408, 409, 429)
REFUSAL_HINTS = {
    401: "check the API key (OPENAI_API_KEY)",
    403: "check the API key's permissions",
    404: "check the model name and base URL (GET <base URL>/models lists the served models)",
    400: "if the prompt is too long, lower --max-context-tokens",
}


def _refusal(exc) -> str:
    hint = REFUSAL_HINTS.get(exc.status_code)
    return f"{exc.status_code} {exc.message}" + (f"; {hint}" if hint else "")


def _with_reasoning(message) -> str:
    """The reply's text, with the reasoning that some servers return apart (`reasoning_content`, or `reasoning`
    on OpenRouter) put back in front inside <think> tags, where the agent's format expects it."""
    text = message.content or ""
    extra = message.model_extra or {}
    reasoning = extra.get("reasoning_content") or extra.get("reasoning")
    if isinstance(reasoning, str) and reasoning.strip() and "<think>" not in text:
        return f"<think>\n{reasoning.strip()}\n</think>\n{text}"
    return text


@dataclass(frozen=True)
class LLMSpec:
    """A parsed `--llm` value."""

    kind: str  # "local" or "openai"
    path: str | None = None  # local model path (None = embedded SmolLM2)
    model: str | None = None  # endpoint model name
    base_url: str | None = None


def parse_llm_spec(spec: str) -> LLMSpec:
    """`local`, `local:PATH` or `openai:MODEL@BASE_URL` (e.g. `openai:Tongyi-DeepResearch@http://127.0.0.1:6001/v1`)."""
    if spec == "local":
        return LLMSpec("local")
    if spec.startswith("local:"):
        path = spec.removeprefix("local:")
        if not path:
            raise ConfigError("--llm local:PATH needs a path after the colon, or use plain `local` for SmolLM2")
        return LLMSpec("local", path=path)
    if spec.startswith("openai:"):
        model, sep, base_url = spec.removeprefix("openai:").rpartition("@")
        if not sep or not model or not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"--llm {spec!r}: expected openai:MODEL@BASE_URL, e.g. openai:my-model@http://127.0.0.1:8000/v1"
            )
        return LLMSpec("openai", model=model, base_url=base_url)
    raise ConfigError(f"--llm {spec!r}: expected local, local:PATH or openai:MODEL@BASE_URL")


def load_llm(
    spec: str | LLMSpec, *, heads: str | None = None, progress: bool = True, device=None, dtype=None, **openai_options
) -> ChatLLM:
    """Build the backend a spec names; AutoDeco `heads`, `device` (None: the CPU) and `dtype` (None: float32) apply
    to local models only."""
    spec = parse_llm_spec(spec) if isinstance(spec, str) else spec
    if spec.kind == "local":
        if openai_options:
            raise ConfigError(f"options {sorted(openai_options)} apply to openai endpoints, not to a local model")
        return LocalLLM.load(spec.path, heads=heads, progress=progress, device=device or "cpu", dtype=dtype)
    if heads is not None:
        raise ConfigError("AutoDeco heads apply to local models; serve them with `frontier serve --heads` instead")
    if device is not None or dtype is not None:
        raise ConfigError("--device and --dtype apply to a local model; an endpoint runs wherever its server does")
    return OpenAIChatLLM(spec.model, spec.base_url, **openai_options)
