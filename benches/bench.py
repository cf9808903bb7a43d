#!/usr/bin/env python3
"""driftless side by side with `puppet apply` and `ansible-playbook -c local`.

One command (as root):  benches/run

It builds driftless (release), installs Puppet and Ansible from the
distribution when missing, generates the same desired state for the three
tools -- N regular files of mixed sizes under a few directories, one in ten
a template -- each into a scratch tree of its own, and measures, interleaved
and in one run:

  full      converge from an empty tree
  noop      converge of a tree already converged (the fleet's hot path)
  change    one file changed by hand, converged back
  plan      driftless plan / puppet --noop / ansible --check on the no-op tree
  rss       peak RSS of a no-op

Each figure is the median of the runs, with min and max; each comparison a
ratio from the same run. Nothing here is timed inside `cargo test`.

Scope: files and directories on this machine. Packages and services need
the sandbox host (tests/system/sandbox.sh) and are not measured here yet;
BENCHMARKS.md says so.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DRIFTLESS = REPO / "target" / "release" / "driftless"


def sh(*argv, **kw):
    return subprocess.run(argv, check=True, **kw)


def ensure_tools(want_ansible):
    missing = []
    if not Path("/usr/bin/time").exists():
        missing.append("time")
    if not shutil.which("puppet"):
        missing.append("puppet")
    if want_ansible and not shutil.which("ansible-playbook"):
        missing.append("ansible-core")
    if missing:
        print(f"installing {' '.join(missing)} (apt)", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        sh("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, env=env)
    print("building driftless (release)", file=sys.stderr)
    sh("cargo", "build", "--release", "--locked", "-q", cwd=REPO)


def content(i):
    """Mixed sizes: most files small, some a few KiB, a few 64 KiB."""
    size = 64 * 1024 if i % 100 == 0 else (4096 if i % 10 == 0 else 200)
    line = f"file {i}: managed by the benchmark\n"
    return (line * (size // len(line) + 1))[:size]


def layout(n):
    """(relative path, text, templated) for each file, in 20 directories."""
    out = []
    for i in range(n):
        templated = i % 10 == 3
        out.append((f"srv/bench/d{i % 20:02d}/f{i:05d}.conf", content(i), templated))
    return out


def generate(work, n):
    """The three tools' inputs for n files; returns their roots."""
    files = layout(n)
    dirs = sorted({str(Path(p).parent) for p, _, _ in files})
    roots = {}

    # driftless: a config repo, converged with --root.
    repo = work / "driftless-repo"
    (repo / "hosts").mkdir(parents=True)
    (repo / "files").mkdir()
    host = ['[vars]\nname = "bench"\n']
    for d in ["srv", "srv/bench"] + dirs:
        host.append(f'[[directory]]\npath = "/{d}"\nmode = "0755"\n')
    for i, (p, text, templated) in enumerate(files):
        src = repo / "files" / f"f{i:05d}"
        if templated:
            src.write_text("# {{ vars.name }} on {{ host }}\n" + text)
            host.append(f'[[file]]\npath = "/{p}"\nsource = "files/f{i:05d}"\ntemplate = true\nmode = "0644"\n')
        else:
            src.write_text(text)
            host.append(f'[[file]]\npath = "/{p}"\nsource = "files/f{i:05d}"\nmode = "0644"\n')
    (repo / "hosts" / "bench.toml").write_text("\n".join(host))
    (work / "agent.toml").write_text(f'state_dir = "{work}/driftless-state"\n')
    roots["driftless"] = work / "driftless-root"

    # Puppet: one manifest, `source` for plain files, an ERB template for
    # the templated ones (what a Puppet user writes).
    proot = work / "puppet-root"
    pfiles = work / "puppet-files"
    pfiles.mkdir()
    lines = ['$name_var = "bench"\n', f"file {{ '{proot}': ensure => directory, mode => '0755' }}\n"]
    for d in ["srv", "srv/bench"] + dirs:
        lines.append(f"file {{ '{proot}/{d}': ensure => directory, mode => '0755' }}\n")
    for i, (p, text, templated) in enumerate(files):
        src = pfiles / f"f{i:05d}"
        if templated:
            src.write_text("# <%= @name_var %> on <%= @fqdn %>\n" + text)
            body = f"content => template('{src}')"
        else:
            src.write_text(text)
            body = f"source => '{src}'"
        lines.append(f"file {{ '{proot}/{p}': ensure => file, mode => '0644', {body} }}\n")
    (work / "site.pp").write_text("".join(lines))
    roots["puppet"] = proot

    # Ansible: one play on localhost, copy and template tasks.
    aroot = work / "ansible-root"
    afiles = work / "ansible-files"
    afiles.mkdir()
    tasks = ["- hosts: localhost\n  connection: local\n  gather_facts: false\n  vars:\n    name_var: bench\n  tasks:\n"]
    tasks.append(f"    - file: {{ path: '{aroot}/{{{{ item }}}}', state: directory, mode: '0755' }}\n")
    tasks.append("      loop: [" + ", ".join(f"'{d}'" for d in ["srv", "srv/bench"] + dirs) + "]\n")
    plain, templ = [], []
    for i, (p, text, templated) in enumerate(files):
        src = afiles / f"f{i:05d}"
        if templated:
            src.write_text("# {{ name_var }} on localhost\n" + text)
            templ.append((src, p))
        else:
            src.write_text(text)
            plain.append((src, p))
    tasks.append(f"    - copy: {{ src: '{{{{ item.0 }}}}', dest: '{aroot}/{{{{ item.1 }}}}', mode: '0644' }}\n")
    tasks.append("      loop: [" + ", ".join(f"['{s}', '{p}']" for s, p in plain) + "]\n")
    if templ:
        tasks.append(f"    - template: {{ src: '{{{{ item.0 }}}}', dest: '{aroot}/{{{{ item.1 }}}}', mode: '0644' }}\n")
        tasks.append("      loop: [" + ", ".join(f"['{s}', '{p}']" for s, p in templ) + "]\n")
    (work / "play.yml").write_text("".join(tasks))
    roots["ansible"] = aroot
    return roots


def command(tool, work, roots, kind):
    if tool == "driftless":
        verb = ["plan"] if kind == "plan" else ["converge", "--now", "--create-root"]
        return [str(DRIFTLESS), *verb, "--config", str(work / "agent.toml"),
                "--repo", str(work / "driftless-repo"), "--host", "bench",
                "--root", str(roots["driftless"])]
    if tool == "puppet":
        extra = ["--noop"] if kind == "plan" else []
        return ["puppet", "apply", "--detailed-exitcodes", "--color=false", *extra,
                str(work / "site.pp")]
    extra = ["--check"] if kind == "plan" else []
    return ["ansible-playbook", "-i", "localhost,", *extra, str(work / "play.yml")]


OK_CODES = {"driftless": {0, 2}, "puppet": {0, 2}, "ansible": {0}}


def timed(argv, tool):
    """Wall seconds and peak RSS (KiB) of one run."""
    env = dict(os.environ, NO_COLOR="1", ANSIBLE_NOCOLOR="1")
    # The peak RSS from GNU time, a small C program: a child forked (or
    # vforked) by Python would count Python's own pages in its peak. stderr
    # to a file, not a pipe: a chatty tool must not block on a full pipe.
    with tempfile.TemporaryFile() as errf, tempfile.NamedTemporaryFile("r") as rss:
        start = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name, *argv],
                           stdout=subprocess.DEVNULL, stderr=errf, env=env)
        wall = time.perf_counter() - start
        code = p.returncode
        errf.seek(0)
        err = errf.read().decode(errors="replace")
        maxrss = int(rss.read().split()[-1])
    if code not in OK_CODES[tool]:
        sys.exit(f"{tool} failed (exit {code}): {' '.join(argv)}\n{err[-2000:]}")
    return wall, maxrss


def one_file(roots, tool):
    return roots[tool] / "srv/bench/d05/f00005.conf"


def measure(tools, work, roots, runs):
    """{(tool, kind): [(wall, rss)]}, interleaved across tools."""
    res = {}
    for r in range(runs):
        for tool in tools:
            # full: from an empty tree (and, for driftless, an empty state).
            shutil.rmtree(roots[tool], ignore_errors=True)
            if tool == "driftless":
                shutil.rmtree(work / "driftless-state", ignore_errors=True)
            res.setdefault((tool, "full"), []).append(timed(command(tool, work, roots, "full"), tool))
        if r == 0:
            # Past driftless's 2 s window for trusting fresh stats: the
            # no-op measured is the steady state a fleet runs.
            time.sleep(2.2)
            for tool in tools:
                timed(command(tool, work, roots, "noop"), tool)
        for tool in tools:
            res.setdefault((tool, "noop"), []).append(timed(command(tool, work, roots, "noop"), tool))
        for tool in tools:
            res.setdefault((tool, "plan"), []).append(timed(command(tool, work, roots, "plan"), tool))
        for tool in tools:
            f = one_file(roots, tool)
            f.write_text("changed by hand\n")
            res.setdefault((tool, "change"), []).append(timed(command(tool, work, roots, "change"), tool))
    return res


def fmt_s(xs):
    walls = [w for w, _ in xs]
    return f"{statistics.median(walls) * 1000:.0f} ms ({min(walls) * 1000:.0f}–{max(walls) * 1000:.0f})"


def median_wall(xs):
    return statistics.median([w for w, _ in xs])


def median_rss(xs):
    return statistics.median([r for _, r in xs]) / 1024


def report(n, tools, res, targets):
    print(f"\n### {n} files\n")
    head = "| measure | " + " | ".join(tools) + " | " + " | ".join(f"{t} / driftless" for t in tools[1:]) + " |"
    print(head)
    print("|" + " --- |" * (1 + 2 * len(tools) - 1))
    for kind in ["full", "noop", "change", "plan"]:
        cells = [fmt_s(res[(t, kind)]) for t in tools]
        ratios = [f"{median_wall(res[(t, kind)]) / median_wall(res[('driftless', kind)]):.1f}×" for t in tools[1:]]
        print(f"| {kind} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    cells = [f"{median_rss(res[(t, 'noop')]):.1f} MB" for t in tools]
    ratios = [f"{median_rss(res[(t, 'noop')]) / median_rss(res[('driftless', 'noop')]):.1f}×" for t in tools[1:]]
    print("| peak RSS, no-op | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    targets.extend(check_targets(n, tools, res))


def check_targets(n, tools, res):
    """The targets of issue 12 that this (files-only) run can judge."""
    out = []
    noop = median_wall(res[("driftless", "noop")])
    change = median_wall(res[("driftless", "change")])
    rss = median_rss(res[("driftless", "noop")])
    if n == 1000:
        out.append(("no-op of 1000 files ≤ 60 ms", noop <= 0.060, f"{noop * 1000:.0f} ms"))
        out.append(("one file changed ≤ 150 ms", change <= 0.150, f"{change * 1000:.0f} ms"))
        out.append(("peak RSS of a no-op at 1000 files ≤ 12 MB", rss <= 12, f"{rss:.1f} MB"))
        full = median_wall(res[("driftless", "full")])
        out.append(("1000 new files written in ≤ 1.5 s", full <= 1.5, f"{full:.2f} s"))
        if "puppet" in tools:
            r = median_wall(res[("puppet", "noop")]) / noop
            out.append(("no-op ≥ 150× faster than puppet apply", r >= 150, f"{r:.0f}×"))
            r = median_wall(res[("puppet", "change")]) / change
            out.append(("one file changed ≥ 50× faster than puppet", r >= 50, f"{r:.0f}×"))
            r = median_wall(res[("puppet", "full")]) / full
            out.append(("full converge ≥ 8× faster than puppet", r >= 8, f"{r:.1f}×"))
        if "ansible" in tools:
            r = median_wall(res[("ansible", "noop")]) / noop
            out.append(("no-op ≥ 3000× faster than ansible-playbook", r >= 3000, f"{r:.0f}×"))
    if n == 10000:
        out.append(("no-op of 10000 files ≤ 250 ms", noop <= 0.250, f"{noop * 1000:.0f} ms"))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", default="100,1000,10000", help="sizes to measure (default %(default)s)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ansible", action="store_true", help="also ansible-playbook (minutes)")
    ap.add_argument("--puppet-max", type=int, default=1000,
                    help="largest size puppet runs at (it takes minutes above; default %(default)s)")
    ap.add_argument("--work", default="/tmp/driftless-bench")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the tools set owners, and missing tools are installed with apt")
    ensure_tools(a.ansible)
    version = lambda argv: subprocess.run(argv, capture_output=True, text=True).stdout.strip()
    tools = [version([str(DRIFTLESS), "--version"]), "puppet " + version(["puppet", "--version"])]
    if a.ansible:
        tools.append(version(["ansible-playbook", "--version"]).splitlines()[0])
    print(f"# driftless benchmark\n\n{os.uname().sysname} {os.uname().release}, "
          f"{os.cpu_count()} CPUs; {', '.join(tools)}; {a.runs} runs each, interleaved; "
          "median (min–max).")
    targets = []
    for n in [int(x) for x in a.files.split(",")]:
        work = Path(a.work) / str(n)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        roots = generate(work, n)
        tools = ["driftless"]
        if n <= a.puppet_max:
            tools.append("puppet")
        if a.ansible and n <= a.puppet_max:
            tools.append("ansible")
        runs = a.runs if n <= 1000 else max(3, a.runs // 2)
        res = measure(tools, work, roots, runs)
        report(n, tools, res, targets)
    print("\n### Targets (files only; packages and services are not in this run)\n")
    for what, met, value in targets:
        print(f"- {'met' if met else 'MISSED'}: {what} — {value}")


if __name__ == "__main__":
    main()
