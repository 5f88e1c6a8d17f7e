"""The Debian package: scripts/package-deb builds it with dpkg-buildpackage; it is installed on
this machine with dpkg -i, smoke-tested (versions, man pages, the unit, /etc/shells, a real
mount by the installed binaries with the installed agent), and removed again (dpkg --purge) —
also when a check fails. Skipped (with the reason) when the packaging tools are missing or a
sandmount package is installed already (it is not ours to replace)."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

import helpers as h
from conftest import Remote

BUILD_DEADLINE = 1200  # seconds: the package build compiles everything at -O2 (minutes here)


def dpkg(*args, timeout=300):
    """dpkg, waiting (bounded) while another dpkg/apt holds the lock."""
    deadline = time.monotonic() + 120
    while True:
        p = h.run(["dpkg", *args], timeout=timeout)
        if p.returncode == 0 or b"lock" not in p.stderr or time.monotonic() > deadline:
            return p
        time.sleep(2)


def shells():
    return Path("/etc/shells").read_text().split()


@pytest.fixture(scope="module")
def deb(suite):
    missing = [t for t in ("dpkg-buildpackage", "dh", "dpkg-deb") if not shutil.which(t)]
    if missing:
        pytest.skip(f"packaging tools missing: {', '.join(missing)} (scripts/setup installs "
                    f"dpkg-dev and debhelper)")
    if os.geteuid() != 0:
        pytest.skip("installing a package needs root")
    if h.run(["dpkg-query", "-W", "-f=${Status}", "sandmount"]).stdout.startswith(b"install"):
        pytest.skip("a sandmount package is installed on this machine already")
    signal.alarm(BUILD_DEADLINE)  # the suite's per-test deadline is shorter than a build
    out = suite.tmp / "deb"
    p = h.run([str(h.REPO / "scripts" / "package-deb"), str(out)], timeout=BUILD_DEADLINE)
    assert p.returncode == 0, p.stderr.decode(errors="replace")[-4000:]
    path = Path(p.stdout.decode().strip().splitlines()[-1])
    assert path.is_file() and path.suffix == ".deb", p.stdout
    return path


def test_package_contents_and_depends(deb):
    info = h.run(["dpkg-deb", "-f", str(deb), "Package", "Version", "Depends"]).stdout.decode()
    version = h.run([str(h.SANDMOUNT), "--version"]).stdout.decode().split()[1]
    assert "Package: sandmount" in info and f"Version: {version}-1" in info, info
    depends = info.split("Depends:", 1)[1]
    for lib in ("libfuse3", "libssh", "libcurl", "libjansson", "fuse3"):
        assert lib in depends, depends  # from shlibs (and the control file for fuse3)
    files = h.run(["dpkg-deb", "-c", str(deb)]).stdout.decode()
    for f in ("./usr/bin/sandmount", "./usr/bin/sandexec", "./usr/bin/sandmount-agent",
              "./usr/share/man/man1/sandmount.1.gz", "./usr/share/man/man1/sandexec.1.gz",
              "./usr/lib/systemd/system/sandmount@.service"):
        assert f in files, files


def test_install_smoke_remove(suite, deb):
    had_shell = "/usr/bin/sandexec" in shells()
    p = dpkg("-i", str(deb))
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    try:
        v = h.run(["/usr/bin/sandmount", "--version"])
        assert v.returncode == 0 and v.stdout.startswith(b"sandmount "), v
        e = h.run(["/usr/bin/sandexec", "--help"])
        assert e.returncode == 0 and b"usage" in (e.stdout + e.stderr).lower(), e
        for page in ("sandmount", "sandexec"):
            assert Path(f"/usr/share/man/man1/{page}.1.gz").is_file()
        assert "/usr/bin/sandexec" in shells(), "postinst should add sandexec to /etc/shells"
        unit = Path("/usr/lib/systemd/system/sandmount@.service").read_text()
        assert "ExecStart=/usr/bin/sandmount up -f %I" in unit, unit
        # the installed sandmount finds the installed agent and runs commands through it
        sb = suite.backend("ssh")
        rem = sb.new_remote("pkg")
        mp = suite.new_mountpoint("pkg")
        env = dict(suite.env)
        m = h.run(["/usr/bin/sandmount", "-o", sb.opts(), sb.url(rem), str(mp)], env=env,
                  timeout=90)
        assert m.returncode == 0, m.stderr
        try:
            st = h.run(["/usr/bin/sandmount", "--status", str(mp)], env=env)
            assert b"commands: agent" in st.stdout, st.stdout
            r = h.run(["/usr/bin/sandexec", "-c", "echo in-sandbox"], env=env, cwd=mp)
            assert r.returncode == 0 and r.stdout == b"in-sandbox\n", r
        finally:
            h.run(["/usr/bin/sandmount", "-u", str(mp)], env=env, timeout=60)
            if h.is_mounted(mp):
                subprocess.run(["fusermount3", "-u", "-z", str(mp)], timeout=30)
    finally:
        r = dpkg("--purge", "sandmount")  # remove, and leave no record behind
    assert r.returncode == 0, r.stderr
    assert not Path("/usr/bin/sandmount").exists()
    assert "/usr/bin/sandexec" not in shells(), "postrm should remove sandexec from /etc/shells"
    if had_shell:
        subprocess.run(["add-shell", "/usr/bin/sandexec"], check=True)
