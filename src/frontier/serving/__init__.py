"""`frontier serve`: an OpenAI-compatible HTTP API for any local causal LM, with AutoDeco decoding when given heads.

`create_app` builds the FastAPI app around an already-loaded model (tests and embedding); `build_app` loads a model
first and `serve` runs it with uvicorn.
"""

from frontier.serving.app import create_app
from frontier.serving.server import EMBEDDED_MODEL_NAME, build_app, default_model_name, serve

__all__ = ["EMBEDDED_MODEL_NAME", "build_app", "create_app", "default_model_name", "serve"]
