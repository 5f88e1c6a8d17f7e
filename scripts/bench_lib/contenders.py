"""contenders: the file systems and exec paths compared — local disk, sandmount over SSH (agent
off/on), sandmount over Docker (agent/exec API), sshfs over the same sshd. Each knows how to place
a workspace copy on its sandbox side, mount it, run a command next to the files, and (sandmount
only) read the daemon's round-trip counters."""

import re
import shutil
import subprocess
import time
from pathlib import Path

from bed import CONTAINER, SANDBOX_USER, log, run

STATUS_RE = re.compile(r"sftp requests: (\d+), round trips: (\d+)")


class Unsupported(Exception):
    """This contender cannot run here (e.g. an option this build does not have yet)."""


class Local:
    name = "local disk"
    key = "local"
    counts = False

    def __init__(self, bed, link):
        self.bed, self.link = bed, link
        self.base = bed.work / "local"
        self.mp = None

    def place(self, template, tag):
        dst = self.base / tag
        dst.parent.mkdir(parents=True, exist_ok=True)
        run(["cp", "-a", template, dst], timeout=300)
        return dst

    def remove(self, tag):
        shutil.rmtree(self.base / tag, ignore_errors=True)

    def mount(self, tag):
        self.mp = self.base / tag
        return self.mp

    def unmount(self):
        self.mp = None

    def exec_argv(self, argv):
        return argv, str(self.mp)

    def counters(self):
        return None

    def daemon_pid(self):
        return None


class Sshfs(Local):
    name = "sshfs"
    key = "sshfs"

    def __init__(self, bed, link):
        super().__init__(bed, link)
        self.remote_base = Path(bed.tb["SM_REMOTE_DIR"])

    def place(self, template, tag):
        dst = self.remote_base / self.key / tag
        dst.parent.mkdir(parents=True, exist_ok=True)
        self.bed.chown_sandbox(dst.parent)
        run(["cp", "-a", template, dst], timeout=300)
        self.bed.chown_sandbox(dst)
        return dst

    def remove(self, tag):
        shutil.rmtree(self.remote_base / self.key / tag, ignore_errors=True)

    def remote_dir(self, tag):
        return f"{self.remote_base}/{self.key}/{tag}"

    def mount(self, tag):
        mp = self.bed.new_mountpoint(self.key)
        port, kh, _ = self.link.endpoints
        self.bed.mounts.append(str(mp))
        run(["sshfs", "-F", "/dev/null", "-p", str(port),
             "-o", f"IdentityFile={self.bed.tb['SM_SSH_KEY']},UserKnownHostsFile={kh},"
                   "StrictHostKeyChecking=yes,BatchMode=yes",
             f"{SANDBOX_USER}@127.0.0.1:{self.remote_dir(tag)}", mp], timeout=60,
            env=self.bed.env)
        self.mp, self.tag = mp, tag
        return mp

    def unmount(self):
        if self.mp:
            self.bed.unmount(self.mp)
        self.mp = None

    def exec_argv(self, argv):
        """Commands next to an sshfs mount go through ssh with a ControlMaster (held connection)."""
        port, kh, _ = self.link.endpoints
        cm = self.link.control_master()
        cmd = "cd %s && %s" % (self.remote_dir(self.tag), " ".join(_sh_quote(a) for a in argv))
        return (["ssh", *self.bed.ssh_args(port, kh), "-o", "ControlMaster=no",
                 "-o", f"ControlPath={cm}", f"{SANDBOX_USER}@127.0.0.1", cmd], None)

    def daemon_pid(self):
        pids = self.bed.daemon_pids(self.mp)
        return pids[0] if pids else None


class SandmountSSH(Sshfs):
    counts = True

    def __init__(self, bed, link, agent):
        super().__init__(bed, link)
        self.agent = agent
        self.key = f"sm-ssh-{agent}"
        self.name = f"sandmount ssh agent={agent}"

    def mount(self, tag):
        port, kh, _ = self.link.endpoints
        opts = (f"ssh_config=none,identity={self.bed.tb['SM_SSH_KEY']},known_hosts={kh},"
                f"agent={self.agent}")
        url = f"ssh://{SANDBOX_USER}@127.0.0.1:{port}{self.remote_dir(tag)}"
        return self._mount(["-o", opts, url], tag)

    def _mount(self, args, tag):
        mp = self.bed.new_mountpoint(self.key)
        self.bed.mounts.append(str(mp))
        p = run([self.bed.sandmount, *args, mp], timeout=90, check=False, env=self.bed.env)
        if p.returncode != 0:
            self.bed.unmount(mp)
            err = p.stderr.strip().splitlines()
            raise Unsupported(err[-1] if err else f"sandmount exit {p.returncode}")
        self.mount_log = p.stderr
        self.mp, self.tag = mp, tag
        if self.agent == "on" and not self.agent_in_use():
            self.unmount()
            raise Unsupported("agent=on accepted but no agent serves the mount")
        return mp

    def agent_in_use(self):
        """True when the mount's files or commands go through sandmount-agent."""
        p = run([self.bed.sandmount, "--status", self.mp], timeout=20, check=False,
                env=self.bed.env)
        if "(files: agent" in p.stdout:  # the Docker transport says where files come from
            return True
        return self.agent_process_runs()

    def agent_process_runs(self):
        """A detaching mount logs nothing on success, so the agent's `serve` process tells."""
        if re.search(r"agent: (placed|reusing|uploaded)", self.mount_log):
            return True
        # any user: in a container the agent runs as the container's user
        out = run(["pgrep", "-f", "sandmount-agent.* serve"], check=False, timeout=10).stdout
        return bool(out.split())

    def exec_argv(self, argv):
        return [str(self.bed.sandexec), "--", *argv], str(self.mp)

    def counters(self):
        p = run([self.bed.sandmount, "--status", self.mp], timeout=20, check=False,
                env=self.bed.env)
        m = STATUS_RE.search(p.stdout)
        return (int(m.group(1)), int(m.group(2))) if m else None


class SandmountDocker(SandmountSSH):
    def __init__(self, bed, link, agent):
        super().__init__(bed, link, agent)
        self.key = f"sm-docker-{agent}"
        self.name = f"sandmount docker agent={agent}"

    def place(self, template, tag):
        dst = self.bed.docker_ws / self.key / tag
        dst.parent.mkdir(parents=True, exist_ok=True)
        run(["cp", "-a", template, dst], timeout=300)
        return dst

    def remove(self, tag):
        shutil.rmtree(self.bed.docker_ws / self.key / tag, ignore_errors=True)

    def mount(self, tag):
        _, _, sock = self.link.endpoints
        return self._mount(["-o", f"docker_host=unix://{sock},agent={self.agent}",
                            f"docker://{CONTAINER}/workspace/{self.key}/{tag}"], tag)


def _sh_quote(s):
    if re.fullmatch(r"[A-Za-z0-9_./=:,+-]+", s):
        return s
    return "'" + s.replace("'", "'\\''") + "'"


class Link:
    """One network link (loopback or delayed): its endpoints and a lazily started ControlMaster."""

    def __init__(self, bed, delay_ms):
        self.bed, self.delay_ms = bed, delay_ms
        self.name = "loopback" if delay_ms == 0 else f"{delay_ms:g} ms RTT"
        port, kh, sock, self.controls = bed.link(delay_ms)
        self.endpoints = port, kh, sock
        self._cm = None

    def set_delay(self, delay_ms):
        """Change the round-trip delay of this (delayed) link at run time."""
        self.bed.set_delay(self.controls, delay_ms)

    def control_master(self):
        if self._cm is None:
            port, kh, _ = self.endpoints
            self._cm = self.bed.start_control_master(port, kh)
        return self._cm


def file_contenders(bed, link):
    return [Local(bed, link), SandmountSSH(bed, link, "off"), SandmountSSH(bed, link, "on"),
            SandmountDocker(bed, link, "on"), SandmountDocker(bed, link, "off"), Sshfs(bed, link)]


def timed(argv, cwd, env, timeout):
    """Run argv, return (seconds, CompletedProcess); raises TimeoutError."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(argv, cwd=cwd, env=env, timeout=timeout, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"timed out after {timeout}s: {' '.join(map(str, argv))}") from None
    return time.perf_counter() - t0, p
