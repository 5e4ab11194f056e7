"""Unified multimodal model: real object images, synthetic scenes and a model that reads and writes them."""
