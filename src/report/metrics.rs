//! Prometheus metrics, written after every run as a textfile for
//! node_exporter's textfile collector (`[metrics] textfile`): driftless
//! itself opens no network port.
//!
//! The file is replaced atomically (temporary file, rename), carries no
//! client-side timestamps (node_exporter skips a file that has them) and no
//! OpenMetrics `info` type (node_exporter 1.5 rejects it): `*_info` metrics
//! are gauges of 1.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use crate::durable::{self, Perms};

/// What the metrics say, as of the last run.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Metrics {
    /// When the last converge ended.
    pub last_run: Option<SystemTime>,
    /// When a converge last ended well.
    pub last_success: Option<SystemTime>,
    /// The host is at its desired state (the head, not held back).
    pub in_sync: bool,
    /// Resources that differ from the desired state (in audit mode: the
    /// drift found; after a converge that healed it: 0).
    pub drifted: usize,
    /// How long the last converge took.
    pub duration: Duration,
    /// Converges by outcome word.
    pub converges: BTreeMap<String, u64>,
    /// Converges rolled back (restored or not).
    pub rollbacks: u64,
    /// Fetches that failed.
    pub fetch_failures: u64,
    /// The last fetch failed (and none succeeded since).
    pub fetch_failing: bool,
    /// When a fetch last succeeded.
    pub last_fetch_success: Option<SystemTime>,
    /// Resources the last converge found drifted from a state already
    /// applied, before it healed them.
    pub drift_found: usize,
    /// Resources healed since the daemon started.
    pub drift_healed: u64,
    /// The host is paused (`driftless pause`).
    pub paused: bool,
    /// The schedule's interval in force.
    pub interval: Duration,
    /// The head is quarantined.
    pub quarantined: bool,
    /// The commit applied (git source).
    pub applied_commit: Option<String>,
    /// This driftless.
    pub version: String,
    /// With `[fleet]`: why the last converge did not apply its new commit
    /// (`Some(None)`: nothing blocked it; `None`: no fleet).
    pub rollout_blocked: Option<Option<String>>,
    /// The host needs a reboot.
    pub reboot_required: bool,
    /// Since when it does.
    pub reboot_required_since: Option<SystemTime>,
    /// Running services that map replaced files.
    pub services_need_restart: usize,
}

/// Every reason the rollout gate gives, so that each has a sample (an
/// alert can then compare with 0 instead of testing for absence).
pub(crate) const ROLLOUT_REASONS: [&str; 7] = [
    "soak",
    "failed",
    "halt",
    "window",
    "parallel",
    "etcd_unreachable",
    "unreadable",
];

fn seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A label value with `\`, `"` and newlines escaped, as the text format
/// wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// The text exposition format (version 0.0.4).
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        self.run_metrics(&mut metric);
        self.source_and_state_metrics(&mut metric);
        self.reboot_metrics(&mut metric);
        out
    }

    /// Whether the host needs a reboot, since when, and the services that
    /// need a restart (docs/reboots.md).
    fn reboot_metrics(&self, metric: &mut impl FnMut(&str, &str, &str, &[(String, String)])) {
        let plain = |v: String| vec![(String::new(), v)];
        metric(
            "driftless_reboot_required",
            "gauge",
            "1 while the host needs a reboot (a newer kernel installed, or core packages updated since boot).",
            &plain(u8::from(self.reboot_required).to_string()),
        );
        metric(
            "driftless_reboot_required_since_seconds",
            "gauge",
            "Since when the host needs a reboot, as Unix time (0: it does not).",
            &plain(self.reboot_required_since.map_or(0.0, seconds).to_string()),
        );
        metric(
            "driftless_services_need_restart",
            "gauge",
            "Running services that map a deleted (replaced) library or program.",
            &plain(self.services_need_restart.to_string()),
        );
    }

    /// The converges: when, how, drift, duration, totals by outcome.
    fn run_metrics(&self, metric: &mut impl FnMut(&str, &str, &str, &[(String, String)])) {
        let plain = |v: String| vec![(String::new(), v)];
        let flag = |b: bool| plain(u8::from(b).to_string());
        metric(
            "driftless_last_run_timestamp_seconds",
            "gauge",
            "When the last converge ended, as Unix time (0: none yet).",
            &plain(self.last_run.map_or(0.0, seconds).to_string()),
        );
        metric(
            "driftless_last_success_timestamp_seconds",
            "gauge",
            "When a converge last ended well (in sync, changed, or an audit), as Unix time (0: never).",
            &plain(self.last_success.map_or(0.0, seconds).to_string()),
        );
        metric(
            "driftless_in_sync",
            "gauge",
            "1 when the host is at its desired state, 0 when it drifted, is held back or failed.",
            &flag(self.in_sync),
        );
        metric(
            "driftless_drifted_resources",
            "gauge",
            "Resources that differ from the desired state as of the last converge.",
            &plain(self.drifted.to_string()),
        );
        metric(
            "driftless_drift_found_resources",
            "gauge",
            "Resources the last converge found drifted from a state already applied, before it healed them.",
            &plain(self.drift_found.to_string()),
        );
        metric(
            "driftless_drift_healed_total",
            "counter",
            "Resources healed (changed by hand or by something else, put back) since the daemon started.",
            &plain(self.drift_healed.to_string()),
        );
        metric(
            "driftless_converge_duration_seconds",
            "gauge",
            "How long the last converge took.",
            &plain(self.duration.as_secs_f64().to_string()),
        );
        let converges: Vec<(String, String)> = self
            .converges
            .iter()
            .map(|(o, n)| (format!("{{outcome=\"{}\"}}", label(o)), n.to_string()))
            .collect();
        metric(
            "driftless_converges_total",
            "counter",
            "Converges since the daemon started, by outcome.",
            &converges,
        );
        metric(
            "driftless_rollbacks_total",
            "counter",
            "Converges that failed and were rolled back, since the daemon started.",
            &plain(self.rollbacks.to_string()),
        );
    }

    /// The source, the agent state, the rollout gate, this build.
    fn source_and_state_metrics(
        &self,
        metric: &mut impl FnMut(&str, &str, &str, &[(String, String)]),
    ) {
        let plain = |v: String| vec![(String::new(), v)];
        let flag = |b: bool| plain(u8::from(b).to_string());
        metric(
            "driftless_fetch_failures_total",
            "counter",
            "Fetches of the config repo that failed, since the daemon started.",
            &plain(self.fetch_failures.to_string()),
        );
        metric(
            "driftless_fetch_failing",
            "gauge",
            "1 from a failed fetch of the config repo until a fetch succeeds again.",
            &flag(self.fetch_failing),
        );
        metric(
            "driftless_last_fetch_success_timestamp_seconds",
            "gauge",
            "When a fetch of the config repo last succeeded, as Unix time (0: never).",
            &plain(self.last_fetch_success.map_or(0.0, seconds).to_string()),
        );
        metric(
            "driftless_paused",
            "gauge",
            "1 while the host is paused (`driftless pause`): no converge runs.",
            &flag(self.paused),
        );
        metric(
            "driftless_interval_seconds",
            "gauge",
            "The interval between converges in force ([schedule] interval).",
            &plain(self.interval.as_secs_f64().to_string()),
        );
        metric(
            "driftless_quarantined",
            "gauge",
            "1 when the head of the config repo is quarantined (held at the last good state).",
            &flag(self.quarantined),
        );
        if let Some(c) = &self.applied_commit {
            metric(
                "driftless_applied_info",
                "gauge",
                "The commit applied to this host (always 1).",
                &[(format!("{{commit=\"{}\"}}", label(c)), "1".to_owned())],
            );
        }
        if let Some(blocked) = &self.rollout_blocked {
            let samples: Vec<(String, String)> = ROLLOUT_REASONS
                .iter()
                .map(|r| {
                    let on = blocked.as_deref() == Some(*r);
                    (format!("{{reason=\"{r}\"}}"), u8::from(on).to_string())
                })
                .collect();
            metric(
                "driftless_rollout_blocked",
                "gauge",
                "1 for the reason the last converge did not apply a new commit (the fleet's rollout gate): soak, failed, halt, window, parallel, etcd_unreachable, unreadable.",
                &samples,
            );
        }
        metric(
            "driftless_build_info",
            "gauge",
            "This driftless (always 1).",
            &[(
                format!("{{version=\"{}\"}}", label(&self.version)),
                "1".to_owned(),
            )],
        );
    }

    /// Replaces `path` with the metrics, atomically, readable by all (the
    /// collector does not run as root).
    pub(crate) fn write(&self, path: &Path) -> Result<()> {
        let dir = path
            .parent()
            .with_context(|| format!("{} has no parent directory", path.display()))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no file name", path.display()))?;
        let perms = Perms {
            mode: 0o644,
            ..Perms::private()
        };
        durable::write_file(dir, name, self.render().as_bytes(), perms)
            .with_context(|| format!("failed to write the metrics file {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_with_help_type_and_no_timestamps() {
        let m = Metrics {
            last_run: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            in_sync: true,
            converges: BTreeMap::from([("in_sync".to_owned(), 3), ("changed".to_owned(), 1)]),
            applied_commit: Some("3f2a9c1".to_owned()),
            version: "0.1.0 \"odd\"".to_owned(),
            rollout_blocked: Some(Some("etcd_unreachable".to_owned())),
            reboot_required: true,
            reboot_required_since: Some(
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_100),
            ),
            services_need_restart: 2,
            ..Metrics::default()
        };
        let text = m.render();
        for want in [
            "# TYPE driftless_rollout_blocked gauge\n",
            "driftless_rollout_blocked{reason=\"soak\"} 0\n",
            "driftless_rollout_blocked{reason=\"etcd_unreachable\"} 1\n",
            "# TYPE driftless_last_run_timestamp_seconds gauge\ndriftless_last_run_timestamp_seconds 1700000000\n",
            "driftless_in_sync 1\n",
            "# TYPE driftless_converges_total counter\n",
            "driftless_converges_total{outcome=\"changed\"} 1\ndriftless_converges_total{outcome=\"in_sync\"} 3\n",
            "driftless_applied_info{commit=\"3f2a9c1\"} 1\n",
            "driftless_build_info{version=\"0.1.0 \\\"odd\\\"\"} 1\n",
            "# TYPE driftless_reboot_required gauge\ndriftless_reboot_required 1\n",
            "driftless_reboot_required_since_seconds 1700000100\n",
            "driftless_services_need_restart 2\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        // Every sample line is `name{labels} value`: no third field.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().expect("value");
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(!line.contains("} 1 "), "timestamp in {line}");
        }
    }

    #[test]
    fn the_file_is_replaced_whole_and_readable_by_all() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().expect("tempdir");
        let path = d.path().join("driftless.prom");
        Metrics::default().write(&path).expect("write");
        let m = Metrics {
            rollbacks: 2,
            ..Metrics::default()
        };
        m.write(&path).expect("rewrite");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("driftless_rollbacks_total 2\n"), "{text}");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        assert_eq!(std::fs::read_dir(d.path()).expect("list").count(), 1);
    }
}
