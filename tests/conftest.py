"""Shared fixtures. The embedded model is dequantised once per test session into a session cache folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory) -> Path:
    """A session-wide model cache; `FRONTIER_CACHE_DIR` points at it so CLI subprocesses reuse it too."""
    folder = tmp_path_factory.mktemp("frontier-cache")
    previous = os.environ.get("FRONTIER_CACHE_DIR")
    os.environ["FRONTIER_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("FRONTIER_CACHE_DIR", None)
    else:
        os.environ["FRONTIER_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def embedded_model(model_cache_dir):
    """(model, tokenizer) of the embedded SmolLM2-135M-Instruct, loaded through the cache."""
    from frontier.models import load_causal_lm

    return load_causal_lm(progress=False)


def make_tiny_llama(hidden: int = 32, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=128, hidden_size=hidden, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, eos_token_id=2, pad_token_id=0, bos_token_id=1,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def tiny_llama():
    """Factory of a 2-layer random Llama (vocab 128): `tiny_llama(hidden=32, seed=0)`."""
    return make_tiny_llama


CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Ids 0, 1, 2 are the tiny Llama's pad, bos and eos.
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@pytest.fixture(scope="session")
def char_tokenizer():
    """A fast character-level tokenizer (ASCII, 101 tokens) with a ChatML template: it fits the tiny Llama's vocab,
    and a random model over it puts real probability on any set of characters (49K-token vocabularies leave a random
    model near uniform)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [chr(code) for code in range(32, 127)] + ["\n"]
    vocab = {token: i for i, token in enumerate([*SPECIALS, "<unk>", *chars])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(SPECIALS)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=SPECIALS[1], eos_token=SPECIALS[2], pad_token=SPECIALS[0],
        unk_token="<unk>", chat_template=CHATML,
    )  # fmt: skip


@pytest.fixture
def bigbench_generator_sdist(tmp_path, monkeypatch):
    """make(scripts) writes a miniature bigbench-0.0.1.tar.gz whose generator scripts ({family: source}) are
    stand-ins, and points frontier at it and at a scratch cache; the real scripts' recorded digests are cleared."""
    import io
    import tarfile

    from frontier.data import bigbench

    monkeypatch.setattr(bigbench, "GENERATED_SHA256", {})

    def make(scripts: dict[str, str]) -> Path:
        folder = tmp_path / f"generator-sdist-{len(list(tmp_path.glob('generator-sdist-*')))}"
        folder.mkdir()
        path = folder / bigbench.GENERATOR_SDIST_NAME
        with tarfile.open(path, "w:gz") as archive:
            for family, script in scripts.items():
                data = script.encode()
                info = tarfile.TarInfo(bigbench.GENERATORS[family].script)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        monkeypatch.setenv(bigbench.GENERATOR_SDIST_ENV, str(path))
        monkeypatch.setenv("FRONTIER_CACHE_DIR", str(folder / "cache"))
        return path

    return make
