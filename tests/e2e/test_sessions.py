"""Sessions: where the agent is placed when the home directory is the workspace (it must never
show up in it), and `sandmount up/down/list` creating, starting, stopping and removing containers
described in the config file (OpenClaw's sandbox.docker keys) through the Engine API."""

import json
import os
import pwd
import subprocess
import time
from pathlib import Path

import pytest

import helpers as h
from conftest import Remote, do_mount


def agent_name(build_dir=h.BUILD):
    """The name a placed copy of our agent gets (agent_locate.c: FNV-1a 64 of the content)."""
    data = (build_dir / "agent" / "sandmount-agent").read_bytes()
    x = 14695981039346656037
    for b in data:
        x = ((x ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return f"sandmount-agent-{x:016x}"


def container_bed(suite):
    b = suite.backend("docker")
    return b


# ---- the agent never lands visibly in the workspace ----

def test_docker_home_is_workspace_agent_hidden(suite):
    """A hardened container whose user's HOME is the workspace: /tmp, /var/tmp and /dev/shm are
    not exec-able, so before the fix the agent went to $HOME = the workspace, visible in it."""
    sb = container_bed(suite)
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
        assert sorted(os.listdir(mp)) == before
    finally:
        m.cleanup()
