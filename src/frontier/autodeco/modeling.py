"""`AutoDecoForCausalLM`: AutoDeco's heads beside the LM head of any Hugging Face causal LM, with a decoding loop
that samples every token at the temperature and top-p the heads predict for it (paper §2.2).

The base model is frozen (embeddings and LM head included); only the heads hold trainable parameters.
`save_pretrained` writes the heads alone (safetensors, the released heads' key names) and a config naming the
base; `from_pretrained` loads the base through `frontier.models.load_causal_lm` and reattaches the heads.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from frontier.autodeco.heads import TemperatureHead, TopPHead
from frontier.errors import ConfigError, ModelLoadError
from frontier.io import atomic_write_bytes, atomic_write_json
from frontier.models.sampling import DecodingParamsFn, OnToken, prefill, sample

CONFIG_NAME = "autodeco_config.json"
HEADS_NAME = "autodeco_heads.safetensors"


@dataclass
class AutoDecoOutput:
    """logits [B, T, V] of the base (unscaled), temperature and top_p [B, T, 1] from the heads, the base's cache."""

    logits: torch.Tensor
    temperature: torch.Tensor
    top_p: torch.Tensor
    cache: object | None = None


@dataclass
class AutoDecoGeneration:
    """New tokens [B, N] (pad after EOS) and, if asked, the T and p used for each of them [B, N]."""

    sequences: torch.Tensor
    temperatures: torch.Tensor | None = None
    top_ps: torch.Tensor | None = None


def predict_decoding_params(
    temp_head: TemperatureHead | None, top_p_head: TopPHead | None, hidden: torch.Tensor, logits: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(T̂, P̂), each [..., 1]. The top-p head sees T̂ detached, as the reference HF code feeds it (the Megatron port
    does not). A head given as None is switched off: T̂ = 1 or P̂ = 1, so the user's T or p applies unchanged."""
    head = temp_head if temp_head is not None else top_p_head
    hidden = hidden.to(head.mlp[0].weight.dtype)
    ones = hidden.new_ones(*hidden.shape[:-1], 1)
    temperature = temp_head(hidden) if temp_head is not None else ones
    return temperature, top_p_head(hidden, temperature.detach(), logits) if top_p_head is not None else ones


def switched_on_heads(heads) -> tuple[TemperatureHead | None, TopPHead | None]:
    """(temperature head, top-p head) of `heads` (a model or its trainable heads), None for one switched off."""
    return (heads.temp_head if heads.enable_temperature_head else None,
            heads.top_p_head if heads.enable_top_p_head else None)  # fmt: skip


def saved_heads_config(folder: str | os.PathLike) -> dict:
    """The config of a saved heads folder; its "base_model_name_or_path" names the base they were trained on (None:
    the embedded SmolLM2), which is what to load when no other base is given."""
    folder = Path(folder)
    config_path, heads_path = folder / CONFIG_NAME, folder / HEADS_NAME
    if not config_path.is_file() or not heads_path.is_file():
        raise ModelLoadError(f"{folder}: not an AutoDeco heads folder (expected {CONFIG_NAME} and {HEADS_NAME})")
    return json.loads(config_path.read_text())


def base_for_heads(heads: str | os.PathLike, model: str | os.PathLike | None) -> str | os.PathLike | None:
    """The base to load with saved `heads`: `model` when one is given, else the base they were trained on."""
    if model is not None:
        return model
    config = saved_heads_config(heads)
    # Folders saved before "base_model_known" was recorded: null meant the embedded model.
    if not config.get("base_model_known", True):
        raise ModelLoadError(
            f"{heads}: these heads were trained on a base model built in memory, so their folder cannot name it; "
            "give that model too (--model PATH, or from_pretrained(..., base_model=model))"
        )
    return config["base_model_name_or_path"]


class AutoDecoForCausalLM(nn.Module):
    """A frozen causal LM plus the temperature and top-p heads.

    Args:
        base_model: any transformers causal LM whose forward accepts `output_hidden_states=True`.
        base_model_name_or_path: what `from_pretrained` should load as the base. None: where `load_causal_lm` read
            `base_model` from (None again for the embedded SmolLM2); a base built in memory stays unknown, and its
            saved heads can only be loaded onto a base passed in.
        enable_temperature_head, enable_top_p_head: a head switched off predicts T̂ = 1 or P̂ = 1 (the reference's
            config flags of these names). Switch off a head you do not train: at its initial weights it would
            still scale every token.
    """

    def __init__(
        self,
        base_model: nn.Module,
        base_model_name_or_path: str | None = None,
        enable_temperature_head: bool = True,
        enable_top_p_head: bool = True,
    ) -> None:
        from frontier.models.loading import loaded_from

        if not (enable_temperature_head or enable_top_p_head):
            raise ConfigError("enable at least one head: enable_temperature_head or enable_top_p_head")
        super().__init__()
        self.enable_temperature_head, self.enable_top_p_head = enable_temperature_head, enable_top_p_head
        self.base_model = base_model.requires_grad_(False).eval()
        self.base_model_known = True
        if base_model_name_or_path is None:
            base_model_name_or_path, self.base_model_known = loaded_from(base_model)
        self.base_model_name_or_path = base_model_name_or_path
        hidden = base_model.config.hidden_size
        device = next(base_model.parameters()).device  # the heads sit beside the LM head (they stay float32)
        self.temp_head = TemperatureHead(hidden).to(device)
        self.top_p_head = TopPHead(hidden).to(device)

    @property
    def hidden_size(self) -> int:
        return self.base_model.config.hidden_size

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.temp_head.parameters(), *self.top_p_head.parameters()]

    def base_forward(self, input_ids, attention_mask=None, cache=None, position_ids=None, logits_to_keep: int = 0):
        """The frozen base without gradients: (final-norm hidden states [B, T, H], logits [B, T, V], cache).

        logits_to_keep=k > 0 computes logits for the last k positions only (the LM head is most of a small model).
        """
        with torch.no_grad():
            out = self.base_model(
                input_ids=input_ids, attention_mask=attention_mask, cache=cache, position_ids=position_ids,
                use_cache=cache is not None, output_hidden_states=True, logits_to_keep=logits_to_keep,
            )  # fmt: skip
        return out.hidden_states[-1], out.logits, getattr(out, "cache", None)

    def heads(self, hidden: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(T̂, P̂), each [..., 1], for final hidden states [..., H] and logits [..., V]."""
        return predict_decoding_params(*switched_on_heads(self), hidden, logits)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> AutoDecoOutput:
        hidden, logits, _ = self.base_forward(input_ids, attention_mask)
        temperature, top_p = self.heads(hidden, logits)
        return AutoDecoOutput(logits=logits, temperature=temperature, top_p=top_p)

    def decoding_params(self, temperature: float = 1.0, top_p: float = 1.0) -> DecodingParamsFn:
        """Per-token (T, p) = (T̂ × temperature, min(1, P̂ × top_p)), how the reference server combines them (§2.2)."""

        def params(hidden: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            t_hat, p_hat = self.heads(hidden, logits)
            return t_hat.squeeze(-1).float() * temperature, (p_hat.squeeze(-1).float() * top_p).clamp(max=1.0)

        return params

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        eos_token_id: int | list[int] | None = None,
        pad_token_id: int | None = None,
        seed: int | None = None,
        return_decoding_params: bool = False,
        on_token: OnToken | None = None,
    ) -> AutoDecoGeneration:
        """Sample with the heads: each token at T = T̂ × temperature and p = min(1, P̂ × top_p) (paper §2.2).

        temperature = 0 gives greedy decoding (the heads are then ignored). input_ids [B, S] may be left-padded with
        attention_mask [B, S]. `on_token(tokens [B], T [B], p [B])` is called after every step (streaming).
        """
        if not temperature >= 0 or not 0 < top_p <= 1:  # `not >=` also refuses NaN
            raise ConfigError(f"need temperature >= 0 and 0 < top_p <= 1, got temperature={temperature}, top_p={top_p}")
        generator = torch.Generator(device=self.base_model.device)  # sampling runs where the model is
        if seed is None:
            generator.seed()  # fresh entropy without touching the global RNG
        else:
            generator.manual_seed(seed)
        # Greedy decoding ignores the heads, but the T̂ and P̂ reported with its tokens are still the heads' own.
        out = sample(
            self.base_model, prefill(self.base_model, input_ids, attention_mask),
            self.decoding_params(temperature or 1.0, top_p), max_new_tokens, greedy=temperature == 0,
            eos_token_id=eos_token_id, pad_token_id=pad_token_id, generator=generator, on_token=on_token,
        )  # fmt: skip
        result = AutoDecoGeneration(sequences=out.tokens)
        if return_decoding_params:
            result.temperatures, result.top_ps = out.temperatures, out.top_ps
        return result

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write the heads (safetensors, keys `temp_head.mlp.*`, `top_p_head.mlp.*`) and a config naming the base."""
        from safetensors.torch import save

        folder = Path(folder)
        state = {f"temp_head.{k}": v for k, v in self.temp_head.state_dict().items()}
        state |= {f"top_p_head.{k}": v for k, v in self.top_p_head.state_dict().items()}
        atomic_write_bytes(folder / HEADS_NAME, save({k: v.contiguous() for k, v in state.items()}))
        atomic_write_json(
            folder / CONFIG_NAME,
            {
                "model_type": "autodeco",
                "base_model_name_or_path": self.base_model_name_or_path,
                "base_model_known": self.base_model_known,
                "base_model_type": self.base_model.config.model_type,
                "base_vocab_size": self.base_model.config.vocab_size,
                "hidden_size": self.hidden_size,
                "enable_temperature_head": self.enable_temperature_head,
                "enable_top_p_head": self.enable_top_p_head,
                "use_enhanced_features": True,
            },
        )

    @classmethod
    def from_pretrained(
        cls, folder: str | os.PathLike, base_model: nn.Module | None = None, progress: bool = True
    ) -> AutoDecoForCausalLM:
        """Reattach saved heads to `base_model`, or to the base named in the saved config."""
        from safetensors import safe_open

        folder = Path(folder)
        config, heads_path = saved_heads_config(folder), folder / HEADS_NAME
        if base_model is None:
            from frontier.models import load_causal_lm

            base_model, _ = load_causal_lm(base_for_heads(folder, None), progress=progress)
        # Heads read the base's hidden states and scale its logits: another architecture or vocabulary of the same
        # width would run, silently wrong. (Folders saved before the vocabulary was recorded skip that check.)
        base = base_model.config
        for key, value in (("hidden_size", base.hidden_size), ("base_model_type", base.model_type),
                           ("base_vocab_size", base.vocab_size)):  # fmt: skip
            if key in config and config[key] != value:
                if not config.get("base_model_known", True):
                    trained_on = "a model built in memory"
                else:
                    trained_on = config.get("base_model_name_or_path") or "the embedded SmolLM2"
                raise ConfigError(
                    f"{folder}: these heads were trained on a base with {key} {config[key]!r}, but this base has "
                    f"{value!r}; load them with the base they were trained on ({trained_on})"
                )
        model = cls(base_model, config["base_model_name_or_path"], config.get("enable_temperature_head", True),
                    config.get("enable_top_p_head", True))  # fmt: skip
        try:
            with safe_open(heads_path, framework="pt") as handle:
                state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        except Exception as exc:
            raise ModelLoadError(f"{heads_path}: truncated or corrupt safetensors file ({exc})") from exc
        for prefix, head in (("temp_head.", model.temp_head), ("top_p_head.", model.top_p_head)):
            try:
                head.load_state_dict({k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)})
            except RuntimeError as exc:
                raise ModelLoadError(f"{heads_path}: not AutoDeco heads for this base ({exc})") from exc
        return model
