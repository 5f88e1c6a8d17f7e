"""sandexec: runs commands in the sandbox that owns the cwd's mount — exit codes, signals, stdin
streaming, stdout/stderr split, cwd mapping, kill propagation, TTYs, environment policy and the
exec barrier (what a command changed is visible through the mount as soon as it returns)."""

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time

import pytest

import helpers as h
from conftest import Mount
from helpers import SANDEXEC


def sx_popen(suite, args, cwd, **kw):
    return subprocess.Popen([str(SANDEXEC), *args], cwd=cwd, env=kw.pop("env", suite.env), **kw)


@pytest.mark.parametrize("code", [0, 1, 7, 42, 124, 255])
def test_exit_codes(mnt, code):
    p = mnt.exec("--", "sh", "-c", f"exit {code}")
    assert p.returncode == code, p.stderr
    p = mnt.exec("-c", f"exit {code}")
    assert p.returncode == code, p.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGINT, signal.SIGSEGV])
def test_signal_death_is_passed_on(mnt, sig):
    p = mnt.exec("--", "sh", "-c", f"kill -{int(sig)} $$; sleep 5")
    assert p.returncode == -int(sig), (p.returncode, p.stderr)


@pytest.mark.parametrize("code", [130, 137, 143])
def test_exit_code_that_looks_like_a_signal_stays_an_exit_code(mnt, code):
    """`exit 143` is an exit code, not a death by SIGTERM: the sandbox tells the two apart."""
    p = mnt.exec("-c", f"exit {code}")
    assert p.returncode == code, (p.returncode, p.stderr)


def test_argv_is_passed_verbatim(mnt):
    args = ["a b", "it's", "$HOME", "*", "", "new\nline", "ünï"]
    p = mnt.exec("--", "printf", "[%s]", *args)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode() == "".join(f"[{a}]" for a in args)


def test_stdout_stderr_split(mnt):
    p = mnt.exec("-c", "echo out1; echo err1 >&2; echo out2; echo err2 >&2; exit 3")
    assert p.returncode == 3
    assert p.stdout == b"out1\nout2\n"
    assert p.stderr == b"err1\nerr2\n"


def test_large_output(mnt):
    p = mnt.exec("--", "sh", "-c", "head -c 20000000 /dev/zero | tr '\\0' x", timeout=120)
    assert p.returncode == 0, p.stderr
    assert len(p.stdout) == 20_000_000 and set(p.stdout) == {ord("x")}


def test_stdin_bulk(mnt):
    data = os.urandom(8 << 20)
    p = mnt.exec("--", "sha256sum", input=data, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[0].decode() == h.sha256(data)


def test_stdin_is_streamed_not_buffered_to_eof(suite, mnt):
    p = sx_popen(suite, ["--", "cat"], mnt.mp, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE)
    try:
        for i in range(3):
            line = f"ping {i}\n".encode()
            p.stdin.write(line)
            p.stdin.flush()
            r, _, _ = select.select([p.stdout], [], [], 10)
            assert r, "no echo within 10 s while stdin is still open: stdin is not streamed"
            assert os.read(p.stdout.fileno(), 100) == line
        p.stdin.close()
        assert p.wait(15) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_stdin_eof_reaches_command(mnt):
    p = mnt.exec("--", "wc", "-c", input=b"12345")
    assert p.returncode == 0 and p.stdout.split()[0] == b"5"
    p = mnt.exec("--", "wc", "-c")  # stdin is /dev/null
    assert p.returncode == 0 and p.stdout.split()[0] == b"0"


def test_runs_as_sandbox_user_in_remote_dir(mnt):
    p = mnt.exec("-c", "id -un; pwd")
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().splitlines() == [mnt.sb.user, str(mnt.remote)]


def test_cwd_mapping(mnt):
    os.makedirs(mnt / "sub" / "dir with space")
    p = mnt.exec("--", "pwd", cwd=mnt / "sub" / "dir with space")
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().strip() == str(mnt.remote / "sub" / "dir with space")
    p = mnt.exec("-w", str(mnt / "sub"), "--", "pwd", cwd="/")
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().strip() == str(mnt.remote / "sub")
    p = mnt.exec("--mount", str(mnt.mp), "--", "pwd", cwd="/")
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().strip() == str(mnt.remote)
    # relative paths work because the command runs where the file lives
    (mnt / "sub" / "f.txt").write_bytes(b"content\n")
    p = mnt.exec("--", "cat", "f.txt", cwd=mnt / "sub")
    assert p.stdout == b"content\n"


def test_outside_every_mount_is_125(suite, mnt):
    outside = suite.tmp / "not-a-mount"
    outside.mkdir(exist_ok=True)
    p = suite.sandexec("--", "true", cwd=outside)
    assert p.returncode == 125
    assert p.stderr.strip(), "125 must come with a message"
    p = suite.sandexec("-c", "echo should-not-run-locally", cwd=outside)
    assert p.returncode == 125 and b"should-not-run-locally" not in p.stdout


def test_kill_propagation(suite, mnt):
    marker = f"sleep {300 + os.getpid() % 97}.{suite.unique('k').split('-')[-1]}"
    p = sx_popen(suite, ["--", "sh", "-c", marker], mnt.mp, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        assert h.wait_until(lambda: mnt.sb.pgrep(marker), 15), "remote sleep never started"
        p.kill()
        p.wait(5)
        t0 = time.monotonic()
        gone = h.wait_until(lambda: not mnt.sb.pgrep(marker), 2.0)
        assert gone, f"remote process still running {time.monotonic() - t0:.1f}s after SIGKILL"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for pid in mnt.sb.pgrep(marker):  # our own leftover: the command this test started
            h.kill_pids([pid])


def test_sigint_and_sigterm_forwarded(suite, mnt):
    marker = f"sigtest-{os.getpid()}-{suite.unique('s')}"
    script = (f': {marker}; trap "echo got-int; exit 42" INT; trap "echo got-term; exit 43" TERM; '
              'echo ready; while :; do sleep 0.1; done')
    for sig, code, word in [(signal.SIGINT, 42, b"got-int"), (signal.SIGTERM, 43, b"got-term")]:
        p = sx_popen(suite, ["--", "sh", "-c", script], mnt.mp, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            r, _, _ = select.select([p.stdout], [], [], 15)
            assert r and p.stdout.readline() == b"ready\n"
            p.send_signal(sig)
            try:
                out, err = p.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"{sig.name} to sandexec: the command still runs 10 s later "
                                     "(signal not forwarded)") from None
            assert word in out, (out, err)
            assert p.returncode == code, (p.returncode, err)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            # if the signal was lost, the remote loop this test started still runs: stop it
            for pid in mnt.sb.pgrep(marker):
                h.kill_pids([pid])


def run_in_pty(suite, args, cwd, rows=33, cols=97, timeout=20, stdin_data=None):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    p = subprocess.Popen([str(SANDEXEC), *args], cwd=cwd, env=dict(suite.env, TERM="xterm-256color"),
                         stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        if stdin_data:
            os.write(master, stdin_data)
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            elif p.poll() is not None:
                break
        rc = p.wait(max(1, deadline - time.monotonic()))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    return rc, out


def test_tty(suite, mnt):
    rc, out = run_in_pty(suite, ["-t", "--", "sh", "-c", "tty; stty size; echo TERM=$TERM"], mnt.mp)
    text = out.decode(errors="replace")
    assert rc == 0, text
    assert "/dev/pts/" in text, text
    assert "33 97" in text, text
    assert "TERM=xterm-256color" in text, text


def test_tty_via_script(suite, mnt):
    cmd = f"{SANDEXEC} -t -- tty"
    p = h.run(["script", "-qec", cmd, "/dev/null"], env=suite.env, cwd=mnt.mp, timeout=30)
    assert p.returncode == 0, p.stdout
    assert b"/dev/pts/" in p.stdout


def test_no_tty_when_not_asked(mnt):
    p = mnt.exec("--", "sh", "-c", "tty || true")
    assert b"not a tty" in p.stdout


def test_env_policy(suite, mnt):
    # the secrets are in the calling program's own startup environment (see test_sandexec_env)
    env = dict(suite.env, LANG="C.UTF-8", LC_ALL="C.UTF-8", TERM="dumb",
               SECRET_TOKEN="do-not-forward", SM_ALLOWED_X="allowed-by-config")
    script = 'printf "%s|" "$LANG" "$LC_ALL" "$TERM" "${SECRET_TOKEN-unset}" "$EXTRA" "${SM_ALLOWED_X-unset}"'
    p = h.run_as_caller([h.SANDEXEC, "-e", "EXTRA=from -e flag", "--", "sh", "-c", script], env,
                        {}, cwd=mnt.mp)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode() == "C.UTF-8|C.UTF-8|dumb|unset|from -e flag|unset|"
    # the config's env_allow adds patterns
    cfg = suite.tmp / "env-allow.json"
    cfg.write_text(json.dumps({"local_fallback": False, "env_allow": ["SM_ALLOWED_*"],
                               "sandboxes": {}}))
    p = h.run_as_caller([h.SANDEXEC, "--", "sh", "-c", script],
                        dict(env, SANDMOUNT_CONFIG=str(cfg)), {}, cwd=mnt.mp)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode() == "C.UTF-8|C.UTF-8|dumb|unset||allowed-by-config|"
    # nothing of the host's PATH/HOME leaks into the sandbox
    p = mnt.exec("-c", 'echo "$HOME"', env=env)
    assert p.stdout.decode().strip() != str(suite.home)


def test_exec_barrier_overwrite(mnt):
    f = mnt / "f"
    f.write_bytes(b"old-old-old\n")
    assert f.read_bytes() == b"old-old-old\n"  # now cached by the kernel
    assert os.stat(f).st_size == 12
    p = mnt.exec("-c", "echo new > f")
    assert p.returncode == 0, p.stderr
    assert os.stat(f).st_size == 4
    assert f.read_bytes() == b"new\n"


def test_exec_barrier_growth_and_new_files(mnt):
    f = mnt / "grow.bin"
    f.write_bytes(b"0123456789")
    assert f.read_bytes() == b"0123456789"
    assert sorted(os.listdir(mnt.mp)) == ["grow.bin"]
    p = mnt.exec("-c", "head -c 3000000 /dev/urandom >> grow.bin; mkdir -p new/dir; echo x > new/dir/y")
    assert p.returncode == 0, p.stderr
    data = f.read_bytes()
    assert len(data) == 3_000_010
    assert data == mnt.r("grow.bin").read_bytes()
    assert sorted(os.listdir(mnt.mp)) == ["grow.bin", "new"]
    assert (mnt / "new/dir/y").read_bytes() == b"x\n"
    p = mnt.exec("-c", "rm -rf new; mv grow.bin moved.bin")
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(mnt.mp)) == ["moved.bin"]
    assert not (mnt / "grow.bin").exists()


def test_exec_sees_local_writes_immediately(mnt):
    data = os.urandom(500_000)
    (mnt / "w.bin").write_bytes(data)
    p = mnt.exec("--", "sha256sum", "w.bin")
    assert p.stdout.split()[0].decode() == h.sha256(data)


def test_concurrent_execs(suite, mnt):
    procs = [sx_popen(suite, ["-c", f"sleep 1; echo job-{i}"], mnt.mp, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE) for i in range(8)]
    t0 = time.monotonic()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        outs.append((p.returncode, out))
    assert [o for _, o in outs] == [f"job-{i}\n".encode() for i in range(8)]
    assert all(rc == 0 for rc, _ in outs)
    assert time.monotonic() - t0 < 8, "8 one-second commands should run concurrently"


def private_mount(suite, name, **opts):
    """A mount served by its own sshd (so the test may stop it); returns (mount, testbed env)."""
    tb = suite.start_testbed(f"testbed-{name}")
    remote = tb["SM_REMOTE_DIR"]
    o = suite.ssh_opts(tb=tb, **opts)
    mp = suite.new_mountpoint(name)
    p = suite.sandmount("-o", o, suite.url(remote, tb=tb), mp, timeout=60)
    assert p.returncode == 0, p.stderr
    return Mount(suite, mp, remote, suite.url(remote, tb=tb), o, suite.backend("ssh")), tb


def cut_connections(suite, tb, name, stop_listener):
    """Kill the per-connection sshd processes (children of the testbed's sshd, all started by
    this test); with stop_listener, stop the testbed's sshd too."""
    conns = h.descendants(int(tb["SM_SSHD_PID"]))
    if stop_listener:
        h.run([h.TESTBED, "down", suite.tmp / f"testbed-{name}"], check=True)
    h.kill_pids(conns)


def test_unreachable_sandbox_is_125(suite):
    """The sandbox went away: sandexec (already in the mount, like a gateway's shell) fails with
    125 and a message, file operations fail instead of hanging, and unmount still works."""
    m, tb = private_mount(suite, "unreachable", op_timeout=5, keepalive=2, connect_timeout=3)
    go = suite.tmp / "unreachable-go"
    try:
        assert m.exec("-c", "echo up").stdout == b"up\n"
        # a shell whose cwd is inside the mount before the outage, like the gateway's
        waiter = subprocess.Popen(
            ["sh", "-c", f'while [ ! -e {go} ]; do sleep 0.05; done; exec "$0" -c "echo should-not-print"',
             str(SANDEXEC)], cwd=m.mp, env=suite.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        cut_connections(suite, tb, "unreachable", stop_listener=True)
        t0 = time.monotonic()
        go.touch()
        try:
            out, err = waiter.communicate(timeout=60)
        finally:
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait()
        took = time.monotonic() - t0
        assert waiter.returncode == 125, (waiter.returncode, out, err)
        assert b"should-not-print" not in out
        assert err.strip(), "125 must come with a message"
        assert took < 30, f"took {took:.1f}s"
        # file operations fail within op_timeout instead of hanging
        t0 = time.monotonic()
        p = h.run(["cat", str(m.mp / "nothing-here")], timeout=60)
        assert p.returncode != 0
        assert time.monotonic() - t0 < 30
        # and unmounting works during the outage
        m.unmount()
    finally:
        m.cleanup()


def test_reconnects_after_connection_loss(suite):
    """The connection drops but sshd is still there: the daemon reconnects; the mount and
    sandexec keep working (docs/design.md, decision 8)."""
    m, tb = private_mount(suite, "reconnect", op_timeout=20, keepalive=2, connect_timeout=3)
    try:
        (m / "before").write_bytes(b"before")
        cut_connections(suite, tb, "reconnect", stop_listener=False)
        time.sleep(1)
        (m / "after").write_bytes(b"after")
        assert (m.remote / "after").read_bytes() == b"after"
        assert (m / "before").read_bytes() == b"before"
        p = m.exec("-c", "cat before after", timeout=60)
        assert (p.returncode, p.stdout) == (0, b"beforeafter"), p.stderr
    finally:
        m.cleanup()


def test_tty_input_resize_and_ctrl_c(suite, mnt):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    script = ('read line; echo "got:$line"; stty size; echo waiting; '
              'while [ "$(stty size)" = "24 80" ]; do sleep 0.1; done; stty size; '
              'echo sleeping; sleep 300')
    p = subprocess.Popen([str(SANDEXEC), "-t", "--", "sh", "-c", script], cwd=mnt.mp,
                         env=dict(suite.env, TERM="xterm"), stdin=slave, stdout=slave,
                         stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""

    def read_until(token, timeout=15):
        nonlocal out
        deadline = time.monotonic() + timeout
        while token not in out and time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    out += os.read(master, 65536)
                except OSError:
                    break
        return token in out

    try:
        os.write(master, b"hello tty\r")
        assert read_until(b"got:hello tty"), out
        assert read_until(b"waiting"), out
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 132, 0, 0))
        p.send_signal(signal.SIGWINCH)
        assert read_until(b"50 132"), f"window size change not forwarded: {out!r}"
        assert read_until(b"sleeping"), out
        time.sleep(0.3)
        os.write(master, b"\x03")  # ^C typed at the terminal
        rc = p.wait(15)
        assert rc == -signal.SIGINT, (rc, out)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
