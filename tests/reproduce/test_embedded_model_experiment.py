"""The first registered experiment, run for real through the CLI as `make reproduce` runs it."""

import pytest


@pytest.mark.slow
def test_reproduce_embedded_model_reports_a_real_answer_and_speed(reproduce_quick, model_cache_dir):
    metrics = reproduce_quick("embedded-model")["metrics"]
    assert "Paris" in metrics["answer"]
    assert metrics["tokens_per_s_batch1"] > 0 and metrics["tokens_per_s_batch8"] > 0
