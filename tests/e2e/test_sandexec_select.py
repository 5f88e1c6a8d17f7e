"""sandexec picks the sandbox: by the cwd's mount, by --mount, by --sandbox (the name or URL
sandmount was given), and refuses clearly when there is none."""

import os

import helpers as h


def test_sandbox_option_runs_in_that_mount(mnt):
    p = mnt.suite.sandexec("--sandbox", mnt.url, "--", "pwd", cwd="/")
    assert p.returncode == 0, p.stderr
    # cwd "/" lies outside the mount: the command runs in the workspace root
    assert p.stdout.decode().strip() == str(mnt.remote)


def test_sandbox_option_unknown_name(suite, mnt):
    p = suite.sandexec("--sandbox", "no-such-sandbox", "--", "true", cwd="/")
    assert p.returncode == 125
    assert b"no-such-sandbox is not mounted" in p.stderr
    assert p.stderr.count(b"\n") == 1, p.stderr


def test_mount_and_sandbox_are_exclusive(suite, mnt):
    p = suite.sandexec("--mount", str(mnt.mp), "--sandbox", mnt.url, "--", "true", cwd="/")
    assert p.returncode == 2
    assert b"give one" in p.stderr


def test_cwd_outside_every_mount_is_refused(suite, mnt):
    p = suite.sandexec("-c", "echo ran", cwd="/")
    assert p.returncode == 125
    assert b"is not inside a sandmount mount" in p.stderr
    assert p.stdout == b""


def test_mount_option_maps_subdir(mnt):
    os.makedirs(mnt / "a/b")
    p = mnt.suite.sandexec("--mount", str(mnt.mp), "--", "pwd", cwd=str(mnt / "a/b"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().strip() == mnt.rpath("a/b")
    assert h.is_mounted(mnt.mp)
