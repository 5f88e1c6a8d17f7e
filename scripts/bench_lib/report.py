"""report: medians, percentiles and ratios of the raw results, rendered as the Markdown tables of
BENCHMARKS.md (also printed to stdout), plus the machine description and the targets check."""

import math
import os
import platform
import re
import statistics

from bed import REPO, run
from workloads import REPO_OPS

FILE_ORDER = ["local", "sm-ssh-off", "sm-ssh-on", "sm-docker-on", "sm-docker-off", "sshfs"]
FILE_NAMES = {"local": "local disk", "sm-ssh-off": "sandmount ssh", "sm-ssh-on": "sandmount ssh+agent",
              "sm-docker-on": "sandmount docker+agent", "sm-docker-off": "sandmount docker exec-API",
              "sshfs": "sshfs"}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def pct(xs, p):
    xs = sorted(xs)
    return xs[max(0, math.ceil(p * len(xs)) - 1)] if xs else None


def ms(s):
    if s is None:
        return "–"
    v = s * 1000
    return f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms" if v < 10000 else f"{v / 1000:.1f} s"


def ratio(a, b):
    return f"{a / b:.1f}×" if a and b else "–"


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    def ver(cmd, pat=None):
        try:
            p = run(cmd, timeout=20, check=False)
        except (OSError, TimeoutError):
            return "?"
        text = (p.stdout + p.stderr).strip()
        m = re.search(pat, text) if pat else None
        return m.group(0) if m else text.splitlines()[0] if text else "?"

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    rev = ver(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    dirty = run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                timeout=20, check=False).stdout.strip()
    return {
        "cpu": cpu, "cores": os.cpu_count(), "mem_gib": round(mem, 1),
        "kernel": platform.release(), "os": ver(["sh", "-c", ". /etc/os-release; echo $PRETTY_NAME"]),
        "sandmount": f"{rev}{' + uncommitted changes' if dirty else ''}",
        "openssh": ver(["ssh", "-V"]), "sshfs": ver(["sshfs", "--version"], r"SSHFS version \S+"),
        "libfuse": ver(["fusermount3", "-V"]), "docker": ver(["dockerd", "--version"]),
        "git": ver(["git", "--version"]), "python": platform.python_version(),
    }


def exec_table(link_name, res, n, reps):
    rows = [f"#### Exec latency, {link_name} ({reps} × {n} sequential `true`)", "",
            "| path | p50 | p95 | throughput | sftp round trips / exec | vs docker exec (p50) | vs ssh ControlMaster (p50) |",
            "|---|---|---|---|---|---|---|"]
    p50 = {k: pct(r["lat"], 0.5) for k, r in res.items() if r["lat"]}
    for key, r in res.items():
        if not r["lat"]:
            rows.append(f"| {r['name']} | n/a | | | | | |  ")
            continue
        thr = n / med(r["batch_s"]) if r["batch_s"] else None
        rt = f"{med(r['rt']):.1f}" if r["rt"] else ""
        rows.append(f"| {r['name']} | {ms(p50[key])} | {ms(pct(r['lat'], 0.95))} | "
                    f"{thr:.0f}/s | {rt} | {ratio(p50.get('docker-exec'), p50[key])} | "
                    f"{ratio(p50.get('ssh-cm'), p50[key])} |" if thr else "")
    return rows


def repo_medians(runs):
    """{pass: {op: (median s, median rt, median req)}} over reps, plus totals and mount time."""
    out = {}
    for ps in ("cold", "warm"):
        out[ps] = {}
        for op, _, _ in REPO_OPS + [("total", None, None)]:
            if op == "total":
                ss = [sum(r[ps][o].get("s", 0) for o, _, _ in REPO_OPS) for r in runs
                      if not any("error" in r[ps][o] for o, _, _ in REPO_OPS)]
                rts = [sum(r[ps][o].get("rt", 0) for o, _, _ in REPO_OPS) for r in runs
                       if all("rt" in r[ps][o] for o, _, _ in REPO_OPS)]
                out[ps][op] = (med(ss), med(rts), None)
                continue
            vals = [r[ps][op] for r in runs]
            errs = [v["error"] for v in vals if "error" in v]
            out[ps][op] = (med([v.get("s") for v in vals if "error" not in v]),
                           med([v.get("rt") for v in vals if "rt" in v]),
                           errs[0] if errs else None)
    out["mount"] = med([r["mount_s"] for r in runs])
    return out


def repo_table(link_name, res, n_files, reps, unsupported):
    keys = [k for k in FILE_ORDER if res.get(k)]
    na = [k for k in FILE_ORDER if k in unsupported]
    meds = {k: repo_medians(res[k]) for k in keys}
    head = "| step | " + " | ".join(FILE_NAMES[k] for k in keys + na) + " |"
    rows = [f"#### Small repository, {link_name} ({n_files + 300} files, median of {reps}; "
            "sandmount cells: time (round trips))", "", head,
            "|---" * (len(keys) + len(na) + 1) + "|"]
    notes = []
    for ps in ("cold", "warm"):
        for op, label, _ in REPO_OPS + [("total", "**total**", None)]:
            cells = []
            for k in keys:
                s, rt, err = meds[k][ps][op]
                if err and s is None:
                    cells.append("error")
                    notes.append(f"{FILE_NAMES[k]} {ps} {op}: {err}")
                    continue
                c = ms(s) + (f" ({rt:.0f})" if rt is not None else "")
                cells.append(f"**{c}**" if op == "total" else c)
            rows.append(f"| {ps} {label} | " + " | ".join(cells + ["n/a"] * len(na)) + " |")
    rows.append("| mount | " + " | ".join([ms(meds[k]["mount"]) for k in keys] + ["n/a"] * len(na))
                + " |")
    if "sshfs" in meds:
        for ps in ("cold", "warm"):
            base = meds["sshfs"][ps]["total"][0]
            rows.append(f"| {ps} total: sshfs ÷ this | "
                        + " | ".join([ratio(base, meds[k][ps]["total"][0]) for k in keys]
                                     + [""] * len(na)) + " |")
    if "local" in meds:
        base = meds["local"]["warm"]["total"][0]
        rows.append("| warm total: this ÷ local | "
                    + " | ".join([ratio(meds[k]["warm"]["total"][0], base) for k in keys]
                                 + [""] * len(na)) + " |")
    return rows + ([""] + [f"- {n}" for n in sorted(set(notes))] if notes else []), meds


def edit_table(link_name, res, iters):
    rows = [f"#### Edit loop, {link_name} ({iters}× read, write back, run `wc -c` on it in the sandbox)",
            "", "| contender | total | per iteration | stale reads | sandmount round trips |",
            "|---|---|---|---|---|"]
    for k in FILE_ORDER:
        r = res.get(k)
        if not r:
            continue
        if "error" in r:
            rows.append(f"| {FILE_NAMES[k]} | error: {r['error']} | | | |")
            continue
        name = FILE_NAMES[k] + (" (+ ssh ControlMaster for the command)" if k == "sshfs" else "")
        rows.append(f"| {name} | {ms(r['s'])} | {ms(r['s'] / iters)} | {r['stale']} | "
                    f"{r.get('rt', '')} |")
    return rows


def seq_table(link_name, res, size):
    rows = [f"#### Sequential throughput, {link_name} ({size >> 20} MiB file, write through "
            "close(), read on a fresh mount)", "",
            "| contender | write | read | write round trips | read round trips |",
            "|---|---|---|---|---|"]
    for k in FILE_ORDER:
        rs = [r for r in res.get(k, []) if "error" not in r]
        if not rs:
            if res.get(k):
                rows.append(f"| {FILE_NAMES[k]} | error: {res[k][0].get('error')} | | | |")
            continue
        w, rd = med([r["write_s"] for r in rs]), med([r["read_s"] for r in rs])
        mb = size / 1e6
        rows.append(f"| {FILE_NAMES[k]} | {mb / w:.0f} MB/s | {mb / rd:.0f} MB/s | "
                    f"{med([r.get('write_rt') for r in rs]) or ''} | "
                    f"{med([r.get('read_rt') for r in rs]) or ''} |")
    return rows


def gitfsm_medians(r):
    """(cold s, cold rt, warm median s, warm median rt) of one contender's fsmonitor runs."""
    warm = [w for w in r["warm"] if "error" not in w]
    return (r["cold"].get("s"), r["cold"].get("rt"), med([w["s"] for w in warm]),
            med([w.get("rt") for w in warm if "rt" in w]))


def gitfsm_table(link_name, res):
    n = next((r["files"] for r in res.values() if r), 0)
    rows = [f"#### `git status` with the fsmonitor hook, {link_name} ({n} files; cold: the "
            "first run, its full scan with the link's delay off; warm: median of 5, each after "
            "one file changed through the mount)", "",
            "| contender | cold | warm | cold round trips | warm round trips |",
            "|---|---|---|---|---|"]
    for k in FILE_ORDER:
        r = res.get(k)
        if not r:
            continue
        cs, crt, ws, wrt = gitfsm_medians(r)
        err = r["cold"].get("error") or next((w["error"] for w in r["warm"] if "error" in w), "")
        rows.append(f"| {FILE_NAMES[k]} | {ms(cs)} | {ms(ws)} | {'' if crt is None else crt} | "
                    f"{'' if wrt is None else f'{wrt:.0f}'} |" + (f" {err}" if err else ""))
    return rows


def rss_table(res, n_files):
    rows = [f"#### Daemon peak RSS (VmHWM) after `find -printf %s` over {n_files} files, loopback",
            "", "| contender | peak RSS | walk time | round trips |", "|---|---|---|---|"]
    for k in FILE_ORDER:
        r = res.get(k)
        if not r:
            continue
        hwm = f"{r['hwm_kib'] / 1024:.1f} MiB" if r.get("hwm_kib") else "?"
        rows.append(f"| {FILE_NAMES[k]} | {hwm} | {ms(r.get('s'))} | {r.get('rt', '')} |")
    return rows


# ---- the document ----

READ_STEPS = ("walk", "stat", "read", "grep", "git")
RM_ENTRIES = 156  # rm -r vendorN: 150 files in 5 directories, and vendorN itself


def repo_targets(lr):
    """The small repository's targets on the 10 ms link: cold total against sshfs, round trips
    of the warm read-only steps, of each new file and of each removed entry."""
    out = []
    meds = {k: repo_medians(v) for k, v in lr["repo"].items() if v}
    sshfs = meds.get("sshfs", {}).get("cold", {}).get("total", (None,))[0]
    for k in ("sm-ssh-off", "sm-ssh-on", "sm-docker-on"):
        v = meds.get(k, {}).get("cold", {}).get("total", (None,))[0]
        if v and sshfs:
            out.append((f"small repo, 10 ms RTT, cold: ≥ 10× faster than sshfs ({FILE_NAMES[k]})",
                        f"{sshfs / v:.1f}× ({ms(v)} vs {ms(sshfs)})",
                        "met" if sshfs / v >= 10 else "not met"))
    for k in ("sm-ssh-on", "sm-docker-on"):
        if k not in meds:
            continue
        warm = meds[k]["warm"]
        rts = {op: warm[op][1] for op in READ_STEPS}
        if any(v is None for v in rts.values()):
            continue
        out.append((f"small repo, 10 ms RTT, warm read-only steps ≤ 2 round trips each "
                    f"({FILE_NAMES[k]})", ", ".join(f"{op} {v:.0f}" for op, v in rts.items()),
                    "met" if max(rts.values()) <= 2 else "not met"))
        per_file = [meds[k][ps]["write"][1] for ps in ("cold", "warm")]
        if None not in per_file:
            per_file = [v / 100 for v in per_file]
            out.append((f"small repo, 10 ms RTT: ≤ 1.2 round trips per new small file "
                        f"({FILE_NAMES[k]})", f"cold {per_file[0]:.2f}, warm {per_file[1]:.2f}",
                        "met" if max(per_file) <= 1.2 else "not met"))
        per_entry = [meds[k][ps]["rm"][1] for ps in ("cold", "warm")]
        if None not in per_entry:
            per_entry = [v / RM_ENTRIES for v in per_entry]
            out.append((f"small repo, 10 ms RTT: rm -r ≤ 1.1 round trips per entry "
                        f"({FILE_NAMES[k]})", f"cold {per_entry[0]:.2f}, warm {per_entry[1]:.2f}",
                        "met" if max(per_entry) <= 1.1 else "not met"))
    return out


def targets(res):
    """[(target, measured, verdict)] against the goals of the benchmark issue."""
    out = []
    links = res["links"]
    loop = links.get("loopback")
    slow = next((v for k, v in links.items() if v["delay_ms"] == 10), None)
    if loop:
        ex = loop["exec"]
        p50 = {k: pct(r["lat"], 0.5) for k, r in ex.items() if r["lat"]}
        for k in ("sm-ssh-on", "sm-docker-on"):
            if k not in p50:
                out.append((f"exec `true` ≤ 3 ms p50 through the agent ({FILE_NAMES[k]})",
                            "n/a (not supported by this build)", "not met"))
                continue
            v = p50[k]
            out.append((f"exec `true` ≤ 3 ms p50 through the agent ({FILE_NAMES[k]})", ms(v),
                        "met" if v <= 0.003 else "not met"))
            for other, label in (("docker-exec", "docker exec"), ("ssh-cm", "ssh ControlMaster")):
                if other in p50:
                    r = p50[other] / v
                    out.append((f"{FILE_NAMES[k]} exec ≥ 10× faster than {label}", f"{r:.1f}×",
                                "met" if r >= 10 else "not met"))
    if slow and slow.get("repo"):
        out += repo_targets(slow)
    if slow and slow.get("seq"):
        size = slow["seq_size"] / 1e6
        for k in ("sm-ssh-off", "sm-ssh-on", "sm-docker-on"):
            rs = [r for r in slow["seq"].get(k, []) if "error" not in r]
            if rs:
                v = size / med([r["read_s"] for r in rs])
                out.append((f"sequential read at 10 ms RTT ≥ 100 MB/s ({FILE_NAMES[k]})",
                            f"{v:.0f} MB/s", "met" if v >= 100 else "not met"))
    for lr in links.values():
        for k, r in sorted(lr.get("gitfsm", {}).items()):
            if k == "local" or not r:
                continue
            _, _, ws, wrt = gitfsm_medians(r)
            v = f"{ms(ws)} ({wrt:.0f} round trips)" if ws is not None and wrt is not None \
                else "error"
            out.append((f"`git status` + fsmonitor, {r['files']} files, {lr['delay_ms']:g} ms "
                        f"RTT, warm ≤ 0.3 s ({FILE_NAMES[k]})", v,
                        "met" if ws is not None and ws <= 0.3 else "not met"))
    if loop and loop.get("seq"):
        sq = loop["seq"]
        base = [r for r in sq.get("sshfs", []) if "error" not in r]
        for k in ("sm-ssh-off", "sm-ssh-on", "sm-docker-on"):
            rs = [r for r in sq.get(k, []) if "error" not in r]
            if not rs or not base:
                continue
            for d in ("write", "read"):
                a, b = med([r[f"{d}_s"] for r in rs]), med([r[f"{d}_s"] for r in base])
                out.append((f"sequential {d} ≥ sshfs on loopback ({FILE_NAMES[k]})",
                            f"{b / a:.2f}× sshfs", "met" if b / a >= 1 else "not met"))
    rss = res.get("rss", {})
    n = res["args"]["rss_files"]
    for k in ("sm-ssh-off", "sm-ssh-on", "sm-docker-on", "sm-docker-off"):
        r = rss.get(k)
        if r and r.get("hwm_kib"):
            mib = r["hwm_kib"] / 1024
            out.append((f"daemon RSS ≤ 64 MiB for {n} files ({FILE_NAMES[k]})", f"{mib:.1f} MiB",
                        "met" if mib <= 64 else "not met"))
    return out


GITFSM_TEXT = ("- `git status` with the fsmonitor hook (the slowest link only; a scan there would "
               "take sshfs minutes): the generated repository with {files} files (100 per "
               "directory); cold = the first run on a fresh mount (a full scan that gets the "
               "hook's token; it reads every file, the copied index's stat data being stale, so "
               "it runs with the link's delay switched off), warm = each of 5 runs after one "
               "file was rewritten through the mount, the hook (`sandmount-fsmonitor`, "
               "`core.fsmonitorHookVersion=2`, untracked cache on) answering what changed since.")


def keep_block(path, name):
    """The hand-written block <!-- name --> … <!-- /name --> of an existing report, if any."""
    try:
        text = open(path).read()
    except OSError:
        return None
    a, b = f"<!-- {name} -->", f"<!-- /{name} -->"
    if a in text and b in text:
        return text[text.index(a):text.index(b) + len(b)]
    return None


def render(res, o):
    m = res["machine"]
    a = res["args"]
    cmd = "scripts/bench --quick" if a["quick"] else "scripts/bench"
    lines = ["# Benchmarks", "",
             f"Generated by `{cmd}` (as root; {res['elapsed_s'] / 60:.0f} min). "
             + ("**Quick run (`--quick`): one repetition, smaller inputs — indicative only.**"
                if a["quick"] else
                f"Loopback: median of {a['reps']} repetitions, contenders alternated (order rotated) "
                "within each repetition; delayed link: one repetition and a smaller repository."),
             "", "Reproduce: `sudo scripts/bench` (full, ~30 min) or `sudo scripts/bench --quick` "
             "(< 2 min). It installs/builds like `scripts/test`, starts a throwaway sshd "
             "(`scripts/testbed`), a private dockerd (`scripts/dockerbed`, image "
             "`sandmount-test/debian` (debootstrap), workspace bind-mounted), and for each delayed "
             "link `scripts/linkshape` in front of both (half the RTT each way, e.g. 5 ms each way "
             "= 10 ms RTT; netem is not available here).", "",
             "## Machine", "",
             f"- CPU: {m['cpu']}, {m['cores']} cores, {m['mem_gib']} GiB RAM",
             f"- Kernel {m['kernel']}, {m['os']}",
             f"- sandmount {m['sandmount']} (build: meson debugoptimized)",
             f"- {m['openssh']}; {m['sshfs']}; {m['libfuse']}; {m['docker']}; {m['git']}; "
             f"Python {m['python']}", "",
             "## Contenders", "",
             "- **sandmount ssh**: `sandmount -o ssh_config=none,identity=..,known_hosts=..,agent=off "
             "ssh://sandbox@127.0.0.1:PORT/DIR MP`; **+agent**: same with `agent=on`.",
             "- **sandmount docker+agent**: `sandmount -o docker_host=unix://SOCK docker://CONTAINER/DIR MP` "
             "(the agent is placed in the container); **exec-API**: `agent=off` (files through the "
             "image's sftp-server, exec through the Engine API).",
             "- **sshfs** 3.7 with its defaults over the same sshd: `sshfs -F /dev/null -p PORT -o "
             "IdentityFile=..,UserKnownHostsFile=..,StrictHostKeyChecking=yes sandbox@127.0.0.1:DIR MP`.",
             "- **local disk**: the same workload on a local directory (the floor; no FUSE).",
             "- exec only: `ssh host true` (new connection, and through a ControlMaster), "
             "`docker exec CONTAINER true` (docker CLI), and a raw Engine API exec from Python "
             "(create + start attached + inspect over the unix socket).", ""]
    if res.get("unsupported"):
        lines += ["Not available in this build (shown as n/a): "
                  + "; ".join(f"{FILE_NAMES.get(k, k)}: {v}" for k, v in res["unsupported"].items()),
                  ""]
    lines += ["## Targets", "", "| target | measured | |", "|---|---|---|"]
    lines += [f"| {t} | {v} | {'✅' if ok == 'met' else '❌ not met yet'} |"
              for t, v, ok in targets(res)]
    lines += [""]
    for name, lr in res["links"].items():
        lines += [f"## {name}", ""]
        lines += exec_table(name, lr["exec"], a["exec_n"], lr["reps"]) + [""]
        if lr.get("repo"):
            t, _ = repo_table(name, lr["repo"], lr["n_files"], lr["reps"],
                              res.get("unsupported", {}))
            lines += t + [""]
        lines += edit_table(name, lr["edit"], a["edit_iters"]) + [""]
        if lr.get("seq"):
            lines += seq_table(name, lr["seq"], lr["seq_size"]) + [""]
        if lr.get("gitfsm"):
            lines += gitfsm_table(name, lr["gitfsm"]) + [""]
    if res.get("rss"):
        lines += ["## Memory", ""] + rss_table(res["rss"], a["rss_files"]) + [""]
    lines += ["## Workloads", "",
              f"- Small repository: generated deterministically ({a['n_files']} C files on loopback, "
              f"{a['slow_files']} on the delayed link; 0.2–3 KB each; "
              "in 100 dirs `src/aX/bY`, plus `vendor1/` and `vendor2/` with 150 files each; "
              "committed and `git gc`-packed). Each repetition copies it fresh to the sandbox side "
              "and mounts it fresh. **cold** = first pass on the fresh mount, **warm** = the same "
              "steps again right after. Steps, each a shell command run with the mount as cwd: "
              "`find . -type f | wc -l`; `find . -printf '%s %T@\\n'` (stat of everything); "
              "`xargs cat` of every 7th file; `grep -rl MARKER .`; `git status --porcelain`; "
              "write 100 files of 1 KB (`printf > f` in a loop); `rm -r vendorN` (vendor1 cold, "
              "vendor2 warm — so the warm pass sees 150 fewer files).",
              "- Round trips: the daemon's own counters (`sandmount --status`: `sftp requests: N, "
              "round trips: N`), read before and after each step.",
              "- Exec: sequential `true`, timed from the benchmark (process spawn included for "
              "every contender except the raw API exec, which runs in-process).", ""]
    if any(lr.get("gitfsm") for lr in res["links"].values()):
        lines.insert(-1, GITFSM_TEXT.format(files=a.get("gitfsm_files", 10000)))
    keep = keep_block(o.out, "analysis")
    lines += ["## Analysis", "", keep or "<!-- analysis -->\n(to be written)\n<!-- /analysis -->", ""]
    return "\n".join(lines)
