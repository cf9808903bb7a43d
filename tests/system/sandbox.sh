#!/usr/bin/env bash
# sandbox.sh - disposable "RHEL-like" hosts for driftless system tests.
#
# A host is a Debian root filesystem (with rpm + dnf + systemd) booted with
# systemd as PID 1 inside fresh pid/mount/uts/ipc/cgroup namespaces. Two
# suites: bookworm (dnf 4.14, rpm 4.18: RHEL 9's generation, the default)
# and forky (dnf 5.4 and rpm 6.1: Fedora 41+ and EL 11's generation).
# Debian's rpm/dnf stand in for RHEL's: the agent under test talks to the real
# rpm, dnf and systemctl, but nothing needs a RHEL image or network access
# beyond the Debian mirror (used once, to build the cached root filesystem).
#
# Why not systemd-nspawn / podman: nspawn does not work on these machines and
# there is no container runtime; plain unshare + pivot_root does.
#
# Must run as root (namespaces, mounts, cgroups).
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: sandbox.sh COMMAND [ARGS...]

  deps                    apt-get install debootstrap rpm dnf createrepo-c if missing
  rootfs [SUITE]          build the cached root filesystem of SUITE once
                          (bookworm: /var/cache/driftless-test/rootfs,
                          forky: .../rootfs-forky; idempotent)
  rpms OUTDIR             build every tests/system/rpms/*.spec into OUTDIR and
                          run createrepo_c there; prints one .rpm path per line
  boot WORKDIR HOSTNAME [SUITE]
                          boot a fresh host from the cache under WORKDIR; prints
                          ONLY the pid of its systemd (host pid namespace).
                          A WORKDIR booted and stopped before boots again
                          with its disk state (= reboot) and its suite
  exec PID|WORKDIR CMD... run CMD inside the host (nsenter), clean environment,
                          exit code passed through
  repo WORKDIR REPODIR    copy a createrepo_c'd dir into the host at /srv/repo
                          and write /etc/yum.repos.d/driftless-test.repo
  stop WORKDIR            kill the host started in WORKDIR, wait, unmount;
                          deletes nothing but its own pid files
  status WORKDIR          print "running PID" or "stopped" (exit 0 / 1)

Files written under WORKDIR by boot:
  pid          pid of the host's systemd (as seen from here)
  pid.start    its start time (from /proc/PID/stat), checked before any kill
  root-path    absolute path of the host's root directory (WORKDIR/root);
               live view of the host's filesystem, writable from outside
  mode         "overlay" or "copy"
  cgroup       the host's cgroup (relative to the cgroup2 mount)
  net          "shared" or "private" (DRIFTLESS_SANDBOX_NET at the first boot)
  console.log  errors of the launcher (mounts before systemd starts); it is
               also the host's /dev/console

Environment:
  DRIFTLESS_TEST_CACHE    cache dir             (default /var/cache/driftless-test)
  DRIFTLESS_TEST_MIRROR   Debian mirror          (default http://deb.debian.org/debian)
  DRIFTLESS_SANDBOX_MODE  auto|overlay|copy      (default auto: overlay, else cp -a)
  DRIFTLESS_BOOT_TIMEOUT  seconds to wait for boot (default 30)
  DRIFTLESS_SANDBOX_SUITE bookworm|forky         (default bookworm; SUITE
                          arguments win)
  DRIFTLESS_SANDBOX_NET   shared|private         (default shared: the host
                          uses this machine's network; private: boot puts
                          it in a new network namespace with only `lo`,
                          where a firewall it runs cannot touch this
                          machine's; a reboot keeps the choice)
USAGE
}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_DIR=${DRIFTLESS_TEST_CACHE:-/var/cache/driftless-test}
MIRROR=${DRIFTLESS_TEST_MIRROR:-http://deb.debian.org/debian}
# Set by use_suite.
SUITE= ROOTFS= INCLUDE= APT_EXTRA= SCRIPT= ROOTFS_RECIPE=
STAMP_REL=etc/driftless-rootfs-stamp
BOOT_TIMEOUT=${DRIFTLESS_BOOT_TIMEOUT:-30}
# cgroup2 hierarchy of this machine. It runs a hybrid v1/v2 layout; on a pure
# v2 machine it is /sys/fs/cgroup itself.
CG2=/sys/fs/cgroup/unified
[[ -f $CG2/cgroup.procs ]] || CG2=/sys/fs/cgroup
# Commands run inside a host get this environment instead of the caller's:
# the test runner's PATH (pyenv, cargo, ...) and variables mean nothing there.
SANDBOX_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { echo "sandbox.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Selects the Debian suite hosts are built from and booted on.
use_suite() {
    SUITE=$1
    # procps is tiny and gives `ps` for diagnostics.
    case $SUITE in
        bookworm)
            ROOTFS=$CACHE_DIR/rootfs
            # openssh-server: a real validator (`sshd -t -f FILE`) for
            # the tests of `validate`; its units are masked below. kmod:
            # modprobe, which reads what [[kernel_module]] writes.
            INCLUDE=systemd,systemd-sysv,dbus,rpm,dnf,git,ca-certificates,procps,openssh-server,kmod
            # firewalld and nftables: the real firewall [[firewalld]]
            # configures, run only by a host in its own network namespace
            # (DRIFTLESS_SANDBOX_NET=private); their units are masked
            # below; netbase: /etc/protocols, without which firewalld
            # refuses its own services. Installed with apt after
            # debootstrap: debootstrap's own ordering fails to configure
            # polkitd, which firewalld needs.
            APT_EXTRA="firewalld nftables netbase"
            SCRIPT=
            ;;
        forky)
            ROOTFS=$CACHE_DIR/rootfs-forky
            INCLUDE=systemd,systemd-sysv,dbus,rpm,dnf5,git,ca-certificates,procps
            APT_EXTRA=
            # Bookworm's debootstrap has no forky script; sid's works.
            SCRIPT=/usr/share/debootstrap/scripts/sid
            ;;
        *) die "unknown suite '$SUITE' (bookworm or forky)" ;;
    esac
    # Bump when INCLUDE or customize_rootfs changes: a stale cache is rebuilt.
    ROOTFS_RECIPE="driftless-rootfs v7 $SUITE $INCLUDE${APT_EXTRA:+ + $APT_EXTRA}"
}
use_suite "${DRIFTLESS_SANDBOX_SUITE:-bookworm}"
need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root"; }

# Field 22 of /proc/PID/stat: the start time. Recorded at boot and compared
# before every kill, so a recycled pid is never killed by mistake.
proc_starttime() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }          # drop "pid (comm) " - comm may contain spaces
    # shellcheck disable=SC2086 # word splitting wanted
    set -- $stat
    echo "${20}"
}

# Unmount everything mounted at or below $1, deepest first. Used when cleaning
# up after an interrupted debootstrap (it mounts proc/sys in the target) and by
# stop. Lazy unmount only as a last resort.
umount_under() {
    local dir=$1 m
    findmnt -rn -o TARGET | awk -v d="$dir" '$0 == d || index($0, d "/") == 1' |
        sort -r | while read -r m; do
            umount "$m" 2>/dev/null || { log "umount $m busy, detaching lazily"; umount -l "$m"; }
        done
}

# ---------------------------------------------------------------- deps
cmd_deps() {
    need_root
    local pkgs=(debootstrap rpm dnf createrepo-c util-linux mount) missing=() p
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
            missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        log "deps: all present"
        return 0
    fi
    log "deps: installing ${missing[*]}"
    # Lock timeout: another apt-get may be running (e.g. a provisioning step);
    # wait for it instead of failing on the dpkg lock.
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -q >&2
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >&2
}

# ---------------------------------------------------------------- rootfs
rootfs_complete() {
    [[ -f $ROOTFS/$STAMP_REL && $(cat "$ROOTFS/$STAMP_REL") == "$ROOTFS_RECIPE" ]]
}

# Installs APT_EXTRA into the root with its own apt (from the same mirror
# debootstrap used). No service starts: there is no systemd in the chroot,
# and a policy-rc.d forbids it anyway.
apt_extra() {
    local r=$1 rc=0
    [[ -n $APT_EXTRA ]] || return 0
    printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
    chmod 755 "$r/usr/sbin/policy-rc.d"
    mount -t proc proc "$r/proc"
    # shellcheck disable=SC2086 # APT_EXTRA: a list of names
    chroot "$r" env -i PATH="$SANDBOX_PATH" DEBIAN_FRONTEND=noninteractive sh -c \
        "apt-get update -q && apt-get install -y -q --no-install-recommends $APT_EXTRA" \
        >"$r.apt.log" 2>&1 || rc=$?
    umount_under "$r/proc"
    rm -f "$r/usr/sbin/policy-rc.d"
    if ((rc != 0)); then
        tail -n 30 "$r.apt.log" >&2
        return "$rc"
    fi
    rm -f "$r.apt.log"
}

customize_rootfs() {
    local r=$1
    apt_extra "$r"
    # Debian has no system-release package, so dnf cannot work out $releasever.
    mkdir -p "$r/etc/dnf/vars"
    echo 1 >"$r/etc/dnf/vars/releasever"
    # RHEL hosts have it; debootstrap does not create it.
    mkdir -p "$r/etc/yum.repos.d"
    # Debian's rpm puts its database in ~/.rpmdb (a %(bash -c 'echo ~/.rpmdb')
    # macro), so rpm run with another HOME sees another, empty database. Pin
    # it to RHEL's location.
    mkdir -p "$r/etc/rpm" "$r/var/lib/rpm"
    echo '%_dbpath /var/lib/rpm' >"$r/etc/rpm/macros"
    # rpm --root DIR / dnf --installroot DIR run from the Debian machine read
    # the machine's macros, i.e. DIR/root/.rpmdb. Point that at the same
    # database. Relative link: rpm does not chroot to open the database, so an
    # absolute one would reach the machine's own /var/lib/rpm.
    ln -sfn ../var/lib/rpm "$r/root/.rpmdb"
    # A RHEL host always has a database; without one, the first dnf that
    # only reads it (an admin's `dnf install` checking GPG keys) fails.
    chroot "$r" rpm --initdb
    # Terminals of the real machine must not get a getty, and the host has no
    # real console. Masked units are not "failed".
    local u
    for u in console-getty.service getty@.service serial-getty@.service \
        container-getty@.service getty-static.service; do
        ln -sf /dev/null "$r/etc/systemd/system/$u"
    done
    # RHEL's default preset is "disable *"; Debian's is enable. Package
    # scriptlets run `systemctl preset`, so without this every test service
    # would be enabled on install, unlike on RHEL.
    mkdir -p "$r/usr/lib/systemd/system-preset"
    echo 'disable *' >"$r/usr/lib/systemd/system-preset/99-default-disable.preset"
    # Keep hosts quiet and self-contained: no apt/dpkg/e2scrub timers, and no
    # journald audit socket (there is no separate network namespace, so it
    # would copy the whole machine's kernel audit stream into every host).
    rm -f "$r"/etc/systemd/system/timers.target.wants/{apt-daily,apt-daily-upgrade,dpkg-db-backup,e2scrub_all,fstrim}.timer \
        "$r"/etc/systemd/system/multi-user.target.wants/e2scrub_reap.service
    ln -sf /dev/null "$r/etc/systemd/system/systemd-journald-audit.socket"
    # sshd is there for `sshd -t` only: hosts share the machine's network,
    # so a running sshd would take the machine's port 22.
    for u in ssh.service ssh.socket sshd.service; do
        ln -sf /dev/null "$r/etc/systemd/system/$u"
    done
    # firewalld and nftables.service change the firewall of the network
    # namespace they run in, which is the machine's own for every host but
    # one booted with DRIFTLESS_SANDBOX_NET=private: not enabled, and
    # masked (a test that runs firewalld in its own namespace unmasks it).
    rm -f "$r"/etc/systemd/system/multi-user.target.wants/{firewalld,nftables}.service \
        "$r"/etc/systemd/system/dbus-org.fedoraproject.FirewallD1.service
    for u in firewalld.service nftables.service; do
        ln -sf /dev/null "$r/etc/systemd/system/$u"
    done
    # Every host gets its own machine-id at boot; none in the image.
    : >"$r/etc/machine-id"
    if [[ $SUITE == forky ]]; then
        # Debian enables libdnf5's `local` plugin, which runs createrepo_c
        # after every transaction; Fedora ships it apart and RHEL not at
        # all. Off, as on those hosts.
        local conf
        for conf in "$r"/etc/dnf/libdnf5-plugins/local.conf; do
            [[ -f $conf ]] && sed -i "0,/^enabled *=/ s/^enabled *=.*/enabled = 0/" "$conf"
        done
        # Fedora 41+ has `dnf` as dnf 5's name; Debian only `dnf5`.
        ln -sfn dnf5 "$r/usr/bin/dnf"
    fi
    # Size: the .deb files are not needed any more.
    rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/*
}

cmd_rootfs() {
    need_root
    [[ $# -le 1 ]] || { usage >&2; exit 2; }
    [[ $# -eq 0 ]] || use_suite "$1"
    mkdir -p "$CACHE_DIR"
    # Serialise concurrent test runs: only one builds, the others wait.
    exec 9>"$CACHE_DIR/.lock"
    flock 9
    if rootfs_complete; then
        log "rootfs: cached at $ROOTFS"
        return 0
    fi
    command -v debootstrap >/dev/null || die "debootstrap missing: run sandbox.sh deps"
    # Leftovers of interrupted builds (we hold the lock, so nobody uses them).
    local d
    for d in "$CACHE_DIR"/rootfs.build.* "$CACHE_DIR"/rootfs.old.*; do
        [[ -e $d ]] || continue
        umount_under "$d"
        rm -rf --one-file-system "$d"
    done
    if [[ -e $ROOTFS ]] && findmnt -rn -t overlay -o OPTIONS | grep -q "lowerdir=$ROOTFS"; then
        die "rootfs is stale but hosts are running on it; stop them first"
    fi
    local tmp start
    tmp=$(mktemp -d "$CACHE_DIR/rootfs.build.XXXXXX")
    start=$SECONDS
    log "rootfs: debootstrap $SUITE into $tmp (about 70 s)"
    # shellcheck disable=SC2086 # $SCRIPT: nothing or one path
    if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$tmp" "$MIRROR" $SCRIPT >"$tmp.log" 2>&1; then
        tail -n 30 "$tmp.log" >&2
        umount_under "$tmp"
        rm -rf --one-file-system "$tmp"
        die "debootstrap failed (log above)"
    fi
    rm -f "$tmp.log"
    umount_under "$tmp"          # debootstrap normally unmounts; be sure
    customize_rootfs "$tmp"
    chmod 755 "$tmp"             # mktemp made it 0700; it becomes a root dir
    echo "$ROOTFS_RECIPE" >"$tmp/$STAMP_REL"
    # Build elsewhere, rename into place: a half-built tree is never "complete".
    if [[ -e $ROOTFS ]]; then mv -T "$ROOTFS" "$CACHE_DIR/rootfs.old.$$"; fi
    mv -T "$tmp" "$ROOTFS"
    rm -rf --one-file-system "$CACHE_DIR/rootfs.old.$$"
    log "rootfs: built in $((SECONDS - start)) s at $ROOTFS"
}

# ---------------------------------------------------------------- rpms
cmd_rpms() {
    [[ $# -eq 1 ]] || { usage >&2; exit 2; }
    command -v rpmbuild >/dev/null || die "rpmbuild missing: run sandbox.sh deps"
    command -v createrepo_c >/dev/null || die "createrepo_c missing: run sandbox.sh deps"
    local out top spec
    mkdir -p "$1"
    out=$(cd "$1" && pwd)
    top=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$top'" RETURN
    shopt -s nullglob
    local specs=("$SCRIPT_DIR"/rpms/*.spec)
    ((${#specs[@]})) || die "no spec files in $SCRIPT_DIR/rpms"
    for spec in "${specs[@]}"; do
        # Flat file names (NAME-VERSION-RELEASE.noarch.rpm) in OUTDIR, no
        # /usr/lib/.build-id links, nothing taken from ~/rpmbuild.
        rpmbuild -bb --quiet \
            --define "_topdir $top" \
            --define "_rpmdir $out" \
            --define "_rpmfilename %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
            --define "_build_id_links none" \
            "$spec" >"$top/build.log" 2>&1 || { cat "$top/build.log" >&2; die "rpmbuild $spec failed"; }
    done
    createrepo_c --quiet "$out" >&2
    local f
    for f in "$out"/*.rpm; do echo "$f"; done
}

# ---------------------------------------------------------------- boot
# Runs as PID 1 of the new pid namespace, in the new mount namespace, until it
# execs systemd. $1 = host root dir, $2 = console log file.
# Why each mount:
# - rprivate: nothing we mount here propagates back to the real machine.
# - bind root onto itself: pivot_root needs the new root to be a mount point
#   (already true for overlay, not for a copied tree).
# - fresh proc: shows the new pid namespace; /proc/sys read-only so the host's
#   systemd-sysctl etc. cannot retune the shared kernel. A few parameters that
#   the host's own namespaces hold (kernel.domainname: UTS; kernel.msgmax,
#   kernel.shmmni: IPC) are writable again, one file each: a write there
#   changes only this host (the [[sysctl]] system tests).
# - fresh read-only sysfs (as nspawn does) without the machine's cgroup mounts,
#   and a cgroup2 mount made inside the new cgroup namespace: the host's
#   systemd sees only its own cgroup subtree. With the machine's /sys/fs/cgroup
#   (rbind) two hosts would both manage /system.slice/... of the real root
#   cgroup and stop each other's services.
# - private /dev (tmpfs + bind of a few harmless nodes + own devpts): with the
#   machine's /dev the host's systemd would write to the real console and
#   could start gettys on real terminals. /dev/console is the console log.
# - tmpfs /run and /tmp: systemd expects /run empty at boot.
# shellcheck disable=SC2016
INNER='
set -eu
root=$1 console=$2
mount --make-rprivate /
mount --bind "$root" "$root"
cd "$root"
mount -t proc -o nosuid,nodev,noexec proc proc
mount --bind proc/sys proc/sys
mount -o remount,bind,ro proc/sys
for p in kernel/domainname kernel/msgmax kernel/shmmni; do
    mount --bind "proc/sys/$p" "proc/sys/$p"
    mount -o remount,bind,rw "proc/sys/$p"
done
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs sys
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 sys/fs/cgroup
mount -t tmpfs -o mode=755,nosuid tmpfs dev
for n in null zero full random urandom tty; do
    : >"dev/$n"; mount --bind "/dev/$n" "dev/$n"
done
mkdir dev/pts dev/shm dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5,nosuid,noexec devpts dev/pts
ln -s pts/ptmx dev/ptmx
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs dev/shm
ln -s /proc/self/fd dev/fd
ln -s /proc/self/fd/0 dev/stdin
ln -s /proc/self/fd/1 dev/stdout
ln -s /proc/self/fd/2 dev/stderr
: >dev/console; mount --bind "$console" dev/console
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs tmp
mkdir -p oldroot
pivot_root . oldroot
cd /
umount -l /oldroot
rmdir /oldroot
exec env -i container=other PATH='"$SANDBOX_PATH"' \
    /lib/systemd/systemd --system
'

boot_diagnostics() {
    local wd=$1 pid=$2
    log "---- console.log (tail)"
    tail -n 40 "$wd/console.log" >&2 || true
    if [[ -n $pid && -d /proc/$pid ]]; then
        log "---- systemctl --failed / list-jobs"
        timeout 5 nsenter -t "$pid" -a systemctl --no-pager --failed >&2 || true
        timeout 5 nsenter -t "$pid" -a systemctl --no-pager list-jobs >&2 || true
        log "---- journal (tail)"
        timeout 5 nsenter -t "$pid" -a journalctl --no-pager -n 40 >&2 || true
    fi
}

boot_failed() {
    local rc=$?
    log "boot: failed (exit $rc); cleaning up $1"
    _stop "$1" || true
    exit "$rc"
}

cmd_boot() {
    need_root
    [[ $# -eq 2 || $# -eq 3 ]] || { usage >&2; exit 2; }
    local wd name=$2
    [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$ ]] || die "bad hostname '$name'"
    mkdir -p "$1"
    wd=$(cd "$1" && pwd)
    # A reboot comes up on the suite it was built from.
    if [[ -f $wd/suite ]]; then
        use_suite "$(cat "$wd/suite")"
    elif [[ $# -eq 3 ]]; then
        use_suite "$3"
    fi
    rootfs_complete || die "no complete rootfs at $ROOTFS: run sandbox.sh rootfs $SUITE"
    echo "$SUITE" >"$wd/suite"
    # The network namespace, like the suite, is chosen at the first boot.
    local net=${DRIFTLESS_SANDBOX_NET:-shared} netns=()
    [[ -f $wd/net ]] && net=$(cat "$wd/net")
    case $net in
        shared) ;;
        private) netns=(--net) ;;
        *) die "DRIFTLESS_SANDBOX_NET is '$net' (shared or private)" ;;
    esac
    echo "$net" >"$wd/net"
    if [[ -f $wd/pid ]]; then die "$wd already has a host (pid $(cat "$wd/pid")); stop it first"; fi
    local root=$wd/root mode=${DRIFTLESS_SANDBOX_MODE:-auto} reuse=""
    # A WORKDIR that was booted and stopped before is booted again with its
    # disk state (a reboot): same overlay upper dir, or same copied tree.
    if [[ -f $wd/mode ]]; then
        reuse=$(cat "$wd/mode")
        mode=$reuse
    elif [[ -e $root && -n $(ls -A "$root") ]]; then
        die "$root exists and is not empty"
    fi
    mkdir -p "$root"
    # Whatever goes wrong from here on (set -e included), leave nothing
    # mounted or running. Cleared once the host is up.
    # shellcheck disable=SC2064
    trap "boot_failed '$wd'" EXIT

    # 1. The root. overlayfs is instant and leaves the cache untouched; it
    #    fails when WORKDIR is itself on overlayfs (or some network fs).
    local t0=$EPOCHREALTIME
    if [[ $mode != copy ]]; then
        mkdir -p "$wd/upper" "$wd/work"
        if mount -t overlay overlay -o "lowerdir=$ROOTFS,upperdir=$wd/upper,workdir=$wd/work" "$root" 2>"$wd/overlay.err"; then
            mode=overlay
        elif [[ $mode == overlay ]]; then
            die "overlay mount failed: $(cat "$wd/overlay.err")"
        else
            log "overlay mount failed ($(cat "$wd/overlay.err")); falling back to cp -a"
            rmdir "$wd/upper" "$wd/work" 2>/dev/null || true
            mode=copy
        fi
        rm -f "$wd/overlay.err"
    fi
    if [[ $mode == copy && -z $reuse ]]; then
        cp -a --reflink=auto "$ROOTFS/." "$root/"
    fi
    echo "$mode" >"$wd/mode"
    echo "$root" >"$wd/root-path"
    echo "$name" >"$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$name" >"$root/etc/hosts"
    # Own machine-id per host (journal files, dbus); kept across reboots.
    [[ -n $reuse ]] || tr -d '-' </proc/sys/kernel/random/uuid >"$root/etc/machine-id"
    : >"$wd/console.log"
    log "boot: ${reuse:+reused }$mode root ready in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.2f", b-a}') s"

    # 2. Own cgroup (in the cgroup2 tree) that becomes the root of the host's
    #    cgroup namespace. The launcher moves itself there before unshare.
    local cg
    # (od, not `tr </dev/urandom | head`: that dies of SIGPIPE under pipefail.)
    cg=driftless-test/$name.$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
    mkdir -p "$CG2/$cg"
    echo "$cg" >"$wd/cgroup"

    # 3. Launch. setsid: own session, no controlling terminal, so a test
    #    runner's Ctrl-C / SIGHUP to its process group does not reach the host.
    #    --kill-child: if unshare dies, the kernel kills systemd (and with it
    #    the whole pid namespace).
    local t1=$EPOCHREALTIME upid
    setsid bash -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' launcher "$CG2/$cg" \
        unshare --pid --fork --kill-child --mount --uts --ipc --cgroup "${netns[@]}" \
        sh -c "$INNER" inner "$root" "$wd/console.log" \
        </dev/null >>"$wd/console.log" 2>&1 &
    upid=$!
    echo "$upid" >"$wd/unshare-pid"

    # 4. systemd is the only child of unshare.
    local pid="" i
    for ((i = 0; i < 100; i++)); do
        pid=$(ps -o pid= --ppid "$upid" 2>/dev/null | tr -d ' ' | head -n1) || true
        if [[ -n $pid && $(readlink "/proc/$pid/exe" 2>/dev/null) == */systemd ]]; then break; fi
        kill -0 "$upid" 2>/dev/null || break
        sleep 0.05
    done
    if [[ -z $pid || $(readlink "/proc/$pid/exe" 2>/dev/null) != */systemd ]]; then
        log "boot: systemd did not start"
        boot_diagnostics "$wd" ""
        exit 1
    fi
    echo "$pid" >"$wd/pid"
    proc_starttime "$pid" >"$wd/pid.start"

    # 5. Wait until systemd has finished starting up. "degraded" is accepted:
    #    it means some unit failed, which the caller can inspect; failing the
    #    boot for it would hide the reason.
    local state="" deadline=$((SECONDS + BOOT_TIMEOUT))
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || break
        state=$(nsenter -t "$pid" -a systemctl is-system-running 2>/dev/null) || true
        case $state in running | degraded) break ;; esac
        sleep 0.1
    done
    case $state in
        running | degraded) ;;
        *)
            log "boot: host did not reach running/degraded in ${BOOT_TIMEOUT}s (state '${state:-none}')"
            boot_diagnostics "$wd" "$pid"
            exit 1
            ;;
    esac
    if [[ $state == degraded ]]; then
        log "boot: state degraded; failed units:"
        nsenter -t "$pid" -a systemctl --no-pager --failed --plain --no-legend >&2 || true
    fi
    trap - EXIT
    log "boot: $name $state in $(awk -v a="$t1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.2f", b-a}') s, root $root"
    echo "$pid"
}

# ---------------------------------------------------------------- exec
resolve_pid() {
    local a=$1
    if [[ -d $a && -f $a/pid ]]; then cat "$a/pid"; return; fi
    [[ $a =~ ^[0-9]+$ ]] || die "'$a' is neither a pid nor a WORKDIR with a pid file"
    echo "$a"
}

cmd_exec() {
    [[ $# -ge 2 ]] || { usage >&2; exit 2; }
    local pid
    pid=$(resolve_pid "$1")
    shift
    [[ -d /proc/$pid ]] || die "no process $pid"
    # -a: all namespaces of the host, plus its root and working directory.
    # env -i: the host's PATH, not the caller's. exec: exit code passes through.
    exec nsenter -t "$pid" -a env -i PATH="$SANDBOX_PATH" HOME=/root LANG=C.UTF-8 TERM=dumb "$@"
}

# ---------------------------------------------------------------- repo
cmd_repo() {
    [[ $# -eq 2 ]] || { usage >&2; exit 2; }
    local wd root
    wd=$(cd "$1" && pwd)
    root=$(cat "$wd/root-path") || die "$wd has no root-path (not booted?)"
    [[ -d $2/repodata ]] || die "$2 has no repodata (run sandbox.sh rpms)"
    rm -rf "$root/srv/repo"
    mkdir -p "$root/srv/repo"
    cp -a "$2/." "$root/srv/repo/"
    # gpgcheck=0: test packages are unsigned. metadata_expire=0: tests change
    # the repository between dnf runs and dnf must not answer from its cache.
    cat >"$root/etc/yum.repos.d/driftless-test.repo" <<'REPO'
[driftless-test]
name=driftless test packages
baseurl=file:///srv/repo
enabled=1
gpgcheck=0
repo_gpgcheck=0
metadata_expire=0
REPO
    echo "$root/srv/repo"
}

# ---------------------------------------------------------------- stop
_stop() {
    local wd=$1 pid start upid cg i
    if [[ -f $wd/pid ]]; then
        pid=$(cat "$wd/pid")
        start=$(cat "$wd/pid.start" 2>/dev/null || true)
        # Kill only the process we started: same pid AND same start time.
        if [[ -n $start && $(proc_starttime "$pid" 2>/dev/null) == "$start" ]]; then
            # SIGKILL: systemd (PID 1 of its namespace) ignores or re-execs on
            # SIGTERM; its death makes the kernel kill every process of the
            # namespace.
            kill -KILL "$pid" 2>/dev/null || true
            for ((i = 0; i < 200; i++)); do
                [[ $(proc_starttime "$pid" 2>/dev/null) == "$start" ]] || break
                sleep 0.05
            done
            [[ $(proc_starttime "$pid" 2>/dev/null) != "$start" ]] || log "stop: pid $pid still present"
        fi
    fi
    # unshare exits on its own when its child dies; wait for it (it is ours
    # only if it is still the same unshare, which --kill-child would take down
    # with it anyway).
    if [[ -f $wd/unshare-pid ]]; then
        upid=$(cat "$wd/unshare-pid")
        for ((i = 0; i < 100; i++)); do
            [[ $(readlink "/proc/$upid/exe" 2>/dev/null) == */unshare ]] || break
            sleep 0.05
        done
    fi
    # The host's cgroup subtree: wait until empty, then remove it deepest first.
    if [[ -f $wd/cgroup ]]; then
        cg=$CG2/$(cat "$wd/cgroup")
        if [[ -d $cg ]]; then
            for ((i = 0; i < 100; i++)); do
                [[ -z $(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null) ]] && break
                sleep 0.05
            done
            find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || log "stop: could not remove cgroup $cg"
        fi
    fi
    # Mounts made inside the host's mount namespace vanished with it; the
    # overlay was mounted out here.
    umount_under "$wd/root"
    rm -f "$wd/pid" "$wd/pid.start" "$wd/unshare-pid"
}

cmd_stop() {
    need_root
    [[ $# -eq 1 ]] || { usage >&2; exit 2; }
    [[ -d $1 ]] || die "no such WORKDIR $1"
    local wd
    wd=$(cd "$1" && pwd)
    _stop "$wd"
}

cmd_status() {
    [[ $# -eq 1 ]] || { usage >&2; exit 2; }
    local wd=$1
    if [[ -f $wd/pid && $(proc_starttime "$(cat "$wd/pid")" 2>/dev/null) == "$(cat "$wd/pid.start" 2>/dev/null)" ]]; then
        echo "running $(cat "$wd/pid")"
    else
        echo stopped
        return 1
    fi
}

main() {
    [[ $# -ge 1 ]] || { usage >&2; exit 2; }
    local c=$1
    shift
    case $c in
        deps) cmd_deps "$@" ;;
        rootfs) cmd_rootfs "$@" ;;
        rpms) cmd_rpms "$@" ;;
        boot) cmd_boot "$@" ;;
        exec) cmd_exec "$@" ;;
        repo) cmd_repo "$@" ;;
        stop) cmd_stop "$@" ;;
        status) cmd_status "$@" ;;
        -h | --help | help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

# "; exit" on the same line: bash reads scripts as it runs them, so editing
# this file while a long command (rootfs) runs must not make it run new text.
main "$@"; exit
