"""The Docker transport through ssh://[USER@]HOST[:PORT][/SOCKET]: the Engine API and the exec
streams carried over one SSH session (direct-streamlocal channels to the daemon's socket on the
SSH host), named by -o docker_host=, by DOCKER_HOST and by a docker context — the gateway box
that reaches a remote Docker host over SSH with no docker CLI. The SSH host is the loopback sshd
of scripts/testbed (user `sandbox`); the daemon is a dockerbed of this module's own, whose socket
alone is given to the `sandbox` group (nothing outside the test's temp dir changes). Errors:
a wrong host key, a remote socket that is not there, an SSH server that is down — each one line,
quickly."""

import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import time

import pytest

import helpers as h
from conftest import DOCKERBED, Remote, do_mount
from test_errors import attempt

CONTAINER_UID = 1000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SSHDockerBackend:
    """A container of a private dockerd whose socket the testbed's `sandbox` user may use,
    reached as ssh://sandbox@127.0.0.1:PORT/<that socket>."""
    ids = (CONTAINER_UID, CONTAINER_UID)

    def __init__(self, suite):
        if os.geteuid() != 0 or not shutil.which("dockerd"):
            pytest.skip("needs root and dockerd")
        suite.backend("ssh")  # the loopback sshd
        self.suite, self.tb = suite, suite.tb
        d = suite.tmp / "beds" / "sshdocker"
        d.parent.mkdir(exist_ok=True)
        p = h.run([DOCKERBED, "up", d, "docker"], timeout=180)
        assert p.returncode == 0, p.stderr.decode(errors="replace")
        suite.beds_started.append(d)
        self.bed = {k: v for k, _, v in (ln.partition("=") for ln in
                                         (d / "env").read_text().splitlines())}
        self.sock = self.bed["SM_DOCKER_SOCK"]
        # this bed's socket only: the SSH user reaches the daemon through it
        shutil.chown(self.sock, group=h.SANDBOX_USER)
        self.api = h.EngineAPI(self.sock)
        self.ws = suite.tmp / "sshdocker-ws"
        h.remote_mkdir(self.ws, self.ids)
        self.container = f"sm-e2e-ssh-{os.getpid()}"
        self.cid = self.api.create(self.container, self.bed["SM_DOCKER_IMAGE"],
                                   user="1000:1000", binds=[f"{self.ws}:/workspace"])
        self.host = (f"ssh://{self.tb['SM_SSH_USER']}@{self.tb['SM_SSH_HOST']}:"
                     f"{self.tb['SM_SSH_PORT']}{self.sock}")

    def new_remote(self, name):
        u = self.suite.unique(name)
        h.remote_mkdir(self.ws / u, self.ids)
        return Remote(f"/workspace/{u}", self.ws / u)

    def url(self, rem):
        return f"docker://{self.container}{rem.path}"

    def ssh_opts(self, **extra):
        return self.suite.ssh_opts(self.tb, **extra)

    def opts(self, **extra):
        return self.ssh_opts(docker_host=self.host, **extra)


@pytest.fixture(scope="module")
def sd(suite):
    """(dockerbed down removes the bed's containers at the end of the session)"""
    return SSHDockerBackend(suite)


@pytest.fixture
def mounts(suite):
    made = []
    yield made
    for m in made:
        m.cleanup()


def env_without_docker(suite, **kv):
    env = {k: v for k, v in suite.env.items() if not k.startswith("DOCKER_")}
    env.update(kv)
    return env


def mount(suite, sd, mounts, opts, env=None, name="ssh"):
    rem = sd.new_remote(name)
    mp = suite.new_mountpoint(name)
    m = do_mount(suite, rem, mp, opts=opts, sb=sd, url=sd.url(rem), env=env)
    mounts.append(m)
    return m


def roundtrip(m):
    data = os.urandom(300_000)
    (m / "rt.bin").write_bytes(data)
    assert m.r("rt.bin").read_bytes() == data
    p = m.exec("--", "sha256sum", "rt.bin", timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()
    h.remote_write(m.r("from-remote.txt"), b"remote side\n", ids=m.sb.ids)
    assert h.wait_until(lambda: (m / "from-remote.txt").exists(), 10)
    assert (m / "from-remote.txt").read_bytes() == b"remote side\n"
    p = m.exec("-c", "pwd; id -u", timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().split() == [str(m.remote), str(CONTAINER_UID)]


def test_docker_host_option(suite, sd, mounts):
    m = mount(suite, sd, mounts, sd.opts(), env=env_without_docker(suite))
    roundtrip(m)
    assert h.sandbox_pgrep("sandmount-agent.* serve", CONTAINER_UID), "the agent does not serve"
    took = []
    for _ in range(7):
        t0 = time.monotonic()
        p = m.exec("--", "true", timeout=30)
        took.append(time.monotonic() - t0)
        assert p.returncode == 0, p.stderr
    # through the agent: no docker exec, no new SSH session per command
    assert statistics.median(took) < 0.25, took
    p = m.exec("-c", "exit 7", timeout=30)
    assert p.returncode == 7
    st = suite.sandmount("--status", m.mp, timeout=30)
    assert sd.host.encode() in st.stdout, st.stdout
    m.unmount()


def test_docker_host_env(suite, sd, mounts):
    m = mount(suite, sd, mounts, sd.ssh_opts(), env=env_without_docker(suite, DOCKER_HOST=sd.host))
    roundtrip(m)
    m.unmount()


def test_context_with_ssh_endpoint(suite, sd, mounts):
    cfg = suite.tmp / "docker-config-ssh"
    meta = cfg / "contexts" / "meta" / hashlib.sha256(b"remote-ssh").hexdigest()
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "meta.json").write_text(json.dumps(
        {"Name": "remote-ssh", "Metadata": {},
         "Endpoints": {"docker": {"Host": sd.host, "SkipTLSVerify": False}}}))
    (cfg / "config.json").write_text(json.dumps({"currentContext": "remote-ssh"}))
    m = mount(suite, sd, mounts, sd.ssh_opts(), env=env_without_docker(suite, DOCKER_CONFIG=str(cfg)))
    roundtrip(m)
    m.unmount()
    # and named with -o docker_context=
    m = mount(suite, sd, mounts, sd.ssh_opts(docker_context="remote-ssh"),
              env=env_without_docker(suite, DOCKER_CONFIG=str(cfg)))
    p = m.exec("-c", "echo ok", timeout=30)
    assert p.stdout == b"ok\n", p.stderr
    m.unmount()


def test_wrong_host_key(suite, sd):
    kh = suite.tmp / "sshdocker-wrong-known-hosts"
    key = suite.tmp / "sshdocker-other-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True,
                   timeout=30)
    pub = " ".join((key.with_suffix(".pub")).read_text().split()[:2])
    kh.write_text(f"[{sd.tb['SM_SSH_HOST']}]:{sd.tb['SM_SSH_PORT']} {pub}\n")
    rem = sd.new_remote("hostkey")
    line = attempt(suite, sd.url(rem), suite.new_mountpoint("hostkey"),
                   sd.opts(known_hosts=str(kh)), 20, env=env_without_docker(suite))
    assert f"cannot reach the Docker daemon at {sd.host}" in line, line
    assert "CHANGED" in line, line


def test_remote_socket_missing(suite, sd):
    host = sd.host.replace(sd.sock, "/nonexistent/docker.sock")
    rem = sd.new_remote("nosock")
    line = attempt(suite, sd.url(rem), suite.new_mountpoint("nosock"),
                   sd.ssh_opts(docker_host=host), 20, env=env_without_docker(suite))
    assert f"cannot reach the Docker daemon at {host}" in line, line
    assert "the remote socket /nonexistent/docker.sock" in line, line


def test_sshd_down(suite, sd):
    port = free_port()
    host = f"ssh://sandbox@127.0.0.1:{port}"
    rem = sd.new_remote("down")
    line = attempt(suite, sd.url(rem), suite.new_mountpoint("down"),
                   sd.ssh_opts(docker_host=host), 20, env=env_without_docker(suite))
    assert f"cannot reach the Docker daemon at {host}" in line, line
    assert "refused" in line.lower(), line
