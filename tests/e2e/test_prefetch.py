"""Prefetch (fs/prefetch.c): reading a file whose data was not cached brings the other small files
of its directory into the kernel's page cache in one round trip, so reading them sends nothing —
and what came that way is never served once something changed it: a write or truncate through
the mount, a change made in the sandbox. The randomized test mixes all of these over one
directory and checks every read against a model (replayable: the seed is in the failure)."""

import os
import random
import re
import time

import pytest

import helpers as h

FILES = 40
SETTLE_S = 3.0  # a sandbox change is seen once its report arrived: allowed this long
RANDOM_SECONDS = float(os.environ.get("SM_PREFETCH_SECONDS", "20"))


def status(suite, m):
    return suite.sandmount("--status", m.mp, timeout=30).stdout.decode(errors="replace")


def round_trips(suite, m):
    found = re.search(r"^sftp requests: \d+, round trips: (\d+)", status(suite, m), re.M)
    assert found, status(suite, m)
    return int(found.group(1))


def stored(suite, m):
    found = re.search(r"^prefetch: \d+ requests, (\d+) files", status(suite, m), re.M)
    return int(found.group(1)) if found else -1


def content(name, version):
    """A file's bytes: different per name and version, of sizes from 0 to 60 KiB."""
    rnd = random.Random(f"{name}/{version}")
    size = rnd.choice([0, 1, 100, 4095, 4096, 4097, 20000, 60 * 1024])
    return bytes(rnd.getrandbits(8) for _ in range(size)) if size < 5000 else \
        rnd.randbytes(size)


def fill(m, n=FILES):
    m.rmkdir("d")
    for i in range(n):
        m.rwrite(f"d/f{i}", content(f"f{i}", 0))
    m.rwrite("d/big", bytes(100 * 1024))  # over the prefetch bound: read on demand
    m.rmkdir("d/sub")
    time.sleep(0.5)  # the reports of what was just made have come (they drop fresh attributes)


@pytest.fixture
def amnt(sandbox, mounter):
    """A mount with the agent (prefetch needs its change watch)."""
    return mounter(opts=sandbox.opts(agent="on"))


def test_reading_one_file_brings_its_siblings(suite, amnt):
    fill(amnt)
    names = sorted(os.listdir(amnt / "d"))
    assert len(names) == FILES + 2
    before = round_trips(suite, amnt)
    # the first open fetches the directory's small files (itself among them) and opens lazily
    for i in range(FILES):
        assert (amnt / f"d/f{i}").read_bytes() == content(f"f{i}", 0), f"f{i}"
    # one per reply of at most 192 KiB (without prefetch: one per file)
    total = sum(len(content(f"f{i}", 0)) for i in range(FILES))
    assert round_trips(suite, amnt) - before <= 1 + total // (128 * 1024), status(suite, amnt)
    assert stored(suite, amnt) >= FILES, status(suite, amnt)
    assert (amnt / "d/big").read_bytes() == bytes(100 * 1024)


def test_a_large_file_fetches_its_siblings_in_the_background(suite, amnt):
    fill(amnt, 10)
    os.listdir(amnt / "d")
    assert (amnt / "d/big").read_bytes() == bytes(100 * 1024)
    assert h.wait_until(lambda: stored(suite, amnt) >= 10, 10), status(suite, amnt)
    before = round_trips(suite, amnt)
    for i in range(10):
        assert (amnt / f"d/f{i}").read_bytes() == content(f"f{i}", 0), f"f{i}"
    assert round_trips(suite, amnt) - before == 0, status(suite, amnt)


def test_no_listing_no_prefetch(suite, amnt):
    """Without the directory's listing the kernel does not know the other names: nothing is
    fetched for them (reading a file by name costs its own round trip, as before)."""
    fill(amnt, 5)
    assert (amnt / "d/f1").read_bytes() == content("f1", 0)
    assert "prefetch: 0 requests" in status(suite, amnt)


def test_prefetch_off_reads_only_what_is_asked(suite, sandbox, mounter):
    m = mounter(opts=sandbox.opts(agent="on", prefetch="off"))
    fill(m, 10)
    os.listdir(m / "d")
    before = round_trips(suite, m)
    for i in range(10):
        assert (m / f"d/f{i}").read_bytes() == content(f"f{i}", 0)
    assert round_trips(suite, m) - before >= 10
    assert "prefetch: off" in status(suite, m)


def test_prefetched_data_follows_changes(suite, amnt):
    fill(amnt, 6)
    os.listdir(amnt / "d")
    (amnt / "d/f0").read_bytes()
    assert stored(suite, amnt) >= 6, status(suite, amnt)
    # through the mount: seen at once
    (amnt / "d/f1").write_bytes(b"local")
    assert (amnt / "d/f1").read_bytes() == b"local"
    os.truncate(amnt / "d/f2", 3)
    assert (amnt / "d/f2").read_bytes() == content("f2", 0)[:3]
    # in the sandbox: seen once reported, same size or not
    same = bytes(b ^ 0xFF for b in content("f3", 0))
    amnt.rwrite("d/f3", same)
    amnt.rwrite("d/f4", b"sandbox")
    assert h.wait_until(lambda: (amnt / "d/f3").read_bytes() == same, SETTLE_S)
    assert h.wait_until(lambda: (amnt / "d/f4").read_bytes() == b"sandbox", SETTLE_S)
    assert (amnt / "d/f5").read_bytes() == content("f5", 0)


def one_seed(suite, m, seed, deadline):
    """Random ops on the files of d: reads (which trigger prefetch of the rest), writes and
    truncates through the mount, changes in the sandbox, listings; every read is checked."""
    rnd = random.Random(seed)
    model = {}
    for i in range(12):
        model[f"f{i}"] = content(f"f{i}", f"{seed}/0")
        m.rwrite(f"d{seed}/f{i}", model[f"f{i}"])
    time.sleep(0.5)
    os.listdir(m / f"d{seed}")  # the kernel knows every file: each can take prefetched data
    log = []
    version = 0
    while time.monotonic() < deadline and len(log) < 300:
        name = f"f{rnd.randrange(12)}"
        p = m / f"d{seed}/{name}"
        op = rnd.choice(["read"] * 5 + ["write", "truncate", "remote", "list"])
        version += 1
        log.append(f"{op} {name} v{version}")
        if op == "read":
            got = p.read_bytes()
            assert got == model[name], f"seed {seed}: stale read of {name}: " \
                f"{len(got)} bytes, want {len(model[name])}; ops: {log}"
        elif op == "write":
            model[name] = content(name, f"{seed}/{version}")
            p.write_bytes(model[name])
        elif op == "truncate":
            size = rnd.randrange(len(model[name]) + 100)
            os.truncate(p, size)
            model[name] = (model[name] + bytes(size))[:size]
        elif op == "remote":
            model[name] = content(name, f"{seed}/{version}")
            m.rwrite(f"d{seed}/{name}", model[name])
            want = model[name]
            assert h.wait_until(lambda: p.read_bytes() == want, SETTLE_S), \
                f"seed {seed}: the sandbox's change of {name} not seen; ops: {log}"
        else:
            os.listdir(m / f"d{seed}")
    return len(log)


def test_random_ops_never_read_stale_prefetched_data(suite, amnt):
    """Model-checked: SM_PREFETCH_SECONDS of seeds (each its own directory, from a fresh
    listing, so its first read starts a prefetch)."""
    first = int(os.environ.get("SM_PREFETCH_SEED", str(int(time.time()) % 100000 * 100)))
    t0 = time.monotonic()
    seed, ops = first, 0
    while True:
        seed += 1
        amnt.rmkdir(f"d{seed}")
        ops += one_seed(suite, amnt, seed, t0 + RANDOM_SECONDS)
        if time.monotonic() - t0 >= RANDOM_SECONDS:
            break
    n = stored(suite, amnt)
    assert n > 0, status(suite, amnt)
    print(f"prefetch random: seeds {first + 1}..{seed}, {ops} ops, {n} files prefetched")


def test_concurrent_writes_and_fetches(suite, amnt):
    """Threads write and truncate files through the mount while another opens files of the
    same directory (each of its first opens fetches the directory): a writer always reads back
    what it wrote, and files nobody writes always read as they are. Each round is a new
    directory, so every round fetches again."""
    import threading
    deadline = time.monotonic() + RANDOM_SECONDS / 2
    rnd = random.Random(int(time.time()))
    rounds, errors = 0, []
    while time.monotonic() < deadline and not errors:
        rounds += 1
        d = f"c{rounds}"
        amnt.rmkdir(d)
        for i in range(12):
            amnt.rwrite(f"{d}/f{i}", content(f"f{i}", f"c{rounds}"))
        time.sleep(0.3)
        os.listdir(amnt / d)

        def writer(k, seed):
            r = random.Random(seed)
            for n in range(15):
                name = f"f{k * 2 + n % 2}"
                p = amnt / f"{d}/{name}"
                if r.random() < 0.3:
                    size = r.randrange(5000)
                    os.truncate(p, size)
                    want = p.read_bytes()
                    if len(want) != size:
                        errors.append(f"{d}/{name}: {len(want)} bytes after truncate to {size}")
                    continue
                data = content(name, f"{seed}/{n}")
                p.write_bytes(data)
                if p.read_bytes() != data:
                    errors.append(f"{d}/{name}: read back other bytes than written")

        def reader():
            for n in range(40):
                i = rnd.randrange(6, 12)
                if (amnt / f"{d}/f{i}").read_bytes() != content(f"f{i}", f"c{rounds}"):
                    errors.append(f"{d}/f{i}: not as it is")

        threads = [threading.Thread(target=writer, args=(k, rnd.random())) for k in range(3)]
        threads.append(threading.Thread(target=reader))
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors, errors[:5]
    assert stored(suite, amnt) > 0, status(suite, amnt)
    print(f"prefetch concurrent: {rounds} rounds, {stored(suite, amnt)} files prefetched")
