"""The sandbox's child side: a supervisor that sets up isolation, and the runner.

Standard library only, and never imported by the trainer: `sandbox.py` starts it as
`python -I -S -B _sandbox_child.py supervise`, reads no Python objects back from it
(only JSON lines), and the supervisor starts the runner as
`python -I -B -c <this file's text> run <json>` so the runner needs no file access
to this module after the mounts hide most of the filesystem.

Process tree with namespaces (`mode="namespaces"`; root on the host):

    trainer ── supervisor (host pid/mount/net ns, root) ── init (pid 1 of a new pid ns,
    root; mounts) ── runner (pid 2, per-sandbox uid, rlimits) ── whatever it forks

Without namespaces (`mode="rlimits"`) the supervisor forks the runner directly and
acts as its subreaper, so it can kill the runner's descendants when it ends.
Nothing here raises into the trainer: every failure becomes a JSON status line.
"""

import base64
import ctypes
import errno
import json
import math
import os
import resource
import signal
import sys

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUTS = 0x04000000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_REMOUNT = 32
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38
_SYS_MOUNT_SETATTR = 442  # x86_64 and aarch64 share this number
_AT_FDCWD = -100
_AT_RECURSIVE = 0x8000
_MOUNT_ATTR_RDONLY = 0x1
_MOUNT_ATTR_NOSUID = 0x2
WORKDIR_IN_NS = "/tmp/work"
# In a user namespace the runner is this uid inside a namespace of its own, mapped to
# the trainer's uid one level up; it holds no capabilities over the mounts above it.
_NESTED_UID = 1000

_libc = None


def _c():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(ret, what):
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _prctl(option, arg):
    _check(_c().prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl({option})")


def _mount(source, target, fstype, flags, data=None):
    _check(
        _c().mount(
            None if source is None else source.encode(),
            target.encode(),
            None if fstype is None else fstype.encode(),
            ctypes.c_ulong(flags),
            None if data is None else data.encode(),
        ),
        f"mount {fstype or source} on {target}",
    )


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _read_only_recursive(path):
    # Per-mount flags (not the superblock's), so the host's mounts stay writable.
    attr = _MountAttr(_MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID, 0, 0, 0)
    ret = _c().syscall(ctypes.c_long(_SYS_MOUNT_SETATTR), ctypes.c_int(_AT_FDCWD), path.encode(),
                       ctypes.c_uint(_AT_RECURSIVE), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
    _check(ret, f"mount_setattr({path}, read-only)")


def _map_self(inner, outer):
    """Maps uid/gid `inner` here to `outer` in the parent user namespace (just unshared)."""
    for name, text in (("setgroups", "deny"), ("uid_map", f"{inner} {outer[0]} 1"),
                       ("gid_map", f"{inner} {outer[1]} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def _write_line(fd, obj):
    try:
        os.write(fd, (json.dumps(obj) + "\n").encode())
    except OSError:
        pass


def _write_files(workdir, files, uid):
    for name, data in files:
        path = os.path.join(workdir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
    if uid is not None:
        for root, dirs, names in os.walk(workdir):
            for n in [root] + [os.path.join(root, x) for x in dirs + names]:
                os.lchown(n, uid, uid)


def _mount_namespace(p):
    """Inside the new namespaces: hide, make read-only, give a private /tmp and /proc."""
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    # Open the interpreter's directories before tmpfs hides them, to bind them back.
    keep = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in p["rebind"]]
    read_only = True
    try:
        _read_only_recursive("/")
    except OSError:
        if p["userns"]:
            raise  # the runner is the trainer's uid on the host: read-only is the only guard
        read_only = False  # the per-sandbox uid still cannot write to root's files
    covered = []
    for path in p["hidden"]:  # sorted, so a directory comes before what is inside it
        if any(path.startswith(c + "/") for c in covered) or not os.path.isdir(path) or os.path.islink(path):
            continue
        covered.append(path.rstrip("/"))
        inner = [k for k in keep if k[0].startswith(path.rstrip("/") + "/")]
        # 0711 lets the runner reach rebound directories without listing the rest.
        mode = "0711" if inner else "0000"
        _mount("tmpfs", path, "tmpfs", _MS_NOSUID | _MS_NODEV, f"size=64k,mode={mode}")
        for target, fd in inner:
            rel = os.path.relpath(target, path).split(os.sep)
            cur = path
            for part in rel:
                cur = os.path.join(cur, part)
                os.makedirs(cur, mode=0o711, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", target, None, _MS_BIND | _MS_REC)
            _mount(None, target, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID)
    for _, fd in keep:
        os.close(fd)
    # Inodes cost kernel memory that no rlimit counts, so they get a budget too.
    size = f"size={p['disk_bytes']},nr_inodes={max(1024, p['disk_bytes'] >> 12)}"
    _mount("tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, f"{size},mode=0755")
    if os.path.isdir("/dev/shm"):
        _mount("tmpfs", "/dev/shm", "tmpfs", _MS_NOSUID | _MS_NODEV, f"{size},mode=1777")
    _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    os.mkdir(WORKDIR_IN_NS, 0o700)
    return read_only


def _limit(which, soft, hard=None):
    resource.setrlimit(which, (soft, soft if hard is None else hard))


def _exec_runner(p, workdir, stdin_fd, report_fd, status_fd):
    """In the forked runner: drop privileges, set limits, exec the interpreter."""
    try:
        os.setsid()
        os.chdir(workdir)
        os.dup2(stdin_fd, 0)
        os.dup2(report_fd, 3)
        os.set_inheritable(3, True)
        # Only fd 3 reaches the program: the status pipe is the supervisor's word.
        os.set_inheritable(status_fd, False)
        if report_fd != 3:
            os.set_inheritable(report_fd, False)
        uid = p["uid"]
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        elif p["userns"]:
            _prctl(_PR_SET_DUMPABLE, 1)  # inherited 0 would make /proc/self unwritable
            _check(_c().unshare(ctypes.c_int(_CLONE_NEWUSER)), "unshare(user)")
            _map_self(_NESTED_UID, (0, 0))
            os.setgid(_NESTED_UID)
            os.setuid(_NESTED_UID)  # leaving uid 0 drops every capability
        # After setuid: changing credentials clears the parent-death signal.
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        _prctl(_PR_SET_NO_NEW_PRIVS, 1)
        cpu = max(1, math.ceil(p["cpu_s"]))
        _limit(resource.RLIMIT_CPU, cpu, cpu + 1)
        _limit(resource.RLIMIT_AS, p["memory_bytes"])
        _limit(resource.RLIMIT_FSIZE, p["disk_bytes"])
        _limit(resource.RLIMIT_CORE, 0)
        _limit(resource.RLIMIT_NOFILE, p["max_open_files"])
        if p["enforce_nproc"]:
            _limit(resource.RLIMIT_NPROC, p["max_processes"])
        runner_cfg = {"language": p["language"], "args": p["args"], "block_processes": not p["enforce_nproc"]}
        env = {
            "PATH": os.path.dirname(p["python"]) + ":/usr/local/bin:/usr/bin:/bin",
            "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
            "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        }
        os.execve(p["python"], [p["python"], "-I", "-B", "-X", "utf8", "-c", p["source"], "run",
                                json.dumps(runner_cfg)], env)
    except BaseException as e:
        _write_line(status_fd, {"setup_error": f"starting the runner: {type(e).__name__}: {e}"})
    finally:
        os._exit(127)


def _spawn_and_wait(p, workdir, stdin_fd, report_fd, status_fd, started=None, on_exit=None):
    """Forks the runner, reaps everything until it exits; returns its status line."""
    pid = os.fork()
    if pid == 0:
        _exec_runner(p, workdir, stdin_fd, report_fd, status_fd)
    if started is not None:
        started.append(pid)
    os.close(report_fd)
    os.close(stdin_fd)
    while True:
        try:
            wpid, status, usage = os.wait4(-1, 0)
        except InterruptedError:
            continue
        if wpid == pid:
            break
    out = {"cpu_s": usage.ru_utime + usage.ru_stime}
    if os.WIFSIGNALED(status):
        out["signal"] = os.WTERMSIG(status)
    else:
        out["exit_code"] = os.WEXITSTATUS(status)
    if on_exit is not None:
        on_exit(pid)
    return out


def _sweep_uid(uid):
    """Kills every process of the per-sandbox uid, however it detached itself."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def _kill_descendants(runner_pid, uid):
    try:
        os.killpg(runner_pid, signal.SIGKILL)
    except OSError:
        pass
    if uid is not None:
        _sweep_uid(uid)
    # As subreaper, orphans that left the runner's group are our children now.
    me = str(os.getpid())
    for _ in range(100):
        children = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if fields[1] == me:
                    children.append(int(entry))
        if not children:
            return
        for c in children:
            try:
                os.kill(c, signal.SIGKILL)
            except OSError:
                pass
        for c in children:
            try:
                os.waitpid(c, 0)
            except ChildProcessError:
                pass


def supervise():
    p = json.loads(sys.stdin.buffer.read())
    status_fd, report_fd = p["status_fd"], p["report_fd"]
    try:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != p["parent_pid"]:
            os._exit(1)
        stdin_fd = os.memfd_create("stdin", 0)
        os.write(stdin_fd, base64.b64decode(p["stdin"]))
        os.lseek(stdin_fd, 0, os.SEEK_SET)
        with open(__file__) as f:
            p["source"] = f.read()
        p["python"] = sys.executable
        if p["mode"] == "namespaces":
            flags = _CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWNET | _CLONE_NEWIPC | _CLONE_NEWUTS
            outer = (os.getuid(), os.getgid())
            if p["userns"]:
                flags |= _CLONE_NEWUSER
            _check(_c().unshare(ctypes.c_int(flags)), "unshare")
            if p["userns"]:
                _map_self(0, outer)
            # Not dumpable: nothing of the sandbox's uid may ptrace or read us via /proc.
            _prctl(_PR_SET_DUMPABLE, 0)
            init = os.fork()
            if init == 0:
                _namespace_init(p, stdin_fd, report_fd, status_fd)
            # The pipes must reach EOF when the last sandboxed process is gone.
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 1)
            os.dup2(null, 2)
            os.close(report_fd)
            signal.signal(signal.SIGTERM, lambda *_: os.kill(init, signal.SIGKILL))
            while True:
                try:
                    _, status = os.waitpid(init, 0)
                    break
                except InterruptedError:
                    continue
            if os.WIFSIGNALED(status):
                _write_line(status_fd, {"setup_error": f"sandbox init ended by signal {os.WTERMSIG(status)}"})
            os._exit(0)
        workdir, uid = p["workdir"], p["uid"]
        _write_files(workdir, p["files"], uid)
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)
        runner = []

        def stop(*_):
            if runner:
                _kill_descendants(runner[0], uid)
            os._exit(0)

        signal.signal(signal.SIGTERM, stop)
        status = _spawn_and_wait(p, workdir, stdin_fd, report_fd, status_fd, started=runner,
                                 on_exit=lambda pid: _kill_descendants(pid, uid))
        status["read_only_root"] = False
        _write_line(status_fd, status)
    except BaseException as e:
        _write_line(status_fd, {"setup_error": f"{type(e).__name__}: {e}"})
    os._exit(0)


def _namespace_init(p, stdin_fd, report_fd, status_fd):
    """Pid 1 of the new pid namespace; its exit kills every process left inside."""
    try:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        _prctl(_PR_SET_DUMPABLE, 0)
        os.setsid()
        read_only = _mount_namespace(p)
        _write_files(WORKDIR_IN_NS, p["files"], p["uid"])
        status = _spawn_and_wait(p, WORKDIR_IN_NS, stdin_fd, report_fd, status_fd)
        status["read_only_root"] = read_only
        _write_line(status_fd, status)
    except BaseException as e:
        _write_line(status_fd, {"setup_error": f"{type(e).__name__}: {e}"})
    os._exit(0)


# ---------------------------------------------------------------- runner (untrusted side)

_FORBIDDEN_MESSAGE = "forbidden in the sandbox: "
_NET_FAMILIES = ("AF_INET", "AF_INET6", "AF_PACKET")


class SandboxDenied(PermissionError):
    __module__ = "sandbox"  # read in error lines as sandbox.SandboxDenied, not __main__


def _install_audit_hook(block_processes):
    """A second line behind the kernel's: names what was refused, and is the only
    guard for the network and for signals when namespaces are unavailable.

    Code can get round it through ctypes, so the kernel's isolation is what counts.
    """
    import socket

    net_families = {getattr(socket, f) for f in _NET_FAMILIES if hasattr(socket, f)}
    own_sid = os.getsid(0)
    process_events = {"os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.system", "os.exec",
                      "subprocess.Popen", "pty.spawn"}

    def same_session(pid):
        try:
            return os.getsid(abs(pid)) == own_sid
        except OSError:
            return True  # the call itself will fail with ESRCH

    def hook(event, args):
        if event in ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"):
            if args[0].family in net_families:
                raise SandboxDenied(errno.EACCES, _FORBIDDEN_MESSAGE + "network access")
        elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"):
            raise SandboxDenied(errno.EACCES, _FORBIDDEN_MESSAGE + "name resolution")
        elif event in ("os.kill", "os.killpg"):
            target = args[0]
            if target == -1 or (target != 0 and not same_session(target)):
                raise SandboxDenied(errno.EPERM, _FORBIDDEN_MESSAGE + f"signalling process {target}")
        elif block_processes and event in process_events:
            raise SandboxDenied(errno.EPERM, _FORBIDDEN_MESSAGE + "starting processes (their number "
                                "cannot be limited without namespaces here)")

    sys.addaudithook(hook)


def _sql_cell(v):
    return {"hex": v.hex()} if isinstance(v, bytes) else v


def _run_sql():
    import sqlite3

    with open("query.sql") as f:
        query = f.read()
    db = "database.sqlite" if os.path.exists("database.sqlite") else ":memory:"
    con = sqlite3.connect(db)
    if os.path.exists("schema.sql"):
        with open("schema.sql") as f:
            con.executescript(f.read())
    out = sys.stdout
    for row in con.execute(query):
        out.write(json.dumps([_sql_cell(v) for v in row]) + "\n")
    con.commit()


def run(cfg):
    import runpy
    import traceback

    main_pid = os.getpid()
    main_path = os.path.join(os.getcwd(), "main.py")
    _install_audit_hook(cfg["block_processes"])
    _write_line(3, {"started": True})
    try:
        if cfg["language"] == "sql":
            _run_sql()
        else:
            sys.argv = ["main.py", *cfg["args"]]
            sys.path[0] = os.getcwd()
            runpy.run_path(main_path, run_name="__main__")
    except SystemExit:
        raise
    except BaseException as e:
        if os.getpid() != main_pid:
            traceback.print_exc()
            os._exit(1)
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != main_path:
            tb = tb.tb_next
        try:
            traceback.print_exception(type(e), e, tb)
        except BaseException:
            pass
        _write_line(3, {
            "exception": type(e).__qualname__, "module": type(e).__module__,
            "errno": e.errno if isinstance(e, OSError) else None,
            "denied": isinstance(e, SandboxDenied), "message": str(e)[:1000],
        })
        # Not sys.exit: the program has failed, so its other threads need no waiting for.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os._exit(1)


if __name__ == "__main__":
    if sys.argv[1] == "supervise":
        supervise()
    elif sys.argv[1] == "run":
        run(json.loads(sys.argv[2]))
