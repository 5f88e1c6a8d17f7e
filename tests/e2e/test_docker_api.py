"""test_docker_api: the Docker transport against a private dockerd (scripts/dockerbed), driven by
the docker_probe test helper: exec exit codes, stdout/stderr split, stdin streaming, TTY, signals,
kill on free, clear errors (unknown container, daemon down, wrong TLS CA), contexts, and files
through the image's sftp-server or the placed agent (in a hardened container: the workspace's
hidden dir). Containers are created with the docker CLI (test set-up only)."""

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from helpers import BUILD, REPO

PROBE = BUILD / "tests" / "docker_probe"
AGENT = BUILD / "agent" / "sandmount-agent"
DOCKERBED = REPO / "scripts" / "dockerbed"


class Bed:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="smdb-", dir="/tmp"))
        subprocess.run([str(DOCKERBED), "up", str(self.dir / "d")], check=True, timeout=120)
        self.vars = dict(line.split("=", 1)
                         for line in (self.dir / "d" / "env").read_text().splitlines())
        self.config = self.dir / "docker-config"
        self.config.mkdir()
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("DOCKER_", "SANDMOUNT_"))}
        self.env.update(DOCKER_CONFIG=str(self.config), DOCKER_HOST=self.vars["SM_DOCKER_HOST"])

    def docker(self, *args, check=True):
        return subprocess.run(["docker", *args], env=self.env, check=check, timeout=60,
                              capture_output=True, text=True)

    def run_container(self, name, *opts):
        self.docker("run", "-d", "--name", name, "--network", "none", *opts,
                    self.vars["SM_DOCKER_IMAGE"], "sleep", "1000000")

    def probe(self, *args, env=None, input=None, timeout=60):
        e = dict(self.env)
        e.update(env or {})
        return subprocess.run([str(PROBE), *args], env=e, input=input, capture_output=True,
                              timeout=timeout)

    def tls_env(self, cert_path=None):
        return {"DOCKER_HOST": self.vars["SM_DOCKER_TLS_HOST"], "DOCKER_TLS_VERIFY": "1",
                "DOCKER_CERT_PATH": cert_path or self.vars["SM_DOCKER_CERT_PATH"]}

    def down(self):
        subprocess.run([str(DOCKERBED), "down", str(self.dir / "d")], timeout=120)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def bed():
    if not PROBE.exists():
        pytest.skip(f"{PROBE} not built")
    if os.geteuid() != 0 or not shutil.which("dockerd"):
        pytest.skip("needs root and dockerd")
    b = Bed()
    try:
        b.run_container("c1")
        yield b
    finally:
        b.down()


def test_exit_code_and_stream_split(bed):
    p = bed.probe("exec", "c1", "/tmp", "echo out; echo err >&2; pwd; exit 3")
    assert p.returncode == 3, p.stderr
    assert p.stdout == b"out\n/tmp\n"
    assert b"err\n" in p.stderr and b"out" not in p.stderr


@pytest.mark.parametrize("tls", [False, True])
def test_stdin_10mb_sha256(bed, tls):
    data = os.urandom(10 * 1024 * 1024)
    p = bed.probe("exec", "c1", "/tmp", "sha256sum; echo done", input=data,
                  env=bed.tls_env() if tls else None)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().split()[0] == hashlib.sha256(data).hexdigest()
    assert p.stdout.endswith(b"done\n")


def test_tty(bed):
    p = bed.probe("-t", "exec", "c1", "/tmp", "tty; stty size; echo $TERM; exit 7",
                  input=b"")
    assert p.returncode == 7, p.stderr
    assert p.stdout.split(b"\r\n")[:3] == [b"/dev/pts/0", b"24 80", b"xterm"]


@pytest.mark.parametrize("tty", [False, True])
def test_signal_reaches_process_group(bed, tty):
    """^C 300 ms after the command printed: the shell and its sleep (one process group) end. Timed
    from the output, not from the start: a SIGINT that lands while the shell forks its child is
    lost in the shell itself (busybox ash catches it for -c, and the child keeps the handler
    until its exec), not in our path."""
    args = ["-t"] if tty else []
    p = bed.probe(*args, "-S", "2:300", "exec", "c1", "/tmp", "echo up; sleep 1000; echo no",
                  input=b"")
    assert p.returncode == 130, p.stderr
    assert b"no" not in p.stdout.replace(b"\r\n", b"\n").split(b"\n")


@pytest.mark.parametrize("tty", [False, True])
def test_signal_right_after_spawn(bed, tty):
    """A signal sent at once reaches the child before its setsid() (so the agent signals its pid
    alone), possibly before it reset the agent's own handlers and, with a TTY, before it has the
    terminal: it must still end the command, and its end must be seen (the PTY master hung up)."""
    args = ["-t"] if tty else []
    for _ in range(5):
        p = bed.probe(*args, "-s", "15:0", "exec", "c1", "/tmp", "sleep 1000; echo no",
                      input=b"", timeout=30)
        assert p.returncode == 143, p.stderr
        assert b"no" not in p.stdout


def test_free_kills_running_command(bed):
    p = bed.probe("-k", "500", "exec", "c1", "/tmp", "sleep 1001 & sleep 1002")
    assert p.returncode == 0, p.stderr
    ps = bed.docker("exec", "c1", "ps").stdout
    assert "sleep 1001" not in ps and "sleep 1002" not in ps


def test_unknown_container(bed):
    p = bed.probe("exec", "nope", "/tmp", "true")
    assert p.returncode == 125
    assert b"no such container: nope" in p.stderr


def test_daemon_down(bed):
    sock = bed.dir / "none.sock"
    p = bed.probe("exec", "c1", "/tmp", "true", env={"DOCKER_HOST": f"unix://{sock}"})
    assert p.returncode == 125
    assert f"cannot reach the Docker daemon at unix://{sock}".encode() in p.stderr


def test_tls_wrong_ca(bed):
    wrong = bed.dir / "wrong-certs"
    wrong.mkdir(exist_ok=True)
    shutil.copy(bed.vars["SM_DOCKER_WRONG_CA"], wrong / "ca.pem")
    for f in ("cert.pem", "key.pem"):
        shutil.copy(Path(bed.vars["SM_DOCKER_CERT_PATH"]) / f, wrong / f)
    p = bed.probe("exec", "c1", "/tmp", "true", env=bed.tls_env(str(wrong)))
    assert p.returncode == 125
    assert b"TLS with the Docker daemon" in p.stderr and b"CA: " in p.stderr
    assert str(wrong / "ca.pem").encode() in p.stderr


def test_context_with_tls_files(bed):
    name = "bed-tls"
    cid = hashlib.sha256(name.encode()).hexdigest()
    meta = bed.config / "contexts" / "meta" / cid
    tlsd = bed.config / "contexts" / "tls" / cid / "docker"
    meta.mkdir(parents=True)
    tlsd.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Name": name, "Metadata": {}, "Endpoints": {
        "docker": {"Host": bed.vars["SM_DOCKER_TLS_HOST"], "SkipTLSVerify": False}}}))
    for f in ("ca.pem", "cert.pem", "key.pem"):
        shutil.copy(Path(bed.vars["SM_DOCKER_CERT_PATH"]) / f, tlsd / f)
    (bed.config / "config.json").write_text(json.dumps({"currentContext": name}))
    try:
        env = {k: v for k, v in bed.env.items() if k != "DOCKER_HOST"}
        p = subprocess.run([str(PROBE), "exec", "c1", "/tmp", "echo via context"], env=env,
                           capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert p.stdout == b"via context\n"
        assert bed.vars["SM_DOCKER_TLS_HOST"].encode() in p.stderr
    finally:
        (bed.config / "config.json").unlink()


def test_files_through_image_sftp_server(bed):
    bed.docker("exec", "c1", "mkdir", "-p", "/workspace/img")
    p = bed.probe("-o", "agent=off", "sftp", "c1", "/workspace/img")
    assert p.returncode == 0, p.stderr
    assert b"ok" in p.stdout and b"the image's /usr/lib/openssh/sftp-server" in p.stderr


def test_agent_lands_in_workspace_of_hardened_container(bed):
    if not AGENT.exists():
        pytest.skip(f"{AGENT} not built")
    ws = bed.dir / "ws-hard"
    ws.mkdir()
    os.chown(ws, 1000, 1000)
    bed.run_container("hard", "--read-only", "--tmpfs", "/tmp:noexec", "--cap-drop", "ALL",
                      "--security-opt", "no-new-privileges", "--user", "1000:1000",
                      "-v", f"{ws}:/workspace")
    p = bed.probe("sftp", "hard", "/workspace", env={"SANDMOUNT_AGENT": str(AGENT)})
    assert p.returncode == 0, p.stderr
    assert b"owner 1000:1000\nok\n" == p.stdout
    placed = list((ws / ".sandmount-agent").iterdir())
    assert len(placed) == 1 and placed[0].stat().st_uid == 1000
    assert (ws / "probe.txt").read_text() == "hello through docker\n"
    # a second connection reuses the placed copy
    p = bed.probe("sftp", "hard", "/workspace", env={"SANDMOUNT_AGENT": str(AGENT)})
    assert p.returncode == 0 and b"agent: reusing" in p.stderr, p.stderr


def test_exec_latency(bed):
    p = bed.probe("bench", "c1", "10")
    assert p.returncode == 0, p.stderr
    ms = float(p.stdout)
    print(f"docker transport exec latency: {ms:.1f} ms")
    assert ms < 1000
