"""Directory listings through the mount, with our agent (list@sandmount: the open and the entries
in one round trip, READDIR on the handle it leaves open for what did not fit) and without it
(OPENDIR + READDIR). Directories of 0, 1, 150 and 5000 entries (the last one needs the READDIR
continuation) list the same names, types and sizes either way, as the sandbox has them; a small
directory costs one round trip with the agent (the per-op counters of --status)."""

import os
import re
import stat

import helpers as h

SIZES = (0, 1, 150, 5000)


def make_tree(m):
    """Directories d0, d1, d150, d5000 on the sandbox side; entries of every common type."""
    ids = m.sb.ids
    for n in SIZES:
        d = m.r(f"d{n}")
        h.remote_mkdir(d, ids)
        for i in range(n):
            p = d / f"e{i:05}-{'n' * (i % 40)}"
            if i % 10 == 3:
                h.remote_mkdir(p, ids)
            elif i % 10 == 7:
                h.remote_symlink(f"target-{i}", p, ids)
            else:
                h.remote_write(p, b"x" * (i % 300), ids=ids)


def listing(path):
    """name -> (file type, size) of every entry, as lstat shows it."""
    out = {}
    with os.scandir(path) as it:
        for e in it:
            st = e.stat(follow_symlinks=False)
            size = st.st_size if stat.S_ISREG(st.st_mode) else None
            out[e.name] = (stat.S_IFMT(st.st_mode), size)
    return out


def dir_round_trips(suite, m):
    """Round trips the daemon's opendir and readdir operations took so far (--status)."""
    st = suite.sandmount("--status", m.mp, timeout=30).stdout.decode(errors="replace")
    total = 0
    for op in ("opendir", "readdir"):
        found = re.search(rf"^\s*{op}: (\d+), (\d+),", st, re.M)
        total += int(found.group(2)) if found else 0
    return total


def test_listings_agree_with_and_without_agent(suite, sandbox, mounter):
    on = mounter(opts=sandbox.opts(agent="on"))
    make_tree(on)
    off = mounter(opts=sandbox.opts(agent="off"), remote=on.rem)
    for n in SIZES:
        want = listing(on.r(f"d{n}"))
        assert len(want) == n
        assert listing(on / f"d{n}") == want, f"agent=on, {n} entries"
        assert listing(off / f"d{n}") == want, f"agent=off, {n} entries"


def test_small_listing_is_one_round_trip(suite, sandbox, mounter):
    on = mounter(opts=sandbox.opts(agent="on"))
    off = mounter(opts=sandbox.opts(agent="off"), remote=on.rem)
    for i in range(3):
        on.rmkdir(f"small{i}")
        for k in range(20):
            on.rwrite(f"small{i}/f{k}", b"x")
    for i in range(3):
        before = dir_round_trips(suite, on)
        assert len(os.listdir(on / f"small{i}")) == 20
        assert dir_round_trips(suite, on) - before == 1, suite.daemon_logs(on.mp)
        before = dir_round_trips(suite, off)
        assert len(os.listdir(off / f"small{i}")) == 20
        # OPENDIR, READDIR, and a third when the second READDIR's EOF is not in yet
        assert dir_round_trips(suite, off) - before >= 2
