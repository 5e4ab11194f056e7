"""Kimi Linear (arXiv 2510.26692): KDA layers interleaved with NoPE MLA layers (3 : 1 by default), dense or MoE FFNs.

Reads top to bottom: the cache, the decoder layer, `KimiLinearPreTrainedModel` (init), `KimiLinearModel`,
`KimiLinearForCausalLM`. Parameter names and the config match transformers' `KimiLinearForCausalLM`, so a checkpoint
saved by transformers loads here (and the other way) and gives the same logits. What differs is inside: our
chunked KDA op, a decode step that updates the KDA state in place, and MLA decoding over the cached latents
(absorbed projections) rather than re-expanding every cached token at each step.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from frontier.errors import ConfigError, ShapeError
from frontier.layers.kda import KDAState, KimiDeltaAttention
from frontier.layers.mla import MLAState, MultiHeadLatentAttention
from frontier.layers.mlp import MoE, SwiGLUMLP, TopKRouter
from frontier.layers.norm import RMSNorm
from frontier.models.kimi_linear.configuration_kimi_linear import KimiLinearConfig


class KimiLinearCache:
    """Per-layer decoding state: a fixed-size `KDAState` for each KDA layer, a growing `MLAState` for each MLA layer.

    Only the MLA layers (one in four by default) grow with the context; `nbytes()` reports the total.
    """

    is_compileable = False  # generate() asks before it would compile a decoding step; our states are not static

    def __init__(self, config: KimiLinearConfig) -> None:
        self.layers: list[KDAState | MLAState] = [
            MLAState() if kind == "full_attention" else KDAState() for kind in config.layer_types
        ]
        self.seen_tokens = 0

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    def nbytes(self) -> int:
        return sum(state.nbytes() for state in self.layers)

    def holds_inference_tensors(self) -> bool:
        return any(t.is_inference() for state in self.layers for t in state.tensors())

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        for state in self.layers:
            state.select(beam_idx)

    # The batch operations of transformers' Cache, which sampling loops use (`frontier.models.sampling`).
    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.reorder_cache(indices)

    def batch_repeat_interleave(self, repeats: int) -> None:
        rows = next((t for state in self.layers for t in state.tensors()), None)  # any filled state: [B, ...]
        if rows is None:
            raise ShapeError("this cache has read nothing yet: repeat it after the prompt's forward (prefill)")
        self.reorder_cache(torch.arange(rows.shape[0], device=rows.device).repeat_interleave(repeats))


class KimiLinearDecoderLayer(nn.Module):
    """Pre-norm block: x + mixer(norm(x)), then x + ffn(norm(x)); the mixer is KDA or MLA, the FFN dense or MoE."""

    def __init__(self, config: KimiLinearConfig, layer_idx: int) -> None:
        super().__init__()
        self.is_linear = config.layer_types[layer_idx] == "linear_attention"
        if self.is_linear:
            self.self_attn = KimiDeltaAttention(
                config.hidden_size,
                num_heads=config.linear_num_heads,
                head_dim=config.linear_head_dim,
                num_v_heads=config.num_v_heads,
                conv_size=config.linear_conv_kernel_dim,
                norm_eps=config.rms_norm_eps,
                gate_lower_bound=config.linear_gate_lower_bound,
                chunk_size=config.linear_chunk_size,
                decay_per_channel=config.linear_decay_per_channel,
                compiled_chunk=config.linear_compiled_chunk,
            )
        else:
            self.self_attn = MultiHeadLatentAttention(
                config.hidden_size,
                num_heads=config.num_attention_heads,
                kv_lora_rank=config.kv_lora_rank,
                qk_nope_head_dim=config.qk_nope_head_dim,
                qk_rope_head_dim=config.qk_rope_head_dim,
                v_head_dim=config.v_head_dim,
                bias=config.attention_bias,
            )
        # transformers saves every FFN as "block_sparse_moe", dense or not; the released checkpoints name the dense
        # ones "mlp", which `from_pretrained` maps here (RELEASED_KEY_MAPPING).
        if config.mlp_layer_types[layer_idx] == "sparse":
            self.block_sparse_moe = MoE(
                config.hidden_size,
                config.moe_intermediate_size,
                num_experts=config.num_local_experts,
                top_k=config.num_experts_per_tok,
                num_shared_experts=config.n_shared_experts,
                num_groups=config.n_group,
                top_k_groups=config.topk_group,
                renormalize=config.norm_topk_prob,
                scaling_factor=config.routed_scaling_factor,
            )
        else:
            self.block_sparse_moe = SwiGLUMLP(config.hidden_size, config.intermediate_size)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(
        self, x: torch.Tensor, state: KDAState | MLAState | None, padding_mask: torch.Tensor | None
    ) -> torch.Tensor:
        T = x.shape[1]
        # KDA sees the mask of its own tokens; MLA the mask of every cached and new key.
        mask = padding_mask[:, -T:] if (padding_mask is not None and self.is_linear) else padding_mask
        x = x + self.self_attn(self.input_layernorm(x), state=state, padding_mask=mask)
        return x + self.block_sparse_moe(self.post_attention_layernorm(x))


# Moonshot's released checkpoints (and their remote code) name a dense FFN "mlp" and a MoE "block_sparse_moe";
# transformers saves both as "block_sparse_moe". Only a dense FFN has gate/up/down projections of its own.
RELEASED_KEY_MAPPING = {r"\.mlp\.(gate_proj|up_proj|down_proj)\.": r".block_sparse_moe.\1."}


class KimiLinearPreTrainedModel(PreTrainedModel):
    config_class = KimiLinearConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False
    _no_split_modules: ClassVar[list[str]] = ["KimiLinearDecoderLayer"]
    _is_stateful = True  # the KDA state cannot be rolled back, so no assisted decoding
    _keep_in_fp32_modules_strict: ClassVar[list[str]] = ["e_score_correction_bias", "gate.weight", "dt_bias"]

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """transformers' `from_pretrained`; checkpoints in the released layout (dense FFNs named "mlp") load too."""
        kwargs["key_mapping"] = {**RELEASED_KEY_MAPPING, **(kwargs.get("key_mapping") or {})}
        return super().from_pretrained(*args, **kwargs)

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # generate() must not hand us a DynamicCache; forward builds a KimiLinearCache

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, KimiDeltaAttention):
            module.reset_gate_parameters()
        elif isinstance(module, TopKRouter):
            init.normal_(module.weight, mean=0.0, std=std)
            init.zeros_(module.e_score_correction_bias)
        elif isinstance(module, RMSNorm):
            init.ones_(module.weight)


class KimiLinearModel(KimiLinearPreTrainedModel):
    def __init__(self, config: KimiLinearConfig) -> None:
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList(KimiLinearDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: KimiLinearCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        """attention_mask: 2-D [B, cached + new tokens], 1 for tokens and 0 for (left) padding, or None.

        output_hidden_states: also return the embeddings and every layer's output, the last after the final norm
        (as transformers' models do; AutoDeco's heads read that last one)."""
        cache = _cache_argument(cache, kwargs)
        if (input_ids is None) == (inputs_embeds is None):
            raise ShapeError("pass exactly one of input_ids [B, T] or inputs_embeds [B, T, hidden]")
        if input_ids is not None and input_ids.dim() != 2:
            raise ShapeError(f"input_ids must be 2-D [B, T], got shape {list(input_ids.shape)} (add a batch dim)")
        if inputs_embeds is not None and (
            inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != self.config.hidden_size
        ):
            raise ShapeError(
                f"inputs_embeds must be [B, T, {self.config.hidden_size}], got shape {list(inputs_embeds.shape)}"
            )
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and cache is None:
            cache = KimiLinearCache(self.config)
        if cache is not None and not isinstance(cache, KimiLinearCache):
            raise TypeError(f"Kimi Linear needs a KimiLinearCache, got {type(cache).__name__}")
        if cache is not None and not torch.is_inference_mode_enabled() and cache.holds_inference_tensors():
            raise ConfigError(
                "this cache was filled under torch.inference_mode(), whose tensors cannot be updated in place "
                "outside it: continue decoding under torch.inference_mode() too"
            )
        if attention_mask is not None:
            B, T = inputs_embeds.shape[:2]
            expected = [B, (cache.seen_tokens if cache is not None else 0) + T]
            if list(attention_mask.shape) != expected:
                raise ShapeError(
                    f"attention_mask has shape {list(attention_mask.shape)}, expected {expected}: one row per "
                    "sequence, one column per cached and new token"
                )
            if attention_mask.all():
                attention_mask = None  # nothing is padded: skip the masking work
            elif cache is not None and cache.seen_tokens and (attention_mask[:, 1:] < attention_mask[:, :-1]).any():
                # A KDA state cannot skip a padded token that follows real ones (the gate still decays the state
                # and the short convolution still shifts), so a cached sequence may only have been padded on the left.
                raise ShapeError(
                    f"attention_mask has padding after tokens of a sequence (the cache holds {cache.seen_tokens} "
                    "tokens); Kimi Linear decodes only left-padded batches: pad on the left (tokenizer.padding_side "
                    '= "left")'
                )

        x = inputs_embeds
        hidden_states = [x]
        for i, layer in enumerate(self.layers):
            x = layer(x, None if cache is None else cache.layers[i], attention_mask)
            hidden_states.append(x)
        if cache is not None:
            cache.seen_tokens += inputs_embeds.shape[1]
        x = self.norm(x)
        hidden_states[-1] = x
        return BaseModelOutputWithPast(
            last_hidden_state=x, cache=cache, hidden_states=tuple(hidden_states) if output_hidden_states else None
        )


def _cache_argument(cache: KimiLinearCache | None, kwargs: dict) -> KimiLinearCache | None:
    """`cache`, or the same object passed under transformers' older name `past_key_values`."""
    legacy = kwargs.pop("past_key_values", None)
    if legacy is not None and cache is not None and legacy is not cache:
        raise ConfigError("pass the cache once, as cache= (past_key_values= is the older name of the same argument)")
    return cache if cache is not None else legacy


class KimiLinearForCausalLM(KimiLinearPreTrainedModel, GenerationMixin):
    _tied_weights_keys: ClassVar[dict[str, str]] = {}
    # The loss is a mean over the batch's tokens; it takes no `num_items_in_batch`, so Trainer must average
    # gradient-accumulation steps itself.
    accepts_loss_kwargs = False

    def __init__(self, config: KimiLinearConfig) -> None:
        super().__init__(config)
        self.model = KimiLinearModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: KimiLinearCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """labels [B, T] (−100 = ignore) give the next-token cross-entropy; logits_to_keep > 0 keeps the last ones."""
        cache = _cache_argument(cache, kwargs)
        if labels is not None and logits_to_keep:
            raise ShapeError("labels need the logits of every position: pass logits_to_keep=0 with labels")
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, cache=cache, inputs_embeds=inputs_embeds,
            use_cache=use_cache, output_hidden_states=output_hidden_states,
        )  # fmt: skip
        hidden = out.last_hidden_state
        logits = self.lm_head(hidden[:, -logits_to_keep:] if logits_to_keep else hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=out.cache, hidden_states=out.hidden_states)


__all__ = ["KimiLinearCache", "KimiLinearForCausalLM", "KimiLinearModel", "KimiLinearPreTrainedModel"]
