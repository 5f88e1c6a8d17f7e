"""bed: the benchmark's test bed and its cleanup — a private work dir, the throwaway sshd
(scripts/testbed), the private dockerd (scripts/dockerbed) with one workspace container, the
link shapers (scripts/linkshape) that turn loopback into a delayed link, and an ssh
ControlMaster. Everything started here is recorded and stopped by pid (or unmounted) in
Bed.close(), which runs on any exit."""

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SANDBOX_USER = "sandbox"
CONTAINER = "sandmount-bench"
LINKSHAPE = REPO / "scripts" / "linkshape"


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def run(cmd, timeout=60, check=True, **kw):
    """Run cmd with a deadline; output captured as text. A timeout raises TimeoutError."""
    cmd = [str(c) for c in cmd]
    try:
        p = subprocess.run(cmd, timeout=timeout, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, **kw)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"timed out after {timeout}s: {' '.join(cmd)}") from None
    if check and p.returncode != 0:
        raise RuntimeError(f"exit {p.returncode}: {' '.join(cmd)}: {p.stderr.strip()[-500:]}")
    return p


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def read_env(path):
    return dict(line.split("=", 1) for line in Path(path).read_text().splitlines() if "=" in line)


def mounts():
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            out.append(line.split(" - ", 1)[0].split()[4].replace("\\040", " "))
    return out


def pids_with_arg(exe, arg):
    """Live pids whose executable is exe and one of whose arguments is exactly arg."""
    exe = os.path.realpath(exe)
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{d}/exe").removesuffix(" (deleted)") != exe:
                continue
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
            with open(f"/proc/{d}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except OSError:
            continue
        if arg in argv:
            found.append(int(d))
    return found


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


class Bed:
    """Owns every process, mount and directory the benchmark creates."""

    def __init__(self, build_dir):
        self.build = Path(build_dir).resolve()
        self.sandmount = self.build / "fs" / "sandmount"
        self.sandexec = self.build / "exec" / "sandexec"
        self.work = Path(tempfile.mkdtemp(prefix="smbench-", dir="/tmp"))
        os.chmod(self.work, 0o711)  # sshd reads authorized_keys in here as the sandbox user
        self.procs = []           # Popen objects we own (proxies, ControlMaster)
        self.mounts = []          # mount points we created
        self.daemon_exes = [str(self.sandmount), shutil.which("sshfs") or "/usr/bin/sshfs"]
        self.tb = self.db = None
        home, rt = self.work / "home", self.work / "run"
        for d in (home, rt):
            d.mkdir(mode=0o700)
        cfg = self.work / "config.json"
        cfg.write_text(json.dumps({"local_fallback": False, "sandboxes": {}}))
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("SSH_", "SANDMOUNT_", "DOCKER_"))}
        self.env.update(HOME=str(home), XDG_RUNTIME_DIR=str(rt), SANDMOUNT_CONFIG=str(cfg),
                        XDG_CONFIG_HOME=str(home / ".config"), LANG="C.UTF-8", LC_ALL="C.UTF-8",
                        GIT_CONFIG_NOSYSTEM="1")
        self.counter = 0
        self.unsupported = {}    # contender key -> why it is n/a

    # ---- bring-up ----

    def start_testbed(self):
        d = self.work / "tb"
        run([REPO / "scripts" / "testbed", "up", d], timeout=90)
        self.tb = read_env(d / "env")
        pw = pwd.getpwnam(SANDBOX_USER)
        self.sandbox_ids = (pw.pw_uid, pw.pw_gid)
        self.ssh_port = int(self.tb["SM_SSH_PORT"])

    def start_dockerbed(self):
        d = self.work / "db"
        run([REPO / "scripts" / "dockerbed", "up", d], timeout=180)
        self.db = read_env(d / "env")
        self.docker_sock = self.db["SM_DOCKER_SOCK"]
        dcfg = self.work / "docker-config"
        dcfg.mkdir()
        self.env["DOCKER_CONFIG"] = str(dcfg)
        self.docker_ws = self.work / "dockerws"
        self.docker_ws.mkdir()
        self.docker("run", "-d", "--name", CONTAINER, "--network", "none",
                    "-v", f"{self.docker_ws}:/workspace", self.db["SM_DOCKER_IMAGE"],
                    "sleep", "1000000", sock=self.docker_sock)

    def docker(self, *args, sock, timeout=60):
        env = dict(self.env, DOCKER_HOST=f"unix://{sock}")
        return run(["docker", *args], timeout=timeout, env=env)

    def start_proxy(self, listen, to, delay_ms, control=None):
        """A linkshape forwarder listening on `listen` (its control socket at `control`, if
        given); returns when it printed "ready"."""
        ctl = ["--control", f"unix:{control}"] if control else []
        p = subprocess.Popen([sys.executable, str(LINKSHAPE), "--listen", listen,
                              "--to", to, "--delay-ms", str(delay_ms), *ctl],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(p)
        line = b""
        deadline = time.monotonic() + 30
        os.set_blocking(p.stdout.fileno(), False)
        while b"ready" not in line:
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"linkshape for {listen} did not start")
            time.sleep(0.02)
            line += p.stdout.read() or b""
        return p

    def link(self, delay_ms):
        """Endpoints for one link: (ssh port, known_hosts, docker socket, the proxies' control
        sockets), proxied when delayed."""
        if delay_ms == 0:
            return self.ssh_port, self.tb["SM_KNOWN_HOSTS"], self.docker_sock, []
        port = free_port()
        controls = [self.work / f"link-{port}-ssh.ctl", self.work / f"link-{port}-docker.ctl"]
        self.start_proxy(f"tcp:127.0.0.1:{port}", f"tcp:127.0.0.1:{self.ssh_port}", delay_ms / 2,
                         controls[0])
        key = Path(self.tb["SM_KNOWN_HOSTS"]).read_text().split(None, 1)[1]
        kh = self.work / f"known_hosts-{port}"
        kh.write_text(f"[127.0.0.1]:{port} {key}")
        sock = self.work / f"docker-{port}.sock"
        self.start_proxy(f"unix:{sock}", f"unix:{self.docker_sock}", delay_ms / 2, controls[1])
        return port, str(kh), str(sock), controls

    def set_delay(self, controls, delay_ms):
        """Change the delay of a link's proxies at run time (half of delay_ms each way)."""
        for c in controls:
            run([sys.executable, str(LINKSHAPE), "ctl", str(c), "delay", str(delay_ms / 2)],
                timeout=30)

    def start_control_master(self, port, known_hosts):
        path = self.work / f"cm-{port}"
        p = subprocess.Popen(["ssh", *self.ssh_args(port, known_hosts), "-o", "ControlMaster=yes",
                              "-o", f"ControlPath={path}", "-N", f"{SANDBOX_USER}@127.0.0.1"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=self.env, start_new_session=True)
        self.procs.append(p)
        deadline = time.monotonic() + 15
        while not path.exists():
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("ssh ControlMaster did not come up")
            time.sleep(0.05)
        return str(path)

    def ssh_args(self, port, known_hosts):
        return ["-F", "/dev/null", "-p", str(port), "-i", self.tb["SM_SSH_KEY"],
                "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=20"]

    # ---- directories ----

    def new_mountpoint(self, tag):
        self.counter += 1
        mp = self.work / "mnt" / f"{tag}-{self.counter}"
        mp.mkdir(parents=True)
        return mp

    def chown_sandbox(self, path):
        uid, gid = self.sandbox_ids
        for root, dirs, files in os.walk(path):
            os.lchown(root, uid, gid)
            for n in dirs + files:
                os.lchown(os.path.join(root, n), uid, gid)

    # ---- mounts ----

    def unmount(self, mp, timeout=60):
        """Unmount mp (sandmount -u when it is ours, else fusermount3), lazily if that fails,
        then make sure its daemon exited (killed after a grace period)."""
        mp = str(mp)
        if mp in mounts():
            try:
                cmd = ([self.sandmount, "-u", mp] if self._is_sandmount(mp)
                       else ["fusermount3", "-u", mp])
                run(cmd, timeout=timeout, check=False, env=self.env)
            except TimeoutError as ex:
                log(f"unmount: {ex}")
            if mp in mounts():
                run(["fusermount3", "-u", "-z", mp], timeout=30, check=False)
        deadline = time.monotonic() + 10
        while self.daemon_pids(mp) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self.daemon_pids(mp):
            log(f"daemon {pid} of {mp} still running after unmount; killing it")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if mp in self.mounts:
            self.mounts.remove(mp)

    def _is_sandmount(self, mp):
        return bool(pids_with_arg(str(self.sandmount), mp))

    def daemon_pids(self, mp):
        mp = str(mp)
        return [p for exe in self.daemon_exes for p in pids_with_arg(exe, mp)]

    # ---- teardown ----

    def close(self):
        for mp in list(reversed(self.mounts)):
            try:
                self.unmount(mp, timeout=20)
            except Exception as ex:  # keep cleaning
                log(f"cleanup: {mp}: {ex}")
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        for name in ("db", "tb"):
            d = self.work / name
            if (d / "env").exists():
                script = "dockerbed" if name == "db" else "testbed"
                try:
                    run([REPO / "scripts" / script, "down", d], timeout=120, check=False)
                except TimeoutError as ex:
                    log(f"cleanup: {ex}")
        if not any(m.startswith(str(self.work) + "/") for m in mounts()):
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            log(f"cleanup: mounts remain under {self.work}; left it in place")
