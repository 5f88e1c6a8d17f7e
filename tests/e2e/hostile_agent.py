#!/usr/bin/python3
"""hostile_agent: a scripted malicious sandmount-agent for test_hostile.py. The SSH transport
uploads $SANDMOUNT_AGENT to the sandbox and runs it as `<copy> serve -d DIR`; this script speaks
the mux protocol (lib/proto/mux_proto.h) on stdin/stdout and misbehaves as SCENARIO says. The
test writes one copy per scenario with the settings below filled in (the copy's content
hash names it on the host, and no argument or environment reaches it), plus VERSION, which
HELLO must carry for sandmount to use the agent at all.

SFTP channels are served by hostile_sftp.Server (imported from SFTP_DIR), with its scenario
("endless" for the endless_sftp scenario, else none), within the protocol's credit window.
The protocol violations come when the mount opens the directory "evil" (so a live mount sees
its connection die under a waiting reader), or with "_at_open" at the first OPEN_SFTP (the
mount itself must then fail cleanly). Scenarios:
  huge_frame       a frame length of 2 GiB
  overrun          5 MiB of DATA on the SFTP channel, past the 4 MiB window, without credit
  credit_overflow  a CREDIT of 0xffffffff on the SFTP channel
  garbage          DATA, EOF, EXIT, CHANGED and PARTIAL frames on channels never opened, then
                   normal
  watch_flood      the watch channel gets CHANGED frames (long paths too) and PARTIAL counts
                   (up to 0xffffffff) for 6 seconds
  endless_sftp     the SFTP channel's READDIR of evil never reaches EOF
"""

import os
import select
import struct
import sys
import time

SCENARIO = "none"
SFTP_DIR = "."
VERSION = "0"  # must be sandmount's own, or the agent is refused

sys.path.insert(0, SFTP_DIR)
import hostile_sftp  # noqa: E402

HELLO, OPEN_SFTP, OPEN_SPAWN, OPEN_WATCH, OPEN_OK, OPEN_FAIL = 1, 2, 3, 4, 5, 6
DATA, EOF, CREDIT, SIGNAL, RESIZE, EXIT, CLOSE, CHANGED, OVERFLOW = 7, 8, 9, 10, 11, 12, 13, 14, 15
PARTIAL = 16
WINDOW = 4 * 1024 * 1024
DATA_MAX = 128 * 1024

stdin, stdout = sys.stdin.buffer.raw, sys.stdout.buffer
u32 = hostile_sftp.u32
sstr = hostile_sftp.sstr


def frame(ftype, ch, payload=b""):
    stdout.write(u32(len(payload) + 5) + bytes([ftype]) + u32(ch) + payload)


class Sink:
    """Collects what hostile_sftp.Server writes: the SFTP replies of one channel."""

    def __init__(self):
        self.data = bytearray()

    def write(self, b):
        self.data += b

    def flush(self):
        pass


class Chan:
    def __init__(self, ch):
        self.ch = ch
        self.credit = WINDOW  # what we may still send
        self.inbuf = bytearray()
        self.sink = Sink()
        self.server = hostile_sftp.Server()


def serve_sftp(c, data):
    """Feed request bytes to the channel's SFTP server; its replies land in c.sink."""
    c.inbuf += data
    hostile_sftp.out = c.sink
    while len(c.inbuf) >= 4:
        n = struct.unpack(">I", c.inbuf[:4])[0]
        if len(c.inbuf) < 4 + n:
            break
        pkt = bytes(c.inbuf[4:4 + n])
        del c.inbuf[:4 + n]
        if pkt[0] == hostile_sftp.FXP["INIT"]:
            hostile_sftp.send(hostile_sftp.FXP["VERSION"], u32(3))
            continue
        rid = struct.unpack(">I", pkt[1:5])[0]
        if pkt[0] == hostile_sftp.FXP["OPENDIR"] and pkt.endswith(b"/evil"):
            misbehave(c)
        c.server.handle(pkt[0], rid, pkt[5:])
    frame(CREDIT, c.ch, u32(len(data)))


def flush_sftp(c):
    while c.sink.data and c.credit > 0:
        n = min(len(c.sink.data), c.credit, DATA_MAX)
        frame(DATA, c.ch, b"\0" + bytes(c.sink.data[:n]))
        del c.sink.data[:n]
        c.credit -= n


def misbehave(c):
    scenario = SCENARIO.removesuffix("_at_open")
    if scenario == "huge_frame":
        stdout.write(u32(0x7FFFFFFF) + bytes([DATA]) + u32(c.ch) + b"\0" * 65536)
    elif scenario == "overrun":
        for _ in range(40):
            frame(DATA, c.ch, b"\0" + b"x" * DATA_MAX)
    elif scenario == "credit_overflow":
        frame(CREDIT, c.ch, u32(0xFFFFFFFF))
    elif scenario == "garbage":
        for ch in (777, 0xFFFFFFFF, 12345):
            frame(DATA, ch, b"\0" + b"junk" * 100)
            frame(EOF, ch, b"\0")
            frame(EXIT, ch, u32(0))
            frame(CHANGED, ch, u32(1) + sstr("x"))
            frame(PARTIAL, ch, u32(5))
    stdout.flush()


def flood(ch):
    """One burst of change reports: many paths per frame, paths of 200 KB, partial counts."""
    names = b"".join(sstr(f"dir{i}/" + "p" * 100) for i in range(500))
    for i in range(10):
        frame(CHANGED, ch, u32(500) + names)
        frame(CHANGED, ch, u32(1) + sstr("L" * 200000))
        frame(PARTIAL, ch, u32((i * 0x1FFFFFFF) & 0xFFFFFFFF))


def main():
    if SCENARIO == "endless_sftp":
        hostile_sftp.scenario = "endless"
    frame(HELLO, 0, u32(2) + sstr(VERSION))
    stdout.flush()
    chans, rx = {}, bytearray()
    watch, flood_until = None, 0.0
    os.set_blocking(stdin.fileno(), False)
    while True:
        flooding = watch is not None and time.monotonic() < flood_until
        busy = flooding or any(c.sink.data and c.credit > 0 for c in chans.values())
        r, _, _ = select.select([stdin], [], [], 0 if busy else 1.0)
        if r:
            data = stdin.read(1 << 20)
            if not data:
                return
            rx += data
        while len(rx) >= 4:
            n = struct.unpack(">I", rx[:4])[0]
            if len(rx) < 4 + n:
                break
            ftype, ch, payload = rx[4], struct.unpack(">I", rx[5:9])[0], bytes(rx[9:4 + n])
            del rx[:4 + n]
            if ftype == OPEN_SFTP:
                c = chans[ch] = Chan(ch)
                frame(OPEN_OK, ch, u32(0))
                if len(chans) == 1 and SCENARIO.endswith("_at_open"):
                    misbehave(c)
            elif ftype == OPEN_WATCH:
                frame(OPEN_OK, ch, u32(0))
                if SCENARIO == "watch_flood":
                    watch, flood_until = ch, time.monotonic() + 6
            elif ftype == OPEN_SPAWN:
                frame(OPEN_FAIL, ch, sstr("this agent runs nothing"))
            elif ftype == DATA and ch in chans:
                serve_sftp(chans[ch], payload[1:])
            elif ftype == CREDIT and ch in chans:
                chans[ch].credit += struct.unpack(">I", payload[:4])[0]
            elif ftype == CLOSE:
                chans.pop(ch, None)
        for c in chans.values():
            flush_sftp(c)
        if flooding:
            flood(watch)
        stdout.flush()


if __name__ == "__main__":
    try:
        main()
    except (BrokenPipeError, ConnectionResetError):
        pass
