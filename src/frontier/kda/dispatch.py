"""Public KDA entry points: fla's Triton kernels for CUDA tensors when fla is installed, our PyTorch ops otherwise.

On CPU nothing here imports fla or Triton (PyPI Triton has no CPU driver; importing fla's ops would pull it in).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from types import ModuleType

import torch

from frontier.errors import BackendUnavailableError
from frontier.kda import chunk as torch_chunk
from frontier.kda import recurrent as torch_recurrent
from frontier.kda.checks import check_kda_inputs
from frontier.kda.compiled import compiled_chunk_kda


def load_fla_naive() -> ModuleType:
    """fla's `ops/kda/naive.py` (its plain-PyTorch references), loaded by file path: importing `fla.ops` would
    import Triton, which has no CPU driver. Used as an independent oracle by tests and benchmarks."""
    spec = importlib.util.find_spec("fla")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailableError(
            "flash-linear-attention is not installed; it is in the dev extras: pip install -e '.[dev]'"
        )
    path = f"{next(iter(spec.submodule_search_locations))}/ops/kda/naive.py"
    file_spec = importlib.util.spec_from_file_location("fla_kda_naive", path)
    module = importlib.util.module_from_spec(file_spec)
    file_spec.loader.exec_module(module)
    return module


def fla_triton_installed() -> bool:
    """Whether fla and Triton are importable (checked without importing either)."""
    return importlib.util.find_spec("fla") is not None and importlib.util.find_spec("triton") is not None


def fla_kernel(name: str, q: torch.Tensor) -> Callable | None:
    """fla's `fla.ops.kda.<name>` when `q` lives on CUDA and fla and Triton are installed, else None."""
    if not getattr(q, "is_cuda", False) or not fla_triton_installed():
        return None
    return getattr(importlib.import_module("fla.ops.kda"), name)


def chunk_kda(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
    *,
    compiled: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunkwise-parallel KDA; see `frontier.kda.chunk.chunk_kda` for the algorithm and shapes.

    fla's Triton kernel works on 64-token chunks, so other chunk sizes always run the PyTorch path. `compiled` (not
    in fla's signature) runs that path's parallel stages under torch.compile: `frontier.kda.compiled_chunk_kda`.
    """
    kernel = fla_kernel("chunk_kda", q) if chunk_size == 64 else None
    if kernel is not None:
        check_kda_inputs(q, k, v, g, beta, initial_state)  # fla's own errors do not name the tensor at fault
        if initial_state is not None:
            initial_state = initial_state.float()  # fla requires a float32 initial state
        return kernel(
            q=q, k=k, v=v, g=g, beta=beta, scale=scale, initial_state=initial_state,
            output_final_state=output_final_state,
        )  # fmt: skip
    op = compiled_chunk_kda if compiled else torch_chunk.chunk_kda
    return op(q, k, v, g, beta, scale, initial_state, output_final_state, chunk_size)


def fused_recurrent_kda(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    inplace_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token-by-token KDA for decoding; see `frontier.kda.recurrent.fused_recurrent_kda`."""
    kernel = fla_kernel("fused_recurrent_kda", q)
    if kernel is None:
        return torch_recurrent.fused_recurrent_kda(
            q, k, v, g, beta, scale, initial_state, output_final_state, inplace_final_state
        )
    # fla's kernel has no backward and casts a state of another dtype silently: the same checks as our kernel.
    torch_recurrent.check_recurrent_inputs(q, k, v, g, beta, initial_state, inplace_final_state)
    o, final = kernel(
        q=q, k=k, v=v, g=g, beta=beta, scale=scale, initial_state=initial_state,
        output_final_state=output_final_state or inplace_final_state,
    )  # fmt: skip
    if inplace_final_state:
        initial_state.copy_(final)  # fla returns a new tensor; keep our contract of updating the caller's buffer
        final = initial_state
    return o, final
