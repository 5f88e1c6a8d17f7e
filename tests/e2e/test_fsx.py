"""The randomized, model-checked exerciser (tests/fsx, `sm-fsx`) on a sandmount mount of every
backend: many seeds per backend, each run checking every read (pread, mmap, O_DIRECT) and size
against its model — (a) local ops only; (b) with changes made on the sandbox side, directly in
the sandbox's backing directory (visible through open descriptors once the change watch reported
them; without the watch, after a re-open) and through `sandexec` (visible at once: the exec
barrier); (c) with the SSH link cut every
K ops (the sshd sessions serving the mount are killed; the daemon reconnects and replays).

Each test runs seeds for a bounded time: SM_FSX_SECONDS (default 60; half of it for the tests
with hooks) per test and backend, SM_FSX_OPS ops per seed (default 300), seeds from SM_FSX_SEED + 1
on (default: from the clock), SM_FSX_JOBS of them at once (default 3, each in its own directory;
the tests that cut the link run one at a time); at least one seed runs; SM_FSX_MAX_FAILURES (default 3)
failed seeds end a test; SM_FSX_ARGS adds sm-fsx options (e.g. "--fds 1 --no-mmap" to narrow a failure down).
A failing seed's op log is kept in the e2e temp dir; the failure names the sm-fsx command that
replays it and the `scripts/test` command that reruns that seed on a fresh mount (a seed's ops
are always the same). Run as a script (`test_fsx.py kill-sessions SSHD_PID`) it is the reconnect
hook."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import helpers as h
import conftest
from conftest import Mount

FSX = h.BUILD / "tests" / "sm-fsx"
HOOK = h.REPO / "tests" / "fsx" / "hook.sh"
SECONDS = float(os.environ.get("SM_FSX_SECONDS", "60"))  # local ops; tests with hooks: half
OPS = int(os.environ.get("SM_FSX_OPS", "300"))
FIRST_SEED = int(os.environ.get("SM_FSX_SEED", str(int(time.time()) % 1000000 * 1000)))
SETTLE_MS = int(os.environ.get("SM_FSX_SETTLE_MS", "500"))  # watch report latency allowed
# seeds that may fail before a test stops (the mount may be broken by then)
MAX_FAILURES = int(os.environ.get("SM_FSX_MAX_FAILURES", "3"))
EXTRA_ARGS = os.environ.get("SM_FSX_ARGS", "").split()  # e.g. "--no-mmap --no-direct"
RECONNECT_EVERY = 60
# seeds run at once, each in its own directory (the loopback stack is CPU-bound per op chain:
# three streams keep both cores busy: 0.34 s a seed against 0.67 alone); the tests that cut
# the link run one at a time
JOBS = int(os.environ.get("SM_FSX_JOBS", "3"))
SEED_TIMEOUT = 120


def run_seeds(suite, m, name, hook_args=None, jobs=JOBS):
    """Run sm-fsx seeds on mount m for SECONDS (half with hooks), `jobs` at once (each in its own
    directory); assert every seed passed. hook_args(seed_dir, seed) gives the extra sm-fsx
    arguments of a seed (its hooks)."""
    budget = SECONDS / 2 if hook_args else SECONDS
    if not FSX.exists():
        pytest.fail(f"{FSX} not built (run scripts/build)", pytrace=False)
    logs = suite.tmp / "fsx-logs"
    logs.mkdir(exist_ok=True)
    failures, running, seeds, ops, seed = [], [], 0, 0, FIRST_SEED
    t0 = time.monotonic()
    try:
        while True:
            while len(running) < jobs and (not seeds or (
                    time.monotonic() - t0 < budget and len(failures) < MAX_FAILURES)):
                seed += 1
                seeds += 1
                running.append(start_seed(suite, m, name, seed, logs, hook_args))
            if not running:
                break
            time.sleep(0.005)
            for run in [r for r in running if r.done()]:
                running.remove(run)
                code, out = run.result()
                if code != 0:
                    failures.append(summarize(run.seed, code, out) + "\n" +
                                    rerun(m, run.seed, jobs))
                else:
                    ops += int(out.split(": ")[2].split()[0])
    finally:
        for run in running:
            run.kill()
    elapsed = time.monotonic() - t0
    line = (f"sm-fsx {name}: {seeds} seeds ({ops} ops, {jobs} at once) in {elapsed:.1f}s = "
            f"{seeds * 60 / elapsed:.1f} seeds/min; {len(failures)} failed")
    print(line)
    conftest.SUMMARY_LINES.append(line)
    assert not failures, (f"sm-fsx {name}: {len(failures)} of {seeds} seeds failed "
                          f"(op logs in {logs}):\n" + "\n\n".join(failures))
    assert seeds >= 1


class SeedRun:
    """One sm-fsx process running one seed in its own directory, output kept in a file."""

    def __init__(self, suite, args, seed, out_path):
        self.seed = seed
        self.out_path = out_path
        self.deadline = time.monotonic() + SEED_TIMEOUT
        with open(out_path, "wb") as out:
            self.proc = subprocess.Popen([str(a) for a in args], env=suite.env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def done(self):
        if self.proc.poll() is None and time.monotonic() > self.deadline:
            self.kill()
        return self.proc.poll() is not None

    def result(self):
        out = self.out_path.read_bytes().decode(errors="replace")
        code = self.proc.returncode
        if code == -signal.SIGKILL and time.monotonic() > self.deadline:
            out += f"\nsm-fsx: killed after {SEED_TIMEOUT}s (no progress)"
        elif code == 0:
            self.out_path.unlink()
        return code, out

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_seed(suite, m, name, seed, logs, hook_args):
    d = m / f"s{seed}"
    d.mkdir()
    args = [FSX, "--seed", seed, "--ops", OPS, "--log", logs / f"{name}-{seed}.log", *EXTRA_ARGS,
            *(hook_args(d, seed) if hook_args else []), d]
    return SeedRun(suite, args, seed, logs / f"{name}-{seed}.out")


def rerun(m, seed, jobs):
    """The command that runs this test again on a fresh mount with just this seed."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split("::")[-1].split(" ")[0]
    extra = f"SM_FSX_ARGS='{' '.join(EXTRA_ARGS)}' " if EXTRA_ARGS else ""
    alone = f" (it ran next to {jobs - 1} other seeds on the mount)" if jobs > 1 else ""
    return (f"rerun{alone}: {extra}SM_FSX_SEED={seed - 1} SM_FSX_SECONDS=0 SM_FSX_OPS={OPS} "
            f"SM_E2E_BACKENDS={m.sb.name} scripts/test -k '{test.split('[')[0]}'")


def summarize(seed, code, out):
    """The lines of a failed run that matter: what failed, where, and how to replay it."""
    lines = out.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith("sm-fsx: FAIL seed")), None)
    if start is None:
        return f"seed {seed} (exit {code}):\n" + "\n".join(lines[-20:])
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("sm-fsx: op log")),
               len(lines))
    keep = lines[start:min(end, start + 8)]
    why = next((i for i, ln in enumerate(lines) if ln.startswith("sm-fsx: the last ops")), None)
    if why is not None:
        keep += [ln for ln in lines[why:why + 12] if not ln.startswith("sm-fsx: FAIL at")]
    keep += [ln for ln in lines if ln.startswith("sm-fsx: replay:")]
    return f"seed {seed} (exit {code}):\n" + "\n".join(keep)


def test_fsx_local_ops(suite, mnt):
    run_seeds(suite, mnt, f"local-{mnt.sb.name}")


def test_fsx_sandbox_changes_direct(suite, mnt):
    """Changes written straight into the sandbox's workspace: the watch reports them, open
    descriptors see them within SETTLE_MS."""
    run_seeds(suite, mnt, f"direct-{mnt.sb.name}", lambda d, seed: [
        "--external", f"{HOOK} direct {mnt.r(d.name)}",
        "--external-visibility", f"settle-ms={SETTLE_MS}"])


@pytest.mark.backends("ssh", "docker")
def test_fsx_sandbox_changes_direct_reopen(suite, sandbox, mounter):
    """The same changes without the change watch (agent=off: the plain sftp-server), checked
    under its rule, close-to-open: visible after a re-open. (With the watch an open of a file
    it vouches for sends nothing, so there the rule is the one above: visible once reported.)
    Not on Podman yet: through its exec API the plain sftp-server once answered an fsync with
    EIO (1 seed in 50, not reproduced on replay; open in issue 10's note)."""
    m = mounter(opts=sandbox.opts(agent="off"))
    run_seeds(suite, m, f"direct-reopen-{m.sb.name}", lambda d, seed: [
        "--external", f"{HOOK} direct {m.r(d.name)}", "--external-visibility", "reopen"])


def test_fsx_sandbox_changes_sandexec(suite, mnt):
    """Changes made by a command run through sandexec: visible at once when it returns."""
    run_seeds(suite, mnt, f"sandexec-{mnt.sb.name}", lambda d, seed: [
        "--external", f"{HOOK} sandexec {h.SANDEXEC} {d}",
        "--external-visibility", "settle-ms=0"])


@pytest.fixture(scope="module")
def fsx_tb(suite):
    """A testbed of our own: the reconnect hook kills every session of its sshd."""
    return suite.start_testbed("testbed-fsx")


@pytest.fixture
def rmount(suite, fsx_tb, request):
    remote = os.path.join(fsx_tb["SM_REMOTE_DIR"], suite.unique(request.node.name))
    h.remote_mkdir(remote)
    mp = suite.new_mountpoint(request.node.name)
    opts = suite.ssh_opts(fsx_tb, keepalive=1, op_timeout=10)
    url = suite.url(remote, fsx_tb)
    p = suite.sandmount("-o", opts, url, mp, timeout=90)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    m = Mount(suite, mp, remote, url, opts, suite.backend("ssh"))
    try:
        yield m
    finally:
        m.cleanup()


def test_fsx_reconnects_ssh(suite, fsx_tb, rmount):
    """Every RECONNECT_EVERY ops the sshd sessions serving the mount are killed."""
    hook = f"/usr/bin/python3 {Path(__file__).resolve()} kill-sessions {fsx_tb['SM_SSHD_PID']}"
    run_seeds(suite, rmount, "reconnect-ssh", lambda d, seed: [
        "--reconnect", hook, "--reconnect-every", RECONNECT_EVERY], jobs=1)


def kill_sessions(listener):
    """SIGKILL the per-connection sessions of sshd `listener` and everything under them."""
    sessions = []
    for c in h.descendants(listener):
        try:
            with open(f"/proc/{c}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{c}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        if ppid == listener and cmd.startswith("sshd:"):
            sessions.append(c)
    h.kill_pids([p for s in sessions for p in h.descendants(s)] + sessions, signal.SIGKILL)
    return sessions


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "kill-sessions":
        sys.exit("usage: test_fsx.py kill-sessions SSHD_PID reconnect")
    if not kill_sessions(int(sys.argv[2])):
        sys.exit("test_fsx.py: no sshd session found to kill")
