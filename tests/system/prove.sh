#!/usr/bin/env bash
# prove.sh - end-to-end proof of sandbox.sh and the test RPMs.
#
# Boots sandbox hosts and checks, with real rpm/dnf/systemd, every behaviour
# the driftless system tests will rely on; measures the costs. Run as root:
#   tests/system/prove.sh            (uses/creates the cached rootfs)
#   PROVE_CLEAN=1 tests/system/prove.sh   (deletes the cache first)
# Exit status: 0 if every check passed. Leaves nothing running or mounted.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SB=$HERE/sandbox.sh
CACHE_DIR=${DRIFTLESS_TEST_CACHE:-/var/cache/driftless-test}
T=$(mktemp -d /tmp/driftless-prove.XXXXXX)
FAILS=0
HOSTS=()

pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
check() { # check DESCRIPTION CMD... : pass if CMD exits 0
    local d=$1; shift
    if "$@" >"$T/last.out" 2>&1; then pass "$d"; else fail "$d"; sed 's/^/    | /' "$T/last.out" | tail -n 15; fi
}
check_not() { # passes if CMD exits non-zero
    local d=$1; shift
    if "$@" >"$T/last.out" 2>&1; then fail "$d (unexpected success)"; sed 's/^/    | /' "$T/last.out" | tail -n 15; else pass "$d"; fi
}
eq() { # eq DESCRIPTION EXPECTED ACTUAL
    if [[ $2 == "$3" ]]; then pass "$1 (= '$3')"; else fail "$1: expected '$2', got '$3'"; fi
}
now() { echo "$EPOCHREALTIME"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", b-a}'; }
TIMES=()
timed() { TIMES+=("$(printf '%-52s %s s' "$1" "$2")"); }

cleanup() {
    local h
    for h in "${HOSTS[@]}"; do "$SB" stop "$h" 2>/dev/null || true; done
    rm -rf --one-file-system "$T"
}
trap cleanup EXIT

x() { "$SB" exec "$P" "$@"; }   # run inside the current host

echo "== setup"
MOUNTS_BEFORE=$(findmnt -rn -o TARGET | sort)
"$SB" deps
if [[ ${PROVE_CLEAN:-0} == 1 ]]; then
    echo "removing $CACHE_DIR (PROVE_CLEAN=1)"
    rm -rf --one-file-system "$CACHE_DIR"
fi
t0=$(now); "$SB" rootfs; t1=$(now); timed "rootfs (build, or cache check)" "$(secs "$t0" "$t1")"
t0=$(now); "$SB" rpms "$T/rpms" >"$T/rpms.list"; t1=$(now); timed "rpms: build 8 RPMs + createrepo_c" "$(secs "$t0" "$t1")"
eq "8 RPMs built" 8 "$(wc -l <"$T/rpms.list")"

echo "== boot (overlay)"
W=$T/web1; HOSTS+=("$W")
t0=$(now); P=$("$SB" boot "$W" web1); t1=$(now); timed "boot overlay host to running" "$(secs "$t0" "$t1")"
check "boot printed only a pid" grep -qxE '[0-9]+' <<<"$P"
eq "pid file matches stdout" "$P" "$(cat "$W/pid")"
eq "mode" overlay "$(cat "$W/mode")"
ROOT=$(cat "$W/root-path")
eq "system state" running "$(x systemctl is-system-running || true)"
eq "hostname inside" web1 "$(x hostname)"
eq "systemd is PID 1 inside" systemd "$(x cat /proc/1/comm)"
check "journald works" x sh -c 'echo prove-marker | systemd-cat -t prove; sleep 0.3; journalctl -t prove -o cat | grep -qx prove-marker'
check "rpm -qa works on fresh db" x rpm -qa
eq "rpm dbpath inside" /var/lib/rpm "$(x rpm --eval '%{_dbpath}')"

echo "== repository"
"$SB" repo "$W" "$T/rpms" >/dev/null
check "repo visible in dnf" x dnf -q repolist driftless-test

echo "== install, start, upgrade, downgrade dl-hello"
check "dnf install dl-hello-1.0" x dnf -y install dl-hello-1.0
eq "rpm -q" dl-hello-1.0-1.noarch "$(x rpm -q dl-hello)"
eq "preset disable (RHEL-like) after install" disabled "$(x systemctl is-enabled dl-hello || true)"
check "systemctl start dl-hello" x systemctl start dl-hello
eq "is-active" active "$(x systemctl is-active dl-hello || true)"
sleep 0.3
eq "service wrote version" 1.0 "$(x cat /run/dl-hello.version)"
check "dnf install dl-hello-2.0-1 (upgrade)" x dnf -y install dl-hello-2.0-1
eq "rpm -q after upgrade" dl-hello-2.0-1.noarch "$(x rpm -q dl-hello)"
sleep 0.3
eq "%postun try-restart restarted it" 2.0 "$(x cat /run/dl-hello.version)"
eq "NeedDaemonReload after upgrade" no "$(x systemctl show -P NeedDaemonReload dl-hello)"
check "dnf downgrade dl-hello (repo)" x dnf -y downgrade dl-hello-1.0-1
eq "rpm -q after downgrade" dl-hello-1.0-1.noarch "$(x rpm -q dl-hello)"
check "dnf upgrade dl-hello-2.0-1 again" x dnf -y upgrade dl-hello-2.0-1
# Old version disappears from the repository; downgrade from a kept file.
x mkdir -p /var/lib/prove
cp "$ROOT/srv/repo/dl-hello-1.0-1.noarch.rpm" "$ROOT/var/lib/prove/"
rm "$ROOT/srv/repo/dl-hello-1.0-1.noarch.rpm"
createrepo_c --quiet --update "$ROOT/srv/repo"
check_not "downgrade from repo impossible once 1.0 is gone" x dnf -y downgrade dl-hello-1.0-1
check "dnf downgrade /var/lib/prove/dl-hello-1.0-1.noarch.rpm" x dnf -y downgrade /var/lib/prove/dl-hello-1.0-1.noarch.rpm
eq "rpm -q after file downgrade" dl-hello-1.0-1.noarch "$(x rpm -q dl-hello)"
check "journalctl -u dl-hello shows 1.0 and 2.0 runs" x sh -c 'j=$(journalctl -u dl-hello -o cat); echo "$j"; echo "$j" | grep -q "dl-hello 1.0 started" && echo "$j" | grep -q "dl-hello 2.0 started"'

echo "== dnf history"
x dnf history list >"$T/hist1" 2>&1 || true
n1=$(grep -cE '^ +[0-9]+ \|' "$T/hist1" || true)
eq "history has 5 transactions" 5 "$n1"
check "no-op install of installed package" x dnf -y install dl-hello
n2=$(x dnf history list 2>&1 | grep -cE '^ +[0-9]+ \|' || true)
eq "no-op adds no transaction" "$n1" "$n2"
sed 's/^/    history| /' "$T/hist1"

echo "== failing %pre"
set +e; x dnf -y install dl-failpre >"$T/failpre.out" 2>&1; rc=$?; set -e
eq "dnf install dl-failpre exit code" 1 "$rc"
check "output has 'Error in PREIN scriptlet'" grep -q "Error in PREIN scriptlet in rpm package dl-failpre" "$T/failpre.out"
check_not "dl-failpre not installed" x rpm -q dl-failpre
set +e; x dnf -y install dl-no-such-package >"$T/nosuch.out" 2>&1; rc=$?; set -e
eq "unknown package exit code" 1 "$rc"
check "unknown package message" grep -q "Unable to find a match: dl-no-such-package" "$T/nosuch.out"

echo "== conflicts"
check "install dl-conflict-a" x dnf -y install dl-conflict-a
set +e; x dnf -y install dl-conflict-b >"$T/conflict.out" 2>&1; rc=$?; set -e
eq "install dl-conflict-b exit code" 1 "$rc"
check "message names the conflict" grep -q "conflicts with dl-conflict-a" "$T/conflict.out"
sed 's/^/    conflict| /' "$T/conflict.out" | head -n 8
check "--allowerasing swaps a for b" x dnf -y install --allowerasing dl-conflict-b
check_not "dl-conflict-a gone" x rpm -q dl-conflict-a

echo "== dl-hello 3.0 (service fails) and rollback"
check "dnf upgrade dl-hello to 2.0, start" x sh -c 'dnf -y install dl-hello-2.0-1 && systemctl start dl-hello'
set +e; x dnf -y install dl-hello-3.0-1 >"$T/h3.out" 2>&1; rc=$?; set -e
eq "dnf install dl-hello-3.0-1 exit code (postun restart failure ignored)" 0 "$rc"
eq "after upgrade to 3.0: is-active" failed "$(x systemctl is-active dl-hello || true)"
set +e; x systemctl start dl-hello >"$T/h3start.out" 2>&1; rc=$?; set -e
eq "systemctl start dl-hello (3.0) exit code" 1 "$rc"
check "journal has failure" x sh -c 'journalctl -u dl-hello -o cat | grep -q "dl-hello 3.0 failing on purpose"'
check "rollback: dnf downgrade dl-hello-2.0-1" x dnf -y downgrade dl-hello-2.0-1
eq "after rollback without restart: still" failed "$(x systemctl is-active dl-hello || true)"
check "systemctl restart after rollback" x systemctl restart dl-hello
eq "after restart" active "$(x systemctl is-active dl-hello || true)"

echo "== dl-web reload/restart, dl-tool"
check "install dl-web dl-tool" x dnf -y install dl-web dl-tool
check "dl-tool file" test -f "$ROOT/usr/share/dl-tool/README"
check "start dl-web" x systemctl start dl-web
sleep 0.3
pid1=$(x systemctl show -P MainPID dl-web)
echo "listen = 9090" >>"$ROOT/etc/dl-web/dl-web.conf"
check "reload dl-web" x systemctl reload dl-web
sleep 0.3
eq "reload keeps MainPID" "$pid1" "$(x systemctl show -P MainPID dl-web)"
check "restart dl-web" x systemctl restart dl-web
sleep 0.3
check "restart changes MainPID" test "$pid1" != "$(x systemctl show -P MainPID dl-web)"
check "events: start, reload, start" x sh -c 'cut -d" " -f1 /run/dl-web.events | tr "\n" " " | grep -qx "start reload start "'
check "conf is %config(noreplace)" x sh -c 'rpm -qc dl-web | grep -qx /etc/dl-web/dl-web.conf'
check "rpm -V sees the edited conf" x sh -c 'rpm -V dl-web | grep -q "c /etc/dl-web/dl-web.conf"'

echo "== from outside: systemctl --root, rpm --root, dnf --installroot"
eq "systemctl --root is-enabled" disabled "$(systemctl --root="$ROOT" is-enabled dl-web 2>&1 || true)"
check "systemctl --root enable" systemctl --root="$ROOT" enable dl-web
eq "inside sees enabled (no reload needed for is-enabled)" enabled "$(x systemctl is-enabled dl-web || true)"
check "systemctl --root list-unit-files" sh -c "systemctl --root='$ROOT' list-unit-files 'dl-*' | grep -q dl-hello.service"
check_not "systemctl --root is-active (needs the bus; offline only)" systemctl --root="$ROOT" is-active dl-web
eq "rpm --root -q (via /root/.rpmdb link)" dl-hello-2.0-1.noarch "$(rpm --root "$ROOT" -q dl-hello 2>&1)"
eq "rpm --root --dbpath /var/lib/rpm -q" dl-hello-2.0-1.noarch "$(rpm --root "$ROOT" --dbpath /var/lib/rpm -q dl-hello 2>&1)"
# Installroot: host dnf, host config, the root's /etc/yum.repos.d. A file://
# baseurl is read on the Debian side, so point it at ROOT/srv/repo.
check "dnf --installroot install dl-conflict-a --allowerasing" \
    dnf -y --installroot="$ROOT" --setopt=reposdir=/nonexistent --repofrompath="outside,file://$ROOT/srv/repo" \
    --setopt=outside.gpgcheck=0 --releasever=1 install --allowerasing dl-conflict-a
eq "inside sees installroot install" dl-conflict-a-1.0-1.noarch "$(x rpm -q dl-conflict-a 2>&1)"
x dnf history list >"$T/hist2" 2>&1 || true
sed 's/^/    history| /' "$T/hist2" | head -n 4

echo "== costs inside the host"
N=50
t0=$(now); for ((i = 0; i < N; i++)); do x true; done; t1=$(now)
timed "nsenter + true (per call, n=$N)" "$(awk -v s="$(secs "$t0" "$t1")" -v n=$N 'BEGIN{printf "%.4f", s/n}')"
t0=$(now); for ((i = 0; i < N; i++)); do x rpm -q dl-hello dl-web dl-tool dl-conflict-a dl-failpre >/dev/null || true; done; t1=$(now)
timed "rpm -q of 5 names (incl. nsenter, per call)" "$(awk -v s="$(secs "$t0" "$t1")" -v n=$N 'BEGIN{printf "%.4f", s/n}')"
t0=$(now); for ((i = 0; i < N; i++)); do x rpm -qa >/dev/null; done; t1=$(now)
timed "rpm -qa (incl. nsenter, per call)" "$(awk -v s="$(secs "$t0" "$t1")" -v n=$N 'BEGIN{printf "%.4f", s/n}')"
t0=$(now); for ((i = 0; i < N; i++)); do x systemctl show -p ActiveState,SubState,MainPID,UnitFileState dl-hello dl-web dbus >/dev/null; done; t1=$(now)
timed "systemctl show of 3 units (incl. nsenter, per call)" "$(awk -v s="$(secs "$t0" "$t1")" -v n=$N 'BEGIN{printf "%.4f", s/n}')"
t0=$(now); x dnf -y -q install dl-tool >/dev/null 2>&1; t1=$(now)
timed "dnf no-op install (metadata_expire=0)" "$(secs "$t0" "$t1")"
t0=$(now); x dnf -y -q reinstall dl-tool >/dev/null 2>&1; t1=$(now)
timed "dnf reinstall of a 1-file package" "$(secs "$t0" "$t1")"

echo "== second host (copy mode) next to the first: cgroup isolation"
W2=$T/web2; HOSTS+=("$W2")
t0=$(now); P2=$(DRIFTLESS_SANDBOX_MODE=copy "$SB" boot "$W2" web2); t1=$(now); timed "boot copy-mode host (cp -a + boot)" "$(secs "$t0" "$t1")"
eq "mode" copy "$(cat "$W2/mode")"
"$SB" repo "$W2" "$T/rpms" >/dev/null
check "web2: install + start dl-hello" "$SB" exec "$P2" sh -c 'dnf -y -q install dl-hello-2.0-1 && systemctl start dl-hello'
check "web2: no dl-web (roots are separate)" test ! -e "$W2/root/usr/bin/dl-web"
check "web2: stop dl-hello" "$SB" exec "$P2" systemctl stop dl-hello
eq "web1 dl-hello unaffected by web2's stop" active "$(x systemctl is-active dl-hello || true)"
t0=$(now); "$SB" stop "$W2"; t1=$(now); timed "stop (copy host)" "$(secs "$t0" "$t1")"
eq "web1 still running after web2 stopped" running "$(x systemctl is-system-running || true)"

echo "== stop and leak check"
cg1=$(cat "$W/cgroup")
t0=$(now); "$SB" stop "$W"; t1=$(now); timed "stop (overlay host)" "$(secs "$t0" "$t1")"
check_not "status says stopped" "$SB" status "$W"
check_not "pid $P gone" test -d "/proc/$P"
check_not "no mounts under $T" sh -c "findmnt -rn -o TARGET | grep -F '$T'"
check_not "no live processes rooted in the test dirs" sh -c "for p in /proc/[0-9]*; do r=\$(readlink \$p/root 2>/dev/null) || continue; case \$r in $T*) echo \$p \$r; exit 0;; esac; done; exit 1"
check_not "cgroup removed" test -e "/sys/fs/cgroup/unified/$cg1"
check "overlay upper kept (stop deletes nothing)" test -d "$W/upper/var/lib/rpm"

echo "== reboot: boot the same WORKDIR again"
mid=$(cat "$W/upper/etc/machine-id")
t0=$(now); P=$("$SB" boot "$W" web1); t1=$(now); timed "reboot overlay host (reused upper)" "$(secs "$t0" "$t1")"
eq "rpm db survived" dl-hello-2.0-1.noarch "$(x rpm -q dl-hello)"
eq "machine-id kept" "$mid" "$(x cat /etc/machine-id)"
eq "dl-web (enabled from outside) started at boot" active "$(x systemctl is-active dl-web || true)"
eq "dl-hello (disabled) not started at boot" inactive "$(x systemctl is-active dl-hello || true)"
eq "journal has 2 boots" 2 "$(x journalctl --list-boots --no-pager | grep -c .)"
cg1=$(cat "$W/cgroup")
"$SB" stop "$W"
check_not "after reboot+stop: no mounts under $T" sh -c "findmnt -rn -o TARGET | grep -F '$T'"
check_not "after reboot+stop: cgroup removed" test -e "/sys/fs/cgroup/unified/$cg1"

echo "== boot failure cleans up"
W3=$T/bad; HOSTS+=("$W3")
set +e; DRIFTLESS_BOOT_TIMEOUT=0 "$SB" boot "$W3" bad >"$T/bad.out" 2>"$T/bad.err"; rc=$?; set -e
check "boot with 0 s timeout fails" test "$rc" -ne 0
eq "nothing on stdout" "" "$(cat "$T/bad.out")"
check "diagnostics on stderr" grep -q "did not reach running" "$T/bad.err"
check_not "no pid file left" test -e "$W3/pid"
check_not "no mounts left" sh -c "findmnt -rn -o TARGET | grep -F '$W3'"

echo "== global leak check"
eq "mount table unchanged" "$MOUNTS_BEFORE" "$(findmnt -rn -o TARGET | sort)"
check_not "no systemd/unshare/sleep infinity processes left" sh -c "ps -eo stat=,pid=,args= | awk '\$1 !~ /^Z/' | grep -E '/lib/systemd/systemd|unshare --pid|sleep infinity|dl-web|journald' | grep -v grep"
eq "no host cgroups left" "" "$(find /sys/fs/cgroup/unified/driftless-test -mindepth 1 -type d 2>/dev/null)"

echo
echo "== times"
printf '  %s\n' "${TIMES[@]}"
echo
if ((FAILS)); then echo "RESULT: $FAILS check(s) FAILED"; exit 1; fi
echo "RESULT: all checks passed"
