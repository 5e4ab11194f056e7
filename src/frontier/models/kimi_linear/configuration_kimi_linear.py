"""Configuration of the Kimi Linear hybrid: KDA layers interleaved with NoPE MLA layers, dense MLP or MoE FFNs.

Keys and defaults are those of transformers' `KimiLinearConfig` (the released Kimi-Linear-48B-A3B), so a
`config.json` written by either library loads in the other; the checkpoint's own `linear_attn_config` and
`first_k_dense_replace` keys are understood too. frontier adds optional keys whose defaults reproduce the released
model:
`linear_num_v_heads` (grouped value heads), `linear_gate_lower_bound` (fla's safe gate), `linear_chunk_size`,
`linear_decay_per_channel` (False gives the GDN baseline: one decay per head) and `linear_compiled_chunk` (KDA's
chunk-parallel stages under torch.compile while training on the PyTorch path; a speed setting: the function is the
same, the arithmetic equal up to float rounding).
"""

from __future__ import annotations

from typing import ClassVar

from transformers import PreTrainedConfig

from frontier.errors import ConfigError

LAYER_TYPES = ("linear_attention", "full_attention")
MLP_TYPES = ("dense", "sparse")


# The flat fields and their names inside the released checkpoint's `linear_attn_config`.
LINEAR_ATTN_CONFIG_KEYS = {
    "linear_head_dim": "head_dim",
    "linear_num_heads": "num_heads",
    "linear_conv_kernel_dim": "short_conv_kernel_size",
}
# Keys of the released config.json that describe another architecture when not at these values; we refuse them
# rather than run a different model (the remote code asserts NoPE too).
SUPPORTED_CHECKPOINT_VALUES = {
    "mla_use_nope": (True,),
    "moe_router_activation_func": ("sigmoid",),
    "moe_layer_freq": (1,),
}


def _refuse_other_architectures(kwargs: dict) -> None:
    for key, allowed in SUPPORTED_CHECKPOINT_VALUES.items():
        if key in kwargs and kwargs[key] not in allowed:
            raise ConfigError(f"{key}={kwargs[key]!r} is not supported (Kimi Linear uses {allowed[0]!r})")


class KimiLinearConfig(PreTrainedConfig):
    """Kimi Linear model configuration (see the module docstring; field docs follow transformers').

    Attention layout: `layer_types[i]` is "linear_attention" (KDA) or "full_attention" (MLA). The default
    puts MLA at every 4th layer counting from 1 (layers 4, 8, ...: 3 KDA : 1 MLA, as the paper), unlike
    transformers' default (`i > 0 and i % 4 == 0`), which leaves a 4-layer model without any MLA layer.
    FFN layout: `mlp_layer_types[i]` is "dense" (SwiGLU, `intermediate_size`) or "sparse" (MoE).
    """

    model_type = "kimi_linear"
    # The names transformers writes to config.json for these fields (kept so either library reads the other's).
    attribute_map: ClassVar[dict[str, str]] = {
        "max_position_embeddings": "model_max_length",
        "norm_topk_prob": "moe_renormalize",
        "n_group": "num_expert_group",
        "num_experts_per_tok": "num_experts_per_token",
        "n_shared_experts": "num_shared_experts",
        "num_local_experts": "num_experts",
    }

    vocab_size: int = 163840
    hidden_size: int = 2304
    intermediate_size: int = 9216  # dense SwiGLU width
    moe_intermediate_size: int = 1024  # width of each routed expert and (times n_shared_experts) the shared one
    num_hidden_layers: int = 27
    num_attention_heads: int = 32  # MLA heads
    num_key_value_heads: int | None = 32
    n_shared_experts: int = 1
    routed_scaling_factor: float = 2.446
    kv_lora_rank: int = 512  # the compressed latent cached per token by each MLA layer
    q_lora_rank: int | None = None  # Kimi Linear uses a plain q_proj
    qk_rope_head_dim: int = 64  # the shared key slice; never rotated (NoPE), kept for checkpoint compatibility
    v_head_dim: int | None = 128
    qk_nope_head_dim: int = 128
    n_group: int = 1
    topk_group: int | None = 1
    num_experts_per_tok: int | None = 8
    norm_topk_prob: bool = True
    hidden_act: str = "silu"
    max_position_embeddings: int = 1048576
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-5
    use_cache: bool = True
    pad_token_id: int | None = 163839
    bos_token_id: int | None = 163584
    eos_token_id: int | list[int] | None = 163586
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    attention_dropout: float | int | None = 0.0
    num_local_experts: int = 256
    mlp_layer_types: list[str] | None = None
    layer_types: list[str] | None = None
    linear_head_dim: int = 128  # KDA head dim (K = V)
    linear_num_heads: int = 32  # KDA query/key heads
    linear_conv_kernel_dim: int = 4
    linear_num_v_heads: int | None = None  # frontier: grouped value heads (a multiple of linear_num_heads)
    linear_gate_lower_bound: float | None = None  # frontier: e.g. -5.0 for the bounded sigmoid gate
    linear_chunk_size: int = 64  # frontier: chunk length of chunk_kda
    linear_decay_per_channel: bool = True  # frontier: False turns KDA into Gated DeltaNet (the paper's GDN baseline)
    linear_compiled_chunk: bool = False  # frontier: compiled_chunk_kda on the PyTorch path (needs a C++ compiler)

    def __post_init__(self, **kwargs):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.v_head_dim is None:
            self.v_head_dim = self.qk_nope_head_dim
        self.qk_head_dim = self.qk_nope_head_dim + self.qk_rope_head_dim
        super().__post_init__(**kwargs)
        _refuse_other_architectures(kwargs)
        # The released checkpoint nests the KDA settings and lists layers 1-based. A nested value fills only a field
        # left at its default (an explicit one wins), and the nested dict is not saved again: the flat fields hold it.
        linear = kwargs.get("linear_attn_config") or {}
        for field_name, nested_name in LINEAR_ATTN_CONFIG_KEYS.items():
            if nested_name in linear and getattr(self, field_name) == getattr(type(self), field_name):
                setattr(self, field_name, linear[nested_name])
        self.__dict__.pop("linear_attn_config", None)
        if self.layer_types is None:
            if "full_attn_layers" in linear:
                full = set(linear["full_attn_layers"])
                self.layer_types = [
                    "full_attention" if i + 1 in full else "linear_attention" for i in range(self.num_hidden_layers)
                ]
            else:
                self.layer_types = [
                    "full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(self.num_hidden_layers)
                ]
        if self.mlp_layer_types is None:
            first_dense = kwargs.get("first_k_dense_replace", 1)
            self.mlp_layer_types = ["dense" if i < first_dense else "sparse" for i in range(self.num_hidden_layers)]
        self.validate_layout()

    @property
    def num_v_heads(self) -> int:
        return self.linear_num_v_heads or self.linear_num_heads

    def validate_layout(self) -> None:
        """Raise `ConfigError` naming the field when the layer lists or head counts do not fit together."""
        for name, values, allowed in (
            ("layer_types", self.layer_types, LAYER_TYPES),
            ("mlp_layer_types", self.mlp_layer_types, MLP_TYPES),
        ):
            if len(values) != self.num_hidden_layers:
                raise ConfigError(f"{name} has {len(values)} entries but num_hidden_layers is {self.num_hidden_layers}")
            unknown = sorted(set(values) - set(allowed))
            if unknown:
                raise ConfigError(f"{name} contains {unknown}; allowed values are {list(allowed)}")
        if self.num_v_heads % self.linear_num_heads:
            raise ConfigError(
                f"linear_num_v_heads={self.num_v_heads} must be a multiple of linear_num_heads={self.linear_num_heads}"
            )
        if self.q_lora_rank is not None:
            raise ConfigError("q_lora_rank is not supported: Kimi Linear's MLA uses a plain q_proj (set it to None)")
        if self.num_key_value_heads != self.num_attention_heads:
            raise ConfigError(
                "MLA expands one latent into every head: num_key_value_heads must equal num_attention_heads"
            )
        if "sparse" in self.mlp_layer_types:
            if self.num_local_experts % self.n_group:
                raise ConfigError(
                    f"num_local_experts={self.num_local_experts} must be divisible by n_group={self.n_group}"
                )
            if not 1 <= self.num_experts_per_tok <= self.num_local_experts:
                raise ConfigError(
                    f"num_experts_per_tok={self.num_experts_per_tok} must be from 1 to num_local_experts="
                    f"{self.num_local_experts}"
                )
            if not isinstance(self.topk_group, int) or not 1 <= self.topk_group <= self.n_group:
                raise ConfigError(f"topk_group={self.topk_group} must be from 1 to n_group={self.n_group}")
        if self.hidden_act != "silu":
            raise ConfigError(f"hidden_act={self.hidden_act!r} is not supported: Kimi Linear's FFNs are SwiGLU (silu)")
        if self.linear_gate_lower_bound is not None and not self.linear_gate_lower_bound < 0:
            raise ConfigError(
                f"linear_gate_lower_bound={self.linear_gate_lower_bound} must be negative (a log-decay floor, e.g. "
                "-5.0) or None"
            )
        if not isinstance(self.linear_chunk_size, int) or self.linear_chunk_size < 1:
            raise ConfigError(f"linear_chunk_size must be a positive integer, got {self.linear_chunk_size!r}")


__all__ = ["KimiLinearConfig"]
