"""`chunk_kda` with its two chunk-parallel stages compiled by `torch.compile` (Inductor: fused C++ loops on CPU).

The compiled stages are the very functions `chunk_kda` runs (`intra_chunk`, `chunk_output`); the sequential state
pass between them stays eager, so the compiled graphs do not grow with the number of chunks. Compiling fuses the many
elementwise decays that dominate the eager op on a CPU. Graphs are specialised to each input shape, dtype and grad
mode, and to the UT transform the gates take (dynamic-shape graphs ran slower than eager here): the first call of
each compiles, seconds to a minute, and Inductor caches the result on disk. Past `RECOMPILE_LIMIT` graphs
torch.compile runs the stages eagerly (it logs a warning), so this suits fixed-length training and benchmarks; for
inputs of ever-changing length use `chunk_kda`. Calls without gradients also run the compiled stages, not
`chunk_kda`'s eager inference path (about as fast on 2 cores, and without compiling).
"""

from __future__ import annotations

import functools
import os
import shutil
import sys

import torch

from frontier.errors import BackendUnavailableError
from frontier.kda.chunk import chunk_output, intra_chunk, run_chunk_stages

# torch.compile's default is 8 graphs per function; a benchmark over lengths and grad modes needs more.
RECOMPILE_LIMIT = 64


def cpp_compiler() -> str | None:
    """The C++ compiler Inductor's CPU backend would call (its default: $CXX, else g++, clang++ on macOS)."""
    return shutil.which(os.environ.get("CXX", "clang++" if sys.platform == "darwin" else "g++"))


@functools.cache
def _compiled_stages():
    if cpp_compiler() is None:
        raise BackendUnavailableError(
            "compiled_chunk_kda needs a C++ compiler for torch.compile's CPU backend: install g++ (or clang++ on "
            "macOS) or point $CXX at one, or use frontier.kda.chunk_kda, which needs none"
        )
    return torch.compile(intra_chunk, dynamic=False), torch.compile(chunk_output, dynamic=False)


def compiled_chunk_kda(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`chunk_kda` (same arguments, results and gradients) with its parallel stages compiled; see the module doc."""
    stages = _compiled_stages()
    with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
        return run_chunk_stages(*stages, q, k, v, g, beta, scale, initial_state, output_final_state, chunk_size, False)
