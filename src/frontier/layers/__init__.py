"""Building blocks shared by frontier's models: KDA and MLA token mixers, norms, dense and MoE FFNs."""

from frontier.layers.kda import KDAState, KimiDeltaAttention
from frontier.layers.mla import MLAState, MultiHeadLatentAttention
from frontier.layers.mlp import MoE, SwiGLUMLP, TopKRouter
from frontier.layers.norm import GatedRMSNorm, RMSNorm

__all__ = [
    "GatedRMSNorm",
    "KDAState",
    "KimiDeltaAttention",
    "MLAState",
    "MoE",
    "MultiHeadLatentAttention",
    "RMSNorm",
    "SwiGLUMLP",
    "TopKRouter",
]
