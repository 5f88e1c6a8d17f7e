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
  garbage          DATA, EOF, EXIT, CHANGED, CHANGED_INSIDE (malformed ones too) and PARTIAL
                   frames on channels never opened, then normal
  watch_flood      the watch channel gets CHANGED and CHANGED_INSIDE frames (long paths, many
                   entries, directory attributes) and PARTIAL counts (up to 0xffffffff) for 6
                   seconds
  inside_count     on the watch channel: a CHANGED_INSIDE whose count is far past its entries
  inside_attrs     on the watch channel: a CHANGED_INSIDE whose attributes are cut short
  inside_follow    on the watch channel: a CHANGED_INSIDE with attrs_follow 7
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
MUX_VERSION = 3  # lib/proto/mux_proto.h's MUX_PROTO_VERSION

WATCH = None  # the watch channel, once opened

sys.path.insert(0, SFTP_DIR)
import hostile_sftp  # noqa: E402

HELLO, OPEN_SFTP, OPEN_SPAWN, OPEN_WATCH, OPEN_OK, OPEN_FAIL = 1, 2, 3, 4, 5, 6
DATA, EOF, CREDIT, SIGNAL, RESIZE, EXIT, CLOSE, CHANGED, OVERFLOW = 7, 8, 9, 10, 11, 12, 13, 14, 15
PARTIAL, CHANGED_INSIDE = 16, 17
WINDOW = 4 * 1024 * 1024
DATA_MAX = 128 * 1024

stdin, stdout = sys.stdin.buffer.raw, sys.stdout.buffer
u32 = hostile_sftp.u32
sstr = hostile_sftp.sstr


def frame(ftype, ch, payload=b""):
    stdout.write(u32(len(payload) + 5) + bytes([ftype]) + u32(ch) + payload)


def dir_attrs(nlink=2):
    """A directory's attributes as the agent sends them: SFTP v3 attrs + stat@sandmount."""
    sm = u32(0x1F) + struct.pack(">QQQQ", 2049, 1234, nlink, 0) + \
        b"".join(struct.pack(">QI", 1700000000, 5) for _ in range(3))
    return u32(0x8000000F) + struct.pack(">Q", 4096) + u32(1000) + u32(1000) + u32(0o40755) + \
        u32(1) + u32(2) + u32(1) + sstr("stat@sandmount") + sstr(sm)


def inside(path, attrs=None, follow=None):
    """One CHANGED_INSIDE entry: path, attrs_follow, the attributes."""
    if follow is None:
        follow = 1 if attrs is not None else 0
    return sstr(path) + bytes([follow]) + (attrs or b"")


# The malformed CHANGED_INSIDE frames: name -> payload. Each breaks the protocol.
BAD_INSIDE = {
    "count": u32(0x7FFFFFFF) + inside("d"),                       # count far past its entries
    "attrs": u32(1) + inside("d", dir_attrs()[:30]),              # attributes cut short
    "follow": u32(1) + inside("d", dir_attrs(), follow=7),       # attrs_follow neither 0 nor 1
    "nul": u32(1) + inside("d\0x"),                              # a NUL in the path
}


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
            frame(CHANGED_INSIDE, ch, u32(2) + inside("x") + inside("y", dir_attrs()))
            for bad in BAD_INSIDE.values():
                frame(CHANGED_INSIDE, ch, bad)
            frame(PARTIAL, ch, u32(5))
    elif scenario.startswith("inside_") and WATCH is not None:
        frame(CHANGED_INSIDE, WATCH, u32(1) + inside("ok", dir_attrs()))
        frame(CHANGED_INSIDE, WATCH, BAD_INSIDE[scenario.removeprefix("inside_")])
    stdout.flush()


FLOOD_NAMES = b"".join(sstr(f"dir{i}/" + "p" * 100) for i in range(500))
# directories with their attributes; files without (many short entries in one frame)
FLOOD_DIRS = b"".join(inside(f"dir{i}/" + "q" * 100, dir_attrs(i)) for i in range(500))
FLOOD_FILES = b"".join(inside(f"f{i}") for i in range(2000))


def flood(ch):
    """One burst of change reports: many paths per frame, paths of 200 KB, partial counts."""
    for i in range(10):
        frame(CHANGED, ch, u32(500) + FLOOD_NAMES)
        frame(CHANGED, ch, u32(1) + sstr("L" * 200000))
        frame(CHANGED_INSIDE, ch, u32(500) + FLOOD_DIRS)
        frame(CHANGED_INSIDE, ch, u32(2000) + FLOOD_FILES)
        frame(CHANGED_INSIDE, ch, u32(2) + inside("M" * 50000, dir_attrs()) + inside("m"))
        frame(PARTIAL, ch, u32((i * 0x1FFFFFFF) & 0xFFFFFFFF))


def main():
    global WATCH
    if SCENARIO == "endless_sftp":
        hostile_sftp.scenario = "endless"
    frame(HELLO, 0, u32(MUX_VERSION) + sstr(VERSION))
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
                WATCH = ch
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
