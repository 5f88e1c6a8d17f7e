"""helpers: shared plumbing of the end-to-end suite — paths of the binaries under test, running
them with deadlines, the mounts table, the processes the suite started, and remote-side access
(the sandbox is this machine's `sandbox` user, so its workspace is read directly as root)."""

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
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
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


def remote_chown(path):
    uid, gid = sandbox_ids()
    os.lchown(path, uid, gid)


def remote_write(path, data, mode=0o644):
    """Create a file on the sandbox side (owned by the sandbox user), not through the mount."""
    path = Path(path)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    remote_chown(path)


def remote_mkdir(path):
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    remote_chown(path)


def remote_symlink(target, path):
    os.symlink(target, path)
    remote_chown(path)


def sandbox_pgrep(pattern):
    """Pids of the sandbox user's processes whose full command line matches pattern."""
    p = run(["pgrep", "-u", SANDBOX_USER, "-f", pattern], timeout=10)
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
