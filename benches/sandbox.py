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

Puppet and Ansible are not run here: the sandbox's Debian root has no
Puppet provider for dnf, and `puppet apply` / `ansible-playbook` would
manage packages with apt. BENCHMARKS.md compares them on files (bench.py).
"""

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import bench

SANDBOX = bench.REPO / "tests" / "system" / "sandbox.sh"
PACKAGES = 20
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


def config_repo(work, repo, pin00):
    """bench.py's 1000 files under /srv/bench, plus the packages and services."""
    if repo.exists():
        shutil.rmtree(repo)
    gen = work / "gen"
    if gen.exists():
        shutil.rmtree(gen)
    gen.mkdir(parents=True)
    bench.generate(gen, 1000)
    shutil.copytree(gen / "driftless-repo", repo)
    host = repo / "hosts" / "bench.toml"
    extra = []
    for i in range(PACKAGES):
        version = pin00 if i == 0 else "1.0"
        extra.append(f'[[package]]\nname = "bench-pkg-{i:02d}"\nversion = "{version}-1"\n')
    for i in range(SERVICES):
        extra.append(f'[[service]]\nname = "bench-svc-{i:02d}"\nenabled = true\nstate = "running"\n')
    host.write_text(host.read_text() + "\n" + "\n".join(extra))


class Host:
    """A booted sandbox host with driftless and GNU time inside."""

    def __init__(self, work):
        self.work = work / "host"
        self.pid = sandbox("boot", str(self.work), "bench", capture=True)
        self.root = Path((self.work / "root-path").read_text().strip())
        for src, dst in [(bench.DRIFTLESS, "usr/local/bin/driftless"),
                         (Path("/usr/bin/time"), "usr/local/bin/time")]:
            shutil.copy2(src, self.root / dst)
        (self.root / "etc/driftless-bench.toml").write_text(
            'state_dir = "/var/lib/driftless-bench"\n')

    def timed(self, verb, ok=(0, 2)):
        """(wall seconds, peak RSS KiB) of one driftless run inside."""
        args = "plan" if verb == "plan" else "converge --now"
        script = (
            "s=$(date +%s%N); "
            f"/usr/local/bin/time -f %M -o /tmp/rss /usr/local/bin/driftless {args} "
            "--config /etc/driftless-bench.toml --repo /srv/bench-repo --host bench "
            ">/tmp/out 2>&1; c=$?; e=$(date +%s%N); "
            'echo "$c $(( (e - s) / 1000 )) $(tail -n 1 /tmp/rss)"')
        out = subprocess.run([str(SANDBOX), "exec", self.pid, "bash", "-c", script],
                             check=True, text=True, capture_output=True).stdout.split()
        code, micros, rss = int(out[0]), int(out[1]), int(out[2])
        if code not in ok:
            log = (self.root / "tmp/out").read_text(errors="replace")
            sys.exit(f"driftless {args} exited {code} inside the host:\n{log[-3000:]}")
        return micros / 1e6, rss

    def run(self, *cmd):
        subprocess.run([str(SANDBOX), "exec", self.pid, *cmd], check=True,
                       stdout=subprocess.DEVNULL)

    def stop(self):
        sandbox("stop", str(self.work))


def empty_host(h):
    """What a full converge starts from: no bench packages, files or state."""
    pkgs = " ".join(f"bench-pkg-{i:02d}" for i in range(PACKAGES))
    units = " ".join(f"bench-svc-{i:02d}.service" for i in range(SERVICES))
    h.run("bash", "-c", f"systemctl disable --now {units} >/dev/null 2>&1; "
          f"rpm -q {pkgs} >/dev/null 2>&1 && dnf -q -y remove {pkgs} >/dev/null; "
          "systemctl daemon-reload; true")
    shutil.rmtree(h.root / "srv/bench", ignore_errors=True)
    shutil.rmtree(h.root / "var/lib/driftless-bench", ignore_errors=True)


def main(runs):
    sandbox("deps")
    sandbox("rootfs")
    work = Path("/tmp/driftless-bench-sandbox")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    build_rpms(work / "rpms")
    h = Host(work)
    try:
        sandbox("repo", str(h.work), str(work / "rpms"))
        repo = h.root / "srv/bench-repo"
        res = {}
        for r in range(runs):
            config_repo(work, repo, "1.0")
            empty_host(h)
            res.setdefault("full", []).append(h.timed("converge"))
            # Past the 2 s window for trusting fresh stats, the first no-op
            # reads every file once; the next is the steady state.
            time.sleep(2.2)
            res.setdefault("noop-cold", []).append(h.timed("converge"))
            res.setdefault("noop", []).append(h.timed("converge"))
            res.setdefault("plan", []).append(h.timed("plan"))
            (h.root / "srv/bench/d05/f00005.conf").write_text("changed by hand\n")
            res.setdefault("change", []).append(h.timed("converge"))
            config_repo(work, repo, "2.0")
            res.setdefault("upgrade", []).append(h.timed("converge"))
        print(f"\n### On a sandbox host: 1000 files + {PACKAGES} packages + {SERVICES} running "
              f"services ({runs} runs)\n")
        print("| measure | driftless |\n| --- | --- |")
        labels = {"full": "full converge from an empty host", "noop": "no-op",
                  "noop-cold": "no-op, first after the writes (reads every file)",
                  "change": "one file changed, no service affected",
                  "upgrade": "one package upgraded", "plan": "plan"}
        for kind, label in labels.items():
            print(f"| {label} | {bench.fmt_s(res[kind])} |")
        rss = statistics.median(r for _, r in res["noop"]) / 1024
        print(f"| peak RSS, no-op | {rss:.1f} MB |")
        noop = bench.median_wall(res["noop"])
        print("\n### Targets (sandbox host)\n")
        for what, met, value in [
            ("no-op of 1000 files + 20 packages + 10 services ≤ 60 ms", noop <= 0.060,
             f"{noop * 1000:.0f} ms"),
            ("peak RSS of that no-op ≤ 12 MB", rss <= 12, f"{rss:.1f} MB"),
        ]:
            print(f"- {'met' if met else 'MISSED'}: {what} — {value}")
    finally:
        h.stop()


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("run as root: the sandbox host needs namespaces and mounts")
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
