"""linkshape: drive scripts/linkshape (the project's link-shaping forwarder) from tests — start it
in front of a server on a free loopback port (or a unix socket), shape the link, inject faults,
read its counters, stop it by PID. See scripts/linkshape's docstring for what each fault does.

    from linkshape import LinkShape

    with LinkShape(to=("127.0.0.1", sshd_port), delay_ms=5) as ls:   # or to="/path/docker.sock"
        port = ls.port                  # connect here instead (ls.path for a unix listener)
        ls.cut()                        # close every live connection now
        ls.cut_after(4096)              # close each connection after 4096 more bytes (None: off)
        ls.blackhole(True)              # pass nothing (connections stay open); False: flow again
        ls.reset()                      # RST every live connection
        ls.refuse(True)                 # new connections get ECONNREFUSED; False: accept again
        ls.delay(50); ls.jitter(10); ls.rate("10mbit")   # reshape at run time (rate(None): off)
        ls.stats()                      # {"up_bytes", "down_bytes", "conns_total", "conns_live",
                                        #  "refused", ...}
        ls.wait_conns_live(0)           # poll stats until that many connections are live

LinkShape(to, listen=None, *, delay_ms=0, jitter_ms=0, rate=None, seconds=None, extra=()):
  to      ("host", port), port (127.0.0.1), a str "tcp:HOST:PORT"/"unix:PATH", or a Path /
          a str starting with "/" (unix socket)
  listen  None (a free port on 127.0.0.1), "unix" (a socket in a private temp dir), or an
          explicit "tcp:..."/"unix:..." address
  seconds the forwarder stops by itself after this long (a safety net; stop() is the normal way)
start() returns self once linkshape printed "ready" (deadline 15 s); stop() terminates it by PID
(SIGKILL after 5 s) and removes its temp dir; the context manager does both. Any command that
linkshape answers with "err" raises ControlError."""

import importlib.machinery
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "linkshape"


def _load_tool():
    loader = importlib.machinery.SourceFileLoader("linkshape_tool", str(SCRIPT))
    spec = importlib.util.spec_from_loader("linkshape_tool", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


_tool = _load_tool()
ControlError = _tool.ControlError


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _addr(a):
    if isinstance(a, Path) or (isinstance(a, str) and a.startswith("/")):
        return f"unix:{a}"
    if isinstance(a, int):
        return f"tcp:127.0.0.1:{a}"
    if isinstance(a, tuple):
        return f"tcp:{a[0]}:{a[1]}"
    return a


class LinkShape:
    def __init__(self, to, listen=None, *, delay_ms=0, jitter_ms=0, rate=None, seconds=None,
                 extra=()):
        self.dir = Path(tempfile.mkdtemp(prefix="linkshape-"))
        self.ctl_path = self.dir / "ctl"
        if listen is None:
            listen = f"tcp:127.0.0.1:{_free_port()}"
        elif listen == "unix":
            listen = f"unix:{self.dir / 'sock'}"
        self.listen = listen
        self.path = Path(listen[5:]) if listen.startswith("unix:") else None
        self.host, self.port = (None, None) if self.path else (
            listen.rsplit(":", 2)[-2], int(listen.rsplit(":", 1)[1]))
        self.argv = [str(SCRIPT), "--listen", listen, "--to", _addr(to),
                     "--delay-ms", str(delay_ms), "--jitter-ms", str(jitter_ms),
                     "--control", f"unix:{self.ctl_path}", *map(str, extra)]
        if rate:
            self.argv += ["--rate", rate]
        if seconds:
            self.argv += ["--seconds", str(seconds)]
        self.proc = None

    @property
    def address(self):
        """What to connect to: a unix socket path or (host, port)."""
        return str(self.path) if self.path else (self.host, self.port)

    def start(self, timeout=15):
        with open(self.dir / "stderr", "wb") as err:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=err,
                                         start_new_session=True)
        os.set_blocking(self.proc.stdout.fileno(), False)
        out = b""
        deadline = time.monotonic() + timeout
        while b"ready\n" not in out:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.stderr()
                self.stop()
                raise RuntimeError(f"linkshape did not start: {' '.join(self.argv)}: {err}")
            time.sleep(0.02)
            out += self.proc.stdout.read() or b""
        return self

    def stderr(self):
        """What linkshape printed on stderr so far."""
        try:
            return (self.dir / "stderr").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        p = self.proc
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        if p is not None:
            p.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- control ----

    def ctl(self, line):
        """Send one control line; returns what followed "ok" ('' or JSON text)."""
        return _tool.control(self.ctl_path, line)

    def cut(self):
        self.ctl("cut")

    def cut_after(self, n):
        self.ctl(f"cut-after {'off' if n is None else int(n)}")

    def blackhole(self, on=True):
        self.ctl(f"blackhole {'on' if on else 'off'}")

    def reset(self):
        self.ctl("reset")

    def refuse(self, on=True):
        self.ctl(f"refuse {'on' if on else 'off'}")

    def delay(self, ms):
        self.ctl(f"delay {ms}")

    def jitter(self, ms):
        self.ctl(f"jitter {ms}")

    def rate(self, rate):
        self.ctl(f"rate {rate or 'off'}")

    def stats(self):
        return json.loads(self.ctl("stats"))

    def wait_conns_live(self, n, timeout=5):
        deadline = time.monotonic() + timeout
        while True:
            s = self.stats()
            if s["conns_live"] == n or time.monotonic() > deadline:
                return s
            time.sleep(0.02)
