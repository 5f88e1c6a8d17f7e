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
The list_* scenarios advertise our agent's list@sandmount and lie in its reply for evil:
  list_lying_count  COMPLETE, a count of 1,000,000 and one entry
  list_complete_handle  COMPLETE, yet a handle (then listed in the root as "closed-<handle>"
                    once the client CLOSEs it: nothing may stay open)
  list_endless      a handle without COMPLETE, and READDIR on it never reaches EOF
  list_garbage      an EXTENDED_REPLY of random bytes
"""

import os
import random
import struct
import sys
import time

FXP = dict(INIT=1, VERSION=2, OPEN=3, CLOSE=4, READ=5, WRITE=6, LSTAT=7, FSTAT=8, SETSTAT=9,
           FSETSTAT=10, OPENDIR=11, READDIR=12, REMOVE=13, MKDIR=14, RMDIR=15, REALPATH=16,
           STAT=17, RENAME=18, READLINK=19, SYMLINK=20, EXTENDED=200, STATUS=101, HANDLE=102,
           DATA=103, NAME=104, ATTRS=105, EXTENDED_REPLY=201)
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


def names_body(entries, longname=True):
    body = u32(len(entries))
    for n, mode in entries:
        body += sstr(n) + sstr(n if longname else "") + attrs(mode)
    return body


def name_reply(rid, entries, longname=True):
    send(FXP["NAME"], u32(rid) + names_body(entries, longname))


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
        self.closed = []  # handles of evil the client closed (list_* scenarios)

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
            return name_reply(rid, self.root_entries())
        return self.evil_readdir(rid, h, listed)

    def root_entries(self):
        closed = [("closed-" + h.decode(), S_REG) for h in self.closed]
        return [(".", S_DIR), ("..", S_DIR), ("ok.txt", S_REG), ("evil", S_DIR),
                ("link", S_LNK)] + closed

    def sm_list(self, rid, path):
        """list@sandmount: the whole directory at once, but for evil the scenario's lie."""
        def reply(body):
            send(FXP["EXTENDED_REPLY"], u32(rid) + body)
        if not self.evil(path):
            return reply(u32(1) + sstr("") + names_body(self.root_entries()))
        if scenario == "list_lying_count":
            return reply(u32(1) + sstr("") + u32(1000000) + sstr("one") + sstr("one") +
                         attrs(S_REG))
        if scenario == "list_complete_handle":
            return reply(u32(1) + sstr(self.new_handle(path)) + names_body([("fine", S_REG)]))
        if scenario == "list_endless":
            h = self.new_handle(path)
            self.handles[h][1] = True
            return reply(u32(0) + sstr(h) + names_body([("first", S_REG)]))
        if scenario == "list_garbage":
            return reply(os.urandom(64))
        return reply(u32(1) + sstr("") + names_body([("fine", S_REG)]))

    def evil_readdir(self, rid, h, listed):
        if listed and scenario not in ("endless", "endless_slow", "list_endless"):
            return status(rid, EOF, "eof")
        self.handles[h][1] = True
        if scenario in ("endless", "endless_slow", "list_endless"):
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
            path = self.handles.pop(body[4:4 + n], [""])[0]
            if self.evil(path) and scenario.startswith("list_"):
                self.closed.append(body[4:4 + n])
            return status(rid, OK)
        if ptype == FXP["EXTENDED"] and body.startswith(sstr("list@sandmount")):
            p = body[len(sstr("list@sandmount")):]
            n = struct.unpack(">I", p[:4])[0]
            return self.sm_list(rid, p[4:4 + n].decode(errors="replace"))
        return status(rid, UNSUPPORTED, "unsupported")


def main():
    srv = Server()
    while True:
        length = struct.unpack(">I", read_exact(4))[0]
        pkt = read_exact(length)
        ptype = pkt[0]
        if ptype == FXP["INIT"]:
            ext = sstr("list@sandmount") + sstr("1") if scenario.startswith("list_") else b""
            send(FXP["VERSION"], u32(3) + ext)
            continue
        rid = struct.unpack(">I", pkt[1:5])[0]
        srv.handle(ptype, rid, pkt[5:])


if __name__ == "__main__":
    try:
        main()
    except (BrokenPipeError, ConnectionResetError):
        pass
