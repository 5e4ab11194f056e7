"""Object-image sources: the package fetcher against a fake registry tool, the IDX parser, and one real fetch (slow)."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frontier.errors import BackendUnavailableError, ConfigError
from frontier.models.loading import CACHE_MARKER
from frontier.multimodal import sources
from frontier.multimodal.sources import DataFileError, fetch_package, read_idx


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("FRONTIER_CACHE_DIR", str(root))
    return root


class FakeRegistry:
    """Stands in for apt-get/npm/pip: copies a prebuilt archive into the download folder and records each call."""

    def __init__(self, archive: Path | None = None, error: Exception | None = None):
        self.archive, self.error = archive, error
        self.downloads: list[list[str]] = []

    def __call__(self, command: list[str], cwd: Path) -> None:
        if command[0] == "dpkg-deb":
            subprocess.run(command, cwd=cwd, check=True, capture_output=True)
            return
        self.downloads.append(command)
        if self.error is not None:
            raise self.error
        shutil.copy(self.archive, cwd)


def install(monkeypatch, registry: FakeRegistry) -> FakeRegistry:
    monkeypatch.setattr(sources, "_run_tool", registry)
    return registry


def make_tgz(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def make_wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
    return path


def make_deb(path: Path, files: dict[str, bytes]) -> Path:
    root = path.parent / "deb-root"
    (root / "DEBIAN").mkdir(parents=True)
    control = "Package: demo\nVersion: 1.0-1\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: demo\n"
    (root / "DEBIAN" / "control").write_text(control)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    subprocess.run(["dpkg-deb", "--build", str(root), str(path)], check=True, capture_output=True)
    return path


def test_npm_fetch_extracts_writes_marker_and_reuses_the_cache(cache, tmp_path, monkeypatch):
    fake = install(monkeypatch, FakeRegistry(make_tgz(tmp_path / "demo-1.0.0.tgz", {"package/a.txt": b"hello"})))
    folder = fetch_package("npm", "demo", "1.0.0", progress=False)
    assert folder == cache / "data" / "npm-demo-1.0.0"
    assert (folder / "package" / "a.txt").read_bytes() == b"hello"
    marker = {"registry": "npm", "name": "demo", "version": "1.0.0"}
    assert json.loads((folder / CACHE_MARKER).read_text()) == marker
    assert fake.downloads == [["npm", "pack", "demo@1.0.0"]]

    assert fetch_package("npm", "demo", "1.0.0", progress=False) == folder
    assert len(fake.downloads) == 1
    assert [p.name for p in (cache / "data").iterdir()] == ["npm-demo-1.0.0"]  # no temp folders left


def test_pypi_fetch_unzips_the_wheel(cache, tmp_path, monkeypatch):
    wheel = make_wheel(tmp_path / "demo-1.0-py3-none-any.whl", {"demo/flags/X.pkl": b"x"})
    fake = install(monkeypatch, FakeRegistry(wheel))
    folder = fetch_package("pypi", "demo", "1.0", progress=False)
    assert (folder / "demo" / "flags" / "X.pkl").read_bytes() == b"x"
    (command,) = fake.downloads
    assert command[:5] == [sys.executable, "-m", "pip", "download", "--no-deps"]
    assert "demo==1.0" in command


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_debian_fetch_unpacks_the_deb(cache, tmp_path, monkeypatch):
    deb = make_deb(tmp_path / "demo_1.0-1_all.deb", {"usr/share/demo/a.txt": b"deb"})
    fake = install(monkeypatch, FakeRegistry(deb))
    folder = fetch_package("debian", "demo", "1.0-1", progress=False)
    assert (folder / "usr" / "share" / "demo" / "a.txt").read_bytes() == b"deb"
    assert fake.downloads == [["apt-get", "download", "demo=1.0-1"]]


def test_an_unfinished_fetch_is_replaced(cache, tmp_path, monkeypatch):
    stale = cache / "data" / "npm-demo-1.0.0"
    (stale / "package").mkdir(parents=True)
    (stale / "package" / "partial.txt").write_text("cut off")
    fake = install(monkeypatch, FakeRegistry(make_tgz(tmp_path / "demo.tgz", {"package/a.txt": b"hello"})))
    folder = fetch_package("npm", "demo", "1.0.0", progress=False)
    assert len(fake.downloads) == 1
    assert not (folder / "package" / "partial.txt").exists()
    assert (folder / CACHE_MARKER).is_file()


def test_a_failing_download_names_the_package_command_stderr_and_fix(cache, monkeypatch):
    command = ["npm", "pack", "demo@9.9.9"]
    stderr = "npm notice\nnpm error code ETARGET\nnpm error notarget No matching version found for demo@9.9.9.\n"
    install(monkeypatch, FakeRegistry(error=subprocess.CalledProcessError(1, command, stderr=stderr)))
    with pytest.raises(BackendUnavailableError) as caught:
        fetch_package("npm", "demo", "9.9.9", progress=False)
    message = str(caught.value)
    assert "demo 9.9.9" in message
    assert "npm pack demo@9.9.9" in message
    assert "No matching version found" in message
    assert "check network access to the npm registry" in message
    assert list((cache / "data").iterdir()) == []  # neither the entry nor a temp folder is left behind


def test_a_missing_tool_is_reported_with_the_fix(cache, monkeypatch):
    install(monkeypatch, FakeRegistry(error=FileNotFoundError(2, "No such file", "apt-get")))
    with pytest.raises(BackendUnavailableError, match=r"`apt-get` is not installed.*Debian archive"):
        fetch_package("debian", "demo", "1.0-1", progress=False)


def test_an_unknown_registry_is_a_config_error(cache):
    with pytest.raises(ConfigError, match="conda"):
        fetch_package("conda", "demo", "1.0", progress=False)


# ---------------------------------------------------------------------------------------------------------------------
# Parsing the sources from hand-made package folders


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    magic = 0x0800 | array.ndim if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def fake_entry(cache: Path, registry: str, name: str, version: str) -> Path:
    """A finished cache entry, as `fetch_package` leaves it, so the loaders read it without fetching."""
    folder = cache / "data" / f"{registry}-{name}-{version}"
    folder.mkdir(parents=True)
    (folder / CACHE_MARKER).write_text(json.dumps({"registry": registry, "name": name, "version": version}))
    return folder


@pytest.fixture
def offline(monkeypatch) -> None:
    """Any attempt to download fails the test."""
    install(monkeypatch, FakeRegistry(error=AssertionError("tried to download")))


def test_read_idx_round_trips(tmp_path):
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(np.uint8)
    path = tmp_path / "images.gz"
    path.write_bytes(idx_bytes(images))
    parsed = read_idx(path, 3)
    assert parsed.dtype == np.uint8
    np.testing.assert_array_equal(parsed, images)


def test_read_idx_rejects_a_wrong_magic_number(tmp_path):
    path = tmp_path / "labels.gz"
    path.write_bytes(idx_bytes(np.zeros(5, np.uint8), magic=0x0803))
    expected = r"labels\.gz: not an IDX file .*\(magic number 0x00000803, expected 0x00000801\)"
    with pytest.raises(DataFileError, match=expected):
        read_idx(path, 1)


def test_read_idx_rejects_a_truncated_file_and_non_gzip(tmp_path):
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(gzip.decompress(idx_bytes(np.zeros((2, 2, 2), np.uint8)))[:-3]))
    with pytest.raises(DataFileError, match=r"short\.gz: the header promises shape \(2, 2, 2\)"):
        read_idx(path, 3)
    path.write_bytes(b"not gzip")
    with pytest.raises(DataFileError, match="not a readable gzip file"):
        read_idx(path, 3)


def test_fashion_objects_are_white_with_grey_alpha_and_keep_the_first_per_class(cache, offline):
    folder = fake_entry(cache, "debian", sources.FASHION_MNIST_PACKAGE, sources.FASHION_MNIST_VERSION)
    folder = folder / sources.FASHION_MNIST_DIR
    folder.mkdir(parents=True)
    labels = np.array([7, 0, 7, 9, 7, 0], np.uint8)
    images = np.stack([np.full((28, 28), 10 * i, np.uint8) for i in range(len(labels))])
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(idx_bytes(images))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(idx_bytes(labels))

    _, parsed_labels = sources.fashion_mnist("test")
    assert parsed_labels.dtype == np.int64 and parsed_labels.tolist() == labels.tolist()
    objects = sources.fashion_objects("test", per_class=1)
    assert [o.name for o in objects] == ["sneaker", "t-shirt", "ankle boot"]
    assert [int(o.rgba[0, 0, 3]) for o in objects] == [0, 10, 30]
    assert all(o.rgba.shape == (28, 28, 4) and (o.rgba[..., :3] == 255).all() for o in objects)
    assert {(o.category, o.source) for o in objects} == {("clothing", "fashion-mnist")}
    assert len(sources.fashion_objects("test")) == 6
    with pytest.raises(ConfigError, match="split"):
        sources.fashion_mnist("validation")


def test_fashion_labels_must_match_the_images(cache, offline):
    folder = fake_entry(cache, "debian", sources.FASHION_MNIST_PACKAGE, sources.FASHION_MNIST_VERSION)
    folder = folder / sources.FASHION_MNIST_DIR
    folder.mkdir(parents=True)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(idx_bytes(np.zeros((3, 28, 28), np.uint8)))
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(idx_bytes(np.zeros(2, np.uint8)))
    with pytest.raises(DataFileError, match=r"3 images but .*train-labels-idx1-ubyte\.gz 2 labels"):
        sources.fashion_mnist("train")


def write_png(path: Path, colour: tuple[int, int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", (64, 64), colour).save(path)


def test_emoji_objects_filter_name_skin_tones_and_skip_missing_pngs(cache, offline):
    root = fake_entry(cache, "npm", sources.EMOJI_PACKAGE, sources.EMOJI_VERSION)
    entries = [
        {"name": "RED APPLE", "short_name": "apple", "category": "Food & Drink", "image": "1f34e.png",
         "sort_order": 2, "has_img_google": True},
        {"name": "", "short_name": "thumbs_up", "category": "People & Body", "image": "1f44d.png", "sort_order": 1,
         "has_img_google": True, "skin_variations": {
             "1F3FB": {"image": "1f44d-1f3fb.png", "has_img_google": True},
             "1F3FF": {"image": "1f44d-1f3ff.png", "has_img_google": False},
         }},
        {"name": "GHOST", "short_name": "ghost", "category": "Smileys & Emotion", "image": "1f47b.png",
         "sort_order": 3, "has_img_google": True},
        {"name": "NO GOOGLE", "short_name": "x", "category": "Symbols", "image": "0.png", "sort_order": 0,
         "has_img_google": False},
    ]  # fmt: skip
    (root / "package").mkdir()
    (root / "package" / "emoji.json").write_text(json.dumps(entries))
    images = root / sources.EMOJI_IMAGE_DIR
    for name in ["1f34e.png", "1f44d.png", "1f44d-1f3fb.png"]:  # the ghost's PNG is missing
        write_png(images / name, (200, 10, 10, 255))

    with pytest.warns(UserWarning, match="1 emoji"):
        objects = sources.emoji_objects()
    assert [(o.name, o.category, o.source) for o in objects] == [
        ("thumbs up", "people & body", "emoji"),
        ("red apple", "food & drink", "emoji"),
    ]
    assert objects[1].rgba.shape == (64, 64, 4) and objects[1].rgba.dtype == np.uint8
    assert objects[1].rgba[0, 0].tolist() == [200, 10, 10, 255]

    toned = sources.emoji_objects(categories=("People & Body",), include_skin_tones=True)
    assert [o.name for o in toned] == ["thumbs up", "thumbs up: light skin tone"]
    with pytest.raises(ConfigError, match="unknown emoji categories"):
        sources.emoji_objects(categories=("weather",))


def test_flag_objects_are_opaque_and_named_by_country(cache, offline):
    folder = fake_entry(cache, "pypi", sources.FLAGS_PACKAGE, sources.FLAGS_VERSION) / sources.FLAGS_DIR
    folder.mkdir(parents=True)
    for country in ["The_United_States", "France", "Georgia_(Country)"]:
        (folder / f"{country}.pkl").write_bytes(pickle.dumps(np.full((90, 180, 3), 7, np.uint8)))
    objects = sources.flag_objects()
    assert [o.name for o in objects] == ["flag of france", "flag of georgia", "flag of the united states"]
    assert all(o.rgba.shape == (90, 180, 4) and (o.rgba[..., 3] == 255).all() for o in objects)
    assert {(o.category, o.source) for o in objects} == {("flag", "flag")}


def test_flag_pickles_may_hold_nothing_but_arrays(cache, offline):
    folder = fake_entry(cache, "pypi", sources.FLAGS_PACKAGE, sources.FLAGS_VERSION) / sources.FLAGS_DIR
    folder.mkdir(parents=True)
    (folder / "Evil.pkl").write_bytes(pickle.dumps(print))
    with pytest.raises(DataFileError, match=r"Evil\.pkl: not a pickled numpy array .*builtins\.print"):
        sources.flag_objects()


# ---------------------------------------------------------------------------------------------------------------------
# The real packages


@pytest.mark.slow
def test_real_fetch_of_all_three_packages(cache):
    images, labels = sources.fashion_mnist("train")
    test_images, test_labels = sources.fashion_mnist("test")
    assert images.shape == (60000, 28, 28) and test_images.shape == (10000, 28, 28)
    assert sorted(np.unique(labels).tolist()) == list(range(10))
    assert np.bincount(test_labels).tolist() == [1000] * 10

    emoji = sources.emoji_objects()
    assert len(emoji) > 1500
    assert all(o.rgba.shape == (64, 64, 4) and o.rgba.dtype == np.uint8 for o in emoji)
    assert any(o.name == "red apple" and o.category == "food & drink" for o in emoji)

    flags = sources.flag_objects()
    assert len(flags) == 195
    assert all(o.rgba.shape == (90, 180, 4) and (o.rgba[..., 3] == 255).all() for o in flags)
    assert any(o.name == "flag of france" for o in flags)
