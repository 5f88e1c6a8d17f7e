"""Resilience (docs/design.md, decision 8: nothing hangs, nothing is lost): the daemon survives the death
of its SSH connection (reconnects, re-opens open files, replays unacknowledged writes), fails
file operations with EIO within op_timeout during an outage, reports the outage in --status,
refuses sandexec with exit 125 meanwhile, and unmounts during an outage.

These tests kill and stop sshd processes, so they run against a testbed of their own: the
sessions serving the mount are the descendants of that sshd's listener pid."""

import errno
import os
import signal
import subprocess
import time

import pytest

import helpers as h
from conftest import Mount

OP_TIMEOUT = 4
KEEPALIVE = 1  # dead after 3 missed probes


@pytest.fixture(scope="module")
def tb(suite):
    return suite.start_testbed("testbed-resil")


@pytest.fixture
def rmount(suite, tb, request):
    remote = os.path.join(tb["SM_REMOTE_DIR"], suite.unique(request.node.name))
    h.remote_mkdir(remote)
    mp = suite.new_mountpoint(request.node.name)
    opts = suite.ssh_opts(tb, keepalive=KEEPALIVE, op_timeout=OP_TIMEOUT)
    url = suite.url(remote, tb)
    p = suite.sandmount("-o", opts, url, mp, timeout=90)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    m = Mount(suite, mp, remote, url, opts)
    try:
        yield m
    finally:
        resume(tb)
        m.cleanup()


def sshd_tree(tb):
    """The testbed's sshd listener and every process under it (the per-connection sessions)."""
    pid = int(tb["SM_SSHD_PID"])
    return pid, h.descendants(pid)


def sessions(tb):
    """The per-connection `sshd: sandbox` processes: direct children of the listener."""
    pid = int(tb["SM_SSHD_PID"])
    out = []
    for c in h.descendants(pid):
        try:
            with open(f"/proc/{c}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{c}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        if ppid == pid and cmd.startswith("sshd:"):
            out.append(c)
    return out


def kill_sessions(tb):
    """SIGKILL every session process and what runs under it (a killed [priv] monitor alone
    leaves its unprivileged child serving); returns the session pids."""
    found = sessions(tb)
    h.kill_pids([p for s in found for p in h.descendants(s)] + found, signal.SIGKILL)
    return found


def stop_all(tb):
    listener, kids = sshd_tree(tb)
    h.kill_pids([listener] + kids, signal.SIGSTOP)
    return [listener] + kids


def resume(tb):
    listener, kids = sshd_tree(tb)
    h.kill_pids([listener] + kids, signal.SIGCONT)


def status(suite, m):
    p = suite.sandmount("--status", m.mp, timeout=30)
    return p.stdout.decode(errors="replace")


def timed_stat(path, timeout=60):
    """stat in a child process (a hung mount must not hang the test): (errno or 0, seconds)."""
    t0 = time.monotonic()
    p = h.run(["/usr/bin/python3", "-c",
               "import os, sys\ntry:\n os.stat(sys.argv[1])\nexcept OSError as e:\n"
               " sys.exit(e.errno)\n", path], timeout=timeout)
    return p.returncode, time.monotonic() - t0


def test_killed_session_while_writing_loses_nothing(suite, tb, rmount):
    chunk = os.urandom(1 << 20)
    data = b"".join(bytes([i]) + chunk[1:] for i in range(24))
    killed = []
    t0 = time.monotonic()
    with open(rmount / "big.bin", "wb") as f:
        for i in range(24):
            f.write(data[i << 20:(i + 1) << 20])
            if i == 8:
                killed = kill_sessions(tb)
                assert killed, "no sshd session process found"
            time.sleep(0.05)
    # close() returned 0 (no exception): the bytes must be on the sandbox
    elapsed = time.monotonic() - t0
    assert h.sha256_file(rmount.r("big.bin")) == h.sha256(data)
    st = status(suite, rmount)
    assert "state: connected" in st and "reconnects: 1" in st, st
    assert "pending write bytes: 0" in st, st
    print(f"killed sessions {killed}; 24 MiB written and closed in {elapsed:.2f}s; sha256 ok")
    # the mount keeps working on the new connection
    assert (rmount / "big.bin").stat().st_size == len(data)
    p = rmount.exec("cat", "big.bin", timeout=60)
    assert p.returncode == 0 and h.sha256(p.stdout) == h.sha256(data)


def test_open_file_reopened_after_reconnect(suite, tb, rmount):
    h.remote_write(rmount.r("r.txt"), b"0123456789" * (800 * 1024))  # 8 MB
    with open(rmount / "r.txt", "rb") as f:
        assert f.read(10) == b"0123456789"
        assert kill_sessions(tb)
        assert h.wait_until(lambda: "reconnects: 1" in status(suite, rmount), 20)
        # far past what the kernel read ahead: a read on the handle opened before the reconnect
        assert os.pread(f.fileno(), 10, 7_000_000) == b"0123456789"


def test_outage_fails_with_eio_in_time_then_recovers(suite, tb, rmount):
    (rmount / "before.txt").write_bytes(b"x")
    stop_all(tb)
    try:
        rc, secs = timed_stat(str(rmount / "absent-1"))
        assert rc == errno.EIO, f"stat during the outage: errno {rc} after {secs:.1f}s"
        assert secs <= OP_TIMEOUT + 3, f"stat took {secs:.1f}s (op_timeout {OP_TIMEOUT})"
        print(f"stat during outage: EIO after {secs:.2f}s (op_timeout {OP_TIMEOUT}s)")
        assert h.wait_until(lambda: "state: reconnecting" in status(suite, rmount), 15), \
            status(suite, rmount)
        st = status(suite, rmount)
        print(st.splitlines()[3])
        rc, secs = timed_stat(str(rmount / "absent-2"))
        assert rc == errno.EIO and secs <= OP_TIMEOUT + 3, (rc, secs)
        p = suite.sandexec("--mount", rmount.mp, "--", "true", cwd="/", timeout=60)
        assert p.returncode == 125, (p.returncode, p.stderr)
        assert b"unreachable" in p.stderr, p.stderr
    finally:
        resume(tb)
    assert h.wait_until(lambda: timed_stat(str(rmount / "before.txt"))[0] == 0, 45), \
        status(suite, rmount)
    assert "state: connected" in status(suite, rmount)
    p = rmount.exec("cat", "before.txt", timeout=60)
    assert p.returncode == 0 and p.stdout == b"x", p


def test_unmount_during_outage(suite, tb, rmount):
    stop_all(tb)
    try:
        assert h.wait_until(lambda: "state: reconnecting" in status(suite, rmount), 15)
        t0 = time.monotonic()
        p = suite.sandmount("-u", rmount.mp, timeout=60)
        secs = time.monotonic() - t0
        assert p.returncode == 0, p.stderr
        assert not h.is_mounted(rmount.mp)
        assert secs < 5, f"sandmount -u took {secs:.1f}s during the outage"
        assert h.wait_until(lambda: not suite.daemon_pids(rmount.mp), 10), "daemon still runs"
        print(f"sandmount -u during outage: {secs:.2f}s")
        rmount.unmounted = True
    finally:
        resume(tb)


def test_fusermount_during_outage(suite, tb, rmount):
    stop_all(tb)
    try:
        assert h.wait_until(lambda: "state: reconnecting" in status(suite, rmount), 15)
        t0 = time.monotonic()
        p = subprocess.run(["fusermount3", "-u", str(rmount.mp)], timeout=30,
                           capture_output=True)
        assert p.returncode == 0, p.stderr
        assert h.wait_until(lambda: not suite.daemon_pids(rmount.mp), 10), "daemon still runs"
        print(f"fusermount3 -u during outage: daemon gone after {time.monotonic() - t0:.2f}s")
    finally:
        resume(tb)
