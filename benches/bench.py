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

At 1000 files it also measures what a driftless host runs every interval:
a converge from a git source served over smart HTTP on 127.0.0.1 (nginx,
fcgiwrap, git-http-backend; requests and bytes from nginx's access log) —
the unchanged remote and a one-commit fetch — and an idle daemon's RSS and
CPU between ticks.

Scope: files and directories on this machine. Packages and services are
measured on a sandbox host by sandbox.py (benches/run runs both).
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
    for tool, pkg in [("nginx", "nginx"), ("fcgiwrap", "fcgiwrap"), ("git", "git")]:
        if not shutil.which(tool):
            missing.append(pkg)
    if not shutil.which("puppet"):
        missing.append("puppet")
    if want_ansible and not shutil.which("ansible-playbook"):
        missing.append("ansible-core")
    if missing:
        print(f"installing {' '.join(missing)} (apt)", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        sh("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, env=env)
    build()


def build():
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


def generate(work, n, real=None):
    """The three tools' inputs for n files; returns their roots.

    `work` is the directory as the tools see it, `real` where it is written
    (a sandbox host's root seen from outside; default `work`)."""
    real = real or work
    files = layout(n)
    dirs = sorted({str(Path(p).parent) for p, _, _ in files})
    roots = {}

    # driftless: a config repo, converged with --root.
    repo = real / "driftless-repo"
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
    (real / "agent.toml").write_text(f'state_dir = "{work}/driftless-state"\n')
    roots["driftless"] = work / "driftless-root"

    # Puppet: one manifest, `source` for plain files, an ERB template for
    # the templated ones (what a Puppet user writes).
    proot = work / "puppet-root"
    pfiles = work / "puppet-files"
    (real / "puppet-files").mkdir()
    lines = ['$name_var = "bench"\n', f"file {{ '{proot}': ensure => directory, mode => '0755' }}\n"]
    for d in ["srv", "srv/bench"] + dirs:
        lines.append(f"file {{ '{proot}/{d}': ensure => directory, mode => '0755' }}\n")
    for i, (p, text, templated) in enumerate(files):
        src = pfiles / f"f{i:05d}"
        if templated:
            (real / "puppet-files" / src.name).write_text("# <%= @name_var %> on <%= @fqdn %>\n" + text)
            body = f"content => template('{src}')"
        else:
            (real / "puppet-files" / src.name).write_text(text)
            body = f"source => '{src}'"
        lines.append(f"file {{ '{proot}/{p}': ensure => file, mode => '0644', {body} }}\n")
    (real / "site.pp").write_text("".join(lines))
    roots["puppet"] = proot

    # Ansible: one play on localhost, copy and template tasks.
    aroot = work / "ansible-root"
    afiles = work / "ansible-files"
    (real / "ansible-files").mkdir()
    tasks = ["- hosts: localhost\n  connection: local\n  gather_facts: false\n  vars:\n    name_var: bench\n  tasks:\n"]
    tasks.append(f"    - file: {{ path: '{aroot}/{{{{ item }}}}', state: directory, mode: '0755' }}\n")
    tasks.append("      loop: [" + ", ".join(f"'{d}'" for d in ["srv", "srv/bench"] + dirs) + "]\n")
    plain, templ = [], []
    for i, (p, text, templated) in enumerate(files):
        src = afiles / f"f{i:05d}"
        if templated:
            (real / "ansible-files" / src.name).write_text("# {{ name_var }} on localhost\n" + text)
            templ.append((src, p))
        else:
            (real / "ansible-files" / src.name).write_text(text)
            plain.append((src, p))
    tasks.append(f"    - copy: {{ src: '{{{{ item.0 }}}}', dest: '{aroot}/{{{{ item.1 }}}}', mode: '0644' }}\n")
    tasks.append("      loop: [" + ", ".join(f"['{s}', '{p}']" for s, p in plain) + "]\n")
    if templ:
        tasks.append(f"    - template: {{ src: '{{{{ item.0 }}}}', dest: '{aroot}/{{{{ item.1 }}}}', mode: '0644' }}\n")
        tasks.append("      loop: [" + ", ".join(f"['{s}', '{p}']" for s, p in templ) + "]\n")
    (real / "play.yml").write_text("".join(tasks))
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
        # Past driftless's 2 s window for trusting fresh stats, its first
        # no-op reads every file once (measured apart: "cold"); the no-op
        # measured next is the steady state a fleet runs every interval.
        time.sleep(2.2)
        res.setdefault(("driftless", "noop-cold"), []).append(
            timed(command("driftless", work, roots, "noop"), "driftless"))
        if r == 0:
            for tool in tools[1:]:
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
    cols = ["measure", *tools, *(f"{t} / driftless" for t in tools[1:])]
    print("| " + " | ".join(cols) + " |")
    print("|" + " --- |" * len(cols))
    row = lambda cells: print("| " + " | ".join(cells) + " |")
    for kind in ["full", "noop", "change", "plan"]:
        cells = [fmt_s(res[(t, kind)]) for t in tools]
        ratios = [f"{median_wall(res[(t, kind)]) / median_wall(res[('driftless', kind)]):.1f}×" for t in tools[1:]]
        row([kind, *cells, *ratios])
    row(["noop, first after the writes (driftless reads every file)",
         fmt_s(res[("driftless", "noop-cold")]), *(["—"] * (len(cols) - 2))])
    cells = [f"{median_rss(res[(t, 'noop')]):.1f} MB" for t in tools]
    ratios = [f"{median_rss(res[(t, 'noop')]) / median_rss(res[('driftless', 'noop')]):.1f}×" for t in tools[1:]]
    row(["peak RSS, no-op", *cells, *ratios])
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
        # Judged where ansible ran (the target's 1000 files take it minutes
        # per run): the ratio only grows with the files.
        r = median_wall(res[("ansible", "noop")]) / noop
        out.append((f"no-op ≥ 3000× faster than ansible-playbook (at {n} files)", r >= 3000,
                    f"{r:.0f}×"))
    if n == 10000:
        out.append(("no-op of 10000 files (`--repo DIR`) ≤ 200 ms (issue 27)", noop <= 0.200,
                    f"{noop * 1000:.0f} ms"))
    return out


NGINX_CONF = """daemon off;
user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
  log_format bench '$request_method $uri $status $bytes_sent $request_length';
  access_log {d}/access.log bench;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location ~ ^/git(/.*) {{
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME /usr/lib/git-core/git-http-backend;
      fastcgi_param GIT_PROJECT_ROOT {d};
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_param PATH_INFO $1;
      fastcgi_pass unix:{d}/fcgi.sock;
    }}
  }}
}}
"""


class GitServer:
    """nginx + fcgiwrap + git-http-backend on 127.0.0.1, serving
    `dir/fleet.git`; stopped when the benchmark ends."""

    def __init__(self, d):
        import socket
        self.d = d
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o755)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        (d / "nginx.conf").write_text(NGINX_CONF.format(d=d, port=self.port))
        self.procs = [subprocess.Popen(["fcgiwrap", "-s", f"unix:{d}/fcgi.sock"], stdin=subprocess.DEVNULL)]
        deadline = time.time() + 10
        while not (d / "fcgi.sock").exists():
            if time.time() > deadline:
                sys.exit("fcgiwrap did not start")
            time.sleep(0.05)
        self.procs.append(subprocess.Popen(["nginx", "-c", str(d / "nginx.conf"), "-p", str(d)],
                                           stdin=subprocess.DEVNULL))
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit("nginx did not start")
                time.sleep(0.05)

    def url(self):
        return f"http://127.0.0.1:{self.port}/git/fleet.git"

    def log_lines(self):
        p = self.d / "access.log"
        return p.read_text().splitlines() if p.exists() else []

    def stop(self):
        for p in self.procs:
            p.terminate()
            p.wait()


def traffic(lines):
    """(requests, bytes sent by the server, what was asked) of access-log
    lines. Protocol v2 over HTTP: a GET of info/refs is the capability
    advertisement; each POST to git-upload-pack is one command (ls-refs,
    then fetch when something is missing)."""
    sent = sum(int(l.split()[3]) for l in lines)
    gets = sum(1 for l in lines if l.startswith("GET "))
    posts = sum(1 for l in lines if l.startswith("POST "))
    return len(lines), sent, f"{gets} GET info/refs, {posts} POST git-upload-pack"


# Plain http:// needs signed commits (driftless refuses it otherwise): the
# bench signs every commit with a throwaway SSH key, as a fleet would.
SIGNING = {}


def signing(work):
    """The throwaway key's `[verify]` section, made once per work dir."""
    key = work / "signing-key"
    if not key.exists():
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", str(key))
        pub = (work / "signing-key.pub").read_text().split()
        (work / "allowed_signers").write_text(f'bench@localhost namespaces="git" {pub[0]} {pub[1]}\n')
    SIGNING["key"] = key
    return f'[verify]\nsignatures = "all"\nallowed_signers = "{work}/allowed_signers"\n'


def git(cwd, *args):
    sign = []
    if "key" in SIGNING:
        sign = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={SIGNING['key']}",
                "-c", "commit.gpgsign=true"]
    sh("git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", *sign, *args, cwd=cwd,
       stdout=subprocess.DEVNULL)


def measure_git(work, runs):
    """The daemon's path: converges from the git source over smart HTTP."""
    srv = GitServer(work / "http")
    try:
        verify = signing(work)
        clone = work / "git-work"
        shutil.copytree(work / "driftless-repo", clone)
        git(clone, "init", "-q", "-b", "main")
        git(clone, "add", "-A")
        git(clone, "commit", "-qm", "bench")
        git(work, "clone", "-q", "--bare", str(clone), str(work / "http" / "fleet.git"))
        git(clone, "remote", "add", "origin", str(work / "http" / "fleet.git"))
        cfg = work / "agent-git.toml"
        cfg.write_text(f'host = "bench"\nstate_dir = "{work}/git-state"\n'
                       f'[source]\nurl = "{srv.url()}"\nbranch = "main"\n' + verify)
        root = work / "git-root"
        argv = [str(DRIFTLESS), "converge", "--now", "--create-root", "--config", str(cfg),
                "--root", str(root)]
        res = {}
        before = len(srv.log_lines())
        res["full"] = [timed(argv, "driftless")]
        res["full-traffic"] = traffic(srv.log_lines()[before:])
        time.sleep(2.2)
        timed(argv, "driftless")
        noops = []
        for _ in range(runs):
            before = len(srv.log_lines())
            noops.append(timed(argv, "driftless"))
            res["noop-traffic"] = traffic(srv.log_lines()[before:])
        res["noop"] = noops
        commits = []
        for r in range(runs):
            f = clone / "files" / "f00005"
            f.write_text(f"one commit later: {r}\n")
            git(clone, "commit", "-qam", f"change {r}")
            git(clone, "push", "-q", "origin", "main")
            before = len(srv.log_lines())
            commits.append(timed(argv, "driftless"))
            res["commit-traffic"] = traffic(srv.log_lines()[before:])
        res["commit"] = commits
        # The daemon converges `/`: its own copy of the desired state puts
        # the files under the work directory, and it runs from its own repo.
        dclone = work / "daemon-work"
        shutil.copytree(clone, dclone, ignore=shutil.ignore_patterns(".git"))
        droot = work / "daemon-root"
        droot.mkdir()
        host = dclone / "hosts" / "bench.toml"
        host.write_text(host.read_text().replace('path = "/srv', f'path = "{droot}/srv'))
        git(dclone, "init", "-q", "-b", "main")
        git(dclone, "add", "-A")
        git(dclone, "commit", "-qm", "bench daemon")
        git(work, "clone", "-q", "--bare", str(dclone), str(work / "http" / "daemon.git"))
        git(dclone, "remote", "add", "origin", str(work / "http" / "daemon.git"))
        res["daemon"] = daemon_idle(work, srv.url().replace("fleet.git", "daemon.git"), dclone, droot)
        return res
    finally:
        srv.stop()


IDLE_SECONDS = 60


class Daemon:
    """`driftless daemon` on `cfg`, watched through /proc."""

    def __init__(self, cfg, state):
        self.cfg, self.state = cfg, state
        self.p = subprocess.Popen([str(DRIFTLESS), "daemon", "--config", str(cfg)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def first_tick(self):
        deadline = time.time() + 300
        while not (self.state / "last-run.json").exists():
            if time.time() > deadline or self.p.poll() is not None:
                sys.exit("the daemon did not finish its first tick")
            time.sleep(0.1)

    def converge_now(self, want=(0,)):
        """One tick through the daemon's socket (`converge --now`)."""
        now = subprocess.run([str(DRIFTLESS), "converge", "--now", "--config", str(self.cfg)],
                             capture_output=True, text=True)
        if now.returncode not in want:
            sys.exit(f"the daemon's tick exited {now.returncode}, not {want}:\n{now.stdout}{now.stderr}")

    def converges(self):
        st = subprocess.run([str(DRIFTLESS), "status", "--json", "--config", str(self.cfg)],
                            capture_output=True, text=True, check=True)
        import json
        counts = json.loads(st.stdout)["status"]["daemon"]["converges"]
        return sum(v for v in counts.values() if isinstance(v, int))

    def cpu_rss(self):
        """(CPU seconds, RSS KiB): the RSS is the least of 20 samples, so
        that a status request in flight is not counted."""
        tick = os.sysconf("SC_CLK_TCK")
        fields = Path(f"/proc/{self.p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / tick
        rss = []
        for _ in range(20):
            rss.append(next(int(l.split()[1]) for l in
                            Path(f"/proc/{self.p.pid}/status").read_text().splitlines()
                            if l.startswith("VmRSS:")))
            time.sleep(0.05)
        return cpu, min(rss)

    def stop(self):
        self.p.terminate()
        self.p.wait(timeout=30)


def daemon_idle(work, url, dclone, droot):
    """RSS and CPU of `driftless daemon` between ticks, in sync, in the
    scenarios of issue 27: after its first tick converged 1000 files from
    empty (and a second, through its socket, found nothing to do), then
    watched idle with nothing due (a long interval, no splay); after a
    commit of 10000 files converged and the next one back at 1000;
    restarted on the host in sync; after 1000 ticks (a 10 ms interval)."""
    state = work / "daemon-state"

    def config(interval):
        cfg = work / "agent-daemon.toml"
        cfg.write_text(f'host = "bench"\nstate_dir = "{state}"\n'
                       f'[source]\nurl = "{url}"\nbranch = "main"\n{signing(work)}'
                       f'[schedule]\ninterval = "{interval}"\nsplay = "0s"\n'
                       f'[daemon]\nsocket = "{work}/daemon.sock"\n')
        return cfg
    out = {"seconds": IDLE_SECONDS}
    d = Daemon(config("1h"), state)
    try:
        d.first_tick()
        time.sleep(2.2)
        d.converge_now()
        time.sleep(1)
        cpu0, _ = d.cpu_rss()
        time.sleep(IDLE_SECONDS)
        cpu1, rss = d.cpu_rss()
        out["cpu_s"], out["after its first converge, from empty"] = cpu1 - cpu0, rss
        # 10000 files, then back at 1000: what it saw once must not stay.
        small = (dclone / "hosts" / "bench.toml").read_text()
        big = work / "big"
        generate(big, 10000)
        shutil.rmtree(dclone / "files")
        shutil.copytree(big / "driftless-repo" / "files", dclone / "files")
        (dclone / "hosts" / "bench.toml").write_text(
            (big / "driftless-repo" / "hosts" / "bench.toml").read_text()
            .replace('path = "/srv', f'path = "{droot}/srv'))
        git(dclone, "add", "-A")
        git(dclone, "commit", "-qm", "10000 files")
        git(dclone, "push", "-q", "origin", "main")
        d.converge_now((2,))
        git(dclone, "revert", "--no-edit", "HEAD")
        git(dclone, "push", "-q", "origin", "main")
        if (dclone / "hosts" / "bench.toml").read_text() != small:
            sys.exit("the revert did not bring the 1000-file host file back")
        d.converge_now((2,))
        time.sleep(1)
        out["after 10000 files and back at 1000"] = d.cpu_rss()[1]
        shutil.rmtree(big)
    finally:
        d.stop()
    # Restarted on a host already in sync (any restart but the first):
    # its first tick finds nothing to do.
    (state / "last-run.json").unlink()
    d = Daemon(config("1h"), state)
    try:
        d.first_tick()
        time.sleep(2)
        out["restarted in sync"] = d.cpu_rss()[1]
    finally:
        d.stop()
    d = Daemon(config("10ms"), state)
    try:
        deadline = time.time() + 600
        while d.converges() < 1000:
            if time.time() > deadline or d.p.poll() is not None:
                sys.exit("the daemon did not tick 1000 times in 10 minutes")
            time.sleep(1)
        out["after 1000 ticks"] = d.cpu_rss()[1]
    finally:
        d.stop()
    return out


def report_git(n, res, targets):
    print(f"\n### {n} files from git over smart HTTP on 127.0.0.1 (the daemon's path)\n")
    print("| measure | driftless | requests | bytes from the server | asked |")
    print("| --- | --- | --- | --- | --- |")
    for kind, label in [("full", "full converge, first clone"), ("noop", "no-op, remote unchanged"),
                        ("commit", "one commit fetched, one file changed")]:
        n, sent, asked = res[f"{kind}-traffic"]
        print(f"| {label} | {fmt_s(res[kind])} | {n} | {sent} | {asked} |")
    d = res["daemon"]
    scenarios = [k for k in d if k not in ("cpu_s", "seconds")]
    print("\n| idle daemon, in sync | RSS |\n| --- | --- |")
    for k in scenarios:
        print(f"| {k} | {d[k] / 1024:.1f} MB |")
    print(f"\nCPU of the idle daemon between ticks: {d['cpu_s']:.2f} s over {d['seconds']} s.")
    n, _, asked = res["noop-traffic"]
    targets.append(("unchanged remote: one capability advertisement and one ls-refs, no pack",
                    asked == "1 GET info/refs, 1 POST git-upload-pack", f"{n} requests: {asked}"))
    worst = max(scenarios, key=lambda k: d[k])
    targets.append(("daemon idle RSS ≤ 12 MB in every scenario (issue 27)", d[worst] <= 12 * 1024,
                    f"at most {d[worst] / 1024:.1f} MB ({worst})"))
    base = d["restarted in sync"]
    far = max(scenarios, key=lambda k: abs(d[k] - base))
    targets.append(("daemon idle RSS within 1 MB of the in-sync restart in every scenario (issue 27)",
                    abs(d[far] - base) <= 1024,
                    f"{(d[far] - base) / 1024:+.1f} MB at most ({far})"))
    targets.append(("daemon uses no CPU between ticks", d["cpu_s"] == 0,
                    f"{d['cpu_s']:.2f} s in {d['seconds']} s"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", default="100,1000,10000", help="sizes to measure (default %(default)s)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ansible", action="store_true", help="also ansible-playbook (minutes)")
    ap.add_argument("--puppet-max", type=int, default=1000,
                    help="largest size puppet runs at (it takes minutes above; default %(default)s)")
    ap.add_argument("--ansible-max", type=int, default=100,
                    help="largest size ansible runs at (about a minute per run at 100; "
                         "default %(default)s)")
    ap.add_argument("--work", default="/tmp/driftless-bench")
    ap.add_argument("--git-at", type=int, default=1000,
                    help="size at which the git-over-HTTP and idle-daemon measures run "
                         "(default %(default)s; 0: none)")
    ap.add_argument("--idle", type=int, default=60, help="seconds the idle daemon is watched")
    # The sandbox part's options (benches/run passes them to both) are not ours.
    a, _ = ap.parse_known_args()
    global IDLE_SECONDS
    IDLE_SECONDS = a.idle
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
    peak = {}
    for n in [int(x) for x in a.files.split(",")]:
        work = Path(a.work) / str(n)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        roots = generate(work, n)
        tools = ["driftless"]
        if n <= a.puppet_max:
            tools.append("puppet")
        if a.ansible and n <= a.ansible_max:
            tools.append("ansible")
        runs = a.runs if n <= 1000 else max(3, a.runs // 2)
        res = measure(tools, work, roots, runs)
        report(n, tools, res, targets)
        peak[n] = median_rss(res[("driftless", "noop")])
        if n == a.git_at:
            report_git(n, measure_git(work, runs), targets)
    if 1000 in peak and 10000 in peak:
        per_file = (peak[10000] - peak[1000]) * 1024 / 9000
        print(f"\nPeak RSS of a no-op per additional managed file (1000 → 10000 files): {per_file:.2f} KB.")
        targets.append(("memory per additional managed file ≤ 1.5 KB (issue 27)", per_file <= 1.5,
                        f"{per_file:.2f} KB"))
    print("\n### Targets (files on this machine; packages and services: the sandbox part)\n")
    for what, met, value in targets:
        print(f"- {'met' if met else 'MISSED'}: {what} — {value}")


if __name__ == "__main__":
    main()
