"""conftest: the end-to-end test bed. One private temp dir per session holds the throwaway sshd
(scripts/testbed), a fake $HOME and $XDG_RUNTIME_DIR, the mount points and the sanitizer logs;
every mount and daemon the suite starts lives under it and is swept away at the end, even when
tests fail. Tests get a `mnt` (a fresh remote workspace subdir mounted at a fresh mount point).

Backends: a test that uses `sandbox` (directly or through `mnt`/`mounter`) runs once per backend —
"ssh" (the testbed's sshd), "docker" (a container of a private dockerd, scripts/dockerbed) and
"podman" (the same against Podman's Docker-compatible API). Containers run the bed's default
image: the Debian one (git, sftp-server, procps; user `agent`), the busybox one only when the bed
was brought up with SM_BED_IMAGE=busybox. `@pytest.mark.backends("ssh", ...)`
narrows that list; SM_E2E_BACKENDS=ssh,docker narrows it for a whole run. A backend whose daemon
is not installed is skipped, not failed. A container's workspace is a bind mount of a directory
of this machine, so tests check the sandbox side by reading that directory."""

import atexit
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

import helpers as h
from helpers import DOCKERBED, SANDEXEC, SANDMOUNT, TESTBED, run

ALL_BACKENDS = ("ssh", "docker", "podman")
CONTAINER_UID = 1000  # the user the suite's containers run as (--user 1000:1000)


class Suite:
    """Session-wide state: temp dir, testbed, environment for the binaries under test."""

    def __init__(self):
        base = os.environ.get("SM_E2E_TMPDIR", "/tmp")
        self.tmp = Path(tempfile.mkdtemp(prefix="sandmount-e2e-", dir=base))
        os.chmod(self.tmp, 0o711)  # sshd reads authorized_keys in here as the sandbox user
        self.asan_dir = self.tmp / "asan"
        self.home = self.tmp / "home"
        self.runtime = self.tmp / "run"
        self.testbed_dir = self.tmp / "testbed"
        for d in (self.asan_dir, self.home, self.runtime):
            d.mkdir(mode=0o700)
        self.config = self.tmp / "config.json"
        self.config.write_text(json.dumps({"local_fallback": False, "sandboxes": {}}))
        self.env = dict(os.environ)
        for k in list(self.env):
            if k.startswith(("SSH_", "SANDMOUNT_")) or k in ("DOCKER_HOST", "DOCKER_CONTEXT"):
                del self.env[k]
        self.env.update({
            "HOME": str(self.home),
            "XDG_RUNTIME_DIR": str(self.runtime),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "SANDMOUNT_CONFIG": str(self.config),
            "ASAN_OPTIONS": f"log_path={self.asan_dir}/asan:detect_leaks=0",
            "UBSAN_OPTIONS": f"print_stacktrace=1:log_path={self.asan_dir}/ubsan",
            "LANG": "C.UTF-8",
        })
        self.tb = None
        self.swept = False
        self._counter = 0
        self.backends = {}  # name -> backend object or the reason it is unavailable (str)
        self.beds_started = []  # dockerbed dirs this session started (and stops)

    def start_testbed(self, dirname="testbed"):
        d = self.tmp / dirname
        run([TESTBED, "up", d], check=True, timeout=60)
        env = {}
        for line in (d / "env").read_text().splitlines():
            k, _, v = line.partition("=")
            env[k] = v
        return env

    def start_dockerbed(self, engine):
        """The engine's daemon: the one scripts/test brought up (SM_DOCKERBED_DIR,
        SM_PODMANBED_DIR), else one of our own. Returns its env (a dict)."""
        given = os.environ.get("SM_PODMANBED_DIR" if engine == "podman" else "SM_DOCKERBED_DIR")
        if given and (Path(given) / "env").exists():
            d = Path(given)
        else:
            d = self.tmp / "beds" / engine
            d.parent.mkdir(exist_ok=True)
            # the first run on a machine builds the Debian image's rootfs (about a minute)
            p = run([DOCKERBED, "up", d, engine], timeout=1800)
            if p.returncode != 0:
                raise RuntimeError(f"dockerbed up {engine}: {p.stderr.decode(errors='replace')}")
            self.beds_started.append(d)
        env = {}
        for line in (d / "env").read_text().splitlines():
            k, _, v = line.partition("=")
            env[k] = v
        env["dir"] = str(d)
        return env

    def backend(self, name):
        """The backend object for name (made once); pytest.skip when it cannot run here."""
        if name not in self.backends:
            try:
                self.backends[name] = SSHBackend(self) if name == "ssh" else \
                    ContainerBackend(self, name)
            except Unavailable as ex:
                self.backends[name] = ("skip", str(ex))
            except Exception as ex:  # installed but broken: every test of it fails
                self.backends[name] = ("fail", f"{type(ex).__name__}: {ex}")
        b = self.backends[name]
        if isinstance(b, tuple):
            if b[0] == "skip":
                pytest.skip(f"{name} backend unavailable: {b[1]}")
            pytest.fail(f"{name} backend could not be set up: {b[1]}", pytrace=False)
        return b

    def unique(self, stem):
        self._counter += 1
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)[:60]
        return f"{stem}-{self._counter}"

    def ssh_opts(self, tb=None, **extra):
        tb = tb or self.tb
        opts = {"identity": tb["SM_SSH_KEY"], "known_hosts": tb["SM_KNOWN_HOSTS"],
                "ssh_config": "none", "connect_timeout": "10"}
        opts.update(extra)
        return ",".join(k if v is True else f"{k}={v}" for k, v in opts.items() if v is not None)

    def url(self, remote_dir, tb=None):
        tb = tb or self.tb
        return f"ssh://{tb['SM_SSH_USER']}@{tb['SM_SSH_HOST']}:{tb['SM_SSH_PORT']}{remote_dir}"

    def new_mountpoint(self, name):
        mp = self.tmp / "mnt" / self.unique(name)
        mp.mkdir(parents=True)
        return mp

    def new_remote_dir(self, name):
        r = Path(self.tb["SM_REMOTE_DIR"]) / self.unique(name)
        h.remote_mkdir(r)
        return r

    def sandmount(self, *args, timeout=60, env=None):
        return run([SANDMOUNT, *args], timeout=timeout, env=env or self.env)

    def sandexec(self, *args, cwd, timeout=60, input=None, env=None):
        return run([SANDEXEC, *args], timeout=timeout, env=env or self.env, cwd=cwd, input=input)

    def daemon_pids(self, mp):
        """The mount daemon of mp. A child that is still a copy of it (the stat helper between
        its spawn and its exec) is not another daemon."""
        pids = h.pids_of(SANDMOUNT, os.path.abspath(str(mp)), exact=True)
        return [p for p in pids if h.parent_pid(p) not in pids]

    def daemon_logs(self, mp=None):
        """The tail of the daemon log of mount point mp (of every mount when None)."""
        out = []
        for f in sorted(glob.glob(f"{self.runtime}/**/*.log", recursive=True)):
            try:
                text = Path(f).read_text(errors="replace")
            except OSError:
                continue
            if mp is None or str(mp) in text:
                out.append(f"--- {f}\n" + text[-4000:])
        return "\n".join(out)

    def sanitizer_reports(self):
        return sorted(glob.glob(f"{self.asan_dir}/*"))

    def sweep(self):
        """Unmount every mount under our temp dir, stop the daemons we started, stop sshd."""
        if self.swept:
            return
        self.swept = True
        for mp, _ in reversed(h.mounts()):
            if mp.startswith(str(self.tmp) + "/"):
                subprocess.run(["fusermount3", "-u", "-z", mp], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=30)
        pids = h.pids_of(SANDMOUNT, str(self.tmp))
        if pids and not h.wait_until(lambda: not h.pids_of(SANDMOUNT, str(self.tmp)), 5):
            h.kill_pids(h.pids_of(SANDMOUNT, str(self.tmp)))
        for env in self.tmp.glob("*/env"):
            subprocess.run([str(TESTBED), "down", str(env.parent)], timeout=60)
        for d in self.beds_started:
            subprocess.run([str(DOCKERBED), "down", str(d)], timeout=120)


class Unavailable(Exception):
    """A backend cannot run on this machine (no dockerd/podman, not root)."""


class Remote:
    """A workspace dir on the sandbox: `path` as the sandbox sees it, `host` where this machine
    reads and writes it directly (the same for SSH: the sandbox is a local user)."""

    def __init__(self, path, host):
        self.path, self.host = Path(path), Path(host)


class SSHBackend:
    """The testbed's sshd; the sandbox user is the local user `sandbox`."""
    name = "ssh"
    user = h.SANDBOX_USER
    is_container = False
    has_git = True

    def __init__(self, suite):
        self.suite = suite
        self.ids = h.sandbox_ids()
        self.status_needle = "127.0.0.1"

    def new_remote(self, name):
        r = Path(self.suite.tb["SM_REMOTE_DIR"]) / self.suite.unique(name)
        h.remote_mkdir(r, self.ids)
        return Remote(r, r)

    def url(self, rem):
        return self.suite.url(rem.path if isinstance(rem, Remote) else rem)

    def opt_dict(self, **extra):
        tb = self.suite.tb
        opts = {"identity": tb["SM_SSH_KEY"], "known_hosts": tb["SM_KNOWN_HOSTS"],
                "ssh_config": "none", "connect_timeout": "10"}
        opts.update(extra)
        return opts

    def opts(self, **extra):
        return ",".join(k if v is True else f"{k}={v}"
                        for k, v in self.opt_dict(**extra).items() if v is not None)

    def pgrep(self, pattern):
        return h.sandbox_pgrep(pattern, self.ids[0])


class ContainerBackend:
    """A long-lived container of a private dockerd (or Podman service) running as 1000:1000 with
    its /workspace bind-mounted from a directory of this machine. `user` (the name of uid 1000)
    and `has_git` are read from the container: they depend on the bed's image."""
    is_container = True

    def __init__(self, suite, engine):
        if os.geteuid() != 0:
            raise Unavailable("needs root")
        daemon = "podman" if engine == "podman" else "dockerd"
        if not shutil.which(daemon):
            raise Unavailable(f"{daemon} is not installed")
        self.suite, self.name = suite, engine
        self.bed = suite.start_dockerbed(engine)
        self.api = h.EngineAPI(self.bed["SM_DOCKER_SOCK"])
        self.host = self.bed["SM_DOCKER_HOST"]
        self.ids = (CONTAINER_UID, CONTAINER_UID)
        self.status_needle = self.host
        self.ws = suite.tmp / f"{engine}-ws"
        h.remote_mkdir(self.ws, self.ids)
        self.container = f"sm-e2e-{os.getpid()}"
        self.cid = self.api.create(self.container, self.bed["SM_DOCKER_IMAGE"],
                                   user="1000:1000", binds=[f"{self.ws}:/workspace"])
        code, out = self.api.exec(self.cid, ["id", "-un"])
        if code != 0:
            raise RuntimeError(f"id -un in {self.bed['SM_DOCKER_IMAGE']}: {out!r}")
        self.user = out.decode().strip()
        self.has_git = self.api.exec(self.cid, ["sh", "-c", "command -v git"])[0] == 0

    def new_remote(self, name):
        u = self.suite.unique(name)
        h.remote_mkdir(self.ws / u, self.ids)
        return Remote(Path("/workspace") / u, self.ws / u)

    def url(self, rem, container=None):
        path = rem.path if isinstance(rem, Remote) else rem
        return f"docker://{container or self.container}{path}"

    def opt_dict(self, **extra):
        opts = {"docker_host": self.host, "connect_timeout": "10"}
        opts.update(extra)
        return opts

    def opts(self, **extra):
        return ",".join(k if v is True else f"{k}={v}"
                        for k, v in self.opt_dict(**extra).items() if v is not None)

    def pgrep(self, pattern):
        return h.sandbox_pgrep(pattern, CONTAINER_UID)


class Mount:
    """A live sandmount mount of remote dir `rem` (a Remote) of backend `sb` at local `mp`.
    `remote` is the dir as the sandbox sees it, `host` where this machine reads it directly."""

    def __init__(self, suite, mp, rem, url, opts, sb=None):
        if not isinstance(rem, Remote):
            rem = Remote(rem, rem)
        self.suite, self.mp, self.rem, self.url, self.opts = suite, Path(mp), rem, url, opts
        self.sb = sb
        self.remote, self.host = rem.path, rem.host
        self.unmounted = False

    def __truediv__(self, rel):
        return self.mp / rel

    def r(self, rel):
        """The same path on the sandbox side (read directly, not through the mount)."""
        return self.host / rel

    def rpath(self, rel):
        """The same path as the sandbox sees it (for absolute symlinks, cwd checks)."""
        return str(self.remote / rel)

    def rwrite(self, rel, data, mode=0o644):
        h.remote_write(self.r(rel), data, mode, self.sb.ids)

    def rmkdir(self, rel):
        h.remote_mkdir(self.r(rel), self.sb.ids)

    def rsymlink(self, target, rel):
        h.remote_symlink(target, self.r(rel), self.sb.ids)

    def exec(self, *args, cwd=None, timeout=60, input=None, env=None):
        return self.suite.sandexec(*args, cwd=cwd or self.mp, timeout=timeout, input=input,
                                   env=env)

    def unmount(self):
        """sandmount -u; asserts it worked and the daemon exited."""
        p = self.suite.sandmount("-u", self.mp, timeout=60)
        assert p.returncode == 0, f"sandmount -u failed: {p.stderr!r}\n{self.suite.daemon_logs(self.mp)}"
        assert not h.is_mounted(self.mp), "still mounted after sandmount -u"
        assert h.wait_until(lambda: not self.suite.daemon_pids(self.mp), 10), \
            "daemon still running 10 s after sandmount -u"
        self.unmounted = True

    def cleanup(self):
        """Teardown: unmount whatever state the test left; report (after cleaning) if the
        mount had died or did not unmount cleanly."""
        problems = []
        if h.is_mounted(self.mp):
            try:
                os.stat(self.mp)
            except OSError as ex:
                problems.append(f"mount was dead at teardown ({ex}); daemon crashed?")
            p = self.suite.sandmount("-u", self.mp, timeout=60) if not problems else None
            if p is not None and p.returncode != 0:
                problems.append(f"sandmount -u failed at teardown: {p.stderr!r}")
            if h.is_mounted(self.mp):
                subprocess.run(["fusermount3", "-u", "-z", str(self.mp)], timeout=30,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not h.wait_until(lambda: not self.suite.daemon_pids(self.mp), 10):
            problems.append("daemon did not exit after unmount; killed")
            h.kill_pids(self.suite.daemon_pids(self.mp))
        if problems:
            raise AssertionError("; ".join(problems) + "\n" + self.suite.daemon_logs(self.mp))


def do_mount(suite, remote, mp, opts=None, extra=(), sb=None, url=None, env=None):
    """Mount Remote `remote` of backend sb (default: SSH) at mp; asserts it worked."""
    sb = sb or suite.backend("ssh")
    if not isinstance(remote, Remote):
        remote = Remote(remote, remote)
    opts = opts if opts is not None else sb.opts()
    url = url or sb.url(remote)
    args = ["-o", opts] if opts else []
    p = suite.sandmount(*args, *extra, url, mp, timeout=90, env=env)
    assert p.returncode == 0, (f"sandmount {url} {mp} failed ({p.returncode}): "
                               f"{p.stderr.decode(errors='replace')}\n{suite.daemon_logs(mp)}")
    assert h.is_mounted(mp), "sandmount returned 0 but the mount is not live"
    assert h.mount_fstype(mp) == "fuse.sandmount", h.mount_fstype(mp)
    return Mount(suite, mp, remote, url, opts, sb)


_suite = None


def _atexit_sweep():
    if _suite is not None:
        _suite.sweep()


@pytest.fixture(scope="session")
def suite():
    global _suite
    missing = [str(b) for b in (SANDMOUNT, SANDEXEC) if not b.exists()]
    if missing:
        pytest.fail(f"binaries not built: {', '.join(missing)} (run scripts/build)", pytrace=False)
    s = Suite()
    _suite = s
    atexit.register(_atexit_sweep)
    try:
        s.tb = s.start_testbed()
        yield s
    finally:
        s.sweep()


def pytest_configure(config):
    config.addinivalue_line("markers", "backends(*names): run only against these backends")


def pytest_generate_tests(metafunc):
    if "sandbox" not in metafunc.fixturenames:
        return
    names = list(ALL_BACKENDS)
    marker = metafunc.definition.get_closest_marker("backends")
    if marker:
        names = [n for n in names if n in marker.args]
    only = os.environ.get("SM_E2E_BACKENDS")
    if only:
        names = [n for n in names if n in only.split(",")]
    metafunc.parametrize("sandbox", names, indirect=True, scope="session")


@pytest.fixture(scope="session")
def sandbox(suite, request):
    """The backend this test runs against (see the module docstring)."""
    return suite.backend(request.param)


@pytest.fixture
def mnt(suite, sandbox, request):
    remote = sandbox.new_remote(request.node.name)
    mp = suite.new_mountpoint(request.node.name)
    m = do_mount(suite, remote, mp, sb=sandbox)
    try:
        yield m
    finally:
        m.cleanup()


@pytest.fixture
def mounter(suite, sandbox, request):
    """Factory for tests that mount with their own options; everything is cleaned up after."""
    made = []

    def make(opts=None, remote=None, extra=(), url=None, env=None):
        remote = remote or sandbox.new_remote(request.node.name)
        mp = suite.new_mountpoint(request.node.name)
        m = do_mount(suite, remote, mp, opts, extra, sb=sandbox, url=url, env=env)
        made.append(m)
        return m

    try:
        yield make
    finally:
        errors = []
        for m in made:
            try:
                m.cleanup()
            except AssertionError as ex:
                errors.append(str(ex))
        if errors:
            raise AssertionError("\n".join(errors))


# Lines a test wants in the run's summary (the exerciser's seed counts): shown after the results.
SUMMARY_LINES = []


def pytest_terminal_summary(terminalreporter):
    if SUMMARY_LINES:
        terminalreporter.section("exerciser")
        for line in SUMMARY_LINES:
            terminalreporter.write_line(line)


def pytest_sessionfinish(session, exitstatus):
    if _suite is None:
        return
    _suite.sweep()
    reports = _suite.sanitizer_reports()
    if reports:
        print(f"\nsanitizer reports in {_suite.asan_dir}:")
        for r in reports:
            print(f"--- {r}\n{Path(r).read_text(errors='replace')[:6000]}")
        session.exitstatus = 1
    if session.exitstatus == 0 and not os.environ.get("SM_E2E_KEEP"):
        shutil.rmtree(_suite.tmp, ignore_errors=True)
    else:
        print(f"\ne2e temp dir kept: {_suite.tmp}")


def pytest_collection_modifyitems(session, config, items):
    # the sanitizer check runs last, after every other test has unmounted
    items.sort(key=lambda it: it.nodeid.split("::")[0].endswith("test_zz_sanitizers.py"))



TEST_DEADLINE = int(os.environ.get("SM_E2E_TEST_DEADLINE", "300"))


def _deadline_hit(signum, frame):
    pytest.fail(f"test still running after {TEST_DEADLINE}s", pytrace=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    # a last resort: every subprocess already has a deadline, but a test blocked in a file
    # operation on a hung mount would otherwise stop the whole suite
    old = signal.signal(signal.SIGALRM, _deadline_hit)
    signal.alarm(TEST_DEADLINE)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
