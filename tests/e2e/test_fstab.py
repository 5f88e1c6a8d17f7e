"""The fstab form and the systemd unit: `mount -t fuse.sandmount NAME DIR -o OPTS` (mount(8) runs
mount.fuse3, which runs `sandmount NAME DIR -o OPTS` found on PATH) with mount(8)'s and systemd's
generic options ignored; readiness through $NOTIFY_SOCKET (sd_notify READY=1) only once the
mount answers; and the installed template unit."""

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

import helpers as h
from conftest import Remote
from helpers import SANDMOUNT


def helper_dir(suite):
    """A dir holding `sandmount` (a symlink to the binary under test)."""
    d = suite.tmp / "fstab-bin"
    if not d.exists():
        d.mkdir()
        (d / "sandmount").symlink_to(SANDMOUNT)
    return d


def ssh_config(suite, name, mountpoint=None):
    sb = suite.backend("ssh")
    rem = sb.new_remote(name)
    cfg = suite.tmp / f"fstab-{name}.json"
    entry = {"url": sb.url(rem), "options": sb.opt_dict()}
    if mountpoint:
        entry["mountpoint"] = str(mountpoint)
    cfg.write_text(json.dumps({"sandboxes": {name: entry}}))
    return rem, dict(suite.env, SANDMOUNT_CONFIG=str(cfg))


def in_mount_ns(suite, mp, script, env):
    """Run script (sh) in a private mount namespace where /usr/local/sbin holds our `sandmount`:
    mount(8) clears PATH before mount.fuse3's `sh -c 'sandmount ...'`, which then searches the
    default PATH only. The namespace keeps the machine's /usr/local/sbin as it is; the mount
    made in it is unmounted before it ends (the trap), so no daemon outlives it."""
    full = (f"trap 'rc=$?; set +e; sandmount -u {mp} >/dev/null 2>&1; "
            f"fusermount3 -u -z {mp} 2>/dev/null; exit $rc' EXIT\n"
            f"mount --bind {helper_dir(suite)} /usr/local/sbin\n"
            f"export PATH=/usr/local/sbin:$PATH\n" + script)
    p = h.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec", full],
              env=env, timeout=120)
    assert h.wait_until(lambda: not suite.daemon_pids(mp), 10), "daemon outlived the namespace"
    return p


def test_mount_t_fuse_sandmount_ignores_generic_options(suite):
    rem, env = ssh_config(suite, "fst")
    h.remote_write(rem.host / "hello.txt", b"from the sandbox\n", ids=h.sandbox_ids())
    mp = suite.new_mountpoint("fstab")
    opts = ("rw,_netdev,noauto,nofail,defaults,x-systemd.automount,"
            "x-systemd.requires=network.target,cache_timeout=1")
    p = in_mount_ns(suite, mp, f"""
mount -t fuse.sandmount fst {mp} -o {opts}
awk '$5 == "{mp}" {{ for (i = 7; i < NF; i++) if ($i == "-") print "fstype", $(i + 1) }}' /proc/self/mountinfo
cat {mp}/hello.txt
echo local > {mp}/back.txt
sandmount --status {mp} | grep '^sandbox:'
sandmount -u {mp}
echo unmounted
""", env)
    out = p.stdout.decode()
    assert p.returncode == 0, p.stderr.decode(errors="replace") + out + suite.daemon_logs(mp)
    assert out.splitlines() == ["fstype fuse.sandmount", "from the sandbox", "sandbox: fst",
                                "unmounted"], out
    assert (rem.host / "back.txt").read_text() == "local\n"


def test_mount_t_fuse_sandmount_session_option(suite):
    """session=ID in the options fills {session} of the configured mountpoint (the fstab line
    names the mount point too)."""
    base = suite.tmp / "fstab-sess"
    rem, env = ssh_config(suite, "fss", mountpoint=base / "{session}")
    mp = base / "s7"
    mp.mkdir(parents=True)
    p = in_mount_ns(suite, mp, f"""
mount -t fuse.sandmount fss {mp} -o session=s7,noauto
sandmount list
sandmount -u {mp}
""", env)
    out = p.stdout.decode()
    assert p.returncode == 0, p.stderr.decode(errors="replace") + out
    assert f"mount {mp} session s7: up" in out, out


def test_unknown_option_still_fails(suite):
    rem, env = ssh_config(suite, "fsu")
    mp = suite.new_mountpoint("fstab-bad")
    p = in_mount_ns(suite, mp, f"""
if mount -t fuse.sandmount fsu {mp} -o noauto,bogus_opt=1; then echo mounted; fi
""", env)
    assert b"mounted" not in p.stdout, p.stdout
    assert b"bogus_opt" in p.stderr, p.stderr


def unmount(suite, mp, env):
    if h.is_mounted(mp):
        suite.sandmount("-u", mp, env=env)
    if h.is_mounted(mp):
        subprocess.run(["fusermount3", "-u", "-z", str(mp)], timeout=30)
    assert h.wait_until(lambda: not suite.daemon_pids(mp), 10)


def test_ready_notified_only_when_mount_answers(suite):
    """sandmount -f under a NOTIFY_SOCKET (what systemd's Type=notify gives): READY=1 arrives,
    and when it does the mount is already usable."""
    sb = suite.backend("ssh")
    rem = sb.new_remote("notify")
    h.remote_write(rem.host / "x", b"1", ids=h.sandbox_ids())
    mp = suite.new_mountpoint("notify")
    sock_path = suite.tmp / f"notify-{os.getpid()}.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(sock_path))
    s.settimeout(60)
    env = dict(suite.env, NOTIFY_SOCKET=str(sock_path))
    proc = subprocess.Popen([str(SANDMOUNT), "-f", "-o", sb.opts(), sb.url(rem), str(mp)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        msg = s.recv(4096).decode()
        mounted_then = h.is_mounted(mp)
        listing = os.listdir(mp)
        assert "READY=1" in msg, msg
        assert mounted_then and listing == ["x"], (mounted_then, listing)
        assert f"STATUS=mounted at {mp}" in msg
    finally:
        s.close()
        unmount(suite, mp, suite.env)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read()


def test_unit_installed_by_meson_install(suite, tmp_path):
    build = h.BUILD
    p = h.run(["meson", "install", "-C", str(build), "--quiet", "--no-rebuild",
               "--destdir", str(tmp_path)], timeout=120)
    assert p.returncode == 0, p.stderr
    units = list(tmp_path.rglob("sandmount@.service"))
    assert len(units) == 1, units
    text = units[0].read_text()
    assert "Type=notify" in text
    exec_start = [l for l in text.splitlines() if l.startswith("ExecStart=")][0]
    binary = exec_start.split("=", 1)[1].split()[0]
    assert (tmp_path / binary.lstrip("/")).exists(), (binary, exec_start)
    assert "up -f %I" in exec_start and "ExecStop=" + binary + " down %I" in text
    assert list(tmp_path.rglob("man1/sandmount.1"))
