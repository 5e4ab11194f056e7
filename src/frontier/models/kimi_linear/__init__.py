"""Kimi Linear: configuration and modeling (Hugging Face layout)."""

from frontier.models.kimi_linear.configuration_kimi_linear import KimiLinearConfig
from frontier.models.kimi_linear.modeling_kimi_linear import (
    KimiLinearCache,
    KimiLinearForCausalLM,
    KimiLinearModel,
    KimiLinearPreTrainedModel,
)

__all__ = [
    "KimiLinearCache",
    "KimiLinearConfig",
    "KimiLinearForCausalLM",
    "KimiLinearModel",
    "KimiLinearPreTrainedModel",
]
