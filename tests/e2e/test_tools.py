"""Real tools on the mount: git and tar, which exercise renames, locks, modes, links and many
small files the way agents' workloads do."""

import io
import os
import stat
import tarfile

import pytest

import helpers as h

GIT = ["git", "-c", "user.name=E2E", "-c", "user.email=e2e@example.invalid",
       "-c", "init.defaultBranch=main", "-c", "safe.directory=*", "-c", "core.fsync=none"]


def git(cwd, *args, check=True):
    p = h.run(GIT + list(args), cwd=cwd, timeout=120,
              env=dict(os.environ, GIT_CONFIG_NOSYSTEM="1", HOME=str(cwd)))
    if check:
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p


def test_git_init_add_commit_status(mnt):
    repo = mnt / "repo"
    os.mkdir(repo)
    git(repo, "init", "-q")
    for i in range(30):
        d = repo / f"pkg{i % 5}"
        d.mkdir(exist_ok=True)
        (d / f"mod{i}.py").write_text(f"value = {i}\n" * (i + 1))
    (repo / "run.sh").write_text("#!/bin/sh\necho run\n")
    os.chmod(repo / "run.sh", 0o755)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    assert git(repo, "status", "--porcelain").stdout == b""
    (repo / "pkg0" / "mod0.py").write_text("changed\n")
    (repo / "untracked.txt").write_text("u\n")
    st = git(repo, "status", "--porcelain").stdout.decode().splitlines()
    assert sorted(st) == [" M pkg0/mod0.py", "?? untracked.txt"]
    git(repo, "commit", "-q", "-am", "second")
    log = git(repo, "log", "--format=%s").stdout.decode().split()
    assert log == ["second", "first"]
    # the sandbox sees a valid repository with the same history
    remote_log = git(mnt.r("repo"), "log", "--format=%s").stdout.decode().split()
    assert remote_log == ["second", "first"]
    assert git(mnt.r("repo"), "fsck", "--strict").returncode == 0
    ls = git(mnt.r("repo"), "ls-files", "-s", "run.sh").stdout.decode()
    assert ls.startswith("100755"), ls


def test_git_repo_made_in_sandbox_is_clean_locally(mnt):
    if not mnt.sb.has_git:
        pytest.skip(f"the {mnt.sb.name} test image has no git")
    p = mnt.exec("-c", "git init -q r && cd r && echo a > a && git add a && "
                 "git -c user.name=x -c user.email=x@x commit -qm init && git status --porcelain")
    if p.returncode == 127:
        raise AssertionError("git missing on the sandbox side: " + p.stderr.decode())
    assert p.returncode == 0, p.stderr
    assert git(mnt / "r", "status", "--porcelain").stdout == b""
    assert git(mnt / "r", "log", "--format=%s").stdout == b"init\n"


def make_tarball(path):
    files = {}
    with tarfile.open(path, "w:gz") as tar:
        def add(name, data=None, mode=0o644, kind=tarfile.REGTYPE, linkname=""):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime, ti.linkname = kind, mode, 1_650_000_000, linkname
            if data is not None:
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
                files[name] = (data, mode)
            else:
                tar.addfile(ti)
        add("proj", kind=tarfile.DIRTYPE, mode=0o755)
        add("proj/src", kind=tarfile.DIRTYPE, mode=0o755)
        for i in range(200):
            add(f"proj/src/file{i}.c", os.urandom(100 + i * 37))
        add("proj/bin", kind=tarfile.DIRTYPE, mode=0o755)
        add("proj/bin/tool", b"#!/bin/sh\necho tool\n", mode=0o755)
        add("proj/big.dat", os.urandom(5 << 20))
        add("proj/link-to-tool", kind=tarfile.SYMTYPE, linkname="bin/tool")
        add("proj/name with space ü", b"odd name")
    return files


def test_tar_extract_onto_mount(suite, mnt):
    tarball = suite.tmp / f"t-{os.getpid()}.tar.gz"
    files = make_tarball(tarball)
    p = h.run(["tar", "-xzf", tarball, "-C", mnt.mp], timeout=300)
    assert p.returncode == 0, p.stderr
    for name, (data, mode) in files.items():
        assert h.sha256_file(mnt.r(name)) == h.sha256(data), name
        assert stat.S_IMODE(os.stat(mnt.r(name)).st_mode) == mode, name
        assert int(os.stat(mnt.r(name)).st_mtime) == 1_650_000_000, name
    assert os.readlink(mnt.r("proj/link-to-tool")) == "bin/tool"
    assert (mnt / "proj/link-to-tool").read_bytes() == b"#!/bin/sh\necho tool\n"
    # and tar reads it all back through the mount identically
    p = h.run(["tar", "-czf", suite.tmp / "back.tar.gz", "-C", mnt.mp, "proj"], timeout=300)
    assert p.returncode == 0, p.stderr
    with tarfile.open(suite.tmp / "back.tar.gz") as tar:
        back = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    assert {k: h.sha256(v) for k, v in back.items()} == \
        {k: h.sha256(v[0]) for k, v in files.items()}
    p = mnt.exec("--", "./proj/bin/tool")
    assert p.stdout == b"tool\n", p.stderr


def test_cp_and_rm_tree(suite, mnt):
    src = suite.tmp / f"cp-src-{os.getpid()}"
    src.mkdir()
    for i in range(50):
        (src / f"f{i}").write_bytes(os.urandom(1000 + i))
    h.run(["cp", "-a", src, mnt / "copy"], check=True, timeout=120)
    for i in range(50):
        assert mnt.r(f"copy/f{i}").read_bytes() == (src / f"f{i}").read_bytes()
    h.run(["rm", "-rf", mnt / "copy"], check=True, timeout=120)
    assert not mnt.r("copy").exists()
    h.rmtree_quiet(src)
