"""`frontier reproduce`: registered experiments that measure the papers' claims and write a report."""

from frontier.reproduce.registry import (
    REGISTRY,
    ClaimRow,
    ExperimentResult,
    Measurement,
    Mode,
    Registry,
    RunContext,
    Verdict,
    experiment,
)
from frontier.reproduce.runner import RunOutcome, run_experiments

__all__ = [
    "REGISTRY",
    "ClaimRow",
    "ExperimentResult",
    "Measurement",
    "Mode",
    "Registry",
    "RunContext",
    "RunOutcome",
    "Verdict",
    "experiment",
    "load_experiments",
    "run_experiments",
]

# Modules whose import registers experiments; each later system appends its own.
EXPERIMENT_MODULES = [
    "frontier.reproduce.experiments.embedded_model",
    "frontier.reproduce.experiments.kda_ops",
    "frontier.reproduce.experiments.kimi_linear_decode",
    "frontier.reproduce.experiments.kimi_linear_quality",
    "frontier.reproduce.experiments.autodeco",
    "frontier.reproduce.experiments.research",
    "frontier.reproduce.experiments.research_training",
    "frontier.reproduce.experiments.multimodal",
]


def load_experiments() -> Registry:
    """Import every experiment module (registering its experiments) and return the global registry."""
    import importlib

    for module in EXPERIMENT_MODULES:
        importlib.import_module(module)
    return REGISTRY
