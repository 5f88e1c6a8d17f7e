"""End-to-end tests of sandmount-agent's SFTP v3 server (agent/sftp_server*.c).

Independent clients talk to the agent: OpenSSH's sftp (-D runs a local server), sshfs in passive
mode (SFTP over its stdin/stdout), and a small raw-protocol client here for what those do not
reach (argument orders, limits, batching, malformed input). The binary is taken from
$SANDMOUNT_BUILD/agent/sandmount-agent (default: build/ at the repository root).
Run: /usr/bin/python3 -m pytest tests/e2e/test_agent_sftp.py
"""
import hashlib
import os
import random
import shutil
import struct
import subprocess
import threading
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("SANDMOUNT_BUILD", os.path.join(REPO, "build"))
AGENT = os.path.join(BUILD, "agent", "sandmount-agent")

# SFTP v3 constants (draft-ietf-secsh-filexfer-02, OpenSSH's sftp.h)
INIT, VERSION, OPEN, CLOSE, READ, WRITE, LSTAT, FSTAT = 1, 2, 3, 4, 5, 6, 7, 8
SETSTAT, OPENDIR, READDIR, REMOVE, MKDIR, RMDIR, REALPATH = 9, 11, 12, 13, 14, 15, 16
STAT, RENAME, READLINK, SYMLINK, EXTENDED = 17, 18, 19, 20, 200
STATUS, HANDLE, DATA, NAME, ATTRS, EXTENDED_REPLY = 101, 102, 103, 104, 105, 201
FX_OK, FX_EOF, FX_NO_SUCH_FILE, FX_FAILURE, FX_OP_UNSUPPORTED = 0, 1, 2, 4, 8
F_READ, F_WRITE, F_APPEND, F_CREAT, F_TRUNC, F_EXCL = 1, 2, 4, 8, 0x10, 0x20
ATTR_SIZE, ATTR_PERM = 1, 4


@pytest.fixture(scope="session")
def agent():
    if not os.access(AGENT, os.X_OK):
        pytest.fail(f"no agent binary at {AGENT} (set SANDMOUNT_BUILD)")
    return AGENT


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def s(x):
    """An SFTP string."""
    if isinstance(x, str):
        x = x.encode()
    return struct.pack(">I", len(x)) + x


class Raw:
    """A minimal synchronous SFTP v3 client over the agent's stdin/stdout."""

    def __init__(self, agent, cwd):
        self.p = subprocess.Popen([agent, "sftp", "-d", str(cwd)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.next_id = 1
        self.send_packet(bytes([INIT]) + struct.pack(">I", 3))
        body = self.recv_packet()
        assert body[0] == VERSION
        assert struct.unpack(">I", body[1:5])[0] == 3
        self.extensions = {}
        rest = body[5:]
        while rest:
            name, rest = self.take_string(rest)
            version, rest = self.take_string(rest)
            self.extensions[name.decode()] = version.decode()

    @staticmethod
    def take_string(b):
        n = struct.unpack(">I", b[:4])[0]
        return b[4:4 + n], b[4 + n:]

    def send_packet(self, body):
        self.p.stdin.write(struct.pack(">I", len(body)) + body)
        self.p.stdin.flush()

    def recv_packet(self):
        head = self.p.stdout.read(4)
        assert len(head) == 4, "agent closed its output"
        n = struct.unpack(">I", head)[0]
        body = self.p.stdout.read(n)
        assert len(body) == n
        return body

    def request(self, ptype, payload):
        rid = self.next_id
        self.next_id += 1
        self.send_packet(bytes([ptype]) + struct.pack(">I", rid) + payload)
        body = self.recv_packet()
        assert struct.unpack(">I", body[1:5])[0] == rid
        return body[0], body[5:]

    def status(self, ptype, payload):
        t, rest = self.request(ptype, payload)
        assert t == STATUS, f"expected STATUS, got {t}"
        code = struct.unpack(">I", rest[:4])[0]
        msg, _ = self.take_string(rest[4:])
        return code, msg.decode()

    def handle(self, ptype, payload):
        t, rest = self.request(ptype, payload)
        assert t == HANDLE, f"expected HANDLE, got {t}: {rest!r}"
        return self.take_string(rest)[0]

    def names(self, ptype, payload):
        t, rest = self.request(ptype, payload)
        if t == STATUS:
            return struct.unpack(">I", rest[:4])[0]
        assert t == NAME
        out, rest = self.entries(rest)
        return out

    def entries(self, rest):
        """The entries of a NAME reply (count, then each one): ([(name, long, attrs)], rest)."""
        count = struct.unpack(">I", rest[:4])[0]
        rest = rest[4:]
        out = []
        for _ in range(count):
            name, rest = self.take_string(rest)
            long_name, rest = self.take_string(rest)
            flags = struct.unpack(">I", rest[:4])[0]
            rest = rest[4:]
            attrs = {}
            if flags & 1:
                attrs["size"] = struct.unpack(">Q", rest[:8])[0]
                rest = rest[8:]
            if flags & 2:
                rest = rest[8:]
            if flags & 4:
                attrs["perm"] = struct.unpack(">I", rest[:4])[0]
                rest = rest[4:]
            if flags & 8:
                rest = rest[8:]
            if flags & 0x80000000:  # extended pairs (the agent's stat@sandmount)
                count_ext = struct.unpack(">I", rest[:4])[0]
                rest = rest[4:]
                for _ in range(count_ext):
                    ext_name, rest = self.take_string(rest)
                    attrs[ext_name.decode()], rest = self.take_string(rest)
            out.append((name.decode(), long_name.decode(), attrs))
        return out, rest

    def open(self, path, pflags, perm=None):
        attrs = struct.pack(">II", ATTR_PERM, perm) if perm is not None else struct.pack(">I", 0)
        return self.handle(OPEN, s(path) + struct.pack(">I", pflags) + attrs)

    def close(self):
        self.p.stdin.close()
        rc = self.p.wait(10)
        self.p.stdout.close()
        self.p.stderr.close()
        return rc


@pytest.fixture
def raw(agent, tmp_path):
    c = Raw(agent, tmp_path)
    yield c
    if c.p.poll() is None:
        assert c.close() == 0


# ---- the binary ----

def test_binary_is_static(agent):
    out = subprocess.run(["file", "-L", agent], capture_output=True, text=True).stdout
    ldd = subprocess.run(["ldd", agent], capture_output=True, text=True)
    assert "statically linked" in out or "not a dynamic executable" in ldd.stdout + ldd.stderr
    assert "dynamically linked" not in out


def test_version_and_help(agent):
    r = subprocess.run([agent, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("sandmount-agent ")
    r = subprocess.run([agent, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "sftp" in r.stdout
    r = subprocess.run([agent, "bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr
    r = subprocess.run([agent, "sftp", "-d", "/nonexistent/dir"], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and "/nonexistent/dir" in r.stderr


# ---- OpenSSH's sftp client ----

def run_sftp_batch(agent, srv, commands):
    batch = srv.parent / "batch"
    batch.write_text("\n".join(commands) + "\n")
    return subprocess.run(["sftp", "-b", str(batch), "-D", f"{agent} sftp -d {srv}"],
                          capture_output=True, text=True, timeout=60)


def test_openssh_sftp_client(agent, tmp_path):
    srv = tmp_path / "srv"
    loc = tmp_path / "loc"
    srv.mkdir()
    loc.mkdir()
    big = loc / "big"
    big.write_bytes(os.urandom(5 * 1024 * 1024))
    r = run_sftp_batch(agent, srv, [
        f"put {big} big",
        f"get big {loc}/big.back",
        "mkdir d1",
        "rename big d1/big2",
        "ln -s d1/big2 lnk",
        "chmod 600 d1/big2",
        "mkdir gone",
        "rmdir gone",
        "put /etc/hostname tmpfile",
        "rm tmpfile",
        "ls -l",
        "ls -l d1",
        "df .",
    ])
    assert r.returncode == 0, r.stdout + r.stderr
    assert sha256(srv / "d1" / "big2") == sha256(big)
    assert sha256(loc / "big.back") == sha256(big)
    assert not (srv / "big").exists()
    assert os.readlink(srv / "lnk") == "d1/big2"
    assert (os.stat(srv / "d1" / "big2").st_mode & 0o777) == 0o600
    assert not (srv / "gone").exists() and not (srv / "tmpfile").exists()
    lines = r.stdout.splitlines()
    assert any(line.startswith("drwx") and line.endswith(" d1") for line in lines)
    assert any(line.startswith("lrwxrwxrwx") and line.endswith(" lnk") for line in lines)
    assert any(line.startswith("-rw-------") and " 5242880 " in line and line.endswith(" big2")
               for line in lines)


def test_openssh_sftp_client_errors(agent, tmp_path):
    srv = tmp_path / "srv"
    srv.mkdir()
    r = run_sftp_batch(agent, srv, ["get nonexistent " + str(tmp_path / "x")])
    assert r.returncode != 0
    assert "not found" in r.stderr or "No such file" in r.stderr


# ---- sshfs in passive mode ----

@pytest.fixture
def sshfs_mount(agent, tmp_path):
    if not os.path.exists("/dev/fuse") or not shutil.which("sshfs"):
        pytest.skip("needs /dev/fuse and sshfs")
    srv = tmp_path / "srv"
    mnt = tmp_path / "mnt"
    srv.mkdir()
    mnt.mkdir()
    agent_in, sshfs_out = os.pipe()
    sshfs_in, agent_out = os.pipe()
    a = subprocess.Popen([agent, "sftp", "-d", str(srv)], stdin=agent_in, stdout=agent_out)
    f = subprocess.Popen(["sshfs", "-f", "-o", "passive", f":{srv}", str(mnt)],
                         stdin=sshfs_in, stdout=sshfs_out)
    for fd in (agent_in, sshfs_out, sshfs_in, agent_out):
        os.close(fd)
    try:
        deadline = time.monotonic() + 10
        while not os.path.ismount(mnt):
            assert f.poll() is None, "sshfs exited"
            assert time.monotonic() < deadline, "mount did not appear"
            time.sleep(0.05)
        yield srv, mnt
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)])
        try:
            f.wait(10)
        finally:
            if f.poll() is None:
                f.kill()
        assert a.wait(10) == 0


def test_sshfs_passive(sshfs_mount, tmp_path):
    srv, mnt = sshfs_mount
    data = os.urandom(3 * 1024 * 1024 + 123)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    shutil.copy(src, mnt / "copy.bin")
    assert sha256(srv / "copy.bin") == sha256(src)
    shutil.copy(mnt / "copy.bin", tmp_path / "back.bin")
    assert sha256(tmp_path / "back.bin") == sha256(src)

    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t", GIT_CONFIG_NOSYSTEM="1", HOME=str(tmp_path))
    repo = mnt / "repo"
    repo.mkdir()
    (repo / "a.txt").write_text("hello\n")
    for cmd in (["git", "init", "-q"], ["git", "add", "a.txt"], ["git", "commit", "-qm", "one"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True, timeout=60)
    log = subprocess.run(["git", "log", "--oneline"], cwd=srv / "repo", env=env, check=True,
                         capture_output=True, text=True).stdout
    assert "one" in log

    (mnt / "old").write_text("old\n")
    (mnt / "new").write_text("new\n")
    subprocess.run(["mv", str(mnt / "new"), str(mnt / "old")], check=True)
    assert (srv / "old").read_text() == "new\n" and not (srv / "new").exists()

    subprocess.run(f"echo more >> {mnt / 'old'}", shell=True, check=True)
    assert (srv / "old").read_text() == "new\nmore\n"
    subprocess.run(["truncate", "-s", "2", str(mnt / "old")], check=True)
    assert (srv / "old").read_bytes() == b"ne"

    (mnt / "dir").mkdir()
    os.symlink("old", mnt / "link")
    assert os.readlink(srv / "link") == "old"
    ls = subprocess.run(["ls", "-l", str(mnt)], capture_output=True, text=True, check=True).stdout
    for name in ("copy.bin", "old", "dir", "repo", "link -> old"):
        assert name in ls
    os.chmod(mnt / "old", 0o640)
    assert (os.stat(srv / "old").st_mode & 0o777) == 0o640


# ---- the protocol, by a raw client ----

def test_version_extensions(raw):
    assert raw.extensions == {
        "posix-rename@openssh.com": "1", "statvfs@openssh.com": "2",
        "fstatvfs@openssh.com": "2", "hardlink@openssh.com": "1", "fsync@openssh.com": "1",
        "limits@openssh.com": "1", "lsetstat@openssh.com": "1",
        "stat@sandmount": "1", "mknod@sandmount": "1", "open-read@sandmount": "1",
        "list@sandmount": "1", "read-files@sandmount": "1"}


def test_limits(raw):
    t, rest = raw.request(EXTENDED, s("limits@openssh.com"))
    assert t == EXTENDED_REPLY
    assert struct.unpack(">4Q", rest) == (262144 + 1024, 262144, 262144, 1024)


def test_unknown_requests(raw):
    assert raw.status(99, b"")[0] == FX_OP_UNSUPPORTED
    assert raw.status(EXTENDED, s("nope@example.com"))[0] == FX_OP_UNSUPPORTED
    assert raw.status(CLOSE, s(b"\0" * 8))[0] == FX_FAILURE


def test_symlink_argument_order(raw, tmp_path):
    # OpenSSH: the first string is the link's target, the second the link's path.
    assert raw.status(SYMLINK, s("some/target") + s("lnk"))[0] == FX_OK
    assert os.readlink(tmp_path / "lnk") == "some/target"
    assert raw.names(READLINK, s("lnk"))[0][0] == "some/target"


def test_rename_never_replaces(raw, tmp_path):
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    code, msg = raw.status(RENAME, s("a") + s("b"))
    assert code == FX_FAILURE and "exists" in msg
    assert (tmp_path / "a").read_text() == "a" and (tmp_path / "b").read_text() == "b"
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    assert raw.status(RENAME, s("d1") + s("d2"))[0] == FX_FAILURE
    assert raw.status(RENAME, s("a") + s("c"))[0] == FX_OK
    assert (tmp_path / "c").read_text() == "a" and not (tmp_path / "a").exists()
    assert raw.status(EXTENDED, s("posix-rename@openssh.com") + s("c") + s("b"))[0] == FX_OK
    assert (tmp_path / "b").read_text() == "a" and not (tmp_path / "c").exists()
    assert raw.status(RENAME, s("missing") + s("x"))[0] == FX_NO_SUCH_FILE


def test_realpath(raw, tmp_path):
    real = os.path.realpath(tmp_path)
    assert raw.names(REALPATH, s("."))[0][0] == real
    assert raw.names(REALPATH, s(""))[0][0] == real
    assert raw.names(REALPATH, s("not-yet"))[0][0] == real + "/not-yet"
    (tmp_path / "d").mkdir()
    assert raw.names(REALPATH, s("d/../d/new/"))[0][0] == real + "/d/new"
    assert raw.names(REALPATH, s("/"))[0][0] == "/"
    assert raw.names(REALPATH, s("missing/deeper")) == FX_NO_SUCH_FILE


def test_readdir_batches(raw, tmp_path):
    for i in range(250):
        (tmp_path / f"f{i:03}").write_text("x" * i)
    h = raw.handle(OPENDIR, s("."))
    seen = {}
    while True:
        batch = raw.names(READDIR, s(h))
        if batch == FX_EOF:
            break
        assert isinstance(batch, list) and 0 < len(batch) <= 100
        for name, long_name, attrs in batch:
            seen[name] = (long_name, attrs)
    assert raw.status(CLOSE, s(h))[0] == FX_OK
    assert set(seen) == {".", ".."} | {f"f{i:03}" for i in range(250)}
    long_name, attrs = seen["f007"]
    assert attrs["size"] == 7 and long_name.startswith("-rw") and long_name.endswith(" f007")


def test_read_write_append(raw, tmp_path):
    h = raw.open("f", F_WRITE | F_CREAT | F_EXCL, 0o600)
    payload = os.urandom(300000)
    assert raw.status(WRITE, s(h) + struct.pack(">Q", 0) + s(payload[:200000]))[0] == FX_OK
    assert raw.status(WRITE, s(h) + struct.pack(">Q", 200000) + s(payload[200000:]))[0] == FX_OK
    assert raw.status(CLOSE, s(h))[0] == FX_OK
    assert (tmp_path / "f").read_bytes() == payload
    assert (os.stat(tmp_path / "f").st_mode & 0o777) == 0o600 & ~current_umask()
    assert raw.status(OPEN, s("f") + struct.pack(">II", F_WRITE | F_CREAT | F_EXCL, 0))[0] \
        == FX_FAILURE

    h = raw.open("f", F_READ)
    t, rest = raw.request(READ, s(h) + struct.pack(">QI", 0, 1 << 20))
    assert t == DATA and raw.take_string(rest)[0] == payload[:262144]
    t, rest = raw.request(READ, s(h) + struct.pack(">QI", 262144, 1 << 20))
    assert t == DATA and raw.take_string(rest)[0] == payload[262144:]
    assert raw.status(READ, s(h) + struct.pack(">QI", 300000, 10))[0] == FX_EOF
    assert raw.status(CLOSE, s(h))[0] == FX_OK

    h = raw.open("f", F_WRITE | F_APPEND)
    assert raw.status(WRITE, s(h) + struct.pack(">Q", 0) + s(b"tail"))[0] == FX_OK
    assert raw.status(CLOSE, s(h))[0] == FX_OK
    assert (tmp_path / "f").read_bytes() == payload + b"tail"

    assert raw.status(SETSTAT, s("f") + struct.pack(">IQ", ATTR_SIZE, 10))[0] == FX_OK
    assert (tmp_path / "f").read_bytes() == payload[:10]
    assert raw.status(STAT, s("nothing"))[0] == FX_NO_SUCH_FILE


def open_read(raw, path, want):
    """open-read@sandmount: (handle, size from the attributes, data) or the STATUS code."""
    t, rest = raw.request(EXTENDED, s("open-read@sandmount") + s(path) + struct.pack(">I", want))
    if t == STATUS:
        return struct.unpack(">I", rest[:4])[0]
    assert t == EXTENDED_REPLY, t
    h, rest = raw.take_string(rest)
    flags = struct.unpack(">I", rest[:4])[0]
    assert flags & ATTR_SIZE
    size = struct.unpack(">Q", rest[4:12])[0]
    rest = rest[12:]
    if flags & 2:
        rest = rest[8:]
    if flags & 4:
        rest = rest[4:]
    if flags & 8:
        rest = rest[8:]
    if flags & 0x80000000:  # extended pairs (stat@sandmount)
        count = struct.unpack(">I", rest[:4])[0]
        rest = rest[4:]
        for _ in range(count):
            _name, rest = raw.take_string(rest)
            _value, rest = raw.take_string(rest)
    data, rest = raw.take_string(rest)
    assert rest == b"", "bytes after the data"
    return h, size, data


def test_open_read(raw, tmp_path):
    """Our extension: open, attributes and the first bytes in one reply; the handle reads on."""
    payload = os.urandom(100000)
    (tmp_path / "f").write_bytes(payload)
    h, size, data = open_read(raw, "f", 65536)
    assert (size, data) == (100000, payload[:65536])
    t, rest = raw.request(READ, s(h) + struct.pack(">QI", 65536, 1 << 20))
    assert t == DATA and raw.take_string(rest)[0] == payload[65536:]
    assert raw.status(CLOSE, s(h))[0] == FX_OK
    h, size, data = open_read(raw, "f", 1 << 30)  # capped at the read maximum
    assert (size, data) == (100000, payload)
    assert raw.status(CLOSE, s(h))[0] == FX_OK
    (tmp_path / "empty").write_bytes(b"")
    h, size, data = open_read(raw, "empty", 4096)
    assert (size, data) == (0, b"")
    assert raw.status(CLOSE, s(h))[0] == FX_OK
    assert open_read(raw, "nothing", 10) == FX_NO_SUCH_FILE
    (tmp_path / "d").mkdir()
    assert open_read(raw, "d", 10) == FX_FAILURE  # a directory is not a file
    os.mkfifo(tmp_path / "fifo")
    t0 = time.monotonic()
    code = open_read(raw, "fifo", 10)  # refused at once (EINVAL), no writer waited for
    assert isinstance(code, int) and code != FX_OK
    assert time.monotonic() - t0 < 5
    # nothing stays open after a refusal: every handle slot is still there
    handles = [raw.open("f", F_READ) for _ in range(1024)]
    assert len(handles) == 1024


def sm_list(raw, path):
    """list@sandmount: (flags, handle, entries by name) or the STATUS code."""
    t, rest = raw.request(EXTENDED, s("list@sandmount") + s(path))
    if t == STATUS:
        return struct.unpack(">I", rest[:4])[0]
    assert t == EXTENDED_REPLY, t
    flags = struct.unpack(">I", rest[:4])[0]
    h, rest = raw.take_string(rest[4:])
    entries, rest = raw.entries(rest)
    assert rest == b"", "bytes after the entries"
    return flags, h, {name: (long_name, attrs) for name, long_name, attrs in entries}


def test_list(raw, tmp_path):
    """Our extension: a directory opened and listed in one reply; a large one goes on with
    READDIR on the handle it leaves open, and no entry is lost or repeated at the seam."""
    (tmp_path / "small").mkdir()
    for i in range(150):
        (tmp_path / "small" / f"f{i:03}").write_text("x" * i)
    flags, h, seen = sm_list(raw, "small")
    assert (flags, h) == (1, b"")  # complete, nothing left open
    assert set(seen) == {".", ".."} | {f"f{i:03}" for i in range(150)}
    long_name, attrs = seen["f007"]
    assert attrs["size"] == 7 and long_name.endswith(" f007") and "stat@sandmount" in attrs
    (tmp_path / "empty").mkdir()
    assert sm_list(raw, "empty")[:2] == (1, b"")

    big = tmp_path / "big"
    big.mkdir()
    names = {f"entry-{i:05}-{'y' * 30}" for i in range(5000)}
    for n in names:
        (big / n).write_bytes(b"")
    flags, h, first = sm_list(raw, "big")
    assert flags == 0 and len(h) == 8
    assert 0 < len(first) <= 4096
    got = list(first)
    while True:
        batch = raw.names(READDIR, s(h))
        if batch == FX_EOF:
            break
        got += [name for name, _, _ in batch]
    assert raw.status(CLOSE, s(h))[0] == FX_OK
    assert len(got) == len(set(got)) and set(got) == {".", ".."} | names

    assert sm_list(raw, "nothing") == FX_NO_SUCH_FILE
    (tmp_path / "file").write_text("x")
    assert sm_list(raw, "file") == FX_NO_SUCH_FILE  # ENOTDIR, as OPENDIR says it
    # nothing stays open after complete listings and refusals: every handle slot is there
    for _ in range(50):
        sm_list(raw, "small")
        sm_list(raw, "nothing")
    handles = [raw.open("file", F_READ) for _ in range(1024)]
    assert len(handles) == 1024


def read_files(raw, path, max_file, after=""):
    """read-files@sandmount: (resume name, {name: (size from the attributes, data)}) or the
    STATUS code."""
    t, rest = raw.request(EXTENDED, s("read-files@sandmount") + s(path) +
                          struct.pack(">I", max_file) + s(after))
    if t == STATUS:
        return struct.unpack(">I", rest[:4])[0]
    assert t == EXTENDED_REPLY, t
    resume, rest = raw.take_string(rest)
    count = struct.unpack(">I", rest[:4])[0]
    rest = rest[4:]
    files = {}
    for _ in range(count):
        name, rest = raw.take_string(rest)
        # the attributes as a NAME entry has them, behind an empty long name
        [(_, _, attrs)], rest = raw.entries(struct.pack(">I", 1) + s(name) + s("") + rest)
        data, rest = raw.take_string(rest)
        assert name.decode() not in files, "a file sent twice"
        files[name.decode()] = (attrs["size"], data)
    assert rest == b"", "bytes after the entries"
    return resume.decode(), files


def test_read_files(raw, tmp_path):
    """Our extension: a directory's small regular files with their attributes in one reply;
    nothing else (large files, directories, links, FIFOs: no open that could block), and a
    large directory page by page with no file lost or repeated."""
    d = tmp_path / "d"
    d.mkdir()
    want = {f"f{i}": os.urandom(i * 97) for i in range(30)}
    for n, b in want.items():
        (d / n).write_bytes(b)
    (d / "big").write_bytes(os.urandom(70000))
    (d / "sub").mkdir()
    os.symlink("f1", d / "link")
    os.mkfifo(d / "fifo")
    t0 = time.monotonic()
    resume, files = read_files(raw, "d", 65536)
    assert time.monotonic() - t0 < 5
    assert resume == ""
    assert files == {n: (len(b), b) for n, b in want.items()}
    _, files = read_files(raw, "d", 100)  # only files of up to 100 bytes
    assert set(files) == {"f0", "f1"}
    _, files = read_files(raw, "d", 1 << 30)  # capped at 64 KiB: "big" never comes
    assert "big" not in files and len(files) == 30
    assert read_files(raw, "d", 65536, after="no-such-name") == ("", {})
    assert read_files(raw, "nothing", 10) == FX_NO_SUCH_FILE
    assert read_files(raw, "d/f1", 10) == FX_NO_SUCH_FILE  # ENOTDIR, as OPENDIR says it

    many = tmp_path / "many"
    many.mkdir()
    payload = {f"m{i:04}": os.urandom(3000) for i in range(400)}  # ~1.2 MB: several replies
    for n, b in payload.items():
        (many / n).write_bytes(b)
    got, after, replies = {}, "", 0
    while True:
        after, files = read_files(raw, "many", 65536, after)
        replies += 1
        assert not set(files) & set(got), "a file sent in two replies"
        got.update(files)
        if not after:
            break
    assert replies > 1
    assert got == {n: (3000, b) for n, b in payload.items()}
    # nothing stays open: every handle slot is there
    handles = [raw.open("d/f1", F_READ) for _ in range(1024)]
    assert len(handles) == 1024


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_handle_limit(raw, tmp_path):
    (tmp_path / "f").write_text("x")
    handles = [raw.open("f", F_READ) for _ in range(1024)]
    code, msg = raw.status(OPEN, s("f") + struct.pack(">II", F_READ, 0))
    assert code == FX_FAILURE
    assert raw.status(CLOSE, s(handles[0]))[0] == FX_OK
    assert raw.status(CLOSE, s(handles[0]))[0] == FX_FAILURE  # stale
    raw.open("f", F_READ)


def test_pipelined_reads_do_not_deadlock(agent, tmp_path):
    """The client writes many requests before reading any reply: the agent must keep serving."""
    (tmp_path / "f").write_bytes(os.urandom(262144))
    c = Raw(agent, tmp_path)
    h = c.open("f", F_READ)
    count = 400  # ~100 MiB of replies
    packets = []
    for i in range(count):
        body = bytes([READ]) + struct.pack(">I", 1000 + i) + s(h) + struct.pack(">QI", 0, 262144)
        packets.append(struct.pack(">I", len(body)) + body)
    req = b"".join(packets)
    writer = threading.Thread(target=lambda: (c.p.stdin.write(req), c.p.stdin.flush()))
    writer.start()
    for i in range(count):
        body = c.recv_packet()
        assert body[0] == DATA and struct.unpack(">I", body[1:5])[0] == 1000 + i
    writer.join(30)
    assert c.close() == 0


# ---- malformed input ----

def feed(agent, tmp_path, data):
    return subprocess.run([agent, "sftp", "-d", str(tmp_path)], input=data, capture_output=True,
                          timeout=10)


INIT_PACKET = struct.pack(">IBI", 5, INIT, 3)


@pytest.mark.parametrize("data, message", [
    (random.Random(1).randbytes(4096), b"sftp:"),
    (b"\xff\xff\xff\xff" + b"x" * 100, b"bad packet length"),
    (struct.pack(">I", 262144 + 1025) + b"x" * 10, b"bad packet length"),
    (INIT_PACKET[:7], b"input ends inside a packet"),
    (INIT_PACKET + struct.pack(">IB", 1000, OPEN) + b"abc", b"input ends inside a packet"),
    (struct.pack(">IBI", 5, STAT, 1), b"request before INIT"),
    (INIT_PACKET + INIT_PACKET, b"INIT received twice"),
    (INIT_PACKET + struct.pack(">I", 0), b"bad packet length"),
    (INIT_PACKET + struct.pack(">IBII", 13, STAT, 1, 1000) + b"abcd", b"malformed packet"),
    (INIT_PACKET + struct.pack(">IBI", 5, READ, 1), b"malformed packet"),
    (INIT_PACKET + struct.pack(">IBI", 9, OPEN, 1) + s(b"a\0b"), b"malformed packet"),
], ids=["garbage", "huge-length", "length-over-limit", "truncated-init", "truncated-request",
        "request-before-init", "init-twice", "zero-length", "string-past-end", "short-read",
        "nul-in-path"])
def test_malformed_input(agent, tmp_path, data, message):
    r = feed(agent, tmp_path, data)
    assert r.returncode == 1, r
    assert message in r.stderr
    assert r.stderr.count(b"\n") <= 2


def test_clean_eof(agent, tmp_path):
    r = feed(agent, tmp_path, b"")
    assert r.returncode == 0 and r.stderr == b""
    r = feed(agent, tmp_path, INIT_PACKET)
    assert r.returncode == 0 and r.stdout[4] == VERSION
