"""AutoDeco: learned per-token temperature and top-p heads beside the LM head of any causal LM."""

from frontier.autodeco.heads import TemperatureHead, TopPHead, distribution_statistics, head_parameter_count
from frontier.autodeco.loss import AutoDecoLossConfig, autodeco_loss
from frontier.autodeco.modeling import AutoDecoForCausalLM, AutoDecoGeneration, AutoDecoOutput
from frontier.autodeco.soft_top_p import soft_top_p
from frontier.models.sampling import hard_top_p_mask

__all__ = [
    "AutoDecoForCausalLM",
    "AutoDecoGeneration",
    "AutoDecoLossConfig",
    "AutoDecoOutput",
    "TemperatureHead",
    "TopPHead",
    "autodeco_loss",
    "distribution_statistics",
    "hard_top_p_mask",
    "head_parameter_count",
    "soft_top_p",
]
