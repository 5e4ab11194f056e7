import json
import os
import subprocess

import pytest

from frontier.io import atomic_directory, atomic_symlink, atomic_write_json, atomic_write_text


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "out" / "a.json"
    atomic_write_json(target, {"x": 1})
    atomic_write_json(target, {"x": 2})
    assert json.loads(target.read_text()) == {"x": 2}
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")

    def crash(*_args):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr("frontier.io.os.replace", crash)
    with pytest.raises(OSError, match="simulated"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_symlink_repoints(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    atomic_symlink("one", tmp_path / "latest")
    atomic_symlink("two", tmp_path / "latest")
    assert os.readlink(tmp_path / "latest") == "two"


def test_atomic_directory_replaces_a_folder_whole_or_not_at_all(tmp_path):
    target = tmp_path / "final"
    with atomic_directory(target) as folder:
        (folder / "weights").write_text("v1")
    assert (target / "weights").read_text() == "v1"
    with pytest.raises(RuntimeError), atomic_directory(target) as folder:
        (folder / "weights").write_text("half of v2")
        raise RuntimeError("interrupted")
    assert (target / "weights").read_text() == "v1" and sorted(p.name for p in tmp_path.iterdir()) == ["final"]
    with atomic_directory(target) as folder:
        (folder / "weights").write_text("v2")
    assert sorted(p.name for p in target.iterdir()) == ["weights"] and (target / "weights").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]
    # A process killed mid-write leaves its temp or old folder; the next complete write clears them.
    (tmp_path / ".final.123.tmp").mkdir()
    (tmp_path / ".final.99.old").mkdir()
    with atomic_directory(target) as folder:
        (folder / "weights").write_text("v3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_atomic_directory_clears_only_its_own_leftovers(tmp_path):
    others = [".final.json.abc123.tmp", ".final.v2.4242.old", ".run1.777.tmp"]  # other paths' temp files and folders
    for name in others:
        (tmp_path / name).mkdir()
    finished = subprocess.Popen(["true"])  # its pid names a writer that was killed
    finished.wait()
    # this path's own leftovers (glob metacharacters in the name): a dead writer's go, a live writer's stay
    (tmp_path / f".run[1].{finished.pid}.old").mkdir()
    (tmp_path / f".run[1].{finished.pid}-x1y2.tmp").mkdir()
    live = f".run[1].{os.getppid()}-a1b2.tmp"
    (tmp_path / live).mkdir()
    with atomic_directory(tmp_path / "run[1]") as folder:
        (folder / "weights").write_text("v1")
    with atomic_directory(tmp_path / "final") as folder:
        (folder / "weights").write_text("v1")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*others, live, "final", "run[1]"])


def test_strict_json_writes_non_finite_numbers_as_null(tmp_path):
    data = {"loss": float("nan"), "values": [1.0, float("inf")], "nested": {"x": -float("inf")}}
    atomic_write_json(tmp_path / "strict.json", data, strict=True)
    assert json.loads((tmp_path / "strict.json").read_text()) == {
        "loss": None,
        "values": [1.0, None],
        "nested": {"x": None},
    }
    atomic_write_json(tmp_path / "python.json", data)  # our own files keep NaN, which Python reads back
    assert json.loads((tmp_path / "python.json").read_text())["values"][1] == float("inf")
