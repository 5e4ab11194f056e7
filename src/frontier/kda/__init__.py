"""Kimi Delta Attention ops with fla's tensor layout and argument names.

`naive_recurrent_kda` is the reference; `chunk_kda` (training, prefill) and `fused_recurrent_kda` (decoding) are
the fast paths, each tested against it; `compiled_chunk_kda` is `chunk_kda` with its parallel stages under
torch.compile. On CUDA with flash-linear-attention installed, `chunk_kda` and
`fused_recurrent_kda` dispatch to fla's Triton kernels; on CPU Triton is never imported.
"""

from frontier.kda.compiled import compiled_chunk_kda
from frontier.kda.dispatch import chunk_kda, fused_recurrent_kda
from frontier.kda.gate import kda_gate
from frontier.kda.naive import naive_recurrent_kda

__all__ = ["chunk_kda", "compiled_chunk_kda", "fused_recurrent_kda", "kda_gate", "naive_recurrent_kda"]
