"""Conformance in the style of pjdfstest: each case is a short script of system calls (chmod,
chown, link, unlink, rename, mkdir, rmdir, symlink, truncate, utimensat, mknod) whose every
result (the value or the errno) and the metadata it leaves are recorded. The same script runs in
the mount and in a local directory, the oracle: both records must be equal.

Cases marked FULL need what only our agent gives (link counts, nanosecond times, mknod); on an
agent=off mount they are skipped (test_fidelity.py checks the v3 behaviour there). Both sides run
as root locally; the sandbox side runs as the sandbox user, so the cases stay on files that user
owns (permission errors that depend on being root are not compared)."""

import errno
import os
import stat

import pytest

FULL = "full"


def meta(path):
    """What a stat shows that both sides must agree on (times and numbers compared apart)."""
    st = os.lstat(path)
    kind = stat.S_IFMT(st.st_mode)
    size = st.st_size if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode) else None
    return (kind, stat.S_IMODE(st.st_mode), size)


def meta_full(path):
    st = os.lstat(path)
    nlink = None if stat.S_ISDIR(st.st_mode) else st.st_nlink
    return meta(path) + (nlink,)


def same_file(a, b):
    sa, sb = os.lstat(a), os.lstat(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def mtime_ns(p):
    return os.lstat(p).st_mtime_ns


def atime_ns(p):
    return os.lstat(p).st_atime_ns


def put(p, data=b"0123456789"):
    with open(p, "wb") as fh:
        fh.write(data)


# name, needs, script(root) -> list of calls; each call is (function, *args) on paths under root
def cases():
    def c_chmod(r):
        put(r / "f")
        return [(os.chmod, r / "f", 0o751), (meta, r / "f"), (os.chmod, r / "nope", 0o600),
                (os.chmod, r / "f" / "x", 0o600), (os.chmod, r / "f", 0o4755),
                (meta, r / "f")]

    def c_chmod_dir(r):
        os.mkdir(r / "d")
        return [(os.chmod, r / "d", 0o700), (meta, r / "d"), (os.chmod, r / "d", 0o1777),
                (meta, r / "d")]

    def c_chown(r):
        put(r / "f")
        return [(os.chown, r / "f", -1, -1), (meta, r / "f"), (os.chown, r / "nope", -1, -1),
                (os.chown, r / "f" / "x", -1, -1)]

    def c_link(r):
        put(r / "f")
        os.mkdir(r / "d")
        return [(os.link, r / "f", r / "g"), (meta_full, r / "f"), (meta_full, r / "g"),
                (same_file, r / "f", r / "g"), (os.link, r / "f", r / "g"),
                (os.link, r / "nope", r / "h"), (os.link, r / "d", r / "d2"),
                (os.link, r / "f", r / "nodir" / "x"), (os.unlink, r / "f"),
                (meta_full, r / "g")]

    def c_unlink(r):
        put(r / "f")
        put(r / "g")
        os.mkdir(r / "d")
        return [(os.unlink, r / "f"), (os.path.lexists, r / "f"), (os.unlink, r / "f"),
                (os.unlink, r / "d"), (os.unlink, r / "g" / "x"), (os.unlink, r / "nope" / "x")]

    def c_rename_onto_own_link(r):
        put(r / "a")
        os.link(r / "a", r / "b")
        # POSIX: renaming a name onto another name of the same file does nothing
        return [(os.rename, r / "a", r / "b"), (os.path.lexists, r / "a"),
                (meta_full, r / "b"), (same_file, r / "a", r / "b")]

    def c_dir_link_count(r):
        os.mkdir(r / "d")
        os.mkdir(r / "d" / "e")
        os.mkdir(r / "d" / "f")
        put(r / "d" / "x")
        return [(lambda p: os.lstat(p).st_nlink, r / "d"), (os.rmdir, r / "d" / "e"),
                (lambda p: os.lstat(p).st_nlink, r / "d")]

    def c_rename_files(r):
        put(r / "a", b"aaa")
        put(r / "b", b"bbbbb")
        return [(os.rename, r / "a", r / "b"), (meta, r / "b"), (os.path.lexists, r / "a"),
                (os.rename, r / "a", r / "c"), (os.rename, r / "b", r / "b"), (meta, r / "b")]

    def c_rename_dirs(r):
        os.mkdir(r / "d")
        os.mkdir(r / "e")
        os.mkdir(r / "full")
        put(r / "full" / "x")
        put(r / "f")
        return [(os.rename, r / "f", r / "d"), (os.rename, r / "d", r / "f"),
                (os.rename, r / "d", r / "full"), (os.rename, r / "d", r / "e"),
                (meta, r / "e"), (os.path.lexists, r / "d"),
                (os.rename, r / "e", r / "e" / "sub")]

    def c_rename_keeps_identity(r):
        put(r / "a")
        before = os.lstat(r / "a").st_ino
        return [(os.rename, r / "a", r / "z"), (lambda p: os.lstat(p).st_ino == before, r / "z")]

    def c_mkdir(r):
        put(r / "f")
        return [(os.mkdir, r / "d", 0o750), (meta, r / "d"), (os.mkdir, r / "d"),
                (os.mkdir, r / "f"), (os.mkdir, r / "nope" / "d"), (os.mkdir, r / "f" / "d")]

    def c_rmdir(r):
        os.mkdir(r / "d")
        os.mkdir(r / "full")
        put(r / "full" / "x")
        put(r / "f")
        return [(os.rmdir, r / "full"), (os.rmdir, r / "f"), (os.rmdir, r / "nope"),
                (os.rmdir, r / "d"), (os.path.lexists, r / "d")]

    def c_symlink(r):
        put(r / "f")
        return [(os.symlink, "f", r / "l"), (os.readlink, r / "l"), (meta, r / "l"),
                (os.symlink, "x", r / "l"), (os.symlink, "x", r / "f"),
                (os.readlink, r / "f"), (os.readlink, r / "nope")]

    def c_truncate(r):
        put(r / "f")
        os.mkdir(r / "d")
        return [(os.truncate, r / "f", 3), (meta, r / "f"), (os.truncate, r / "f", 100000),
                (meta, r / "f"), (os.truncate, r / "d", 0), (os.truncate, r / "nope", 0),
                (os.truncate, r / "f", 0), (meta, r / "f")]

    def c_utimensat(r):
        put(r / "f")
        t1, t2 = 1_650_000_000_111_222_333, 1_650_000_123_444_555_666
        return [(os.utime, r / "f", None, dict(ns=(t1, t2))), (atime_ns, r / "f"),
                (mtime_ns, r / "f"), (os.utime, r / "nope", None, dict(ns=(t1, t2))),
                (os.utime, r / "f", None, dict(ns=(0, -10**9 + 1))), (mtime_ns, r / "f")]

    def c_mknod(r):
        return [(os.mkfifo, r / "p", 0o644), (meta_full, r / "p"),
                (os.mknod, r / "s", stat.S_IFSOCK | 0o600), (meta_full, r / "s"),
                (os.mkfifo, r / "p"), (os.mknod, r / "r", stat.S_IFREG | 0o600),
                (meta_full, r / "r"), (os.mkfifo, r / "nope" / "p")]

    def c_ctime_on_chmod(r):
        put(r / "f")
        os.utime(r / "f", ns=(10**18, 10**18))
        return [(os.chmod, r / "f", 0o600),
                (lambda p: os.lstat(p).st_ctime_ns > os.lstat(p).st_mtime_ns, r / "f")]

    return [
        ("chmod", None, c_chmod),
        ("chmod_dir", None, c_chmod_dir),
        ("chown", None, c_chown),
        ("link", FULL, c_link),
        ("unlink", None, c_unlink),
        ("rename_onto_own_link", FULL, c_rename_onto_own_link),
        ("dir_link_count", FULL, c_dir_link_count),
        ("rename_files", None, c_rename_files),
        ("rename_dirs", None, c_rename_dirs),
        ("rename_keeps_identity", None, c_rename_keeps_identity),
        ("mkdir", None, c_mkdir),
        ("rmdir", None, c_rmdir),
        ("symlink", None, c_symlink),
        ("truncate", None, c_truncate),
        ("utimensat", FULL, c_utimensat),
        ("mknod", FULL, c_mknod),
        ("ctime_on_chmod", FULL, c_ctime_on_chmod),
    ]


def run_script(root, script):
    """Run a case at root: the list of (value or errno name) of each call."""
    out = []
    for call in script(root):
        fn, args, kwargs = call[0], list(call[1:]), {}
        if args and isinstance(args[-1], dict):
            kwargs = args.pop()
            args = [a for a in args if a is not None]
        try:
            out.append(fn(*args, **kwargs))
        except OSError as ex:
            out.append(errno.errorcode.get(ex.errno, ex.errno))
    return out


CASES = cases()


@pytest.fixture(params=["auto", "off"], scope="module")
def agent_mode(request):
    return request.param


@pytest.fixture
def cmnt(sandbox, mounter, agent_mode):
    m = mounter(opts=sandbox.opts(agent=agent_mode))
    m.full = agent_mode == "auto"
    return m


@pytest.mark.parametrize("name,needs,script", CASES, ids=[c[0] for c in CASES])
def test_conformance(cmnt, tmp_path, name, needs, script):
    if needs == FULL and not cmnt.full:
        pytest.skip("needs the agent's full stat / mknod (SFTP v3 limit)")
    old = os.umask(0o022)
    try:
        local = tmp_path / "oracle"
        local.mkdir()
        remote = cmnt / name
        remote.mkdir()
        want = run_script(local, script)
        got = run_script(remote, script)
    finally:
        os.umask(old)
    assert got == want, f"{name}: mount {got} != local {want}"
