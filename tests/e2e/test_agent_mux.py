"""The agent's multiplexer as a mount uses it (agent=auto, the default on both backends): commands
run through it quickly, the changes a command made are visible the moment sandexec returns
(the agent sends them before the exit, so no cache barrier is needed), changes made in the
sandbox by anything else show up within a second although the cache lives 30 s, killing
sandexec kills the remote command, and agent=off still works."""

import os
import subprocess
import time

import helpers as h
from helpers import SANDEXEC

ROUNDS = 200


def exec_ok(mnt, script):
    p = mnt.exec("-c", script)
    assert p.returncode == 0, p.stderr
    return p


def test_agent_is_used(suite, mnt):
    """Commands run as children of the agent (not of sshd or a Docker exec), and the watch runs.
    (How fast that is belongs to scripts/bench, not to a timed test.)"""
    assert "the sandbox reports changes" in suite.daemon_logs(mnt.mp), \
        "the change watch is not running (agent not used?)\n" + suite.daemon_logs(mnt.mp)
    for _ in range(3):
        p = exec_ok(mnt, "cat /proc/$PPID/comm")
        assert p.stdout.decode().strip() == "sandmount-agent"[:15], p.stdout


def test_overwrite_visible_at_once(mnt):
    f = mnt / "f"
    for i in range(ROUNDS):
        old = f"old-old-old-{i}\n"
        f.write_text(old)
        assert f.read_text() == old  # cached by the kernel now
        exec_ok(mnt, f"echo new{i} > f")
        want = f"new{i}\n"
        assert os.stat(f).st_size == len(want), f"round {i}: stale size"
        assert f.read_text() == want, f"round {i}: stale data"


def test_growth_visible_at_once(mnt):
    f = mnt / "grow"
    f.write_bytes(b"")
    want = b""
    for i in range(ROUNDS):
        assert f.read_bytes() == want  # cached
        assert os.stat(f).st_size == len(want)
        line = f"line {i} {'x' * (i % 50)}\n".encode()
        exec_ok(mnt, f"printf '%s\\n' '{line.decode()[:-1]}' >> grow")
        want += line
        assert os.stat(f).st_size == len(want), f"round {i}: stale size"
        assert f.read_bytes() == want, f"round {i}: stale data"


def test_directory_rename_visible_at_once(mnt):
    (mnt / "d0").mkdir()
    (mnt / "d0/inner").write_text("payload\n")
    for i in range(ROUNDS):
        a, b = f"d{i}", f"d{i + 1}"
        assert os.listdir(mnt.mp) == [a]  # listing and entries cached
        assert (mnt / a / "inner").read_text() == "payload\n"
        exec_ok(mnt, f"mv {a} {b}")
        assert os.listdir(mnt.mp) == [b], f"round {i}: stale listing"
        assert not (mnt / a).exists(), f"round {i}: the old name is still there"
        assert (mnt / b / "inner").read_text() == "payload\n", f"round {i}: new name missing"


def test_change_outside_sandexec_shows_within_a_second(mnt):
    f = mnt / "outside"
    mnt.rwrite("outside", b"before\n")
    assert f.read_bytes() == b"before\n"
    assert os.listdir(mnt.mp) == ["outside"]
    for round_ in range(3):
        data = f"after {round_} {'y' * round_ * 10}\n".encode()
        t0 = time.monotonic()
        mnt.rwrite("outside", data)  # in the sandbox, not through sandexec or the mount
        mnt.rwrite(f"new-{round_}", b"n\n")
        seen = h.wait_until(lambda: f.read_bytes() == data and os.stat(f).st_size == len(data)
                            and f"new-{round_}" in os.listdir(mnt.mp), 1.0, interval=0.02)
        assert seen, (f"a change made in the sandbox was not visible after "
                      f"{time.monotonic() - t0:.2f} s (the cache lives 30 s)")


def test_kill_through_agent(suite, mnt):
    marker = f"sleep {400 + os.getpid() % 97}.{suite.unique('mk').split('-')[-1]}"
    p = subprocess.Popen([str(SANDEXEC), "--", "sh", "-c", marker], cwd=mnt.mp, env=suite.env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        assert h.wait_until(lambda: mnt.sb.pgrep(marker), 15), "remote sleep never started"
        p.kill()
        p.wait(5)
        assert h.wait_until(lambda: not mnt.sb.pgrep(marker), 2.0), \
            "the remote command outlived sandexec by 2 s"
        exec_ok(mnt, "true")  # the agent still serves
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for pid in mnt.sb.pgrep(marker):
            h.kill_pids([pid])


def test_agent_off_still_works(sandbox, mounter):
    m = mounter(opts=sandbox.opts(agent="off"))
    f = m / "f"
    f.write_text("old-old\n")
    assert f.read_text() == "old-old\n"
    p = m.exec("-c", "cat f; echo new > f")
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"old-old\n"
    assert f.read_text() == "new\n"  # the exec barrier
    assert m.r("f").read_bytes() == b"new\n"
