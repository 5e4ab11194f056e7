"""On a CUDA machine with flash-linear-attention: the Kimi Linear model, whose KDA layers then run fla's Triton
kernels, gives the logits of our PyTorch path and of transformers' own model, and decodes with its cache as the
full forward does. Skipped where there is no GPU (CI)."""

from __future__ import annotations

import pytest
import torch
import transformers

from frontier.kda import dispatch
from frontier.models.kimi_linear import KimiLinearConfig, KimiLinearForCausalLM
from frontier.testing import assert_rms_close

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and dispatch.fla_triton_installed()),
    reason="needs a CUDA GPU with flash-linear-attention and triton installed",
)
RMS_RATIO = 5e-3  # fla's tolerance; Triton's fp32 matmuls round through TF32
LAYER_TYPES = ["linear_attention"] * 3 + ["full_attention"]


@pytest.fixture
def tiny_cuda_model(tiny_config_kwargs):
    torch.manual_seed(0)
    return KimiLinearForCausalLM(KimiLinearConfig(**tiny_config_kwargs)).cuda().eval()


def test_cuda_model_logits_match_the_torch_path(tiny_cuda_model, monkeypatch):
    ids = torch.randint(3, 128, (2, 150), generator=torch.Generator().manual_seed(1)).cuda()
    with torch.no_grad():
        fla_logits = tiny_cuda_model(ids).logits
        monkeypatch.setattr(dispatch, "fla_kernel", lambda name, q: None)
        torch_logits = tiny_cuda_model(ids).logits
    assert_rms_close("logits", torch_logits, fla_logits, RMS_RATIO)


def test_cuda_cached_greedy_decode_follows_the_full_forward(tiny_cuda_model):
    prompt = torch.randint(3, 128, (2, 70), generator=torch.Generator().manual_seed(3)).cuda()
    out = tiny_cuda_model.generate(prompt, max_new_tokens=20, min_new_tokens=20, do_sample=False)
    with torch.no_grad():
        logits = tiny_cuda_model(out).logits[:, prompt.shape[1] - 1 : -1].float()
    chosen = logits.gather(-1, out[:, prompt.shape[1] :, None]).squeeze(-1)
    # each decoded token is the full forward's argmax, up to TF32 rounding between near-tied logits
    assert (logits.max(-1).values - chosen).max().item() <= 1e-3


def test_cuda_model_matches_transformers_kimi_linear(tiny_config_kwargs, tmp_path):
    torch.manual_seed(0)
    config = transformers.KimiLinearConfig(
        **tiny_config_kwargs, layer_types=["linear_attention"] * 3 + ["full_attention"]
    )
    transformers.KimiLinearForCausalLM(config).save_pretrained(tmp_path)
    reference = transformers.KimiLinearForCausalLM.from_pretrained(tmp_path).cuda().eval()
    ours = KimiLinearForCausalLM.from_pretrained(tmp_path).cuda().eval()
    ids = torch.randint(3, 128, (2, 150), generator=torch.Generator().manual_seed(1)).cuda()
    with torch.no_grad():
        assert_rms_close("logits", reference(ids).logits, ours(ids).logits, RMS_RATIO)
