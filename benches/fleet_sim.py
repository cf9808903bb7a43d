#!/usr/bin/env python3
"""A fleet on one machine: N `driftless daemon`s (default 50), each with its
own state directory and root, ticking against one smart-HTTP git server
(nginx + git-http-backend, as in bench.py) and one etcd, all on 127.0.0.1.

Once every agent has converged the commit (and published its record), the
fleet is watched for a window of unchanged ticks, and the cost of an
unchanged tick is measured where it lands: git requests and bytes from
nginx's access log, etcd requests from etcd's own gRPC counters (the JSON
gateway's calls are counted there too), and the daemons' RSS. Then the
same for one new commit rolled out in two waves (canary, the rest). The
report extrapolates to 10,000 hosts at a 5-minute interval.

Run as root (the daemons converge their own --root directories):
    benches/fleet_sim.py [--agents 50] [--interval 10] [--window 60]
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import DRIFTLESS, GitServer, build, git, traffic  # noqa: E402


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def etcd_counts(url):
    """gRPC calls started by method: {Range: n, Put: n, ...}."""
    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("grpc_server_started_total{"):
            labels, value = line.rsplit(" ", 1)
            method = labels.split('grpc_method="', 1)[1].split('"', 1)[0]
            out[method] = out.get(method, 0) + int(float(value))
    return out


def delta(after, before):
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def rss_mb(pids):
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


POLICY = """[[wave]]
name = "canary"
hosts = ["sim-00*"]
min_healthy = "100%"
soak = "{soak}s"
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--interval", type=int, default=10, help="seconds between ticks")
    ap.add_argument("--window", type=int, default=60, help="seconds of unchanged ticks measured")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the daemons converge their own roots")
    build()
    work = Path(tempfile.mkdtemp(prefix="driftless-fleet-sim-"))
    procs = []
    srv = GitServer(work / "http")
    try:
        # etcd, on loopback.
        client, peer = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{client}"
        procs.append(subprocess.Popen(
            ["etcd", "--name", "sim", "--data-dir", str(work / "etcd"),
             "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-cluster", f"sim=http://127.0.0.1:{peer}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.time() + 30
        while True:
            try:
                etcd_counts(etcd_url)
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit("etcd did not start")
                time.sleep(0.2)

        # The config repo: every host one file and the wave policy.
        clone = work / "repo"
        (clone / "hosts").mkdir(parents=True)
        (clone / "hosts" / "default.toml").write_text(
            "[[file]]\npath = '/etc/motd'\ncontent = \"fleet v1\\n\"\n")
        soak = args.interval
        (clone / "fleet.toml").write_text(POLICY.format(soak=soak))
        git(clone, "init", "-q", "-b", "main")
        git(clone, "add", "-A")
        git(clone, "commit", "-qm", "v1")
        git(work, "clone", "-q", "--bare", str(clone), str(work / "http" / "fleet.git"))
        git(clone, "remote", "add", "origin", str(work / "http" / "fleet.git"))

        # The agents.
        agents = []
        for i in range(args.agents):
            name = f"sim-{i:03d}"
            d = work / "agents" / name
            (d / "root").mkdir(parents=True)
            cfg = d / "agent.toml"
            cfg.write_text(
                f'host = "{name}"\nstate_dir = "{d}/state"\n'
                f'[source]\nurl = "{srv.url()}"\nbranch = "main"\n'
                '[verify]\nsignatures = "off"\n'
                f'[schedule]\ninterval = "{args.interval}s"\nsplay = "{args.interval}s"\n'
                '[rollback]\nsettle_time = "0s"\n'
                f'[daemon]\nsocket = "{d}/control.sock"\n'
                f'[fleet]\nendpoints = ["{etcd_url}"]\nprefix = "/sim"\n')
            p = subprocess.Popen([str(DRIFTLESS), "daemon", "--config", str(cfg), "--root", str(d / "root")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            agents.append((name, d, p))

        def applied(commit):
            n = 0
            for _, d, _ in agents:
                try:
                    st = json.loads((d / "state" / "fleet.json").read_text())
                    n += st["record"].get("applied") == commit
                except (OSError, ValueError, KeyError):
                    pass
            return n

        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True,
                              text=True).stdout.strip()
        t0 = time.time()
        while applied(head) < args.agents:
            if time.time() - t0 > 30 * args.interval:
                sys.exit(f"only {applied(head)} of {args.agents} agents applied {head[:12]}")
            time.sleep(1)
        first_rollout = time.time() - t0
        # One more interval: everyone's next tick is an unchanged one.
        time.sleep(args.interval + 1)
        pids = [p.pid for _, _, p in agents]
        rss = rss_mb(pids)
        log0, etcd0, w0 = len(srv.log_lines()), etcd_counts(etcd_url), time.time()
        time.sleep(args.window)
        lines, etcd1, w1 = srv.log_lines()[log0:], etcd_counts(etcd_url), time.time()
        ticks = args.agents * (w1 - w0) / args.interval
        requests, sent, asked = traffic(lines)
        calls = delta(etcd1, etcd0)

        # One new commit, in two waves.
        (clone / "hosts" / "default.toml").write_text(
            "[[file]]\npath = '/etc/motd'\ncontent = \"fleet v2\\n\"\n")
        git(clone, "commit", "-qam", "v2")
        git(clone, "push", "-q", "origin", "main")
        v2 = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True,
                            text=True).stdout.strip()
        log_r, etcd_r, t1 = len(srv.log_lines()), etcd_counts(etcd_url), time.time()
        while applied(v2) < args.agents:
            if time.time() - t1 > 30 * args.interval:
                sys.exit(f"only {applied(v2)} of {args.agents} agents applied {v2[:12]}")
            time.sleep(0.5)
        rollout = time.time() - t1
        r_requests, r_sent, _ = traffic(srv.log_lines()[log_r:])
        r_calls = delta(etcd_counts(etcd_url), etcd_r)

        per_tick_req = requests / ticks
        per_tick_bytes = sent / ticks
        per_tick_etcd = sum(calls.values()) / ticks
        hosts, interval = 10_000, 300
        rate = hosts / interval
        print(f"## Fleet simulation: {args.agents} daemons, interval {args.interval}s, "
              f"one git server (smart HTTP) and one etcd on 127.0.0.1\n")
        print(f"- first rollout (empty hosts, canary wave then the rest after a {soak}s soak): "
              f"{first_rollout:.0f} s")
        print(f"- daemons' RSS, all {args.agents}: {rss:.0f} MB ({rss / args.agents:.1f} MB each)")
        print(f"- measured window: {w1 - w0:.0f} s, {ticks:.0f} unchanged ticks\n")
        print("| per unchanged tick | measured | 10,000 hosts every 5 min |")
        print("| --- | --- | --- |")
        print(f"| git requests | {per_tick_req:.2f} ({asked}) | {per_tick_req * rate:.0f} req/s |")
        print(f"| git bytes sent | {per_tick_bytes:.0f} B | {per_tick_bytes * rate / 1024:.0f} KiB/s |")
        print(f"| etcd requests | {per_tick_etcd:.2f} ({', '.join(f'{k} {v}' for k, v in sorted(calls.items()))}) "
              f"| {per_tick_etcd * rate:.0f} req/s |")
        print(f"\n- one new commit through both waves: {rollout:.0f} s, "
              f"{r_requests} git requests ({r_sent / 1024:.0f} KiB), "
              f"etcd: {', '.join(f'{k} {v}' for k, v in sorted(r_calls.items()))}")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
