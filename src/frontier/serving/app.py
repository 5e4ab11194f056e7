"""The FastAPI app behind `frontier serve`: OpenAI's /v1/models, /v1/chat/completions and /v1/completions.

Generation runs on worker threads (the event loop keeps answering other clients) and `Engine` serialises it. A
streamed answer travels from the worker to the SSE response through an asyncio queue; when the client disconnects
the response is cancelled, which sets the job's cancel flag and stops the sampling loop, so the lock is freed.
Every error is returned in OpenAI's `{"error": {...}}` shape so OpenAI clients raise their usual exceptions.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from frontier.serving.engine import DEFAULT_PROMPT_CACHE_SIZE, Choice, Engine, GenerationCancelled, Job, Piece
from frontier.serving.protocol import (
    MAX_CHOICES,
    MAX_STOP_SEQUENCES,
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    Completion,
    CompletionChoice,
    CompletionRequest,
    DecodingParams,
    ErrorDetail,
    ErrorResponse,
    ModelCard,
    ModelList,
    PromptTokensDetails,
    SamplingRequest,
    StepDecodingParams,
    Usage,
)

DEFAULT_MAX_TOKENS_LIMIT = 2048
# How to fix each request field, appended to validation errors.
FIELD_HINTS = {
    "model": "name the served model (GET /v1/models lists it)",
    "messages": 'send a non-empty list of messages like {"role": "user", "content": "Hello"} '
    "with role system, developer, user or assistant",
    "prompt": "send a non-empty string or a non-empty list of non-empty strings",
    "max_tokens": "send a positive integer",
    "max_completion_tokens": "send a positive integer",
    "temperature": "send a number from 0 to 2 (0 = greedy decoding)",
    "top_p": "send a number greater than 0 and at most 1",
    "n": f"send an integer from 1 to {MAX_CHOICES}",
    "stop": f"send a non-empty string or a list of at most {MAX_STOP_SEQUENCES} non-empty strings",
    "seed": "send an integer from -2**63 to 2**64 - 1",
    "presence_penalty": "send a number from -2 to 2 (0 = none)",
    "frequency_penalty": "send a number from -2 to 2 (0 = none)",
    "stream": "send true or false",
    "stream_options": 'send {"include_usage": true} or leave it out',
    "return_decoding_params": "send true or false",
    "logprobs": "this server returns no log-probabilities; leave logprobs out or send false",
    "top_logprobs": "this server returns no log-probabilities; leave top_logprobs out",
    "echo": "this server does not echo the prompt; leave echo out or send false",
    "logit_bias": "this server does not apply a logit bias; leave logit_bias out",
    "best_of": "this server does not rank candidates; leave best_of out (n samples several answers)",
    "suffix": "this server does not insert text; leave suffix out",
    "response_format": 'this server has no JSON mode; leave response_format out or send {"type": "text"}',
    "tools": "this server does not call tools; leave tools out",
    "tool_choice": 'this server does not call tools; leave tool_choice out or send "none"',
    "functions": "this server does not call functions; leave functions out",
    "function_call": 'this server does not call functions; leave function_call out or send "none"',
}
# Union members and type tags pydantic puts into error locations; they are not request fields.
_LOC_TAG = re.compile(r"^(str|int|float|bool|list|dict)$|[\[\]\-]|^[A-Z]")
_running: set[asyncio.Future] = set()  # keeps streaming workers referenced until they finish


class APIError(Exception):
    """An error to return to the client as OpenAI's error object."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_response(status: int, message: str, param=None, code=None, kind="invalid_request_error") -> JSONResponse:
    body = ErrorResponse(error=ErrorDetail(message=message, type=kind, param=param, code=code))
    return JSONResponse(body.model_dump(mode="json"), status_code=status)


def create_app(
    model, tokenizer, model_name: str, autodeco=None, *, max_tokens_limit: int = DEFAULT_MAX_TOKENS_LIMIT,
    prompt_cache_size: int = DEFAULT_PROMPT_CACHE_SIZE,
) -> FastAPI:  # fmt: skip
    """An OpenAI-compatible app serving `model` as `model_name`; with `autodeco` (an `AutoDecoForCausalLM` whose base
    is `model`) every token is sampled at the heads' predicted temperature and top-p (× the request's values).
    `prompt_cache_size`: how many single-prompt requests' KV caches to keep for later prompts that extend them."""
    engine = Engine(model, tokenizer, autodeco, prompt_cache_size=prompt_cache_size)
    app = FastAPI(title="frontier serve", description=f"OpenAI-compatible API for {model_name}")
    app.state.engine, app.state.model_name = engine, model_name
    started = int(time.time())

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.param, exc.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error_response(exc.errors())

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = f"{exc.detail}: {request.method} {request.url.path}"
        if exc.status_code in (404, 405):
            message += "; this server offers GET /v1/models, POST /v1/chat/completions and POST /v1/completions"
        return error_response(exc.status_code, message, code="not_found" if exc.status_code == 404 else None)

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, f"generation failed: {type(exc).__name__}: {exc}", kind="server_error")

    @app.get("/v1/models")
    async def list_models() -> JSONResponse:
        return _json(ModelList(data=[ModelCard(id=model_name, created=started)]))

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest):
        _check_model(body.model, model_name)
        messages = [{"role": m.template_role(), "content": m.text()} for m in body.messages]
        prompt = await run_in_threadpool(engine.encode_chat, messages)
        job = make_job(body, [prompt], engine, max_tokens_limit, prompt_param="messages")
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            return _sse(_chat_stream(engine, job, body, rid, created, model_name))
        choices = await run_in_threadpool(engine.run, job)
        return _json(
            ChatCompletion(
                id=rid, created=created, model=model_name, usage=_usage(job, choices),
                choices=[
                    ChatChoice(
                        index=c.index, message=AssistantMessage(content=c.text), finish_reason=c.finish_reason,
                        decoding_params=_params(c) if body.return_decoding_params else None,
                    )
                    for c in choices
                ],
            )
        )  # fmt: skip

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        _check_model(body.model, model_name)
        prompts = [await run_in_threadpool(engine.encode_text, text) for text in body.prompts()]
        job = make_job(body, prompts, engine, max_tokens_limit, prompt_param="prompt")
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            return _sse(_completion_stream(engine, job, body, rid, created, model_name))
        choices = await run_in_threadpool(engine.run, job)
        return _json(
            Completion(
                id=rid, created=created, model=model_name, usage=_usage(job, choices),
                choices=[
                    CompletionChoice(
                        index=c.index, text=c.text, finish_reason=c.finish_reason,
                        decoding_params=_params(c) if body.return_decoding_params else None,
                    )
                    for c in choices
                ],
            )
        )  # fmt: skip

    return app


def _check_model(requested: str, served: str) -> None:
    if requested != served:
        raise APIError(
            404,
            f"The model '{requested}' does not exist on this server; it serves '{served}', so send "
            f"model='{served}' (GET /v1/models lists it)",
            param="model",
            code="model_not_found",
        )


def make_job(body: SamplingRequest, prompts: list[list[int]], engine: Engine, limit: int, prompt_param: str) -> Job:
    """Check the token budget of a validated request and turn it into a `Job`."""
    param = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    if max_tokens is not None and max_tokens > limit:
        raise APIError(
            400,
            f"{param} is {max_tokens}, but this server generates at most {limit} tokens per choice; lower {param} "
            "(or restart frontier serve with a larger --max-tokens-limit)",
            param=param,
            code="invalid_value",
        )
    if any(not p for p in prompts):
        raise APIError(400, f"a {prompt_param} encodes to no tokens; send some text", prompt_param, "invalid_value")
    longest = max(len(p) for p in prompts)
    context = engine.max_positions
    if context is not None:
        room = context - longest
        if room < 1 or (max_tokens is not None and max_tokens > room):
            wanted = f"{param} asks for {max_tokens} more" if max_tokens is not None else "no room is left"
            raise APIError(
                400,
                f"This model's maximum context length is {context} tokens, but the {prompt_param} take {longest} "
                f"tokens and {wanted}; shorten the {prompt_param} or lower {param}",
                param=prompt_param,
                code="context_length_exceeded",
            )
        limit = min(limit, room)
    return Job(
        prompts=prompts,
        max_tokens=max_tokens if max_tokens is not None else limit,
        n=body.n or 1,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        seed=body.seed,
        stop=body.stop_sequences(),
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
    )


def validation_error_response(errors: list[dict]) -> JSONResponse:
    """The first pydantic error as an OpenAI error: which field, what was wrong with it, and how to fix it."""
    # A union field (content, stop, prompt) reports one error per member; the member whose type matched (and then
    # the deepest error) names the real problem.
    same_field = (e for e in errors if e["loc"][:2] == errors[0]["loc"][:2])
    error = max(same_field, key=lambda e: (not e["type"].endswith("_type"), len(e["loc"])))
    if error["type"] == "json_invalid":
        detail = error.get("ctx", {}).get("error", error["msg"])
        return error_response(
            400, f"The request body is not valid JSON ({detail}); send a JSON object", None, "invalid_json"
        )
    path = [part for part in error["loc"][1:] if isinstance(part, int) or not _LOC_TAG.search(part)]
    if not path:
        return error_response(
            400, "The request body must be a JSON object with the fields of OpenAI's API", None, "invalid_value"
        )
    param = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    hint = FIELD_HINTS.get(str(path[0]), "see OpenAI's API reference for this field")
    if error["type"] == "missing":
        return error_response(400, f"Missing required parameter '{param}'; {hint}", param, "missing_required_parameter")
    shown = repr(error.get("input"))
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    code = "invalid_type" if error["type"].endswith("_type") else "invalid_value"
    return error_response(400, f"Invalid '{param}': {error['msg']} (got {shown}); {hint}", param, code)


def _json(model: BaseModel) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json"))


def _usage(job: Job, choices: list[Choice]) -> Usage:
    prompt = sum(len(p) for p in job.prompts)  # each prompt counts once, however many choices it has
    completion = sum(len(c.tokens) for c in choices)
    cached = sum(c.cached_prompt_tokens for c in choices[:: job.n])  # the first choice of each prompt
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
    )  # fmt: skip


def _params(choice: Choice) -> DecodingParams:
    return DecodingParams(temperature=choice.temperatures, top_p=choice.top_ps)


def _step_params(piece: Piece, wanted: bool) -> StepDecodingParams | None:
    return StepDecodingParams(temperature=piece.temperature, top_p=piece.top_p) if wanted else None


# ---- streaming ---------------------------------------------------------------------------------------------------


def _sse(events: AsyncIterator[BaseModel]) -> StreamingResponse:
    return StreamingResponse(_sse_lines(events), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _sse_lines(events: AsyncIterator[BaseModel]) -> AsyncIterator[str]:
    """`data: {json}` per event, then `data: [DONE]`; an error after the headers went out becomes an error event."""
    async with aclosing(events):
        try:
            async for event in events:
                yield f"data: {event.model_dump_json()}\n\n"
        except Exception as exc:
            detail = ErrorDetail(message=f"generation failed: {type(exc).__name__}: {exc}", type="server_error")
            yield f"data: {ErrorResponse(error=detail).model_dump_json()}\n\n"
    yield "data: [DONE]\n\n"


async def _generate(engine: Engine, job: Job) -> AsyncIterator[Piece | list[Choice]]:
    """Yield each `Piece` as the worker thread makes it, then the finished choices.

    Closing or cancelling this generator early (the client disconnected) sets the cancel flag, so the worker stops
    at its next token and releases the engine's lock.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    cancel = threading.Event()

    def put(item) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the event loop has closed: nobody is listening any more
            cancel.set()

    def work() -> None:
        try:
            put(engine.run(job, on_piece=put, cancel=cancel))
        except GenerationCancelled:
            pass
        except Exception as exc:
            put(exc)

    worker = asyncio.ensure_future(run_in_threadpool(work))
    _running.add(worker)
    worker.add_done_callback(_running.discard)
    try:
        while True:
            item = await queue.get()
            if isinstance(item, Exception):
                raise item
            yield item
            if isinstance(item, list):
                return
    finally:
        cancel.set()


async def _chat_stream(
    engine: Engine, job: Job, body: ChatCompletionRequest, rid: str, created: int, model_name: str
) -> AsyncIterator[ChatCompletionChunk]:
    def chunk(choice: ChatChunkChoice | None, usage: Usage | None = None) -> ChatCompletionChunk:
        choices = [choice] if choice else []
        return ChatCompletionChunk(id=rid, created=created, model=model_name, choices=choices, usage=usage)

    for index in range(len(job.prompts) * job.n):
        yield chunk(ChatChunkChoice(index=index, delta=ChatDelta(role="assistant", content="")))
    async with aclosing(_generate(engine, job)) as events:
        async for event in events:
            if isinstance(event, list):
                if body.include_usage():
                    yield chunk(None, _usage(job, event))
                break
            params = _step_params(event, body.return_decoding_params)
            if event.text or params:
                yield chunk(
                    ChatChunkChoice(index=event.index, delta=ChatDelta(content=event.text), decoding_params=params)
                )
            if event.finish_reason:
                yield chunk(ChatChunkChoice(index=event.index, delta=ChatDelta(), finish_reason=event.finish_reason))


async def _completion_stream(
    engine: Engine, job: Job, body: CompletionRequest, rid: str, created: int, model_name: str
) -> AsyncIterator[Completion]:
    def chunk(choice: CompletionChoice | None, usage: Usage | None = None) -> Completion:
        choices = [choice] if choice else []
        return Completion(id=rid, created=created, model=model_name, choices=choices, usage=usage)

    async with aclosing(_generate(engine, job)) as events:
        async for event in events:
            if isinstance(event, list):
                if body.include_usage():
                    yield chunk(None, _usage(job, event))
                break
            params = _step_params(event, body.return_decoding_params)
            if event.text or params:
                yield chunk(
                    CompletionChoice(index=event.index, text=event.text, finish_reason=None, decoding_params=params)
                )
            if event.finish_reason:
                yield chunk(CompletionChoice(index=event.index, text="", finish_reason=event.finish_reason))
