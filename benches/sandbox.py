#!/usr/bin/env python3
"""driftless on a sandbox host: 1000 files + 20 packages + 10 running services.

One command (as root):  benches/run --sandbox

A host booted by tests/system/sandbox.sh (systemd as PID 1, real rpm and
dnf, Debian's root filesystem standing in for RHEL's) gets a local RPM
repository of 20 generated packages, 10 of them shipping a service, and a
config repo declaring them pinned, the 10 services enabled and running,
and the 1000 files of bench.py's generator. Measured inside the host, in
one boot, interleaved: full converge from an empty host, no-op, one file
changed (no service uses it), one package upgraded (its pin moved between
two builds), plan, and the peak RSS of a no-op.

The same desired state is given to `puppet apply` (Puppet's `dnf` package
provider and `systemd` service provider, named explicitly: the sandbox's
root is Debian, where Puppet's defaults would be apt) and, with
`--ansible`, to `ansible-playbook -c local` (`dnf` and `systemd` modules),
both installed from Debian into the host, which is kept between runs under
the test cache (/var/cache/driftless-test/bench-host) so that they are
installed once. Each tool's files go to a tree of its own; the packages and
services are shared, so each full converge starts from a host without them.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench

SANDBOX = bench.REPO / "tests" / "system" / "sandbox.sh"
PACKAGES = 20
# driftless's default `[rollback] settle_time`; the bench's agent config keeps it.
SETTLE_SECONDS = 2.0
SERVICES = 10

SPEC = """%{{!?_unitdir:%global _unitdir /usr/lib/systemd/system}}
Name:           bench-pkg-{i:02d}
Version:        {version}
Release:        1
Summary:        driftless benchmark package {i:02d}
License:        MIT
BuildArch:      noarch
AutoReqProv:    no

%description
A package of the driftless benchmark.

%prep

%build

%install
mkdir -p %{{buildroot}}/usr/share/bench %{{buildroot}}%{{_unitdir}}
echo "bench-pkg-{i:02d} {version}" > %{{buildroot}}/usr/share/bench/pkg-{i:02d}.txt
{unit}

%files
/usr/share/bench/pkg-{i:02d}.txt
{unit_file}
"""

UNIT = """cat > %{{buildroot}}%{{_unitdir}}/bench-svc-{i:02d}.service <<'UNIT'
[Unit]
Description=driftless benchmark service {i:02d}

[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
UNIT"""


def sandbox(*args, capture=False):
    r = subprocess.run([str(SANDBOX), *args], check=True, text=True,
                       stdout=subprocess.PIPE if capture else subprocess.DEVNULL)
    return r.stdout.strip() if capture else None


def build_rpms(out):
    """20 packages at 1.0, package 00 also at 2.0 (the upgrade measured)."""
    top = out.parent / "rpmbuild"
    specs = out.parent / "specs"
    specs.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    builds = [(i, "1.0") for i in range(PACKAGES)] + [(0, "2.0")]
    for i, version in builds:
        service = i < SERVICES
        spec = specs / f"bench-pkg-{i:02d}-{version}.spec"
        spec.write_text(SPEC.format(
            i=i, version=version,
            unit=UNIT.format(i=i) if service else "",
            unit_file=f"%{{_unitdir}}/bench-svc-{i:02d}.service" if service else ""))
        bench.sh("rpmbuild", "-bb", "--quiet",
                 "--define", f"_topdir {top}", "--define", f"_rpmdir {out}",
                 "--define", "_rpmfilename %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm",
                 "--define", "_build_id_links none", str(spec), stdout=subprocess.DEVNULL)
    bench.sh("createrepo_c", "--quiet", str(out))


# Inside the host: what the tools read and write.
GEN = Path("/srv/bench-gen")
BENCH_HOST = Path(os.environ.get("DRIFTLESS_TEST_CACHE", "/var/cache/driftless-test")) / "bench-host"
OK = {"driftless": (0, 2), "puppet": (0, 2), "ansible": (0,)}


class Desired:
    """The three tools' inputs: bench.py's 1000 files plus the packages
    (bench-pkg-00 pinned to `pin`, the others to 1.0) and services, each
    written the way that tool's users write it."""

    def __init__(self, root):
        self.real = root / GEN.relative_to("/")
        if self.real.exists():
            shutil.rmtree(self.real)
        self.real.mkdir(parents=True)
        self.trees = bench.generate(GEN, 1000, real=self.real)
        self.base = {name: (self.real / rel).read_text() for name, rel in self.FILES.items()}
        for tool in OK:
            self.pin(tool, "1.0")

    FILES = {"driftless": "driftless-repo/hosts/bench.toml", "puppet": "site.pp",
             "ansible": "play.yml"}

    def pin(self, tool, version):
        """Write `tool`'s desired state with bench-pkg-00 at `version`."""
        v = lambda i: version if i == 0 else "1.0"
        if tool == "driftless":
            extra = [f'[[package]]\nname = "bench-pkg-{i:02d}"\nversion = "{v(i)}-1"\n'
                     for i in range(PACKAGES)]
            extra += [f'[[service]]\nname = "bench-svc-{i:02d}"\nenabled = true\nstate = "running"\n'
                      for i in range(SERVICES)]
            text = self.base[tool] + "\n" + "\n".join(extra)
        elif tool == "puppet":
            text = self.base[tool] + "".join(
                f"package {{ 'bench-pkg-{i:02d}': ensure => '{v(i)}-1', provider => dnf }}\n"
                for i in range(PACKAGES)) + "".join(
                f"service {{ 'bench-svc-{i:02d}': ensure => running, enable => true, "
                f"provider => systemd, require => Package['bench-pkg-{i:02d}'] }}\n"
                for i in range(SERVICES))
        else:
            names = ", ".join(f"bench-pkg-{i:02d}-{v(i)}-1" for i in range(PACKAGES))
            units = ", ".join(f"bench-svc-{i:02d}" for i in range(SERVICES))
            text = self.base[tool] + (
                f"    - dnf: {{ name: [{names}], state: present }}\n"
                "    - systemd: { name: '{{ item }}', state: started, enabled: true }\n"
                f"      loop: [{units}]\n")
        (self.real / self.FILES[tool]).write_text(text)

    def argv(self, tool, kind):
        """The command line inside the host (bench.py's, without --root for
        driftless: packages and services are the host's own)."""
        argv = bench.command(tool, GEN, self.trees, kind)
        if tool == "driftless":
            argv = ["/usr/local/bin/driftless", *argv[1:argv.index("--root")]]
            argv = [x for x in argv if x != "--create-root"]
        return argv

    def one_file(self, tool):
        if tool == "driftless":
            return Path("srv/bench/d05/f00005.conf")
        return bench.one_file(self.trees, tool).relative_to("/")

    def tree(self, tool):
        return Path("srv/bench") if tool == "driftless" else self.trees[tool].relative_to("/")


class Host:
    """The booted benchmark host, with driftless, GNU time, Puppet and
    Ansible inside; its disk is kept between benchmark runs."""

    def __init__(self, want_ansible):
        self.work = BENCH_HOST
        self.work.mkdir(parents=True, exist_ok=True)
        if subprocess.run([str(SANDBOX), "status", str(self.work)],
                          stdout=subprocess.DEVNULL).returncode == 0:
            sandbox("stop", str(self.work))
        self.pid = sandbox("boot", str(self.work), "bench", capture=True)
        self.root = Path((self.work / "root-path").read_text().strip())
        for src, dst in [(bench.DRIFTLESS, "usr/local/bin/driftless"),
                         (Path("/usr/bin/time"), "usr/local/bin/time")]:
            shutil.copy2(src, self.root / dst)
        want = ["puppet"] + (["ansible-core"] if want_ansible else [])
        have = subprocess.run([str(SANDBOX), "exec", self.pid, "dpkg-query", "-W", "-f",
                               "${Package} ${Status}\n", *want], capture_output=True, text=True)
        installed = {l.split()[0] for l in have.stdout.splitlines() if l.endswith(" installed")}
        if set(want) - installed:
            print(f"installing {' '.join(want)} into the bench host (apt)", file=sys.stderr)
            self.run("bash", "-c", "export DEBIAN_FRONTEND=noninteractive; apt-get -qq update && "
                     f"apt-get install -y -qq --no-install-recommends {' '.join(want)}")
            self.run("systemctl", "disable", "--now", "puppet.service")

    def version(self, *argv):
        return subprocess.run([str(SANDBOX), "exec", self.pid, *argv], check=True, text=True,
                              capture_output=True).stdout.strip().splitlines()[0]

    def timed(self, tool, argv):
        """(wall seconds, peak RSS KiB) of one run inside the host."""
        script = (
            "s=$(date +%s%N); "
            f"/usr/local/bin/time -f %M -o /tmp/rss {' '.join(argv)} "
            ">/tmp/out 2>&1; c=$?; e=$(date +%s%N); "
            'echo "$c $(( (e - s) / 1000 )) $(tail -n 1 /tmp/rss)"')
        env = ["env", "NO_COLOR=1", "ANSIBLE_NOCOLOR=1"]
        out = subprocess.run([str(SANDBOX), "exec", self.pid, *env, "bash", "-c", script],
                             check=True, text=True, capture_output=True).stdout.split()
        code, micros, rss = int(out[0]), int(out[1]), int(out[2])
        if code not in OK[tool]:
            log = subprocess.run([str(SANDBOX), "exec", self.pid, "tail", "-c", "3000", "/tmp/out"],
                                 text=True, capture_output=True).stdout
            sys.exit(f"{' '.join(argv)} exited {code} inside the host:\n{log}")
        return micros / 1e6, rss

    def processes(self, tool, argv):
        """The processes `argv` starts inside the host (untimed: it runs
        under strace), as (count, {program: times})."""
        with tempfile.NamedTemporaryFile("r") as trace:
            env = ["env", "NO_COLOR=1", "ANSIBLE_NOCOLOR=1"]
            p = subprocess.run(["strace", "-f", "-qq", "--decode-pids=pidns", "-s", "256", "-o", trace.name,
                                "-e", "trace=execve,fork,vfork,clone,clone3",
                                str(SANDBOX), "exec", self.pid, *env, *argv],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if p.returncode not in OK[tool]:
                sys.exit(f"{' '.join(argv)} exited {p.returncode} under strace")
            return count_processes(trace.read().splitlines(), argv[0])

    def run(self, *cmd):
        subprocess.run([str(SANDBOX), "exec", self.pid, *cmd], check=True,
                       stdout=subprocess.DEVNULL)

    def stop(self):
        sandbox("stop", str(self.work))


def count_processes(lines, program):
    """(processes, {program: times}) started by the process that ran
    `program` (its first successful execve), from `strace -f` lines. A
    clone with CLONE_THREAD is a thread, not a process; strace splits a
    call another process interrupts into "<unfinished ...>" and
    "<... resumed>" lines, joined here per pid."""
    pending, parent, execs, root = {}, {}, [], None
    for line in lines:
        pid, _, rest = line.partition(" ")
        rest = rest.strip()
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest[: -len("<unfinished ...>")]
            continue
        if rest.startswith("<... "):
            rest = pending.pop(pid, "") + rest.split("resumed>", 1)[-1]
        call = rest.split("(", 1)[0]
        # The host has its own PID namespace: a clone returns the child's
        # pid in it, the lines name pids in strace's; --decode-pids=pidns
        # adds the latter ("= 12 /* 3456 in strace's PID NS */").
        outer = re.search(r"= \d+ /\* (\d+) in strace's PID NS \*/$", rest)
        ret = outer.group(1) if outer else rest.rsplit("=", 1)[-1].strip().split(" ")[0]
        if call in ("clone", "clone3", "fork", "vfork") and ret.isdigit() and ret != "0":
            if "CLONE_THREAD" not in rest:
                parent[ret] = pid
        elif call == "execve" and ret == "0":
            path = rest.split('"', 2)[1]
            if root is None and os.path.basename(path) == os.path.basename(program):
                root = pid
            execs.append((pid, os.path.basename(path)))
    if root is None:
        sys.exit(f"{program} was not seen in its trace")

    def under_root(pid):
        while pid in parent:
            pid = parent[pid]
            if pid == root:
                return True
        return False
    children = {pid for pid in parent if under_root(pid)}
    programs = {}
    for pid, name in execs:
        if pid in children:
            programs[name] = programs.get(name, 0) + 1
    return len(children), programs


def empty_host(h, d, tool):
    """What a full converge starts from: no bench packages or services, and
    none of `tool`'s files or state."""
    pkgs = " ".join(f"bench-pkg-{i:02d}" for i in range(PACKAGES))
    units = " ".join(f"bench-svc-{i:02d}.service" for i in range(SERVICES))
    h.run("bash", "-c", f"systemctl disable --now {units} >/dev/null 2>&1; "
          f"rpm -q {pkgs} >/dev/null 2>&1 && dnf -q -y remove {pkgs} >/dev/null; "
          "systemctl daemon-reload; true")
    shutil.rmtree(h.root / d.tree(tool), ignore_errors=True)
    if tool == "driftless":
        shutil.rmtree(d.real / "driftless-state", ignore_errors=True)


def at_old_build(h):
    """bench-pkg-00 back at 1.0 (untimed), so that each tool's upgrade is one."""
    h.run("bash", "-c", "rpm -q bench-pkg-00-1.0-1 >/dev/null || "
          "rpm -U --oldpackage /srv/repo/bench-pkg-00-1.0-1.noarch.rpm 2>/dev/null")


def measure(h, d, tools, runs, ansible_runs):
    res = {}
    for r in range(runs):
        now = [t for t in tools if t != "ansible" or r < ansible_runs]
        add = lambda tool, kind, argv: res.setdefault((tool, kind), []).append(h.timed(tool, argv))
        for tool in now:
            d.pin(tool, "1.0")
            empty_host(h, d, tool)
            add(tool, "full", d.argv(tool, "full"))
        # The other tools' full runs took longer than driftless's 2 s window
        # for trusting fresh stats: its first no-op reads every file once.
        time.sleep(2.2)
        add("driftless", "noop-cold", d.argv("driftless", "noop"))
        for tool in now:
            add(tool, "noop", d.argv(tool, "noop"))
        if r == 0:
            # Once, untimed (strace slows every call): what each no-op forks.
            for tool in now:
                res[(tool, "processes")] = h.processes(tool, d.argv(tool, "noop"))
        for tool in now:
            add(tool, "plan", d.argv(tool, "plan"))
        for tool in now:
            (h.root / d.one_file(tool)).write_text("changed by hand\n")
            add(tool, "change", d.argv(tool, "change"))
        for tool in now:
            at_old_build(h)
            d.pin(tool, "2.0")
            add(tool, "upgrade", d.argv(tool, "upgrade"))
    return res


LABELS = {"full": "full converge from an empty host", "noop": "no-op",
          "change": "one file changed, no service affected",
          "upgrade": "one package upgraded", "plan": "plan"}


def report(res, tools, runs, names):
    print(f"\n### On a sandbox host: 1000 files + {PACKAGES} packages + {SERVICES} running "
          f"services ({runs} runs)\n")
    print(f"Tools: {', '.join(names)}.\n")
    cols = ["measure", *tools, *(f"{t} / driftless" for t in tools[1:])]
    print("| " + " | ".join(cols) + " |")
    print("|" + " --- |" * len(cols))
    for kind, label in LABELS.items():
        cells = [bench.fmt_s(res[(t, kind)]) for t in tools]
        ratios = [f"{bench.median_wall(res[(t, kind)]) / bench.median_wall(res[('driftless', kind)]):.1f}×"
                  for t in tools[1:]]
        print("| " + " | ".join([label, *cells, *ratios]) + " |")
    print("| no-op, first after the writes (driftless reads every file) | "
          + " | ".join([bench.fmt_s(res[("driftless", "noop-cold")]), *(["—"] * (len(cols) - 2))]) + " |")
    rss = {t: bench.median_rss(res[(t, "noop")]) for t in tools}
    print("| peak RSS, no-op | " + " | ".join(
        [*(f"{rss[t]:.1f} MB" for t in tools), *(f"{rss[t] / rss['driftless']:.1f}×" for t in tools[1:])])
        + " |")

    print("| processes started by a no-op | " + " | ".join(
        [*(str(res[(t, "processes")][0]) for t in tools), *(["—"] * (len(tools) - 1))]) + " |")
    print("\nWhat each tool's no-op started (programs run, from `strace -f` of one untimed no-op):\n")
    for t in tools:
        n, programs = res[(t, "processes")]
        named = ", ".join(f"{name} ×{k}" for name, k in sorted(programs.items(), key=lambda x: -x[1]))
        print(f"- {t}: {n} processes" + (f" ({named})" if named else ""))

    wall = lambda t, k: bench.median_wall(res[(t, k)])
    noop, change, full = wall("driftless", "noop"), wall("driftless", "change"), wall("driftless", "full")
    # Its full converge waits `[rollback] settle_time` (2 s by default)
    # once, after starting the services and before checking them: time on
    # the clock, not work; the other tools do not check what they start.
    settle = SETTLE_SECONDS
    procs = res[("driftless", "processes")][0]
    print(f"\nFull converge from an empty host: driftless {full * 1000:.0f} ms, of which "
          f"{settle * 1000:.0f} ms is `settle_time` (waited, not worked): "
          f"{(full - settle) * 1000:.0f} ms of work.")
    targets = [
        ("no-op of 1000 files + 20 packages + 10 services ≤ 15 ms (issue 27)", noop <= 0.015,
         f"{noop * 1000:.0f} ms"),
        ("that no-op starts no process (issue 27)", procs == 0, f"{procs} processes"),
        ("one file changed, no service affected ≤ 150 ms (issue 12)", change <= 0.150,
         f"{change * 1000:.0f} ms"),
        ("peak RSS of that no-op ≤ 12 MB (issue 12)", rss["driftless"] <= 12, f"{rss['driftless']:.1f} MB"),
    ]
    if "puppet" in tools:
        for what, kind, need in [("no-op", "noop", 300), ("one file changed", "change", 50)]:
            ratio = wall("puppet", kind) / wall("driftless", kind)
            targets.append((f"{what} ≥ {need}× faster than puppet apply", ratio >= need, f"{ratio:.1f}×"))
        ratio = wall("puppet", "full") / (full - settle)
        targets.append(("full converge from empty ≥ 8× faster than puppet apply, settle_time apart "
                        "(issue 27)", ratio >= 8,
                        f"{ratio:.1f}× ({wall('puppet', 'full') / full:.1f}× with the settle time)"))
    if "ansible" in tools:
        ratio = wall("ansible", "noop") / noop
        targets.append(("no-op ≥ 3000× faster than ansible-playbook", ratio >= 3000, f"{ratio:.0f}×"))
    print("\n### Targets (sandbox host)\n")
    for what, met, value in targets:
        print(f"- {'met' if met else 'MISSED'}: {what} — {value}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ansible", action="store_true", help="also ansible-playbook (minutes per run)")
    ap.add_argument("--ansible-runs", type=int, default=1,
                    help="runs (the first ones) in which ansible takes part (default %(default)s)")
    a, _ = ap.parse_known_args()
    if not Path("/usr/bin/time").exists():
        bench.sh("apt-get", "install", "-y", "-qq", "--no-install-recommends", "time")
    bench.build()
    sandbox("deps")
    sandbox("rootfs")
    work = Path("/tmp/driftless-bench-sandbox")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    build_rpms(work / "rpms")
    h = Host(a.ansible)
    try:
        sandbox("repo", str(h.work), str(work / "rpms"))
        d = Desired(h.root)
        tools = ["driftless", "puppet"] + (["ansible"] if a.ansible else [])
        names = [h.version("/usr/local/bin/driftless", "--version"),
                 "puppet " + h.version("puppet", "--version")]
        if a.ansible:
            names.append(h.version("ansible-playbook", "--version"))
        res = measure(h, d, tools, a.runs, a.ansible_runs)
        report(res, tools, a.runs, names)
    finally:
        h.stop()


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("run as root: the sandbox host needs namespaces and mounts")
    main()
