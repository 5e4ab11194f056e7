"""The PythonInterpreter sandbox: ordinary code runs, and every escape attempt is contained in a known way.

Each containment test runs at both isolation levels (namespaces are skipped, with the reason, where the kernel does
not allow them) and asserts how the attempt failed at that level, not just that it failed.
"""

import errno
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc

import pytest

from frontier.errors import BackendUnavailableError, ConfigError
from frontier.research import sandbox
from frontier.research.sandbox import (
    AUDIT_HOOK,
    ISOLATION_LEVELS,
    NAMESPACES,
    PROCESS_MARKER,
    PythonRun,
    SandboxLimits,
    format_python_result,
    namespace_problem,
    run_python,
)


@pytest.fixture(params=ISOLATION_LEVELS)
def level(request):
    if request.param == NAMESPACES and (problem := namespace_problem()) is not None:
        pytest.skip(f"namespace isolation is unavailable here: {problem}")
    return request.param


def run(code: str, level: str, **limits) -> PythonRun:
    limits.setdefault("timeout_s", 20.0)
    return run_python(textwrap.dedent(code), SandboxLimits(**limits), require_isolation=level)


def sandbox_processes() -> set[int]:
    """Host pids of live processes started by a sandbox (their command line carries the marker)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as file:
                    if PROCESS_MARKER.encode() in file.read():
                        found.add(int(entry))
            except OSError:
                continue
    return found


def assert_no_new_sandbox_processes(before: set[int]) -> None:
    deadline = time.monotonic() + 3.0  # SIGKILLed processes take a moment to disappear
    while (left := sandbox_processes() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"sandbox processes outlived the run: {sorted(left)}"


def test_ordinary_code_runs_and_prints(level):
    numpy_line = "import numpy as np; print(int(np.arange(5).sum()))" if importlib.util.find_spec("numpy") else ""
    result = run(
        f"""
        import math, json, re, collections, itertools, statistics, datetime, fractions, decimal
        print(math.sqrt(16), json.dumps({{"a": 1}}), statistics.mean([1, 2, 3]), fractions.Fraction(1, 3) * 3)
        print(sum(itertools.chain([1], [2])), collections.Counter("aab")["a"], decimal.Decimal("0.1") + 1)
        print(re.sub("b", "c", "abc"), datetime.date(2024, 1, 2).isoformat())
        {numpy_line}
        """,
        level,
    )
    expected = '4.0 {"a": 1} 2 1\n3 2 1.1\nacc 2024-01-02\n' + ("10\n" if numpy_line else "")
    assert (result.stdout, result.stderr, result.exit_code) == (expected, "", 0)
    assert result.isolation == level and not result.timed_out and not result.output_truncated


def test_an_exception_prints_the_programs_own_traceback_to_stderr(level):
    result = run("x = 1\nraise ValueError('boom')\n", level)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("Traceback (most recent call last):\n")
    assert 'File "<string>", line 2, in <module>' in result.stderr and "raise ValueError('boom')" in result.stderr
    assert result.stderr.endswith("ValueError: boom\n") and "sandbox-bootstrap" not in result.stderr


def test_syntax_errors_and_sys_exit_behave_like_python(level):
    syntax = run("print(1 +)\n", level)
    assert syntax.exit_code == 1 and "SyntaxError" in syntax.stderr and "Traceback" not in syntax.stderr
    exited = run("import sys\nprint('bye')\nsys.exit(3)\n", level)
    assert (exited.stdout, exited.exit_code) == ("bye\n", 3)


def test_files_outside_the_sandbox_cannot_be_read(level, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    paths = ["/etc/passwd", str(secret), os.path.abspath(__file__), os.path.expanduser("~/.bashrc")]
    result = run(
        f"""
        import os
        for path in {paths!r}:
            try:
                print(open(path).read()[:20])
            except OSError as exc:
                print(type(exc).__name__, exc.errno)
        try:
            print(os.listdir({str(tmp_path)!r}))
        except OSError as exc:
            print(type(exc).__name__, exc.errno)
        """,
        level,
    )
    assert "top secret" not in result.stdout and "root:" not in result.stdout
    # Namespaces: those paths do not exist in the sandbox's root. Audit hook: the guard refuses the open.
    expected = "FileNotFoundError 2" if level == NAMESPACES else f"PermissionError {errno.EACCES}"
    assert result.stdout.splitlines() == [expected] * 5, result.stdout + result.stderr


def test_files_outside_the_work_dir_cannot_be_written(level, tmp_path):
    targets = [tmp_path / "evil.txt", os.path.join(sys.prefix, "frontier-sandbox-evil.txt")]
    try:
        result = run(
            f"""
            import os
            for path in {[str(t) for t in targets]!r}:
                try:
                    with open(path, "w") as file:
                        file.write("pwned")
                    print("wrote", path)
                except OSError as exc:
                    print(type(exc).__name__, exc.errno)
            with open("inside.txt", "w") as file:  # the work dir itself is writable
                print(file.write("fine"))
            """,
            level,
        )
        assert not any(os.path.exists(t) for t in targets)
    finally:
        for target in targets:
            if os.path.exists(target):
                os.remove(target)
    if level == NAMESPACES:
        # tmp_path's folders do not exist in the sandbox; the interpreter's prefix is a read-only bind mount.
        expected = ["FileNotFoundError 2", f"OSError {errno.EROFS}", "4"]
    else:
        expected = [f"PermissionError {errno.EACCES}"] * 2 + ["4"]
    assert result.stdout.splitlines() == expected, result.stdout + result.stderr


def test_a_descriptor_of_an_outside_directory_cannot_carry_writes_there(level):
    target = os.path.join(sys.prefix, "frontier-sandbox-escaped.pth")  # would run code at the next start-up
    try:
        result = run(
            f"""
            import os
            try:
                folder = os.open({sys.prefix!r}, os.O_RDONLY)
                written = os.open("frontier-sandbox-escaped.pth", os.O_WRONLY | os.O_CREAT, dir_fd=folder)
                print("wrote", written)
            except OSError as exc:
                print(type(exc).__name__, exc.errno)
            """,
            level,
        )
        assert not os.path.exists(target)
    finally:
        if os.path.exists(target):
            os.remove(target)
    # Namespaces: the prefix is a read-only bind mount. Audit hook: the outside folder cannot be opened at all.
    expected = f"OSError {errno.EROFS}" if level == NAMESPACES else f"PermissionError {errno.EACCES}"
    assert result.stdout.splitlines() == [expected], result.stdout + result.stderr


def test_no_network_even_to_a_listener_on_localhost(level):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        result = run(
            f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=2).sendall(b"hello")
                print("connected")
            except OSError as exc:
                print(type(exc).__name__, exc.errno)
            """,
            level,
        )
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()
    # Namespaces: the new network namespace's loopback is down. Audit hook: socket creation is refused.
    expected = f"OSError {errno.ENETUNREACH}" if level == NAMESPACES else f"PermissionError {errno.EPERM}"
    assert result.stdout.strip() == expected, result.stdout + result.stderr


def test_a_fork_bomb_is_contained(level):
    before = sandbox_processes()
    limits = SandboxLimits(timeout_s=20.0, max_processes=16)
    # Linear and capped at 300, so a containment failure cannot take the machine down.
    code = """
        import os, time
        children = 0
        try:
            for _ in range(300):
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
                children += 1
            print("not contained", children)
        except OSError as exc:
            print(type(exc).__name__, exc.errno, children)
        """
    result = run_python(textwrap.dedent(code), limits, require_isolation=level)
    name, code_, children = result.stdout.split()
    if level == NAMESPACES:
        # RLIMIT_NPROC counts the sandbox user's processes, launcher included when not running as root.
        assert (name, int(code_)) == ("BlockingIOError", errno.EAGAIN)
        assert 0 < int(children) < limits.max_processes
    else:
        assert (name, int(code_), int(children)) == ("PermissionError", errno.EPERM, 0)
    assert_no_new_sandbox_processes(before)  # the sleeping children died with the sandbox
    assert subprocess.run(["true"]).returncode == 0


def test_an_infinite_loop_times_out_and_leaves_no_process(level):
    before = sandbox_processes()
    result = run(
        """
        import os
        print("started")
        try:
            if os.fork() == 0:  # a daemonised grandchild that escapes the process group
                os.setsid()
                if os.fork() == 0:
                    while True:
                        pass
                os._exit(0)
        except PermissionError:
            pass  # the audit hook refuses fork
        while True:
            pass
        """,
        level,
        timeout_s=2.0,
    )
    assert result.timed_out and result.exit_code is None and result.stdout == "started\n"
    assert 2.0 <= result.seconds < 6.0
    assert_no_new_sandbox_processes(before)


def test_huge_output_is_truncated_without_reaching_our_memory(level):
    tracemalloc.start()
    try:
        result = run("print('x' * 10**8)\n", level, max_output_bytes=64_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.output_truncated and result.exit_code is None and not result.timed_out
    assert result.stdout == "x" * 64_000
    assert peak < 8 << 20, f"reading the output allocated {peak} bytes"


def test_a_memory_hog_gets_a_memory_error(level):
    result = run("data = bytearray(4 << 30)\nprint('allocated')\n", level, memory_bytes=512 << 20)
    assert result.exit_code == 1 and result.stdout == "" and result.stderr.endswith("MemoryError\n")


def test_big_files_hit_the_file_size_limit(level):
    result = run(
        """
        try:
            with open("big.bin", "wb") as file:
                file.write(b"0" * (2 << 20))
        except OSError as exc:
            print(type(exc).__name__, exc.errno)
        """,
        level,
        max_file_bytes=1 << 20,
    )
    assert result.stdout.strip() == f"OSError {errno.EFBIG}", result.stdout + result.stderr


def test_environment_secrets_are_not_inherited(level, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sandbox-test-secret")
    monkeypatch.setenv("PYTHONPATH", "/should/not/leak")
    result = run("import os\nprint(sorted(os.environ.items()))\n", level)
    assert result.exit_code == 0
    assert "sk-sandbox-test-secret" not in result.stdout and "OPENAI_API_KEY" not in result.stdout
    assert "/should/not/leak" not in result.stdout


def test_the_work_dir_is_fresh_and_removed_afterwards(level, tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    code = "import os\nprint(os.getcwd(), sorted(os.listdir('.')))\nopen('left-behind.txt', 'w').write('x')\n"
    first, second = run(code, level), run(code, level)
    for result in (first, second):  # the second run does not see the first one's file
        cwd, listing = result.stdout.split(" ", 1)
        assert listing == "[]\n"
        assert cwd == "/sandbox" if level == NAMESPACES else cwd.startswith(str(scratch))
    assert list(scratch.iterdir()) == []


def test_child_processes_are_contained_too(level):
    result = run(
        """
        import subprocess
        try:
            done = subprocess.run(["cat", "/etc/passwd"], capture_output=True, text=True)
            print(done.returncode, done.stderr.strip())
        except OSError as exc:
            print(type(exc).__name__, exc.errno)
        """,
        level,
    )
    if level == NAMESPACES:  # the child runs, inside the same namespaces
        assert result.stdout.strip() == "1 cat: /etc/passwd: No such file or directory"
    else:
        assert result.stdout.strip() == f"PermissionError {errno.EPERM}"


def test_namespaces_show_a_minimal_root_without_privileges(level):
    if level != NAMESPACES:
        pytest.skip("the audit-hook level neither hides the file system nor drops privileges; it refuses calls")
    result = run(
        """
        import json, os
        print(os.getuid(), os.getgid(), os.getcwd())
        print(json.dumps(os.listdir("/")))
        if os.path.exists("/proc/self/status"):
            status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines())
            print(status["CapEff"].strip(), status["CapPrm"].strip(), status["NoNewPrivs"].strip())
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            print(libc.unshare(0x10000000), ctypes.get_errno())  # CLONE_NEWUSER: a nested user namespace
        """,
        level,
    )
    lines = result.stdout.splitlines()
    assert lines[0] == f"{sandbox.SANDBOX_UID} {sandbox.SANDBOX_UID} /sandbox"
    system = {"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "dev", "proc", "sandbox", "tmp"}
    interpreter = {path.split("/")[1] for path in sandbox._python_prefixes(sys.executable)}  # e.g. the venv's
    assert set(json.loads(lines[1])) <= system | interpreter
    if len(lines) > 2:  # the kernel let the sandbox mount its own /proc
        assert lines[2] == "0000000000000000 0000000000000000 1"
        assert lines[3] in (f"-1 {errno.ENOSPC}", f"-1 {errno.EPERM}")  # user.max_user_namespaces is 0 inside


def test_requiring_unavailable_namespaces_raises_and_the_default_says_what_it_used(monkeypatch):
    reason = "user namespaces are disabled: sysctl kernel.unprivileged_userns_clone=0"
    monkeypatch.setattr(sandbox, "_namespace_problem", lambda python: reason)
    with pytest.raises(BackendUnavailableError, match="unprivileged_userns_clone=0"):
        run_python("print(1)", require_isolation="namespaces")
    assert sandbox.available_isolation() == AUDIT_HOOK
    result = run_python("print(1)", SandboxLimits(timeout_s=20.0))
    assert (result.stdout, result.isolation) == ("1\n", AUDIT_HOOK)


def test_invalid_arguments_raise_config_errors():
    with pytest.raises(ConfigError, match="require_isolation"):
        run_python("print(1)", require_isolation="docker")
    with pytest.raises(ConfigError, match="timeout_s"):
        SandboxLimits(timeout_s=0)
    with pytest.raises(ConfigError, match="memory_bytes"):
        SandboxLimits(memory_bytes=-1)
    with pytest.raises(ConfigError, match="not found"):
        run_python("print(1)", python="/nonexistent/python3")


def _result(stdout="", stderr="", timed_out=False, truncated=False) -> PythonRun:
    return PythonRun(stdout, stderr, None if timed_out else 0, timed_out, truncated, 0.1, AUDIT_HOOK)


def test_format_python_result_matches_the_reference_tool():
    assert format_python_result(_result("4\n")) == "stdout:\n4\n"
    assert format_python_result(_result("a\n", "warn\n")) == "stdout:\na\n\nstderr:\nwarn\n"
    assert format_python_result(_result(stderr="Traceback ...\n")) == "stderr:\nTraceback ...\n"
    assert format_python_result(_result()) == "Finished execution."
    assert (
        format_python_result(_result(timed_out=True)) == "[PythonInterpreter Error] TimeoutError: Execution timed out."
    )
    assert format_python_result(_result("partial\n", timed_out=True)) == (
        "stdout:\npartial\n\n[PythonInterpreter Error] TimeoutError: Execution timed out."
    )
    assert format_python_result(_result("xxx", truncated=True)) == (
        "stdout:\nxxx\n[PythonInterpreter Note] Output truncated: the program printed too much and was stopped."
    )
