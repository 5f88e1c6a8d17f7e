"""git at local speed: a repository on the mount with core.fsmonitor=sandmount-fsmonitor (git's
fsmonitor hook, protocol 2, answered from the daemon's change journal). Changes made directly in
the sandbox, through sandexec and through the mount are seen by `git status`; after a reconnect,
or for a token the daemon did not issue, the hook answers "/" (everything) and git scans; random
change batches (seeded: SM_GITMON_SEED replays one) give the same `git status` with the hook as
without it. A watch budget below the directory count (agent_max_watches) makes the watch partial:
--status says so, the hook answers "/", and a change in an unwatched directory is seen once the
short TTL passed."""

import os
import random
import re
import shutil
import subprocess

import pytest

import helpers as h

HOOK = h.BUILD / "exec" / "sandmount-fsmonitor"
GIT = shutil.which("git")

pytestmark = pytest.mark.skipif(GIT is None, reason="git is not installed")


def git(suite, repo, *args, hook=True, check=True):
    """git in repo on the host (over the mount); hook=False: without the fsmonitor hook and
    without rewriting the index (so the hook's token in it stays)."""
    pre = ["-c", "safe.directory=*"]
    if not hook:
        pre += ["--no-optional-locks", "-c", "core.fsmonitor=false"]
    p = h.run([GIT, *pre, *args], cwd=repo, env=suite.env, timeout=120)
    if check:
        assert p.returncode == 0, f"git {' '.join(args)}: {p.stderr.decode(errors='replace')}"
    return p.stdout.decode(errors="replace")


def status(suite, repo, hook=True):
    return git(suite, repo, "status", "--porcelain", "--untracked-files=all", hook=hook)


def hook(suite, repo, token):
    """Run the hook as git does; (token, set of paths) — paths None for "/"."""
    p = h.run([HOOK, "2", token], cwd=repo, env=suite.env, timeout=60)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    fields = p.stdout.split(b"\0")
    assert fields[-1] == b"", f"answer not NUL-terminated: {p.stdout[-80:]!r}"
    new, paths = fields[0].decode(), [f.decode() for f in fields[1:-1]]
    assert new.startswith("sandmount:"), new
    return new, (None if paths == ["/"] else set(paths))


def sandmount_status(suite, m):
    return suite.sandmount("--status", m.mp, timeout=30).stdout.decode(errors="replace")


def rwrite(m, rel, data):
    """Write rel directly in the sandbox, its missing parents made too (the sandbox's own)."""
    parts = rel.split("/")
    for i in range(1, len(parts)):
        d = m.r("/".join(parts[:i]))
        if not d.exists():
            h.remote_mkdir(d, m.sb.ids)
    m.rwrite(rel, data)


def make_repo(suite, m, rel="ws/repo", files=20):
    """A repository in a subdirectory of the workspace, made in the sandbox, with the hook set."""
    for i in range(files):
        rwrite(m, f"{rel}/d{i % 4}/f{i}.txt", f"file {i}\n".encode())
    rwrite(m, f"{rel}/top.txt", b"top\n")
    repo = m / rel
    git(suite, repo, "init", "-q")
    for k, v in (("core.fsmonitor", str(HOOK)), ("core.fsmonitorHookVersion", "2"),
                 ("core.untrackedCache", "true"), ("user.email", "t@example.com"),
                 ("user.name", "t")):
        git(suite, repo, "config", k, v)
    git(suite, repo, "add", "-A")
    git(suite, repo, "commit", "-qm", "init")
    assert status(suite, repo) == ""
    assert status(suite, repo) == ""  # the second one answered from the journal
    return repo


def kill_agent(m):
    """SIGKILL the agent serving this mount (its command line names our remote dir)."""
    pids = m.sb.pgrep(f"serve -d {re.escape(str(m.remote))}$")
    assert pids, "no agent serves this mount"
    h.kill_pids(pids)


@pytest.fixture
def gmnt(mounter):
    return mounter()


def test_hook_sees_sandbox_and_sandexec_changes(suite, gmnt):
    repo = make_repo(suite, gmnt)
    tok, paths = hook(suite, repo, "")
    assert paths is None, "a token the daemon never issued must answer everything"
    tok, paths = hook(suite, repo, tok)
    assert paths is not None and not any(p.startswith("d0/f0.txt") for p in paths)

    # directly in the sandbox
    gmnt.rwrite("ws/repo/d1/f1.txt", b"changed in the sandbox\n")
    tok2, paths = hook(suite, repo, tok)
    assert paths is not None and "d1/f1.txt" in paths and "d1/f1.txt/" in paths, paths
    assert " M d1/f1.txt" in status(suite, repo)

    # through sandexec
    p = gmnt.exec("sh", "-c", "echo via sandexec > new.txt && rm d2/f2.txt", cwd=repo)
    assert p.returncode == 0, p.stderr
    tok3, paths = hook(suite, repo, tok2)
    assert paths is not None and {"new.txt", "d2/f2.txt"} <= paths, paths
    st = status(suite, repo)
    assert "?? new.txt" in st and " D d2/f2.txt" in st, st
    assert st == status(suite, repo, hook=False)

    # through the mount, then a path outside the repo: not reported to git
    (repo / "d3" / "f3.txt").write_text("through the mount\n")
    rwrite(gmnt, "ws/outside.txt", b"not in the repo\n")
    _, paths = hook(suite, repo, tok3)
    assert paths is not None and "d3/f3.txt" in paths, paths
    assert not any("outside" in p for p in paths), paths
    st = status(suite, repo)
    assert " M d3/f3.txt" in st and st == status(suite, repo, hook=False), st

    # the daemon answered from the journal, not with "everything", for most of these
    m = re.search(r"fsmonitor queries: (\d+) \((\d+) answered everything\)",
                  sandmount_status(suite, gmnt))
    assert m and int(m.group(1)) > int(m.group(2)), sandmount_status(suite, gmnt)


def test_wrong_and_old_tokens_answer_everything(suite, gmnt):
    repo = make_repo(suite, gmnt, rel="repo", files=4)
    tok, _ = hook(suite, repo, "")
    inst, gen, seq = tok.split(":")[1:]
    for bad in ("", "garbage", "1796300549274661528", f"sandmount:{inst}:{gen}:{int(seq) + 5}",
                f"sandmount:{'0' * 16}:{gen}:{seq}", f"sandmount:{inst}:{int(gen) + 1}:{seq}",
                tok + "x"):
        assert hook(suite, repo, bad)[1] is None, bad
    assert hook(suite, repo, tok)[1] is not None
    # fail safe: no answer at all (git then scans) outside a mount, or for another protocol
    for argv, cwd in (([HOOK, "2", tok], suite.tmp), ([HOOK, "1", "0"], repo)):
        p = h.run(argv, cwd=cwd, env=suite.env, timeout=30)
        assert p.returncode != 0 and p.stdout == b"", (argv, p.stdout)


def test_reconnect_answers_everything(suite, gmnt):
    repo = make_repo(suite, gmnt, rel="repo", files=8)
    tok, _ = hook(suite, repo, "")
    before = sandmount_status(suite, gmnt)
    kill_agent(gmnt)
    # changed while no watch runs: the journal never hears of it
    gmnt.rwrite("repo/d0/f0.txt", b"changed while the agent was gone\n")
    gmnt.rwrite("repo/fresh.txt", b"new\n")
    assert h.wait_until(lambda: "watch: live" in sandmount_status(suite, gmnt)
                        and sandmount_status(suite, gmnt) != before, 30)
    assert hook(suite, repo, tok)[1] is None, "an old token after a reconnect must answer /"
    st = status(suite, repo)
    assert " M d0/f0.txt" in st and "?? fresh.txt" in st, st
    assert st == status(suite, repo, hook=False)
    # and the journal serves again after it
    tok, _ = hook(suite, repo, "")
    gmnt.rwrite("repo/d1/f1.txt", b"after the reconnect\n")
    _, paths = hook(suite, repo, tok)
    assert paths is not None and "d1/f1.txt" in paths, paths


def random_batch(rng, m, repo, rel, n):
    """n random changes, each made in the sandbox, through the mount or through sandexec."""
    for _ in range(n):
        files = sorted(p for p in (m.r(rel)).rglob("*") if p.is_file() and ".git" not in p.parts)
        dirs = sorted(p for p in (m.r(rel)).rglob("*") if p.is_dir() and ".git" not in p.parts)
        op = rng.choice(["modify", "modify", "create", "delete", "rename", "mkdir", "rmdir",
                         "mvdir"])
        via = rng.choice(["sandbox", "mount", "sandexec"])
        pick = rng.choice(files).relative_to(m.r(rel)).as_posix() if files else None
        dpick = rng.choice(dirs).relative_to(m.r(rel)).as_posix() if dirs else None
        name = f"n{rng.randrange(10 ** 6)}"
        cmd = {
            "modify": pick and f"printf 'x%s\\n' {rng.randrange(100)} >> {pick}",
            "create": f"mkdir -p {dpick or '.'} && echo new > {dpick or '.'}/{name}.txt",
            "delete": pick and f"rm -f {pick}",
            "rename": pick and f"mv {pick} {os.path.dirname(pick) or '.'}/{name}.txt",
            "mkdir": f"mkdir -p {name}/sub && echo a > {name}/a && echo b > {name}/sub/b",
            "rmdir": dpick and f"rm -rf {dpick}",
            "mvdir": dpick and f"mv {dpick} {name}",
        }[op]
        if not cmd:
            continue
        if via == "sandexec":
            p = m.exec("sh", "-c", cmd, cwd=repo)
            assert p.returncode == 0, (cmd, p.stderr)
        else:
            where = m.r(rel) if via == "sandbox" else repo
            user = ["setpriv", f"--reuid={m.sb.ids[0]}", f"--regid={m.sb.ids[1]}",
                    "--clear-groups"] if via == "sandbox" else []
            p = subprocess.run([*user, "sh", "-c", cmd], cwd=where, timeout=60,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            assert p.returncode == 0, (cmd, via, p.stderr)


def test_random_batches_match_a_full_scan(suite, gmnt):
    seed = int(os.environ.get("SM_GITMON_SEED", random.randrange(10 ** 6)))
    rng = random.Random(seed)
    repo = make_repo(suite, gmnt, rel="ws/r", files=12)
    for batch in range(6):
        random_batch(rng, gmnt, repo, "ws/r", rng.randint(1, 8))
        with_hook = status(suite, repo)
        without = status(suite, repo, hook=False)
        assert with_hook == without, (f"seed {seed} (SM_GITMON_SEED={seed} replays) batch "
                                      f"{batch}:\nwith the hook:\n{with_hook}\nwithout:\n{without}")
        if rng.random() < 0.5:
            git(suite, repo, "add", "-A")
            git(suite, repo, "commit", "-qm", f"batch {batch}", check=False)


def test_partial_watch(suite, sandbox, mounter):
    rem = sandbox.new_remote("partial")
    for d in range(8):
        h.remote_mkdir(rem.host / f"d{d}", sandbox.ids)
        h.remote_write(rem.host / f"d{d}" / "f.txt", f"old {d}\n".encode(), ids=sandbox.ids)
    m = mounter(opts=sandbox.opts(agent_max_watches=3, cache_timeout=1), remote=rem)
    assert h.wait_until(lambda: "watch: partial" in sandmount_status(suite, m), 15), \
        sandmount_status(suite, m)
    st = sandmount_status(suite, m)
    n = int(re.search(r"watch: partial — (\d+) directories unwatched \(inotify limit\)",
                      st).group(1))
    assert n == 9 - 3, st  # the root and d0..d7, three watched
    for d in range(8):
        assert (m / f"d{d}" / "f.txt").read_text() == f"old {d}\n"
    for d in range(8):
        m.rwrite(f"d{d}/f.txt", f"new content {d}\n".encode())
    # every directory, watched or not, shows the change once the short TTL passed
    assert h.wait_until(lambda: all((m / f"d{d}" / "f.txt").read_text() == f"new content {d}\n"
                                    for d in range(8)), 10)
    # the journal cannot vouch for anything: the hook answers everything
    rwrite(m, "repo/a.txt", b"a\n")
    repo = m / "repo"
    git(suite, repo, "init", "-q")
    tok, paths = hook(suite, repo, "")
    assert paths is None
    assert hook(suite, repo, tok)[1] is None
