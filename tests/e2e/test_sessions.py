"""Sessions: where the agent is placed when the home directory is the workspace (it must never
show up in it), and `sandmount up/down/list` creating, starting, stopping and removing containers
described in the config file (OpenClaw's sandbox.docker keys) through the Engine API."""

import json
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import helpers as h
from conftest import DOCKERBED, Remote, do_mount


def agent_name(build_dir=h.BUILD):
    """The name a placed copy of our agent gets (agent_locate.c: FNV-1a 64 of the content)."""
    data = (build_dir / "agent" / "sandmount-agent").read_bytes()
    x = 14695981039346656037
    for b in data:
        x = ((x ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return f"sandmount-agent-{x:016x}"


# ---- the agent never lands visibly in the workspace ----

def test_docker_home_is_workspace_agent_hidden(suite):
    """A hardened container whose user's HOME is the workspace: /tmp, /var/tmp and /dev/shm are
    not exec-able, so before the fix the agent went to $HOME = the workspace, visible in it."""
    sb = suite.backend("docker")
    ws = suite.tmp / suite.unique("home-ws")
    h.remote_mkdir(ws, sb.ids)
    name = suite.unique("sm-homews")
    body = {"Image": sb.bed["SM_DOCKER_IMAGE"], "Cmd": ["sleep", "1000000"], "User": "1000:1000",
            "Env": ["HOME=/workspace"],  # as with `useradd -d /workspace`
            "HostConfig": {"Binds": [f"{ws}:/workspace"], "ReadonlyRootfs": True,
                           "NetworkMode": "none", "CapDrop": ["ALL"],
                           "Tmpfs": {"/tmp": "rw,noexec,nosuid", "/var/tmp": "rw,noexec,nosuid"}}}
    cid = sb.api.json("POST", f"/containers/create?name={name}", body)["Id"]
    m = None
    try:
        sb.api.start(cid)
        mp = suite.new_mountpoint("homews")
        m = do_mount(suite, Remote("/workspace", ws), mp, sb=sb, url=f"docker://{name}/workspace")
        p = m.exec("-c", "echo ok; echo $HOME")
        assert p.returncode == 0 and p.stdout.split() == [b"ok", b"/workspace"], p
        assert os.listdir(mp) == [], os.listdir(mp)
        leftovers = [e for e in os.listdir(ws) if e != ".sandmount-agent"]
        assert leftovers == [], f"agent files visible in the workspace: {leftovers}"
        assert (ws / ".sandmount-agent" / agent_name()).is_file(), os.listdir(ws)
    finally:
        if m:
            m.cleanup()
        sb.api.remove(cid)


def test_ssh_home_is_workspace_agent_elsewhere(suite):
    """The SSH user's home directory as the workspace: the agent goes to /tmp/.sandmount-agent-UID,
    not to ~/.cache/sandmount inside the mount."""
    sb = suite.backend("ssh")
    home = Path(pwd.getpwnam(h.SANDBOX_USER).pw_dir)
    uid = pwd.getpwnam(h.SANDBOX_USER).pw_uid
    name = agent_name()
    in_home = home / ".cache" / "sandmount" / name
    if in_home.exists():
        in_home.unlink()  # a copy of this very build, from another run
    before = sorted(os.listdir(home))
    mp = suite.new_mountpoint("sshhome")
    m = do_mount(suite, Remote(home, home), mp, sb=sb, url=sb.url(Remote(home, home)))
    try:
        p = m.exec("-c", "echo ok")
        assert p.returncode == 0 and p.stdout == b"ok\n", p
        st = suite.sandmount("--status", mp)
        assert not in_home.exists(), "the agent was placed inside the workspace"
        assert (Path(f"/tmp/.sandmount-agent-{uid}") / name).is_file(), st.stdout
        assert b"agent" in st.stdout, st.stdout
        # nothing new in the home, but for other test beds' workspaces (ws-*: shared user)
        new = set(os.listdir(mp)) - set(before)
        assert all(n.startswith("ws-") for n in new), new
    finally:
        m.cleanup()


# ---- sandmount up / down / list ----

class Sessions:
    """A config file of our own with container sandboxes on the bed's dockerd; every container
    and mount made through it is removed at the end."""

    def __init__(self, suite, tag, sb=None):
        self.suite, self.sb = suite, sb or suite.backend("docker")
        self.prefix = f"sm-sess-{os.getpid()}-{tag}-"
        self.config = suite.tmp / f"sessions-{tag}.json"
        self.env = dict(suite.env, SANDMOUNT_CONFIG=str(self.config))
        self.root = suite.tmp / "sess" / tag
        self.root.mkdir(parents=True)
        self.sandboxes = {}
        self.settings = {}  # top-level config keys besides "sandboxes"

    def add(self, name, docker=None, **extra):
        ws = self.root / f"ws-{name}"
        h.remote_mkdir(ws, self.sb.ids)
        d = {"image": self.sb.bed["SM_DOCKER_IMAGE"], "containerPrefix": self.prefix,
             "user": "1000:1000", "network": "none"}
        d.update(docker or {})
        entry = {"docker": d, "host": self.sb.host, "workspace": {"hostPath": str(ws)},
                 "mountpoint": str(self.root / "mnt" / name / "{session}")}
        entry.update(extra)
        self.set(name, entry)
        return ws

    def set(self, name, entry):
        """Sandbox `name` is `entry` as it is (e.g. an SSH sandbox: no container)."""
        self.sandboxes[name] = entry
        self.config.write_text(json.dumps(dict(self.settings, sandboxes=self.sandboxes)))

    def sandmount(self, *args, timeout=120):
        return self.suite.sandmount(*args, timeout=timeout, env=self.env)

    def up(self, *args):
        p = self.sandmount("up", *args)
        assert p.returncode == 0, (p.stderr.decode(errors="replace") + "\n" +
                                   self.suite.daemon_logs())
        return p

    def mp(self, name, session):
        return self.root / "mnt" / name / session

    def inspect(self, name, session):
        st, data = self.sb.api.request("GET", f"/containers/{self.prefix}{name}-{session}/json")
        return json.loads(data) if st == 200 else None

    def cleanup(self):
        for mp, _ in reversed(h.mounts()):
            if mp.startswith(str(self.root) + "/"):
                self.suite.sandmount("-u", mp, timeout=60)
                if h.is_mounted(mp):
                    subprocess.run(["fusermount3", "-u", "-z", mp], timeout=30)
        for c in self.sb.api.json("GET", "/containers/json?all=1"):
            if any(n.lstrip("/").startswith(self.prefix) for n in c["Names"]):
                self.sb.api.remove(c["Id"])


@pytest.fixture
def sessions(suite, request):
    made = []

    def make(tag, sb=None):
        s = Sessions(suite, suite.unique(tag), sb)
        made.append(s)
        return s

    try:
        yield make
    finally:
        for s in made:
            s.cleanup()


def test_up_idempotent_setup_once_down_keeps_data(suite, sessions):
    s = sessions("basic")
    ws = s.add("mox", {"setupCommand": "echo ran >> /workspace/setup-runs"})
    p = s.up("mox", "--session", "s1")
    assert b"created container" in p.stderr
    mp = s.mp("mox", "s1")
    assert h.is_mounted(mp) and h.mount_fstype(mp) == "fuse.sandmount"
    c1 = s.inspect("mox", "s1")
    assert c1["State"]["Running"] and c1["Config"]["Labels"]["sandmount.session"] == "s1"
    (mp / "data.txt").write_text("kept\n")
    r = suite.sandexec("-c", "cat data.txt; id -u", cwd=mp, env=s.env)
    assert r.returncode == 0 and r.stdout == b"kept\n1000\n", r

    # up again: nothing changes, setupCommand does not run again
    p = s.up("mox:s1")
    assert b"already" in p.stderr and b"created" not in p.stderr
    assert (ws / "setup-runs").read_text() == "ran\n"
    assert s.inspect("mox", "s1")["Id"] == c1["Id"]

    # down: flushed and unmounted, the container stopped, the workspace data kept
    p = s.sandmount("down", "mox", "--session", "s1")
    assert p.returncode == 0, p.stderr
    assert not h.is_mounted(mp)
    assert h.wait_until(lambda: not suite.daemon_pids(mp), 10)
    assert s.inspect("mox", "s1")["State"]["Running"] is False
    assert (ws / "data.txt").read_text() == "kept\n"

    # up after down: the same container started again, setup still ran once
    s.up("mox", "--session", "s1")
    assert s.inspect("mox", "s1")["Id"] == c1["Id"]
    assert (mp / "data.txt").read_text() == "kept\n"
    assert (ws / "setup-runs").read_text() == "ran\n"
    assert s.sandmount("down", "mox:s1").returncode == 0


def test_hardened_busybox_and_remove_policy(suite, sessions):
    """OpenClaw's hardening on the minimal busybox image, the user's HOME as the workspace;
    onDown=remove drops the container and keeps the workspace."""
    s = sessions("hard")
    ws = s.add("hb", {"image": s.sb.bed["SM_DOCKER_BUSYBOX_IMAGE"], "readOnlyRoot": True,
                      "tmpfs": ["/tmp:rw,noexec,nosuid,size=16m"], "capDrop": ["ALL"],
                      "env": {"HOME": "/workspace"}, "pidsLimit": 64, "memory": "256m",
                      "cpus": 0.5, "ulimits": {"nofile": {"soft": 1024, "hard": 2048}}},
               onDown="remove")
    s.up("hb", "--session", "a")
    mp = s.mp("hb", "a")
    c = s.inspect("hb", "a")
    hc = c["HostConfig"]
    assert hc["ReadonlyRootfs"] and hc["CapDrop"] == ["ALL"] and hc["NetworkMode"] == "none"
    assert hc["PidsLimit"] == 64 and hc["Memory"] == 256 << 20 and hc["NanoCpus"] == 500000000
    assert "noexec" in hc["Tmpfs"]["/tmp"]
    (mp / "f").write_text("x")
    r = suite.sandexec("-c", "id -u; cat f; echo $HOME", cwd=mp, env=s.env)
    assert r.returncode == 0 and r.stdout == b"1000\nx/workspace\n", r
    assert sorted(os.listdir(mp)) == ["f"]
    assert set(os.listdir(ws)) <= {"f", ".sandmount-agent"}
    assert s.sandmount("down", "hb", "--session", "a").returncode == 0
    assert s.inspect("hb", "a") is None, "onDown=remove should remove the container"
    assert (ws / "f").read_text() == "x"


def test_list_shows_sessions_and_containers(suite, sessions):
    s = sessions("list")
    s.add("lx")
    s.up("lx", "--session", "one")
    p = s.sandmount("list")
    out = p.stdout.decode()
    assert p.returncode == 0, p.stderr
    mp = s.mp("lx", "one")
    assert f"lx -> {s.root}/mnt/lx/{{session}} (container {s.prefix}lx)" in out, out
    assert f"mount {mp} session one: up" in out, out
    assert f"container {s.prefix}lx-one session one: running" in out, out
    assert s.sandmount("down", "lx:one").returncode == 0
    out = s.sandmount("list").stdout.decode()
    assert "mount " not in out and f"container {s.prefix}lx-one session one: exited" in out, out


def test_config_errors_name_the_key(suite, sessions):
    s = sessions("bad")
    s.add("b1", {"pidsLimit": "many"})
    p = s.sandmount("up", "b1", "--session", "x")
    assert p.returncode != 0 and b"docker.pidsLimit must be a whole number" in p.stderr, p.stderr
    s.add("b1", {"memory": "lots"})
    p = s.sandmount("up", "b1", "--session", "x")
    assert b"docker.memory must be a size" in p.stderr, p.stderr
    s.add("b1", {"bogus": 1})
    p = s.sandmount("up", "b1", "--session", "x")
    assert b"unknown key docker.bogus" in p.stderr, p.stderr
    s.add("b1")
    p = s.sandmount("up", "b1")
    assert p.returncode != 0 and b"give --session ID" in p.stderr, p.stderr
    p = s.sandmount("up", "b1", "--session", "../x")
    assert p.returncode != 0 and b"session id" in p.stderr, p.stderr


class SSHDockerHost:
    """A dockerd of its own whose socket the testbed's SSH user may use (as in
    test_docker_ssh.py), reached as ssh://sandbox@127.0.0.1:PORT/<socket>."""

    def __init__(self, suite):
        tb = suite.tb
        d = suite.tmp / "beds" / "sshdocker"
        d.parent.mkdir(exist_ok=True)
        p = h.run([DOCKERBED, "up", d, "docker"], timeout=180)
        assert p.returncode == 0, p.stderr.decode(errors="replace")
        if d not in suite.beds_started:
            suite.beds_started.append(d)
        self.bed = dict(ln.partition("=")[::2] for ln in (d / "env").read_text().splitlines())
        shutil.chown(self.bed["SM_DOCKER_SOCK"], group=h.SANDBOX_USER)
        self.api = h.EngineAPI(self.bed["SM_DOCKER_SOCK"])
        self.ids = (1000, 1000)
        self.host = (f"ssh://{tb['SM_SSH_USER']}@{tb['SM_SSH_HOST']}:{tb['SM_SSH_PORT']}"
                     f"{self.bed['SM_DOCKER_SOCK']}")
        self.options = {"identity": tb["SM_SSH_KEY"], "known_hosts": tb["SM_KNOWN_HOSTS"],
                        "ssh_config": "none"}


def test_up_on_remote_docker_host_over_ssh(suite, sessions):
    """"host": "ssh://..." — the container is created, started and stopped on a Docker host
    reached over SSH."""
    suite.backend("ssh")  # the loopback sshd
    remote = SSHDockerHost(suite)
    s = sessions("sshhost", remote)
    ws = s.add("rh", options=remote.options)
    p = s.up("rh", "--session", "r1")
    assert b"created container" in p.stderr
    mp = s.mp("rh", "r1")
    (mp / "over-ssh").write_text("y")
    assert (ws / "over-ssh").read_text() == "y"
    assert s.inspect("rh", "r1")["State"]["Running"]
    st = s.sandmount("--status", mp).stdout
    assert remote.host.encode() in st, st
    assert s.sandmount("down", "rh:r1").returncode == 0
    assert s.inspect("rh", "r1")["State"]["Running"] is False


def test_up_down_ssh_sandbox_session(suite):
    """A sandbox without a container description: up only mounts (at its {session} path), down
    only unmounts."""
    sb = suite.backend("ssh")
    rem = sb.new_remote("sshup")
    base = suite.tmp / "sess-ssh"
    cfg = suite.tmp / "sessions-ssh.json"
    cfg.write_text(json.dumps({"sandboxes": {"sx": {
        "url": sb.url(rem), "options": sb.opt_dict(), "mountpoint": f"{base}/{{session}}"}}}))
    env = dict(suite.env, SANDMOUNT_CONFIG=str(cfg))
    mp = base / "k9"
    try:
        p = suite.sandmount("up", "sx:k9", env=env)
        assert p.returncode == 0, p.stderr
        assert h.is_mounted(mp)  # the mount point was created
        (mp / "hi").write_text("there")
        assert (rem.host / "hi").read_text() == "there"
        assert suite.sandmount("up", "sx", "--session", "k9", env=env).returncode == 0
        p = suite.sandmount("down", "sx:k9", env=env)
        assert p.returncode == 0, p.stderr
        assert not h.is_mounted(mp)
        assert h.wait_until(lambda: not suite.daemon_pids(mp), 10)
    finally:
        if h.is_mounted(mp):
            subprocess.run(["fusermount3", "-u", "-z", str(mp)], timeout=30)
