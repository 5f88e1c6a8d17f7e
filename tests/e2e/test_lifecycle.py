"""The life of a mount: unmounting loses nothing (sandmount -u and fusermount3 -u), --status,
recovery over a stale mountpoint, named sandboxes from the config file, foreground mode."""

import errno
import json
import os
import signal
import subprocess
import time

import pytest

import helpers as h
from conftest import do_mount
from helpers import SANDMOUNT


def write_burst(m):
    files = {}
    for i in range(40):
        data = os.urandom(50_000 + i * 997)
        (m / f"burst-{i}").write_bytes(data)
        files[f"burst-{i}"] = data
    big = os.urandom(24 << 20)
    (m / "big").write_bytes(big)
    files["big"] = big
    return files


@pytest.mark.parametrize("how", ["sandmount -u", "fusermount3 -u"])
def test_unmount_loses_nothing(suite, mounter, how):
    m = mounter()
    files = write_burst(m)
    if how == "sandmount -u":
        m.unmount()
    else:
        # Right after the writes: the change reports of them must not make the daemon stat
        # through its own mount (a fusermount3 -u then failed with EBUSY).
        h.run(["fusermount3", "-u", m.mp], check=True, timeout=60)
        assert not h.is_mounted(m.mp)
        assert h.wait_until(lambda: not suite.daemon_pids(m.mp), 15), \
            "daemon still running 15 s after fusermount3 -u"
    for name, data in files.items():
        assert h.sha256_file(m.r(name)) == h.sha256(data), name
    # mounting the same place again works and shows the same data
    m2 = mounter(remote=m.rem)
    assert (m2 / "big").stat().st_size == len(files["big"])


def test_status_shows_connection_and_pending_writes(suite, mnt):
    p = suite.sandmount("--status", mnt.mp, timeout=30)
    assert p.returncode == 0, p.stderr
    text = p.stdout.decode()
    assert mnt.sb.status_needle in text, text
    assert "pending" in text.lower(), text
    fd = os.open(mnt / "pending.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, os.urandom(100_000))
        p = suite.sandmount("--status", mnt.mp, timeout=30)
        assert p.returncode == 0, p.stderr
        lines = [ln for ln in p.stdout.decode().splitlines() if "pending" in ln.lower()]
        assert lines, p.stdout
        assert any(any(c in "123456789" for c in ln) for ln in lines), \
            f"status should show the 100000 unacknowledged bytes: {lines}"
    finally:
        os.close(fd)
    assert mnt.r("pending.bin").stat().st_size == 100_000


def test_status_lists_all_mounts(suite, mounter):
    a = mounter()
    b = mounter()
    p = suite.sandmount("--status", timeout=30)
    text = p.stdout.decode()
    assert str(a.mp) in text and str(b.mp) in text, text
    # other sandmount mounts on this machine (not the suite's, served by daemons of another
    # runtime dir) may make it complain; about the suite's own mounts it must not
    ours = [ln for ln in p.stderr.decode().splitlines() if str(suite.tmp) in ln]
    assert not ours, p.stderr
    foreign = [mp for mp, t in h.mounts() if t == "fuse.sandmount" and not mp.startswith(str(suite.tmp))]
    if not foreign:
        assert p.returncode == 0, p.stderr


def test_remount_over_stale_mountpoint(suite, mounter):
    m = mounter()
    (m / "kept").write_bytes(b"survives")
    pids = suite.daemon_pids(m.mp)
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGKILL)
    assert h.wait_until(lambda: not suite.daemon_pids(m.mp), 5)
    with pytest.raises(OSError) as ex:
        os.stat(m.mp)
    # the kernel answers ECONNABORTED for the request in flight, then ENOTCONN
    assert ex.value.errno in (errno.ENOTCONN, errno.ECONNABORTED)
    with pytest.raises(OSError) as ex:
        os.stat(m.mp)
    assert ex.value.errno == errno.ENOTCONN, "the mountpoint should now be stale"
    m2 = do_mount(suite, m.rem, m.mp, sb=m.sb)
    try:
        assert (m2 / "kept").read_bytes() == b"survives"
        (m2 / "new").write_bytes(b"after")
        assert m2.r("new").read_bytes() == b"after"
        assert [mp for mp, _ in h.mounts()].count(str(m.mp)) == 1, "the stale mount must be replaced"
    finally:
        m2.cleanup()


def test_named_sandbox_from_config(suite, sandbox):
    remote = sandbox.new_remote("named")
    mp = suite.new_mountpoint("named")
    cfg = suite.tmp / f"named-{sandbox.name}.json"
    cfg.write_text(json.dumps({
        "local_fallback": False,
        "sandboxes": {"tb": {
            "url": sandbox.url(remote),
            "mountpoint": str(mp),
            "options": sandbox.opt_dict(connect_timeout=10),
        }},
    }))
    env = dict(suite.env, SANDMOUNT_CONFIG=str(cfg))
    from conftest import Mount
    m = Mount(suite, mp, remote, "tb", None, sandbox)
    try:
        for args in (["tb", mp], ["tb"]):  # explicit mountpoint, then the configured one
            p = suite.sandmount(*args, env=env, timeout=60)
            assert p.returncode == 0, (args, p.stderr)
            assert h.is_mounted(mp)
            (m / "via-name").write_bytes(b"named")
            assert m.r("via-name").read_bytes() == b"named"
            p = m.exec("-c", "pwd", env=env)
            assert p.stdout.decode().strip() == str(remote.path), p.stderr
            p = suite.sandmount("-u", mp, env=env, timeout=60)
            assert p.returncode == 0, p.stderr
            assert not h.is_mounted(mp)
    finally:
        m.cleanup()


def test_foreground_mode(suite, sandbox):
    remote = sandbox.new_remote("fg")
    mp = suite.new_mountpoint("fg")
    p = subprocess.Popen([str(SANDMOUNT), "-f", "-o", sandbox.opts(), sandbox.url(remote), str(mp)],
                         env=suite.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        assert h.wait_until(lambda: h.is_mounted(mp) or p.poll() is not None, 30)
        assert p.poll() is None, p.communicate()
        (mp / "fg.txt").write_bytes(b"foreground")
        assert (remote.host / "fg.txt").read_bytes() == b"foreground"
        h.run(["fusermount3", "-u", mp], check=True)
        assert p.wait(15) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if h.is_mounted(mp):
            subprocess.run(["fusermount3", "-u", "-z", str(mp)], timeout=30)


def test_sigterm_to_daemon_unmounts_cleanly(suite, mounter):
    m = mounter()
    data = os.urandom(2 << 20)
    (m / "x").write_bytes(data)
    pids = suite.daemon_pids(m.mp)
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGTERM)
    assert h.wait_until(lambda: not h.is_mounted(m.mp), 15), "SIGTERM should unmount"
    assert h.wait_until(lambda: not suite.daemon_pids(m.mp), 15)
    assert m.r("x").read_bytes() == data


@pytest.mark.parametrize("delay", [0, 0.005, 0.02])
def test_sigterm_while_the_sandbox_grows_an_open_file(suite, mounter, delay):
    """The report of a change to an open file shows its new size by a stat through the mount.
    One that comes as the daemon stops must not hold the unmount until its deadline: no worker
    answers that stat any more."""
    m = mounter()
    m.rwrite("f", b"a" * 10)
    fd = os.open(m / "f", os.O_RDONLY)
    try:
        assert os.read(fd, 100) == b"a" * 10
        pid = suite.daemon_pids(m.mp)[0]
        m.rwrite("f", b"b" * 5000)
        time.sleep(delay)
        os.kill(pid, signal.SIGTERM)
        t0 = time.monotonic()
        assert h.wait_until(lambda: not h.is_mounted(m.mp) and not suite.daemon_pids(m.mp), 20)
        took = time.monotonic() - t0
    finally:
        try:
            os.close(fd)
        except OSError:
            pass  # its connection is gone
    assert took < 5, f"the daemon took {took:.1f} s to stop\n{suite.daemon_logs(m.mp)}"
    assert m.r("f").read_bytes() == b"b" * 5000


def test_mount_unmount_cycles(suite, sandbox):
    remote = sandbox.new_remote("cycles")
    mp = suite.new_mountpoint("cycles")
    for i in range(5):
        t0 = time.monotonic()
        m = do_mount(suite, remote, mp, sb=sandbox)
        try:
            (m / f"c{i}").write_bytes(b"%d" % i)
            assert sorted(os.listdir(mp)) == [f"c{j}" for j in range(i + 1)]
            m.unmount()
        finally:
            m.cleanup()
        assert time.monotonic() - t0 < 20


def test_unresponsive_sandbox_fails_ops_within_op_timeout(suite):
    """The sandbox stops answering (its sshd processes are stopped, the TCP connection stays up):
    file operations fail with an error within about op_timeout instead of hanging."""
    from test_exec import private_mount
    m, tb = private_mount(suite, "frozen", op_timeout=3, keepalive=2, connect_timeout=3)
    conns = h.descendants(int(tb["SM_SSHD_PID"]))
    frozen = [pid for pid in conns]
    try:
        (m / "warm").write_bytes(b"w")
        h.kill_pids(frozen, signal.SIGSTOP)
        t0 = time.monotonic()
        p = h.run(["stat", str(m / "never-looked-up")], timeout=60)
        took = time.monotonic() - t0
        assert p.returncode != 0
        assert took < 3 + 10, f"a file operation waited {took:.1f}s with op_timeout=3"
        t0 = time.monotonic()
        p = h.run(["sh", "-c", f"echo data > '{m / 'new-file'}'"], timeout=60)
        assert p.returncode != 0, "a write to a frozen sandbox must not report success"
        assert time.monotonic() - t0 < 3 + 10
        # the sandbox answers again: the mount recovers (reconnects if it had given up)
        h.kill_pids(frozen, signal.SIGCONT)
        ok = h.wait_until(lambda: h.run(["cat", str(m / "warm")], timeout=30).stdout == b"w", 30, 0.5)
        assert ok, "the mount did not recover after the sandbox answered again\n" + \
            suite.daemon_logs(m.mp)
    finally:
        h.kill_pids(frozen, signal.SIGCONT)
        m.cleanup()
