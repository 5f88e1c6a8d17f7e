"""Bad input to sandmount: each case must fail with a non-zero exit and one clear line on stderr,
within a bounded time, and leave no mount and no daemon behind."""

import json
import os
import socket
import threading
import time

import pytest

import helpers as h


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def attempt(suite, url, mp, opts, limit, env=None):
    """Mount that must fail: returns the error line after checking the common rules."""
    t0 = time.monotonic()
    p = suite.sandmount("-o", opts, url, mp, timeout=limit + 30, env=env)
    took = time.monotonic() - t0
    line = h.one_line_error(p)
    assert took < limit, f"took {took:.1f}s (limit {limit}s): {line}"
    assert not h.is_mounted(mp), "a failed mount left a mount behind"
    assert h.wait_until(lambda: not suite.daemon_pids(mp), 5), "a failed mount left a daemon behind"
    return line


def attempt_named(suite, args, mp, limit=30, env=None):
    t0 = time.monotonic()
    p = suite.sandmount(*args, timeout=limit + 30, env=env)
    took = time.monotonic() - t0
    line = h.one_line_error(p)
    assert took < limit, f"took {took:.1f}s: {line}"
    if mp is not None:
        assert not h.is_mounted(mp)
        assert h.wait_until(lambda: not suite.daemon_pids(mp), 5)
    return line


def test_connection_refused(suite):
    mp = suite.new_mountpoint("refused")
    port = free_port()
    line = attempt(suite, f"ssh://sandbox@127.0.0.1:{port}/tmp", mp, suite.ssh_opts(), 15)
    assert "refused" in line.lower() or str(port) in line, line


def test_banner_timeout_respects_connect_timeout(suite):
    """A peer that accepts TCP but never says anything (like a black-holed host behind a NAT)."""
    mp = suite.new_mountpoint("silent")
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)  # never accept(), never send a banner
        port = srv.getsockname()[1]
        t0 = time.monotonic()
        line = attempt(suite, f"ssh://sandbox@127.0.0.1:{port}/tmp", mp,
                       suite.ssh_opts(connect_timeout=2), 12)
        took = time.monotonic() - t0
    assert took >= 1.5, f"gave up after {took:.1f}s, before connect_timeout=2"
    assert "time" in line.lower(), line


def test_not_an_ssh_server(suite):
    """Wrong port: something answers, but it is not SSH."""
    mp = suite.new_mountpoint("http")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            with c:
                c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                time.sleep(0.2)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        attempt(suite, f"ssh://sandbox@127.0.0.1:{srv.getsockname()[1]}/tmp", mp,
                suite.ssh_opts(connect_timeout=5), 20)
    finally:
        stop.set()
        t.join(5)
        srv.close()


@pytest.mark.backends("ssh")
def test_unknown_host_key_refused_then_accepted_when_asked(suite, mounter):
    kh = suite.tmp / "kh-empty"
    kh.write_text("")
    remote = suite.new_remote_dir("hostkey")
    mp = suite.new_mountpoint("hostkey")
    line = attempt(suite, suite.url(remote), mp, suite.ssh_opts(known_hosts=kh), 20)
    assert "accept_new_host_key" in line, line
    assert kh.read_text() == "", "the key must not be added without accept_new_host_key"
    m = mounter(opts=suite.ssh_opts(known_hosts=kh, accept_new_host_key=True), remote=remote)
    (m / "ok").write_bytes(b"1")
    assert m.r("ok").read_bytes() == b"1"
    key = (suite.testbed_dir / "host_key.pub").read_text().split()[1]
    assert key in kh.read_text(), "accept_new_host_key must add the host key to known_hosts"
    m.unmount()
    # now known: mounts without the option
    mounter(opts=suite.ssh_opts(known_hosts=kh), remote=remote)


def test_changed_host_key_is_refused(suite):
    other = suite.tmp / "otherkey"
    h.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other], check=True)
    kh = suite.tmp / "kh-changed"
    kh.write_text(f"[127.0.0.1]:{suite.tb['SM_SSH_PORT']} "
                  + " ".join((other.parent / "otherkey.pub").read_text().split()[:2]) + "\n")
    before = kh.read_text()
    remote = suite.new_remote_dir("changed")
    mp = suite.new_mountpoint("changed")
    line = attempt(suite, suite.url(remote), mp, suite.ssh_opts(known_hosts=kh), 20)
    assert "host key" in line.lower() or "changed" in line.lower(), line
    # accept_new_host_key never accepts a CHANGED key
    attempt(suite, suite.url(remote), mp, suite.ssh_opts(known_hosts=kh, accept_new_host_key=True), 20)
    assert kh.read_text() == before


def test_missing_identity_file(suite):
    mp = suite.new_mountpoint("noid")
    remote = suite.new_remote_dir("noid")
    line = attempt(suite, suite.url(remote), mp,
                   suite.ssh_opts(identity=suite.tmp / "no-such-key"), 20)
    assert "no-such-key" in line or "identity" in line.lower(), line


def test_unauthorized_identity(suite):
    key = suite.tmp / "stranger"
    h.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    mp = suite.new_mountpoint("badid")
    remote = suite.new_remote_dir("badid")
    line = attempt(suite, suite.url(remote), mp, suite.ssh_opts(identity=key), 20)
    assert "auth" in line.lower() or "denied" in line.lower(), line


def test_identity_that_is_not_a_key(suite):
    junk = suite.tmp / "junk-key"
    junk.write_text("this is not a private key\n")
    os.chmod(junk, 0o600)
    mp = suite.new_mountpoint("junkid")
    remote = suite.new_remote_dir("junkid")
    attempt(suite, suite.url(remote), mp, suite.ssh_opts(identity=junk), 20)


def test_nonexistent_remote_dir(suite, sandbox):
    mp = suite.new_mountpoint("nodir")
    base = sandbox.new_remote("nodir").path
    line = attempt(suite, sandbox.url(base / "does/not/exist"), mp, sandbox.opts(), 20)
    assert "does/not/exist" in line or "no such" in line.lower(), line


def test_remote_path_is_a_file(suite, sandbox):
    remote = sandbox.new_remote("isfile")
    h.remote_write(remote.host / "plain", b"x", ids=sandbox.ids)
    mp = suite.new_mountpoint("isfile")
    attempt(suite, sandbox.url(remote.path / "plain"), mp, sandbox.opts(), 20)


def test_mountpoint_missing(suite, sandbox):
    remote = sandbox.new_remote("nomp")
    mp = suite.tmp / "mnt" / "no-such-mountpoint"
    line = attempt(suite, sandbox.url(remote), mp, sandbox.opts(), 20)
    assert not mp.exists(), "sandmount must not create a missing mountpoint silently"
    assert "no-such-mountpoint" in line or "mount" in line.lower(), line


def test_mountpoint_busy(suite, mnt):
    (mnt / "keep").write_bytes(b"first")
    p = suite.sandmount("-o", mnt.opts, mnt.url, mnt.mp, timeout=60)
    h.one_line_error(p)
    # the first mount is intact and still served by one daemon
    assert h.is_mounted(mnt.mp)
    assert (mnt / "keep").read_bytes() == b"first"
    assert len(suite.daemon_pids(mnt.mp)) == 1
    assert [m for m, _ in h.mounts()].count(str(mnt.mp)) == 1


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/tmp", "ssh://", "ssh://127.0.0.1",
                                 "ssh://127.0.0.1:notaport/tmp", "ssh://127.0.0.1:0/tmp"])
def test_bad_url(suite, url):
    mp = suite.new_mountpoint("badurl")
    attempt(suite, url, mp, suite.ssh_opts(), 15)


def test_bad_option_value(suite):
    remote = suite.new_remote_dir("badopt")
    mp = suite.new_mountpoint("badopt")
    attempt(suite, suite.url(remote), mp, suite.ssh_opts(connect_timeout="soon"), 15)
    attempt(suite, suite.url(remote), mp, suite.ssh_opts(port="seventy"), 15)


def test_bad_config_json(suite):
    cfg = suite.tmp / "bad.json"
    cfg.write_text('{"sandboxes": {"x": {"url": "ssh://127.0.0.1/tmp",}')
    mp = suite.new_mountpoint("badcfg")
    line = attempt_named(suite, ["x", mp], mp, env=dict(suite.env, SANDMOUNT_CONFIG=str(cfg)))
    assert "bad.json" in line or "json" in line.lower() or "config" in line.lower(), line


def test_config_wrong_types(suite):
    cfg = suite.tmp / "types.json"
    cfg.write_text(json.dumps({"sandboxes": {"x": {"url": 42}}}))
    mp = suite.new_mountpoint("typecfg")
    attempt_named(suite, ["x", mp], mp, env=dict(suite.env, SANDMOUNT_CONFIG=str(cfg)))


def test_unknown_config_name(suite):
    mp = suite.new_mountpoint("unknownname")
    line = attempt_named(suite, ["no-such-sandbox", mp], mp)
    assert "no-such-sandbox" in line, line


def test_unmount_of_something_not_mounted(suite):
    d = suite.new_mountpoint("notmounted")
    line = attempt_named(suite, ["-u", d], None)
    assert str(d) in line or "not" in line.lower(), line
    attempt_named(suite, ["-u", "/"], None)


def test_usage_errors(suite):
    for args in ([], ["only-one-arg-that-is-no-name"], ["-o"], ["--no-such-flag"]):
        p = suite.sandmount(*args, timeout=15)
        assert p.returncode != 0, args
        assert p.stderr.strip(), args


def test_status_of_something_not_mounted(suite):
    d = suite.new_mountpoint("nostatus")
    p = suite.sandmount("--status", d, timeout=15)
    assert p.returncode != 0
    assert p.stderr.strip()


def test_sandexec_bad_args(suite, mnt):
    p = mnt.exec("--mount", str(suite.tmp), "--", "true")
    assert p.returncode == 125 and p.stderr.strip()
    p = mnt.exec("-e", "NOEQUALS", "--", "true")
    assert p.returncode != 0 and p.stderr.strip()
    p = mnt.exec("--", "/no/such/command")
    assert p.returncode == 127, (p.returncode, p.stderr)
