#!/usr/bin/env python3
"""hostile_sftp: a scripted malicious SFTP v3 server for the hostile-peer tests (test_hostile.py).

Speaks SFTP v3 on stdin/stdout; sandmount runs it with -o sftp_server='python3 hostile_sftp.py
SCENARIO' (an exec channel of the testbed's sshd, as the sandbox user). It serves a small fake
tree so the mount comes up normally:

    <root>/ok.txt      a regular file ("fine\\n")
    <root>/evil        a directory: listing it (and reading evil/file) triggers the scenario
    <root>/link        a symlink; READLINK of it triggers the "longlink" scenario

Everything the scenario does not touch is answered correctly. Scenarios (argv[1]):
  endless     READDIR of evil never reaches EOF: batches of fresh names forever
  endless_slow  the same, one batch every 0.2 s (each reply in time, the listing never ends)
  badnames    names with '/', '.', '..', '../../etc', '', 300 bytes, duplicates; then EOF
  nulname     a name with a NUL byte in it
  lying_count a NAME reply that claims 1,000,000 entries and holds one
  lying_len   a NAME reply whose name string claims 4 GiB
  wrong_id    the READDIR reply carries an id nobody asked for
  long_reply  READ of evil/file returns more bytes than asked
  drip        the READDIR reply is sent one byte per second
  flood       a flood of unsolicited STATUS replies (random ids) on READDIR
  huge_packet a packet length of 2 GiB on READDIR
  silent      READDIR of evil is never answered
  longlink    READLINK of link returns a target just under 1 MiB
"""

import os
import random
import struct
import sys
import time

FXP = dict(INIT=1, VERSION=2, OPEN=3, CLOSE=4, READ=5, WRITE=6, LSTAT=7, FSTAT=8, SETSTAT=9,
           FSETSTAT=10, OPENDIR=11, READDIR=12, REMOVE=13, MKDIR=14, RMDIR=15, REALPATH=16,
           STAT=17, RENAME=18, READLINK=19, SYMLINK=20, STATUS=101, HANDLE=102, DATA=103,
           NAME=104, ATTRS=105)
OK, EOF, NO_SUCH_FILE, FAILURE, UNSUPPORTED = 0, 1, 2, 4, 8
S_DIR, S_REG, S_LNK = 0o040755, 0o100644, 0o120777

out = sys.stdout.buffer
scenario = sys.argv[1] if len(sys.argv) > 1 else "none"


def u32(n):
    return struct.pack(">I", n)


def sstr(b):
    if isinstance(b, str):
        b = b.encode()
    return u32(len(b)) + b


def attrs(mode, size=0):
    return u32(0x1 | 0x4 | 0x8) + struct.pack(">Q", size) + u32(mode) + u32(0) + u32(0)


def send(ptype, payload):
    out.write(u32(len(payload) + 1) + bytes([ptype]) + payload)
    out.flush()


def status(rid, code, msg=""):
    send(FXP["STATUS"], u32(rid) + u32(code) + sstr(msg) + sstr(""))


def name_reply(rid, entries, longname=True):
    body = u32(len(entries))
    for n, mode in entries:
        body += sstr(n) + sstr(n if longname else "") + attrs(mode)
    send(FXP["NAME"], u32(rid) + body)


def read_exact(n):
    data = b""
    while len(data) < n:
        chunk = sys.stdin.buffer.read(n - len(data))
        if not chunk:
            sys.exit(0)
        data += chunk
    return data


class Server:
    def __init__(self):
        self.handles = {}  # handle -> [path, listed?]
        self.next_handle = 0
        self.batch = 0

    def kind(self, path):
        base = path.rstrip("/").rsplit("/", 1)[-1]
        if base == "ok.txt" or base == "file":
            return S_REG
        if base == "link":
            return S_LNK
        return S_DIR

    def new_handle(self, path):
        self.next_handle += 1
        h = b"h%d" % self.next_handle
        self.handles[h] = [path, False]
        return h

    def evil(self, path):
        return path.rstrip("/").endswith("/evil")

    def readdir(self, rid, h):
        path, listed = self.handles[h]
        if not self.evil(path):
            if listed:
                return status(rid, EOF, "eof")
            self.handles[h][1] = True
            return name_reply(rid, [(".", S_DIR), ("..", S_DIR), ("ok.txt", S_REG),
                                    ("evil", S_DIR), ("link", S_LNK)])
        return self.evil_readdir(rid, h, listed)

    def evil_readdir(self, rid, h, listed):
        if listed and scenario not in ("endless", "endless_slow"):
            return status(rid, EOF, "eof")
        self.handles[h][1] = True
        if scenario in ("endless", "endless_slow"):
            if scenario == "endless_slow":
                time.sleep(0.2)
            self.batch += 1
            return name_reply(rid, [(f"n{self.batch}-{i}-{'x' * 40}", S_REG) for i in range(100)])
        if scenario == "badnames":
            return name_reply(rid, [("a/b", S_REG), (".", S_DIR), ("..", S_DIR),
                                    ("../../etc", S_DIR), ("", S_REG), ("x" * 300, S_REG),
                                    ("good", S_REG), ("good", S_DIR), ("fine", S_REG),
                                    ("good", S_REG)])
        if scenario == "nulname":
            return name_reply(rid, [("a\0b", S_REG), ("fine", S_REG)])
        if scenario == "lying_count":
            body = u32(1000000) + sstr("one") + sstr("one") + attrs(S_REG)
            return send(FXP["NAME"], u32(rid) + body)
        if scenario == "lying_len":
            return send(FXP["NAME"], u32(rid) + u32(1) + u32(0xFFFFFFF0) + b"abc")
        if scenario == "wrong_id":
            return name_reply(rid + 1000, [("fine", S_REG)])
        if scenario == "drip":
            pkt = u32(40) + bytes([FXP["NAME"]]) + u32(rid) + b"\0" * 35
            for b in pkt:
                out.write(bytes([b]))
                out.flush()
                time.sleep(1)
            return None
        if scenario == "flood":
            for _ in range(200000):
                status(random.randrange(1 << 31, 1 << 32), OK)
            return None
        if scenario == "huge_packet":
            out.write(u32(0x7FFFFFFF) + b"\x68" * 65536)
            out.flush()
            return None
        if scenario == "silent":
            return None
        return status(rid, EOF, "eof")

    def handle(self, ptype, rid, body):
        def path_arg():
            n = struct.unpack(">I", body[:4])[0]
            return body[4:4 + n].decode(errors="replace"), body[4 + n:]

        if ptype == FXP["REALPATH"]:
            p, _ = path_arg()
            p = os.path.normpath("/" + p) if p not in ("", ".") else "/"
            return name_reply(rid, [(p, S_DIR)])
        if ptype in (FXP["STAT"], FXP["LSTAT"]):
            p, _ = path_arg()
            mode = self.kind(p)
            if ptype == FXP["STAT"] and mode == S_LNK:
                mode = S_REG
            return send(FXP["ATTRS"], u32(rid) + attrs(mode, 5 if mode == S_REG else 0))
        if ptype == FXP["OPENDIR"]:
            p, _ = path_arg()
            return send(FXP["HANDLE"], u32(rid) + sstr(self.new_handle(p)))
        if ptype == FXP["OPEN"]:
            p, _ = path_arg()
            return send(FXP["HANDLE"], u32(rid) + sstr(self.new_handle(p)))
        if ptype == FXP["READDIR"]:
            n = struct.unpack(">I", body[:4])[0]
            return self.readdir(rid, body[4:4 + n])
        if ptype == FXP["READ"]:
            n = struct.unpack(">I", body[:4])[0]
            h = body[4:4 + n]
            off, length = struct.unpack(">QI", body[4 + n:4 + n + 12])
            path = self.handles.get(h, ["?"])[0]
            data = b"fine\n"[off:] if off < 5 else b""
            if scenario == "long_reply" and path.endswith("/file"):
                data = b"A" * (length + 4096)
            if not data:
                return status(rid, EOF, "eof")
            return send(FXP["DATA"], u32(rid) + sstr(data))
        if ptype == FXP["READLINK"]:
            target = "ok.txt"
            if scenario == "longlink":
                target = "t" * (1024 * 1024 - 200)
            return name_reply(rid, [(target, S_REG)], longname=False)
        if ptype == FXP["CLOSE"]:
            n = struct.unpack(">I", body[:4])[0]
            self.handles.pop(body[4:4 + n], None)
            return status(rid, OK)
        return status(rid, UNSUPPORTED, "unsupported")


def main():
    srv = Server()
    while True:
        length = struct.unpack(">I", read_exact(4))[0]
        pkt = read_exact(length)
        ptype = pkt[0]
        if ptype == FXP["INIT"]:
            send(FXP["VERSION"], u32(3))
            continue
        rid = struct.unpack(">I", pkt[1:5])[0]
        srv.handle(ptype, rid, pkt[5:])


if __name__ == "__main__":
    try:
        main()
    except (BrokenPipeError, ConnectionResetError):
        pass
