"""Model loading and chat generation shared by every frontier system."""

from frontier.models.generation import SamplingSettings, chat_inputs, generate_chat
from frontier.models.loading import cache_root, embedded_gguf_path, load_causal_lm, resolve_device

__all__ = [
    "SamplingSettings",
    "cache_root",
    "chat_inputs",
    "embedded_gguf_path",
    "generate_chat",
    "load_causal_lm",
    "resolve_device",
]
