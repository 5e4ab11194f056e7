"""Configuration of the unified multimodal model (`UnifiedMultimodalForConditionalGeneration`)."""

from __future__ import annotations

from transformers import PretrainedConfig

from frontier.errors import ConfigError

ATTENTION_BACKENDS = ("softmax", "kimi_linear")


class UnifiedMultimodalConfig(PretrainedConfig):
    """One transformer over [image patches ; text tokens].

    Layers below `fusion_layer` attend only within a modality (patches bidirectionally, text causally); from
    `fusion_layer` on, text also attends to every patch. Patches never read text, so one pass over an image serves
    every text about it. `fusion_layer=0` is early fusion, `fusion_layer=num_hidden_layers` no fusion.

    The first `modality_specific_layers` layers keep one set of weights per modality (same attention pattern); with
    all layers so and `fusion_layer = num_hidden_layers - 1` the model is two towers fused in the last layer only:
    the late-fusion baseline, with as many parameters as a shared model of twice its depth.

    `attention_backend="kimi_linear"` replaces the softmax attention of every layer but each
    `full_attention_interval`-th by Kimi Delta Attention (3 : 1 by default). KDA is causal, so with it image patches
    read only earlier patches, and in fused layers text reads the image through the recurrent state.
    """

    model_type = "frontier_unified_multimodal"

    def __init__(
        self,
        vocab_size: int = 256,
        image_size: int = 64,
        patch_size: int = 8,
        num_channels: int = 3,
        hidden_size: int = 128,
        intermediate_size: int = 256,
        num_hidden_layers: int = 4,
        num_attention_heads: int = 4,
        fusion_layer: int = 2,
        modality_specific_layers: int = 0,
        max_text_positions: int = 64,
        projection_dim: int = 64,
        image_codebook_size: int = 0,
        attention_backend: str = "softmax",
        full_attention_interval: int = 4,
        rms_norm_eps: float = 1e-6,
        initializer_range: float = 0.02,
        pad_token_id: int = 0,
        bos_token_id: int = 1,
        eos_token_id: int = 2,
        tie_word_embeddings: bool = True,
        **kwargs,
    ) -> None:
        self.vocab_size = vocab_size
        self.image_size, self.patch_size, self.num_channels = image_size, patch_size, num_channels
        self.hidden_size, self.intermediate_size = hidden_size, intermediate_size
        self.num_hidden_layers, self.num_attention_heads = num_hidden_layers, num_attention_heads
        self.fusion_layer = fusion_layer
        self.modality_specific_layers = modality_specific_layers
        self.max_text_positions = max_text_positions
        self.projection_dim = projection_dim
        self.image_codebook_size = image_codebook_size  # > 0: a drawing head over this many patch codes
        self.attention_backend = attention_backend
        self.full_attention_interval = full_attention_interval
        self.rms_norm_eps, self.initializer_range = rms_norm_eps, initializer_range
        super().__init__(
            pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings, **kwargs,
        )  # fmt: skip
        self.validate()

    @property
    def patches_per_side(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.patches_per_side**2

    def layer_uses_softmax(self, index: int) -> bool:
        return self.attention_backend == "softmax" or (index + 1) % self.full_attention_interval == 0

    @property
    def packs_texts(self) -> bool:
        """Whether several texts about one image can share a row (and its one pass over the patches): only with
        softmax attention in every layer, since a KDA layer reads a row as one recurrence."""
        return all(self.layer_uses_softmax(i) for i in range(self.num_hidden_layers))

    def validate(self) -> None:
        if self.image_size % self.patch_size:
            raise ConfigError(f"image_size={self.image_size} must be a multiple of patch_size={self.patch_size}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size={self.hidden_size} must be divisible by num_attention_heads={self.num_attention_heads}"
            )
        if not 0 <= self.fusion_layer <= self.num_hidden_layers:
            raise ConfigError(f"fusion_layer must be in 0..num_hidden_layers={self.num_hidden_layers}")
        if not 0 <= self.modality_specific_layers <= self.num_hidden_layers:
            raise ConfigError(f"modality_specific_layers must be in 0..num_hidden_layers={self.num_hidden_layers}")
        kda_fused_specific = [
            i for i in range(self.fusion_layer, self.modality_specific_layers) if not self.layer_uses_softmax(i)
        ]
        if kda_fused_specific:
            raise ConfigError(f"layers {kda_fused_specific} would be fused KDA layers with per-modality weights, "
                              "which one recurrent pass cannot have; lower modality_specific_layers")  # fmt: skip
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise ConfigError(
                f"attention_backend={self.attention_backend!r}; choose one of {', '.join(ATTENTION_BACKENDS)}"
            )
        if self.full_attention_interval < 1:
            raise ConfigError(f"full_attention_interval must be >= 1, got {self.full_attention_interval}")
