"""`frontier autodeco train` runs unchanged under `accelerate launch` with two CPU processes (DDP over gloo): its
torch.distributed launcher (`--multi_gpu`) with no GPU visible; `--cpu --num_processes 2` would start only one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from frontier.autodeco.modeling import AutoDecoForCausalLM


@pytest.mark.slow
def test_two_process_training_writes_loadable_heads(model_cache_dir, embedded_model, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(f'{{"prompt": "What is {a}+{a}?", "completion": "{2 * a}"}}\n' for a in range(6)))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "frontier.cli",
               "autodeco", "train", "--data", str(data), "--output", str(tmp_path / "heads"), "--steps", "4",
               "--batch-size", "4", "--checkpoint-every", "2"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("heads saved to") == 1  # only the main process writes and reports
    assert "(trained by 2 processes)" in result.stderr
    assert (tmp_path / "heads" / "checkpoint-4" / "trainer_state.json").is_file()
    model = AutoDecoForCausalLM.from_pretrained(tmp_path / "heads", base_model=embedded_model[0])
    assert model.hidden_size == 576
