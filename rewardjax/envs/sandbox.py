"""A sandbox for model-written code: Python, or SQL through SQLite, in a separate process.

`run(program, limits)` executes one `PythonProgram` or `SQLProgram` and returns a
frozen `Result` with stdout, stderr, the exit status and a named `Reason`;
`run_many(programs, limits, max_workers=...)` runs many at once on a thread pool
(each thread waits on its own subprocesses, so the GIL is not the bottleneck). The
trainer never executes model output itself and never unpickles anything the child
sends: the child talks back in JSON lines, and stdout/stderr are read in chunks and
kept up to `Limits.output_bytes` each (the child is killed past that).

Isolation, detected once per process by running a probe program (`capabilities()`):

* ``namespaces`` (Linux): the program runs in new mount, pid, network, IPC and UTS
  namespaces. As root, it runs as a uid of its own from a high range (so
  `RLIMIT_NPROC`, which root ignores, counts only this sandbox's processes); as
  another user, the namespaces sit in an unprivileged user namespace and the program
  runs as uid 1000 of a nested one, without capabilities (it is the trainer's uid
  on the host, and keeps the trainer's supplementary groups: a kernel rule), and
  `RLIMIT_NPROC` counts per user namespace. Both with `no_new_privs` and every mount
  read-only and nosuid (required without root). `$HOME`, /root, /home, /run
  and /var/tmp are covered by empty tmpfs (the interpreter's own directories are
  bound back read-only when they live there); /tmp (and /dev/shm) are private tmpfs
  of `disk_mb` each; /tmp/work is the working directory and `$HOME`, and all of it
  vanishes with the namespace. The network namespace has only a loopback that is
  down. The trainer is invisible from the pid namespace, the program's parent is
  the namespace's init (signals from inside cannot kill it; it is not dumpable), and
  init's exit kills every process left inside.
* ``rlimits`` (anything else): the same rlimits, a private directory under the
  system temp dir that is deleted afterwards, and a Python audit hook that refuses
  network calls, signals outside the program's session and, when the process count
  cannot be limited, starting processes. As root the program still gets a uid of its
  own if that uid can read the interpreter (not when it lives under /root), which
  keeps it out of root's files and makes the process limit work; otherwise it runs
  as the trainer's user and can read and write what that user can. An audit hook
  can be bypassed with ctypes. A warning is logged once.

Limits (all per execution): wall time (from the moment the program starts, after the
interpreter is up), CPU time (`RLIMIT_CPU`, whole seconds, includes interpreter
start-up), memory (`RLIMIT_AS`: address space, not resident memory), processes and
threads (`RLIMIT_NPROC`), open files (`RLIMIT_NOFILE`), bytes written to files
(`RLIMIT_FSIZE`, and the tmpfs size and inode count) and bytes of stdout/stderr.
Memory held by concurrent sandboxes adds up: `max_workers` x (`memory_mb` + 2 x
`disk_mb`, for /tmp and /dev/shm) at most.
"""

from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import enum
import errno as errno_mod
import functools
import json
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from types import MappingProxyType
from typing import Literal, Mapping, NamedTuple, Sequence

logger = logging.getLogger(__name__)

Isolation = Literal["auto", "namespaces", "rlimits"]
_CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sandbox_child.py")
# Interpreter start-up and mounts, before the program's wall clock starts; generous
# because 64 sandboxes starting at once on two busy cores take seconds.
_SETUP_TIMEOUT_S = 120.0
_REPORT_CAP = 1 << 16
_TEMP_PREFIX = "rewardjax-sandbox-"
# uids 2**30 + pid * 512 + slot: distinct across live trainer processes (the kernel
# caps pid_max at 2**22) and concurrent sandboxes, and below 2**32 - 1.
_UID_BASE = 1 << 30
_UID_SLOTS = 512
_FORBIDDEN_ERRNOS = {
    errno_mod.EPERM, errno_mod.EACCES, errno_mod.EROFS, errno_mod.ENETUNREACH,
    errno_mod.ENETDOWN, errno_mod.EHOSTUNREACH, errno_mod.EADDRNOTAVAIL,
}


class Reason(str, enum.Enum):
    """Why an execution ended; `OK` means exit status 0 within every limit."""

    OK = "ok"
    TIMEOUT = "timeout"  # wall time
    CPU_TIME = "cpu_time"
    MEMORY = "memory"  # an uncaught MemoryError (the address-space limit)
    PROCESS_LIMIT = "process_limit"  # an uncaught failure to fork or start a thread
    OUTPUT_LIMIT = "output_limit"
    DISK_LIMIT = "disk_limit"  # an uncaught ENOSPC/EFBIG: the files passed `disk_mb`
    FORBIDDEN = "forbidden"  # an uncaught error from something the sandbox refuses
    NONZERO_EXIT = "nonzero_exit"  # any other uncaught exception or exit status
    CRASH = "crash"  # killed by a signal the sandbox did not send
    SANDBOX_ERROR = "sandbox_error"  # the sandbox itself could not start


class InvalidLimitError(ValueError):
    """A `Limits` field is not a positive number of the right type."""


class InvalidProgramError(ValueError):
    """A program's source, files or database cannot be run as given."""


def _positive(name: str, value, kind: type) -> None:
    ok_type = isinstance(value, kind) and not isinstance(value, bool)
    if kind is float:
        ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok_type:
        raise InvalidLimitError(f"Limits.{name} = {value!r}: expected a positive {kind.__name__}")
    if not value > 0:
        raise InvalidLimitError(f"Limits.{name} = {value!r}: expected > 0")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Limits:
    """Per-execution limits; see the module docstring for what each one bounds."""

    wall_s: float = 10.0
    cpu_s: float = 5.0
    memory_mb: int = 512
    max_processes: int = 16
    output_bytes: int = 1 << 20  # each of stdout and stderr
    disk_mb: int = 64
    max_open_files: int = 256

    def __post_init__(self):
        for name, kind in (("wall_s", float), ("cpu_s", float), ("memory_mb", int),
                           ("max_processes", int), ("output_bytes", int), ("disk_mb", int),
                           ("max_open_files", int)):
            _positive(name, getattr(self, name), kind)
        if self.memory_mb < 32:
            raise InvalidLimitError(
                f"Limits.memory_mb = {self.memory_mb}: expected >= 32 (the interpreter alone maps ~20 MB)"
            )


def _frozen_files(files: Mapping[str, str | bytes], reserved: set[str]) -> Mapping[str, bytes]:
    out = {}
    for name, data in files.items():
        parts = name.replace("\\", "/").split("/")
        if not name or name.startswith("/") or ".." in parts or "" in parts:
            raise InvalidProgramError(f"files[{name!r}]: expected a relative path inside the working directory")
        if name in reserved:
            raise InvalidProgramError(f"files[{name!r}]: this name is reserved by the sandbox ({sorted(reserved)})")
        if not isinstance(data, (str, bytes)):
            raise InvalidProgramError(f"files[{name!r}]: expected str or bytes, got {type(data).__name__}")
        out[name] = data.encode() if isinstance(data, str) else bytes(data)
    return MappingProxyType(out)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PythonProgram:
    """Python source run as `main.py` in the working directory, with `args` as argv[1:].

    `files` are written next to it first (relative paths); `stdin` is its standard input.
    """

    source: str
    stdin: str | bytes = b""
    files: Mapping[str, str | bytes] = dataclasses.field(default_factory=dict)
    args: tuple[str, ...] = ()

    def __post_init__(self):
        if not isinstance(self.source, str):
            raise InvalidProgramError(f"PythonProgram.source: expected str, got {type(self.source).__name__}")
        object.__setattr__(self, "files", _frozen_files(self.files, {"main.py"}))
        object.__setattr__(self, "args", tuple(str(a) for a in self.args))

    def _payload(self) -> tuple[str, dict[str, bytes], bytes, tuple[str, ...]]:
        stdin = self.stdin.encode() if isinstance(self.stdin, str) else bytes(self.stdin)
        return "python", {**self.files, "main.py": self.source.encode()}, stdin, self.args


@dataclasses.dataclass(frozen=True, kw_only=True)
class SQLProgram:
    """One SQLite query; `Result.rows` holds its rows (blobs as bytes).

    `database` is a path on the trainer's side (copied in, so the query cannot change
    the original) or the database file's bytes; `schema` is an SQL script run first.
    With neither, the query runs on an empty in-memory database.
    """

    query: str
    schema: str = ""
    database: str | os.PathLike | bytes | None = None

    def __post_init__(self):
        if not isinstance(self.query, str) or not self.query.strip():
            raise InvalidProgramError(f"SQLProgram.query = {self.query!r}: expected a non-empty SQL string")
        if not isinstance(self.schema, str):
            raise InvalidProgramError(f"SQLProgram.schema: expected str, got {type(self.schema).__name__}")
        db = self.database
        if db is not None and not isinstance(db, bytes) and not os.path.isfile(db):
            raise InvalidProgramError(f"SQLProgram.database = {db!r}: no such file")

    def _payload(self) -> tuple[str, dict[str, bytes], bytes, tuple[str, ...]]:
        files = {"query.sql": self.query.encode()}
        if self.schema:
            files["schema.sql"] = self.schema.encode()
        if isinstance(self.database, bytes):
            files["database.sqlite"] = self.database
        elif self.database is not None:
            with open(self.database, "rb") as f:
                files["database.sqlite"] = f.read()
        return "sql", files, b"", ()


Program = PythonProgram | SQLProgram


@dataclasses.dataclass(frozen=True, kw_only=True)
class Result:
    """What one execution produced. `started`/`finished` are `time.monotonic()` stamps
    of the program's start (after set-up) and of the end of its output."""

    reason: Reason
    stdout: str
    stderr: str
    exit_code: int | None  # None when killed by a signal or never started
    signal: int | None
    stdout_truncated: bool
    stderr_truncated: bool
    exception: str | None  # the uncaught exception's type, e.g. "ZeroDivisionError"
    error: str | None  # one line saying what went wrong; None when reason is OK
    rows: tuple[tuple, ...] | None  # SQLProgram only, and only when reason is OK
    cpu_s: float | None
    wall_s: float
    started: float | None
    finished: float

    @property
    def ok(self) -> bool:
        return self.reason is Reason.OK


@dataclasses.dataclass(frozen=True, kw_only=True)
class Capabilities:
    """What isolation this machine gives (see the module docstring for each mode)."""

    mode: Literal["namespaces", "rlimits"]
    user_namespace: bool  # namespaces made without root, inside a user namespace
    process_limit: bool  # the process count is enforced (a uid or user namespace per sandbox)
    read_only_root: bool
    network_isolated: bool  # by the kernel (the audit hook applies in every mode)
    note: str


class _Plan(NamedTuple):
    mode: str  # "namespaces" or "rlimits"
    own_uid: bool  # as root: run as a uid from `uid_block`
    userns: bool  # not root: namespaces inside a user namespace


class _UidPool:
    def __init__(self):
        self._cond = threading.Condition()
        self._free = list(range(_UID_SLOTS))

    def acquire(self) -> int:
        with self._cond:
            while not self._free:
                self._cond.wait()
            slot = self._free.pop()
        return uid_block(os.getpid())[slot]

    def release(self, uid: int) -> None:
        with self._cond:
            self._free.append((uid - _UID_BASE) % _UID_SLOTS)
            self._cond.notify()


def uid_block(pid: int) -> range:
    """The uids that sandboxes started by process `pid` run as (namespaces mode, or root)."""
    start = _UID_BASE + (pid % (1 << 22)) * _UID_SLOTS
    return range(start, start + _UID_SLOTS)


_uids = _UidPool()


def _hidden_paths() -> tuple[str, ...]:
    paths = [os.path.expanduser("~"), "/root", "/home", "/run", "/var/tmp"]
    return tuple(sorted({os.path.realpath(p) for p in paths if p and os.path.isabs(p)}))


@functools.lru_cache(maxsize=4)
def _rebind_paths(hidden: tuple[str, ...]) -> list[str]:
    """The interpreter's directories that hiding would remove, outermost first."""
    import site

    wanted = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable)),
              *site.getsitepackages()}
    wanted = {os.path.realpath(p) for p in wanted if os.path.isdir(p)}
    inside = [p for p in wanted if any(p == h or p.startswith(h + "/") for h in hidden)]
    # A directory already covered by a broader bind needs no bind of its own.
    return sorted(p for p in inside if not any(q != p and p.startswith(q + "/") for q in inside))


def _execute(program: Program, limits: Limits, plan: _Plan) -> Result:
    if not isinstance(program, (PythonProgram, SQLProgram)):
        raise InvalidProgramError(f"program: expected a PythonProgram or SQLProgram, got {type(program).__name__}")
    language, files, stdin, args = program._payload()
    t0 = time.monotonic()
    uid = _uids.acquire() if plan.own_uid else None
    workdir = None
    try:
        if plan.mode == "rlimits":
            workdir = tempfile.mkdtemp(prefix=_TEMP_PREFIX)
            if uid is not None:
                os.chown(workdir, uid, uid)
        hidden = _hidden_paths()
        payload = {
            "mode": plan.mode, "userns": plan.userns, "uid": uid, "workdir": workdir, "parent_pid": os.getpid(),
            "language": language, "args": list(args), "cpu_s": limits.cpu_s, "memory_bytes": limits.memory_mb << 20,
            "disk_bytes": limits.disk_mb << 20, "max_processes": limits.max_processes,
            "max_open_files": limits.max_open_files,
            "enforce_nproc": uid is not None or plan.userns, "hidden": list(hidden), "rebind": _rebind_paths(hidden),
            "stdin": base64.b64encode(stdin).decode(),
            "files": [[n, base64.b64encode(d).decode()] for n, d in files.items()],
        }
        return _start_and_collect(payload, limits, language, t0)
    except OSError as e:
        # The trainer itself is short of something (fds, memory to fork): the rollout
        # gets a failed result rather than an exception that would end the batch.
        now = time.monotonic()
        return Result(reason=Reason.SANDBOX_ERROR, stdout="", stderr="", exit_code=None, signal=None,
                      stdout_truncated=False, stderr_truncated=False, exception=None,
                      error=f"could not start the sandbox: {e}", rows=None, cpu_s=None, wall_s=now - t0,
                      started=None, finished=now)
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        if uid is not None:
            _uids.release(uid)


def _start_and_collect(payload: dict, limits: Limits, language: str, t0: float) -> Result:
    status_r, status_w = os.pipe()
    try:
        report_r, report_w = os.pipe()
    except OSError:
        os.close(status_r)
        os.close(status_w)
        raise
    try:
        payload["status_fd"], payload["report_fd"] = status_w, report_w
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-B", _CHILD, "supervise"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                pass_fds=(status_w, report_w), start_new_session=True, cwd="/",
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
            )
        finally:
            os.close(status_w)
            os.close(report_w)
        return _collect(proc, json.dumps(payload).encode(), status_r, report_r, limits, language, t0)
    finally:
        os.close(status_r)
        os.close(report_r)


def _parse_lines(data: bytes) -> list[dict]:
    out = []
    for line in data.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM lets the supervisor kill the tree it made; SIGKILL if it does not go."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()


def _collect(proc, payload: bytes, status_r: int, report_r: int, limits: Limits, language: str, t0: float):
    """Feeds the payload, then reads all four pipes until they close or a limit is hit."""
    try:
        proc.stdin.write(payload)
        proc.stdin.close()
    except OSError:
        pass  # the supervisor died early; its status tells why
    caps = {"stdout": limits.output_bytes, "stderr": limits.output_bytes, "status": _REPORT_CAP,
            "report": _REPORT_CAP}
    bufs = {k: bytearray() for k in caps}
    over = dict.fromkeys(caps, False)
    sel = selectors.DefaultSelector()
    for name, fd in (("stdout", proc.stdout.fileno()), ("stderr", proc.stderr.fileno()),
                     ("status", status_r), ("report", report_r)):
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ, name)
    started = None
    killed_for = None
    exited_at = None
    try:
        while sel.get_map():
            now = time.monotonic()
            deadline = t0 + _SETUP_TIMEOUT_S if started is None else started + limits.wall_s
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None:
                # Stray holders of the pipes (only possible without a pid namespace).
                deadline = min(deadline, exited_at + 2.0)
            if now >= deadline:
                if exited_at is None:
                    killed_for = Reason.TIMEOUT if started is not None else Reason.SANDBOX_ERROR
                    _stop(proc)
                break
            for key, _ in sel.select(timeout=min(deadline - now, 0.25)):
                name = key.data
                try:
                    chunk = os.read(key.fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                room = caps[name] - len(bufs[name])
                bufs[name] += chunk[:room]
                if len(chunk) > room:
                    over[name] = True
                    if name in ("stdout", "stderr") and killed_for is None:
                        killed_for = Reason.OUTPUT_LIMIT
                        _stop(proc)
                if name == "report" and started is None and b'"started"' in bufs[name]:
                    started = time.monotonic()
            if killed_for is Reason.OUTPUT_LIMIT:
                break
    finally:
        sel.close()
        _stop(proc)
        proc.stdout.close()
        proc.stderr.close()
    finished = time.monotonic()
    return _classify(
        status=_parse_lines(bytes(bufs["status"])), report=_parse_lines(bytes(bufs["report"])),
        stdout=bytes(bufs["stdout"]), stderr=bytes(bufs["stderr"]), over=over, killed_for=killed_for,
        limits=limits, language=language, started=started, finished=finished, t0=t0,
    )


def _classify(*, status, report, stdout, stderr, over, killed_for, limits, language, started, finished, t0):
    final = next((s for s in reversed(status) if "exit_code" in s or "signal" in s), {})
    setup_error = next((s["setup_error"] for s in status if "setup_error" in s), None)
    exc = next((r for r in report if "exception" in r), None)
    exit_code, sig = final.get("exit_code"), final.get("signal")
    cpu_s = final.get("cpu_s")
    exception = exc["exception"] if exc else None
    error = f"{exc['module']}.{exc['exception']}: {exc['message']}" if exc else None
    if killed_for is Reason.OUTPUT_LIMIT:
        reason, error = Reason.OUTPUT_LIMIT, f"output passed the {limits.output_bytes}-byte limit"
    elif killed_for is Reason.TIMEOUT:
        reason, error = Reason.TIMEOUT, f"still running after the {limits.wall_s} s wall-time limit"
    elif setup_error is not None or not final:
        reason = Reason.SANDBOX_ERROR
        if setup_error is not None:
            error = setup_error
        elif killed_for:
            error = f"the sandbox did not start within {_SETUP_TIMEOUT_S} s"
        else:
            error = "the sandbox ended without a status"
    elif sig is not None:
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_s is not None and cpu_s >= limits.cpu_s):
            reason, error = Reason.CPU_TIME, f"used the {limits.cpu_s} s CPU-time limit"
        else:
            reason, error = Reason.CRASH, f"killed by {signal.Signals(sig).name}"
    elif exit_code == 0:
        reason, error = Reason.OK, None
    elif exc is None:
        reason, error = Reason.NONZERO_EXIT, f"exit status {exit_code}"
    elif exception == "MemoryError":
        reason = Reason.MEMORY
        error = f"builtins.MemoryError: over the {limits.memory_mb} MB address-space limit"
    elif (exc["errno"] == errno_mod.EAGAIN and exception in ("BlockingIOError", "OSError")) or (
        exception == "RuntimeError" and exc["message"] == "can't start new thread"
    ):
        reason = Reason.PROCESS_LIMIT
        error = f"{error} (the limit is {limits.max_processes} processes and threads)"
    elif exc["errno"] in (errno_mod.ENOSPC, errno_mod.EFBIG, errno_mod.EDQUOT):
        reason = Reason.DISK_LIMIT
        error = f"{error} (the limit is {limits.disk_mb} MB of files)"
    elif exc["denied"] or exc["errno"] in _FORBIDDEN_ERRNOS or exception == "gaierror":
        reason = Reason.FORBIDDEN
    else:
        reason = Reason.NONZERO_EXIT
    rows = None
    if language == "sql" and reason is Reason.OK:
        rows = tuple(tuple(bytes.fromhex(v["hex"]) if isinstance(v, dict) else v for v in json.loads(line))
                     for line in stdout.splitlines() if line.strip())
    return Result(
        reason=reason, stdout=stdout.decode("utf-8", "replace"), stderr=stderr.decode("utf-8", "replace"),
        exit_code=exit_code, signal=sig, stdout_truncated=over["stdout"], stderr_truncated=over["stderr"],
        exception=exception, error=error, rows=rows, cpu_s=cpu_s, wall_s=finished - (started or t0),
        started=started, finished=finished,
    )


_PROBE = PythonProgram(source="import os\nprint(bool(os.statvfs('/').f_flag & os.ST_RDONLY))\n")
_PROBE_LIMITS = Limits(wall_s=30.0, cpu_s=10.0, memory_mb=256, max_processes=8, disk_mb=1)


def _probe(plan: _Plan) -> Result | None:
    r = _execute(_PROBE, _PROBE_LIMITS, plan)
    return r if r.ok else None


@functools.lru_cache(maxsize=1)
def _rlimits_plan() -> _Plan:
    # As root the uid drop also works without namespaces, unless the interpreter
    # lives where that uid cannot read it (e.g. under /root).
    own = os.geteuid() == 0 and _probe(_Plan("rlimits", own_uid=True, userns=False)) is not None
    return _Plan("rlimits", own_uid=own, userns=False)


@functools.lru_cache(maxsize=1)
def _best_plan() -> tuple[_Plan, Capabilities]:
    if sys.platform != "linux":
        raise RuntimeError(f"the sandbox needs Linux (memfd, prctl, namespaces); this is {sys.platform}")
    root = os.geteuid() == 0
    plan = _Plan("namespaces", own_uid=root, userns=not root)
    r = _probe(plan)
    if r is not None:
        who = "a uid per sandbox" if root else "an unprivileged user namespace per sandbox"
        caps = Capabilities(mode="namespaces", user_namespace=not root, process_limit=True,
                            read_only_root=r.stdout.strip() == "True", network_isolated=True,
                            note=f"mount, pid, network, IPC and UTS namespaces; {who}")
        return plan, caps
    plan = _rlimits_plan()
    if plan.own_uid:
        note = ("no namespaces: rlimits, a uid per sandbox and an audit hook; the program can read "
                "what any user may read, and reach the network through ctypes")
    else:
        user = "root" if root else f"uid {os.geteuid()}"
        note = (f"no namespaces: rlimits and an audit hook only; the program runs as {user} like the trainer, "
                "can read and write what it can, reach the network through ctypes, and may not start processes")
    logger.warning("rewardjax sandbox: %s", note)
    caps = Capabilities(mode="rlimits", user_namespace=False, process_limit=plan.own_uid, read_only_root=False,
                        network_isolated=False, note=note)
    return plan, caps


def capabilities() -> Capabilities:
    """Probes (once per process, by running a program) for the strongest isolation
    that really works here: namespaces as root, else an unprivileged user namespace,
    else rlimits."""
    return _best_plan()[1]


def _resolve(isolation: Isolation) -> _Plan:
    plan, caps = _best_plan()
    if isolation == "auto":
        return plan
    if isolation == "namespaces":
        if caps.mode != "namespaces":
            raise RuntimeError(f"isolation='namespaces' is not available here: {caps.note}")
        return plan
    if isolation == "rlimits":
        return _rlimits_plan()
    raise ValueError(f"isolation = {isolation!r}: expected 'auto', 'namespaces' or 'rlimits'")


def run(program: Program, limits: Limits = Limits(), *, isolation: Isolation = "auto") -> Result:
    """Runs one program in a fresh sandbox and returns its `Result`; never raises for
    anything the program does (bad `program`/`limits` arguments raise)."""
    if not isinstance(limits, Limits):
        raise InvalidLimitError(f"limits: expected a Limits, got {type(limits).__name__}")
    return _execute(program, limits, _resolve(isolation))


def run_many(
    programs: Sequence[Program],
    limits: Limits | Sequence[Limits] = Limits(),
    *,
    max_workers: int = 8,
    isolation: Isolation = "auto",
) -> list[Result]:
    """Runs the programs concurrently, at most `max_workers` at a time; results in order.

    `limits` is one `Limits` for all or one per program.
    """
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise InvalidLimitError(f"max_workers = {max_workers!r}: expected an int >= 1")
    programs = list(programs)
    per = [limits] * len(programs) if isinstance(limits, Limits) else list(limits)
    if len(per) != len(programs):
        raise InvalidLimitError(f"limits: got {len(per)} Limits for {len(programs)} programs")
    for i, lim in enumerate(per):
        if not isinstance(lim, Limits):
            raise InvalidLimitError(f"limits[{i}]: expected a Limits, got {type(lim).__name__}")
    plan = _resolve(isolation)
    if not programs:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(max_workers, len(programs)),
                                               thread_name_prefix="rewardjax-sandbox") as pool:
        return list(pool.map(lambda pl: _execute(pl[0], pl[1], plan), zip(programs, per)))
