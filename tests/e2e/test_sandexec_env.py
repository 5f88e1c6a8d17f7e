"""sandexec as a gateway's $SHELL: the environment the calling program added for a command reaches
the sandbox while the one it was started with (its secrets) does not, a prepended PATH lands on
the sandbox's own PATH, a command killed by a signal kills sandexec by the same signal, the
login-shell environment probe is answered without running anything, `sandexec --check` reports
the wiring, and the install step registers sandexec in /etc/shells."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import helpers as h
from helpers import REPO, SANDEXEC

PROBE = "printf '\\0'; env -0"
SHOW = 'printf "%s|" "${FOO-unset}" "${SECRET_TOKEN-unset}" "${CHANGED-unset}" "${SAME-unset}"'


def remote_default_path(mnt):
    p = mnt.exec("-c", 'printf %s "$PATH"')
    assert p.returncode == 0, p.stderr
    return p.stdout.decode()


def test_added_env_reaches_sandbox_startup_env_does_not(suite, mnt):
    startup = dict(suite.env, SECRET_TOKEN="s3cret", CHANGED="old", SAME="kept")
    added = {"FOO": "bar baz", "CHANGED": "new", "SAME": "kept"}
    p = h.run_as_caller([SANDEXEC, "-c", SHOW], startup, added, cwd=mnt.mp)
    assert p.returncode == 0, p.stderr
    # FOO added, CHANGED changed: forwarded; SECRET_TOKEN and SAME as at startup: not
    assert p.stdout.decode() == "bar baz|unset|new|unset|"


def test_env_allow_forwards_startup_variables(suite, mnt):
    cfg = suite.tmp / "env-allow-secret.json"
    cfg.write_text(json.dumps({"local_fallback": False, "env_allow": ["SECRET_*"],
                               "sandboxes": {}}))
    startup = dict(suite.env, SECRET_TOKEN="s3cret", SANDMOUNT_CONFIG=str(cfg))
    p = h.run_as_caller([SANDEXEC, "-c", SHOW], startup, {}, cwd=mnt.mp)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode() == "unset|s3cret|unset|unset|"


def test_bookkeeping_and_bad_names_are_not_forwarded(suite, mnt):
    added = {"HOME": "/home/gateway", "LD_PRELOAD": "/x.so", "OK_1": "y", "BAD-NAME": "z",
             "XDG_CONFIG_HOME": "/home/gateway/.config"}
    script = 'printf "%s|" "$HOME" "${LD_PRELOAD-unset}" "$OK_1" "${XDG_CONFIG_HOME-unset}"'
    p = h.run_as_caller([SANDEXEC, "-c", script], suite.env, added, cwd=mnt.mp)
    assert p.returncode == 0, p.stderr
    home, preload, ok, xdg = p.stdout.decode().split("|")[:4]
    assert (home != "/home/gateway", preload, ok, xdg) == (True, "unset", "y", "unset")


def test_oversized_variable_is_left_out_with_a_warning(suite, mnt):
    added = {"BIG": "x" * 40000, "SMALL": "s"}
    p = h.run_as_caller([SANDEXEC, "-c", 'printf "%s|" "${#BIG}" "$SMALL"'], suite.env, added,
                        cwd=mnt.mp)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode() == "0|s|"
    assert b"not forwarding BIG" in p.stderr


@pytest.mark.parametrize("shape", ["prepend", "append", "both", "empty-element", "replace"])
def test_path_is_rebuilt_on_the_sandbox_path(suite, mnt, shape):
    default = remote_default_path(mnt)
    host = suite.env["PATH"]
    new, want = {
        "prepend": (f"/x/bin:{host}", f"/x/bin:{default}"),
        "append": (f"{host}:/y/bin", f"{default}:/y/bin"),
        "both": (f"/x/bin:/x 2/bin:{host}:/y/bin", f"/x/bin:/x 2/bin:{default}:/y/bin"),
        # OpenClaw's pathPrepend with nothing to prepend, a shell's "$P:$PATH" with P empty
        "empty-element": (f":{host}", default),
        "replace": ("/only/bin::/usr/bin", "/only/bin:/usr/bin"),
    }[shape]
    p = h.run_as_caller([SANDEXEC, "-c", 'printf %s "$PATH"'], suite.env, {"PATH": new},
                        cwd=mnt.mp)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode() == want
    assert "::" not in want and not want.startswith(":") and not want.endswith(":")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGINT])
def test_command_killed_by_signal_kills_sandexec_alike(mnt, sig):
    p = mnt.exec("-c", f"kill -{int(sig)} $$; sleep 5")
    assert p.returncode == -int(sig), (p.returncode, p.stderr)
    # an exit status of its own stays an exit status
    assert mnt.exec("-c", "exit 3").returncode == 3


def test_gateway_sigterm_reaches_the_command_and_kills_sandexec(suite, mnt):
    """OpenClaw's timeout: SIGTERM to the process group; the caller must see SIGTERM."""
    p = subprocess.Popen([str(SANDEXEC), "-c", "echo started; sleep 60; echo survived"],
                         cwd=mnt.mp, env=suite.env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert p.stdout.readline() == b"started\n"
        t0 = time.monotonic()
        os.killpg(p.pid, signal.SIGTERM)
        rc = p.wait(20)
        assert rc == -signal.SIGTERM, (rc, p.stderr.read())
        assert time.monotonic() - t0 < 10
        assert b"survived" not in p.stdout.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def fake_tools(dirpath):
    """A PATH whose env, printf and sh leave a mark if anything runs them locally."""
    dirpath.mkdir(exist_ok=True)
    mark = dirpath / "ran-locally"
    for tool in ("env", "printf", "sh", "true"):
        script = dirpath / tool
        script.write_text(f"#!/bin/sh\necho {tool} >> '{mark}'\n")
        script.chmod(0o755)
    return mark


@pytest.mark.parametrize("form", [["-l", "-c", PROBE], ["-lc", PROBE], ["--login", "-c", PROBE]])
def test_login_probe_is_answered_outside_every_mount(suite, tmp_path, form):
    mark = fake_tools(tmp_path / "bin")
    env = dict(suite.env, PROBE_MARK="seen", PATH=f"{tmp_path / 'bin'}:{suite.env['PATH']}")
    p = suite.sandexec(*form, cwd="/", env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(b"\0")
    entries = p.stdout[1:].split(b"\0")
    assert entries[-1] == b""  # every entry NUL-terminated
    parsed = dict(e.decode().split("=", 1) for e in entries[:-1])
    assert parsed["PROBE_MARK"] == "seen"
    assert parsed["PATH"] == env["PATH"]
    assert not mark.exists(), mark.read_text()


def test_other_login_commands_are_refused_outside_mounts(suite, tmp_path):
    mark = fake_tools(tmp_path / "bin")
    env = dict(suite.env, PATH=f"{tmp_path / 'bin'}:{suite.env['PATH']}")
    for args in (["-l", "-c", PROBE + "; true"], ["-l", "-c", "env -0"], ["-c", PROBE],
                 ["-l", "-c", PROBE, "name"]):
        p = suite.sandexec(*args, cwd="/", env=env)
        assert p.returncode == 125, (args, p.returncode, p.stdout)
        assert b"is not inside a sandmount mount" in p.stderr
    assert not mark.exists(), mark.read_text()


def test_login_probe_inside_a_mount_describes_the_gateway(suite, mnt):
    """The probe asks about the gateway's login environment: answered here, even in a mount."""
    p = suite.sandexec("-l", "-c", PROBE, cwd=mnt.mp, env=dict(suite.env, PROBE_MARK="gw"))
    assert p.returncode == 0, p.stderr
    assert b"\0PROBE_MARK=gw\0" in p.stdout


@pytest.fixture
def registered_shell():
    """SANDEXEC listed in /etc/shells for the test; the file is restored afterwards."""
    shells = Path("/etc/shells")
    before = shells.read_bytes() if shells.exists() else None
    try:
        h.run(["sh", str(REPO / "exec" / "register_shell.sh"), str(SANDEXEC)], check=True,
              env=dict(os.environ, DESTDIR=""))
        yield str(SANDEXEC)
    finally:
        if before is None:
            shells.unlink(missing_ok=True)
        else:
            shells.write_bytes(before)


def test_check_good_wiring(suite, mnt, registered_shell):
    env = dict(suite.env, SHELL=registered_shell)
    p = suite.sandexec("--check", str(mnt.mp), cwd="/", env=env)
    out = p.stdout.decode()
    print(out)  # the round trip, for the record (pytest -s)
    assert p.returncode == 0, out + p.stderr.decode()
    assert "FAIL" not in out
    assert f"ok    SHELL={SANDEXEC} is sandexec" in out
    assert f"ok    {SANDEXEC} is listed in /etc/shells" in out
    assert "a command round trip took" in out
    assert out.rstrip().endswith("all good")


def test_check_broken_wiring(suite, mnt, tmp_path):
    cfg = tmp_path / "config.json"
    ghost = tmp_path / "ghost-mp"
    ghost.mkdir()
    cfg.write_text(json.dumps({"sandboxes": {"ghost": {"url": "ssh://nobody@127.0.0.1:1/w",
                                                        "mountpoint": str(ghost)}}}))
    env = dict(suite.env, SHELL="/bin/bash", SANDMOUNT_CONFIG=str(cfg))
    shells = Path("/etc/shells").read_text() if Path("/etc/shells").exists() else ""
    p = suite.sandexec("--check", str(tmp_path), str(mnt.mp), cwd="/", env=env)
    out = p.stdout.decode()
    assert p.returncode == 1, out
    assert "FAIL  SHELL is /bin/bash, not sandexec" in out
    if str(SANDEXEC) not in shells.split("\n"):
        assert f"FAIL  {SANDEXEC} is not listed in /etc/shells" in out
    assert f"FAIL  workspace {tmp_path} is not inside a sandmount mount" in out
    assert f"ok    workspace {mnt.mp}: {mnt.mp} is mounted" in out
    # without workspaces: the configured sandbox whose mountpoint is not mounted
    p = suite.sandexec("--check", cwd="/", env=env)
    assert p.returncode == 1
    assert f"FAIL  sandbox ghost: {ghost} is not mounted" in p.stdout.decode()
    # an unreadable config
    cfg.write_text("{not json")
    p = suite.sandexec("--check", str(mnt.mp), cwd="/", env=env)
    assert p.returncode == 1
    assert "FAIL  config:" in p.stdout.decode()


def test_install_script_registers_once(tmp_path):
    shells = tmp_path / "shells"
    shells.write_text("/bin/sh\n")
    script = str(REPO / "exec" / "register_shell.sh")
    env = dict(os.environ, SANDEXEC_SHELLS_FILE=str(shells), DESTDIR="")
    for _ in range(2):
        h.run(["sh", script, "/usr/local/bin/sandexec"], env=env, check=True)
    assert shells.read_text() == "/bin/sh\n/usr/local/bin/sandexec\n"
    h.run(["sh", script, "/opt/bin/sandexec"], env=dict(env, DESTDIR="/stage"), check=True)
    assert shells.read_text() == "/bin/sh\n/usr/local/bin/sandexec\n"
