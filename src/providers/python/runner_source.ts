/**
 * The Python side of `python/v1`, embedded as a string so the bundled CLI never reads its
 * own source tree. Always started with `-I -S` (isolated, no `site`: the probed `sys.path`
 * comes in the job or the pool options).
 *
 * Mode `once` (cold task, `-c RUNNER_BOOTSTRAP once`, the marshalled runner ahead of the
 * job on stdin): runs one job, writes the outcome (JSON) to the job's `result_path` and
 * exits. The result travels through that file, not stdout, so whatever the user code prints
 * cannot corrupt it.
 *
 * Mode `pool` (`-c POOL_BOOTSTRAP pool OPTIONS`, the marshalled runner first on stdin): a
 * warm parent. It imports and warms up once, then serves one job per stdin line, each in a
 * fresh forked child (no state survives from one task to the next). A spare child is always
 * forked ahead; a `{"prepare": paths}` line (sent with the job before) lets it set up the
 * next task's directory and output files before the job arrives (where tasks are the pool's
 * own user, once the parent sends it `{"go": true}`: the task before has ended, and all it
 * left is gone).
 * Children write stdout/stderr to files (`stdout_path`, `stderr_path`; Python-level writes
 * past `output_limit` are counted, not written). The parent answers each job with one line
 * once the child is done: `{"status": <waitpid status>, "dirty": <do not reuse this parent>}`
 * (the task left IPC objects, or changed this parent's limits or priority). A child that
 * said it was done, its result written, is answered at once with `{"status": 0, "early":
 * true}`; the parent then cleans up after it before it reads the next job (which may come
 * meanwhile), and where the task left it dirty it says `{"ready": true, "dirty": true}`
 * instead and ends, that next job unread.
 *
 * Job fields: `kind` ("execute" | "script"), `code` | `script` + `args`, `context`,
 * `work_dir`, `result_path`, `stdout_path`/`stderr_path` (pool mode), `subreaper` (become a
 * child subreaper so orphans stay findable), `uid`/`gid` (drop to this user before user code
 * runs), `limits` (rlimits), `sys_path`.
 *
 * @module
 */

/** Python source of the runner. */
export const RUNNER_SOURCE = String.raw`
import sys, io, time, _json, _signal
import posix as os  # what the os module re-exports; see below

# Start-up time matters (a cold task pays it): json, signal, traceback and linecache cost
# 4-9 ms each to import, so the codec is built on the C accelerator directly and the
# traceback machinery is imported only when a task fails. Even os costs ~1.5 ms (its
# collections ABCs): the runner calls the posix functions os re-exports, and a task that
# needs os imports it itself (and sees the environment set here).

class _Unserialisable(Exception):
    def __init__(self, type_name):
        Exception.__init__(self, type_name)
        self.type_name = type_name

def _type_name(o):
    t = type(o)
    mod = getattr(t, "__module__", None)
    if mod in (None, "builtins"):
        return t.__qualname__
    return mod + "." + t.__qualname__

def _default(o):
    raise _Unserialisable(_type_name(o))

class _ScanContext:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float
    memo = {}

try:
    _scan = _json.make_scanner(_ScanContext())
    _json.make_encoder(None, repr, _json.encode_basestring, None, ": ", ", ", False, False,
                       False)
    # The common encoder, made once (a warm parent's children inherit it); a fresh one
    # when its circular-reference markers are not empty (an encoding failed half-way).
    _markers = {}
    _encoder = _json.make_encoder(_markers, _default, _json.encode_basestring, None, ": ",
                                  ", ", False, False, False)
    def _loads(text):
        return _scan(text, 0)[0]
    def _dumps(obj, default=_default, allow_nan=False):
        if default is _default and not allow_nan and not _markers:
            enc = _encoder
        else:
            enc = _json.make_encoder({}, default, _json.encode_basestring, None, ": ", ", ",
                                     False, False, allow_nan)
        return "".join(enc(obj, 0))
except Exception:  # another Python's accelerator: the slower, documented way
    import json as _jsonmod
    def _loads(text):
        return _jsonmod.loads(text)
    def _dumps(obj, default=_default, allow_nan=False):
        return _jsonmod.dumps(obj, default=default, allow_nan=allow_nan, ensure_ascii=False)

_SOURCES = {}

# Inline task code is run by exec() on its source, not compiled by compile(): the builtin
# compile() first sets up the ast module's ~120 types (~1 ms in every fresh process), exec
# does not. Its code is then named "<string>", and tracebacks name it "<task>" again: the
# frames of the task's own code only (not of other code made from a string, such as a
# dataclass's __init__ or the task's own exec() calls).
_TASK_NAME = ("<string>", "<task>")
_GROUP = getattr(__import__("builtins"), "BaseExceptionGroup", ())  # Python 3.11+

def _task_codes(tb):
    # The task's module code (the first frame of the task's traceback) and all code in it.
    codes = {}
    top = tb.tb_frame.f_code if tb is not None else None
    if top is None or top.co_filename != _TASK_NAME[0] or top.co_name != "<module>":
        return codes
    todo = [top]
    while todo:
        code = todo.pop()
        if id(code) not in codes:
            codes[id(code)] = code
            todo.extend(c for c in code.co_consts if isinstance(c, type(top)))
    return codes

def _rename_task(te, e, tb):
    import traceback
    codes = _task_codes(tb)
    if tb is None and isinstance(e, SyntaxError) and te.filename == _TASK_NAME[0]:
        te.filename = _TASK_NAME[1]  # the task's code did not compile
    todo, seen = [(te, e, tb)], set()
    while todo:  # a loop, not recursion: chains of causes can be long
        te, e, tb = todo.pop()
        if te is None or e is None or id(te) in seen:
            continue
        seen.add(id(te))
        frames = [frame for frame, _ in traceback.walk_tb(tb)]
        for fs, frame in zip(te.stack, frames):
            if id(frame.f_code) in codes:
                fs.filename = _TASK_NAME[1]
        for sub_te, sub in ((te.__cause__, e.__cause__), (te.__context__, e.__context__)):
            if sub is not None:
                todo.append((sub_te, sub, sub.__traceback__))
        if isinstance(e, _GROUP) and getattr(te, "exceptions", None):
            for sub_te, sub in zip(te.exceptions, e.exceptions):
                todo.append((sub_te, sub, sub.__traceback__))

def _user_tb(tb):
    me = _user_tb.__code__.co_filename
    while tb is not None and tb.tb_frame.f_code.co_filename == me:
        tb = tb.tb_next
    return tb

def _failure(e):
    try:
        import traceback, linecache
        for name, src in _SOURCES.items():
            linecache.cache[name] = (len(src), None, src.splitlines(True), name)
        tb = _user_tb(e.__traceback__)
        # Source lines are looked up when formatting, by then under the renamed name.
        te = traceback.TracebackException(type(e), e, tb, lookup_lines=False)
        _rename_task(te, e, tb)
        text = "".join(te.format())
        only = list(te.format_exception_only())
        last = only[-1].strip() if only else type(e).__name__
    except BaseException:
        text = last = type(e).__name__
    return {"ok": False, "kind": "exception", "type": _type_name(e), "message": last,
            "traceback": text}

def _execute(job):
    # The task's code runs as a module of its own, which is __main__ in sys.modules too (as
    # runpy runs a script): pickle finds what it defines there by name, as multiprocessing's
    # Pool and ProcessPoolExecutor send the functions they run.
    main = type(sys)("__main__")
    sys.modules["__main__"] = main
    g = main.__dict__
    g["__builtins__"] = __builtins__
    ctx = job.get("context") or {}
    g.update(ctx)
    payload = None
    t0 = time.perf_counter()
    try:
        if job.get("kind") == "script":
            path = job["script"]
            with open(path, "rb") as f:
                src = f.read()
            g["__file__"] = path
            sys.argv = [path] + [str(a) for a in (job.get("args") or [])]
            sys.path.insert(0, path.rpartition("/")[0] or "/")
            code = compile(src, path, "exec", dont_inherit=True)
        else:
            src = job["code"]
            _SOURCES[_TASK_NAME[1]] = src
            sys.argv = ["<task>"]
            code = src
        exec(code, g)
    except SystemExit as e:
        c = e.code
        if c is not None and c != 0:
            status = c if isinstance(c, int) else 1
            msg = "SystemExit: exit status %d" % status
            if not isinstance(c, int):
                msg = "SystemExit: " + str(c)
            payload = {"ok": False, "kind": "exit", "type": "SystemExit", "code": status,
                       "message": msg, "traceback": msg + "\n"}
    except BaseException as e:
        payload = _failure(e)
    ms = (time.perf_counter() - t0) * 1000.0
    if payload is None:
        value = g.get("result")
        try:
            return _dumps({"ok": True, "result": value, "execution_time_ms": ms})
        except _Unserialisable as u:
            payload = {"ok": False, "kind": "result_type", "type": u.type_name,
                       "message": "result is not JSON-serialisable: contains a value of type "
                                  + u.type_name}
        except (TypeError, ValueError, RecursionError, OverflowError) as e:
            payload = {"ok": False, "kind": "result_type", "type": _type_name(value),
                       "message": "result (of type %s) is not JSON-serialisable: %s"
                                  % (_type_name(value), e)}
    payload["execution_time_ms"] = ms
    return _dumps(payload, default=repr, allow_nan=True)

_result_fd = None  # (path, fd) opened ahead by _prepare: creating a file is the slow part

def _write_result(path, text):
    # Read only after this process has ended, so no rename dance is needed for atomicity;
    # a torn file (killed mid-write) does not parse and counts as "no result".
    data = text.encode("utf-8", "surrogatepass")
    fd = None
    if _result_fd is not None and _result_fd[0] == path:
        try:
            fd = _result_fd[1]
            os.lseek(fd, 0, 0)
            os.ftruncate(fd, 0)
        except OSError:
            fd = None
    if fd is None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)

_prctl = None  # libc's prctl, looked up once by a warm parent (a lookup per child costs faults)
_libc = None  # libc (ctypes), a warm parent's: removes SysV IPC objects a task left

def _subreaper(die_with_parent=False):
    try:
        prctl = _prctl
        if prctl is None:
            import ctypes
            prctl = ctypes.CDLL(None, use_errno=True).prctl
        prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        if die_with_parent:
            # A cold task outside bubblewrap (whose --die-with-parent does this there) ends
            # when Gleitzeit does, killed or not: no one would enforce its timeout. (A uid
            # change would clear it: only bubblewrap mode drops to the sandbox user.) Not
            # SIGKILL: what the task started must end too, and only this process, as their
            # subreaper, can find them (setsid or not). A real-time signal, which task code
            # has no reason to handle; its handler runs at the next bytecode, which a
            # sleep, a wait or I/O reach at once (a long C call holding the GIL delays it).
            sig = _signal.SIGRTMIN + 1
            _signal.signal(sig, _orphaned)
            prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass

def _orphaned(signum, frame):
    # Gleitzeit is gone (see _subreaper): everything this task started, then the task.
    try:
        _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
        _reap_descendants()
    finally:
        os._exit(137)

def _descendants(root):
    parent = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/" + name + "/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(b")") + 2:].split()
        if len(rest) > 1:
            parent.setdefault(int(rest[1]), []).append(int(name))
    out, todo = [], [root]
    while todo:
        for kid in parent.get(todo.pop(), ()):
            out.append(kid)
            todo.append(kid)
    return out

def _reap_descendants(exclude=()):
    # Fast path: no child at all means no descendant (we are their subreaper).
    me = os.getpid()
    deadline = time.monotonic() + 2.0
    while True:
        try:
            while True:
                pid, _ = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
        except ChildProcessError:
            return
        kids = [p for p in _descendants(me) if p not in exclude]
        if not kids and exclude:
            return
        for pid in kids:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        if time.monotonic() > deadline:
            return
        time.sleep(0.001)

def _end_orphaned(pid, own_ns):
    # A warm parent whose orchestrator is gone: its running task and everything that task
    # started (ours as subreaper, setsid or not), then its spare and forkers, then itself.
    # In a PID namespace of its own, its end takes the rest with it.
    for kill in (os.kill, os.killpg):
        try:
            kill(pid, 9)
        except OSError:
            pass
    if not own_ns:
        _reap_descendants()
    os._exit(0)

_rlimits = None  # (names, setrlimit), made once by a warm parent (see _rlimit_table)
_xfsz_ignored = False  # a warm parent ignores SIGXFSZ itself, so its children inherit it

def _rlimit_table():
    import resource
    names = {"cpu": resource.RLIMIT_CPU, "as": resource.RLIMIT_AS,
             "nproc": resource.RLIMIT_NPROC, "fsize": resource.RLIMIT_FSIZE,
             "nofile": resource.RLIMIT_NOFILE, "core": resource.RLIMIT_CORE}
    return names, resource.setrlimit

_in_cgroup = False  # this task has a pids cgroup of its own (see _join_cgroup)

def _join_cgroup(procs):
    # Moves this process into the task's pids cgroup (root only: before the user drops);
    # everything it starts is counted there, not against the sandbox user's shared budget.
    global _in_cgroup
    try:
        _write_file(procs, "0")
        _in_cgroup = True
    except OSError:
        pass  # the rlimit applies instead

def _apply_limits(job):
    limits = job.get("limits") or {}
    if limits:
        names, setrlimit = _rlimits or _rlimit_table()
        for key, value in limits.items():
            if key == "nproc" and _in_cgroup:
                continue  # the cgroup's pids.max, per task, instead of the user's count
            if key in names and value is not None:
                if key == "nproc" and _own_user:
                    # Tasks of the pool's own user: the count is that user's, the pool's
                    # processes' too; the forker's place is the task's, as without one.
                    value = int(value) + int(job.get("pool_extra") or 0)
                # CPU: SIGXCPU at the soft limit (a clear cause), SIGKILL a second later.
                hard = int(value) + 1 if key == "cpu" else int(value)
                setrlimit(names[key], (int(value), hard))
    if not _xfsz_ignored:
        _signal.signal(_signal.SIGXFSZ, _signal.SIG_IGN)

def _drop_user(job):
    uid = job.get("uid")
    if uid is None or os.getuid() == uid:
        return
    gid = job.get("gid", uid)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise SystemExit("gleitzeit runner: could not drop to uid %d" % uid)

def _flush():
    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except BaseException:
            pass

def _stdin_devnull():
    fd = os.open("/dev/null", os.O_RDONLY)
    os.dup2(fd, 0)
    os.close(fd)

class _CappedRaw(io.RawIOBase):
    """fd writer that keeps the first limit bytes and counts the rest (pool mode)."""
    def __init__(self, fd, limit):
        self.fd = fd
        self.left = limit
        self.dropped = 0
    def writable(self):
        return True
    def fileno(self):
        return self.fd
    def write(self, b):
        n = len(b)
        keep = min(n, self.left)
        if keep > 0:
            view = memoryview(b)[:keep]
            while view:
                view = view[os.write(self.fd, view):]
            self.left -= keep
        self.dropped += n - keep
        return n

_own_user = False  # tasks run as the pool's own user (not root), set by a warm parent

def _open_io(path):
    # Pool mode reuses two sets of output files (creating a file costs far more than
    # truncating an empty one); they live in a directory only root can enter, so a task
    # reaches its own files through its descriptors and nobody else's at all. Where tasks
    # are the pool's own user, that directory is theirs too: the files are made afresh
    # (whatever a task left there, a FIFO, a link or an open descriptor, is not reused).
    if not _own_user:
        try:
            return _fresh(os.open(path, os.O_WRONLY | os.O_TRUNC))  # reused: mode set already
        except FileNotFoundError:
            pass
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError:
            # EBUSY: in bubblewrap, each file is bound in on its own (made by the provider, in
            # a read-only directory): nobody can replace it or add another, but a task of the
            # pool's own user can change its mode
            os.chmod(path, 0o666)
            return _fresh(os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o666)  # reopening /dev/stdout still works for the task
    return fd

def _fresh(fd):
    # A reused output file: without the extended attributes and times a task before may have
    # set on its own output (any user may, on a 0666 file), for a later task to read.
    try:
        for name in os.listxattr(fd):
            os.removexattr(fd, name)
        os.utime(fd)
    except OSError:
        pass  # a file system without them
    return fd

def _make_stream(fd, limit):
    raw = _CappedRaw(fd, limit)
    text = io.TextIOWrapper(io.BufferedWriter(raw, 8192), encoding="utf-8",
                            errors="backslashreplace", line_buffering=(fd == 2),
                            write_through=(fd == 2))
    return raw, text

# Unused stdout/stderr wrappers made by a warm parent before it forks: a child that makes
# its own writes to ~70 more pages of the parent's heap (a copy-on-write fault each).
_streams_ahead = None
_std_kept = None

def _capture(job):
    limit = int(job.get("output_limit") or 1048576)
    streams = []
    for i, (fd, key) in enumerate(((1, "stdout_path"), (2, "stderr_path"))):
        out = _open_io(job[key])
        os.dup2(out, fd)
        os.close(out)
        if _streams_ahead is not None:
            raw, text = _streams_ahead[i]
            raw.left = limit
            raw.dropped = 0
        else:
            raw, text = _make_stream(fd, limit)
        streams.append(raw)
        if fd == 1:
            sys.stdout = sys.__stdout__ = text
        else:
            sys.stderr = sys.__stderr__ = text
    return streams

def _size(fd):
    # The end of the output file (lseek: no stat result to make, ~8 fewer page copies in a
    # warm child than fstat); -1 (unknown: the provider reads the file) for a pipe or tty.
    try:
        return os.lseek(fd, 0, 2)
    except OSError:
        return -1

# A warm parent that is its PID namespace's init: it ends whatever a task left itself, after
# the task (see the pool's loop: the process group of a task that reports its end is killed
# with it, and reaped here; anything else found in /proc ends with everything but this
# parent), so its children skip their own search for descendants (an exception and ~10
# copied pages on every task's path when there are none).
_init_reaps = False
_prepared = None
_ENV_DIR_KEYS = (b"HOME", b"TMPDIR", b"PWD")  # what a task's directory is (see _prepare)
_env_ready = [None]  # the work directory HOME, TMPDIR and PWD name already (a forker set them)
_forker_made = False  # this process is a forker, or a spare it cloned (see _forker)

def _setenv(key, value):
    # What os.environ[key] = value does (os.environ wraps this very dict), without its
    # layers: key and value are bytes.
    os.putenv(key, value)
    os.environ[key] = value

def _prepare(job, keep_root=False):
    """Identity, directory and output files: everything before the code itself."""
    global _prepared, _result_fd
    pooled = job.get("stdout_path") is not None
    # Pool mode: the output files live in a directory only root may enter, so they are
    # opened as root (a warm spare is root until its job comes; keep_root: it drops then);
    # the task reaches them through its descriptors only. A spare prepared ahead also
    # enters its work directory as root: the provider hands it to the sandbox user only
    # when the job is sent, so the task that runs meanwhile cannot plant anything in it.
    root = pooled and os.getuid() == 0
    if not root:
        _drop_user(job)
    entered = True
    try:
        os.chdir(job["work_dir"])
    except PermissionError:
        if not root:
            raise
        entered = False  # already the sandbox user's: enter it as that user below
    streams = _capture(job) if pooled else None
    if pooled:
        path = job["result_path"]
        if _result_fd is not None:
            # prepared before for other paths: the task keeps no descriptor of those
            try:
                os.close(_result_fd[1])
            except OSError:
                pass
        _result_fd = (path, _open_io(path))
    if root and not keep_root:
        _drop_user(job)  # a child forked per job (no spare): drop now
    if not entered:
        os.chdir(job["work_dir"])
    if _env_ready[0] != job["work_dir"]:
        value = job["work_dir"].encode("utf-8", "surrogateescape")
        for key in _ENV_DIR_KEYS:
            _setenv(key, value)
    _prepared = (job.get("work_dir"), job.get("stdout_path"), streams)

def _run_job(job):
    # A warm child may have been prepared for this very directory before the job came.
    if _prepared is None or _prepared[:2] != (job.get("work_dir"), job.get("stdout_path")):
        _prepare(job)
    streams = _prepared[2]
    _apply_limits(job)
    text = _execute(job)
    _flush()
    if job.get("subreaper") and not _init_reaps:
        _reap_descendants()
    if streams is not None:
        # Sizes let the provider skip reading empty output files.
        text = text[:-1] + (', "stdout_dropped": %d, "stderr_dropped": %d, "stdout_size": %d, '
                            '"stderr_size": %d}') % (streams[0].dropped, streams[1].dropped,
                                                    _size(1), _size(2))
    try:
        _write_result(job["result_path"], text)
    except OSError as e:
        sys.stderr.write("gleitzeit runner: cannot write the result: %s\n" % e)
        _flush()
        os._exit(3)

_net_open = [0]  # connections being forwarded (each holds one thread)
_net_lock = None  # guards _net_open (threading.Lock, made by _net_listen)

def _net_count(delta):
    with _net_lock:
        _net_open[0] += delta
        return _net_open[0]

def _net_reset(conn):
    # like a refused connection: the client sees ECONNRESET
    try:
        conn.setsockopt(1, 13, b"\x01\0\0\0\0\0\0\0")  # SOL_SOCKET, SO_LINGER {1, 0}
    except OSError:
        pass
    conn.close()

def _net_pump(conn, out):
    # One thread per connection, both directions: poll (no FD_SETSIZE limit) for whichever
    # side has data, pass it on; an end of stream is passed on as a half-close.
    import select
    poll = select.poll()
    other = {conn.fileno(): (conn, out), out.fileno(): (out, conn)}
    for fd in other:
        poll.register(fd, select.POLLIN)
    try:
        while other:
            for fd, _ in poll.poll():
                if fd not in other:
                    continue
                src, dst = other[fd]
                try:
                    data = src.recv(65536)
                except OSError:
                    data = b""
                if data:
                    try:
                        dst.sendall(data)
                        continue
                    except OSError:
                        other.clear()
                        break
                poll.unregister(fd)
                del other[fd]
                try:
                    dst.shutdown(1)  # SHUT_WR
                except OSError:
                    pass
    finally:
        conn.close()
        out.close()
        _net_count(-1)

def _net_forward(conn, path, grant):
    import socket
    out = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        out.connect(path)
        out.sendall(b"%d\n" % grant)
        ok = out.recv(1) == b"1"
    except OSError:
        ok = False
    if not ok:
        # the destination refused or is unreachable, or the proxy is full
        _net_reset(conn)
        out.close()
        _net_count(-1)
        return
    _net_pump(conn, out)

def _net_accept(server, path, grant, limit):
    import threading
    while True:
        try:
            conn = server.accept()[0]
        except OSError:
            continue  # e.g. out of descriptors for a moment: the listener stays
        if _net_count(1) > limit:
            _net_count(-1)
            _net_reset(conn)
            continue
        try:
            threading.Thread(target=_net_forward, args=(conn, path, grant), daemon=True).start()
        except RuntimeError:  # no thread to be had (the process limit): this one is refused
            _net_count(-1)
            _net_reset(conn)

def _net_listen(net):
    # Network grants: listen on each granted address inside the sandbox's own network
    # namespace and forward every connection over net["socket"] to the provider's proxy,
    # which connects to that grant's destination only. Before the user is dropped: ports
    # below 1024 need the capability that dropping clears.
    global _net_lock
    import socket, threading
    threading.stack_size(256 * 1024)
    _net_lock = threading.Lock()
    for listener in net["listeners"]:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((listener["addr"], listener["port"]))
        server.listen(128)
        threading.Thread(target=_net_accept,
                         args=(server, net["socket"], listener["id"], net.get("limit", 256)),
                         daemon=True).start()

def _set_path(job):
    # Started with -S (site costs tens of ms when .pth files import packages): take the
    # module path a normal start computes, as probed once by the provider.
    path = job.get("sys_path")
    if path:
        sys.path[:] = [p for p in path if p]

def _check_declared(declared):
    # Each declared path must be what the provider checked (device, inode): bwrap resolved
    # it again to mount it, and a link swapped in meanwhile would give another directory.
    for path, dev, ino in declared:
        try:
            st = os.stat(path)
            same = (st.st_dev, st.st_ino) == (dev, ino)
        except OSError:
            same = False
        if not same:
            raise SystemExit("gleitzeit runner: the declared path %s changed while the sandbox "
                             "was built (was it replaced, e.g. by a link?); not run" % path)

def _once():
    try:
        os.setsid()
    except OSError:
        pass
    # Started through RUNNER_BOOTSTRAP, the boot file held [length][marshalled runner][job];
    # the bootstrap left it in _boot_data. Started with the source itself, stdin is the job.
    boot = globals().get("_boot_data")
    raw = boot[4 + int.from_bytes(boot[:4], "big"):] if boot is not None else sys.stdin.buffer.read()
    job = _loads(raw.decode("utf-8"))
    if job.get("subreaper"):
        _subreaper(die_with_parent=True)
        # Gleitzeit gone before that took hold: the task would run with no one to end it
        if job.get("parent_pid") not in (None, os.getppid()):
            os._exit(1)
    _close_inherited()
    _set_path(job)
    _stdin_devnull()
    _check_declared(job.get("declared") or ())
    _cap_inodes(job.get("tmpfs_paths") or (), job.get("tmpfs_inodes"))
    _own_tmpfs(job.get("own_tmpfs"))
    if job.get("net"):
        _net_listen(job["net"])
    _run_job(job)
    os._exit(0)

_ipc_fds = []

_mqueue_fd = None
_shm_fd = None
_shm_keep = ()
_ipc_checked = False  # the sandbox has its own IPC namespace: its POSIX objects are ours

def _ipc_open(options):
    global _mqueue_fd, _shm_fd, _shm_keep, _ipc_checked
    _ipc_checked = True
    # SysV objects only where no seccomp filter keeps tasks from making them (ENOSYS: see
    # seccomp.ts; installing it or the parent ends): two rereads of three tables per task.
    for kind in () if options.get("seccomp") else ("shm", "sem", "msg"):
        try:
            _ipc_fds.append(os.open("/proc/sysvipc/" + kind, os.O_RDONLY | os.O_CLOEXEC))
        except OSError:
            pass
    try:
        # POSIX message queues of this IPC namespace (the sandbox mounts them there)
        _mqueue_fd = os.open("/dev/mqueue", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        pass
    try:
        # the sandbox's own /dev/shm: POSIX shared memory and named semaphores
        _shm_fd = os.open("/dev/shm", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        _shm_keep = (options.get("shm_keep"),) if options.get("shm_keep") else ()
    except OSError:
        pass

def _ipc_left():
    # SysV IPC objects outlive their creator in this sandbox's IPC namespace; the parent
    # cannot remove the sandbox user's objects, so it reports them and gets replaced.
    # Raw rereads of files opened once (a third of the cost of opening them each time):
    # this runs between a task's end and its status line.
    for fd in _ipc_fds:
        try:
            if os.pread(fd, 4096, 0).count(b"\n") > 1:  # more than the header line
                return True
        except OSError:
            pass
    if _mqueue_fd is not None:
        try:
            if os.listdir(_mqueue_fd):
                return True
        except OSError:
            pass
    if _shm_fd is not None:
        try:
            if [n for n in os.listdir(_shm_fd) if n not in _shm_keep]:
                return True
        except OSError:
            pass
    return False

def _close_inherited():
    # Descriptors Gleitzeit itself inherited without close-on-exec (from a shell or a CI
    # harness) would otherwise reach every task: only stdin, stdout and stderr stay.
    if sys.version_info >= (3, 10):
        try:
            os.closerange(3, 1 << 30)  # one close_range(2)
        except OSError:
            pass
        return
    # Before 3.10, closerange closes every number in turn: a billion calls. Those open only.
    _keep_only()

def _keep_only(*fds):
    # Closes every descriptor but 0-2, the IPC-check ones (each spare closes them itself)
    # and fds.
    keep = {0, 1, 2, _mqueue_fd, _shm_fd}
    keep.update(_ipc_fds)
    keep.update(fds)
    try:
        open_fds = [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:
        open_fds = range(3, 65536)  # no /proc: every likely number
    for fd in open_fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the listing's own, closed by now

def _install_seccomp(ctypes, libc, prog):
    # The filter cold tasks get from bwrap (see seccomp.ts), on this parent: every child
    # (every task) inherits it.
    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = Fprog(len(prog) // 8, ctypes.addressof(buf))
    ul = ctypes.c_ulong
    if (libc.prctl(38, ul(1), ul(0), ul(0), ul(0)) != 0  # PR_SET_NO_NEW_PRIVS
            or libc.prctl(22, ul(2), ctypes.byref(fprog), ul(0), ul(0)) != 0):  # SECCOMP_MODE_FILTER
        raise SystemExit("gleitzeit runner: cannot install the seccomp filter (errno %d)"
                         % ctypes.get_errno())

def _cap_inodes(paths, inodes):
    # bwrap caps a tmpfs's bytes only: empty files cost none, yet ~1 KB of kernel memory each,
    # outside every limit (the kernel's default allows millions), and their removal is on a
    # warm parent's next task's path. As root (a warm parent keeps its capabilities; a cold
    # runner has CAP_SYS_ADMIN until it drops to the sandbox user), remount each with a cap
    # on files too.
    if os.getuid() != 0 or not inodes:
        return
    ms_nosuid, ms_nodev, ms_remount = 2, 4, 32  # bwrap mounts them nosuid, nodev
    opts = b"nr_inodes=%d" % int(inodes)
    for path in paths:
        # Where the kernel or a security module refuses (or an interpreter has no _ctypes),
        # the byte cap alone stays.
        try:
            _ccall("mount", b"tmpfs", path.encode(), b"tmpfs", ms_remount | ms_nosuid | ms_nodev,
                   opts)
        except ImportError:
            return

def _own_tmpfs(spec):
    # Without root, bwrap's tmpfs mounts cap bytes only, and their superblocks are not the
    # task's user namespace's to remount (bwrap's outer one made them). With CAP_SYS_ADMIN
    # there (bwrap --cap-add, for this alone): a mount namespace of this process's own, where
    # a new tmpfs capped on files too covers each of spec's paths, with what bwrap made there
    # (declared paths' links and their directories; a warm parent's output directory, bound
    # in, with what is bound in it) made again on it; then no capability is left, before any
    # code of the task's runs (a warm parent: before any child). Where the kernel refuses the
    # namespace or a mount, the byte cap alone stays; where it refuses the capabilities'
    # drop, nothing runs.
    if not spec:
        return
    try:
        if _ccall("unshare", 0x00020000) == 0:  # CLONE_NEWNS
            for path, size, mode in spec["paths"]:
                kept = _tree(path)
                opts = b"size=%d,nr_inodes=%d,mode=%o" % (size, spec["inodes"], mode)
                # MS_NOSUID | MS_NODEV, as bwrap mounts them
                try:
                    if _ccall("mount", b"tmpfs", path.encode(), b"tmpfs", 6, opts) == 0:
                        try:
                            _plant(path, kept)
                        except OSError:
                            # the byte cap alone: bwrap's tmpfs, with what is on it, again
                            # (MNT_DETACH)
                            _ccall("umount2", path.encode(), 2)
                finally:
                    for _, target in kept:
                        if isinstance(target, int):
                            os.close(target)
    finally:
        # uid 0 of its namespace (low ports granted): what it executes would get its bounding
        # set, which loses them first (PR_CAPBSET_DROP, while it has CAP_SETPCAP)
        for cap in spec.get("drop_bounding") or ():
            if _ccall("prctl", 24, cap, 0, 0, 0) != 0:
                raise SystemExit("gleitzeit runner: could not drop its capabilities")
        # capset(2), version 3, this process: nothing effective, permitted or inheritable but
        # what spec keeps (the ambient set goes with them)
        keep = int(spec.get("keep") or 0).to_bytes(4, "little")
        if _ccall("capset", (0x20080522).to_bytes(4, "little") + bytes(4),
                keep * 3 + bytes(12)) != 0:
            raise SystemExit("gleitzeit runner: could not drop its capabilities")

def _plant(path, kept):
    # What _tree found below path, made again on the new tmpfs there.
    for rel, target in kept:
        if target is None:
            os.mkdir(path + rel, 0o755)
        elif isinstance(target, int):
            # a mount point: the same mount (and those below it) bound again
            os.mkdir(path + rel, 0o700)
            source = b"/proc/self/fd/%d" % target
            # MS_BIND | MS_REC (its flags, read-only say, stay as they were)
            if _ccall("mount", source, (path + rel).encode(), None, 0x5000, None):
                raise OSError("gleitzeit runner: could not bind " + path + rel)
        else:
            os.symlink(target, path + rel)

def _tree(path):
    # The directories, links and mount points (directories of another file system) below
    # path, parents first: (path below it, the link's target, None for a directory, or a
    # descriptor (O_PATH) of the mount point).
    out = []
    dev = os.stat(path).st_dev
    def walk(rel):
        for e in os.scandir(path + rel):
            below = rel + "/" + e.name
            if e.is_symlink():
                out.append((below, os.readlink(e.path)))
            elif e.is_dir():
                if e.stat(follow_symlinks=False).st_dev != dev:
                    out.append((below, os.open(e.path, os.O_PATH | os.O_DIRECTORY)))
                else:
                    out.append((below, None))
                    walk(below)
    walk("")
    return out

def _ccall(name, *args):
    # A C library function by name, its int result (bytes pass as char *, None as NULL),
    # through the bare _ctypes module: importing ctypes costs ~4 ms more, on a cold task's path
    import _ctypes
    return _ctypes.call_function(_ctypes.dlsym(_ctypes.dlopen(None), name), args)

def _huge_code(ctypes, libc):
    # Where a hypervisor shadows the guest's page tables (seen: a Firecracker guest under
    # PVM), the first touch of each 4 KiB page in a freshly forked child costs ~5 us, of
    # code as much as of data, and a task's child runs through hundreds of pages of the
    # interpreter's code. That code is copied here, once, into anonymous transparent huge
    # pages (2 MiB) at the very same addresses, read and execute only: fork hands them on
    # whole, and a child's first touches cost a fifth (measured there: -1.1 to -2 ms of CPU
    # per task). Only 2 MiB chunks made wholly of the interpreter file's read-only mappings
    # are taken (read-only data beside the code in such a chunk becomes executable: no
    # boundary of ours, a task runs what code it likes anyway), and only where the copy is
    # byte for byte the file: a uprobe (perf probe, bpftrace, USDT) attached to the
    # interpreter is a breakpoint written into this process's page, which the kernel knows
    # by file and offset; copied away from the file, it would end this parent with SIGTRAP
    # when hit. Probes attached later do not reach warm tasks' copied code. Costs up to a
    # few MiB of memory per warm parent. (Whether the kernel offers huge pages cannot be
    # asked in here, /sys is not mounted; without them the copy is plain pages, which fork
    # also hands on.)
    vp, size = ctypes.c_void_p, ctypes.c_size_t
    mmap, mremap, munmap = libc.mmap, libc.mremap, libc.munmap
    mmap.restype, mremap.restype = vp, vp
    mmap.argtypes = [vp, size, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    mremap.argtypes = [vp, size, size, ctypes.c_int, vp]
    munmap.argtypes = [vp, size]
    libc.madvise.argtypes = libc.mprotect.argtypes = [vp, size, ctypes.c_int]
    libc.memcmp.argtypes = [vp, vp, size]
    code = ctypes.cast(ctypes.pythonapi.PyObject_Free, vp).value
    maps = []
    with open("/proc/self/maps", "rb") as f:
        for line in f:
            p = line.split(None, 5)
            lo, hi = (int(x, 16) for x in p[0].split(b"-"))
            maps.append((lo, hi, p[1], p[5].strip() if len(p) > 5 else b"", int(p[2], 16)))
    path = next((m[3] for m in maps if m[0] <= code < m[1]), b"")
    if not path.startswith(b"/"):
        return 0
    huge = 2 << 20
    chunks = sorted({c for lo, hi, perm, name, _ in maps if name == path and perm == b"r-xp"
                     for c in range(lo - lo % huge, hi, huge)})
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0  # gone or replaced (" (deleted)"): nothing to compare the copy with
    try:
        return _huge_chunks(ctypes, libc, maps, path, fd, chunks, huge)
    finally:
        os.close(fd)

def _huge_chunks(ctypes, libc, maps, path, fd, chunks, huge):
    vp = ctypes.c_void_p
    mmap, mremap, munmap = libc.mmap, libc.mremap, libc.munmap
    done = 0
    for chunk in chunks:
        parts = [m for m in maps if m[0] < chunk + huge and m[1] > chunk]
        if (not parts or parts[0][0] > chunk or parts[-1][1] < chunk + huge
                or any(m[3] != path or m[2] not in (b"r--p", b"r-xp") for m in parts)
                or any(a[1] != b[0] for a, b in zip(parts, parts[1:]))):
            continue
        raw = mmap(None, 2 * huge, 3, 0x22, -1, 0)  # read+write, MAP_PRIVATE|MAP_ANONYMOUS
        if raw is None or raw == vp(-1).value:
            break
        tmp = raw + (-raw) % huge
        libc.madvise(tmp, huge, 14)  # MADV_HUGEPAGE
        ctypes.memmove(tmp, chunk, huge)
        # the copy, not the original, is compared: a probe attached from now on lands in the
        # original, which goes. Against the file mapped afresh, shared (the kernel writes
        # uprobes into private mappings only; reading the file into bytes instead would leave
        # megabytes of heap behind, which every fork would copy the page tables of).
        same = True
        for lo, hi, _, _, off in parts:
            a, b = max(lo, chunk), min(hi, chunk + huge)
            view = mmap(None, b - a, 1, 1, fd, off + a - lo)  # PROT_READ, MAP_SHARED
            if view is None or view == vp(-1).value:
                same = False
                break
            same = libc.memcmp(tmp + a - chunk, view, b - a) == 0
            munmap(view, b - a)
            if not same:
                break
        # made read+execute before it replaces the code (MREMAP_MAYMOVE|MREMAP_FIXED): the
        # bytes at every address stay the same, this very call returns through them
        moved = (same and libc.mprotect(tmp, huge, 5) == 0
                 and mremap(tmp, huge, huge, 3, chunk) == chunk)
        if tmp > raw:
            munmap(raw, tmp - raw)
        if raw + 2 * huge > tmp + huge:
            munmap(tmp + huge, raw + 2 * huge - tmp - huge)
        if not moved:
            munmap(tmp, huge)
            if same:
                break  # refused (not a probe): the next chunk would be too
            continue
        done += 1
    return done

# Where a hypervisor shadows the guest's page tables (seen: a Firecracker guest under PVM),
# each page a forked child writes first costs it a fault of 10-40 us (a trap out and back,
# and a TLB flush), and a warm task's child writes ~210 pages of the heap and interpreter
# state it shares with its forker: ~2 ms, most of a task's time there. The kernel makes the
# same private copies for ~8 us a page when asked ahead (madvise MADV_POPULATE_WRITE, Linux
# 5.14): a spare asks for the pages a task's child writes as soon as it exists, while it waits
# for its job, off the job's path. Which pages: measured once per warm parent, by its first
# forker before the parent says it is ready, with a calibration child forked where spares are
# cloned from, which runs a task of Gleitzeit's own through a spare's whole path (job, files,
# user, code, result) and lists the pages it then holds alone (/proc/self/pagemap: present,
# mapped by it only); the other forkers and the parent's own spares take the list from it.
# Nothing of a user's task goes into the list, and each spare populates its own memory,
# which holds the same bytes after. Where tasks are the pool's own user, the calibration
# takes such a spare's steps too (the {"go"} line: see _calibrate).
# Measured there (2-CPU PVM guest, root): ~120 fewer faults in a task's child; a paced
# task's median 24-27% lower; back to back 3-5% less CPU, 4% faster.
_hot = ()  # (address, bytes) ranges each spare populates at its start
_calib = None  # in the calibration child: (pagemap fd, report pipe)
_HOT_MAX = 2048  # pages: a bound on the list, whatever the calibration found
_AHEAD_MARGIN = 105  # percent: see _calibrate
_CALIB_JOB = {"kind": "execute", "code": "result = {'value': [1, 2.5, 'x', None, True]}",
              "subreaper": True}

def _calibrate(inp, out, options, cgroup, mask):
    # In the first forker of a warm parent (see _start_forkers), before it says it is ready
    # (no task runs yet: none can reach the calibration children, which run as the sandbox
    # user, or as the pool's own user where tasks are that user): the message for the warm parent, b"C without with\n" where the two
    # were measured (see below), then the list where it is taken; sets _hot to that list.
    # An exception leaves _hot as it was: empty.
    global _hot
    tmpfs = options.get("work_tmpfs")
    if not tmpfs or _libc is None:
        return b""  # spares fault their pages in as they write them
    mad = _libc.madvise  # (its argument types: see _pool)
    page = id(_plugs) & ~4095  # a page of this heap: populating one of its own is a no-op
    if mad(page, 4096, 23) != 0:
        return b""  # not this kernel (before 5.14), or a seccomp profile refusing it
    d = "%s/.calib%d" % (tmpfs, os.getpid())
    os.mkdir(d, 0o700)
    try:
        def run(n, deadline, report):
            # one calibration child in a directory of its own: (its report, its CPU time)
            base = "%s/%d" % (d, n)
            work = base + "w"
            os.mkdir(work, 0o700)
            paths = {"work_dir": work, "stdout_path": base + "o", "stderr_path": base + "e",
                     "result_path": base + "r"}
            job = dict(_CALIB_JOB, output_limit=options.get("output_limit") or 1048576, **paths)
            if options.get("uid") is not None:
                job["uid"] = options["uid"]
                job["gid"] = options.get("gid", options["uid"])
            ahead = _dumps({"prepare": dict(paths, output_limit=job["output_limit"])}) + "\n"
            if _own_user:
                # A spare's whole path there (see the pool's loop): it sets up its files once
                # told to go on, and its job says that its directory was made afresh and
                # that a forker's process counts in its user's (see _apply_limits).
                ahead += '{"go": true}\n'
                job["fresh_dir"] = True
                job["pool_extra"] = 1
            lines = (ahead + _dumps(job) + "\n").encode()
            data, cpu = _calibration_run(inp, out, options, cgroup, mask, work, lines, deadline,
                                         report)
            if cpu is not None:
                try:
                    ok = _read_file(paths["result_path"]).startswith('{"ok": true')
                except OSError:
                    ok = False
                if not ok:
                    cpu = None  # (it ended, but its task did not come out as it should)
            return data, cpu
        data = run(0, time.monotonic() + 4.0, True)[0]
        hot = _hot_ranges(data)
        costs = b""
        if hot and options.get("populate") != "always":
            # Whether it pays here: the same task's child without the list and with it (its
            # whole CPU time, from its fork to its exit: the pages taken ahead, the faults it
            # still takes, its exit, which frees more pages), in turn, the least of each, by
            # a deadline of their own (the warm parent waits 10 s for this forker). Where
            # taking a page ahead costs about what its fault would (a host whose page faults
            # are cheap), the pages listed but not written make it a loss. Where a run fails,
            # nothing is taken.
            deadline = time.monotonic() + 4.0
            without, ahead = [], []
            try:
                for n in range(1, 5):
                    _hot = hot if n % 2 == 0 else ()  # (what the child inherits)
                    (ahead if _hot else without).append(run(n, deadline, False)[1])
            finally:
                _hot = ()
            if None in without + ahead:
                hot = ()
            else:
                costs = b"C %d %d\n" % (min(without), min(ahead))
                # Taken unless they cost more CPU than without, by more than the noise of such
                # a measure (_AHEAD_MARGIN percent): where they cost about the same, they still
                # take the faults off the task's path (a paced task's median 0.81-0.83x, same
                # CPU, on a host whose page faults are dear); where they cost clearly more
                # (1.2-1.3x on a host whose faults are cheap), not.
                if min(ahead) * 100 >= min(without) * _AHEAD_MARGIN:
                    hot = ()
    finally:
        _purge(d)
    _hot = hot
    return costs + b"\n".join(data.split(b"\n")[:_HOT_MAX]) if hot else costs

def _hot_ranges(data):
    # "address count" lines (see _report_pages) as (address, bytes) ranges, at most _HOT_MAX
    # pages in all
    ranges = []
    pages = 0
    for line in data.split(b"\n")[:_HOT_MAX]:
        f = line.split()
        if len(f) != 2 or not f[0].isdigit() or not f[1].isdigit():
            continue
        at, n = int(f[0]), int(f[1])
        if at % 4096 or n < 1 or pages + n > _HOT_MAX:
            continue
        pages += n
        ranges.append((at, n * 4096))
    return tuple(ranges)

_calib_cpu = [None, None]  # a calibration child's least CPU time in ns, without and with

def _calibration_run(inp, out, options, cgroup, mask, work, lines, deadline, report=True):
    # A calibration child (see above): what it reported by the deadline (b"" where it could
    # not, or where report is False) and its CPU time in ns (None where it did not end by
    # itself). It runs with the signal mask the spares' jobs run with (this forker's own
    # blocks them all).
    fds = []
    try:
        for _ in range(3):
            fds.extend(os.pipe())
        job_r, job_w, done_r, done_w, rep_r, rep_w = fds
        pid = os.fork()
    except OSError:
        for fd in fds:
            os.close(fd)
        return b"", None
    if pid == 0:
        global _calib
        try:
            _keep_only(inp.fileno(), out.fileno(), job_r, done_w, rep_w)
            if report:
                # opened now, as root: still read once it has become the sandbox user (and
                # where it is the pool's own user, readable by it: a warm parent's processes
                # are not dumpable, so their /proc files are not that user's; no task runs)
                if _own_user:
                    _prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
                _calib = (os.open("/proc/self/pagemap", os.O_RDONLY), rep_w)
            _spare(inp, out, options, cgroup, job_r, done_w, work, mask)
        finally:
            os._exit(70)
    for fd in (job_r, done_w, rep_w):
        os.close(fd)
    chunks = []
    cpu = None
    ended = False  # its end of the report pipe closed: by its report, or by its exit
    try:
        os.write(job_w, lines)
        os.close(job_w)
        job_w = None
        import select
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([rep_r], [], [], left)[0]:
                chunks = []  # (cut short: not the whole list)
                break
            chunk = os.read(rep_r, 65536)
            if not chunk:
                ended = True
                break
            chunks.append(chunk)
    finally:
        # (Without a report, the pipe closed as it exited: its "done" is there, or never.)
        whole = ended and not report and os.read(done_r, 1) == b"d"
        if not whole:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        status, usage = os.wait4(pid, 0)[1:]
        if whole and status == 0:
            cpu = round((usage.ru_utime + usage.ru_stime) * 1e6) * 1000  # (microseconds)
        for fd in (job_w, done_r, rep_r):
            if fd is not None:
                os.close(fd)
    return b"".join(chunks), cpu

def _report_pages(pm, fd):
    # In the calibration child, its job done: the pages of its private writable mappings it
    # holds alone (written since the fork, or new), as "address count" lines.
    with open("/proc/self/maps", "rb") as f:
        maps = f.read().splitlines()
    out = []
    for line in maps:
        p = line.split(None, 5)
        if p[1] != b"rw-p" or (len(p) > 5 and p[5].startswith(b"[v")):
            continue
        lo, hi = (int(x, 16) for x in p[0].split(b"-"))
        data = os.pread(pm, (hi - lo) // 4096 * 8, lo // 4096 * 8)
        start = None
        for i in range(len(data) // 8 + 1):
            e = int.from_bytes(data[8 * i:8 * i + 8], "little") if 8 * i < len(data) else 0
            mine = e >> 63 and (e >> 56) & 1  # present, mapped by this process alone
            if mine and start is None:
                start = i
            elif not mine and start is not None:
                out.append(b"%d %d" % (lo + start * 4096, i - start))
                start = None
    data = b"\n".join(out)
    while data:
        data = data[os.write(fd, data):]
    os.close(fd)

def _populate():
    mad = _libc.madvise
    for at, n in _hot:
        mad(at, n, 23)  # MADV_POPULATE_WRITE (one no longer mapped here: ENOMEM, nothing)

_plugs = []  # see _plug_pools: never freed, never touched again

def _free_blocks():
    # {block size: free blocks in pools in use} of pymalloc, read off the table that
    # sys._debugmallocstats() prints to stderr (C's, so through a pipe on descriptor 2).
    r, w = os.pipe()
    saved = os.dup(2)
    os.dup2(w, 2)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    free = {}
    for line in b"".join(chunks).decode("ascii", "replace").splitlines():
        f = line.split()  # class, size, num pools, blocks in use, avail blocks
        if len(f) == 5 and all(x.isdigit() for x in f):
            free[int(f[1])] = int(f[4])
    return free

def _plug_pools():
    # A forked child that makes an object takes a free block of a pool in use, all over
    # this parent's heap, and writes that pool's header and the block: a copy of each such
    # page (~3 us) in every task. Filled here once with objects kept for good (~0.6 MiB),
    # a child's new objects go to pools of its own instead: 20-25 fewer page copies per task
    # measured. Only where the table is pymalloc's as in CPython 3.8-3.13.
    try:
        header = sys.getsizeof(b"")
        for _ in range(3):  # the lists that hold them take blocks too
            free = _free_blocks()
            if not any(free.values()) or sum(s * n for s, n in free.items()) > (8 << 20):
                return
            for size, n in free.items():
                if n == 0:
                    continue
                if size <= 16:
                    made = [object() for _ in range(n)]
                elif size <= 32:
                    made = [float(i) + 0.5 for i in range(n)]
                elif size - header > 1:
                    made = [bytes(size - header) for _ in range(n)]
                else:
                    continue
                _plugs.append(made)
    except Exception:
        pass  # another allocator: nothing to fill

def _pool():
    _close_inherited()
    # Gleitzeit starts warm parents with LD_BIND_NOW: the dynamic linker has resolved every
    # library function up front, here, once, instead of in every child that first calls one
    # (a symbol look-up and a copied page each: measured 2-3% of a warm task's CPU time).
    # Not the tasks' business: gone from their environment (later dlopens bind at once all
    # the same, which was measured no slower).
    os.unsetenv("LD_BIND_NOW")
    os.environ.pop(b"LD_BIND_NOW", None)
    options = _loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    _set_path(options)
    # without root: tmpfs mounts of its own, capped on files (before any child)
    _own_tmpfs(options.get("own_tmpfs"))
    # Only meaningful inside the sandbox's own IPC namespace (the host's has its own users).
    ipc_check = bool(options.get("ipc_check"))
    own_ns = bool(options.get("own_pid_ns"))
    global _init_reaps
    _init_reaps = own_ns
    if ipc_check:
        _ipc_open(options)
    # Warm what user code commonly needs, so the forked child pays nothing for it. Not more:
    # a bigger parent makes every fork slower (page tables), e.g. +0.5 ms for decimal,
    # statistics, subprocess, pathlib and friends together.
    import resource, ctypes, json, traceback, linecache, gc, select  # noqa: F401
    for m in ("collections", "re", "math", "itertools", "functools", "datetime"):
        try:
            __import__(m)
        except Exception:
            pass
    # First use of the compiler, the codec and text I/O in a process costs ~1 ms of lazy
    # set-up: pay it here, once, instead of in every child.
    exec("result = {'a': [i * 2 for i in range(3)]}\ndef f(x):\n    return x\n",
         {"__builtins__": __builtins__})
    _loads(_dumps({"a": [1, 2.5, "x", None, True]}))
    fd = os.open("/dev/null", os.O_WRONLY)
    t = io.TextIOWrapper(io.BufferedWriter(_CappedRaw(fd, 10)), encoding="utf-8",
                         errors="backslashreplace")
    t.write("warm\n")
    t.flush()
    os.close(fd)
    global _prctl, _libc
    libc = _libc = ctypes.CDLL(None, use_errno=True)
    _prctl = libc.prctl
    # (addresses: 64-bit; without argument types ctypes would pass 32 bits of them)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.madvise.restype = ctypes.c_int
    try:
        _huge_code(ctypes, libc)
    except Exception:
        pass  # the code stays where the loader put it
    _prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans of a task come back here
    libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: tasks cannot ptrace or read our memory
    if options.get("seccomp"):
        _install_seccomp(ctypes, libc, bytes.fromhex(options["seccomp"]))
    out = io.open(os.dup(1), "w", buffering=1)
    inp = io.open(os.dup(0), "rb")
    _stdin_devnull()
    nul = os.open("/dev/null", os.O_WRONLY)
    os.dup2(nul, 1)
    os.close(nul)
    global _streams_ahead, _std_kept, _rlimits, _xfsz_ignored
    # Set up here once rather than in every child (each costs a fresh child page faults).
    _rlimits = _rlimit_table()
    _signal.signal(_signal.SIGXFSZ, _signal.SIG_IGN)
    _xfsz_ignored = True
    # This parent is its sandbox's init: a signal it has no handler for cannot reach it from
    # inside. Python's SIGINT handler would be one (a task of the pool's own user could end
    # it); each child gets it back.
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    _streams_ahead = (_make_stream(1, 0), _make_stream(2, 0))  # never written to here
    # A child replaces sys.stdout/stderr with those: were the old objects freed there, their
    # finalisers (flush, close) would touch ~50 more pages of this heap in every child.
    _std_kept = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    # Objects that exist now are never collected: a collection in a child would otherwise
    # touch (and copy) every page of the parent's heap.
    gc.collect()
    _plug_pools()
    gc.freeze()  # the lists holding the filler too: a child's collection never walks them
    global _own_user
    _own_user = options.get("uid") is None  # before the forkers: their spares need it too
    _start_forkers(inp, out, options)
    if None in _calib_cpu:
        out.write('{"ready": true}\n')
    else:
        # what the calibration measured (see _calibrate), for the provider's pool stats
        out.write('{"ready": true, "pages_ahead": {"cpu_ns_without": %d, "cpu_ns_with": %d, '
                  '"taken": %s}}\n' % (_calib_cpu[0], _calib_cpu[1], "true" if _hot else "false"))
    # A spare child is forked ahead of each job, so neither fork nor exit is on a task's
    # path. Where forkers clone the spares (see _fork_in), two are ahead: the one after the
    # next is asked for as soon as a task has ended and is cleaned up, so its clone and
    # set-up overlap the gap to the next job and that job's run (~0.9 ms of work, more
    # than one task's ~0.4 ms run: asked for only when a job came, it was often not ready
    # for the job after, and the parent waited for its pid before the status line).
    # Otherwise the parent forks the next spare itself, while the job runs (a fork as soon
    # as a task has ended would hold up the next job). The provider sends the next task's
    # {"prepare"} line while this one runs, so the spare's set-up is off the path too. The
    # spare waits as root (it sets up its files with no change of identity, and the running
    # task, whose every uid is the sandbox user's, cannot signal it) and drops to the
    # sandbox user for good when its job arrives. A child says "done" over a pipe once its
    # result is written; a pidfd notices a child that dies instead.
    if not hasattr(os, "pidfd_open"):
        _pool_plain(inp, out, ipc_check, options)
        return
    infd = inp.fileno()
    buf = [b""]
    eof = [False]

    def take_line():
        data = buf[0]
        nl = data.find(b"\n")
        if nl < 0:
            return None
        buf[0] = data[nl + 1:]
        return data[:nl + 1]

    parts = []  # a long line's chunks so far (see _read_lines)

    def fill():
        data = _read_lines(infd, parts)
        if data == b"":
            eof[0] = True
        elif data:
            buf[0] += data

    def forward(spare, line):
        # The bytes of line written (all, unless the spare has ended).
        sent = 0
        try:
            view = memoryview(line)
            while view:
                n = os.write(spare[1], view)
                sent += n
                view = view[n:]
        except OSError:
            pass
        return sent

    # Bubblewrap mounts a size-capped tmpfs for the task directories (work_tmpfs): each
    # spare gets a fresh one there, made by this parent (root's, mode 0700, until the job
    # comes), and a finished task's directory is moved to a root-only trash before the
    # status line (the next task cannot reach it) and removed after it.
    tmpfs = options.get("work_tmpfs")
    trash = None
    if tmpfs:
        trash = tmpfs + "/.trash"
        os.mkdir(trash, 0o700)
        # and the sandbox's /dev/shm (POSIX shared memory), which tasks share in turn
        _cap_inodes((tmpfs, "/dev/shm"), options.get("work_inodes"))
    serial = [0]  # task directories named so far
    trashed = [0]  # and moved to the trash
    # Names whose directories went to the trash, taken again: a spare's directory is also
    # its HOME, TMPDIR and PWD, which its forker sets, and the C library keeps every value
    # it was ever given (a forker grew by ~0.3 KiB a task, which every clone copies).
    free_names = []
    stale = [False]  # a finished task's directory could not be removed

    def new_dir():
        if not tmpfs:
            return None
        if free_names:
            path = free_names.pop()
        else:
            serial[0] += 1
            path = "%s/w%d" % (tmpfs, serial[0])
        os.mkdir(path, 0o700)
        return path

    spare = _prefork(inp, out, options, new_dir())
    ahead = None  # the spare after that one (forkers only): see above
    # Without a sandbox user apart from this pool's (not root), a task can signal the spare
    # and change this parent's limits or priority: then it is reported dirty (retired).
    if _own_user:
        _sched_attr[0] = ctypes.create_string_buffer(56)
    mypid = os.getpid()
    own = _settings(mypid) if _own_user else None
    # Where they cannot all be read (an outer seccomp profile denying one of the calls, say,
    # or an architecture not named above), a task's changes to the spare, the forker or this
    # parent could not be seen: each parent then runs one task and is retired (dirty).
    single_use = _own_user and own is None
    global _own_settings
    _own_settings = own
    outfd = out.fileno()
    fresh = None  # the spare whose directory was made afresh after the task before ended
    vetted = None  # own-user pools: the spare found untouched once the task before had ended
    lost = 0  # jobs in a row whose spare ended before it read them (see below)
    while True:
        line = take_line()
        if line is None:
            if eof[0]:
                break
            fill()
            continue
        if not line.strip():
            continue
        prepare = line.startswith(b'{"prepare"')
        job = line
        if not prepare:
            spare = _settle(spare, inp, out, options)  # before the job goes to it
            before = spare
            # Own-user pools look at the spare after the task before (see below), in a PID
            # namespace of this parent's, where nothing of a task ran since (without one, or
            # for a spare made since, now). Here only whether it has ended or is on its way
            # out (something outside the sandbox killed it, the OOM killer say, or its set-up
            # failed): one that ends after this, before it has read its job, is replaced then
            # (see "lost" below). (Root pools look at its pidfd only: one killed meanwhile
            # could still read its job, and its task fail, as it could once it had begun.)
            if (_own_user and (spare is not vetted or _idle(spare[0]) is None)) or _gone(spare):
                try:
                    spare = _live_spare(spare, own, lambda: _settle(
                        _prefork(inp, out, options, new_dir()), inp, out, options))
                except _NoSpare:
                    # Something keeps ending or changing them: this parent runs no more jobs,
                    # and not this one (the provider sends it to another parent).
                    os.write(outfd, b'{"ready": true, "dirty": true}\n')
                    break
        if _own_user and not prepare:
            # its directory made since the task before ended (or a new spare's, made now)
            made = spare is not before or fresh is spare
            fresh = None
            if line.endswith(b"}\n"):
                # The forker, when there is one while the task runs (none is made meanwhile,
                # see _fork_in): its place in the count, which is the task's user's, is the
                # task's (see _apply_limits). Last, so that it is what the job says.
                line = line[:-2] + b', "pool_extra": %d%s}\n' % (
                    len(_forkers), b', "fresh_dir": true' if made and own_ns else b"")
        sent = forward(spare, line)
        if prepare:
            continue
        running = spare
        pid, job_w, done_r, pidfd, task_dir = running[:5]
        if ahead is not None:
            spare, ahead = ahead, None
        else:
            # This process is the one thing every task waits on twice (to pass its job on,
            # to report its end), and forking a spare is most of its work per task: it is
            # done here, while the task runs, not between a status line and the next job.
            spare = _prefork(inp, out, options, new_dir())
        while True:
            # Prepare lines for the next task may come while this one runs: pass them on.
            if b"\n" in buf[0] and buf[0].startswith(b'{"prepare"'):
                forward(spare, take_line())
                continue
            waiting = [done_r, pidfd] if (eof[0] or b"\n" in buf[0]) else [done_r, pidfd, infd]
            ready = select.select(waiting, [], [])[0]
            if infd in ready:
                fill()
                if eof[0]:
                    # Gleitzeit closes this pipe only after killing this parent, so the
                    # orchestrator is gone (killed, say): the task must not run on with no
                    # one to enforce its timeout or take its result.
                    _end_orphaned(pid, own_ns)
                continue
            break
        said_done = done_r in ready and os.read(done_r, 1) == b"d"
        if not said_done and lost < 3 and (not sent or _unread(job_w) >= sent):
            # The spare ended before it read any of its job (its pipe holds it still, or was
            # closed before any of it was written): killed from outside the sandbox (the OOM
            # killer, say), or its set-up failed. Nothing of the task ran: the job goes to the
            # next spare, as if it had just come.
            lost += 1
            if _end_spare(running):
                free_names.append(task_dir)
            vetted = None
            buf[0] = job + buf[0]
            continue
        lost = 0
        os.close(job_w)
        if said_done:
            status = 0
            # The task's own code can write to the done pipe too: nothing of it may run on
            # once its end is reported (an honest child is exiting already).
            for kill in (os.kill, os.killpg):
                try:
                    kill(pid, 9)
                except OSError:
                    pass
            # Its result and output are written (the child flushed them before saying so):
            # the provider reads them now, while this parent makes sure below that nothing
            # the task started runs on, and cleans up after it; the next job, which the
            # provider may send meanwhile, is read only after that. A process the task left
            # could still write to its own output files until then, as it could have before
            # the end; it cannot reach the next task's (see _strays; the status of a task
            # that did not say it was done still comes after all that).
            os.write(outfd, b'{"status": 0, "early": true}\n')
        else:
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                status = 9  # reaped already: it was killed
            if not own_ns:
                _reap_descendants(exclude=(spare[0],))
        reported = said_done  # this task's end is out (early, or by the status line below)
        try:
            os.close(done_r)
            os.close(pidfd)
            _forget(pid)
            # Processes the task left (a task can report its end early, or start processes that
            # outlive it) go first: they could still make IPC objects or files. Usually there
            # are none: the killed task cannot start more, so one look at /proc (this sandbox's
            # PID namespace) tells. Where the task reported its end, those of its process
            # group, killed with it, end by themselves (and are reaped here, its init: see
            # _ending); any other, or any a task left that ended otherwise, ends with
            # everything but this parent. Before the status line: should they not go, this
            # parent ends and only this task fails (one whose end was reported early: see
            # below).
            spare = _settle(spare, inp, out, options)
            if _forkers_off[0] and _forkers:
                _drop_forkers()  # given up while the task ran (see _fork_in)
            known = {1, mypid, pid, spare[0]} | _forker_pids()
            left = own_ns and _strays(known)
            if left and not (said_done and _ending(known, pid, left)):
                _kill_leftovers(mypid)
                _drop_forkers()  # killed too; made again as needed
                for fd in spare[1:4]:
                    os.close(fd)
                if spare[4]:
                    _purge(spare[4])
                spare = _prefork(inp, out, options, new_dir())
            # What the task left or changed: IPC objects; without a sandbox user apart from
            # this pool's, this parent's settings and the task tmpfs's root. Once it is reaped
            # (where it said it was done, below: a system call it had under way when it was
            # killed ends first).
            ipc = ipc_check and not said_done and _ipc_left()
            dirty = (single_use or stale[0] or ipc
                     or (not said_done and _own_user and (
                         _settings(mypid) != own or _planted(tmpfs, trash, task_dir, spare[4]))))
            if not said_done:
                # Raw write of the status line (the file object's layers touch more of the heap).
                os.write(outfd, b'{"status": %d, "dirty": %s}\n'
                         % (status, b"true" if dirty else b"false"))
            reported = True
            # Then, before the next job (read only after this): the task's process has ended,
            # so a system call it had under way (one making an IPC object, say) has too;
            # whatever it made is removed, and its directory goes (each task has the whole
            # tmpfs).
            gone = None
            if task_dir:
                trashed[0] += 1
                gone = "%s/%d" % (trash, trashed[0])
                try:
                    os.rename(task_dir, gone)
                    free_names.append(task_dir)
                except OSError:
                    gone = None
                    _purge(task_dir)
            if said_done:
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
                if ipc_check and _ipc_left():
                    ipc = dirty = True
            if ipc and not _clear_ipc():
                raise SystemExit("gleitzeit runner: cannot remove the IPC objects a task left")
            if gone and not _rmdir(gone):
                _purge(gone)
                # what even that left (a tree past PATH_MAX, say) would fill the tmpfs over
                # many tasks: the next status line says dirty, and the sandbox goes with it
                stale[0] = _exists(gone)
            if said_done and _own_user and (_settings(mypid) != own
                                            or _planted(tmpfs, trash, task_dir, spare[4])):
                dirty = True
            if _own_user:
                _forkers_sound(inp, out, options)  # the task has ended, and what it left
            if _own_user and own_ns:
                # and the next task's spare, which it could have reached: looked at now, not
                # once the job has come (in this PID namespace nothing of a task runs until
                # then; without one, a process a task left may, and the job's look stays)
                spare = _live_spare(_settle(spare, inp, out, options), own, lambda: _settle(
                    _prefork(inp, out, options, new_dir()), inp, out, options))
                vetted = spare
            if _forkers and not _forkers_off[0]:
                # The spare after the next, from its forker (a message: the clone is the
                # forker's work). Task cgroups go round three at a time: it goes into the one
                # of the task before this, whose processes were gone before its status line.
                ahead = _prefork(inp, out, options, new_dir())
            if _own_user and own_ns and spare[4]:
                # The next task's directory, made while this task ran (and its user's, as this
                # task was), made afresh now that nothing of a task runs (in its own PID
                # namespace, the pool's processes are all there is): here, not in the spare once
                # its job has come, which cost the job ~0.1 ms. Once its forker has cloned it
                # (which enters it), so that the clone does not meet it half gone.
                spare = _settle(spare, inp, out, options)
                _rmdir(spare[4]) or _purge(spare[4])  # (empty, usually: one system call)
                try:
                    os.mkdir(spare[4], 0o700)
                    fresh = spare
                except OSError:
                    pass  # what the task left there would not go: the spare takes another name
                if fresh is spare:
                    # Nothing of a task runs now: the spare may set up the next task's
                    # output files and enter its directory ahead of the job, off its path.
                    # (A spare gone meanwhile is found before its job: see _live_spare.)
                    try:
                        os.write(spare[1], b'{"go": true}\n')
                    except OSError:
                        pass
            if said_done and (dirty or stale[0]):
                # The end of a task reported early (see above) left this sandbox dirty: it takes
                # no more jobs. The one the provider may have sent already is not read (the
                # provider sends it to another parent).
                os.write(outfd, b'{"ready": true, "dirty": true}\n')
                break
        except BaseException:
            if not reported:
                raise  # its end is not out: it fails with this parent, as it would have
            # Its end is out: whatever this clean-up met (a limit the task set on this
            # parent, a process that would not stop), the next job, which the provider may
            # have sent already, must not fail for it. This parent is dirty and goes, that
            # job unread (the provider sends it to another).
            try:
                os.write(outfd, b'{"ready": true, "dirty": true}\n')
            finally:
                os._exit(1)
    os.close(spare[1])
    if ahead is not None:
        os.close(ahead[1])

def _read_lines(fd, parts):
    # One read of a line-based pipe, as bytes ending with a whole line to add to a buffer;
    # b"" at its end; None while a long line (a big context) is still coming: its chunks are
    # kept in parts and joined once, at its end (added to a buffer read by read, they cost
    # time quadratic in its size).
    data = os.read(fd, (1 << 20) if parts else 65536)
    if not data:
        return b""
    if b"\n" not in data:
        parts.append(data)
        return None
    if parts:
        parts.append(data)
        data = b"".join(parts)
        del parts[:]
    return data

def _planted(tmpfs, trash, *dirs):
    # Where tasks are the pool's own user, the task tmpfs's root, its trash and the sandbox's
    # /dev/shm are theirs too: anything there but the task directories (files, another mode,
    # extended attributes) would be seen by the next task, or break it.
    if not tmpfs:
        return False
    keep = {".trash"} | {d.rpartition("/")[2] for d in dirs if d}
    try:
        if set(os.listdir(tmpfs)) - keep or os.listdir(trash):
            return True
        for path, mode in ((tmpfs, 0o711), (trash, 0o700), ("/dev/shm", 0o1777)):
            if os.stat(path).st_mode & 0o7777 != mode or os.listxattr(path):
                return True
        return False
    except OSError:
        return True

def _strays(known):
    # The processes in this sandbox's PID namespace but the known ones (a list: true if any;
    # [0] where /proc cannot be read).
    try:
        return [int(n) for n in os.listdir("/proc") if n.isdigit() and int(n) not in known]
    except OSError:
        return [0]

def _ending(known, group, left, wait=2.0):
    # Whether the processes a task that reported its end left are all of its process group
    # and gone within "wait" seconds (as long as _kill_leftovers would wait for them): the
    # group is killed again on each look (a process of the task's session may have joined it
    # since: the group's id is the task's, which stays taken until the task is reaped, after
    # this), each member must be on its way out (killed, exiting, or dead and waiting to be
    # reaped: here, once its parent has gone), and /proc is looked at again until they are
    # gone. False at once for a process of another group: nothing killed it, and it may fork.
    deadline = time.monotonic() + wait
    while left:
        try:
            os.killpg(group, 9)
        except OSError:
            pass  # (no one in it any more)
        for p in left:
            if p <= 0:
                return False  # (/proc could not be read)
            try:
                if os.waitpid(p, os.WNOHANG)[0] == p:
                    continue
            except ChildProcessError:
                pass  # not this parent's child (yet): its own parent is on its way out
            except OSError:
                return False
            try:
                stat = _read_proc("/proc/%d/stat" % p)
            except OSError:
                continue  # gone
            rest = stat[stat.rfind(b")") + 2:].split()
            if int(rest[2]) != group:
                return False
            # a zombie, PF_EXITING, or SIGKILL pending (killed, not yet run since): of its
            # first thread (all of its threads were killed with it, and it is gone from /proc
            # only once they are too)
            if rest[0] != b"Z" and not int(rest[6]) & 0x4 and not _killed(p):
                return False
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0002)
        left = _strays(known)
    return True

def _exists(path):
    try:
        os.lstat(path)
        return True
    except OSError:
        return False

def _rmdir(path):
    try:
        if path:
            os.rmdir(path)
        return True
    except OSError:
        return False

def _kill_leftovers(mypid):
    # Everything in this sandbox's PID namespace but its init and this parent goes, the
    # spare too (the caller forks another): one kill(-1) reaches every process at once,
    # stopped or traced ones included, and no fork escapes it. Then wait, reaping (orphans
    # come back here), until they are gone; if they are not, this parent ends, and its
    # sandbox with everything in it.
    os.kill(-1, 9)
    for pid in list(_proc_fds):
        if pid != mypid:
            _forget(pid)
    deadline = time.monotonic() + 2.0
    while True:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        if not _strays({1, mypid}):
            return
        if time.monotonic() > deadline:
            raise SystemExit("gleitzeit runner: a task left processes that would not stop")
        time.sleep(0.0005)

def _pending(status):
    # The signals pending, for the thread or the whole process, in a /proc status file (None
    # where it does not say).
    fields = (_status_field(status, b"SigPnd:"), _status_field(status, b"ShdPnd:"))
    return int(fields[0], 16) | int(fields[1], 16) if all(fields) else None

def _killed(pid, signals=0x100):
    # SIGKILL (or any of "signals") pending.
    try:
        status = _read_proc("/proc/%d/status" % pid)
    except OSError:
        return True  # gone
    return bool((_pending(status) or 0) & signals)

def _gone(spare):
    # A spare that has ended (its pidfd is readable once it has).
    import select
    return bool(select.select([spare[3]], [], [], 0)[0])

def _unread(fd):
    # The bytes written to a pipe (by its write end, fd) and not yet read (FIONREAD), or -1.
    if _libc is None:
        return -1
    import ctypes
    n = ctypes.c_int(0)
    return n.value if _libc.ioctl(fd, 0x541B, ctypes.byref(n)) == 0 else -1

class _NoSpare(Exception):
    """Four spares in a row were not plainly waiting (killed, stopped or changed meanwhile)."""

def _live_spare(spare, own, make):
    # A task of the pool's own user can signal the spare waiting for the next job. The task
    # before has ended by now (and, in the parent's PID namespace, what it left), so nothing
    # of it can signal it any more (without one, at the job: as late as can be): a spare
    # that is not plainly waiting (a signal pending, stopped, on its way out, gone) is
    # killed and replaced; the next task's paths then come with its job. Its replacement is
    # looked at too: a forker that task changed (and whose spare it signalled, say) would
    # have cloned it with the forker's settings. (Root pools: only a spare gone, replaced.)
    import select
    for tries in range(4):
        pid, pidfd = spare[0], spare[3]
        gone = _gone(spare)
        if not gone and (not _own_user or _waiting(pid, own)):
            return spare
        if tries == 3:
            raise _NoSpare()
        if _own_user and spare[5] is not None and not gone and _settings(pid) != own:
            for cgroup, (_, sock) in list(_forkers.items()):
                if sock is spare[5]:
                    # Its settings changed, and it was made by this forker, which may be what
                    # was changed: it goes too (and the next spare is forked by this parent,
                    # whose own settings are looked at after each task, until a forker is made
                    # again after a task: see _forkers_sound). A spare gone or signalled says
                    # nothing of it.
                    _drop_forkers(cgroup)
        if not gone:
            # by its pidfd: without a PID namespace, a number reaped meanwhile (a process the
            # task left, ours to reap, can end it) may be another process's by now
            try:
                _signal.pidfd_send_signal(pidfd, 9)
            except OSError:
                pass
            select.select([pidfd], [], [])
        _end_spare(spare)
        spare = make()

def _end_spare(spare):
    # A spare that has ended (or been killed) and run no job: its descriptors closed, it
    # reaped, its directory removed. Whether that directory is gone (its name free again).
    pid, job_w, done_r, pidfd, task_dir = spare[:5]
    for fd in (job_w, done_r, pidfd):
        os.close(fd)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    _forget(pid)
    if not task_dir:
        return False
    _purge(task_dir)
    return not _exists(task_dir)

def _idle(pid, states=(b"S", b"R")):
    # Asleep or running (not stopped, not dead) with no signal pending (a SIGKILL stays in
    # the shared set once taken, and a SIGSTOP shows there before it stops it): its status
    # file, for more looks; else None. A process that exits of itself is not told from one at
    # work: a spare's job that it did not read goes to the next spare (see "lost" in the
    # pool's loop), and a forker's socket ends. (One reread of a file kept open, and a look
    # for the lines: this runs around every task; file objects and a dict of all ~55 lines
    # cost 2-3 times as much, and /proc/PID/stat as well ~40% more.)
    try:
        status = _proc(pid, "status")
    except OSError:
        return None
    if _status_field(status, b"State:")[:1] in states and _pending(status) == 0:
        return status
    return None

def _waiting(pid, own, states=(b"S", b"R")):
    # Idle (see _idle), and with the settings it was forked with (in own-user pools: see
    # _settings): this parent's at its start (were they changed, it has reported itself
    # dirty). A forker may also be in an uninterruptible wait (paging in, say), which no task
    # can bring about.
    status = _idle(pid, states)
    return status is not None and _settings(pid, status) == own

def _read_proc(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 16384)  # a /proc file is made whole by its first read
    finally:
        os.close(fd)

def _status_field(status, key):
    # The value of a "Key:" line of /proc/PID/status (b"" if there is none).
    at = status.find(b"\n" + key)
    if at < 0:
        return b""
    end = status.find(b"\n", at + 1)
    return status[at + 1 + len(key):end if end > 0 else len(status)].strip()

_sched_attr = [None]  # a buffer for sched_getattr (see _settings)

def _settings(pid, status=None):
    # What a process of the same user can change in another with prlimit, setpriority,
    # sched_setscheduler or sched_setattr (policy, nice, EEVDF slice), sched_setaffinity or
    # ioprio_set: its limits, nice value, scheduling attributes, CPUs and I/O priority. A
    # spare inherits the parent's; a task of the pool's own user could change either (see
    # _live_spare, and the parent's check before each status line). Every limit, those the
    # resource module names not (RLIMIT_LOCKS) too, as /proc/PID/limits puts them (compared
    # as text: one reread of a file kept open, a third of 16 prlimit calls); the CPUs from the
    # status file (status: that file, when just read), whose mask has the CPUs that are
    # offline too (sched_getaffinity leaves them out); the rest by system calls. None where
    # any of it cannot be read (a pool that cannot read its own runs one task: see _pool).
    try:
        limits = _proc(pid, "limits")
        nice = os.getpriority(os.PRIO_PROCESS, pid)
        policy = os.sched_getscheduler(pid)
        if status is None:
            status = _proc(pid, "status")
    except OSError:
        return None
    cpus = _status_field(status, b"Cpus_allowed:")
    ioprio = _ioprio(pid)
    attrs = _sched_attrs(pid)
    if limits.count(b"\n") < 17 or not cpus or ioprio is None or ioprio < 0 or attrs is None:
        return None
    return limits, nice, policy, cpus, ioprio, attrs

_proc_fds = {}  # pid -> {file name: descriptor}: /proc files of the pool's processes, kept open

def _proc(pid, name):
    # /proc/PID/NAME, reread through a descriptor kept open until _forget(pid): opening it
    # costs as much again as the read (~10 us each here), and this runs around every task. A
    # descriptor stays the process's it was opened for: once that has gone, reads fail.
    fds = _proc_fds.get(pid)
    if fds is None:
        if len(_proc_fds) > 16:  # (one missed by _forget: open afresh)
            for other in list(_proc_fds):
                _forget(other)
        fds = _proc_fds[pid] = {}
    fd = fds.get(name)
    if fd is None:
        fd = fds[name] = os.open("/proc/%d/%s" % (pid, name), os.O_RDONLY | os.O_CLOEXEC)
    return os.pread(fd, 16384, 0)  # a /proc file is made whole by each read from its start

def _forget(pid):
    # The /proc descriptors of a process that has gone (or is going).
    for fd in _proc_fds.pop(pid, {}).values():
        os.close(fd)

# (aarch64, riscv64 and loongarch64 number them as the kernel's generic table does)
_IOPRIO_GET = {"x86_64": 252, "aarch64": 31, "riscv64": 31,
               "loongarch64": 31}.get(os.uname().machine)
_SCHED_GETATTR = {"x86_64": 315, "aarch64": 275, "riscv64": 275,
                  "loongarch64": 275}.get(os.uname().machine)

def _ioprio(pid):
    # ioprio_get(IOPRIO_WHO_PROCESS, pid): a process of the same user can lower it too.
    if _libc is None or _IOPRIO_GET is None:
        return None
    return _libc.syscall(_IOPRIO_GET, 1, pid)

def _sched_attrs(pid):
    # sched_getattr(pid): all of struct sched_attr (the slice, which sched_setattr sets
    # without privilege, spares inherit), or None where it cannot be read.
    buf = _sched_attr[0]
    if buf is None or _SCHED_GETATTR is None:
        return None
    if _libc.syscall(_SCHED_GETATTR, pid, buf, len(buf), 0) != 0:
        return None
    return buf.raw

_IPC_RMID = 0

def _clear_ipc():
    # What a task left in this sandbox's IPC namespace: POSIX objects by name, SysV ones by
    # id (IPC_RMID, as root or as their owner). True once nothing is left.
    _clear_posix_ipc()
    if _libc is not None:
        for kind, remove in (("shm", lambda i: _libc.shmctl(i, _IPC_RMID, None)),
                             ("msg", lambda i: _libc.msgctl(i, _IPC_RMID, None)),
                             ("sem", lambda i: _libc.semctl(i, 0, _IPC_RMID))):
            try:
                with open("/proc/sysvipc/" + kind, "rb") as f:
                    rows = f.read().splitlines()[1:]
            except OSError:
                continue
            for row in rows:
                cols = row.split()
                if len(cols) > 1:
                    remove(int(cols[1]))
    return not _ipc_left()

def _clear_posix_ipc():
    # POSIX message queues and shared memory a task left (see _clear_ipc), by path.
    if not _ipc_checked:
        return
    for path, keep in (("/dev/mqueue", ()), ("/dev/shm", _shm_keep)):
        try:
            names = os.listdir(path)
        except OSError:
            continue
        for name in names:
            if name in keep:
                continue
            try:
                os.unlink(path + "/" + name)
            except IsADirectoryError:
                _purge(path + "/" + name)
            except OSError:
                pass

def _purge(path):
    # shutil is not imported in the parent (a bigger parent forks slower); root removes all,
    # and where tasks are the pool's own user, their owner does after making each directory
    # its own to read and change again (a task may have taken the permissions away). The
    # path itself may have been replaced too (a file, or a link, which is not followed).
    # Relative to a descriptor of one directory at a time, going back up through "..": a
    # tree deeper than PATH_MAX goes too (by path, its depths could not be reached, and a
    # task's files left there would be there for the next). Nothing of a task runs while
    # this does, so nothing moves meanwhile. Each directory is read once.
    try:
        if os.lstat(path).st_mode & 0o170000 != 0o040000:
            os.unlink(path)
            return
    except OSError:
        return
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    if _own_user:
        try:
            os.chmod(path, 0o700)
        except OSError:
            pass
    try:
        cur = os.open(path, flags)
    except OSError:
        return
    try:
        dev = os.fstat(cur).st_dev
        todo = [_purge_files(cur)]  # per level entered: its directories not yet removed
        names = []  # the directories entered below path, outermost first
        while True:
            if todo[-1]:
                name = todo[-1].pop()
                if _own_user:
                    try:
                        os.chmod(name, 0o700, dir_fd=cur)  # a directory: nothing to follow
                    except OSError:
                        pass
                try:
                    below = os.open(name, flags, dir_fd=cur)
                except OSError:
                    continue  # left: its parent will not go either (see the callers)
                if os.fstat(below).st_dev != dev:
                    os.close(below)  # another file system mounted there: not entered
                    continue
                os.close(cur)
                cur = below
                names.append(name)
                todo.append(_purge_files(cur))
                continue
            todo.pop()
            if not names:
                break
            up = os.open("..", flags, dir_fd=cur)
            os.close(cur)
            cur = up
            try:
                os.rmdir(names.pop(), dir_fd=cur)
            except OSError:
                pass
    except OSError:
        pass  # what is left stays: the callers look (a stale directory retires the parent)
    finally:
        os.close(cur)
    try:
        os.rmdir(path)
    except OSError:
        pass

def _purge_files(fd):
    # Removes what is not a directory in the directory open as fd; returns its directories.
    dirs = []
    try:
        with os.scandir(fd) as it:
            for e in it:
                try:
                    if e.is_dir(follow_symlinks=False):
                        dirs.append(e.name)
                    else:
                        os.unlink(e.name, dir_fd=fd)
                except OSError:
                    pass
    except OSError:
        pass
    return dirs

def _pool_plain(inp, out, ipc_check, options):
    tmpfs = options.get("work_tmpfs")
    serial = 0
    while True:
        line = inp.readline()
        if not line:
            break
        if not line.strip() or line.startswith(b'{"prepare"'):
            continue
        job = _loads(line.decode("utf-8"))
        if tmpfs:
            serial += 1
            job["work_dir"] = "%s/w%d" % (tmpfs, serial)
            os.mkdir(job["work_dir"], 0o700)
            if options.get("uid") is not None:
                os.chown(job["work_dir"], options["uid"], options.get("gid", options["uid"]))
        pid = os.fork()
        if pid == 0:
            for fd in tuple(_ipc_fds) + tuple(fd for fd in (_mqueue_fd, _shm_fd) if fd is not None):
                os.close(fd)
            _child(inp, out, lambda: job)
        _, status = os.waitpid(pid, 0)
        _reap_descendants()
        if tmpfs:
            _purge(job["work_dir"])
        out.write('{"status": %d, "dirty": %s}\n'
                  % (status, "true" if ipc_check and _ipc_left() else "false"))

def _child(inp, out, get_job, done_w=None):
    try:
        # The parent's control pipe, by descriptor (closing the file objects costs faults).
        os.close(inp.fileno())
        os.close(out.fileno())
        os.setsid()
        if not _init_reaps:
            _subreaper()  # (where the pool's parent is init, what a task leaves goes there)
        job = get_job()
        if job is None:
            os._exit(0)
        _run_job(job)
        if _calib is not None:
            _report_pages(*_calib)
        if done_w is not None:
            os.write(done_w, b"d")
        os._exit(0)
    except BaseException:
        try:
            import traceback
            traceback.print_exc()
            _flush()
        finally:
            os._exit(70)

_cgroups = [0, set()]  # spares forked, task cgroups made

def _task_cgroup(options):
    # The pids cgroup of the next task, below the pool's (see task_cgroups.ts), or None.
    # Three in turn, made once (making and removing one per task costs ~150 us): a task's
    # processes have long been killed and reaped when its cgroup comes round again.
    if not options.get("cgroup"):
        return None
    _cgroups[0] += 1
    return _make_cgroup(options, _cgroups[0] % 3)

def _make_cgroup(options, n):
    path = "%s/t%d" % (options["cgroup"], n)
    if path not in _cgroups[1]:
        try:
            os.mkdir(path)
        except FileExistsError:
            pass
        except OSError:
            return None
        _cgroups[1].add(path)
    return path

def _read_file(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 64).decode()
    finally:
        os.close(fd)

def _write_file(path, text):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)

def _cgroup_max(cgroup, job, options):
    # The spare (or its forker) set the pool's default; a task may ask for another limit.
    # Where it cannot be set, the rlimit (the user's shared count) applies as well.
    global _in_cgroup
    want = (job.get("limits") or {}).get("nproc")
    extra = _cgroup_extra
    if extra:
        # The forker's slot only while it is there: one killed from outside frees it.
        try:
            extra = int(_read_file(cgroup + "/pids.current")) - 1
        except (OSError, ValueError):
            pass
    if (want is None or want == options.get("nproc")) and extra == _cgroup_extra:
        return
    try:
        limit = options["nproc"] if want is None else want
        _write_file(cgroup + "/pids.max", str(int(limit) + extra))
    except (OSError, ValueError, KeyError):
        _in_cgroup = False

def _prefork(inp, out, options, task_dir=None):
    cgroup = _task_cgroup(options)
    job_r, job_w = os.pipe()
    done_r, done_w = os.pipe()
    forker = (_fork_in(cgroup, inp, out, options, job_r, done_w, task_dir)
              if cgroup or _one_forker[0] else None)
    if forker is None:
        # In the spare, signals stay pending, not delivered, until the job comes: the parent
        # sees any a task sent (see _waiting) and replaces it instead of passing it a job.
        # Blocked from before the fork on, so none gets in in between.
        mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
        pid = os.fork()
        if pid != 0:
            _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
        if pid == 0:
            # Only what a forker's spare has (see _forker): not another spare's pipes or
            # pidfd (the one ahead, or the running task's), nor a forker's socket (forkers
            # that failed, or a cgroup that has none), through which a task could pass a
            # spare a job, or have a forker clone a root spare with descriptors of its own.
            _keep_only(inp.fileno(), out.fileno(), job_r, done_w)
            if cgroup:
                # Now, while it waits, not when its job comes (see _fork_in).
                try:
                    _write_file(cgroup + "/pids.max", str(options["nproc"]))
                    _join_cgroup(cgroup + "/cgroup.procs")
                except (OSError, KeyError):
                    pass  # the rlimit applies
            _spare(inp, out, options, cgroup, job_r, done_w, task_dir, mask)
    os.close(job_r)
    os.close(done_w)
    if forker is not None:
        # pid and pidfd once the forker has answered (see _settle)
        asked = [None, job_w, done_r, None, task_dir, forker]
        _asked.setdefault(forker, []).append(asked)
        return asked
    return [pid, job_w, done_r, os.pidfd_open(pid), task_dir, None]

def _settle(spare, inp, out, options):
    # A spare asked of a forker gets its pid here, when first needed: the forker clones
    # while this parent goes on (to the running task's end, usually). Should the forker
    # not answer, forkers are given up and a spare is forked instead, in the same directory
    # (a {"prepare"} line sent to the lost one is repeated by the job itself).
    if spare[0] is not None:
        return spare
    sock = spare[5]
    try:
        # A forker answers in the order it was asked (its socket keeps message bounds and
        # order): a spare asked for later (one replacing the next task's, see _live_spare)
        # must not take the answer about one asked for before it (the spare after next).
        queue = _asked.get(sock, [])
        while any(a is spare for a in queue):
            if _own_user and not _answering(sock):
                raise OSError("the forker is stopped or gone")
            pid = int(sock.recv(32))
            asked = queue.pop(0)
            if pid <= 0:
                raise ValueError(pid)
            asked[0], asked[3] = pid, os.pidfd_open(pid)
            _forker_failures[0] = 0
        if spare[0] is not None:
            return spare
    except (OSError, ValueError):
        pass
    _forkers_off[0] = True
    _forker_failures[0] += 1
    _drop_forkers()
    os.close(spare[1])
    os.close(spare[2])
    return _prefork(inp, out, options, spare[4])

def _answering(sock):
    # Where tasks are the pool's own user, they can stop a forker (or kill it, or change its
    # settings, which its spares would inherit): the answer is waited for only while the
    # forker is plainly at work or waiting (see _waiting), looked at every 50 ms.
    import select
    pid = next((p for p, s in _forkers.values() if s is sock), None)
    while pid is not None:
        if select.select([sock], [], [], 0.05)[0]:
            return True
        if not _waiting(pid, _own_settings, _FORKER_STATES):
            return False
    return False

_FORKER_STATES = (b"S", b"R", b"D")

def _forkers_sound(inp, out, options):
    # Own-user pools, once a task and all it started have ended: a forker the task stopped or
    # killed goes, and a new one is made here, from this parent, before the next job. Its
    # settings (limits, priority, CPUs: what its spares inherit) are not looked at here: each
    # spare's are, before its job (see _live_spare), and a spare found changed takes its
    # forker with it, its replacement forked by this parent. No task runs until the next job.
    # (Tasks of root pools cannot reach forkers: one that failed there failed by itself, and
    # forkers stay given up.)
    if _forkers and not all(_idle(pid, _FORKER_STATES) for pid, _ in _forkers.values()):
        _drop_forkers()
    # Given up while the task ran (it stopped the forker before it answered, say: see
    # _settle): made again now, unless three in a row have failed (whoever made them).
    if _forker_failures[0] < 3:
        _forkers_off[0] = False
        if _one_forker[0] and not _forkers and _start_forker(None, inp, out, options) is None:
            _forker_failures[0] = 3  # cannot be made here at all

_forkers = {}  # task cgroup (None: no cgroups) -> (pid, socket) of the process that makes spares
_forkers_off = [False]  # one failed: spares are forked and moved (see _fork_in)
_forker_failures = [0]  # forkers that failed since one last answered
_asked = {}  # forker socket -> the spares asked of it and not yet answered, in order
_one_forker = [False]  # no task cgroups, one forker all the same (see _start_forkers)
_own_settings = None  # an own-user pool's settings at its start (see _settings)
_cgroup_extra = 0  # processes in a task's cgroup that are not the task's (its forker)

def _fork_in(cgroup, inp, out, options, job_r, done_w, task_dir):
    # A spare made inside its task cgroup, as this parent's own child, by that cgroup's
    # forker: a child of this parent that lives there and clones with CLONE_PARENT. So no
    # process moves between cgroups per task. A move takes a lock whose writer waits for an
    # RCU grace period (4-27 ms measured here) unless another move came within the last few
    # milliseconds: the second task of every burst waited for its spare. Returns the
    # forker's socket, which answers with the pid (see _settle); None where that cannot be
    # done: the caller forks the spare and moves it. (Without task cgroups, one forker
    # makes every spare, cgroup None: see _start_forkers.)
    if _forkers_off[0] or not options.get("own_pid_ns"):
        return None  # (with no PID namespace of its own, the parent reaps what it forks)
    forker = _forkers.get(cgroup)
    if forker is None and _own_user:
        # Made again only between tasks (see _forkers_sound): one started while a task runs
        # would take a place of that task's process count, which is its user's.
        return None
    forker = forker or _start_forker(cgroup, inp, out, options)
    if forker is not None:
        sock = _socket_mod()
        try:
            forker[1].sendmsg([b"+" + (task_dir or "").encode()],
                              [(sock.SOL_SOCKET, sock.SCM_RIGHTS, _fd_bytes((job_r, done_w)))])
            return forker[1]
        except OSError:
            pass
    # Given up: this one goes now, the others once the running task has ended (see the
    # pool's loop): its cgroup's pids.max counts its forker until then.
    _forkers_off[0] = True
    _forker_failures[0] += 1
    _drop_forkers(cgroup)
    return None

def _start_forkers(inp, out, options):
    # All three at once, before the first job: their moves into the task cgroups then wait
    # for one grace period together, not for one each during the first tasks.
    if not options.get("own_pid_ns"):
        return
    if not hasattr(os, "pidfd_open"):
        return  # _pool_plain forks each task itself
    if not options.get("cgroup"):
        # No task cgroups (Gleitzeit is not root): one forker all the same, so that no
        # spare shares this parent's pages while it works (a page it writes while a spare
        # it forked lives is copied: ~150 per task here, measured, on every task's path).
        _one_forker[0] = True
        first = options.get("populate") is not False  # (its calibration: see _calibrate)
        forker = _start_forker(None, inp, out, options, calibrate=first)
        if forker is not None and first:
            _take_hot(None, forker[1])
        return
    for n in range(3):
        cgroup = _make_cgroup(options, n)
        if cgroup and cgroup not in _forkers:
            # The first measures the pages a task's child writes (see _calibrate), the others
            # take the list from here: started once it has come (their moves into the task
            # cgroups then wait for a grace period together, the first's for one of its own).
            first = n == 0 and not _own_user and options.get("populate") is not False
            forker = _start_forker(cgroup, inp, out, options, calibrate=first)
            if forker is None:
                return
            if first:
                _take_hot(cgroup, forker[1])

def _take_hot(cgroup, sock):
    # The first forker's calibration report (see _calibrate): what it measured, and the list
    # each spare made from here on populates (none where it is not taken). A forker that does
    # not report within 10 s goes (made again as needed).
    global _hot
    import select
    data = b""
    try:
        if select.select([sock], [], [], 10.0)[0]:
            data = sock.recv(1 << 17)
    except OSError:
        pass
    if not data.startswith(b"H"):
        _drop_forkers(cgroup)
        return
    data = data[1:]
    if data.startswith(b"C "):
        costs, _, data = data.partition(b"\n")
        f = costs.split()
        if len(f) == 3 and f[1].isdigit() and f[2].isdigit():
            _calib_cpu[:] = [int(f[1]), int(f[2])]
    _hot = _hot_ranges(data)

def _socket_mod():
    import _socket  # the C module only: socket.py would grow every fork's parent
    return _socket

def _fd_bytes(fds):
    return b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds)

def _forker_pids():
    return {pid for pid, _ in _forkers.values()}

def _drop_forkers(only=None):
    # Ends every forker, or the one of cgroup "only" (each ends once its socket closes;
    # SIGKILL makes sure), and reaps it.
    for cgroup, (pid, sock) in list(_forkers.items()):
        if only is not None and cgroup != only:
            continue
        del _forkers[cgroup]
        _asked.pop(sock, None)  # those spares are forked afresh when needed (see _settle)
        sock.close()
        try:
            os.kill(pid, 9)
        except OSError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        _forget(pid)

def _start_forker(cgroup, inp, out, options, calibrate=False):
    if _clone_call() is None:
        return None
    sock = _socket_mod()
    a, b = sock.socketpair(sock.AF_UNIX, sock.SOCK_SEQPACKET)
    # Signals stay blocked in the forker (nothing has reason to signal it) and so in the
    # spares it clones, until their job comes, as for a forked spare.
    mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
    pid = os.fork()
    if pid == 0:
        try:
            _forker(b, a, cgroup, inp, out, options, mask, calibrate)
        finally:
            os._exit(0)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
    b.close()
    _forkers[cgroup] = (pid, a)
    return _forkers[cgroup]

def _forker(sock, other, cgroup, inp, out, options, mask, calibrate=False):
    global _cgroup_extra, _forker_made, _mqueue_fd, _shm_fd, _hot
    other.close()
    for _, s in _forkers.values():
        s.close()
    _forkers.clear()
    # Nothing of this parent's but what a forked spare has too: the spares it clones get
    # all of it (tasks must not reach another forker, or a task's pipes).
    _keep_only(inp.fileno(), out.fileno(), sock.fileno())
    call = _clone_call()
    if _int_at(call[5]) != os.getpid():
        return  # glibc keeps its thread id elsewhere: the parent forks spares itself
    if cgroup is not None:
        _write_file(cgroup + "/pids.max", str(options["nproc"] + 1))
        _join_cgroup(cgroup + "/cgroup.procs")
        if not _in_cgroup:
            return
        _cgroup_extra = 1
    _socket = _socket_mod()
    # What every spare would otherwise set up or close itself, done here once for all the
    # spares this clones: a page a spare writes is copied again for each task (~3 us),
    # one this process writes is its own after the first time. Its spare from three tasks
    # back has ended when it clones the next, so nothing shares its pages by then.
    _signal.signal(_signal.SIGINT, _signal.default_int_handler)  # blocked here, the spare's
    for fd in tuple(_ipc_fds) + tuple(fd for fd in (_mqueue_fd, _shm_fd) if fd is not None):
        os.close(fd)  # the parent's IPC checks (see _ipc_open): nothing of a task's
    del _ipc_fds[:]
    _mqueue_fd = _shm_fd = None
    _forker_made = True
    # (Every page this loop writes is copied, or at least faulted, again after each clone:
    # it makes as few objects as it can, and the same ones each time.)
    if calibrate:
        try:
            report = _calibrate(inp, out, options, cgroup, mask)
        except Exception:
            report = b""  # spares fault their pages in as they write them
            _hot = ()
        sock.send(b"H" + report)
    rights = (_socket.SOL_SOCKET, _socket.SCM_RIGHTS)
    space = _socket.CMSG_SPACE(8)
    pids_max = (cgroup + "/pids.max", str(options["nproc"] + 1)) if cgroup is not None else None
    while True:
        msg, anc, _, _ = sock.recvmsg(4096, space)
        if not msg:
            return  # the parent closed it
        if len(anc) != 1 or anc[0][:2] != rights or len(anc[0][2]) != 8:
            return
        data = anc[0][2]
        job_r = int.from_bytes(data[:4], sys.byteorder)
        done_w = int.from_bytes(data[4:], sys.byteorder)
        if pids_max is not None:
            # The cgroup's default again (a task before may have asked for another limit).
            _write_file(*pids_max)
        raw_dir = msg[1:]
        task_dir = raw_dir.decode() if raw_dir else None
        if task_dir:
            # its directory, which the spare enters (as root) and the task gets as HOME,
            # TMPDIR and PWD (see _prepare)
            os.chdir(raw_dir)
            for key in _ENV_DIR_KEYS:
                _setenv(key, raw_dir)
            _env_ready[0] = task_dir
        pid = _clone_sibling(call)
        if pid == 0:
            _spare(inp, out, options, cgroup, job_r, done_w, task_dir, mask,
                   (sock.fileno(),))
        os.close(job_r)
        os.close(done_w)
        sock.send(b"%d" % pid)
        if task_dir:
            os.chdir("/")  # the parent removes the directory after the task

def _int_at(address):
    import ctypes
    return ctypes.c_int.from_address(address).value

_CLONE_NR = {"x86_64": (56, False), "aarch64": (220, True)}  # number, tls before child tid
_clone = [None]

def _clone_call():
    # What _clone_sibling needs, looked up once; None where it cannot be done.
    if _clone[0] is None:
        try:
            import ctypes
            nr, tls_first = _CLONE_NR[os.uname().machine]
            libc = ctypes.PyDLL(None)  # keeps the GIL across the call, as os.fork does
            syscall = libc.syscall
            syscall.restype = ctypes.c_long  # (its arguments: made once, see below)
            libc.pthread_self.restype = ctypes.c_ulong
            # Where glibc keeps the thread's id (its fork() has the kernel write it there).
            offset = (ctypes.c_uint32 * 3).in_dll(libc, "_thread_db_pthread_tid")[2]
            ctid = libc.pthread_self() + offset
            api = ctypes.pythonapi
            # clone(CLONE_PARENT | CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD) with
            # glibc's thread id field, as glibc's fork() does; C longs made once, so that a
            # call makes no objects for them
            flags = 0x00008000 | 0x01000000 | 0x00200000 | 17
            args = (nr, flags, 0, 0, 0, ctid) if tls_first else (nr, flags, 0, 0, ctid, 0)
            _clone[0] = (syscall, tuple(ctypes.c_long(a) for a in args), api.PyOS_BeforeFork,
                         api.PyOS_AfterFork_Child, api.PyOS_AfterFork_Parent, ctid)
        except Exception:
            _clone[0] = False
    return _clone[0] or None

def _clone_sibling(call):
    # os.fork(), but the child is this process's sibling: clone(CLONE_PARENT |
    # CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD) with glibc's thread id field, as
    # glibc's fork() does, and Python's own before and after fork steps around it.
    syscall, args, before, after_child, after_parent = call[:5]
    before()
    pid = syscall(*args)
    if pid == 0:
        after_child()
    else:
        after_parent()
    return pid

def _spare(inp, out, options, cgroup, job_r, done_w, task_dir, mask, close=()):
    # A spare child: waits for its job, runs it and exits (never returns).
    for fd in close:
        os.close(fd)
    if _hot:
        _populate()
    if not _forker_made:  # (a forker did this once for all the spares it clones)
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)
        for fd in tuple(_ipc_fds) + tuple(fd for fd in (_mqueue_fd, _shm_fd) if fd is not None):
            os.close(fd)
    uid, gid = options.get("uid"), options.get("gid", options.get("uid"))
    def get_job():
        # Lines: optionally {"prepare": {paths}} (sent ahead, so the directory and
        # output files are set up before the job exists), then the job; then EOF.
        # Raw reads (no file object): a fresh child pays a page fault for every page
        # of the parent's heap it writes to, and creating objects writes to some.
        pending = b""
        parts = []  # a long line's chunks so far (see _read_lines)
        kept = None  # {"prepare"} paths kept for the {"go"} line (own-user pools)
        while True:
            nl = pending.find(b"\n")
            if nl < 0:
                data = _read_lines(job_r, parts)
                if data == b"":
                    return None
                if data:
                    pending += data
                continue
            line, pending = pending[:nl], pending[nl + 1:]
            msg = _loads(line.decode("utf-8"))
            if "prepare" in msg:
                # Ahead of the job, unless tasks are this pool's own user: the running
                # one could still reach what is set up now (see _open_io). Those are set
                # up once the parent says the task before and all it left have gone (a
                # {"go"} line; with the job, where none came).
                if task_dir:
                    msg["prepare"]["work_dir"] = task_dir
                if not _own_user:
                    _prepare(msg["prepare"], keep_root=True)
                else:
                    kept = msg["prepare"]
                continue
            if "go" in msg:
                if kept is not None:
                    _prepare(kept, keep_root=True)
                    kept = None
                continue
            # The parent passes a job on only once the task before has ended and what it
            # left is gone.
            os.close(job_r)
            work = task_dir
            if work:
                if _own_user and not msg.get("fresh_dir"):
                    # made while the task before ran, as its user: made afresh now (unless
                    # the parent did, once that task had ended: see the pool's loop)
                    _rmdir(work) or _purge(work)
                    try:
                        os.mkdir(work, 0o700)
                    except OSError:
                        # what the task before left there would not go (a tree past
                        # PATH_MAX): another name; the parent finds it and retires
                        work += "x"
                        os.mkdir(work, 0o700)
                msg["work_dir"] = work
            if _prepared is None or _prepared[:2] != (msg.get("work_dir"),
                                                      msg.get("stdout_path")):
                _prepare(msg, keep_root=True)
            if uid is not None and work:
                # Only now the task's: the previous task has ended.
                os.chown(work, uid, gid)
            if _in_cgroup:
                _cgroup_max(cgroup, msg, options)
            if uid is not None:
                if os.getgroups():  # (none, usually: the change would cost ~6 us anyway)
                    os.setgroups([])
                os.setresgid(gid, gid, gid)
                os.setresuid(uid, uid, uid)
                if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
                    raise SystemExit("gleitzeit runner: could not drop to uid %d" % uid)
            _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
            return msg
    _child(inp, out, get_job, done_w)

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "pool":
        _pool()
    else:
        _once()
`;

/**
 * What a cold task runs (`python3 -I -S -c RUNNER_BOOTSTRAP once BOOT_FILE`): compiling the
 * runner's source costs ~4 ms per start, so the provider compiles it once per interpreter
 * ({@link RUNNER_COMPILER}) and writes the marshalled code ahead of the job into BOOT_FILE:
 * 4 bytes big-endian length, the code, then the job's JSON. (stdin is bwrap's: it reads the
 * seccomp filter from there.)
 */
export const RUNNER_BOOTSTRAP = "import sys,marshal\n_boot_data=open(sys.argv[2],'rb').read()\n" +
  'exec(marshal.loads(_boot_data[4:4+int.from_bytes(_boot_data[:4],"big")]))\n';

/**
 * What a warm parent runs (`python3 -I -S -c POOL_BOOTSTRAP pool OPTIONS`): the marshalled
 * runner ahead of the jobs on stdin (4 bytes big-endian length, the code), read unbuffered
 * so the job lines stay in the pipe. Compiling the source instead would leave ~2.3 MiB of
 * the compiler's memory in the parent, which every fork copies (page tables) and every
 * child's exit tears down again.
 */
export const POOL_BOOTSTRAP = "import os,marshal\ndef _boot_read(n):\n    b = b''\n" +
  "    while len(b) < n:\n        d = os.read(0, n - len(b))\n" +
  "        if not d:\n            raise SystemExit('gleitzeit runner: no code on stdin')\n" +
  "        b += d\n    return b\n" +
  'exec(marshal.loads(_boot_read(int.from_bytes(_boot_read(4), "big"))))\n';

/** Compiles RUNNER_SOURCE (on stdin) and writes the marshalled code object to stdout. */
export const RUNNER_COMPILER =
  "import sys,marshal\nsys.stdout.buffer.write(marshal.dumps(compile(sys.stdin.read()," +
  '"<gleitzeit-runner>","exec",dont_inherit=True)))\n';
