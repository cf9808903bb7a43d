//! The agent's own configuration: `/etc/driftless/agent.toml` plus drop-ins
//! in `/etc/driftless/agent.d/*.toml`, read in name order.
//!
//! Three stages, so nothing downstream re-validates: raw fragments (every
//! field optional, unknown keys denied) -> merged over named defaults ->
//! validated [`Settings`] of domain types.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use sha2::Digest as _;

use crate::source::git::GitSourceSettings;
use crate::source::pinned::DownloadSettings;
use crate::source::verify::{SignaturePolicy, VerifySettings};

/// Default agent config file.
pub const DEFAULT_CONFIG: &str = "/etc/driftless/agent.toml";
/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/driftless";
/// Default directory of custom facts (`facts.custom.*`).
pub const DEFAULT_FACTS_DIR: &str = "/etc/driftless/facts.d";

/// Whether the agent changes the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Converge: apply changes.
    Enforce,
    /// Plan and report only; never change the host.
    Audit,
}

/// Default branch of the config repo.
pub const DEFAULT_BRANCH: &str = "main";
/// Default bound on one whole fetch.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// One config file as written: every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fragment {
    host: Option<String>,
    state_dir: Option<PathBuf>,
    facts_dir: Option<PathBuf>,
    mode: Option<Mode>,
    source: Option<SourceFragment>,
    verify: Option<VerifyFragment>,
    rollback: Option<RollbackFragment>,
    schedule: Option<ScheduleFragment>,
    metrics: Option<MetricsFragment>,
    daemon: Option<DaemonFragment>,
    hook: Option<Vec<HookFragment>>,
    secrets: Option<SecretsFragment>,
    prune: Option<PruneFragment>,
    fleet: Option<FleetFragment>,
    download: Option<DownloadFragment>,
    reboot: Option<RebootFragment>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RebootFragment {
    mode: Option<crate::agent::reboot::RebootMode>,
    windows: Option<Vec<String>>,
    drain: Option<Vec<String>>,
    drain_timeout: Option<String>,
    back_within: Option<String>,
    running_kernel_file: Option<PathBuf>,
    restart_services: Option<bool>,
    restart_deny: Option<Vec<String>>,
}

impl RebootFragment {
    /// This drop-in's keys over those read before it.
    fn over(self, before: Self) -> Self {
        Self {
            mode: self.mode.or(before.mode),
            windows: self.windows.or(before.windows),
            drain: self.drain.or(before.drain),
            drain_timeout: self.drain_timeout.or(before.drain_timeout),
            back_within: self.back_within.or(before.back_within),
            running_kernel_file: self.running_kernel_file.or(before.running_kernel_file),
            restart_services: self.restart_services.or(before.restart_services),
            restart_deny: self.restart_deny.or(before.restart_deny),
        }
    }
}

/// Default bound of the drain command before a reboot.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(300);
/// Default of `[reboot] back_within`: how long a host of a fleet may take
/// from `systemctl reboot` to its first healthy converge.
pub const DEFAULT_BACK_WITHIN: Duration = Duration::from_secs(900);

/// When and how the host reboots (`[reboot]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RebootSettings {
    /// Never, report only (the default), or when required.
    pub mode: crate::agent::reboot::RebootMode,
    /// When a required reboot may happen (the fleet's window syntax);
    /// empty: any time.
    pub windows: Vec<String>,
    /// Run before the reboot (take the host out of a load balancer); a
    /// failure postpones the reboot. Program (absolute) and arguments.
    pub drain: Option<Vec<String>>,
    /// The drain is killed, and the reboot postponed, after this long.
    pub drain_timeout: Duration,
    /// With `[fleet]`: the TTL of the reboot slot's lease during the drain,
    /// and how long after `systemctl reboot` the host may take to be back
    /// healthy before its slot is kept and its wave's reboots are halted.
    pub back_within: Duration,
    /// Read the running kernel's release from this file instead of
    /// `/proc/sys/kernel/osrelease`: a testing knob.
    pub running_kernel_file: Option<PathBuf>,
    /// Restart the services that run replaced programs or libraries after
    /// each healthy converge of the daemon.
    pub restart_services: bool,
    /// Units never restarted for that, besides the built-in ones
    /// ([`RESTART_DENIED`]): `*` and `?` patterns of unit names, `.service`
    /// added to a pattern without a suffix.
    pub restart_deny: Vec<String>,
}

/// Units never restarted for a replaced library, whatever `restart_deny`
/// says: a restart of these cuts the operator off (sshd), restarts the
/// bus every service talks through, or systemd's own parts, or driftless
/// itself in the middle of its run.
pub const RESTART_DENIED: [&str; 5] = [
    "sshd.service",
    "dbus.service",
    "dbus-broker.service",
    "systemd-*.service",
    "driftless.service",
];

impl Default for RebootSettings {
    fn default() -> Self {
        Self {
            mode: crate::agent::reboot::RebootMode::Report,
            windows: Vec::new(),
            drain: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            back_within: DEFAULT_BACK_WITHIN,
            running_kernel_file: None,
            restart_services: false,
            restart_deny: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DownloadFragment {
    ca_file: Option<PathBuf>,
    max_size: Option<Size>,
    timeout: Option<String>,
}

/// A size as written: a number of bytes, or text with a binary unit
/// (`"256M"`, `"1GiB"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetFragment {
    endpoints: Option<Vec<String>>,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    prefix: Option<String>,
    lease_ttl: Option<String>,
    windows: Option<Vec<String>>,
    nudge_splay: Option<String>,
}

/// Default key prefix of a fleet in etcd.
pub const DEFAULT_FLEET_PREFIX: &str = "/driftless/default";

/// How this host takes part in a fleet's rollouts (`[fleet]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetSettings {
    /// The etcd cluster.
    pub etcd: crate::fleet::etcd::EtcdSettings,
    /// The fleet's key prefix: one fleet per prefix.
    pub prefix: String,
    /// How long this host's record outlives it (default: three intervals).
    pub lease_ttl: Duration,
    /// Maintenance windows for new commits on this host (on top of its
    /// wave's); empty: always open.
    pub windows: Vec<String>,
    /// A nudge (a put of `<prefix>/nudge`) wakes the daemon for a tick
    /// after a random delay below this, so that a fleet nudged at once
    /// does not fetch in the same second.
    pub nudge_splay: Duration,
}

/// Default of `[fleet] nudge_splay`.
pub const DEFAULT_NUDGE_SPLAY: Duration = Duration::from_secs(5);
/// Largest `[fleet] nudge_splay`: a nudge is for "now", not for later.
pub const MAX_NUDGE_SPLAY: Duration = Duration::from_secs(3600);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsFragment {
    identity: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PruneFragment {
    packages: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HookFragment {
    name: Option<String>,
    command: Vec<String>,
    on: Vec<HookOn>,
    timeout: Option<String>,
}

/// When a hook runs: a converge's outcome (the words of `--json`), or
/// `quarantined` (the converge quarantined the commit it loaded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookOn {
    /// Changes applied.
    Changed,
    /// Nothing to change.
    InSync,
    /// Changes found, not applied (audit mode).
    ChangesPending,
    /// Held at the last good state or pinned.
    Held,
    /// A step failed and the host was restored.
    RolledBack,
    /// A step failed and the restore failed too.
    RollbackFailed,
    /// The config repo is invalid.
    Invalid,
    /// Stopped by an error before any change.
    Error,
    /// The converge quarantined the commit it loaded (with `rolled_back`
    /// or `invalid`).
    Quarantined,
}

/// Default bound of one hook.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// A command run after a converge (`[[hook]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    /// For the logs: `name`, or the program's file name.
    pub name: String,
    /// Program (an absolute path) and arguments; no shell.
    pub argv: Vec<String>,
    /// The outcomes it runs on.
    pub on: Vec<HookOn>,
    /// Killed (with its process group) after this long.
    pub timeout: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleFragment {
    interval: Option<String>,
    splay: Option<String>,
    backoff_max: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsFragment {
    textfile: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DaemonFragment {
    socket: Option<PathBuf>,
}

/// Default time between two converges of the daemon.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Default bound of the random delay before the daemon's first converge.
pub const DEFAULT_SPLAY: Duration = Duration::from_secs(60);
/// Default cap of the wait between fetches after fetch failures.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30 * 60);
/// Default control socket of the daemon.
pub const DEFAULT_SOCKET: &str = "/run/driftless/control.sock";

/// When the daemon converges (`[schedule]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleSettings {
    /// Between two converges (±10 % jitter).
    pub interval: Duration,
    /// The first converge waits up to this long, by an amount derived from
    /// the machine id, so a fleet rebooted at once does not fetch at once.
    pub splay: Duration,
    /// The longest wait between fetches while they fail (the wait doubles
    /// from `interval`); converges go on healing drift meanwhile.
    pub backoff_max: Duration,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            interval: DEFAULT_INTERVAL,
            splay: DEFAULT_SPLAY,
            backoff_max: DEFAULT_BACKOFF_MAX,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackFragment {
    health_timeout: Option<String>,
    settle_time: Option<String>,
    keep_generations: Option<usize>,
}

/// Default bound on all health checks of one converge.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(120);
/// Default wait before judging that declared services run.
pub const DEFAULT_SETTLE_TIME: Duration = Duration::from_secs(2);

/// Transaction settings (`[rollback]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollbackSettings {
    /// All health checks must pass within this.
    pub health_timeout: Duration,
    /// Wait after the last change before judging services.
    pub settle_time: Duration,
    /// Generations kept (with their snapshots, objects and RPMs).
    pub keep_generations: usize,
}

impl Default for RollbackSettings {
    fn default() -> Self {
        Self {
            health_timeout: DEFAULT_HEALTH_TIMEOUT,
            settle_time: DEFAULT_SETTLE_TIME,
            keep_generations: crate::store::generations::DEFAULT_KEEP,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFragment {
    url: Option<String>,
    branch: Option<String>,
    ssh_key: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyFragment {
    signatures: Option<PolicyWord>,
    allowed_signers: Option<PathBuf>,
    openpgp_keyring: Option<PathBuf>,
    allow_rewind: Option<bool>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum PolicyWord {
    Off,
    Head,
    All,
}

/// Validated agent settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Host name to look up in the config repo; `None`: the machine's FQDN.
    pub host: Option<String>,
    /// Where driftless keeps its state.
    pub state_dir: PathBuf,
    /// Where custom facts are read from (`facts_dir`).
    pub facts_dir: PathBuf,
    /// Enforce or audit.
    pub mode: Mode,
    /// The git source, when configured.
    pub source: Option<GitSourceSettings>,
    /// Trust settings for fetched commits.
    pub verify: VerifySettings,
    /// Transaction settings.
    pub rollback: RollbackSettings,
    /// The daemon's schedule.
    pub schedule: ScheduleSettings,
    /// Where metrics are written for node_exporter's textfile collector
    /// (`[metrics] textfile`); none by default.
    pub metrics_textfile: Option<PathBuf>,
    /// The daemon's control socket (`[daemon] socket`).
    pub socket: PathBuf,
    /// Commands run after a converge, in the order written (drop-ins add
    /// theirs after the main file's).
    pub hooks: Vec<Hook>,
    /// The host's age identity file, which decrypts the config repo's
    /// secrets (`[secrets] identity`); none by default.
    pub secrets_identity: Option<PathBuf>,
    /// Whether packages driftless installed are removed once no longer
    /// declared (`[prune] packages`); off by default, since removing a
    /// package can take its dependants with it.
    pub prune_packages: bool,
    /// Rollout coordination with the rest of the fleet (`[fleet]`); none:
    /// this host decides alone.
    pub fleet: Option<FleetSettings>,
    /// Limits and trust of `[[file]]` downloads (`[download]`).
    pub download: DownloadSettings,
    /// Reboots (`[reboot]`).
    pub reboot: RebootSettings,
    /// The files the settings were read from, in order.
    pub sources: Vec<PathBuf>,
    /// A digest of those files (names and bytes): a daemon that runs
    /// other settings than the files hold now is told by it.
    pub fingerprint: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            host: None,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            facts_dir: PathBuf::from(DEFAULT_FACTS_DIR),
            mode: Mode::Enforce,
            source: None,
            verify: VerifySettings::default(),
            rollback: RollbackSettings::default(),
            schedule: ScheduleSettings::default(),
            metrics_textfile: None,
            socket: PathBuf::from(DEFAULT_SOCKET),
            hooks: Vec::new(),
            secrets_identity: None,
            prune_packages: false,
            fleet: None,
            download: DownloadSettings::default(),
            reboot: RebootSettings::default(),
            sources: Vec::new(),
            fingerprint: String::new(),
        }
    }
}

/// Reads `config` and its drop-in directory (`agent.d` beside it). A missing
/// default config file means defaults; a missing file given explicitly is
/// an error.
pub fn load(config: &Path, explicit: bool) -> Result<Settings> {
    let mut files = Vec::new();
    match std::fs::metadata(config) {
        Ok(_) => files.push(config.to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("failed to read agent config {}", config.display()));
        }
    }
    let dropin_dir = config.with_file_name("agent.d");
    match std::fs::read_dir(&dropin_dir) {
        Ok(entries) => {
            let mut dropins = Vec::new();
            for e in entries {
                let e = e.with_context(|| format!("failed to list {}", dropin_dir.display()))?;
                let p = e.path();
                if p.extension().is_some_and(|x| x == "toml") {
                    dropins.push(p);
                }
            }
            dropins.sort();
            files.extend(dropins);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("failed to list {}", dropin_dir.display()));
        }
    }
    let mut fragments = Vec::new();
    let mut texts = Vec::new();
    let mut digest = sha2::Sha256::new();
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(
                "cannot read agent config {}: permission denied. It holds the host's settings and is root's alone: run as root (sudo driftless …)",
                f.display()
            ),
            _ => anyhow::Error::new(e)
                .context(format!("failed to read agent config {}", f.display())),
        })?;
        digest.update(f.as_os_str().as_encoded_bytes());
        digest.update([0]);
        digest.update(text.as_bytes());
        digest.update([0]);
        let frag: Fragment =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}", located(f, &text, &e)))?;
        fragments.push(frag);
        texts.push(text);
    }
    let merged = merge(fragments).map_err(|e| {
        // A value that does not validate: placed at the key that set it
        // last (the file that wins), as a parse error is.
        let message = format!("{e:#}");
        match files
            .iter()
            .zip(&texts)
            .rev()
            .find_map(|(f, text)| locate_key(text, &message).map(|at| (f, at)))
        {
            Some((f, (line, column))) => {
                anyhow::anyhow!("{}:{line}:{column}: {message}", f.display())
            }
            None => e,
        }
    });
    let mut s = merged.with_context(|| {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        format!(
            "invalid agent config {}",
            if names.is_empty() {
                "(defaults)".to_owned()
            } else {
                names.join(" + ")
            }
        )
    })?;
    s.sources = files;
    // No file, no digest: the defaults are the same everywhere.
    if !s.sources.is_empty() {
        s.fingerprint = hex::encode(digest.finalize());
    }
    Ok(s)
}

/// A parse error of an agent config file as config-repo errors read:
/// `FILE:LINE:COL: message`, with "did you mean" for a mistyped key or
/// value.
fn located(file: &Path, text: &str, e: &toml::de::Error) -> String {
    let at = e.span().map_or(0, |s| s.start);
    let before = text.get(..at).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    let message = e.message().trim_end();
    // serde's words: "unknown field `x`, expected one of `a`, `b`" and
    // "unknown variant `x`, expected `a` or `b`".
    let ticked: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    let reworded = match (ticked.split_first(), message) {
        (Some((word, allowed)), m) if m.starts_with("unknown field") => {
            Some(("key", word, allowed))
        }
        (Some((word, allowed)), m) if m.starts_with("unknown variant") => {
            Some(("value", word, allowed))
        }
        _ => None,
    };
    let message = match reworded {
        Some((what, word, allowed)) => {
            let hint = crate::words::suggest(word, allowed)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            format!(
                "unknown {what} `{word}`{hint}; allowed {what}s: {}",
                allowed.join(", ")
            )
        }
        None => message.to_owned(),
    };
    format!("{}:{line}:{column}: {message}", file.display())
}

/// Where the key a validation message starts with (`[schedule] interval
/// …`, `state_dir …`, `host: …`) is set in `text`: line and column, both
/// from 1. Only plain `key = value` lines under their `[section]` header
/// are found; else `None`.
fn locate_key(text: &str, message: &str) -> Option<(usize, usize)> {
    let (section, rest) = match message.strip_prefix('[') {
        Some(m) if !m.starts_with('[') => {
            let (section, rest) = m.split_once(']')?;
            (Some(section), rest.trim_start())
        }
        Some(_) => return None,
        None => (None, message),
    };
    let key: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if key.is_empty() {
        return None;
    }
    let mut current: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(header) = trimmed.strip_prefix('[') {
            current = Some(
                header
                    .trim_start_matches('[')
                    .split(']')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned(),
            );
            continue;
        }
        let (lhs, _) = match trimmed.split_once('=') {
            Some(kv) => kv,
            None => continue,
        };
        if lhs.trim() == key && current.as_deref() == section {
            let column = line.len() - trimmed.len() + 1;
            return Some((i + 1, column));
        }
    }
    None
}

/// Later fragments override earlier ones, key by key; then validation.
/// Every fragment's settings, a later one's over an earlier one's, key
/// by key; `[[hook]]`s added up.
#[derive(Default)]
struct Layered {
    m: Fragment,
    src: SourceFragment,
    ver: VerifyFragment,
    rb: RollbackFragment,
    sch: ScheduleFragment,
    metrics: MetricsFragment,
    daemon: DaemonFragment,
    hooks: Vec<HookFragment>,
    secrets: SecretsFragment,
    prune: PruneFragment,
    fleet: Option<FleetFragment>,
    download: DownloadFragment,
    reboot: RebootFragment,
}

/// Lays the fragments (agent.toml, then agent.d/ in name order) over each
/// other.
fn layered(fragments: Vec<Fragment>) -> Layered {
    let Layered {
        mut m,
        mut src,
        mut ver,
        mut rb,
        mut sch,
        mut metrics,
        mut daemon,
        mut hooks,
        mut secrets,
        mut prune,
        mut fleet,
        mut download,
        mut reboot,
    } = Layered::default();
    for f in fragments {
        if let Some(x) = f.reboot {
            reboot = x.over(reboot);
        }
        if let Some(x) = f.download {
            download.ca_file = x.ca_file.or(download.ca_file);
            download.max_size = x.max_size.or(download.max_size);
            download.timeout = x.timeout.or(download.timeout);
        }
        if let Some(x) = f.fleet {
            let m = fleet.get_or_insert_with(FleetFragment::default);
            m.endpoints = x.endpoints.or(m.endpoints.take());
            m.ca_file = x.ca_file.or(m.ca_file.take());
            m.cert_file = x.cert_file.or(m.cert_file.take());
            m.key_file = x.key_file.or(m.key_file.take());
            m.prefix = x.prefix.or(m.prefix.take());
            m.lease_ttl = x.lease_ttl.or(m.lease_ttl.take());
            m.windows = x.windows.or(m.windows.take());
            m.nudge_splay = x.nudge_splay.or(m.nudge_splay.take());
        }
        hooks.extend(f.hook.unwrap_or_default());
        if let Some(x) = f.secrets {
            secrets.identity = x.identity.or(secrets.identity);
        }
        if let Some(x) = f.prune {
            prune.packages = x.packages.or(prune.packages);
        }
        if let Some(x) = f.schedule {
            sch.interval = x.interval.or(sch.interval);
            sch.splay = x.splay.or(sch.splay);
            sch.backoff_max = x.backoff_max.or(sch.backoff_max);
        }
        if let Some(x) = f.metrics {
            metrics.textfile = x.textfile.or(metrics.textfile);
        }
        if let Some(x) = f.daemon {
            daemon.socket = x.socket.or(daemon.socket);
        }
        if let Some(r) = f.rollback {
            rb.health_timeout = r.health_timeout.or(rb.health_timeout);
            rb.settle_time = r.settle_time.or(rb.settle_time);
            rb.keep_generations = r.keep_generations.or(rb.keep_generations);
        }
        m.host = f.host.or(m.host);
        m.state_dir = f.state_dir.or(m.state_dir);
        m.facts_dir = f.facts_dir.or(m.facts_dir);
        m.mode = f.mode.or(m.mode);
        if let Some(s) = f.source {
            m.source = Some(SourceFragment::default());
            src.url = s.url.or(src.url);
            src.branch = s.branch.or(src.branch);
            src.ssh_key = s.ssh_key.or(src.ssh_key);
            src.known_hosts = s.known_hosts.or(src.known_hosts);
            src.ca_file = s.ca_file.or(src.ca_file);
            src.timeout = s.timeout.or(src.timeout);
        }
        if let Some(v) = f.verify {
            ver.signatures = v.signatures.or(ver.signatures);
            ver.allowed_signers = v.allowed_signers.or(ver.allowed_signers);
            ver.openpgp_keyring = v.openpgp_keyring.or(ver.openpgp_keyring);
            ver.allow_rewind = v.allow_rewind.or(ver.allow_rewind);
        }
    }
    Layered {
        m,
        src,
        ver,
        rb,
        sch,
        metrics,
        daemon,
        hooks,
        secrets,
        prune,
        fleet,
        download,
        reboot,
    }
}

fn merge(fragments: Vec<Fragment>) -> Result<Settings> {
    let Layered {
        m,
        src,
        ver,
        rb,
        sch,
        metrics,
        daemon,
        hooks,
        secrets,
        prune,
        fleet,
        download,
        reboot,
    } = layered(fragments);
    let source = m
        .source
        .is_some()
        .then(|| source_settings(src))
        .transpose()?;
    let verify = verify_settings(ver)?;
    // Plain HTTP lets anyone on the way choose what this host applies as
    // root; only signed commits make it safe.
    if let Some(g) = &source
        && g.url.to_ascii_lowercase().starts_with("http://")
        && verify.signatures == SignaturePolicy::Off
    {
        bail!(
            "[source] url `{}` is plain http://: anyone on the network path could choose what this host applies as root. Use https:// (or ssh://), or require signed commits ([verify] signatures = \"all\")",
            crate::source::git::redact_url(&g.url)
        );
    }
    let rollback = rollback_settings(rb)?;
    let schedule = schedule_settings(sch)?;
    let d = Settings::default();
    let metrics_textfile = absolute("[metrics] textfile", metrics.textfile)?;
    let hooks = hooks
        .into_iter()
        .enumerate()
        .map(|(i, h)| hook_settings(i + 1, h))
        .collect::<Result<Vec<_>>>()?;
    let socket = absolute("[daemon] socket", daemon.socket)?.unwrap_or(d.socket);
    let secrets_identity = absolute("[secrets] identity", secrets.identity)?;
    let fleet = fleet
        .map(|f| fleet_settings(f, schedule.interval))
        .transpose()?;
    let state_dir = normalise(m.state_dir.unwrap_or(d.state_dir));
    if !state_dir.is_absolute() {
        bail!(
            "state_dir `{}` must be an absolute path",
            state_dir.display()
        );
    }
    if let Some(h) = &m.host {
        crate::desired::checks::host_name(h).map_err(|e| anyhow::anyhow!("host: {e}"))?;
    }
    let facts_dir = absolute("facts_dir", m.facts_dir)?.map_or(d.facts_dir, normalise);
    Ok(Settings {
        host: m.host,
        state_dir,
        facts_dir,
        mode: m.mode.unwrap_or(d.mode),
        source,
        verify,
        rollback,
        schedule,
        metrics_textfile,
        socket,
        hooks,
        secrets_identity,
        prune_packages: prune.packages.unwrap_or(false),
        fleet,
        download: download_settings(download)?,
        reboot: reboot_settings(reboot)?,
        sources: Vec::new(),
        fingerprint: String::new(),
    })
}

fn download_settings(f: DownloadFragment) -> Result<DownloadSettings> {
    let d = DownloadSettings::default();
    let max_size = match f.max_size {
        None => d.max_size,
        Some(Size::Bytes(n)) => n,
        Some(Size::Text(t)) => size(&t).with_context(|| {
            format!("[download] max_size `{t}` is not a size such as \"256M\" or \"1GiB\"")
        })?,
    };
    if max_size == 0 {
        bail!("[download] max_size must be more than 0");
    }
    let timeout = duration("[download] timeout", f.timeout, d.timeout)?;
    if timeout.is_zero() {
        bail!("[download] timeout must be more than 0s");
    }
    Ok(DownloadSettings {
        ca_file: absolute("[download] ca_file", f.ca_file)?,
        max_size,
        timeout,
    })
}

/// Bytes in `text`: digits, then optionally K, M, G or T (binary
/// multiples, with or without `iB`/`B`).
fn size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let unit = unit.trim();
    let unit = unit
        .strip_suffix("iB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "K" | "k" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

fn fleet_settings(f: FleetFragment, interval: Duration) -> Result<FleetSettings> {
    let endpoints = f.endpoints.unwrap_or_default();
    if endpoints.is_empty() {
        bail!("[fleet] endpoints is empty: list the etcd client URLs (\"https://etcd1:2379\")");
    }
    for e in &endpoints {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            bail!("[fleet] endpoint `{e}` must be an http:// or https:// URL");
        }
    }
    let prefix = f.prefix.unwrap_or_else(|| DEFAULT_FLEET_PREFIX.to_owned());
    if !prefix.starts_with('/') || prefix.ends_with('/') || prefix.len() < 2 {
        bail!(
            "[fleet] prefix `{prefix}` must start with / and not end with one (\"/driftless/prod\")"
        );
    }
    let lease_ttl = duration("[fleet] lease_ttl", f.lease_ttl, interval * 3)?;
    if lease_ttl < Duration::from_secs(5) {
        bail!("[fleet] lease_ttl must be at least 5s");
    }
    let windows = f.windows.unwrap_or_default();
    for w in &windows {
        crate::desired::fleet::Window::parse(w)
            .map_err(|e| anyhow::anyhow!("[fleet] window \"{w}\": {e}"))?;
    }
    let nudge_splay = duration("[fleet] nudge_splay", f.nudge_splay, DEFAULT_NUDGE_SPLAY)?;
    if nudge_splay > MAX_NUDGE_SPLAY {
        bail!("[fleet] nudge_splay must be at most 1h");
    }
    Ok(FleetSettings {
        etcd: crate::fleet::etcd::EtcdSettings {
            endpoints,
            ca_file: absolute("[fleet] ca_file", f.ca_file)?,
            cert_file: absolute("[fleet] cert_file", f.cert_file)?,
            key_file: absolute("[fleet] key_file", f.key_file)?,
        },
        prefix,
        lease_ttl,
        windows,
        nudge_splay,
    })
}

fn reboot_settings(r: RebootFragment) -> Result<RebootSettings> {
    let d = RebootSettings::default();
    let windows = r.windows.unwrap_or_default();
    for w in &windows {
        crate::desired::fleet::Window::parse(w)
            .map_err(|e| anyhow::anyhow!("[reboot] window \"{w}\": {e}"))?;
    }
    if let Some(argv) = &r.drain {
        match argv.first() {
            None => bail!(
                "[reboot] drain is empty; give the program and its arguments, or leave it out"
            ),
            Some(p) if !Path::new(p).is_absolute() => bail!(
                "[reboot] drain: the program `{p}` must be an absolute path (it runs without a shell or PATH lookup)"
            ),
            Some(_) => {}
        }
    }
    let drain_timeout = duration("[reboot] drain_timeout", r.drain_timeout, d.drain_timeout)?;
    if drain_timeout.is_zero() {
        bail!("[reboot] drain_timeout must be more than 0s");
    }
    let back_within = duration("[reboot] back_within", r.back_within, d.back_within)?;
    if back_within < Duration::from_secs(5) {
        // It is an etcd lease's TTL: shorter ones are not honoured.
        bail!("[reboot] back_within must be at least 5s");
    }
    Ok(RebootSettings {
        mode: r.mode.unwrap_or(d.mode),
        windows,
        drain: r.drain,
        drain_timeout,
        back_within,
        running_kernel_file: absolute("[reboot] running_kernel_file", r.running_kernel_file)?,
        restart_services: r.restart_services.unwrap_or(d.restart_services),
        restart_deny: r
            .restart_deny
            .unwrap_or_default()
            .into_iter()
            .map(|u| restart_pattern(&u))
            .collect::<Result<_>>()?,
    })
}

/// One `[reboot] restart_deny` entry as a pattern of unit names: `sshd`
/// is `sshd.service`.
fn restart_pattern(unit: &str) -> Result<String> {
    if unit.is_empty() || unit.contains(['/', ' ']) {
        bail!(
            "[reboot] restart_deny: \"{unit}\" is not a unit name or pattern (`sshd`, `httpd.service`, `java-*`)"
        );
    }
    Ok(if unit.contains('.') {
        unit.to_owned()
    } else {
        format!("{unit}.service")
    })
}

fn hook_settings(nth: usize, h: HookFragment) -> Result<Hook> {
    let Some(program) = h.command.first() else {
        bail!("[[hook]] #{nth}: `command` is empty; give the program and its arguments");
    };
    if !Path::new(program).is_absolute() {
        bail!(
            "[[hook]] #{nth}: the program `{program}` must be an absolute path (hooks run without a shell or PATH lookup)"
        );
    }
    let name = h.name.unwrap_or_else(|| {
        Path::new(program)
            .file_name()
            .map_or_else(|| program.clone(), |n| n.to_string_lossy().into_owned())
    });
    if h.on.is_empty() {
        bail!("[[hook]] `{name}`: `on` is empty; name the outcomes it runs on");
    }
    let timeout = duration("[[hook]] timeout", h.timeout, DEFAULT_HOOK_TIMEOUT)?;
    if timeout.is_zero() {
        bail!("[[hook]] `{name}`: timeout must be more than 0s");
    }
    Ok(Hook {
        name,
        argv: h.command,
        on: h.on,
        timeout,
    })
}

fn schedule_settings(s: ScheduleFragment) -> Result<ScheduleSettings> {
    let d = ScheduleSettings::default();
    let out = ScheduleSettings {
        interval: duration("[schedule] interval", s.interval, d.interval)?,
        splay: duration("[schedule] splay", s.splay, d.splay)?,
        backoff_max: duration("[schedule] backoff_max", s.backoff_max, d.backoff_max)?,
    };
    if out.interval.is_zero() {
        bail!("[schedule] interval must be more than 0s");
    }
    Ok(out)
}

fn duration(key: &str, text: Option<String>, default: Duration) -> Result<Duration> {
    match text {
        None => Ok(default),
        Some(t) => humantime::parse_duration(&t)
            .map_err(|e| anyhow::anyhow!("{key} `{t}` is not a duration such as \"2m\": {e}")),
    }
}

fn rollback_settings(r: RollbackFragment) -> Result<RollbackSettings> {
    let d = RollbackSettings::default();
    let keep = r.keep_generations.unwrap_or(d.keep_generations);
    if keep == 0 {
        bail!("[rollback] keep_generations must be at least 1");
    }
    Ok(RollbackSettings {
        health_timeout: duration(
            "[rollback] health_timeout",
            r.health_timeout,
            d.health_timeout,
        )?,
        settle_time: duration("[rollback] settle_time", r.settle_time, d.settle_time)?,
        keep_generations: keep,
    })
}

/// Drops `.` components, repeated and trailing slashes, so that the state
/// directory compares equal however it was written (`/var/lib/driftless/`).
fn normalise(p: PathBuf) -> PathBuf {
    p.components().collect()
}

fn absolute(key: &str, p: Option<PathBuf>) -> Result<Option<PathBuf>> {
    match p {
        Some(p) if !p.is_absolute() => bail!("{key} `{}` must be an absolute path", p.display()),
        p => Ok(p),
    }
}

fn source_settings(s: SourceFragment) -> Result<GitSourceSettings> {
    let url = s
        .url
        .filter(|u| !u.trim().is_empty())
        .context("[source] needs `url`")?;
    let timeout = match s.timeout {
        None => DEFAULT_FETCH_TIMEOUT,
        Some(t) => humantime::parse_duration(&t).map_err(|e| {
            anyhow::anyhow!("[source] timeout `{t}` is not a duration such as \"60s\": {e}")
        })?,
    };
    if timeout.is_zero() {
        bail!("[source] timeout must be more than 0s");
    }
    Ok(GitSourceSettings {
        url,
        branch: s.branch.unwrap_or_else(|| DEFAULT_BRANCH.to_owned()),
        ssh_key: absolute("[source] ssh_key", s.ssh_key)?,
        known_hosts: absolute("[source] known_hosts", s.known_hosts)?,
        ca_file: absolute("[source] ca_file", s.ca_file)?,
        timeout,
    })
}

fn verify_settings(v: VerifyFragment) -> Result<VerifySettings> {
    let signatures = match v.signatures.unwrap_or(PolicyWord::Off) {
        PolicyWord::Off => SignaturePolicy::Off,
        PolicyWord::Head => SignaturePolicy::Head,
        PolicyWord::All => SignaturePolicy::All,
    };
    let out = VerifySettings {
        signatures,
        allowed_signers: absolute("[verify] allowed_signers", v.allowed_signers)?,
        openpgp_keyring: absolute("[verify] openpgp_keyring", v.openpgp_keyring)?,
        allow_rewind: v.allow_rewind.unwrap_or(false),
    };
    if out.signatures != SignaturePolicy::Off
        && out.allowed_signers.is_none()
        && out.openpgp_keyring.is_none()
    {
        bail!(
            "[verify] signatures = \"{}\" needs `allowed_signers` or `openpgp_keyring`",
            match out.signatures {
                SignaturePolicy::Head => "head",
                _ => "all",
            }
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
        p
    }

    /// Plain http:// was accepted silently; it is refused unless signed
    /// commits are required, and the error is placed at the url.
    #[test]
    fn plain_http_is_refused_unless_commits_are_signed() {
        let d = tempfile::tempdir().expect("tempdir");
        let main = write(
            d.path(),
            "agent.toml",
            "[source]\nurl = \"http://git.example.com/fleet.git\"\n",
        );
        let err = format!("{:#}", load(&main, true).expect_err("plain http"));
        assert!(err.contains("agent.toml:2:1: [source] url"), "{err}");
        assert!(err.contains("plain http://"), "{err}");
        write(
            d.path(),
            "agent.toml",
            "[source]\nurl = \"http://git.example.com/fleet.git\"\n[verify]\nsignatures = \"all\"\nallowed_signers = \"/etc/driftless/allowed_signers\"\n",
        );
        load(&main, true).expect("signed commits make http acceptable");
    }

    #[test]
    fn missing_default_config_gives_defaults() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = load(&d.path().join("agent.toml"), false).expect("load");
        assert_eq!(s, Settings::default());
        assert!(load(&d.path().join("agent.toml"), true).is_err());
    }

    #[test]
    fn dropins_override_in_name_order() {
        let d = tempfile::tempdir().expect("tempdir");
        let main = write(d.path(), "agent.toml", "host = 'a'\nmode = 'enforce'\n");
        write(d.path(), "agent.d/20-b.toml", "host = 'b'\n");
        write(
            d.path(),
            "agent.d/10-audit.toml",
            "mode = 'audit'\nhost = 'x'\n",
        );
        write(d.path(), "agent.d/README", "not toml");
        let s = load(&main, true).expect("load");
        assert_eq!(s.host.as_deref(), Some("b"));
        assert_eq!(s.mode, Mode::Audit);
        assert_eq!(s.sources.len(), 3);
    }

    #[test]
    fn source_and_verify_sections() {
        let d = tempfile::tempdir().expect("tempdir");
        let main = write(
            d.path(),
            "agent.toml",
            "[source]\nurl = 'https://git.example.com/fleet.git'\n[verify]\nsignatures = 'all'\nallowed_signers = '/etc/driftless/allowed_signers'\n",
        );
        write(
            d.path(),
            "agent.d/50-branch.toml",
            "[source]\nbranch = 'prod'\ntimeout = '5s'\n",
        );
        let s = load(&main, true).expect("load");
        let src = s.source.expect("source");
        assert_eq!(src.url, "https://git.example.com/fleet.git");
        assert_eq!(src.branch, "prod");
        assert_eq!(src.timeout, Duration::from_secs(5));
        assert_eq!(s.verify.signatures, SignaturePolicy::All);
        assert!(!s.verify.allow_rewind);
        for bad in [
            "[source]\nbranch = 'x'\n",
            "[source]\nurl = 'x'\ntimeout = 'soon'\n",
            "[source]\nurl = 'x'\nssh_key = 'relative/key'\n",
            "[verify]\nsignatures = 'head'\n",
            "[verify]\nsignatures = 'some'\n",
            "[source]\nurl = 'x'\nbranchh = 'x'\n",
            "[rollback]\nhealth_timeout = 'forever'\n",
            "[rollback]\nkeep_generations = 0\n",
            "[rollback]\nkeep = 3\n",
            "[schedule]\ninterval = '0s'\n",
            "[schedule]\nsplay = 'later'\n",
            "[schedule]\nevery = '5m'\n",
            "[metrics]\ntextfile = 'relative.prom'\n",
            "[daemon]\nsocket = 'control.sock'\n",
            "[secrets]\nidentity = 'age.key'\n",
            "[secrets]\nkey = '/etc/driftless/age.key'\n",
            "[prune]\npackages = 'yes'\n",
        ] {
            let main = write(d.path(), "agent.toml", bad);
            std::fs::remove_dir_all(d.path().join("agent.d")).ok();
            assert!(load(&main, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn schedule_metrics_and_daemon_sections() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = load(&d.path().join("agent.toml"), false).expect("defaults");
        assert_eq!(s.schedule.interval, Duration::from_secs(300));
        assert_eq!(s.schedule.splay, Duration::from_secs(60));
        assert_eq!(s.schedule.backoff_max, Duration::from_secs(1800));
        assert_eq!(s.metrics_textfile, None);
        assert_eq!(s.socket, PathBuf::from(DEFAULT_SOCKET));
        let main = write(
            d.path(),
            "agent.toml",
            "[schedule]\ninterval = '30s'\nsplay = '0s'\n[metrics]\ntextfile = '/var/lib/prometheus/node-exporter/driftless.prom'\n",
        );
        write(
            d.path(),
            "agent.d/10-socket.toml",
            "[daemon]\nsocket = '/tmp/x.sock'\n[schedule]\nbackoff_max = '2m'\n",
        );
        let s = load(&main, true).expect("load");
        assert_eq!(
            s.schedule,
            ScheduleSettings {
                interval: Duration::from_secs(30),
                splay: Duration::ZERO,
                backoff_max: Duration::from_secs(120),
            }
        );
        assert!(s.metrics_textfile.is_some());
        assert_eq!(s.socket, PathBuf::from("/tmp/x.sock"));
    }

    #[test]
    fn the_reboot_section_defaults_to_report_and_refuses_bad_values() {
        use crate::agent::reboot::RebootMode;
        let d = tempfile::tempdir().expect("tempdir");
        let s = load(&d.path().join("agent.toml"), false).expect("defaults");
        assert_eq!(s.reboot, RebootSettings::default());
        assert_eq!(s.reboot.mode, RebootMode::Report);
        let main = write(
            d.path(),
            "agent.toml",
            "[reboot]\nmode = 'when-required'\nwindows = ['Sat,Sun 02:00-05:00']\ndrain = ['/usr/local/sbin/drain', '-w']\ndrain_timeout = '90s'\nback_within = '20m'\nrestart_services = true\nrestart_deny = ['postgresql', 'java-*', 'app.service']\n",
        );
        let s = load(&main, true).expect("load");
        assert!(s.reboot.restart_services);
        assert_eq!(
            s.reboot.restart_deny,
            ["postgresql.service", "java-*.service", "app.service"]
        );
        assert_eq!(s.reboot.mode, RebootMode::WhenRequired);
        assert_eq!(s.reboot.windows, ["Sat,Sun 02:00-05:00"]);
        assert_eq!(s.reboot.drain_timeout, Duration::from_secs(90));
        assert_eq!(s.reboot.back_within, Duration::from_secs(1200));
        for (bad, says) in [
            (
                "mode = 'always'",
                "allowed values: never, report, when-required",
            ),
            ("windows = ['Someday 02:00-05:00']", "[reboot] window"),
            ("drain = ['drain.sh']", "must be an absolute path"),
            ("drain = []", "drain is empty"),
            ("drain_timeout = '0s'", "more than 0s"),
            ("back_within = '2s'", "back_within must be at least 5s"),
            ("running_kernel_file = 'k'", "running_kernel_file"),
            ("restart_deny = ['my app']", "is not a unit name or pattern"),
            ("restart_deny = ['']", "is not a unit name or pattern"),
        ] {
            let f = write(d.path(), "agent.toml", &format!("[reboot]\n{bad}\n"));
            let e = format!("{:#}", load(&f, true).expect_err(bad));
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn secrets_and_prune_sections() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = load(&d.path().join("agent.toml"), false).expect("defaults");
        assert_eq!((s.secrets_identity, s.prune_packages), (None, false));
        let main = write(
            d.path(),
            "agent.toml",
            "[secrets]\nidentity = '/etc/driftless/age.key'\n[prune]\npackages = true\n",
        );
        let s = load(&main, true).expect("load");
        assert_eq!(
            s.secrets_identity,
            Some(PathBuf::from("/etc/driftless/age.key"))
        );
        assert!(s.prune_packages);
    }

    #[test]
    fn hooks_add_up_across_dropins_and_bad_ones_are_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        let main = write(
            d.path(),
            "agent.toml",
            "[[hook]]\ncommand = ['/usr/local/bin/page', '--team', 'infra']\non = ['rolled_back', 'rollback_failed', 'quarantined']\n",
        );
        write(
            d.path(),
            "agent.d/10-chat.toml",
            "[[hook]]\nname = 'chat'\ncommand = ['/usr/bin/curl']\non = ['changed']\ntimeout = '5s'\n",
        );
        let s = load(&main, true).expect("load");
        assert_eq!(
            s.hooks,
            vec![
                Hook {
                    name: "page".into(),
                    argv: vec![
                        "/usr/local/bin/page".into(),
                        "--team".into(),
                        "infra".into()
                    ],
                    on: vec![
                        HookOn::RolledBack,
                        HookOn::RollbackFailed,
                        HookOn::Quarantined
                    ],
                    timeout: DEFAULT_HOOK_TIMEOUT,
                },
                Hook {
                    name: "chat".into(),
                    argv: vec!["/usr/bin/curl".into()],
                    on: vec![HookOn::Changed],
                    timeout: Duration::from_secs(5),
                },
            ]
        );
        std::fs::remove_dir_all(d.path().join("agent.d")).expect("rm");
        for (bad, says) in [
            (
                "[[hook]]\ncommand = []\non = ['changed']\n",
                "`command` is empty",
            ),
            (
                "[[hook]]\ncommand = ['notify']\non = ['changed']\n",
                "absolute path",
            ),
            (
                "[[hook]]\ncommand = ['/bin/true']\non = []\n",
                "`on` is empty",
            ),
            (
                "[[hook]]\ncommand = ['/bin/true']\non = ['chnaged']\n",
                "did you mean `changed`",
            ),
            (
                "[[hook]]\ncommand = ['/bin/true']\non = ['changed']\ntimeout = '0s'\n",
                "more than 0s",
            ),
            ("[[hook]]\ncommand = ['/bin/true']\n", "missing field `on`"),
            (
                "[[hook]]\ncommand = ['/bin/true']\non = ['changed']\nshell = true\n",
                "unknown key `shell`",
            ),
        ] {
            let main = write(d.path(), "agent.toml", bad);
            let err = format!("{:#}", load(&main, true).expect_err(bad));
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_file() {
        let d = tempfile::tempdir().expect("tempdir");
        let main = write(d.path(), "agent.toml", "hots = 'a'\n");
        let err = format!("{:#}", load(&main, true).expect_err("unknown key"));
        assert!(err.contains("agent.toml") && err.contains("hots"), "{err}");
        let main = write(d.path(), "agent.toml", "mode = 'yolo'\n");
        assert!(format!("{:#}", load(&main, true).expect_err("bad mode")).contains("yolo"));
        let main = write(d.path(), "agent.toml", "state_dir = 'rel'\n");
        assert!(load(&main, true).is_err());
        let main = write(
            d.path(),
            "agent.toml",
            "state_dir = '/var/lib//driftless/./'\n",
        );
        assert_eq!(
            load(&main, true).expect("load").state_dir,
            PathBuf::from("/var/lib/driftless")
        );
    }

    #[test]
    fn download_limits_take_sizes_with_units_and_drop_ins_override() {
        let d = tempfile::tempdir().expect("tempdir");
        let main = write(d.path(), "agent.toml", "");
        let s = load(&main, true).expect("load").download;
        assert_eq!(s, DownloadSettings::default());
        let main = write(
            d.path(),
            "agent.toml",
            "[download]\nca_file = '/etc/pki/internal.pem'\nmax_size = '1GiB'\n",
        );
        write(
            d.path(),
            "agent.d/10-timeout.toml",
            "[download]\ntimeout = '2m'\n",
        );
        let s = load(&main, true).expect("load").download;
        assert_eq!(s.max_size, 1 << 30);
        assert_eq!(s.timeout, Duration::from_secs(120));
        assert_eq!(s.ca_file, Some(PathBuf::from("/etc/pki/internal.pem")));
        for (text, bytes) in [
            ("512M", 512 << 20),
            ("100", 100),
            ("64KiB", 64 << 10),
            ("2GB", 2 << 30),
        ] {
            assert_eq!(size(text), Some(bytes), "{text}");
        }
        assert_eq!(size("lots"), None);
        assert_eq!(size("5 parsecs"), None);
        std::fs::remove_dir_all(d.path().join("agent.d")).expect("rm drop-ins");
        for bad in [
            "max_size = 'huge'",
            "max_size = 0",
            "ca_file = 'rel.pem'",
            "timeout = '0s'",
        ] {
            let main = write(d.path(), "agent.toml", &format!("[download]\n{bad}\n"));
            let err = format!("{:#}", load(&main, true).expect_err(bad));
            assert!(err.contains("[download]"), "{bad}: {err}");
        }
    }
}
