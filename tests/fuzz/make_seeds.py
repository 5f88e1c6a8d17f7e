#!/usr/bin/env python3
"""make_seeds.py: writes the hand-made seed corpora of tests/fuzz (corpus/<target>/<name>): valid
packets, frames and replies for each target to start from. The seeds are committed; run this only
to regenerate them after a wire format changes (python3 tests/fuzz/make_seeds.py)."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def u8(v):
    return struct.pack(">B", v)


def u32(v):
    return struct.pack(">I", v)


def u64(v):
    return struct.pack(">Q", v)


def s(b):
    b = b.encode() if isinstance(b, str) else b
    return u32(len(b)) + b


def attrs(size=14, perm=0o100644):
    # size, uid/gid, permissions, atime/mtime, one extended pair
    return u32(0x8000000F) + u64(size) + u32(0) + u32(0) + u32(perm) + u32(1) + u32(2) + \
        u32(1) + s("x@example.com") + s("v")


def sm_attrs(perm=0o40755, nlink=3):
    """attrs as the agent encodes a stat: the v3 fields and the stat@sandmount pair."""
    sm = u32(0x1F) + u64(2049) + u64(1234) + u64(nlink) + u64(0) + \
        b"".join(u64(t) + u32(n) for t, n in ((1, 5), (2, 999999999), (3, 0)))
    return u32(0x8000000F) + u64(4096) + u32(1000) + u32(1000) + u32(perm) + u32(1) + u32(2) + \
        u32(1) + s("stat@sandmount") + s(sm)


# ---- SFTP (v3): packet = u32 length, u8 type, body ----
def pkt(t, body):
    return u32(len(body) + 1) + u8(t) + body


def reply(t, body):  # id 0: the fuzz server fills in the request's id
    return pkt(t, u32(0) + body)


def req(t, rid, body=b""):
    return pkt(t, u32(rid) + body)


STATUS, HANDLE, DATA, NAME, ATTRS, EXT_REPLY = 101, 102, 103, 104, 105, 201
OK = reply(STATUS, u32(0) + s("Success") + s(""))
EOF_ = reply(STATUS, u32(1) + s("End of file") + s(""))
EXTS = ["posix-rename@openssh.com", "statvfs@openssh.com", "fsync@openssh.com",
        "hardlink@openssh.com", "limits@openssh.com"]
VERSION = pkt(2, u32(3) + b"".join(s(x) + s("1") for x in EXTS))
LIMITS = reply(EXT_REPLY, u64(65536 + 1024) + u64(65536) + u64(65536) + u64(0))


def names_body(*ns):
    return u32(len(ns)) + b"".join(s(n) + s("-rw-r--r-- " + n) + attrs() for n in ns)


def names(*ns):
    return reply(NAME, names_body(*ns))


def sftp_codec():
    return {
        "status": u8(0) + u32(4) + s("File exists") + s(""),
        "handle": u8(1) + s(b"\0\0\0\1\0\0\0\1"),
        "name": u8(2) + u32(1) + s("/w/f"),
        "version": u8(3) + u32(3) + b"".join(s(x) + s("1") for x in EXTS),
        "limits": u8(4) + u64(262144) + u64(65536) + u64(65536) + u64(1024),
        "statvfs": u8(5) + b"".join(u64(v) for v in (4096, 4096, 100, 50, 40, 1000, 900, 900,
                                                      7, 1, 255)),
        "data": u8(6) + s(b"0123456789"),
        "attrs": u8(7) + attrs() + u32(0),
    }


def sftp_reply():
    hello = VERSION + LIMITS
    every = hello + b"".join([
        reply(ATTRS, attrs()),                      # stat
        reply(HANDLE, s("h1")),                     # open
        reply(DATA, s(b"x" * 100)), EOF_,           # read (two requests)
        OK, OK,                                     # write (two requests)
        reply(ATTRS, attrs()),                      # fstat
        OK,                                         # fsync
        OK,                                         # close
        reply(HANDLE, s("d1")), names(".", "..", "a", "b"), EOF_, OK,  # list_dir
        names("f"),                                 # readlink
        names("/w"),                                # realpath
        reply(EXT_REPLY, b"".join(u64(v) for v in range(11))),  # statvfs
    ])
    return {
        "every_op": u8(0) + every,
        "no_extensions": u8(0) + pkt(2, u32(3)) + reply(ATTRS, attrs()),
        "failures": u8(0) + hello + reply(STATUS, u32(2) + s("No such file") + s("")) +
        reply(STATUS, u32(4) + s("File exists") + s("")),
        "open_stat": u8(11) + hello + reply(HANDLE, s("h2")) + reply(ATTRS, attrs()) + OK + OK,
        "dir": u8(7) + hello + reply(HANDLE, s("d1")) + names("a") + EOF_ + OK,
        # open (a handle), then open-read@sandmount: handle, attributes, the first bytes
        "open_read": u8(1) + pkt(2, u32(3) + s("open-read@sandmount") + s("1")) +
        reply(HANDLE, s("h1")) + reply(EXT_REPLY, s("h3") + attrs() + s(b"y" * 14)),
        # list@sandmount: a whole directory in one reply, then one that goes on with READDIR
        "list": u8(7) + pkt(2, u32(3) + s("list@sandmount") + s("1")) +
        reply(EXT_REPLY, u32(1) + s("") + names_body(".", "a", "b")) +
        reply(EXT_REPLY, u32(0) + s("d2") + names_body("c")) + names("d") + EOF_ + OK,
        # read-files@sandmount: two files and a resume name, then the rest
        "read_files": u8(17) + pkt(2, u32(3) + s("read-files@sandmount") + s("1")) +
        reply(EXT_REPLY, s("b") + u32(2) + s("a") + attrs(3, 0o100644) + s(b"abc") +
              s("b") + attrs(0, 0o100600) + s(b"")) +
        reply(EXT_REPLY, s("") + u32(1) + s("c") + attrs(1, 0o100644) + s(b"z")),
    }


# ---- the agent mux protocol: frame = u32 length, u8 type, u32 channel, payload ----
def frame(t, ch, body=b""):
    return u32(len(body) + 5) + u8(t) + u32(ch) + body


HELLO, OPEN_SFTP, OPEN_SPAWN, OPEN_WATCH, OPEN_OK, OPEN_FAIL = 1, 2, 3, 4, 5, 6
MDATA, MEOF, CREDIT, SIGNAL, RESIZE, EXIT, CLOSE, CHANGED, OVERFLOW = range(7, 16)
PARTIAL, CHANGED_INSIDE = 16, 17
MUX_VERSION = 3


def seg(b):
    return u32(len(b)) + b


def mux_frames():
    hello = frame(HELLO, 0, u32(MUX_VERSION) + s("0.1.0"))
    watch = frame(OPEN_OK, 1, u32(0)) + frame(CHANGED, 1, u32(2) + s("a") + s("d/b")) + \
        frame(OVERFLOW, 1)
    # CHANGED_INSIDE: a directory with its attributes, a file without, the watched dir itself
    inside = frame(CHANGED_INSIDE, 1, u32(3) + s("d") + u8(1) + sm_attrs() + s("d/f") + u8(0) +
                   s("") + u8(1) + sm_attrs(nlink=2))
    watch_inside = frame(OPEN_OK, 1, u32(0)) + inside + frame(CHANGED, 1, u32(1) + s("d/g")) + \
        frame(PARTIAL, 1, u32(3)) + frame(CHANGED_INSIDE, 1, u32(1) + s("d/g") + u8(0))
    # the attributes cut short: a malformed frame
    truncated = frame(OPEN_OK, 1, u32(0)) + frame(CHANGED_INSIDE, 1, u32(1) + s("d") + u8(1) +
                                                  sm_attrs()[:40])
    sftp = frame(OPEN_OK, 2, u32(0)) + frame(MDATA, 2, u8(0) + VERSION)
    spawn = frame(OPEN_OK, 3, u32(42)) + frame(MDATA, 3, u8(0) + b"out\n") + \
        frame(MDATA, 3, u8(1) + b"err\n") + frame(MEOF, 3, u8(0)) + frame(MEOF, 3, u8(1)) + \
        frame(CHANGED, 1, u32(1) + s("")) + frame(EXIT, 3, u32(0))
    spawn_inside = frame(OPEN_OK, 3, u32(7)) + frame(MEOF, 3, u8(0)) + frame(MEOF, 3, u8(1)) + \
        frame(CHANGED_INSIDE, 1, u32(2) + s("d/f") + u8(0) + s("d") + u8(1) + sm_attrs()) + \
        frame(EXIT, 3, u32(0))
    return {
        "all_channels": seg(hello) + seg(watch) + seg(sftp) + spawn,
        "watch_inside": seg(hello) + seg(watch_inside) + seg(sftp) + spawn_inside,
        "inside_truncated": seg(hello) + seg(truncated),
        "open_fails": seg(hello) + seg(frame(OPEN_FAIL, 1, s("inotify: no"))) +
        seg(frame(OPEN_FAIL, 2, s("no sftp"))) + frame(OPEN_FAIL, 3, s("sh: not found")),
        "hello_only": seg(hello),
    }


def agent_mux():
    spawn = s("echo hi") + s("/ws") + u32(1) + s("A=B") + u8(1) + s("xterm") + u32(24) + u32(80)
    return {
        "session": frame(OPEN_WATCH, 1, s("/ws")) + frame(MDATA, 1, u8(0) + b"x") +
        frame(CREDIT, 1, u32(0)) + frame(SIGNAL, 1, u32(15)) + frame(RESIZE, 1, u32(24) + u32(80)) +
        frame(MEOF, 1, u8(0)) + frame(OPEN_SPAWN, 2, spawn) + frame(OPEN_SFTP, 3) +
        frame(CLOSE, 1),
        "watch_relative": frame(OPEN_WATCH, 7, s("ws")) + frame(CLOSE, 7),
    }


def agent_sftp():
    init = pkt(1, u32(3))

    def h(gen):  # the server's handle: slot 0, generation gen
        return s(u32(0) + u32(gen))
    session = init + b"".join([
        req(3, 1, s("/ws/file") + u32(1) + u32(0)),                      # OPEN read: slot 0 gen 1
        req(5, 2, h(1) + u64(0) + u32(100)),                              # READ
        req(8, 3, h(1)),                                                  # FSTAT
        req(4, 4, h(1)),                                                  # CLOSE
        req(17, 5, s("/ws/file")), req(7, 6, s("/ws/link")),              # STAT, LSTAT
        req(11, 7, s("/ws")), req(12, 8, h(2)), req(12, 9, h(2)), req(4, 10, h(2)),  # dir
        req(16, 11, s(".")), req(19, 12, s("/ws/link")),                  # REALPATH, READLINK
        req(3, 13, s("/ws/out") + u32(0x1a) + u32(4) + u32(0o644)),       # OPEN create: gen 3
        req(6, 14, h(3) + u64(0) + s("data")),                            # WRITE
        req(10, 15, h(3) + u32(1) + u64(2)),                              # FSETSTAT size
        req(4, 16, h(3)),
        req(14, 17, s("/ws/d") + u32(0)), req(15, 18, s("/ws/d")),        # MKDIR, RMDIR
        req(18, 19, s("/ws/out") + s("/ws/out2")),                        # RENAME
        req(200, 20, s("posix-rename@openssh.com") + s("/ws/out2") + s("/ws/out")),
        req(200, 21, s("hardlink@openssh.com") + s("/ws/out") + s("/ws/hl")),
        req(200, 22, s("statvfs@openssh.com") + s("/ws")),
        req(200, 23, s("limits@openssh.com")),
        req(20, 24, s("file") + s("/ws/sl")),                             # SYMLINK
        req(13, 25, s("/ws/sl")), req(13, 26, s("/ws/hl")), req(13, 27, s("/ws/out")),
        req(9, 28, s("/ws/file") + u32(4) + u32(0o644)),                  # SETSTAT
        req(200, 29, s("no-such@example.com")),
    ])
    open_read = init + b"".join([
        req(200, 1, s("open-read@sandmount") + s("/ws/file") + u32(100)),  # slot 0 gen 1
        req(5, 2, h(1) + u64(100) + u32(100)), req(4, 3, h(1)),
        req(200, 4, s("open-read@sandmount") + s("/ws")),                 # no length
    ])
    sm_list = init + b"".join([
        req(200, 1, s("list@sandmount") + s("/ws")),                      # complete: no handle
        req(200, 2, s("list@sandmount") + s("/ws/file")),                 # not a directory
        req(200, 3, s("list@sandmount")),                                 # no path
    ])
    read_files = init + b"".join([
        req(200, 1, s("read-files@sandmount") + s("/ws") + u32(65536) + s("")),
        req(200, 2, s("read-files@sandmount") + s("/ws") + u32(10) + s("file")),
        req(200, 3, s("read-files@sandmount") + s("/ws/file") + u32(10) + s("")),  # not a dir
        req(200, 4, s("read-files@sandmount") + s("/ws") + u32(10)),      # no resume name
    ])
    return {"session": session, "init_only": init, "bad_length": u32(0xffffffff),
            "open_read": open_read, "list": sm_list, "read_files": read_files}


def docker_json():
    return {
        "error": json.dumps({"message": "No such container: x"}).encode(),
        "exited": json.dumps({"ID": "abc", "Running": False, "ExitCode": 3, "Pid": 42}).encode(),
        "running": json.dumps({"ID": "abc", "Running": True, "ExitCode": None}).encode(),
    }


def stdcopy_frame(stream, b):
    return u8(stream) + b"\0\0\0" + u32(len(b)) + b


def stdcopy():
    return {
        "frames": u8(0) + u8(6) + stdcopy_frame(1, b"hello\n") + stdcopy_frame(2, b"oops\n"),
        "smpid": u8(2) + u8(3) + stdcopy_frame(1, b"SMPID:123\nout") + stdcopy_frame(2, b"e"),
        "tty": u8(3) + u8(255) + b"SMPID:5\nhi there\r\n",
        "stderr_log": u8(4) + u8(0) + stdcopy_frame(2, b"warning: x\n"),
    }


def http_upgrade():
    head = b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n" \
        b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
    body = json.dumps({"message": "No such exec instance: x"}).encode()
    return {
        "upgraded": head + stdcopy_frame(1, b"SMPID:7\nhi"),
        "ok": b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n",
        "not_found": b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n" +
        b"Content-Length: %d\r\n\r\n" % len(body) + body,
    }


def ctl(t, body=b""):
    return u32(len(body) + 1) + u8(t) + body


def ctl_proto():
    exec_ = u32(1) + s("ls -l") + s("sub") + u32(24) + u32(80) + s("xterm") + u32(1) + s("A=B")
    return {
        "exec": ctl(1, exec_) + ctl(2, u32(2)) + ctl(3, u32(30) + u32(100)) + ctl(4),
        "replies": ctl(64, u32(0)) + ctl(65, u32(125) + s("no")) + ctl(66, s("status text")),
    }


def config():
    cfg = {"local_fallback": True, "env_allow": ["LANG", "LC_*"],
           "sandboxes": {"box": {"url": "ssh://me@host:2222/work", "mountpoint": "/mnt/box",
                                 "options": {"identity": "/k", "accept_new_host_key": True,
                                             "op_timeout": 5, "cache_timeout": 0.5}},
                         "dock": {"url": "docker://c1/workspace",
                                  "options": {"agent": "off", "docker_host": "unix:///x"}}}}
    text = json.dumps(cfg).encode()
    return {
        "name": b"box\nro,op_timeout=9,allow_other\n" + text,
        "docker": b"dock\nagent=on,agent_dir=/tmp/a\n" + text,
        "url": b"ssh://h/w\nport=22,keepalive=0\n{}",
        "docker_url": b"docker://ctr/w\ndocker_context=default\n{\"sandboxes\": {}}",
    }


def main():
    for target, seeds in {
        "fuzz_sftp_codec": sftp_codec(), "fuzz_sftp_reply": sftp_reply(),
        "fuzz_mux_frames": mux_frames(), "fuzz_agent_sftp": agent_sftp(),
        "fuzz_agent_mux": agent_mux(), "fuzz_docker_json": docker_json(),
        "fuzz_stdcopy": stdcopy(), "fuzz_http_upgrade": http_upgrade(),
        "fuzz_ctl_proto": ctl_proto(), "fuzz_config": config(),
    }.items():
        d = os.path.join(HERE, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
