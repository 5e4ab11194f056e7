"""Pydantic models for the subset of the OpenAI HTTP API that `frontier serve` speaks.

Requests allow unknown fields (OpenAI clients send many we do not use) but are strict about the types of the fields
we read, so a temperature sent as "0.5" is refused instead of silently coerced. Responses follow OpenAI's shape;
optional extensions (`decoding_params`, `usage` on chunks) are left out of the JSON when they are None.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# OpenAI's own limit on stop sequences.
MAX_STOP_SEQUENCES = 4
MAX_CHOICES = 8


def _omit_none(value: object) -> bool:
    return value is None


# ---- requests ----------------------------------------------------------------------------------------------------


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class TextPart(_Request):
    """One part of a message given as a list of parts; only text parts make sense for a text-only model."""

    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)

    def template_role(self) -> str:
        """The role for the chat template: OpenAI's newer "developer" messages are what templates call "system"."""
        return "system" if self.role == "developer" else self.role


class StreamOptions(_Request):
    include_usage: bool = False


NonEmptyText = Annotated[str, Field(min_length=1)]


class ResponseFormat(_Request):
    type: Literal["text"]  # JSON mode and JSON schemas are not implemented


class SamplingRequest(_Request):
    """Fields shared by chat and text completions. None means "not sent": the server's default applies."""

    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int | None = Field(default=None, ge=1, le=MAX_CHOICES)
    stop: NonEmptyText | Annotated[list[NonEmptyText], Field(max_length=MAX_STOP_SEQUENCES)] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**64)  # what torch's generators take
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    # Extension: report the temperature and top-p every token was sampled with.
    return_decoding_params: bool = False
    # OpenAI fields this server does not implement: accepted only with their "off" value, so a client that asks for
    # log-probabilities, a logit bias or tools gets an error rather than a reply that silently lacks them.
    logprobs: Literal[False] | Literal[0] | None = None
    top_logprobs: Literal[0] | None = None
    echo: Literal[False] | None = None
    logit_bias: Annotated[dict, Field(max_length=0)] | None = None
    best_of: Literal[1] | None = None
    suffix: None = None
    response_format: ResponseFormat | None = None
    tools: Annotated[list, Field(max_length=0)] | None = None
    tool_choice: Literal["none"] | None = None
    functions: Annotated[list, Field(max_length=0)] | None = None  # the older form of tools
    function_call: Literal["none"] | None = None

    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)


class CompletionRequest(SamplingRequest):
    prompt: NonEmptyText | Annotated[list[NonEmptyText], Field(min_length=1)]

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


# ---- responses ---------------------------------------------------------------------------------------------------

FinishReason = Literal["stop", "length"]


class PromptTokensDetails(BaseModel):
    cached_tokens: int  # prompt tokens read from the server's prompt cache instead of computed again


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails


class DecodingParams(BaseModel):
    """Per choice: the temperature and top-p of every generated token, in order."""

    temperature: list[float]
    top_p: list[float]


class StepDecodingParams(BaseModel):
    """Per streamed chunk: the temperature and top-p of the one token the chunk carries."""

    temperature: float
    top_p: float


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: None = None
    finish_reason: FinishReason
    decoding_params: DecodingParams | None = Field(default=None, exclude_if=_omit_none)


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = Field(default=None, exclude_if=_omit_none)
    content: str | None = Field(default=None, exclude_if=_omit_none)


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    logprobs: None = None
    finish_reason: FinishReason | None = None
    decoding_params: StepDecodingParams | None = Field(default=None, exclude_if=_omit_none)


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = Field(default=None, exclude_if=_omit_none)


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: None = None
    finish_reason: FinishReason | None
    decoding_params: DecodingParams | StepDecodingParams | None = Field(default=None, exclude_if=_omit_none)


class Completion(BaseModel):
    """A text completion; streamed chunks use the same object with one choice each (OpenAI does too)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = Field(default=None, exclude_if=_omit_none)


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "frontier"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
