"""workloads: what an agent does in a workspace, timed per contender — exec latency, a small git
repository (walk, stat, read, grep, git status, write, rm; cold then warm), an edit loop, sequential
throughput and the daemon's peak RSS on a big tree walk. Every sandmount figure carries the
daemon's own request / round-trip counters, diffed around the operation."""

import http.client
import json
import os
import random
import socket
import subprocess
import time
from pathlib import Path

from bed import CONTAINER, SANDBOX_USER, log, run, vm_hwm_kib
from contenders import SandmountSSH, Unsupported, timed

MARKER = "BENCH_MARKER"


# ---- the workspace ----

def gen_repo(path, n_files, seed=1):
    """A deterministic small source repository: n_files in 100 dirs (src/aX/bY) plus two
    vendor dirs of 150 files each (removed by the rm -r step), committed and packed."""
    rng = random.Random(seed)
    path.mkdir(parents=True)
    words = ["value", "count", "buffer", "index", "node", "state", "result", "item", "offset"]

    def source(i):
        lines = [f"/* file {i}: generated for the sandmount benchmark */", "#include <stdio.h>"]
        for f in range(rng.randint(5, 60)):
            a, b = rng.choice(words), rng.choice(words)
            lines += [f"static int {a}_{b}_{i}_{f}(int {a})", "{",
                      f"\treturn {a} * {rng.randint(1, 999)} + {f};", "}"]
        if rng.random() < 0.05:
            lines.append(f"/* {MARKER}: look here */")
        return "\n".join(lines) + "\n"

    files = []
    for i in range(n_files):
        files.append(f"src/a{i % 10}/b{(i // 10) % 10}/f{i}.c")
    for v in ("vendor1", "vendor2"):
        for i in range(150):
            files.append(f"{v}/m{i % 5}/v{i}.c")
    for i, rel in enumerate(files):
        p = path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(source(i))
    genv = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.invalid",
                GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.invalid",
                GIT_AUTHOR_DATE="2024-01-01T00:00:00Z", GIT_COMMITTER_DATE="2024-01-01T00:00:00Z",
                GIT_CONFIG_NOSYSTEM="1", HOME=str(path.parent))
    # no automatic gc: a big commit would start one in the background, and ours would fail
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                ["git", "-c", "gc.auto=0", "commit", "-q", "-m", "generated"],
                ["git", "gc", "-q"]):
        run(cmd, cwd=path, env=genv, timeout=300)
    return files


def gen_big_tree(path, n_files):
    """n_files empty files, 100 per directory."""
    for i in range(0, n_files, 100):
        d = path / f"d{i // 100}"
        d.mkdir(parents=True)
        for j in range(100):
            (d / f"f{j}").touch()


# ---- measuring one operation ----

def measure(c, argv, env, timeout, cwd=None):
    """Run argv next to contender c's files; return a result dict with seconds, output and
    (sandmount) the daemon's request / round-trip deltas."""
    before = c.counters()
    try:
        secs, p = timed(argv, cwd or str(c.mp), env, timeout)
    except TimeoutError as ex:
        log(f"{c.name}: {ex}")
        return {"error": "timeout"}
    after = c.counters()
    r = {"s": secs, "out": p.stdout.decode(errors="replace").strip()[-200:], "rc": p.returncode}
    if p.returncode != 0:
        r["error"] = f"exit {p.returncode}: {p.stderr.decode(errors='replace').strip()[-200:]}"
    if before and after:
        r["req"], r["rt"] = after[0] - before[0], after[1] - before[1]
    return r


REPO_OPS = [
    ("walk", "find -type f | wc -l", lambda x: ["sh", "-c", "find . -type f | wc -l"]),
    ("stat", "stat everything (find -printf %s)",
     lambda x: ["sh", "-c", "find . -printf '%s %T@\\n' | wc -l"]),
    ("read", "cat of every 7th file", lambda x: ["sh", "-c", f"xargs -a {x['list']} cat | wc -c"]),
    ("grep", "grep -rl", lambda x: ["sh", "-c", f"grep -rl {MARKER} . | wc -l"]),
    ("git", "git status", lambda x: ["sh", "-c", "git -c safe.directory='*' status --porcelain"
                                                " | wc -l"]),
    # sandmount-fsmonitor as git's hook, on an index of its own (the plain row drops the hook's
    # token from .git/index): cold = a full scan that gets a token, warm = what changed since.
    # On other contenders the hook fails and git scans everything.
    ("gitfsm", "git status, fsmonitor hook",
     lambda x: ["sh", "-c", "[ -f .git/index.fsm ] || cp .git/index .git/index.fsm; "
                "GIT_INDEX_FILE=.git/index.fsm git -c safe.directory='*' -c core.fsmonitor="
                "\"$SM_FSMONITOR\" -c core.fsmonitorHookVersion=2 -c core.untrackedCache=true "
                "status --porcelain 2>/dev/null | wc -l"]),
    ("write", "write 100 files",
     lambda x: ["sh", "-c", f"mkdir -p out/{x['pass']} && i=0; while [ $i -lt 100 ]; do "
                f"printf '%s\\n' \"$BLOB\" > out/{x['pass']}/f$i.c; i=$((i+1)); done"]),
    ("rm", "rm -r (150 files)", lambda x: ["rm", "-r", x["vendor"]]),
]


def repo_pass(c, env, ctx, timeout):
    out = {}
    for key, _, build in REPO_OPS:
        out[key] = measure(c, build(ctx), env, timeout)
    return out


def bench_repo(bed, link, contenders, template, read_list, reps, timeout):
    """Per rep, per contender (order rotated): fresh copy, fresh mount, cold pass, warm pass."""
    env = dict(bed.env, BLOB="x" * 1000,
               SM_FSMONITOR=str(bed.build / "exec" / "sandmount-fsmonitor"))
    results = {c.key: [] for c in contenders}
    for rep in range(reps):
        order = contenders[rep % len(contenders):] + contenders[:rep % len(contenders)]
        for c in order:
            if c.key in getattr(bed, "unsupported", {}):
                continue
            tag = f"repo-{link.delay_ms:g}-{rep}"
            c.place(template, tag)
            try:
                t0 = time.perf_counter()
                c.mount(tag)
                mount_s = time.perf_counter() - t0
            except Unsupported as ex:
                bed.unsupported[c.key] = str(ex)
                log(f"{c.name}: n/a ({ex})")
                c.remove(tag)
                continue
            try:
                cold = repo_pass(c, env, {"list": read_list, "pass": "cold", "vendor": "vendor1"},
                                 timeout)
                warm = repo_pass(c, env, {"list": read_list, "pass": "warm", "vendor": "vendor2"},
                                 timeout)
            finally:
                c.unmount()
                c.remove(tag)
            results[c.key].append({"mount_s": mount_s, "cold": cold, "warm": warm})
            tot = sum(r.get("s", 0) for r in cold.values())
            log(f"  repo {link.name} rep {rep + 1}/{reps} {c.name}: cold {tot:.2f}s")
    return results


def mounted_copies(bed, contenders, template, tag):
    """Each contender not known to be unsupported, with a fresh copy of template placed on its
    sandbox side and mounted; unmounted and removed once the caller is done with it. One that
    cannot mount is marked unsupported and skipped."""
    for c in contenders:
        if c.key in bed.unsupported:
            continue
        c.place(template, tag)
        try:
            c.mount(tag)
        except Unsupported as ex:
            bed.unsupported[c.key] = str(ex)
            c.remove(tag)
            continue
        try:
            yield c
        finally:
            c.unmount()
            c.remove(tag)


GITFSM_WARM_REPS = 5


def bench_gitfsm(bed, link, contenders, template, n_files, timeout):
    """`git status` with the sandmount-fsmonitor hook on a bigger repository: one cold run (a
    full scan that gets a token; run with the link's delay off, or it would take many minutes:
    it reads every file, the index's stat data being the template's), then warm runs on the
    delayed link after a file changed through the mount (the hook answers what changed since
    the token). Contenders that cannot answer the hook (local disk) scan every time."""
    env = dict(bed.env, SM_FSMONITOR=str(bed.build / "exec" / "sandmount-fsmonitor"))
    gitfsm = next(build for key, _, build in REPO_OPS if key == "gitfsm")({})
    results = {}
    for c in mounted_copies(bed, contenders, template, f"gitfsm-{link.delay_ms:g}"):
        link.set_delay(0)
        try:
            cold = measure(c, gitfsm, env, timeout)
        finally:
            link.set_delay(link.delay_ms)
        warm = []
        for i in range(GITFSM_WARM_REPS):
            (Path(c.mp) / "src/a0/b0/f0.c").write_text(f"/* edit {i} */\n")
            warm.append(measure(c, gitfsm, env, timeout))
        results[c.key] = {"files": n_files, "cold": cold, "warm": warm}
        ok = [w["s"] for w in warm if "error" not in w]
        log(f"  git status + fsmonitor {link.name} {c.name}: cold {cold.get('s')} s, "
            f"warm {sorted(ok)[len(ok) // 2] if ok else 'error'} s")
    return results


def edit_loop(bed, c, iters, timeout):
    """The edit loop on one mounted contender: its result dict."""
    rel = "src/a0/b0/f0.c"
    before = c.counters()
    stale, errors = 0, 0
    t0 = time.perf_counter()
    try:
        for i in range(iters):
            f = Path(c.mp) / rel
            data = f.read_bytes() + f"/* edit {i} */\n".encode()
            f.write_bytes(data)
            argv, cwd = c.exec_argv(["wc", "-c", rel])
            p = subprocess.run(argv, cwd=cwd, env=bed.env, timeout=timeout,
                               stdin=subprocess.DEVNULL, capture_output=True)
            if p.returncode != 0:
                errors += 1
            elif int(p.stdout.split()[0]) != len(data):
                stale += 1
    except (subprocess.TimeoutExpired, OSError) as ex:
        log(f"{c.name}: edit loop: {ex}")
        return {"error": str(ex)[:200]}
    r = {"s": time.perf_counter() - t0, "stale": stale, "errors": errors}
    after = c.counters()
    if before and after:
        r["req"], r["rt"] = after[0] - before[0], after[1] - before[1]
    return r


def bench_edit_loop(bed, link, contenders, template, iters, timeout):
    """Read a file, write it back with a line more, run a command in the sandbox that reads it
    (wc -c); count the times the command saw stale content."""
    results = {}
    for c in mounted_copies(bed, contenders, template, f"edit-{link.delay_ms:g}"):
        results[c.key] = r = edit_loop(bed, c, iters, timeout)
        log(f"  edit loop {link.name} {c.name}: {r}")
    return results


def bench_seq(bed, link, contenders, size, reps, empty):
    """Sequential write of `size` bytes (timed through close), then read on a fresh mount."""
    chunk = os.urandom(1 << 20)
    results = {c.key: [] for c in contenders}
    for rep in range(reps):
        order = contenders[rep % len(contenders):] + contenders[:rep % len(contenders)]
        for c in order:
            if c.key in bed.unsupported:
                continue
            tag = f"seq-{link.delay_ms:g}-{rep}"
            c.place(empty, tag)
            r = {}
            try:
                c.mount(tag)
                before = c.counters()
                t0 = time.perf_counter()
                with open(Path(c.mp) / "big", "wb") as f:
                    for _ in range(size >> 20):
                        f.write(chunk)
                r["write_s"] = time.perf_counter() - t0
                after = c.counters()
                if before and after:
                    r["write_rt"] = after[1] - before[1]
                c.unmount()
                c.mount(tag)
                before = c.counters()
                t0 = time.perf_counter()
                n = 0
                with open(Path(c.mp) / "big", "rb", buffering=0) as f:
                    while True:
                        b = f.read(1 << 20)
                        if not b:
                            break
                        n += len(b)
                r["read_s"] = time.perf_counter() - t0
                after = c.counters()
                if before and after:
                    r["read_rt"] = after[1] - before[1]
                if n != size:
                    r["error"] = f"read {n} bytes of {size}"
            except Unsupported as ex:
                bed.unsupported[c.key] = str(ex)
            except OSError as ex:
                r["error"] = str(ex)[:200]
            finally:
                c.unmount()
                c.remove(tag)
            if r:
                results[c.key].append(r)
                log(f"  seq {link.name} rep {rep + 1} {c.name}: "
                    + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in r.items()))
    return results


def bench_rss(bed, link, contenders, template, n_files, timeout):
    """Peak RSS (VmHWM) of the daemon after stat-walking a tree of n_files."""
    results = {}
    for c in contenders:
        if c.key in bed.unsupported or c.key == "local":
            continue
        tag = "rss"
        c.place(template, tag)
        try:
            c.mount(tag)
            pid = c.daemon_pid()
            r = measure(c, ["sh", "-c", "find . -printf '%s\\n' | wc -l"], bed.env, timeout)
            r["hwm_kib"] = vm_hwm_kib(pid) if pid else None
            r["pid"] = pid
        except Unsupported as ex:
            bed.unsupported[c.key] = str(ex)
            r = None
        finally:
            c.unmount()
            c.remove(tag)
        if r:
            results[c.key] = r
            log(f"  rss {c.name}: {r.get('hwm_kib')} KiB, walk {r.get('s', 0):.2f}s")
    return results


# ---- exec ----

class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def api_exec_true(sock):
    """One exec through the Engine API: create, start (attached, until it ends), inspect."""
    c = _UnixHTTP(sock)
    hdr = {"Content-Type": "application/json"}
    c.request("POST", f"/containers/{CONTAINER}/exec", body=json.dumps(
        {"Cmd": ["true"], "AttachStdout": True, "AttachStderr": True}), headers=hdr)
    r = c.getresponse()
    eid = json.loads(r.read())["Id"]
    s = _UnixHTTP(sock)
    s.request("POST", f"/exec/{eid}/start", body=json.dumps({"Detach": False, "Tty": False}),
              headers=hdr)
    s.getresponse().read()
    s.close()
    c.request("GET", f"/exec/{eid}/json")
    code = json.loads(c.getresponse().read())["ExitCode"]
    c.close()
    if code != 0:
        raise RuntimeError(f"exec exit code {code}")


def exec_contenders(bed, link, mounted):
    """[(key, name, run-one-exec callable, sandmount contender or None)]"""
    port, kh, sock = link.endpoints
    ssh = ["ssh", *bed.ssh_args(port, kh)]
    host = f"{SANDBOX_USER}@127.0.0.1"
    out = []
    for c in mounted:
        argv = [str(bed.sandexec), "--", "true"]
        out.append((c.key, f"sandexec true ({c.name})", _spawner(argv, str(c.mp), bed.env), c))
    cm = link.control_master()
    out.append(("ssh-cm", "ssh true (ControlMaster)",
                _spawner(ssh + ["-o", "ControlMaster=no", "-o", f"ControlPath={cm}", host, "true"],
                         None, bed.env), None))
    out.append(("ssh", "ssh true (new connection)", _spawner(ssh + [host, "true"], None, bed.env),
                None))
    denv = dict(bed.env, DOCKER_HOST=f"unix://{sock}")
    out.append(("docker-exec", "docker exec true", _spawner(["docker", "exec", CONTAINER, "true"],
                                                             None, denv), None))
    out.append(("api-exec", "Engine API exec (create+start+inspect)",
                lambda: api_exec_true(sock), None))
    return out


def _spawner(argv, cwd, env):
    def one():
        p = subprocess.run(argv, cwd=cwd, env=env, timeout=60, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise RuntimeError(f"exit {p.returncode}: {p.stderr.decode(errors='replace')[-200:]}")
    return one


def bench_exec(bed, link, mount_contenders, empty, n, reps):
    """n sequential execs per contender per rep (contender order rotated)."""
    mounted = []
    for c in mount_contenders:
        if c.key in bed.unsupported:
            continue
        tag = f"exec-{link.delay_ms:g}"
        c.place(empty, tag)
        try:
            c.mount(tag)
            mounted.append(c)
        except Unsupported as ex:
            bed.unsupported[c.key] = str(ex)
            log(f"{c.name}: n/a ({ex})")
            c.remove(tag)
    results = {}
    try:
        cands = exec_contenders(bed, link, mounted)
        for rep in range(reps):
            order = cands[rep % len(cands):] + cands[:rep % len(cands)]
            for key, name, one, c in order:
                r = results.setdefault(key, {"name": name, "lat": [], "batch_s": [], "rt": []})
                if r.get("error"):
                    continue
                before = c.counters() if c else None
                t0 = time.perf_counter()
                try:
                    for _ in range(n):
                        t = time.perf_counter()
                        one()
                        r["lat"].append(time.perf_counter() - t)
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as ex:
                    r["error"] = str(ex)[:200]
                    log(f"{name}: {ex}")
                    continue
                r["batch_s"].append(time.perf_counter() - t0)
                after = c.counters() if c else None
                if before and after:
                    r["rt"].append((after[1] - before[1]) / n)
            log(f"  exec {link.name} rep {rep + 1}/{reps} done")
    finally:
        for c in mounted:
            c.unmount()
            c.remove(f"exec-{link.delay_ms:g}")
    return results


def is_sandmount(c):
    return isinstance(c, SandmountSSH)
