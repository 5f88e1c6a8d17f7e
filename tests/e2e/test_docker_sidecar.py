"""The agent's last place (docs/design.md, decision 3): a container where nothing writable can execute — a
read-only root, noexec tmpfs on /tmp, /run and /dev/shm, and a workspace that is itself noexec
(a named volume backed by a noexec tmpfs: dockerd 20.10 cannot make a bind mount noexec). The
agent then runs in a sidecar container that shares the target's volumes: files and the change
watch go through it, commands still run in the target, and the sidecar goes away with the mount.
Where even a sidecar cannot help (the workspace is a tmpfs of the container itself, which
VolumesFrom does not share, and the image has no sftp-server), the mount fails with one line
naming the options. Containers are made with the Engine API (helpers.EngineAPI)."""

import os
import time

import pytest

import helpers as h
from conftest import Remote, do_mount
from test_docker_mount import plain_image

pytestmark = pytest.mark.backends("docker")

NOEXEC_TMPFS = {"/tmp": "rw,noexec,nosuid", "/run": "rw,noexec,nosuid"}


def create(sandbox, name, image, user=None, mounts=(), tmpfs=None):
    host = {"ReadonlyRootfs": True, "NetworkMode": "none", "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"], "Mounts": list(mounts), "Tmpfs": tmpfs or {}}
    body = {"Image": image, "Cmd": ["sleep", "1000000"], "HostConfig": host}
    if user:
        body["User"] = user
    cid = sandbox.api.json("POST", f"/containers/create?name={name}", body)["Id"]
    sandbox.api.start(cid)
    return cid


def noexec_volume(name):
    """A named volume on a noexec tmpfs owned by 1000:1000, made with the container."""
    return {"Type": "volume", "Source": name, "Target": "/workspace", "VolumeOptions": {
        "NoCopy": True, "DriverConfig": {"Name": "local", "Options": {
            "type": "tmpfs", "device": "tmpfs", "o": "noexec,nosuid,uid=1000,gid=1000"}}}}


def sidecar_status(sandbox, cid):
    status, _ = sandbox.api.request("GET", f"/containers/sandmount-sidecar-{cid[:12]}/json")
    return status


@pytest.fixture
def made(sandbox):
    """Containers and volumes to remove after the test."""
    things = {"containers": [], "volumes": []}
    yield things
    for cid in things["containers"]:
        sandbox.api.remove(cid)
    for v in things["volumes"]:
        sandbox.api.request("DELETE", f"/volumes/{v}?force=1")


def test_sidecar_serves_files_commands_run_in_the_target(suite, sandbox, made):
    name = suite.unique(f"sidecar-{sandbox.name}")
    vol = f"{name}-ws"
    made["volumes"].append(vol)
    cid = create(sandbox, name, sandbox.bed["SM_DOCKER_IMAGE"], user="1000:1000",
                 mounts=[noexec_volume(vol)], tmpfs=NOEXEC_TMPFS)
    made["containers"].append(cid)
    code, out = sandbox.api.exec(cid, ["sh", "-c", "cp /bin/true /workspace/t && /workspace/t"])
    assert code != 0, "the workspace should be noexec"
    mp = suite.new_mountpoint(name)
    m = do_mount(suite, Remote("/workspace", "/nonexistent"), mp, opts=sandbox.opts(), sb=sandbox,
                 url=f"docker://{name}/workspace")
    try:
        assert sidecar_status(sandbox, cid) == 200, "a sidecar should serve the files"
        data = os.urandom(200_000)
        (m / "rt.bin").write_bytes(data)
        assert (m / "rt.bin").read_bytes() == data
        code, out = sandbox.api.exec(cid, ["sh", "-c", "stat -c %u:%g /workspace/rt.bin; "
                                           "sha256sum < /workspace/rt.bin"])
        assert code == 0, out
        owner, digest = out.split()[0], out.split()[1]
        assert owner == b"1000:1000"
        import hashlib
        assert digest.decode() == hashlib.sha256(data).hexdigest()
        # commands run in the target: its hostname, its tools, its user, the workspace as cwd
        p = m.exec("-c", "hostname; id -u; pwd; cat /etc/debian_version >/dev/null && echo tools")
        assert p.returncode == 0, p.stderr
        assert p.stdout.decode().split() == [cid[:12], "1000", "/workspace", "tools"], p.stdout
        # a file a command makes is seen through the mount (the sidecar's change watch)
        os.listdir(m.mp)
        assert m.exec("-c", "echo from-target > made.txt").returncode == 0
        assert (m / "made.txt").read_text() == "from-target\n"
        sandbox.api.exec(cid, ["sh", "-c", "echo later > /workspace/later.txt"])
        assert h.wait_until(lambda: "later.txt" in os.listdir(m.mp), 10), \
            "a change made in the container should show without a command"
        st = suite.sandmount("--status", m.mp, timeout=30).stdout.decode()
        assert "sidecar" in st, st
        assert ".sandmount-agent" not in os.listdir(m.mp)
        m.unmount()
        assert h.wait_until(lambda: sidecar_status(sandbox, cid) == 404, 15), \
            "the sidecar should be removed with the mount"
    finally:
        m.cleanup()


def test_nothing_works_clear_error(suite, sandbox, made):
    """The workspace is the container's own noexec tmpfs (no volume to share), the image has
    no sftp-server: one line naming the options."""
    name = suite.unique(f"nowhere-{sandbox.name}")
    tmpfs = dict(NOEXEC_TMPFS, **{"/workspace": "rw,noexec,nosuid"})
    cid = create(sandbox, name, plain_image(sandbox), tmpfs=tmpfs)
    made["containers"].append(cid)
    mp = suite.new_mountpoint(name)
    t0 = time.monotonic()
    p = suite.sandmount("-o", sandbox.opts(), f"docker://{name}/workspace", mp, timeout=90)
    assert p.returncode != 0
    last = p.stderr.decode().strip().splitlines()[-1]
    for needle in ("agent_dir", "sftp-server", "volume or bind mount", "exec-able"):
        assert needle in last, p.stderr
    assert time.monotonic() - t0 < 60
    assert not h.is_mounted(mp)
    assert h.wait_until(lambda: not suite.daemon_pids(mp), 5)
    assert sidecar_status(sandbox, cid) == 404
