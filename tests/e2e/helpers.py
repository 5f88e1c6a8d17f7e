"""helpers: shared plumbing of the end-to-end suite — paths of the binaries under test, running
them with deadlines, the mounts table, the processes the suite started, and remote-side access
(the sandbox is this machine's `sandbox` user, so its workspace is read directly as root; a
container's workspace is a bind mount of a directory of this machine), and a minimal Docker Engine
API client."""

import hashlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("SM_E2E_BUILD", REPO / "build-asan")).resolve()
SANDMOUNT = BUILD / "fs" / "sandmount"
SANDEXEC = BUILD / "exec" / "sandexec"
TESTBED = REPO / "scripts" / "testbed"
DOCKERBED = REPO / "scripts" / "dockerbed"
SANDBOX_USER = "sandbox"

# Every subprocess the suite starts gets a deadline: nothing may hang.
DEFAULT_TIMEOUT = 60


def run(cmd, timeout=DEFAULT_TIMEOUT, env=None, cwd=None, input=None, check=False):
    """Run cmd (list of str/Path) with a deadline; return CompletedProcess with bytes output.
    A timeout is a test failure with what the process printed so far."""
    cmd = [str(c) for c in cmd]
    try:
        p = subprocess.run(cmd, env=env, cwd=cwd, input=input, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout,
                           stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as ex:
        raise AssertionError(f"timed out after {timeout}s: {' '.join(cmd)}\n"
                             f"stdout: {ex.stdout!r}\nstderr: {ex.stderr!r}") from None
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}: {' '.join(cmd)}\n"
                             f"stdout: {p.stdout!r}\nstderr: {p.stderr!r}")
    return p


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def _unescape_mountinfo(field):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts():
    """[(mountpoint, fstype)] from /proc/self/mountinfo."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            out.append((_unescape_mountinfo(left.split()[4]), right.split()[0]))
    return out


def is_mounted(mp):
    mp = os.path.abspath(str(mp))
    return any(m == mp for m, _ in mounts())


def mount_fstype(mp):
    mp = os.path.abspath(str(mp))
    found = [t for m, t in mounts() if m == mp]
    return found[-1] if found else None


def parent_pid(pid):
    """The parent of pid (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def pids_of(binary, needle, exact=False):
    """Pids of running processes whose executable is `binary` and whose command line contains
    `needle` (a path the suite created, so they are processes the suite started); with exact,
    one argument must equal needle."""
    binary = os.path.realpath(str(binary))
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            exe = os.readlink(f"/proc/{d}/exe")
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
            with open(f"/proc/{d}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":
            continue
        if exact:
            hit = str(needle) in argv
        else:
            hit = str(needle) in " ".join(argv)
        if exe.removesuffix(" (deleted)") == binary and hit:
            found.append(int(d))
    return found


def descendants(pid):
    """All live descendants of pid (children first), read from /proc."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    out, pending = [], [pid]
    while pending:
        p = pending.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        pending += kids
    return out


def wait_until(pred, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def kill_pids(pids, sig=signal.SIGKILL):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def sandbox_ids():
    pw = pwd.getpwnam(SANDBOX_USER)
    return pw.pw_uid, pw.pw_gid


def remote_chown(path, ids=None):
    uid, gid = ids or sandbox_ids()
    os.lchown(path, uid, gid)


def remote_write(path, data, mode=0o644, ids=None):
    """Create a file on the sandbox side (owned by the sandbox user), not through the mount."""
    path = Path(path)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    remote_chown(path, ids)


def remote_mkdir(path, ids=None):
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    remote_chown(path, ids)


def remote_symlink(target, path, ids=None):
    os.symlink(target, path)
    remote_chown(path, ids)


def sandbox_pgrep(pattern, user=SANDBOX_USER):
    """Pids of the sandbox user's processes whose full command line matches pattern (a
    container's processes are this machine's processes too, with the container's uid)."""
    p = run(["pgrep", "-u", str(user), "-f", pattern], timeout=10)
    return [int(x) for x in p.stdout.split()]


def one_line_error(p):
    """Assert p failed with exactly one non-empty line on stderr; return that line."""
    err = p.stderr.decode(errors="replace")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert p.returncode != 0, f"expected failure, got exit 0; stderr: {err!r}"
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err!r}"
    return lines[0]


def rmtree_quiet(path):
    shutil.rmtree(path, ignore_errors=True)


class EngineAPI:
    """A minimal Docker Engine API client on a unix socket (dockerd or Podman's compatible
    service): the suite creates, stops and inspects its containers with it."""

    def __init__(self, sock):
        self.sock = str(sock)

    def request(self, method, path, body=None, ctype="application/json", timeout=60):
        """(status, response bytes)."""
        import http.client
        import json as _json
        import socket as _socket

        class Conn(http.client.HTTPConnection):
            def connect(c):
                c.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
                c.sock.settimeout(timeout)
                c.sock.connect(self.sock)

        if body is not None and not isinstance(body, (bytes, bytearray)):
            body = _json.dumps(body).encode()
        conn = Conn("localhost", timeout=timeout)
        try:
            headers = {"Content-Type": ctype} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def json(self, method, path, body=None, ok=(200, 201, 204, 304), timeout=60):
        import json as _json
        status, data = self.request(method, path, body, timeout=timeout)
        if status not in ok:
            raise AssertionError(f"{method} {path}: {status} {data[:500]!r}")
        return _json.loads(data) if data.strip() else None

    def create(self, name, image, cmd=("sleep", "1000000"), user=None, binds=(), read_only=False,
               tmpfs=None, cap_drop=(), security_opt=(), network="none", start=True):
        """Create (and start) container `name`; returns its id."""
        host = {"Binds": list(binds), "ReadonlyRootfs": read_only, "NetworkMode": network,
                "CapDrop": list(cap_drop), "SecurityOpt": list(security_opt)}
        if tmpfs:
            host["Tmpfs"] = dict(tmpfs)
        body = {"Image": image, "Cmd": list(cmd), "HostConfig": host}
        if user:
            body["User"] = user
        cid = self.json("POST", f"/containers/create?name={name}", body)["Id"]
        if start:
            self.start(cid)
        return cid

    def start(self, cid):
        self.json("POST", f"/containers/{cid}/start")

    def stop(self, cid, t=0):
        self.json("POST", f"/containers/{cid}/stop?t={t}", timeout=t + 60)

    def remove(self, cid):
        self.json("DELETE", f"/containers/{cid}?force=1", ok=(200, 204, 404))

    def inspect(self, cid):
        return self.json("GET", f"/containers/{cid}/json")

    def pause(self, cid):
        self.json("POST", f"/containers/{cid}/pause")

    def unpause(self, cid):
        self.json("POST", f"/containers/{cid}/unpause")

    def exec(self, cid, cmd, user=None, timeout=60):
        """Run cmd (a list) in the container with a TTY (so the output is not framed);
        returns (exit code, output bytes)."""
        body = {"Cmd": list(cmd), "AttachStdout": True, "AttachStderr": True, "Tty": True}
        if user:
            body["User"] = user
        eid = self.json("POST", f"/containers/{cid}/exec", body)["Id"]
        status, out = self.request("POST", f"/exec/{eid}/start", {"Detach": False, "Tty": True},
                                   timeout=timeout)
        assert status == 200, (status, out)
        info = self.json("GET", f"/exec/{eid}/json")
        return info["ExitCode"], out.replace(b"\r\n", b"\n")


# A calling program (a gateway) in miniature: started with one environment, it runs its command
# with variables added to it, as OpenClaw's exec does; sandexec forwards only what was added.
_CALLER = ("import json, os, subprocess, sys\n"
           "env = dict(os.environ, **json.loads(sys.argv[1]))\n"
           "rc = subprocess.run(sys.argv[2:], env=env).returncode\n"
           "sys.exit(rc if rc >= 0 else 128 - rc)\n")


def run_as_caller(cmd, startup_env, added, cwd, timeout=DEFAULT_TIMEOUT):
    """Run cmd from a process started with startup_env that adds `added` for cmd alone."""
    import json
    import sys
    return run([sys.executable, "-c", _CALLER, json.dumps(added), *cmd], env=startup_env,
               cwd=cwd, timeout=timeout)
