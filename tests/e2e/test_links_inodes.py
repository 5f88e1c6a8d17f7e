"""Symlink containment (the local kernel resolves links, so no remote link may lead to the
gateway's own files), stable inode numbers, and the uid mapping (files show the mounting user)."""

import os
import secrets
import time
from pathlib import Path

import pytest

import helpers as h


@pytest.fixture
def local_secret():
    """A file that exists only on the LOCAL side under /root; a mount must never show it."""
    path = Path("/root") / f"sandmount-e2e-secret-{secrets.token_hex(6)}"
    content = f"LOCAL SECRET {secrets.token_hex(16)}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)
    try:
        yield path, content
    finally:
        path.unlink()


def assert_does_not_read(link, secret_path, secret):
    """Whatever the mount shows for link, it must not be the local secret."""
    try:
        with open(link, "rb") as f:
            got = f.read()
    except OSError:
        got = None
    assert got != secret, f"{link} read the LOCAL file {secret_path} through the mount"
    assert os.path.realpath(link) != str(secret_path)
    try:
        target = os.readlink(link)
    except OSError:
        return  # not shown as a link at all: nothing to follow
    resolved = os.path.normpath(os.path.join(os.path.dirname(link), target))
    assert resolved != str(secret_path), f"readlink {link} -> {target!r} leads to the local secret"


def test_absolute_link_inside_workspace_resolves_inside_mount(mnt):
    mnt.rmkdir("sub/deeper")
    mnt.rwrite("sub/target.txt", b"target content")
    mnt.rsymlink(mnt.rpath("sub/target.txt"), "abs-link")
    mnt.rsymlink(mnt.rpath("sub/target.txt"), "sub/deeper/abs-link2")
    mnt.rsymlink(mnt.rpath("sub"), "abs-dirlink")
    assert (mnt / "abs-link").read_bytes() == b"target content"
    assert (mnt / "sub/deeper/abs-link2").read_bytes() == b"target content"
    assert (mnt / "abs-dirlink" / "target.txt").read_bytes() == b"target content"
    assert os.path.realpath(mnt / "abs-link") == str(mnt / "sub/target.txt")
    assert os.path.realpath(mnt / "sub/deeper/abs-link2") == str(mnt / "sub/target.txt")
    # the link is shown relative, so the local kernel stays inside the mount
    assert not os.readlink(mnt / "abs-link").startswith("/")


def test_relative_links_inside_workspace(mnt):
    mnt.rmkdir("a/b")
    mnt.rwrite("a/file", b"in a")
    mnt.rsymlink("../file", "a/b/up")
    mnt.rsymlink("a/file", "down")
    assert (mnt / "a/b/up").read_bytes() == b"in a"
    assert (mnt / "down").read_bytes() == b"in a"
    assert os.readlink(mnt / "down") == "a/file"
    # a link made through the mount is stored verbatim on the sandbox
    os.symlink("a/file", mnt / "made-here")
    assert os.readlink(mnt.r("made-here")) == "a/file"
    assert (mnt / "made-here").read_bytes() == b"in a"
    os.symlink("does/not/exist", mnt / "dangling")
    assert os.path.islink(mnt / "dangling") and not os.path.exists(mnt / "dangling")
    assert os.readlink(mnt.r("dangling")) == "does/not/exist"


def test_absolute_link_to_local_secret_is_not_followed(mnt, local_secret):
    secret_path, secret = local_secret
    mnt.rsymlink(str(secret_path), "evil-abs")
    assert_does_not_read(str(mnt / "evil-abs"), secret_path, secret)
    p = h.run(["cat", str(mnt / "evil-abs")], timeout=30)
    assert secret not in p.stdout


def test_dotdot_link_to_local_secret_is_not_followed(mnt, local_secret):
    secret_path, secret = local_secret
    up = "../" * 20
    mnt.rsymlink(up + str(secret_path).lstrip("/"), "evil-rel")
    mnt.rmkdir("d1/d2")
    mnt.rsymlink("../../../../../../../../../../root/" + secret_path.name, "d1/d2/evil2")
    mnt.rsymlink("../../../..", "evil-dir")
    assert_does_not_read(str(mnt / "evil-rel"), secret_path, secret)
    assert_does_not_read(str(mnt / "d1/d2/evil2"), secret_path, secret)
    try:
        leaked = (mnt / "evil-dir" / "root" / secret_path.name).read_bytes()
    except OSError:
        leaked = None
    assert leaked != secret
    real = os.path.realpath(mnt / "evil-dir")
    assert real.startswith(str(mnt.mp)) or not os.path.exists(mnt / "evil-dir"), real


def test_absolute_link_elsewhere_on_sandbox_does_not_lead_out(mnt):
    # /etc/passwd exists on both sides: the mount must serve neither through a workspace link
    mnt.rsymlink("/etc/passwd", "etc-link")
    try:
        got = (mnt / "etc-link").read_bytes()
    except OSError:
        got = None
    assert got is None, "a link to an absolute path outside the workspace must resolve to nothing"


def same_identity(a, b):
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def test_inode_stable_across_fstat_lstat_realpath(mnt):
    os.makedirs(mnt / "d" / "e")
    f = mnt / "d" / "e" / "file.txt"
    f.write_bytes(b"hello")
    os.symlink("d/e", mnt / "elink")
    ls = os.lstat(f)
    with open(f, "rb") as fh:
        fs = os.fstat(fh.fileno())
    rs = os.stat(os.path.realpath(mnt / "elink" / "file.txt"))
    assert same_identity(ls, fs) and same_identity(ls, rs)
    assert ls.st_nlink == 1
    assert ls.st_dev == os.stat(mnt.mp).st_dev
    others = {os.lstat(mnt / p).st_ino for p in ["d", "d/e", "elink"]}
    assert ls.st_ino not in others and len(others) == 3


def test_inode_kept_across_rename(mnt):
    os.mkdir(mnt / "src")
    os.mkdir(mnt / "dst")
    f = mnt / "src" / "f"
    f.write_bytes(b"x" * 100)
    ino = os.stat(f).st_ino
    dino = os.stat(mnt / "src").st_ino
    os.rename(f, mnt / "src" / "g")
    assert os.stat(mnt / "src" / "g").st_ino == ino
    os.rename(mnt / "src" / "g", mnt / "dst" / "h")
    assert os.stat(mnt / "dst" / "h").st_ino == ino
    os.rename(mnt / "src", mnt / "src2")
    assert os.stat(mnt / "src2").st_ino == dino
    # an open descriptor keeps working across the rename
    with open(mnt / "dst" / "h", "r+b") as fh:
        os.rename(mnt / "dst" / "h", mnt / "dst" / "moved")
        fh.write(b"Y")
    assert mnt.r("dst/moved").read_bytes() == b"Y" + b"x" * 99
    with open(mnt / "dst" / "moved", "rb") as fh:
        assert os.fstat(fh.fileno()).st_ino == ino


def test_inode_stable_after_cache_expiry(mounter, sandbox):
    m = mounter(opts=sandbox.opts(cache_timeout=1))
    m.rwrite("f", b"1")
    first = os.stat(m / "f")
    dfirst = os.stat(m.mp)
    time.sleep(2.5)
    second = os.stat(m / "f")
    assert same_identity(first, second)
    assert same_identity(dfirst, os.stat(m.mp))
    # a remote change after expiry is seen, with the same inode
    m.rwrite("f", b"22222")
    time.sleep(1.5)
    third = os.stat(m / "f")
    assert third.st_size == 5
    assert third.st_ino == first.st_ino


def test_files_show_local_uid_though_owned_by_sandbox(mnt):
    uid, gid = mnt.sb.ids
    assert uid != os.getuid()
    (mnt / "made-local").write_bytes(b"a")
    mnt.rwrite("made-remote", b"b")
    os.mkdir(mnt / "dir-local")
    for name in ["made-local", "made-remote", "dir-local"]:
        st = os.lstat(mnt / name)
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid()), name
        assert os.lstat(mnt.r(name)).st_uid == uid, name
    st = os.stat(mnt.mp)
    assert st.st_uid == os.getuid()
    # and the local owner can write a file the sandbox user owns with mode 0600
    mnt.rwrite("private", b"p", mode=0o600)
    with open(mnt / "private", "ab") as f:
        f.write(b"q")
    assert mnt.r("private").read_bytes() == b"pq"
