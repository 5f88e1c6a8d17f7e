"""Coherence of the data path: no cached data (the daemon's read-ahead, the kernel's page cache)
survives what changed it — a truncate, a write through another descriptor, a change made in the
sandbox — and O_APPEND, readlink/lstat and symlinks made through the mount behave as on a local
disk. Each defect found by the fsx-style exerciser is its own test; every test runs on every
backend, the data-path ones both with the agent (change reports) and without it (agent=off)."""

import mmap
import os
import random
import subprocess
import sys
import time

import pytest

import helpers as h

KIB = 1024
MIB = 1024 * KIB
CHUNK = 64 * KIB


@pytest.fixture(params=["auto", "off"])
def dmnt(request, sandbox, mounter):
    """A mount with the agent (the sandbox reports its changes) and one without it."""
    return mounter(opts=sandbox.opts(agent=request.param))


def pattern(size, seed):
    """Bytes that are never zero and differ per seed and position."""
    return bytes(((i * 7 + seed) % 255) + 1 for i in range(size))


class DirectReader:
    """An O_DIRECT descriptor with an aligned buffer (the daemon sees every read)."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        self.buf = mmap.mmap(-1, CHUNK)

    def read(self, off, size=CHUNK):
        n = os.preadv(self.fd, [memoryview(self.buf)[:size]], off)
        return bytes(self.buf[:n])

    def close(self):
        os.close(self.fd)
        self.buf.close()


def read_ahead_then(mnt, name):
    """Write 1 MiB, read its first 256 KiB sequentially with O_DIRECT (the daemon reads ahead);
    returns the reader and the data."""
    data = pattern(MIB, 1)
    (mnt / name).write_bytes(data)
    r = DirectReader(mnt / name)
    for off in range(0, 256 * KIB, CHUNK):
        assert r.read(off) == data[off:off + CHUNK]
    return r, data


def test_truncate_drops_read_ahead(dmnt):
    r, _ = read_ahead_then(dmnt, "f")
    try:
        os.truncate(dmnt / "f", 64 * KIB)
        os.truncate(dmnt / "f", MIB)
        assert r.read(256 * KIB) == bytes(CHUNK), "bytes from before the truncate came back"
    finally:
        r.close()
    assert dmnt.r("f").read_bytes()[64 * KIB:] == bytes(MIB - 64 * KIB)


def test_write_through_other_descriptor_drops_read_ahead(dmnt):
    r, _ = read_ahead_then(dmnt, "f")
    new = pattern(CHUNK, 99)
    try:
        with open(dmnt / "f", "r+b") as w:
            w.seek(256 * KIB)
            w.write(new)
        assert r.read(256 * KIB) == new, "the reader got the bytes from before the write"
    finally:
        r.close()


def test_sandbox_change_drops_read_ahead(dmnt):
    r, data = read_ahead_then(dmnt, "f")
    new = pattern(CHUNK, 42)
    try:
        with open(dmnt.r("f"), "r+b") as w:  # a process in the sandbox rewrites the range
            w.seek(256 * KIB)
            w.write(new)
        time.sleep(1.0)
        assert r.read(256 * KIB) == new, "old bytes a second after the sandbox rewrote them"
        assert r.read(320 * KIB) == data[320 * KIB:384 * KIB]
    finally:
        r.close()


def test_append_order_across_descriptors(mnt):
    path = mnt / "log"
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    fd1, fd2 = os.open(path, flags, 0o644), os.open(path, flags, 0o644)
    try:
        os.write(fd1, b"1")
        os.write(fd2, b"2")
        os.write(fd1, b"3")
    finally:
        os.close(fd1)
        os.close(fd2)
    assert path.read_bytes() == b"123"
    assert mnt.r("log").read_bytes() == b"123"


def test_append_after_sandbox_resize(mnt):
    """Once fstat shows a size the sandbox set, an O_APPEND write lands there. The kernel drops
    a getattr reply that one of the daemon's invalidations crossed (the report of an earlier
    write, arriving while the reply was on its way), yet fstat returns it: the appender saw the
    new size and wrote at the old end, into the middle of the file (found by the exerciser,
    seed 323078006). Each round: append and fsync (its report comes a little later), resize the
    file in the sandbox, wait a random 0-15 ms, poll fstat until it shows the size, append at
    once; the position and, at the end, the sandbox's bytes must match. (Before the fix 3 of 4
    runs of this loop failed on the ASan daemon; with only the first half of it, 1 of 6.)"""
    rng = random.Random(323078006)
    path, host = mnt / "log", mnt.r("log")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    want = bytearray()
    try:
        for i in range(120):
            os.write(fd, b"w%03d" % i)
            os.fsync(fd)
            want += b"w%03d" % i
            new = len(want) + rng.randrange(1, 9000) if i % 2 == 0 else rng.randrange(len(want))
            with open(host, "r+b") as w:
                w.truncate(new)
            want = (want + bytes(new))[:new]
            time.sleep(rng.randrange(16) / 1000)
            deadline = time.monotonic() + 10
            while os.fstat(fd).st_size != new:
                assert time.monotonic() < deadline, f"round {i}: fstat never showed {new}"
                time.sleep(0.002)
            os.write(fd, b"A%03d" % i)
            want += b"A%03d" % i
            at = os.lseek(fd, 0, os.SEEK_CUR)
            assert at == len(want), f"round {i}: the append after a resize to {new} ended at {at}"
    finally:
        os.close(fd)
    assert host.read_bytes() == bytes(want)


def test_readlink_size_matches_lstat(mnt):
    mnt.rmkdir("d")
    mnt.rwrite("d/t", b"x")
    mnt.rsymlink(mnt.rpath("d/t"), "abs")  # shown relative: shorter than stored
    mnt.rsymlink("/etc/passwd", "out")  # leads outside: shown as the containment name
    mnt.rsymlink(mnt.rpath("d"), "d/up")  # shown as "."
    for name in ("abs", "out", "d/up"):
        target = os.readlink(mnt / name)
        assert os.lstat(mnt / name).st_size == len(os.fsencode(target)), name
    assert os.readlink(mnt / "abs") == "d/t"
    assert (mnt / "abs").read_bytes() == b"x"
    # also when the names come from a listing (readdirplus)
    assert {e.name: e.stat(follow_symlinks=False).st_size for e in os.scandir(mnt.mp)
            if e.is_symlink()} == {"abs": 3, "out": len(os.readlink(mnt / "out"))}


def test_symlink_into_mount_resolves_on_both_sides(mnt):
    (mnt / "x").write_bytes(b"hello")
    (mnt / "d").mkdir()
    os.symlink(str(mnt / "x"), mnt / "l")
    os.symlink(str(mnt / "x"), mnt / "d" / "l")
    os.symlink(str(mnt.mp), mnt / "d" / "top")
    os.symlink("/etc/hostname", mnt / "elsewhere")  # outside the mount: stored as given
    assert (mnt / "l").read_bytes() == b"hello"
    assert (mnt / "d" / "l").read_bytes() == b"hello"
    assert (mnt / "d" / "top" / "x").read_bytes() == b"hello"
    assert os.readlink(mnt.r("l")) == "x"
    assert os.readlink(mnt.r("d/l")) == "../x"
    assert os.readlink(mnt.r("d/top")) == ".."
    assert os.readlink(mnt.r("elsewhere")) == "/etc/hostname"
    p = mnt.exec("-c", "cat l d/l d/top/x")
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"hello" * 3


MMAP_TRUNCATE = r"""
import mmap, os, sys
path, data = sys.argv[1], bytes(range(1, 256)) * 49
data = data[:3 * 4096]
with open(path, "wb") as f:
    f.write(data)
f = open(path, "rb")
m = mmap.mmap(f.fileno(), 3 * 4096, prot=mmap.PROT_READ)
assert m[:] == data, "mapped read"
os.truncate(path, 5000)
assert m[:5000] == data[:5000], "kept bytes"
assert m[5000:8192] == bytes(8192 - 5000), "non-zero data past EOF"
os.truncate(path, 3 * 4096)
assert m[:] == data[:5000] + bytes(3 * 4096 - 5000), "bytes from before the truncate"
# A larger file read sequentially through the mapping: the kernel and the daemon read ahead.
big = (bytes(range(1, 256)) * 4200)[:1 << 20]
with open(path, "wb") as f:
    f.write(big)
f = open(path, "rb")
m = mmap.mmap(f.fileno(), 1 << 20, prot=mmap.PROT_READ)
m.madvise(mmap.MADV_SEQUENTIAL)
assert m[:256 << 10] == big[:256 << 10], "mapped read of 1 MiB"
os.truncate(path, (64 << 10) + 5000)
os.truncate(path, 1 << 20)
for at in (512 << 10, 256 << 10):  # where the read-ahead was, first
    assert m[at:at + 4096] == bytes(4096), f"bytes from before the truncate at {at}"
assert m[:(64 << 10) + 5000] == big[:(64 << 10) + 5000], "kept bytes (1 MiB)"
assert m[(64 << 10) + 5000:] == bytes((1 << 20) - (64 << 10) - 5000), \
    "bytes from before the truncate (1 MiB)"
print("ok")
"""


def test_mmap_after_truncate(dmnt):
    """Five files: a short read the kernel takes for EOF (SIGBUS further on) showed on some."""
    for i in range(5):
        p = subprocess.run([sys.executable, "-c", MMAP_TRUNCATE, str(dmnt / f"m{i}")],
                           capture_output=True, timeout=60)
        assert p.returncode == 0 and p.stdout == b"ok\n", (i, p.returncode, p.stderr.decode())


MMAP_SANDBOX = r"""
import mmap, os, sys, time
path, host = sys.argv[1], sys.argv[2]
old, new = b"\x11" * 3 * 4096, b"\x22" * 3 * 4096
with open(path, "wb") as f:
    f.write(old)
f = open(path, "rb")
m = mmap.mmap(f.fileno(), 3 * 4096, prot=mmap.PROT_READ)
assert m[:] == old, "mapped read"
with open(host, "r+b") as w:  # the sandbox rewrites the file in place, then shrinks it
    w.write(new)
    w.truncate(5000)
deadline = time.monotonic() + 10
while os.stat(path).st_size != 5000:
    assert time.monotonic() < deadline, "the size never changed"
    time.sleep(0.1)
deadline = time.monotonic() + 5
while m[:5000] != new[:5000]:
    assert time.monotonic() < deadline, "the mapping shows old bytes"
    time.sleep(0.1)
assert m[5000:8192] == bytes(8192 - 5000), "non-zero data past EOF"
# A larger file read sequentially through the mapping (the kernel and the daemon read ahead),
# then rewritten in the sandbox (a second later: without a watch, only the mtime tells).
with open(path, "wb") as f:
    f.write(b"\x33" * (1 << 20))
f = open(path, "rb")
m = mmap.mmap(f.fileno(), 1 << 20, prot=mmap.PROT_READ)
m.madvise(mmap.MADV_SEQUENTIAL)
assert m[:256 << 10] == b"\x33" * (256 << 10), "mapped read of 1 MiB"
time.sleep(1.1)
with open(host, "r+b") as w:
    w.write(b"\x44" * (1 << 20))
deadline = time.monotonic() + 10  # without a watch: once the attributes' lifetime is over
while m[:] != b"\x44" * (1 << 20):
    assert time.monotonic() < deadline, "the mapping shows old bytes (1 MiB)"
    os.stat(path)
    time.sleep(0.1)
print("ok")
"""


def test_mmap_after_sandbox_change(dmnt):
    """With change reports the watch drops the pages; without, the new size and mtime seen
    through the attributes do (auto_inval_data)."""
    p = subprocess.run([sys.executable, "-c", MMAP_SANDBOX, str(dmnt / "m"), str(dmnt.r("m"))],
                       capture_output=True, timeout=60)
    assert p.returncode == 0 and p.stdout == b"ok\n", (p.returncode, p.stderr.decode())


def test_direct_read_latency(dmnt, request):
    """30 direct reads of an 8 MiB file (dd bs=4M iflag=direct), each checked whole. The times
    are reported, not asserted: on this shared test machine no bound is robust (speed is for
    the benches); a stall shows as reads of about the pump's 1 s poll timeout."""
    (dmnt / "f8m").write_bytes(os.urandom(8 * MIB))
    times = []
    for _ in range(30):
        t = time.monotonic()
        p = h.run(["dd", f"if={dmnt / 'f8m'}", "of=/dev/null", "bs=4M", "iflag=direct"],
                  timeout=60)
        times.append(time.monotonic() - t)
        assert p.returncode == 0, p.stderr
        assert b"8388608 bytes" in p.stderr, p.stderr
    times.sort()
    print(f"\n{request.node.name}: max {times[-1] * 1000:.0f} ms, "
          f"p50 {times[len(times) // 2] * 1000:.0f} ms, "
          f"over 500 ms: {sum(t > 0.5 for t in times)}, over 100 ms: {sum(t > 0.1 for t in times)}")
