"""File fidelity through our agent (stat@sandmount, mknod@sandmount; lib/proto/sftp_proto.h):
nanosecond times set and read back exactly, hard links sharing st_ino with their real link
count, fstat of an unlinked open file reporting nlink 0, ctime, FIFOs and sockets, and the
owners=real option. Every test runs with agent=auto (our agent serves the files) and agent=off
(the sandbox's plain sftp-server, which must keep working as before, with SFTP v3's limits).
The last tests speak the extensions on the wire to the agent run locally over a pipe."""

import errno
import os
import stat
import struct
import subprocess

import pytest

from test_agent_sftp import AGENT, ATTRS, EXTENDED, FX_OK, LSTAT, SETSTAT, Raw, s

# Nanosecond parts no whole-second protocol could produce by accident.
ATIME_NS = 1_700_000_000_123_456_789
MTIME_NS = 1_700_000_100_987_654_321


@pytest.fixture(params=["auto", "off"])
def fmnt(request, sandbox, mounter):
    """A mount with the agent (agent=auto) or with the plain sftp-server (agent=off)."""
    m = mounter(opts=sandbox.opts(agent=request.param))
    m.full = request.param == "auto"
    return m


def test_ns_times_set_and_read_back_exactly(fmnt):
    f = fmnt / "t.txt"
    f.write_bytes(b"x")
    os.utime(f, ns=(ATIME_NS, MTIME_NS))
    st, remote = os.stat(f), os.stat(fmnt.r("t.txt"))
    if fmnt.full:
        assert (st.st_atime_ns, st.st_mtime_ns) == (ATIME_NS, MTIME_NS)
        assert (remote.st_atime_ns, remote.st_mtime_ns) == (ATIME_NS, MTIME_NS)
    else:  # SFTP v3: whole seconds
        assert st.st_mtime_ns == MTIME_NS // 10**9 * 10**9
        assert remote.st_mtime_ns == MTIME_NS // 10**9 * 10**9


def test_ns_times_of_sandbox_files_shown_exactly(fmnt):
    fmnt.rwrite("made-remotely", b"data")
    os.utime(fmnt.r("made-remotely"), ns=(ATIME_NS, MTIME_NS))
    st = os.stat(fmnt / "made-remotely")
    remote = os.stat(fmnt.r("made-remotely"))
    if fmnt.full:
        assert st.st_mtime_ns == MTIME_NS and st.st_atime_ns == ATIME_NS
        assert st.st_ctime_ns == remote.st_ctime_ns
    else:
        assert st.st_mtime_ns == MTIME_NS // 10**9 * 10**9
    # make(1)'s question: which of two files written within one second is newer
    (fmnt / "a").write_bytes(b"1")
    os.utime(fmnt / "a", ns=(MTIME_NS, MTIME_NS))
    (fmnt / "b").write_bytes(b"2")
    os.utime(fmnt / "b", ns=(MTIME_NS + 1, MTIME_NS + 1))
    newer = os.stat(fmnt / "b").st_mtime_ns > os.stat(fmnt / "a").st_mtime_ns
    assert newer == fmnt.full


def test_touch_one_time_keeps_the_other(fmnt):
    """utimensat with UTIME_OMIT for one time and UTIME_NOW for the other (touch -a / -m)."""
    f = fmnt / "omit"
    f.write_bytes(b"x")
    os.utime(f, ns=(ATIME_NS, MTIME_NS))
    subprocess.run(["touch", "-a", str(f)], check=True, timeout=30)
    st = os.stat(f)
    expect_m = MTIME_NS if fmnt.full else MTIME_NS // 10**9 * 10**9
    assert st.st_mtime_ns == expect_m
    assert st.st_atime_ns > ATIME_NS + 10**9  # now
    subprocess.run(["touch", "-m", "-d", "@1600000000.5", str(f)], check=True, timeout=30)
    st2 = os.stat(f)
    assert st2.st_mtime_ns == (1_600_000_000_500_000_000 if fmnt.full else 1_600_000_000 * 10**9)
    assert st2.st_atime_ns // 10**9 == st.st_atime_ns // 10**9


def openclaw_key(st):
    """The dev:ino:size:mtime key OpenClaw caches file reads by."""
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def test_hard_links_share_inode_and_count(fmnt):
    a, b = fmnt / "a", fmnt / "b"
    a.write_bytes(b"shared")
    os.link(a, b)
    sa, sb = os.stat(a), os.stat(b)
    assert os.stat(fmnt.r("a")).st_nlink == 2  # made on the sandbox
    if not fmnt.full:
        # SFTP v3 has neither a link count nor an identity: each name is its own file
        assert sa.st_nlink == sb.st_nlink == 1 and sa.st_ino != sb.st_ino
        return
    assert sa.st_ino == sb.st_ino and sa.st_nlink == sb.st_nlink == 2
    # OpenClaw refuses hard-linked paths: it must be able to see them
    assert any(os.stat(p).st_nlink > 1 for p in (a, b))
    assert openclaw_key(sa) == openclaw_key(sb)
    # a write through one name changes the key of both
    with open(b, "ab") as fh:
        fh.write(b"+more")
    assert openclaw_key(os.stat(a)) == openclaw_key(os.stat(b)) != openclaw_key(sa)
    # a link made on the sandbox is seen as one too, also in a directory listing
    os.link(fmnt.r("a"), fmnt.r("c"))
    entries = {e.name: e.stat(follow_symlinks=False) for e in os.scandir(fmnt.mp)}
    assert entries["c"].st_ino == sa.st_ino and entries["c"].st_nlink == 3
    os.unlink(a)
    assert os.stat(b).st_nlink == 2 and os.stat(b).st_ino == sa.st_ino


def test_inode_number_kept_across_rename_and_distinct(fmnt):
    (fmnt / "d").mkdir()
    (fmnt / "d/f").write_bytes(b"1")
    (fmnt / "g").write_bytes(b"2")
    ino = os.stat(fmnt / "d/f").st_ino
    os.rename(fmnt / "d/f", fmnt / "h")
    assert os.stat(fmnt / "h").st_ino == ino
    assert len({os.stat(fmnt / p).st_ino for p in ("d", "g", "h")}) == 3
    if fmnt.full:  # the sandbox's own numbers
        assert ino == os.stat(fmnt.r("h")).st_ino


def test_unlinked_open_file_reports_nlink_0(fmnt):
    f = fmnt / "tmpfile"
    f.write_bytes(b"still here")
    fd = os.open(f, os.O_RDWR)
    try:
        os.unlink(f)
        st = os.fstat(fd)
        assert st.st_nlink == (0 if fmnt.full else 1)
        assert os.pread(fd, 100, 0) == b"still here"
        os.ftruncate(fd, 5)
        assert os.fstat(fd).st_size == 5
    finally:
        os.close(fd)
    assert not os.path.exists(fmnt.r("tmpfile"))


def test_ctime_moves_on_metadata_change(fmnt):
    f = fmnt / "c"
    f.write_bytes(b"x")
    os.utime(f, ns=(ATIME_NS, MTIME_NS))
    before = os.stat(f)
    os.chmod(f, 0o600)
    after = os.stat(f)
    assert after.st_mtime_ns == before.st_mtime_ns
    if fmnt.full:
        assert after.st_ctime_ns > MTIME_NS  # the sandbox's ctime, not the mtime
        assert after.st_ctime_ns == os.stat(fmnt.r("c")).st_ctime_ns
    else:  # SFTP v3 has no ctime: the mtime stands in
        assert after.st_ctime_ns == after.st_mtime_ns


def test_mkfifo_and_socket(fmnt):
    fifo, sock = fmnt / "fifo", fmnt / "sock"
    if not fmnt.full:
        with pytest.raises(OSError) as ex:
            os.mkfifo(fifo)
        assert ex.value.errno == errno.EPERM
        assert not os.path.lexists(fmnt.r("fifo"))
        return
    os.mkfifo(fifo, 0o640)
    os.mknod(sock, 0o600 | stat.S_IFSOCK)
    st = os.lstat(fifo)
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640 & ~current_umask()
    assert stat.S_ISFIFO(os.lstat(fmnt.r("fifo")).st_mode)
    assert stat.S_ISSOCK(os.lstat(sock).st_mode)
    assert stat.S_ISSOCK(os.lstat(fmnt.r("sock")).st_mode)
    assert {e.name for e in os.scandir(fmnt.mp)} >= {"fifo", "sock"}
    with pytest.raises(FileExistsError):
        os.mkfifo(fifo)
    os.unlink(fifo)
    assert not os.path.lexists(fmnt.r("fifo"))


def test_device_node_refused_cleanly(fmnt):
    """The sandbox user may not make devices: a clean EPERM, nothing made."""
    with pytest.raises(OSError) as ex:
        os.mknod(fmnt / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    assert ex.value.errno == errno.EPERM
    assert not os.path.lexists(fmnt.r("null"))


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("agent", ["auto", "off"])
def test_owners_real_shows_and_sets_sandbox_owners(sandbox, mounter, agent):
    m = mounter(opts=sandbox.opts(agent=agent, owners="real"))
    uid, gid = m.sb.ids
    assert uid != os.getuid()
    m.rwrite("theirs", b"x")
    (m / "mine").write_bytes(b"y")
    for name in ("theirs", "mine"):
        st = os.stat(m / name)
        assert (st.st_uid, st.st_gid) == (uid, gid), name
    # chown to what the sandbox has works (numerically) ...
    os.chown(m / "mine", uid, gid)
    os.chown(m / "mine", -1, gid)
    # ... and to an owner the sandbox user may not give, the sandbox refuses
    with pytest.raises(PermissionError):
        os.chown(m / "mine", 0, 0)
    assert os.stat(m.r("mine")).st_uid == uid


def test_owners_default_is_mounting_user(sandbox, mounter):
    m = mounter(opts=sandbox.opts())
    m.rwrite("theirs", b"x")
    st = os.stat(m / "theirs")
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    with pytest.raises(PermissionError):
        os.chown(m / "theirs", m.sb.ids[0], -1)


def test_owners_option_rejects_unknown_value(suite, sandbox):
    rem = sandbox.new_remote("owners-bad")
    mp = suite.new_mountpoint("owners-bad")
    p = suite.sandmount("-o", sandbox.opts(owners="nobody"), sandbox.url(rem), mp, timeout=60)
    assert p.returncode != 0
    assert b"owners=user or owners=real" in p.stderr


def test_directory_listing_inode_numbers_match_stat(fmnt):
    """d_ino (readdir) and st_ino (stat) agree, hard links included."""
    for i in range(5):
        (fmnt / f"f{i}").write_bytes(b"x")
    (fmnt / "sub").mkdir()
    os.link(fmnt / "f0", fmnt / "f0-link")
    for e in os.scandir(fmnt.mp):
        assert e.inode() == os.lstat(e.path).st_ino, e.name
    if fmnt.full:
        inos = {e.name: e.inode() for e in os.scandir(fmnt.mp)}
        assert inos["f0"] == inos["f0-link"] == os.lstat(fmnt.r("f0")).st_ino


# ---- the agent's extensions on the wire (the agent run locally over a pipe) ----

SM_LEN = 4 + 4 * 8 + 3 * 12
EXT_FLAG = 0x80000000


@pytest.fixture
def raw_agent(tmp_path):
    if not os.access(AGENT, os.X_OK):
        pytest.fail(f"no agent binary at {AGENT}")
    c = Raw(AGENT, tmp_path)
    yield c
    if c.p.poll() is None:
        assert c.close() == 0


def sm_pair(valid, dev=0, ino=0, nlink=0, rdev=0, times=((0, 0), (0, 0), (0, 0)), length=SM_LEN):
    data = struct.pack(">IQQQQ", valid, dev, ino, nlink, rdev)
    for sec, nsec in times:
        data += struct.pack(">qI", sec, nsec)
    return s("stat@sandmount") + s(data[:length] + b"\0" * max(0, length - SM_LEN))


def test_agent_sends_full_stat(raw_agent, tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    os.link(f, tmp_path / "g")
    os.utime(f, ns=(ATIME_NS, MTIME_NS))
    t, rest = raw_agent.request(LSTAT, s(str(f)))
    assert t == ATTRS
    flags = struct.unpack(">I", rest[:4])[0]
    assert flags == 0xF | EXT_FLAG
    rest = rest[4 + 8 + 8 + 4 + 8:]
    assert struct.unpack(">I", rest[:4])[0] == 1
    name, rest = Raw.take_string(rest[4:])
    data, rest = Raw.take_string(rest)
    assert name == b"stat@sandmount" and len(data) == SM_LEN and rest == b""
    valid, dev, ino, nlink, rdev = struct.unpack(">IQQQQ", data[:36])
    at, atn, mt, mtn, ct, ctn = struct.unpack(">qIqIqI", data[36:])
    st = os.lstat(f)
    assert valid == 0x1F and (dev, ino, nlink) == (st.st_dev, st.st_ino, 2)
    assert at * 10**9 + atn == ATIME_NS and mt * 10**9 + mtn == MTIME_NS
    assert ct * 10**9 + ctn == st.st_ctime_ns


def test_agent_sets_ns_times_with_omit(raw_agent, tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    os.utime(f, ns=(ATIME_NS, MTIME_NS))
    omit, new = 0x3FFFFFFE, (1_600_000_000, 7)
    attrs = struct.pack(">II", EXT_FLAG, 1) + sm_pair(0x08, times=((0, omit), new, (0, 0)))
    assert raw_agent.status(SETSTAT, s(str(f)) + attrs)[0] == FX_OK
    st = os.stat(f)
    assert st.st_atime_ns == ATIME_NS and st.st_mtime_ns == 1_600_000_000_000_000_007


@pytest.mark.parametrize("length", [SM_LEN - 1, SM_LEN + 1])
def test_agent_refuses_lying_stat_pair(raw_agent, tmp_path, length):
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    attrs = struct.pack(">II", EXT_FLAG, 1) + sm_pair(0x08, length=length)
    raw_agent.send_packet(bytes([SETSTAT]) + struct.pack(">I", 9) + s(str(f)) + attrs)
    assert raw_agent.p.wait(10) == 1
    assert b"malformed packet" in raw_agent.p.stderr.read()
    raw_agent.close()


def test_agent_mknod_and_precise_errors(raw_agent, tmp_path):
    fifo = tmp_path / "p"
    req = s("mknod@sandmount") + s(str(fifo)) + struct.pack(">IQ", stat.S_IFIFO | 0o600, 0)
    assert raw_agent.status(EXTENDED, req)[0] == FX_OK
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    code, msg = raw_agent.status(EXTENDED, req)
    assert msg == os.strerror(errno.EEXIST)
    # errno text comes with every failure, so the client tells ENOTDIR from ENOENT
    (tmp_path / "file").write_bytes(b"")
    code, msg = raw_agent.status(LSTAT, s(str(tmp_path / "file" / "x")))
    assert msg == os.strerror(errno.ENOTDIR)
