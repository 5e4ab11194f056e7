"""The `frontier` command as a user runs it: a subprocess, one-line errors, no tracebacks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import frontier

FRONTIER = str(Path(sys.executable).parent / "frontier")


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [FRONTIER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=os.environ.copy(),
        stdin=subprocess.DEVNULL,
    )


def test_building_the_parser_imports_neither_torch_nor_transformers():
    """--help, --version and bad-argument errors stay fast: the heavy libraries load in the command handlers."""
    code = (
        "import sys, frontier.cli; frontier.cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"frontier {frontier.__version__}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["generate", ""], "prompt is empty"),
        (["generate", "   "], "prompt is empty"),
        (["generate", "hi", "--max-new-tokens", "-3"], "expected a positive integer, got -3"),
        (["generate", "hi", "--max-new-tokens", "ten"], "expected a positive integer, got 'ten'"),
        (["generate", "hi", "--model", "/no/such/model"], "/no/such/model: no such file or folder"),
        (["generate", "hi", "--top-p", "3"], "top_p must be in (0, 1]"),
        (["generate", "hi", "--temperature", "-1"], "temperature must be >= 0"),
        (["generate", "hi", "--device", "tpu"], "device 'tpu' is not a device name"),
        (["generate", "hi", "--dtype", "int8"], "invalid choice: 'int8'"),
        (["reproduce", "--only", "embeded-model"], "Did you mean embedded-model?"),
        (["reproduce", "--quick", "--full"], "not allowed with argument"),
        (["no-such-command"], "invalid choice"),
    ],
    ids=[
        "empty",
        "blank",
        "negative-tokens",
        "non-int-tokens",
        "unknown-model",
        "top-p",
        "temperature",
        "unknown-device",
        "unknown-dtype",
        "unknown-experiment",
        "quick-and-full",
        "unknown-command",
    ],
)
def test_bad_input_gives_one_line_error(args, expected):
    result = run_cli(*args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0] and "error" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where no CUDA GPU is usable")
@pytest.mark.parametrize("command", [["generate", "hi"], ["serve"], ["autodeco", "make-data", "--output", "x.jsonl"]])
def test_missing_gpu_is_a_one_line_error(command):
    result = run_cli(*command, "--device", "cuda")
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and "no CUDA GPU is usable here" in lines[0], result.stderr


def test_generate_streams_an_answer_about_paris(model_cache_dir, embedded_model):
    result = run_cli("generate", "What is the capital of France?", "--max-new-tokens", "24")
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout


def test_reproduce_lists_the_registered_experiments():
    result = run_cli("reproduce", "--list")
    assert result.returncode == 0
    assert "embedded-model" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["--only", ""], "--only got no experiment names"), (["--only", " , "], "--only got no experiment names"),
     (["--only", "embedded-model", "--reports-dir", "FILE"], "is a file; give a folder")],
    ids=["empty-only", "commas-only", "reports-dir-is-a-file"],
)  # fmt: skip
def test_reproduce_bad_arguments_give_one_line_errors(tmp_path, args, expected):
    (tmp_path / "FILE").write_text("")
    result = run_cli("reproduce", *args, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and expected in lines[0], result.stderr


@pytest.fixture
def untrained_heads(tmp_path, embedded_model):
    """Freshly initialised AutoDeco heads for the embedded model (hidden 576), saved as a user's heads folder."""
    import torch

    from frontier.autodeco.modeling import AutoDecoForCausalLM

    torch.manual_seed(0)
    AutoDecoForCausalLM(embedded_model[0]).save_pretrained(tmp_path / "heads")
    return tmp_path / "heads"


def test_generate_with_autodeco_heads_streams_and_reports_parameters(model_cache_dir, untrained_heads):
    result = run_cli("generate", "What is the capital of France?", "--decoding", "autodeco", "--heads",
                     str(untrained_heads), "--temperature", "0", "--max-new-tokens", "16", "--show-params")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout
    assert "mean predicted T" in result.stderr
    assert "decoding parameters per token" in result.stderr
    rows = [line for line in result.stderr.splitlines() if re.match(r"\W*\d+\W.*\b[01]\.\d{3}\W+[01]\.\d{3}", line)]
    tokens = int(re.search(r"over (\d+) tokens", result.stderr).group(1))
    assert len(rows) == tokens > 0  # one row per generated token, with its T and p


def test_heads_without_model_load_the_base_they_were_trained_on(model_cache_dir, untrained_heads):
    import json

    config_path = untrained_heads / "autodeco_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "base_model_name_or_path": "/no/such/base"}))
    generated = run_cli("generate", "hi", "--decoding", "autodeco", "--heads", str(untrained_heads))
    assert generated.returncode != 0 and "/no/such/base" in generated.stderr, generated.stderr

    from frontier.research.llm import LocalLLM
    from frontier.serving.server import build_app

    for load in (lambda: build_app(heads=untrained_heads, progress=False),
                 lambda: LocalLLM.load(heads=str(untrained_heads), progress=False)):  # fmt: skip
        with pytest.raises(Exception, match="/no/such/base"):
            load()


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["--decoding", "autodeco"], "--decoding autodeco needs --heads"),
     (["--heads", "somewhere"], "--heads is only used with --decoding autodeco"),
     (["--decoding", "autodeco", "--heads", "/no/such/heads"], "not an AutoDeco heads folder")],
    ids=["no-heads", "heads-without-autodeco", "missing-heads"],
)  # fmt: skip
def test_autodeco_bad_input_gives_one_line_error(model_cache_dir, args, expected):
    result = run_cli("generate", "hi", *args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and expected in lines[0], result.stderr


def test_autodeco_train_writes_heads_that_generate_can_use(model_cache_dir, embedded_model, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"prompt": "What is 2+3?", "completion": "5"}\n{"prompt": "What is 4+4?", "completion": "8"}\n')
    args = ["autodeco", "train", "--data", str(data), "--output", str(tmp_path / "heads"), "--steps", "2",
            "--batch-size", "2", "--checkpoint-every", "1"]  # fmt: skip
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "heads" / "checkpoint-2" / "trainer_state.json").is_file()
    assert "temperature loss" in result.stderr and "top_p loss" in result.stderr
    answer = run_cli("generate", "What is the capital of France?", "--decoding", "autodeco", "--heads",
                     str(tmp_path / "heads"), "--temperature", "0", "--max-new-tokens", "12")  # fmt: skip
    assert answer.returncode == 0 and "Paris" in answer.stdout
    # The same data streamed: the windows fingerprint alike, so the run resumes from the cached run's checkpoint.
    streamed = run_cli("autodeco", "train", "--data", str(data), "--output", str(tmp_path / "heads"), "--steps", "3",
                       "--batch-size", "2", "--stream")  # fmt: skip
    assert streamed.returncode == 0, streamed.stderr
    assert "caching base features" not in streamed.stderr
    assert (tmp_path / "heads" / "checkpoint-3" / "trainer_state.json").is_file()


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "no such file"), ("{not json\n", ":1: not valid JSON"), ('{"prompt": "x"}\n', ":1: expected an object"),
     ("\n", "no examples")],
    ids=["missing", "bad-json", "missing-field", "empty"],
)  # fmt: skip
def test_autodeco_train_bad_data_gives_one_line_error(tmp_path, content, expected):
    data = tmp_path / "train.jsonl"
    if content is not None:
        data.write_text(content)
    result = run_cli("autodeco", "train", "--data", str(data), "--output", str(tmp_path / "out"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and expected in lines[0], result.stderr


def test_autodeco_make_data_writes_training_pairs(model_cache_dir, embedded_model, tmp_path):
    output = tmp_path / "solutions.jsonl"
    result = run_cli("autodeco", "make-data", "--output", str(output), "--problems", "3", "--samples", "2",
                     "--max-new-tokens", "6", "--families", "arithmetic")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "of 6 samples" in result.stderr and "arithmetic" in result.stderr
    assert output.is_file() and not (tmp_path / "solutions.jsonl.partial").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["--families", "algebra"], "unknown problem families"), (["--temperature", "0"], "rejection sampling needs"),
     (["--top-p", "1.5"], "top_p must be in (0, 1]")],
    ids=["family", "greedy", "top-p"],
)  # fmt: skip
def test_autodeco_make_data_bad_input_gives_one_line_error(tmp_path, args, expected):
    result = run_cli("autodeco", "make-data", "--output", str(tmp_path / "x.jsonl"), *args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and expected in lines[0], result.stderr
