"""sandmount and sandexec against containers, through every way of naming the Docker daemon (a
unix socket given with -o docker_host=, $DOCKER_HOST, tcp+TLS with DOCKER_TLS_VERIFY and
DOCKER_CERT_PATH, a docker context), in the containers OpenClaw runs (hardened: read-only root,
noexec tmpfs, no capabilities, uid 1000, no network, the workspace a bind mount) of both test
images (the bed's Debian one and its busybox one), a workspace that is a plain directory of the
container, a plain busybox image, every place the agent can land, and what happens when the
container or the daemon goes away. Runs against dockerd and against Podman's Docker-compatible
API (the "podman" backend); what Podman cannot do is skipped with the reason. Containers are
made with the Engine API (helpers.EngineAPI)."""

import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

import helpers as h
from conftest import Remote, do_mount
from test_errors import attempt

pytestmark = pytest.mark.backends("docker", "podman")

HARDENED = dict(read_only=True, tmpfs={"/tmp": "rw,noexec,nosuid", "/run": "rw,noexec,nosuid"},
                cap_drop=["ALL"], security_opt=["no-new-privileges"], user="1000:1000")
PLAIN_IMAGE = "sandmount-test/busybox-plain"


@pytest.fixture
def containers(sandbox, suite):
    """Factory: make(name_stem, binds=..., **create options) -> (name, workspace host dir or
    None); every container is removed after the test."""
    made = []

    def make(stem, ws=True, image=None, **kw):
        name = suite.unique(f"{stem}-{sandbox.name}")
        host = None
        binds = kw.pop("binds", [])
        if ws:
            host = suite.tmp / f"{name}-ws"
            h.remote_mkdir(host, sandbox.ids)
            binds.append(f"{host}:/workspace")
        cid = sandbox.api.create(name, image or sandbox.bed["SM_DOCKER_IMAGE"], binds=binds, **kw)
        made.append(cid)
        return name, host

    try:
        yield make
    finally:
        for cid in made:
            sandbox.api.remove(cid)


def mount_container(suite, sandbox, name, path, host=None, opts=None, env=None, **extra):
    mp = suite.new_mountpoint(name)
    rem = Remote(path, host or "/nonexistent")
    opts = opts if opts is not None else sandbox.opts(**extra)
    return do_mount(suite, rem, mp, opts=opts, sb=sandbox, url=f"docker://{name}{path}", env=env)


def sandbox_env(suite, **kv):
    env = {k: v for k, v in suite.env.items() if not k.startswith("DOCKER_")}
    env.update(kv)
    return env


def roundtrip(m):
    """A file written through the mount is in the container; a command runs there, in it."""
    data = os.urandom(100_000)
    (m / "rt.bin").write_bytes(data)
    p = m.exec("--", "sha256sum", "rt.bin")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()
    p = m.exec("-c", "pwd")
    assert p.stdout.decode().strip() == str(m.remote), p.stderr


# ---- the ways of naming the daemon ----

def context_config(suite, sandbox, host, tls_dir=None):
    """A DOCKER_CONFIG dir whose current context points at host (with TLS files from tls_dir)."""
    cfg = suite.tmp / suite.unique("docker-config")
    name = "sm-e2e"
    cid = hashlib.sha256(name.encode()).hexdigest()
    meta = cfg / "contexts" / "meta" / cid
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Name": name, "Metadata": {}, "Endpoints": {
        "docker": {"Host": host, "SkipTLSVerify": False}}}))
    if tls_dir:
        t = cfg / "contexts" / "tls" / cid / "docker"
        t.mkdir(parents=True)
        for f in ("ca.pem", "cert.pem", "key.pem"):
            shutil.copy(Path(tls_dir) / f, t / f)
    (cfg / "config.json").write_text(json.dumps({"currentContext": name}))
    return cfg


@pytest.mark.parametrize("how", ["docker_host-option", "DOCKER_HOST", "tls-env", "context",
                                 "context-tls", "docker_context-option"])
def test_endpoint_kinds(suite, sandbox, how):
    bed = sandbox.bed
    tls = how in ("tls-env", "context-tls")
    if tls and not bed["SM_DOCKER_TLS_HOST"]:
        pytest.skip(f"{sandbox.name}: its API service has no TLS listener")
    opts, env = sandbox.opts(docker_host=None), sandbox_env(suite)
    if how == "docker_host-option":
        opts = sandbox.opts()
    elif how == "DOCKER_HOST":
        env["DOCKER_HOST"] = sandbox.host
    elif how == "tls-env":
        env.update(DOCKER_HOST=bed["SM_DOCKER_TLS_HOST"], DOCKER_TLS_VERIFY="1",
                   DOCKER_CERT_PATH=bed["SM_DOCKER_CERT_PATH"])
    elif how in ("context", "context-tls"):
        host = bed["SM_DOCKER_TLS_HOST"] if tls else sandbox.host
        env["DOCKER_CONFIG"] = str(context_config(suite, sandbox, host,
                                                  bed["SM_DOCKER_CERT_PATH"] if tls else None))
    else:  # -o docker_context= picks a context that is not the current one
        cfg = context_config(suite, sandbox, sandbox.host)
        (cfg / "config.json").write_text("{}")
        env["DOCKER_CONFIG"] = str(cfg)
        opts = sandbox.opts(docker_host=None, docker_context="sm-e2e")
    rem = sandbox.new_remote(how)
    m = do_mount(suite, rem, suite.new_mountpoint(how), opts=opts, sb=sandbox, env=env)
    try:
        roundtrip(m)
        st = suite.sandmount("--status", m.mp, timeout=30).stdout.decode()
        want = bed["SM_DOCKER_TLS_HOST"] if tls else sandbox.host
        assert want in st, st
    finally:
        m.cleanup()


# ---- the containers ----

def bed_image(sandbox, which):
    """The bed's image `which` ("debian" or "busybox"); skips when the bed was made without it."""
    image = sandbox.bed.get(f"SM_DOCKER_{which.upper()}_IMAGE")
    if not image:
        pytest.skip(f"the {sandbox.name} bed has no {which} image (SM_BED_IMAGE=busybox)")
    return image


@pytest.mark.parametrize("image", ["debian", "busybox"])
def test_hardened_container(suite, sandbox, containers, image):
    """OpenClaw's defaults: the agent lands in a hidden dir of the workspace (the only exec-able
    place), files made through the mount belong to 1000:1000 in the container and to the local
    user locally, the hidden dir never shows through the mount, and exec works."""
    name, host = containers(f"hard-{image}", image=bed_image(sandbox, image), **HARDENED)
    m = mount_container(suite, sandbox, name, "/workspace", host)
    try:
        (m / "made-here.txt").write_text("hardened\n")
        os.mkdir(m / "dir")
        st = os.stat(host / "made-here.txt")
        assert (st.st_uid, st.st_gid) == (1000, 1000)
        code, out = sandbox.api.exec(name, ["stat", "-c", "%u:%g", "/workspace/made-here.txt",
                                            "/workspace/dir"])
        assert (code, out.split()) == (0, [b"1000:1000", b"1000:1000"]), out
        for p in (m.mp, m / "made-here.txt", m / "dir"):
            assert (os.stat(p).st_uid, os.stat(p).st_gid) == (os.getuid(), os.getgid()), p
        if sandbox.name == "podman":
            # podman's --read-only also mounts an exec-able tmpfs on /var/tmp (read_only_tmpfs):
            # probing finds it before the workspace
            assert agent_files(sandbox, name, "/var/tmp"), "the agent should be in /var/tmp"
        else:
            assert (host / ".sandmount-agent").is_dir(), "the agent should be in the hidden dir"
        assert ".sandmount-agent" not in os.listdir(m.mp)
        assert not os.path.lexists(m / ".sandmount-agent")
        p = m.exec("-c", "id -u; touch /probe-ro 2>/dev/null && echo rw || echo ro")
        assert p.stdout.split() == [b"1000", b"ro"], p.stderr
        roundtrip(m)
        # the gateway's tools see the files a command made
        p = m.exec("-c", "echo from-exec > dir/e.txt")
        assert (m / "dir" / "e.txt").read_text() == "from-exec\n"
        if image == "debian":  # a real tool, in a read-only root with no network
            p = m.exec("-c", "git init -q g && cd g && echo a > a && git add a && "
                       "git -c user.name=x -c user.email=x@x commit -qm hard && git log --format=%s")
            assert (p.returncode, p.stdout) == (0, b"hard\n"), p.stderr
            assert (m / "g" / ".git" / "HEAD").exists()
    finally:
        m.cleanup()


def test_workspace_is_a_plain_dir_of_the_container(suite, sandbox, containers):
    name, _ = containers("nobind", ws=False, user="1000:1000")
    code, out = sandbox.api.exec(name, ["sh", "-c", 'mkdir -p "$HOME/ws" && echo "$HOME/ws"'])
    assert code == 0, out
    ws = out.decode().strip()
    assert ws.startswith("/home/"), ws  # the user's home, from the image's /etc/passwd
    m = mount_container(suite, sandbox, name, ws)
    try:
        (m / "f.txt").write_bytes(b"in the container fs\n")
        code, out = sandbox.api.exec(name, ["cat", f"{ws}/f.txt"])
        assert (code, out) == (0, b"in the container fs\n")
        roundtrip(m)
        assert sorted(os.listdir(m.mp)) == ["f.txt", "rt.bin"]
    finally:
        m.cleanup()


def plain_image(sandbox):
    """A busybox-only image (no sftp-server, no /etc/passwd, runs as root), made once."""
    status, _ = sandbox.api.request("GET", f"/images/{PLAIN_IMAGE}/json")
    if status == 200:
        return PLAIN_IMAGE
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "tmp", "workspace", "proc", "sys", "dev", "etc"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(ti)
        tar.add("/bin/busybox", "bin/busybox")
        for applet in ("sh", "sleep", "cat", "sha256sum", "pwd", "ls", "id", "echo", "mkdir",
                       "wc", "head", "tr", "stat", "rm", "mv", "touch", "kill", "printf", "env"):
            ti = tarfile.TarInfo(f"bin/{applet}")
            ti.type, ti.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(ti)
    status, out = sandbox.api.request(
        "POST", f"/images/create?fromSrc=-&repo={PLAIN_IMAGE}&tag=latest", buf.getvalue(),
        ctype="application/x-tar", timeout=120)
    assert status == 200, out
    return PLAIN_IMAGE


def test_plain_busybox_image(suite, sandbox, containers):
    name, host = containers("plain", image=plain_image(sandbox))
    m = mount_container(suite, sandbox, name, "/workspace", host)
    try:
        roundtrip(m)
        assert (host / "rt.bin").stat().st_uid == 0  # the container runs as root
        assert m.exec("-c", "id -u").stdout == b"0\n"
    finally:
        m.cleanup()
    # without the agent there is nothing to serve files: a clear error naming the options
    mp = suite.new_mountpoint("plain-off")
    p = suite.sandmount("-o", sandbox.opts(agent="off"), f"docker://{name}/workspace", mp,
                        timeout=60)
    assert p.returncode != 0
    last = p.stderr.decode().strip().splitlines()[-1]
    assert "sftp-server" in last and "agent_dir" in last, p.stderr
    assert not h.is_mounted(mp)
    assert h.wait_until(lambda: not suite.daemon_pids(mp), 5)


# ---- where the agent goes ----

def agent_files(sandbox, name, d):
    code, out = sandbox.api.exec(name, ["sh", "-c", f"ls {d} 2>/dev/null"])
    return [x for x in out.decode().split() if x.startswith("sandmount-agent-")]


def test_agent_dir_option(suite, sandbox, containers):
    name, host = containers("agentdir", image=plain_image(sandbox))
    assert sandbox.api.exec(name, ["mkdir", "-p", "/opt/sm"])[0] == 0
    m = mount_container(suite, sandbox, name, "/workspace", host, agent_dir="/opt/sm")
    try:
        roundtrip(m)
        assert agent_files(sandbox, name, "/opt/sm"), "the agent should be in agent_dir"
        assert not agent_files(sandbox, name, "/tmp")
    finally:
        m.cleanup()


def test_agent_probing_skips_noexec_tmp(suite, sandbox, containers):
    """/tmp is a noexec tmpfs but the root is writable: the probe finds /var/tmp."""
    name, host = containers("probe", user="1000:1000",
                            tmpfs={"/tmp": "rw,noexec,nosuid"})
    m = mount_container(suite, sandbox, name, "/workspace", host)
    try:
        roundtrip(m)
        assert agent_files(sandbox, name, "/var/tmp"), "the agent should be in /var/tmp"
        assert not (host / ".sandmount-agent").exists()
    finally:
        m.cleanup()
    # a second mount reuses the placed copy
    m = mount_container(suite, sandbox, name, "/workspace", host)
    try:
        assert len(agent_files(sandbox, name, "/var/tmp")) == 1
    finally:
        m.cleanup()


def test_agent_off_uses_the_images_sftp_server(suite, sandbox, mounter):
    m = mounter(opts=sandbox.opts(agent="off"))
    roundtrip(m)
    (m / "d").mkdir()
    (m / "d" / "x").write_bytes(b"x" * 5000)
    os.rename(m / "d" / "x", m / "d" / "y")
    assert m.r("d/y").read_bytes() == b"x" * 5000
    p = m.exec("-c", "echo out; echo err >&2; exit 5")
    assert (p.returncode, p.stdout, p.stderr) == (5, b"out\n", b"err\n")


# ---- failures ----

def running_shell(suite, m, go):
    """A shell whose cwd is in the mount (like the gateway's), that runs sandexec once go exists."""
    return subprocess.Popen(
        ["sh", "-c", f'while [ ! -e {go} ]; do sleep 0.05; done; exec "$0" -c "echo should-not-print"',
         str(h.SANDEXEC)], cwd=m.mp, env=suite.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("what", ["stopped", "removed"])
def test_container_goes_away_while_mounted(suite, sandbox, containers, what):
    name, host = containers(f"gone-{what}", user="1000:1000")
    m = mount_container(suite, sandbox, name, "/workspace", host, op_timeout=5, keepalive=2)
    go = suite.tmp / suite.unique("go")
    try:
        (m / "before").write_bytes(b"before")
        assert m.exec("-c", "echo up").stdout == b"up\n"
        shell = running_shell(suite, m, go)
        if what == "stopped":
            sandbox.api.stop(name, t=0)
        else:
            sandbox.api.remove(name)
        t0 = time.monotonic()
        go.touch()
        try:
            out, err = shell.communicate(timeout=60)
        finally:
            if shell.poll() is None:
                shell.kill()
                shell.wait()
        assert shell.returncode == 125, (shell.returncode, out, err)
        assert b"should-not-print" not in out
        assert err.strip(), "125 must come with a message"
        assert time.monotonic() - t0 < 20
        t0 = time.monotonic()
        p = h.run(["cat", str(m / "never-seen")], timeout=60)
        assert p.returncode != 0
        assert time.monotonic() - t0 < 5 + 15, "a file op must fail within about op_timeout"
        p = h.run(["sh", "-c", f"echo x > '{m / 'new'}'"], timeout=60)
        assert p.returncode != 0, "a write to a stopped container must not report success"
        st = suite.sandmount("--status", m.mp, timeout=30).stdout.decode()
        assert "not running" in st or "no such container" in st, st
        m.unmount()
    finally:
        m.cleanup()


def test_wrong_container_name(suite, sandbox):
    mp = suite.new_mountpoint("nocontainer")
    line = attempt(suite, "docker://no-such-container-xyz/workspace", mp, sandbox.opts(), 20)
    assert "no such container: no-such-container-xyz" in line, line


def test_daemon_down(suite, sandbox):
    mp = suite.new_mountpoint("nodaemon")
    sock = suite.tmp / "no-daemon.sock"
    line = attempt(suite, f"docker://{sandbox.container}/workspace", mp,
                   sandbox.opts(docker_host=f"unix://{sock}"), 20)
    assert f"cannot reach the Docker daemon at unix://{sock}" in line, line


def test_tls_wrong_ca(suite, sandbox):
    bed = sandbox.bed
    if not bed["SM_DOCKER_TLS_HOST"]:
        pytest.skip(f"{sandbox.name}: its API service has no TLS listener")
    wrong = suite.tmp / suite.unique("wrong-ca")
    wrong.mkdir()
    shutil.copy(bed["SM_DOCKER_WRONG_CA"], wrong / "ca.pem")
    for f in ("cert.pem", "key.pem"):
        shutil.copy(Path(bed["SM_DOCKER_CERT_PATH"]) / f, wrong / f)
    env = sandbox_env(suite, DOCKER_HOST=bed["SM_DOCKER_TLS_HOST"], DOCKER_TLS_VERIFY="1",
                      DOCKER_CERT_PATH=str(wrong))
    mp = suite.new_mountpoint("wrongca")
    line = attempt(suite, f"docker://{sandbox.container}/workspace", mp,
                   sandbox.opts(docker_host=None), 20, env=env)
    assert "TLS" in line and str(wrong / "ca.pem") in line, line


def test_api_error_message_is_shown(suite, sandbox, containers):
    """A paused container is "running" but refuses execs (409): the daemon's own message must
    reach the user."""
    name, host = containers("paused", user="1000:1000")
    sandbox.api.pause(name)
    try:
        mp = suite.new_mountpoint("paused")
        p = suite.sandmount("-o", sandbox.opts(), f"docker://{name}/workspace", mp, timeout=60)
        err = p.stderr.decode()
        assert p.returncode != 0
        assert "paused" in err.strip().splitlines()[-1], err
        assert not h.is_mounted(mp)
    finally:
        sandbox.api.unpause(name)


# ---- exec latency ----

def test_exec_latency_vs_docker_exec(suite, sandbox, mnt):
    """sandexec (through the agent) next to `docker exec CONTAINER true`; prints both (-s),
    asserts only that both work."""
    docker = shutil.which("docker")
    n = 15

    def timed(cmd, **kw):
        t0 = time.monotonic()
        p = h.run(cmd, timeout=60, **kw)
        assert p.returncode == 0, (cmd, p.stderr)
        return (time.monotonic() - t0) * 1000

    ours = [timed([h.SANDEXEC, "--", "true"], cwd=mnt.mp, env=suite.env) for _ in range(n)]
    line = f"\n{sandbox.name}: sandexec true: median {statistics.median(ours):.1f} ms"
    if docker:
        env = sandbox_env(suite, DOCKER_HOST=sandbox.host,
                          DOCKER_CONFIG=str(suite.tmp / "empty-docker-config"))
        theirs = [timed([docker, "exec", sandbox.container, "true"], env=env) for _ in range(n)]
        line += f"; docker exec {sandbox.container} true: median {statistics.median(theirs):.1f} ms"
    print(line + f" (n={n}, ASan build)")
