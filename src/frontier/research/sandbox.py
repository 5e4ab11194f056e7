"""Run untrusted Python (the agent's `PythonInterpreter` tool) in a contained subprocess.

Two isolation levels exist; `run_python` uses the strongest one that works on this machine and records it on the
result as `PythonRun.isolation`. It never falls back silently: `require_isolation="namespaces"` raises
`BackendUnavailableError` with the reason when that level is unavailable, `available_isolation()` tells which level
a plain call gets, and `namespace_problem()` why namespaces are out.

``"namespaces"`` (Linux with user namespaces; needs no root, setuid helper, bwrap or other package):
  A launcher (`python -I -S`, stdlib `ctypes` only) unshares user, mount, PID, network, IPC, UTS and cgroup
  namespaces; our process then writes its uid/gid map: the sandbox user (uid 1000 inside) is the caller's own uid,
  or `nobody` (65534) when the caller is root, because RLIMIT_NPROC never applies to root.
  - Network: the new network namespace has only a loopback device, and it is down, so every connect, 127.0.0.1
    included, fails with ENETUNREACH; the host's abstract unix sockets are out of reach as well.
  - Files: the new root is an empty tmpfs holding read-only nosuid bind mounts of /usr, /lib*, the interpreter's
    prefixes (its venv and its base installation; nothing else from the repository or home), /etc/ld.so.cache,
    /etc/localtime and /dev/{null,zero,full,random,urandom}. `pivot_root` then detaches the old root, so no other
    host path exists (/etc/passwd, $HOME, the repository: ENOENT). The work dir (/sandbox, the cwd) and /tmp are
    fresh tmpfs mounts of 4 x `max_file_bytes` each (so is /dev/shm) that vanish with the namespace; the root
    itself is read-only.
  - Privileges: the program has no capabilities (they are dropped at exec) and no_new_privs set; nested user
    namespaces are refused where the kernel lets us set user.max_user_namespaces=0 inside (it does from 4.9 on).
  - Processes: the program runs under a small init (PID 1 of the namespace). When the program exits, or we kill
    the launcher's process group on a timeout or output overflow, the kernel kills every process left in the
    namespace, even those that called setsid(). RLIMIT_NPROC caps the sandbox user's processes and threads (when
    the caller is not root, the launcher and init count too).
  - /proc is the namespace's own (its processes only) when the kernel allows mounting it; Docker's masked /proc
    does not, which costs nothing but /proc.
  Not contained: CPU and memory beyond per-process limits (RLIMIT_AS bounds each process, so the worst case is about
  `max_processes` x `memory_bytes`, plus the two tmpfs mounts), and kernel bugs reachable through ordinary syscalls
  (there is no seccomp filter). Reading /usr and the interpreter's installation is intended.

``"audit-hook"`` (any POSIX system; what remains where user namespaces are off: Docker's default seccomp profile,
  Ubuntu's AppArmor restriction, `kernel.unprivileged_userns_clone=0`):
  rlimits, a clean environment and a fresh host temp dir as cwd, plus a `sys.addaudithook` guard installed before
  the program runs. The guard refuses opening files outside the work dir (reading is also allowed under the
  interpreter's prefixes), listing or entering other directories, writing/renaming/deleting/chmod-ing outside it,
  symlinks and hard links, every `socket.*` and `ctypes.*` event, `subprocess.Popen` (and its C helper),
  `os.system`, `os.fork`, `os.exec*`, `os.spawn*`, `os.posix_spawn`, signalling other processes,
  `resource.setrlimit`, `gc.get_referrers` and friends, and building code objects. This is NOT a security
  boundary: audit hooks only see what CPython reports (`os.stat` of any path still works), crafted bytecode or a
  C-extension bug bypasses them, and the program keeps the caller's uid and file permissions. There is no process
  limit (fork is refused; threads are bounded by RLIMIT_AS) and the work dir is on the host's disk, bounded per
  file only. It stops ordinary model-written code from touching the machine, not a determined attacker.

Both levels: a wall-clock timeout after which the process group (and at the namespace level the whole PID
namespace) is SIGKILLed; RLIMIT_AS, RLIMIT_CPU, RLIMIT_FSIZE and RLIMIT_CORE=0; no inherited environment variables
(no API keys); stdin from /dev/null; stdout and stderr each capped at `max_output_bytes`, beyond which the program
is stopped and the result says so, so huge output never reaches our memory.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import platform
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from frontier.errors import BackendUnavailableError, ConfigError

NAMESPACES = "namespaces"
AUDIT_HOOK = "audit-hook"
ISOLATION_LEVELS = (NAMESPACES, AUDIT_HOOK)  # strongest first

SANDBOX_UID = 1000  # the program's uid (and gid) inside the user namespace
_NOBODY = 65534
_SANDBOX_DIR = "/sandbox"
# Searched for in /proc/*/cmdline by the tests to prove no sandbox process outlives a run.
PROCESS_MARKER = "frontier-sandbox-process"
_PIVOT_ROOT_SYSCALL = {"x86_64": 155, "aarch64": 41, "arm64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
_READ_CHUNK = 1 << 16
_KILL_GRACE_S = 2.0
_SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one run; `memory_bytes` and `max_processes` apply per process and per sandbox user."""

    timeout_s: float = 50.0
    memory_bytes: int = 1 << 30
    max_processes: int = 16
    max_output_bytes: int = 64_000
    max_file_bytes: int = 16 << 20

    def __post_init__(self) -> None:
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise ConfigError(f"SandboxLimits.timeout_s must be a positive number of seconds, got {self.timeout_s!r}")
        for name in ("memory_bytes", "max_processes", "max_output_bytes", "max_file_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"SandboxLimits.{name} must be a positive integer, got {value!r}")
        if self.max_processes < 4:
            raise ConfigError(
                f"SandboxLimits.max_processes must be at least 4 (the launcher needs some), got {self.max_processes}"
            )


@dataclass(frozen=True)
class PythonRun:
    """What a sandboxed program printed and how it ended."""

    stdout: str
    stderr: str
    exit_code: int | None  # None when the sandbox stopped it (timeout or output cap); negative: killed by that signal
    timed_out: bool
    output_truncated: bool
    seconds: float
    isolation: str


class _SetupError(Exception):
    """The namespace sandbox could not be built (not an error of the program)."""


def run_python(
    code: str,
    limits: SandboxLimits = SandboxLimits(),
    *,
    python: str | None = None,
    require_isolation: str | None = None,
) -> PythonRun:
    """Run `code` as `__main__` of a fresh, contained `python` (default: this interpreter) and collect its output.

    `require_isolation` picks a level from `ISOLATION_LEVELS` instead of the strongest available one; asking for
    `"namespaces"` where they do not work raises `BackendUnavailableError` saying why.
    """
    interpreter = _resolve_python(python)
    isolation = _choose_isolation(require_isolation, interpreter)
    workdir = tempfile.mkdtemp(prefix="frontier-sandbox-")
    try:
        if isolation == NAMESPACES:
            try:
                return _run_in_namespaces(code, limits, interpreter, workdir)
            except _SetupError as exc:
                raise BackendUnavailableError(f"the namespace sandbox could not start: {exc}") from None
        return _run_with_audit_hook(code, limits, interpreter, workdir)
    finally:
        _remove_tree(workdir)


def format_python_result(run: PythonRun) -> str:
    """The reference `PythonInterpreter`'s observation text (Alibaba-NLP/DeepResearch `inference/tool_python.py`)."""
    parts = []
    if run.stdout:
        parts.append(f"stdout:\n{run.stdout}")
    if run.stderr:
        parts.append(f"stderr:\n{run.stderr}")
    if run.output_truncated:
        parts.append("[PythonInterpreter Note] Output truncated: the program printed too much and was stopped.")
    if run.timed_out:
        parts.append("[PythonInterpreter Error] TimeoutError: Execution timed out.")
    text = "\n".join(parts)
    return text if text.strip() else "Finished execution."


def available_isolation(python: str | None = None) -> str:
    """The level `run_python` uses by default for `python`: `"namespaces"` where they work, else `"audit-hook"`."""
    return NAMESPACES if _namespace_problem(_resolve_python(python)) is None else AUDIT_HOOK


def namespace_problem(python: str | None = None) -> str | None:
    """Why the namespace level does not work here (None when it does); probed once per interpreter."""
    return _namespace_problem(_resolve_python(python))


def _resolve_python(python: str | None) -> str:
    if python is None:
        return sys.executable
    found = shutil.which(python) if os.sep not in python else python
    if found is None or not os.path.isfile(found):
        raise ConfigError(f"Python interpreter {python!r} not found; pass a path to an existing python executable")
    return os.path.abspath(found)


def _choose_isolation(require: str | None, python: str) -> str:
    if require is not None and require not in ISOLATION_LEVELS:
        raise ConfigError(f"require_isolation must be one of {ISOLATION_LEVELS} or None, got {require!r}")
    if require == AUDIT_HOOK:
        return AUDIT_HOOK
    problem = _namespace_problem(python)
    if problem is None:
        return NAMESPACES
    if require == NAMESPACES:
        raise BackendUnavailableError(f"namespace isolation is unavailable: {problem}")
    return AUDIT_HOOK


@functools.lru_cache(maxsize=8)
def _namespace_problem(python: str) -> str | None:
    if sys.platform != "linux":
        return f"Linux namespaces need Linux, this is {sys.platform}"
    machine = platform.machine()
    if machine not in _PIVOT_ROOT_SYSCALL:
        return f"pivot_root's syscall number is not known for {machine}"
    workdir = tempfile.mkdtemp(prefix="frontier-sandbox-probe-")
    try:
        run = _run_in_namespaces("print('ok')", SandboxLimits(timeout_s=30.0), python, workdir)
    except (_SetupError, OSError) as exc:
        hints = _userns_hints(str(exc))
        return f"{exc}" + (f" ({'; '.join(hints)})" if hints else "")
    finally:
        _remove_tree(workdir)
    if run.stdout != "ok\n":
        return f"a test program failed inside the namespaces (exit code {run.exit_code}): {run.stderr.strip()[-500:]}"
    return None


def _userns_hints(message: str) -> list[str]:
    """Known switches that turn user namespaces off, for the error message."""
    checks = (
        ("/proc/sys/kernel/unprivileged_userns_clone", "0", "user namespaces are disabled for unprivileged users"),
        ("/proc/sys/user/max_user_namespaces", "0", "user namespaces are disabled"),
        ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1", "AppArmor restricts unprivileged userns"),
    )
    hints = []
    for path, bad, text in checks:
        try:
            with open(path) as file:
                value = file.read().strip()
        except OSError:
            continue
        if value == bad:
            sysctl = path.removeprefix("/proc/sys/").replace("/", ".")
            hints.append(f"{text}: sysctl {sysctl}={value}")
    if message.startswith("unshare") and "(errno 1)" in message:
        hints.append(
            "a container's seccomp profile (Docker's default) may block unshare: --security-opt seccomp=unconfined"
        )
    return hints


@functools.lru_cache(maxsize=8)
def _python_prefixes(python: str) -> tuple[str, ...]:
    """The directories the interpreter needs (its prefixes, also as real paths), without nested duplicates."""
    if python == sys.executable:
        paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    else:
        query = (
            "import json, sys; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]))"
        )
        try:  # with `site` (no -S): a venv's interpreter reports its venv as sys.prefix only then
            out = subprocess.run([python, "-I", "-c", query], capture_output=True, text=True, timeout=60, check=True)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ConfigError(f"could not run the Python interpreter {python!r}: {exc}") from None
        paths = json.loads(out.stdout)
    paths += [os.path.dirname(python), os.path.dirname(os.path.realpath(python))]
    candidates = {os.path.abspath(path) for path in paths} | {os.path.realpath(path) for path in paths}
    return _outermost(candidates)


def _outermost(paths: set[str] | list[str]) -> tuple[str, ...]:
    kept: list[str] = []
    for path in sorted(paths, key=len):
        if path != "/" and not any(_within(path, outer) for outer in kept):
            kept.append(path)
    return tuple(sorted(kept))


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _mount_entries(python: str) -> list[tuple[str, str, str]]:
    """(kind, source, target) of what the namespace's root shows; kinds: symlink, dir, file, device."""
    entries = []
    for name in _SYSTEM_DIRS:
        path = "/" + name
        if os.path.islink(path):
            entries.append(("symlink", os.readlink(path), path))
        elif os.path.isdir(path):
            entries.append(("dir", path, path))
    system = [os.path.realpath("/" + name) for name in _SYSTEM_DIRS if os.path.isdir("/" + name)]
    prefixes = [path for path in _python_prefixes(python) if not any(_within(path, root) for root in system)]
    entries.extend(("dir", path, path) for path in prefixes)
    for path in ("/etc/ld.so.cache", "/etc/localtime"):
        if os.path.isfile(path):
            entries.append(("file", os.path.realpath(path), path))
    entries.extend(("device", path, path) for path in _DEVICES if os.path.exists(path))
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1")):
        entries.append(("symlink", target, f"/dev/{name}"))
    entries.append(("symlink", "/proc/self/fd/2", "/dev/stderr"))
    return entries


def _clean_env(home: str) -> dict[str, str]:
    """Nothing inherited (no API keys, proxies, PYTHONPATH); one BLAS thread so numpy stays within RLIMIT_AS/NPROC."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8"}
    env.update({"LC_ALL": "C.UTF-8", "USER": "sandbox", "LOGNAME": "sandbox", "MPLBACKEND": "Agg"})
    env.update({name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    return env


def _rlimits(limits: SandboxLimits, *, count_processes: bool) -> list[tuple[str, int, int]]:
    cpu = math.ceil(limits.timeout_s) + 1  # the wall clock normally ends a run first; this catches busy children
    rlimits = [
        ("RLIMIT_AS", limits.memory_bytes, limits.memory_bytes),
        ("RLIMIT_CPU", cpu, cpu + 1),
        ("RLIMIT_FSIZE", limits.max_file_bytes, limits.max_file_bytes),
        ("RLIMIT_CORE", 0, 0),
    ]
    if count_processes:
        rlimits.append(("RLIMIT_NPROC", limits.max_processes, limits.max_processes))
    return rlimits


def _run_in_namespaces(code: str, limits: SandboxLimits, python: str, workdir: str) -> PythonRun:
    ctrl_read, ctrl_write = os.pipe()
    go_read, go_write = os.pipe()
    config = {
        "ctrl_fd": ctrl_write,
        "go_fd": go_read,
        "root": workdir,
        "uid": SANDBOX_UID,
        "drop_groups": os.geteuid() == 0,
        "pivot_root": _PIVOT_ROOT_SYSCALL[platform.machine()],
        "scratch_bytes": 4 * limits.max_file_bytes,
        "entries": _mount_entries(python),
        "rlimits": _rlimits(limits, count_processes=True),
        "python": python,
        "argv": [python, "-I", "-c", _BOOTSTRAP_STUB, _BOOTSTRAP, json.dumps({})],
        "env": _clean_env(_SANDBOX_DIR),
    }
    start = time.monotonic()
    try:
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _LAUNCHER, json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            start_new_session=True,
            pass_fds=(ctrl_write, go_read),
        )
    finally:
        os.close(ctrl_write)
        os.close(go_read)
    try:
        deadline = start + limits.timeout_s
        line = _read_line(ctrl_read, deadline)
        if line != "unshared":
            raise _SetupError(line.removeprefix("error ") or "the launcher exited before unsharing its namespaces")
        _write_id_maps(process.pid)
        os.write(go_write, b"go")
        os.close(go_write)
        go_write = -1
        collected = _collect(process, code, limits, start, ctrl_read)
    finally:
        if go_write >= 0:
            os.close(go_write)
        os.close(ctrl_read)
        _finish(process)
    control = collected.control.decode("utf-8", "replace").splitlines()
    errors = [line.removeprefix("error ") for line in control if line.startswith("error ")]
    if errors and not collected.stopped:
        raise _SetupError(errors[0])
    statuses = [int(line.split()[1]) for line in control if line.startswith("status ")]
    exit_code = None if collected.stopped or not statuses else os.waitstatus_to_exitcode(statuses[0])
    return collected.result(exit_code, NAMESPACES)


def _read_line(fd: int, deadline: float) -> str:
    """One line from the launcher's control pipe, or "" when it closes or the deadline passes."""
    data = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while not data.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                break
            chunk = os.read(fd, 1)  # byte by byte: later lines belong to the main loop
            if not chunk:
                break
            data += chunk
    return data.decode("utf-8", "replace").strip()


def _write_id_maps(pid: int) -> None:
    """Map the sandbox uid/gid to `nobody` when we are root (so RLIMIT_NPROC applies), else to ourselves."""
    if os.geteuid() == 0:
        # The launcher keeps root (mapped to itself) so it can create the mount points it owns.
        uid_map = gid_map = f"0 0 1\n{SANDBOX_UID} {_NOBODY} 1\n"
    else:
        uid_map, gid_map = f"{SANDBOX_UID} {os.geteuid()} 1\n", f"{SANDBOX_UID} {os.getegid()} 1\n"
    try:
        if os.geteuid() != 0:
            with open(f"/proc/{pid}/setgroups", "w") as file:  # unprivileged gid maps require this
                file.write("deny")
        with open(f"/proc/{pid}/uid_map", "w") as file:
            file.write(uid_map)
        with open(f"/proc/{pid}/gid_map", "w") as file:
            file.write(gid_map)
    except OSError as exc:
        raise _SetupError(f"writing the uid/gid map of the sandbox failed: {exc}") from None


def _run_with_audit_hook(code: str, limits: SandboxLimits, python: str, workdir: str) -> PythonRun:
    workdir = os.path.realpath(workdir)
    guard = {
        "work": workdir,
        "read_roots": list(_outermost({os.path.realpath(path) for path in _python_prefixes(python)})),
        "read_files": list(_DEVICES),
        # Outside a user namespace RLIMIT_NPROC counts all of the caller's processes (and nothing for root), so it
        # would only break threads; fork is refused by the guard and threads are bounded by RLIMIT_AS.
        "rlimits": _rlimits(limits, count_processes=False),
    }
    start = time.monotonic()
    process = subprocess.Popen(
        [python, "-I", "-c", _BOOTSTRAP_STUB, _BOOTSTRAP, json.dumps({"guard": guard})],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=workdir,
        env=_clean_env(workdir),
        start_new_session=True,
    )
    try:
        collected = _collect(process, code, limits, start, None)
    finally:
        _finish(process)
    exit_code = None if collected.stopped else process.returncode
    return collected.result(exit_code, AUDIT_HOOK)


@dataclass
class _Collected:
    stdout: bytes
    stderr: bytes
    control: bytes
    timed_out: bool
    truncated: bool
    seconds: float

    @property
    def stopped(self) -> bool:
        return self.timed_out or self.truncated

    def result(self, exit_code: int | None, isolation: str) -> PythonRun:
        return PythonRun(
            stdout=self.stdout.decode("utf-8", "replace"),
            stderr=self.stderr.decode("utf-8", "replace"),
            exit_code=exit_code,
            timed_out=self.timed_out,
            output_truncated=self.truncated,
            seconds=self.seconds,
            isolation=isolation,
        )


def _collect(process: subprocess.Popen, code: str, limits: SandboxLimits, start: float, ctrl: int | None) -> _Collected:
    """Feed `code` on stdin, read capped output until every pipe closes, and enforce the wall-clock timeout."""
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    pending = code.encode("utf-8", "replace")
    buffers = {process.stdout.fileno(): bytearray(), process.stderr.fileno(): bytearray()}
    control = bytearray()
    deadline = start + limits.timeout_s
    stop_by: float | None = None  # after we kill, pipes should close at once; don't wait forever if not
    timed_out = truncated = False
    stdin_fd = process.stdin.fileno()
    os.set_blocking(stdin_fd, False)
    with selectors.DefaultSelector() as selector:
        selector.register(stdin_fd, selectors.EVENT_WRITE)
        for fd in buffers:
            selector.register(fd, selectors.EVENT_READ)
        if ctrl is not None:
            selector.register(ctrl, selectors.EVENT_READ)
        while selector.get_map():
            now = time.monotonic()
            if stop_by is None and now >= deadline:
                timed_out = True
                stop_by = now + _KILL_GRACE_S
                _kill_group(process)
            if stop_by is not None and now >= stop_by:
                break
            for key, _ in selector.select((stop_by or deadline) - now):
                fd = key.fd
                if fd == stdin_fd:
                    try:
                        written = os.write(fd, pending[:_READ_CHUNK])
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        written = len(pending)
                    pending = pending[written:]
                    if not pending:
                        selector.unregister(fd)
                        process.stdin.close()
                    continue
                chunk = os.read(fd, _READ_CHUNK)
                if not chunk:
                    selector.unregister(fd)
                    continue
                if fd == ctrl:
                    control += chunk[: 4096 - len(control)]
                    continue
                buffer = buffers[fd]
                room = limits.max_output_bytes - len(buffer)
                buffer += chunk[: max(room, 0)]
                if len(chunk) > room and not truncated and stop_by is None:
                    truncated = True
                    stop_by = time.monotonic() + _KILL_GRACE_S
                    _kill_group(process)
        if stdin_fd in selector.get_map():
            process.stdin.close()
    if stop_by is None and not _wait_until(process, deadline):
        timed_out = True
        _kill_group(process)
    seconds = time.monotonic() - start
    return _Collected(
        bytes(buffers[process.stdout.fileno()]),
        bytes(buffers[process.stderr.fileno()]),
        bytes(control),
        timed_out,
        truncated,
        seconds,
    )


def _wait_until(process: subprocess.Popen, deadline: float) -> bool:
    """Wait for exit without reaping (so its process group id stays ours to kill); False at the deadline."""
    while True:
        try:
            if os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the run's process group; the leader is not reaped yet, so the group id cannot have been reused."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _finish(process: subprocess.Popen) -> None:
    """Kill whatever is left of the run, reap the launcher and close our ends of its pipes."""
    _kill_group(process)
    process.wait()
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def _remove_tree(path: str) -> None:
    # A program may leave directories without write or search permission; restore them so rmtree can finish.
    for folder, subfolders, _files in os.walk(path):
        for name in subfolders:
            with contextlib.suppress(OSError, NotImplementedError):
                os.chmod(os.path.join(folder, name), 0o700, follow_symlinks=False)
    shutil.rmtree(path, ignore_errors=True)


# Runs as `python -I -S -c _LAUNCHER CONFIG` outside the sandbox, becomes the namespaces' parent (A), their PID 1
# (B) and finally execs the sandboxed interpreter (C). Only the standard library; everything is imported before
# pivot_root because afterwards this interpreter's own files may no longer exist.
_LAUNCHER = (
    f"# {PROCESS_MARKER}: launcher\n"
    r'''
import ctypes, json, os, resource, signal, sys

CFG = json.loads(sys.argv[1])
CTRL = CFG["ctrl_fd"]
LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
LIBC.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
LIBC.unshare.argtypes = (ctypes.c_int,)
LIBC.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
LIBC.syscall.restype = ctypes.c_long
NAMESPACES = {"user": 0x10000000, "mount": 0x00020000, "pid": 0x20000000, "net": 0x40000000,
              "ipc": 0x08000000, "uts": 0x04000000, "cgroup": 0x02000000}
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = 1024, 2048, 4096, 16384, 1 << 18, 1 << 21
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, MNT_DETACH = 1, 38, 2


class Failed(Exception):
    pass


def report(line):
    os.write(CTRL, (" ".join(line.split("\n")) + "\n").encode())


def check(result, what):
    if result != 0:
        code = ctypes.get_errno()
        raise Failed(f"{what}: {os.strerror(code)} (errno {code})")


def path(text):
    return None if text is None else os.fsencode(text)


def mount(source, target, fstype, flags, data=None):
    what = f"mount({source or fstype} on {target})"
    check(LIBC.mount(path(source), path(target), path(fstype), flags, path(data)), what)


def bind_read_only(source, target):
    mount(source, target, None, MS_BIND)
    # A remount inside a user namespace must keep the source's locked flags (atime, noexec) or it fails with EPERM.
    flags = os.statvfs(source).f_flag
    keep = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV
    for st_flag, ms_flag in ((os.ST_NOEXEC, MS_NOEXEC), (os.ST_NOATIME, MS_NOATIME),
                             (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME)):
        if flags & st_flag:
            keep |= ms_flag
    mount(None, target, None, keep)


def refuse_nested_user_namespaces(root):
    for proc in ("/proc", root + "/proc"):
        try:
            with open(proc + "/sys/user/max_user_namespaces", "w") as file:
                file.write("0")
            return
        except OSError:
            pass


def build_root():
    root, uid = CFG["root"], CFG["uid"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=0755")
    for name in ("proc", "dev", "sandbox", "tmp", "etc"):
        os.mkdir(f"{root}/{name}", 0o755)
    scratch = f"size={CFG['scratch_bytes']},nr_inodes=65536"
    mount("tmpfs", root + "/sandbox", "tmpfs", MS_NOSUID | MS_NODEV, f"{scratch},mode=0700,uid={uid},gid={uid}")
    mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"{scratch},mode=1777")
    os.mkdir(root + "/dev/shm")  # multiprocessing's locks and queues need POSIX shared memory
    mount("tmpfs", root + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"{scratch},mode=1777")
    for kind, source, target in CFG["entries"]:
        dest = root + target
        os.makedirs(os.path.dirname(dest), mode=0o755, exist_ok=True)
        if kind == "symlink":
            os.symlink(source, dest)
        elif kind == "dir":
            os.makedirs(dest, mode=0o755, exist_ok=True)
            bind_read_only(source, dest)
        else:
            open(dest, "a").close()
            if kind == "device":
                mount(source, dest, None, MS_BIND)
            else:
                bind_read_only(source, dest)
    try:
        mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except Failed:
        pass  # e.g. Docker masks parts of /proc, which forbids new proc mounts; Python does not need /proc
    refuse_nested_user_namespaces(root)
    os.chdir(root)
    check(LIBC.syscall(ctypes.c_long(CFG["pivot_root"]), ctypes.c_char_p(b"."), ctypes.c_char_p(b".")), "pivot_root")
    check(LIBC.umount2(b".", MNT_DETACH), "detaching the old root")
    os.chdir("/")
    mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def exec_python():
    os.chdir("/sandbox")
    uid = CFG["uid"]
    if CFG["drop_groups"]:
        os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    check(LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    for name, soft, hard in CFG["rlimits"]:
        resource.setrlimit(getattr(resource, name), (soft, hard))
    os.set_inheritable(CTRL, False)
    os.execve(CFG["python"], CFG["argv"], CFG["env"])


def init():
    """PID 1 of the new namespace: build the root, run the program, report its status; exiting kills the rest."""
    check(LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    build_root()
    child = os.fork()
    if child == 0:
        try:
            exec_python()
        except BaseException as exc:
            report(f"error starting {CFG['python']} in the sandbox: {type(exc).__name__}: {exc}")
        os._exit(125)
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            report(f"status {status}")
            return


def main():
    try:
        check(LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
        flags = 0
        for value in NAMESPACES.values():
            flags |= value
        check(LIBC.unshare(flags), f"unshare({'|'.join(NAMESPACES)} namespaces)")
    except Failed as exc:
        report(f"error {exc}")
        os._exit(125)
    report("unshared")
    if os.read(CFG["go_fd"], 2) != b"go":
        os._exit(125)
    os.close(CFG["go_fd"])
    pid = os.fork()
    if pid == 0:
        try:
            init()
        except BaseException as exc:
            report(f"error {type(exc).__name__}: {exc}")
        os._exit(0)
    os.waitpid(pid, 0)
    os._exit(0)


main()
'''
)

# A file name of its own keeps the bootstrap's frames (the guard's, in tracebacks of refused calls) apart from the
# program's "<string>".
_BOOTSTRAP_STUB = "import sys; exec(compile(sys.argv[1], '<sandbox-bootstrap>', 'exec'))"

# Runs as `python -I -c _BOOTSTRAP_STUB _BOOTSTRAP CONFIG`, the sandboxed interpreter: reads the program from stdin,
# points stdin at /dev/null, installs the audit-hook guard when configured, and runs the program as `__main__` with
# tracebacks that start at the program's own frames.
_BOOTSTRAP = (
    f"# {PROCESS_MARKER}: bootstrap\n"
    r'''
import sys


def _frontier_sandbox_guard(work, read_roots, read_files, rlimits):
    import errno, os, resource

    for name, soft, hard in rlimits:
        resource.setrlimit(getattr(resource, name), (soft, hard))
    # Imported before the hook so that numpy & co. can still `import ctypes`; every ctypes call is refused below.
    # subprocess is preloaded and its C helper disarmed: `_posixsubprocess.fork_exec` raises no audit event.
    for module in ("ctypes", "subprocess"):
        try:
            __import__(module)
        except ImportError:
            pass
    posixsubprocess = sys.modules.get("_posixsubprocess")
    if posixsubprocess is not None:
        def fork_exec(*args, **kwargs):
            raise PermissionError(errno.EPERM, "starting processes is denied by the sandbox")
        posixsubprocess.fork_exec = fork_exec

    work = os.path.realpath(work)
    read_roots = tuple(read_roots) + (work,)
    read_files = frozenset(read_files)
    write_mask = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    realpath, fsdecode, fspath, isabs, isdir, getpid, getpgrp = (
        os.path.realpath, os.fsdecode, os.fspath, os.path.isabs, os.path.isdir, os.getpid, os.getpgrp)
    denied = frozenset((
        "os.system", "os.fork", "os.forkpty", "os.exec", "os.spawn", "os.posix_spawn", "os.startfile",
        "subprocess.Popen", "pty.spawn", "os.symlink", "os.link", "sys.addaudithook", "code.__new__",
        "gc.get_objects", "gc.get_referrers", "gc.get_referents", "resource.setrlimit", "resource.prlimit",
        "signal.pthread_kill", "sqlite3.enable_load_extension", "sqlite3.load_extension", "os.chroot",
    ))
    denied_prefixes = ("socket.", "ctypes.", "_winapi.", "winreg.", "msvcrt.")
    denied_imports = frozenset(("_ctypes", "_posixsubprocess", "_xxsubinterpreters", "_testcapi",
                                "_testinternalcapi", "_cffi_backend", "cffi"))
    write_events = frozenset(("os.chmod", "os.chown", "os.mkdir", "os.remove", "os.rmdir", "os.truncate",
                              "os.utime", "os.chflags", "os.lchflags", "os.mkfifo", "os.mknod", "os.setxattr",
                              "os.removexattr", "shutil.chown", "shutil.rmtree"))
    read_events = frozenset(("os.listdir", "os.scandir", "os.chdir", "os.getxattr", "os.listxattr"))

    def within(path, roots):
        return any(path == root or path.startswith(root + "/") for root in roots)

    def deny_path(path):
        raise PermissionError(errno.EACCES, "denied by the sandbox", path)

    def resolve(path):
        """The real path to check, or None for an already open file descriptor."""
        if path is None:
            return realpath(".")
        if isinstance(path, int):
            return None
        text = fsdecode(fspath(path))
        # With dir_fd a relative ".." path is resolved against another directory than ours; refuse it outright.
        if not isabs(text) and ".." in text.split("/"):
            deny_path(text)
        return realpath(text)

    def check_read(path):
        real = resolve(path)
        if real is not None and real not in read_files and not within(real, read_roots):
            deny_path(path)

    def check_write(path):
        real = resolve(path)
        if real is not None and not within(real, (work,)):
            deny_path(path)

    def guard(event, args):
        if event == "open":
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & write_mask)
            (check_write if writing else check_read)(path)
            # The audit events do not carry dir_fd, so a descriptor of an outside directory would let relative
            # paths (checked against the work dir) land there: only the work dir's own directories may be opened.
            real = resolve(path)
            if not writing and real is not None and not within(real, (work,)) and isdir(real):
                raise PermissionError(
                    errno.EACCES, "denied by the sandbox: folders outside the work dir cannot be opened", path)
        elif event in read_events:
            check_read(args[0])
        elif event in write_events:
            check_write(args[0])
        elif event == "os.rename":
            check_write(args[0])
            check_write(args[1])
        elif event == "import":
            if args[0].partition(".")[0] in denied_imports:
                raise ImportError(f"importing {args[0]} is denied by the sandbox")
        elif event == "sqlite3.connect":
            database = args[0]
            if database not in (":memory:", "", b":memory:", b""):
                check_write(database)
        elif event == "os.kill":
            if args[0] not in (0, getpid()):
                raise PermissionError(errno.EPERM, "signalling other processes is denied by the sandbox")
        elif event == "os.killpg":
            if args[0] not in (0, getpgrp()):
                raise PermissionError(errno.EPERM, "signalling other processes is denied by the sandbox")
        elif event == "object.__setattr__":
            if args[1] == "__code__":
                raise PermissionError(errno.EPERM, "replacing code objects is denied by the sandbox")
        elif event in denied or event.startswith(denied_prefixes):
            raise PermissionError(errno.EPERM, f"{event} is denied by the sandbox")

    sys.addaudithook(guard)


def _frontier_sandbox_main():
    import json, linecache, os, traceback, types

    config = json.loads(sys.argv[2])
    source = sys.stdin.buffer.read().decode("utf-8", "replace")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.argv = [""]
    sys.dont_write_bytecode = True
    sys.stdout.reconfigure(line_buffering=True)  # what was printed before a timeout kill still arrives
    filename = "<string>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    try:
        code = compile(source, filename, "exec")
    except (SyntaxError, ValueError) as exc:
        traceback.print_exception(type(exc), exc, None)
        return 1
    if "guard" in config:
        _frontier_sandbox_guard(**config["guard"])
    main = types.ModuleType("__main__")
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    try:
        exec(code, main.__dict__)
    except SystemExit:
        raise
    except BaseException as exc:
        exc.__traceback__ = exc.__traceback__.tb_next  # hide this bootstrap's frame
        traceback.print_exception(type(exc), exc, exc.__traceback__)
        return 1
    return 0


sys.exit(_frontier_sandbox_main())
'''
)
