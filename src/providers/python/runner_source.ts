/**
 * The Python side of `python/v1`, embedded as a string so the bundled CLI never reads its
 * own source tree. It is started as `python3 -I -c RUNNER_SOURCE <mode>`.
 *
 * Mode `once`: reads one job (JSON) from stdin, runs it, writes the outcome (JSON) to the
 * job's `result_path` and exits. The result travels through that file, not stdout, so
 * whatever the user code prints cannot corrupt it.
 *
 * Mode `pool`: a warm parent. It imports everything once, then reads one job per line from
 * stdin and forks a fresh child per job (no state survives from one task to the next). The
 * child does exactly what `once` does; the parent answers each job with one JSON line on
 * stdout once the child has ended: `{"id", "pid", "status"}`.
 *
 * Job fields: `kind` ("execute" | "script"), `code` | `script` + `args`, `context`,
 * `work_dir`, `result_path`, `stdout_path`/`stderr_path` (pool mode: where the child's
 * output goes), `subreaper` (become a child subreaper so orphans stay findable),
 * `uid`/`gid` (drop to this user before user code runs), `limits` (rlimits).
 *
 * @module
 */

/** Python source of the runner. */
export const RUNNER_SOURCE = String.raw`
import sys, os, json, time, traceback, linecache, signal

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

def _user_tb(tb):
    me = _user_tb.__code__.co_filename
    while tb is not None and tb.tb_frame.f_code.co_filename == me:
        tb = tb.tb_next
    return tb

def _failure(e):
    tb = _user_tb(e.__traceback__)
    try:
        text = "".join(traceback.format_exception(type(e), e, tb))
        only = traceback.format_exception_only(type(e), e)
        last = only[-1].strip() if only else type(e).__name__
    except BaseException:
        text = last = type(e).__name__
    return {"ok": False, "kind": "exception", "type": _type_name(e), "message": last,
            "traceback": text}

def _execute(job):
    g = {"__name__": "__main__", "__builtins__": __builtins__, "__doc__": None}
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
            sys.path.insert(0, os.path.dirname(path))
            code = compile(src, path, "exec", dont_inherit=True)
        else:
            src = job["code"]
            linecache.cache["<task>"] = (len(src), None, src.splitlines(True), "<task>")
            sys.argv = ["<task>"]
            code = compile(src, "<task>", "exec", dont_inherit=True)
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
            return json.dumps({"ok": True, "result": value, "execution_time_ms": ms},
                              default=_default, allow_nan=False, ensure_ascii=False)
        except _Unserialisable as u:
            payload = {"ok": False, "kind": "result_type", "type": u.type_name,
                       "message": "result is not JSON-serialisable: contains a value of type "
                                  + u.type_name}
        except (TypeError, ValueError, RecursionError, OverflowError) as e:
            payload = {"ok": False, "kind": "result_type", "type": _type_name(value),
                       "message": "result (of type %s) is not JSON-serialisable: %s"
                                  % (_type_name(value), e)}
    payload["execution_time_ms"] = ms
    return json.dumps(payload, ensure_ascii=False, default=repr)

def _write_result(path, text):
    data = text.encode("utf-8", "surrogatepass")
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    finally:
        os.close(fd)
    os.rename(tmp, path)

def _subreaper():
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:
        pass

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

def _reap_descendants():
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
        kids = _descendants(me)
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if time.monotonic() > deadline:
            return
        time.sleep(0.001)

def _apply_limits(job):
    limits = job.get("limits") or {}
    if limits:
        import resource
        names = {"cpu": resource.RLIMIT_CPU, "as": resource.RLIMIT_AS,
                 "nproc": resource.RLIMIT_NPROC, "fsize": resource.RLIMIT_FSIZE,
                 "nofile": resource.RLIMIT_NOFILE, "core": resource.RLIMIT_CORE}
        for key, value in limits.items():
            if key in names and value is not None:
                resource.setrlimit(names[key], (int(value), int(value)))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

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
    fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(fd, 0)
    os.close(fd)

def _run_job(job):
    os.chdir(job["work_dir"])
    _drop_user(job)
    _apply_limits(job)
    text = _execute(job)
    _flush()
    if job.get("subreaper"):
        _reap_descendants()
    try:
        _write_result(job["result_path"], text)
    except OSError as e:
        sys.stderr.write("gleitzeit runner: cannot write the result: %s\n" % e)
        _flush()
        os._exit(3)

def _once():
    try:
        os.setsid()
    except OSError:
        pass
    job = json.loads(sys.stdin.buffer.read())
    _stdin_devnull()
    if job.get("subreaper"):
        _subreaper()
    _run_job(job)
    os._exit(0)

def _redirect(path, fd):
    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(out, fd)
    os.close(out)

def _pool():
    # Warm what user code commonly needs, so the forked child pays nothing for it.
    import resource, ctypes  # noqa: F401
    for m in ("json.decoder", "collections", "re", "math", "random", "datetime", "decimal",
              "fractions", "statistics", "itertools", "functools", "subprocess", "pathlib"):
        try:
            __import__(m)
        except Exception:
            pass
    _subreaper()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    inp = os.fdopen(os.dup(0), "rb")
    _stdin_devnull()
    nul = os.open(os.devnull, os.O_WRONLY)
    os.dup2(nul, 1)
    os.close(nul)
    out.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    for line in inp:
        if not line.strip():
            continue
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                inp.close()
                out.close()
                os.setsid()
                _redirect(job["stdout_path"], 1)
                _redirect(job["stderr_path"], 2)
                sys.stdout = os.fdopen(1, "w", buffering=-1, encoding="utf-8", errors="backslashreplace")
                sys.stderr = os.fdopen(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace")
                _subreaper()
                _run_job(job)
                os._exit(0)
            except BaseException:
                try:
                    traceback.print_exc()
                    _flush()
                finally:
                    os._exit(70)
        out.write(json.dumps({"id": job.get("id"), "pid": pid, "started": True}) + "\n")
        _, status = os.waitpid(pid, 0)
        _reap_descendants()
        out.write(json.dumps({"id": job.get("id"), "pid": pid, "status": status}) + "\n")

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "pool":
        _pool()
    else:
        _once()
`;
