"""Load a model (and optional AutoDeco heads) and serve it with uvicorn: what `frontier serve` runs."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from fastapi import FastAPI

from frontier.errors import ConfigError, ModelLoadError
from frontier.serving.app import DEFAULT_MAX_TOKENS_LIMIT, create_app
from frontier.serving.engine import DEFAULT_PROMPT_CACHE_SIZE

EMBEDDED_MODEL_NAME = "smollm2-135m-instruct"


def default_model_name(model: str | os.PathLike | None) -> str:
    """The name clients send as `model`: the embedded model's short name, else the folder or file name."""
    if model is None:
        return EMBEDDED_MODEL_NAME
    path = Path(model).expanduser().resolve()
    return path.stem if path.suffix == ".gguf" else path.name


def check_heads_folder(heads: str | os.PathLike) -> None:
    """Fail before the (slow) model load if `heads` is not a folder of saved AutoDeco heads."""
    from frontier.autodeco.modeling import CONFIG_NAME, HEADS_NAME

    folder = Path(heads)
    if not folder.is_dir():
        raise ModelLoadError(f"{folder}: no such folder; pass the --output folder of `frontier autodeco train`")
    missing = [name for name in (CONFIG_NAME, HEADS_NAME) if not (folder / name).is_file()]
    if missing:
        raise ModelLoadError(
            f"{folder}: not an AutoDeco heads folder (missing {', '.join(missing)}); pass the --output folder of "
            "`frontier autodeco train`"
        )


def build_app(
    model: str | os.PathLike | None = None,
    heads: str | os.PathLike | None = None,
    served_model_name: str | None = None,
    max_tokens_limit: int = DEFAULT_MAX_TOKENS_LIMIT,
    progress: bool = True,
    prompt_cache_size: int = DEFAULT_PROMPT_CACHE_SIZE,
    device: str | torch.device | None = "cpu",
    dtype: torch.dtype = torch.float32,
) -> FastAPI:
    """Load `model` (None = the embedded SmolLM2) on `device` ("auto": a CUDA GPU when there is one) and, if given,
    the AutoDeco heads in `heads`; return the app."""
    from frontier.models import load_causal_lm

    if max_tokens_limit < 1:
        raise ConfigError(f"max_tokens_limit must be a positive integer, got {max_tokens_limit!r}")
    if heads is not None:
        check_heads_folder(heads)
        from frontier.autodeco.modeling import base_for_heads

        model = base_for_heads(heads, model)
    base, tokenizer = load_causal_lm(model, progress=progress, device=device, dtype=dtype)
    autodeco = None
    if heads is not None:
        from frontier.autodeco.modeling import AutoDecoForCausalLM

        autodeco = AutoDecoForCausalLM.from_pretrained(heads, base_model=base)
    name = served_model_name or default_model_name(model)
    return create_app(
        base, tokenizer, name, autodeco, max_tokens_limit=max_tokens_limit, prompt_cache_size=prompt_cache_size
    )


def serve(
    model: str | os.PathLike | None = None,
    heads: str | os.PathLike | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    served_model_name: str | None = None,
    max_tokens_limit: int = DEFAULT_MAX_TOKENS_LIMIT,
    log_level: str = "info",
    prompt_cache_size: int = DEFAULT_PROMPT_CACHE_SIZE,
    device: str | torch.device | None = "cpu",
    dtype: torch.dtype = torch.float32,
) -> None:
    """Serve until interrupted (Ctrl-C)."""
    import uvicorn

    app = build_app(
        model, heads, served_model_name, max_tokens_limit, prompt_cache_size=prompt_cache_size, device=device,
        dtype=dtype,
    )  # fmt: skip
    decoding = f"AutoDeco heads from {heads}" if heads is not None else "static temperature/top-p"
    print(f"serving {app.state.model_name!r} ({decoding}) at http://{host}:{port}/v1", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


@contextmanager
def serve_in_background(app: FastAPI, host: str = "127.0.0.1") -> Iterator[int]:
    """Run `app` with uvicorn on a free port in a background thread (scripts, tests, notebooks); yields the port."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=0, log_level="warning", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, name="frontier-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start within 30 s")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)
