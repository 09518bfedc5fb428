"""The sandbox against hostile programs: each ends with a named reason, and the test
process (standing in for the trainer) is unharmed — alive, its files intact, no
temporary directories or processes left behind.

Tests that run only with `namespaces` need kernel isolation (root, or unprivileged user
namespaces) and skip without it; the ones also run in the `rlimits` fallback check
what that mode promises. Being alive is shown by the test reaching its end.
"""

import errno
import glob
import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time

import pytest

from rewardjax.envs import sandbox
from rewardjax.envs.sandbox import InvalidLimitError, InvalidProgramError, Limits, PythonProgram, Reason, SQLProgram

SMALL = Limits(wall_s=20.0, cpu_s=5.0, memory_mb=128, max_processes=8, output_bytes=1 << 16, disk_mb=8)
MODES = ["namespaces", "rlimits"]


def _needs(mode):
    if mode == "namespaces" and sandbox.capabilities().mode != "namespaces":
        pytest.skip(f"no namespace isolation here: {sandbox.capabilities().note}")


def _limits_processes(mode):
    plan = sandbox._resolve(mode)
    return plan.own_uid or plan.userns


def _strays():
    """Processes of this test's sandbox uids, or children of this process."""
    uids = sandbox.uid_block(os.getpid())
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        uid = int(fields["Uid"].split()[0])
        if uid in uids or fields["PPid"].strip() == me:
            found.append((entry, fields["Name"].strip()))
    return found


@pytest.fixture
def unharmed(tmp_path):
    """Checks afterwards that this process's files and state survived the sandbox."""
    sentinel = tmp_path / "trainer_state.txt"
    sentinel.write_text("precious")
    cwd = os.getcwd()
    temp_before = set(glob.glob(os.path.join(tempfile.gettempdir(), sandbox._TEMP_PREFIX + "*")))
    yield tmp_path
    assert sentinel.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trainer_state.txt"]
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), sandbox._TEMP_PREFIX + "*"))) <= temp_before
    deadline = time.monotonic() + 5
    while _strays() and time.monotonic() < deadline:  # killed ones may take a moment to be reaped
        time.sleep(0.05)
    assert _strays() == []
    assert os.getcwd() == cwd


def run_py(source, mode, limits=SMALL, **kw):
    _needs(mode)
    return sandbox.run(PythonProgram(source=source, **kw), limits, isolation=mode)


@pytest.mark.parametrize("mode", MODES)
def test_infinite_loop_ends_on_cpu_time(mode, unharmed):
    r = run_py("while True:\n    pass\n", mode, Limits(cpu_s=1, wall_s=60, memory_mb=128))
    assert r.reason is Reason.CPU_TIME, r
    assert 0.5 <= r.cpu_s < 3.0  # rusage and the rlimit sample CPU time differently


@pytest.mark.parametrize("mode", MODES)
def test_sleeping_forever_ends_on_wall_time(mode, unharmed):
    start = time.monotonic()
    r = run_py("import time\ntime.sleep(1000)\n", mode, Limits(wall_s=0.5, memory_mb=128))
    assert r.reason is Reason.TIMEOUT, r
    assert 0.5 <= r.wall_s < 10.0 and time.monotonic() - start < 30


@pytest.mark.parametrize("mode", MODES)
def test_fork_bomb_is_contained(mode, unharmed):
    r = run_py("import os\nwhile True:\n    os.fork()\n", mode)
    if _limits_processes(mode):
        assert r.reason is Reason.PROCESS_LIMIT, r
        assert r.exception == "BlockingIOError"
    else:  # the process count cannot be limited, so starting processes is refused
        assert r.reason is Reason.FORBIDDEN, r


HOSTILE = {
    "memory_bomb": ("chunks = []\nwhile True:\n    chunks.append(bytearray(1 << 20))\n", Reason.MEMORY),
    "memory_bomb_at_once": ("x = bytearray(1 << 33)\n", Reason.MEMORY),
    "thread_bomb": ("import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=[60]).start()\n",
                    Reason.PROCESS_LIMIT),
    "network_socket": ("import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 9))\n", Reason.FORBIDDEN),
    "network_by_name": ("import socket\nsocket.create_connection(('example.com', 80), timeout=5)\n", Reason.FORBIDDEN),
    "fd_hoarder": ("import os\nfds = [os.open('/dev/null', os.O_RDONLY) for _ in range(1000)]\n", Reason.NONZERO_EXIT),
    "disk_filler": ("open('big', 'wb').write(b'x' * (20 << 20))\n", Reason.DISK_LIMIT),
    "kill_parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n", Reason.FORBIDDEN),
    "killpg_parent": ("import os, signal\nos.killpg(os.getpgid(os.getppid()), signal.SIGKILL)\n", Reason.FORBIDDEN),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_program_ends_with_its_named_reason(name, mode, unharmed):
    source, reason = HOSTILE[name]
    r = run_py(source, mode)
    assert r.reason is reason, r


def _hidden_in_sandbox(path: str) -> bool:
    """Whether the namespaced sandbox covers `path` with an empty or private tmpfs."""
    path = os.path.realpath(path)
    hidden = ["/tmp", "/var/tmp", "/run", "/root", "/home", "/dev/shm",
              os.path.realpath(os.path.expanduser("~"))]
    return any(path == h or path.startswith(h.rstrip("/") + "/") for h in hidden)


def test_writing_outside_the_working_directory_is_forbidden(unharmed):
    here = os.path.dirname(os.path.abspath(__file__))
    escapes = [os.path.join(here, f"escape_{os.getpid()}.txt"), f"/etc/escape_{os.getpid()}.txt",
               str(unharmed / "escape.txt")]
    try:
        for target in escapes[:2]:
            r = run_py(f"open({target!r}, 'w').write('x')\n", "namespaces")
            if _hidden_in_sandbox(target):
                # a clone under /tmp or $HOME: the sandbox does not even see the directory
                assert r.reason is Reason.NONZERO_EXIT and r.exception == "FileNotFoundError", r
            else:
                assert r.reason is Reason.FORBIDDEN, r
        # The trainer's temp dir does not even exist in the sandbox's private /tmp.
        r = run_py(f"open({escapes[2]!r}, 'w').write('x')\n", "namespaces")
        assert r.reason is Reason.NONZERO_EXIT and r.exception == "FileNotFoundError", r
        r = run_py("open('inside.txt', 'w').write('ok')\nprint(open('inside.txt').read())\n", "namespaces")
        assert r.reason is Reason.OK and r.stdout == "ok\n", r
        assert not any(os.path.exists(p) for p in escapes)
    finally:
        for p in escapes:
            if os.path.exists(p):
                os.remove(p)


def test_many_empty_files_hit_the_disk_limit(unharmed):
    r = run_py("for i in range(100_000):\n    open(f'f{i}', 'w').close()\n", "namespaces")
    assert r.reason is Reason.DISK_LIMIT, r


def test_home_directory_is_hidden(unharmed):
    home = os.path.expanduser("~")
    r = run_py(f"import os\nprint(os.listdir({home!r}))\n", "namespaces")
    assert r.reason is Reason.FORBIDDEN and r.exception == "PermissionError", r
    secret = next((os.path.join(home, n) for n in sorted(os.listdir(home))
                   if os.path.isfile(os.path.join(home, n))), None)
    if secret is None:
        pytest.skip(f"no regular file in {home} to try to read")
    with open(secret, "rb") as f:
        content = f.read()
    r = run_py(f"print(open({secret!r}, 'rb').read())\n", "namespaces")
    # Empty tmpfs over the home: unreadable (mode 0) or, when the interpreter is bound
    # back inside it (mode 0711), the file is simply not there.
    assert r.reason in (Reason.FORBIDDEN, Reason.NONZERO_EXIT), r
    assert r.exception in ("PermissionError", "FileNotFoundError"), r
    assert not content or content[:64].decode(errors="ignore") not in r.stdout


def test_network_namespace_has_no_route_even_past_the_audit_hook(unharmed):
    # Calls libc directly, as a program working around the audit hook would.
    source = """
import ctypes, socket, struct
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
addr = struct.pack('=H', socket.AF_INET) + struct.pack('!H4s8x', 80, socket.inet_aton('1.1.1.1'))
print(libc.connect(fd, addr, len(addr)), ctypes.get_errno())
print([name for _, name in socket.if_nameindex()])
"""
    r = run_py(source, "namespaces")
    assert r.reason is Reason.OK, r
    assert r.stdout.splitlines() == [f"-1 {errno.ENETUNREACH}", "['lo']"]


@pytest.mark.parametrize("mode", MODES)
def test_printing_100_mb_is_cut_at_the_cap(mode, unharmed):
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    source = "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(100):\n    sys.stdout.write(chunk)\n"
    r = run_py(source, mode)
    assert r.reason is Reason.OUTPUT_LIMIT, r
    assert r.stdout_truncated and len(r.stdout) == SMALL.output_bytes and set(r.stdout) == {"x"}
    r = run_py("import sys\nfor _ in range(100):\n    sys.stderr.write('e' * (1 << 20))\n", mode)
    assert r.reason is Reason.OUTPUT_LIMIT and r.stderr_truncated and len(r.stderr) == SMALL.output_bytes
    # ru_maxrss is in KiB: 100 MB read into this process would show here.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 40_000


def test_trainer_is_out_of_reach_even_past_the_audit_hook(unharmed):
    source = f"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
print(os.getppid(), libc.kill(os.getppid(), 9), ctypes.get_errno())
print(libc.kill({os.getpid()}, 9), ctypes.get_errno())
print(libc.kill(-1, 9))
"""
    r = run_py(source, "namespaces")
    assert r.reason is Reason.OK, r
    # The parent is the namespace's init (root-owned: EPERM; in a user namespace the
    # kernel drops the signal), and the trainer's pid does not exist there.
    parent, to_trainer = r.stdout.splitlines()[:2]
    assert parent in (f"1 -1 {errno.EPERM}", "1 0 0") and to_trainer == f"-1 {errno.ESRCH}"


def test_background_process_dies_with_the_program(unharmed):
    source = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(1000)\nprint('parent done')\n"
    r = run_py(source, "namespaces")
    assert r.reason is Reason.OK and r.stdout == "parent done\n", r


def test_64_sandboxes_run_concurrently_within_their_limits(unharmed):
    _needs("namespaces")
    n = 64
    # All programs sleep until one shared moment, so they overlap only if all 64 are
    # up at once; the limits leave headroom for 64 start-ups on a busy machine.
    meet = time.time() + 8.0
    programs = [
        PythonProgram(source=f"import os, time\nwhile time.time() < {meet}:\n    time.sleep(0.02)\n"
                             f"print({i}, os.getuid())\n")
        for i in range(n)
    ]
    limits = Limits(wall_s=30.0, cpu_s=5.0, memory_mb=128, max_processes=4, disk_mb=4)
    results = sandbox.run_many(programs, limits, max_workers=n)
    assert [r.reason for r in results] == [Reason.OK] * n, [r for r in results if not r.ok][:2]
    lines = [r.stdout.split() for r in results]
    assert [int(i) for i, _ in lines] == list(range(n))
    if sandbox._resolve("namespaces").own_uid:
        assert len({uid for _, uid in lines}) == n  # a process-count budget each
    assert max(r.started for r in results) < min(r.finished for r in results)


@pytest.mark.parametrize("mode", MODES)
def test_stdin_files_args_and_exit_status(mode, unharmed):
    source = "import sys, os\nprint(sys.stdin.read().upper(), open('data/in.txt').read(), sys.argv[1:])\nsys.exit(3)\n"
    r = run_py(source, mode, stdin="hello", files={"data/in.txt": "file"}, args=("a", "b"))
    assert r.reason is Reason.NONZERO_EXIT and r.exit_code == 3, r
    assert r.stdout == "HELLO file ['a', 'b']\n"
    r = run_py("1 / 0\n", mode)
    assert r.reason is Reason.NONZERO_EXIT and r.exception == "ZeroDivisionError"
    assert "main.py" in r.stderr and "ZeroDivisionError" in r.stderr and "runpy" not in r.stderr


@pytest.mark.parametrize("mode", MODES)
def test_working_directory_is_private_and_removed(mode, unharmed):
    first = run_py("import os\nopen('left.txt', 'w').write('x')\nprint(os.getcwd())\n", mode)
    second = run_py("import os\nprint(os.listdir('.'))\n", mode)
    assert first.ok and second.ok and second.stdout == "['main.py']\n"
    assert not os.path.exists(os.path.join(first.stdout.strip(), "left.txt"))


def test_crash_by_signal_is_named(unharmed):
    r = run_py("import ctypes\nctypes.string_at(0)\n", "namespaces")
    assert r.reason is Reason.CRASH and r.signal == signal.SIGSEGV, r


@pytest.mark.parametrize("mode", MODES)
def test_sql_rows_errors_and_an_unchanged_database(mode, tmp_path, unharmed):
    _needs(mode)
    db = tmp_path / "shop.sqlite"
    with sqlite3.connect(db) as con:
        con.executescript("create table items(id integer, name text, img blob);"
                          "insert into items values (1, 'pen', x'00ff'), (2, 'cup', null);")
    before = db.read_bytes()
    r = sandbox.run(SQLProgram(query="select id, name, img from items order by id", database=db),
                    SMALL, isolation=mode)
    assert r.reason is Reason.OK and r.rows == ((1, "pen", b"\x00\xff"), (2, "cup", None)), r
    r = sandbox.run(SQLProgram(query="delete from items", database=str(db)), SMALL, isolation=mode)
    assert r.ok and db.read_bytes() == before
    r = sandbox.run(SQLProgram(schema="create table t(x); insert into t values (1.5);", query="select x * 2 from t"),
                    SMALL, isolation=mode)
    assert r.rows == ((3.0,),)
    r = sandbox.run(SQLProgram(query="selec 1"), SMALL, isolation=mode)
    assert r.reason is Reason.NONZERO_EXIT and r.exception == "OperationalError" and "syntax error" in r.error
    endless = "with recursive c(n) as (select 1 union all select n + 1 from c) select count(*) from c"
    r = sandbox.run(SQLProgram(query=endless), Limits(cpu_s=1, wall_s=60, memory_mb=128), isolation=mode)
    assert r.reason is Reason.CPU_TIME, r
    db.unlink()


@pytest.mark.parametrize("field, value", [("wall_s", 0), ("cpu_s", -1.0), ("memory_mb", 0), ("memory_mb", 16),
                                          ("max_processes", -3), ("output_bytes", 0), ("disk_mb", 1.5),
                                          ("max_processes", True), ("max_open_files", 0)])
def test_bad_limits_raise_naming_the_field(field, value):
    with pytest.raises(InvalidLimitError, match=f"Limits.{field} = "):
        Limits(**{field: value})


def test_bad_arguments_raise_named_errors(tmp_path):
    with pytest.raises(InvalidLimitError, match="max_workers = 0"):
        sandbox.run_many([PythonProgram(source="")], max_workers=0)
    with pytest.raises(InvalidLimitError, match="2 Limits for 1 programs"):
        sandbox.run_many([PythonProgram(source="")], [Limits(), Limits()])
    with pytest.raises(InvalidProgramError, match=r"files\['../x'\]"):
        PythonProgram(source="", files={"../x": "y"})
    with pytest.raises(InvalidProgramError, match="reserved"):
        PythonProgram(source="", files={"main.py": "y"})
    with pytest.raises(InvalidProgramError, match="no such file"):
        SQLProgram(query="select 1", database=tmp_path / "missing.sqlite")
    with pytest.raises(ValueError, match="isolation = 'docker'"):
        sandbox.run(PythonProgram(source=""), isolation="docker")


def test_capabilities_name_the_mode():
    caps = sandbox.capabilities()
    assert caps.mode in ("namespaces", "rlimits") and caps.note
    if caps.mode == "namespaces":
        assert caps.process_limit and caps.network_isolated and caps.read_only_root
        assert caps.user_namespace == (os.geteuid() != 0)


_SYSTEM_PYTHON_SCRIPT = """
import importlib.util, json, os, sys
spec = importlib.util.spec_from_file_location("sandbox", sys.argv[1])
sandbox = importlib.util.module_from_spec(spec)
sys.modules["sandbox"] = sandbox  # dataclasses look their module up while the class is built
spec.loader.exec_module(sandbox)
isolation = sys.argv[2]
out = {"plan": sandbox._resolve(isolation)._asdict()}
limits = sandbox.Limits(wall_s=20.0, cpu_s=5.0, memory_mb=128, max_processes=8)
programs = {
    "fork_bomb": "import os\\nwhile True:\\n    os.fork()\\n",
    "escaped_child": "import os, time\\nif os.fork() == 0:\\n    os.setsid()\\n    time.sleep(1000)\\n",
    "write_etc": "open('/etc/escape_sandbox_test.txt', 'w')\\n",
    "list_home": "import os\\nos.listdir('/home')\\n",
    "kill_caller": "import ctypes\\nlibc = ctypes.CDLL(None, use_errno=True)\\n"
                   "print(libc.kill(%d, 9), ctypes.get_errno())\\n" % os.getpid(),
}
for name, source in programs.items():
    r = sandbox.run(sandbox.PythonProgram(source=source), limits, isolation=isolation)
    out[name] = [r.reason.value, r.stdout.strip()]
me, my_uid, strays = os.getpid(), os.getuid(), 0
for p in os.listdir("/proc"):
    try:
        uid = os.stat(f"/proc/{p}").st_uid
    except FileNotFoundError:
        continue
    strays += p.isdigit() and int(p) != me and (uid in sandbox.uid_block(me) or (my_uid != 0 and uid == my_uid))
out["strays"] = strays
print(json.dumps(out))
"""
_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
_VARIANTS = {
    # The trainer's interpreter lives under /root here, out of a sandbox uid's reach, so
    # the root fallback drops no uid; a system interpreter shows the one that does.
    "root_rlimits_own_uid": ([], "rlimits", {"mode": "rlimits", "own_uid": True, "userns": False},
                             "ok", f"-1 {errno.EPERM}"),
    # Not root: namespaces inside an unprivileged user namespace.
    "nobody_user_namespace": (_NOBODY, "namespaces", {"mode": "namespaces", "own_uid": False, "userns": True},
                              "forbidden", f"-1 {errno.ESRCH}"),
}


@pytest.mark.parametrize("variant", sorted(_VARIANTS))
def test_other_isolation_plans_under_a_system_python(variant, unharmed):
    prefix, isolation, plan, list_home, kill_caller = _VARIANTS[variant]
    system_python = "/usr/bin/python3"
    if os.geteuid() != 0 or not os.path.exists(system_python) or (prefix and not shutil.which(prefix[0])):
        pytest.skip("needs root, setpriv and a system python3 readable by any uid")
    # The other uid may not read the checkout (a clone under a 0700 mktemp directory):
    # it gets world-readable copies of the sandbox and its child script.
    with tempfile.TemporaryDirectory() as readable:
        os.chmod(readable, 0o755)
        for name in ("sandbox.py", "_sandbox_child.py"):
            shutil.copy(os.path.join(os.path.dirname(sandbox.__file__), name), readable)
            os.chmod(os.path.join(readable, name), 0o644)
        path = os.path.join(readable, "sandbox.py")
        proc = subprocess.run([*prefix, system_python, "-I", "-c", _SYSTEM_PYTHON_SCRIPT, path,
                               isolation], capture_output=True, text=True, timeout=120, cwd="/")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out == {"plan": plan, "fork_bomb": ["process_limit", ""], "escaped_child": ["ok", ""],
                   "write_etc": ["forbidden", ""], "list_home": [list_home, ""], "kill_caller": ["ok", kill_caller],
                   "strays": 0}
    assert not os.path.exists("/etc/escape_sandbox_test.txt")


def test_a_sandbox_the_trainer_cannot_start_is_a_result_not_an_exception(monkeypatch, unharmed):
    sandbox.capabilities()

    def no_fork(*args, **kwargs):
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(sandbox.subprocess, "Popen", no_fork)
    results = sandbox.run_many([PythonProgram(source="print(1)")] * 3, SMALL, max_workers=2)
    assert [r.reason for r in results] == [Reason.SANDBOX_ERROR] * 3
    assert "could not start the sandbox" in results[0].error
