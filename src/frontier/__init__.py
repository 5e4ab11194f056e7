"""frontier: AutoDeco, Kimi Linear, a DeepResearch-style agent and a unified multimodal model in PyTorch."""

import os

# frontier never downloads weights or data; huggingface_hub reads this flag once, at import, so set it first.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

__version__ = "0.1.0"
