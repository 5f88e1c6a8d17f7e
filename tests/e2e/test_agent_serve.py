"""sandmount-agent serve driven by a raw client over its stdin/stdout: what leaves when.

Over SSH the agent's stream goes through sshd, which runs with Nagle's algorithm on for sessions
without a terminal: a small frame written on its own just ahead of a reply (a CREDIT for every
request, as the agent once sent) makes the reply wait until that frame is acknowledged.
The binary is $SANDMOUNT_BUILD/agent/sandmount-agent (default: build/ at the repository root).
"""
import os
import select
import struct
import subprocess
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("SANDMOUNT_BUILD", os.path.join(REPO, "build"))
AGENT = os.path.join(BUILD, "agent", "sandmount-agent")

# lib/proto/mux_proto.h
OPEN_SFTP, OPEN_WATCH, OPEN_OK, DATA, CHANGED, CHANGED_INSIDE = 2, 4, 5, 7, 14, 17
REPORTS = (CHANGED, CHANGED_INSIDE)
WATCH_CH, SFTP_CH = 1, 2
# SFTP v3
INIT, VERSION, STAT, ATTRS = 1, 2, 17, 105
QUIET_MS = 100


def s(x):
    x = x.encode() if isinstance(x, str) else x
    return struct.pack(">I", len(x)) + x


class Client:
    """The agent on a pipe pair; every read() of its output is kept apart, with its time."""

    def __init__(self, workspace):
        self.p = subprocess.Popen([AGENT, "serve", "-d", str(workspace)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.fd = self.p.stdout.fileno()
        self.pending = b""
        self.sftp_in = b""

    def send(self, ftype, ch, payload=b""):
        self.p.stdin.write(struct.pack(">IBI", 5 + len(payload), ftype, ch) + payload)
        self.p.stdin.flush()

    def read_chunk(self, timeout):
        """The frames one read() returned, or [] on timeout."""
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return []
        data = os.read(self.fd, 1 << 20)
        assert data, "the agent closed its stream: " + self.p.stderr.read().decode(errors="replace")
        self.pending += data
        frames = []
        while len(self.pending) >= 4:
            (n,) = struct.unpack(">I", self.pending[:4])
            if len(self.pending) < 4 + n:
                break
            body, self.pending = self.pending[4:4 + n], self.pending[4 + n:]
            frames.append((body[0], struct.unpack(">I", body[1:5])[0], body[5:]))
        return frames

    def sftp(self, packet):
        self.send(DATA, SFTP_CH, b"\0" + s(packet))

    def sftp_reply_in(self, frames):
        """Feed the SFTP channel's bytes; the complete reply, if one is now in."""
        for ftype, ch, body in frames:
            if ftype == DATA and ch == SFTP_CH:
                self.sftp_in += body[1:]
        if len(self.sftp_in) < 4:
            return None
        (n,) = struct.unpack(">I", self.sftp_in[:4])
        if len(self.sftp_in) < 4 + n:
            return None
        reply, self.sftp_in = self.sftp_in[4:4 + n], self.sftp_in[4 + n:]
        return reply

    def close(self):
        self.p.stdin.close()
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


@pytest.fixture
def client(tmp_path):
    if not os.access(AGENT, os.X_OK):
        pytest.fail(f"no agent binary at {AGENT} (set SANDMOUNT_BUILD)")
    ws = tmp_path / "ws"
    ws.mkdir()
    c = Client(ws)
    c.ws = ws
    try:
        c.send(OPEN_WATCH, WATCH_CH, s(str(ws)) + struct.pack(">I", 0))
        c.send(OPEN_SFTP, SFTP_CH)
        opened = set()
        deadline = time.monotonic() + 10
        while opened != {WATCH_CH, SFTP_CH}:
            assert time.monotonic() < deadline, "the agent did not open the channels"
            opened |= {ch for ftype, ch, _ in c.read_chunk(1) if ftype == OPEN_OK}
        c.sftp(bytes([INIT]) + struct.pack(">I", 3))
        reply = None
        while reply is None:
            assert time.monotonic() < deadline, "no SFTP version"
            reply = c.sftp_reply_in(c.read_chunk(1))
        assert reply[0] == VERSION
        yield c
    finally:
        c.close()


def reported(frames):
    return [f for f in frames if f[0] in REPORTS and f[1] == WATCH_CH]


def test_nothing_ahead_of_replies_and_every_change_reported(client):
    """A request every ~5 ms; the workspace changes now and then. Nothing but a change report
    is written on its own ahead of a reply, and every change is reported."""
    ahead, made, body = [], [], b""
    last_request = time.monotonic()
    for i in range(120):
        if i % 10 == 5:
            name = f"f{i}"
            (client.ws / name).write_bytes(b"x")
            made.append(name)
        client.sftp(bytes([STAT]) + struct.pack(">I", i + 1) + s("."))
        last_request = time.monotonic()
        reply = None
        deadline = last_request + 10
        while reply is None:
            assert time.monotonic() < deadline, f"no reply to request {i + 1}"
            frames = client.read_chunk(1)
            reply = client.sftp_reply_in(frames)
            if reply is None and any(f[0] not in REPORTS for f in frames):
                ahead.append(f"request {i + 1}: frame types {[f[0] for f in frames]}")
            body += b"".join(f[2] for f in reported(frames))
        assert reply[0] == ATTRS, reply
        pause_end = time.monotonic() + 0.005
        while (left := pause_end - time.monotonic()) > 0:  # between requests: nothing expected
            frames = client.read_chunk(left)
            body += b"".join(f[2] for f in reported(frames))
    assert not ahead, "frames written ahead of a reply, on their own: " + "; ".join(ahead)
    # the last ones leave once the client is quiet
    names = set(made)
    deadline = time.monotonic() + 5
    seen = {n for n in names if s(n) in body}
    while time.monotonic() < deadline and not names <= seen:
        body += b"".join(f[2] for f in reported(client.read_chunk(0.2)))
        seen = {n for n in names if s(n) in body}
    assert names <= seen, f"never reported: {sorted(names - seen)}"


def test_report_leaves_alone_once_the_client_is_quiet(client):
    """With nothing asked for a while, a change is reported on its own within a second."""
    time.sleep(QUIET_MS * 2 / 1000)
    client.read_chunk(0)
    t0 = time.monotonic()
    (client.ws / "lonely").write_bytes(b"x")
    body = b""
    while b"lonely" not in body:
        assert time.monotonic() - t0 < 1.0, "the change was not reported within a second"
        for _, _, b in reported(client.read_chunk(0.1)):
            body += b
