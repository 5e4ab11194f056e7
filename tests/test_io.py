import json
import os
import subprocess
import threading
import time

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
    from frontier import io

    killed = subprocess.Popen(["true"])
    killed.wait()
    (tmp_path / f".final.{io.HOST_TAG}-{killed.pid}-ab12.tmp").mkdir()
    (tmp_path / f".final.{io.HOST_TAG}-{killed.pid}-ab12.old").mkdir()
    with atomic_directory(target) as folder:
        (folder / "weights").write_text("v3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_atomic_directory_clears_only_leftovers_of_writers_that_are_gone(tmp_path):
    from frontier import io

    others = [".final.json.abc123.tmp", ".final.v2.4242.old", ".run1.777.tmp"]  # other paths' temp files and folders
    finished = subprocess.Popen(["true"])  # its pid names a writer that was killed
    finished.wait()
    host = io.HOST_TAG
    # this path's own folders (glob metacharacters in its name): a dead writer's go, a live or foreign writer's stay
    gone = [f".run[1].{host}-{finished.pid}-x1y2.tmp", f".run[1].{host}-{finished.pid}-x1y2.old", ".run[1].999.old"]
    elsewhere = "0123456789ab" if host != "0123456789ab" else "ba9876543210"  # another host's tag
    kept = [
        f".run[1].{host}-{os.getppid()}-a1b2.tmp",
        f".run[1].{elsewhere}-{finished.pid}-c3d4.tmp",
        ".run[1].998.old",
    ]
    for name in [*others, *gone, *kept]:
        (tmp_path / name).mkdir()
    day_old = time.time() - io.LEGACY_LEFTOVER_AGE_S - 60  # a leftover named before writers were recorded
    os.utime(tmp_path / ".run[1].999.old", (day_old, day_old))
    with atomic_directory(tmp_path / "run[1]") as folder:
        (folder / "weights").write_text("v1")
    with atomic_directory(tmp_path / "final") as folder:
        (folder / "weights").write_text("v1")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*others, *kept, "final", "run[1]"])


def test_atomic_directory_writers_in_threads_keep_each_others_folders(tmp_path):
    started, release = threading.Event(), threading.Event()

    def slow_writer():
        with atomic_directory(tmp_path / "slow") as folder:
            (folder / "part").write_text("1")
            started.set()
            release.wait(10)
            (folder / "rest").write_text("2")

    thread = threading.Thread(target=slow_writer)
    thread.start()
    started.wait(10)
    with atomic_directory(tmp_path / "slow") as folder:  # finishes while the other thread still writes
        (folder / "other").write_text("x")
    release.set()
    thread.join()
    assert sorted(p.name for p in (tmp_path / "slow").iterdir()) == ["part", "rest"]


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
