//! `fleet.toml` at the config repo's root: the rollout policy, as waves.
//!
//! A host belongs to the first wave that matches it (by host-name pattern
//! or role); a host no wave matches is in an implicit last wave, gated by
//! all of them. Parsed with the desired state, so that the policy a host
//! has applied travels with its last good state: the gate in force is the
//! applied commit's, never the one being rolled out.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::diag::{Diagnostic, SourceText};
use crate::agent::reboot::RebootMode;

/// The file's place in the repo.
pub(crate) const FLEET_FILE: &str = "fleet.toml";

/// The rollout policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetPolicy {
    /// The waves, in rollout order.
    pub waves: Vec<Wave>,
}

/// One wave of a rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wave {
    /// Its name (shown in status).
    pub name: String,
    /// Host-name patterns (`*` and `?`).
    pub hosts: Vec<String>,
    /// Roles: a host with one of them belongs to the wave.
    pub roles: Vec<String>,
    /// How many of its live hosts must run a commit healthily, for `soak`,
    /// before the next wave applies it.
    pub min_healthy: Threshold,
    /// How long they must have run it.
    #[serde(with = "secs")]
    pub soak: Duration,
    /// At most this many of its hosts apply a changing converge at once.
    pub max_parallel: Option<u32>,
    /// More rollbacks of a commit in this wave than this halt its rollout.
    pub max_failed: Threshold,
    /// When new commits may be applied (`Mon-Fri 09:00-16:00`, host time).
    pub windows: Vec<String>,
    /// The wave's own `[reboot] mode`, over the agent config's (see
    /// [`Wave::reboot_policy`]). Absent in last good states written before
    /// it: `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_mode: Option<RebootMode>,
    /// The wave's own reboot windows, instead of the agent config's `[reboot]
    /// windows` (empty: any time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_windows: Option<Vec<String>>,
}

impl Wave {
    /// The reboot mode and windows in force for a host of this wave whose
    /// agent config says `mode` and `windows`: the wave's, where it sets
    /// them. An agent config's `never` stays `never`: a config repo cannot
    /// make a host reboot that its own administrator said must not.
    pub fn reboot_policy(&self, mode: RebootMode, windows: &[String]) -> (RebootMode, Vec<String>) {
        let mode = match (mode, self.reboot_mode) {
            (RebootMode::Never, _) | (_, None) => mode,
            (_, Some(wave)) => wave,
        };
        let windows = self
            .reboot_windows
            .clone()
            .unwrap_or_else(|| windows.to_vec());
        (mode, windows)
    }
}

/// A count of hosts, or a share of a wave's live hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Threshold {
    /// So many hosts.
    Count(u32),
    /// So many percent of the live hosts.
    Percent(u32),
}

impl Threshold {
    /// The hosts needed out of `live`, rounding up (`min_healthy`).
    pub fn at_least(self, live: usize) -> usize {
        match self {
            Threshold::Count(n) => n as usize,
            Threshold::Percent(p) => (live * p as usize).div_ceil(100),
        }
    }

    /// The hosts allowed out of `live`, rounding down (`max_failed`).
    pub fn at_most(self, live: usize) -> usize {
        match self {
            Threshold::Count(n) => n as usize,
            Threshold::Percent(p) => live * p as usize / 100,
        }
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Threshold::Count(n) => write!(f, "{n}"),
            Threshold::Percent(p) => write!(f, "{p}%"),
        }
    }
}

mod secs {
    use std::time::Duration;

    use serde::Deserialize;

    pub(super) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

/// The name of the implicit last wave.
pub(crate) const REST: &str = "rest";

impl FleetPolicy {
    /// The index of the wave `host` (with `roles`) belongs to; the
    /// implicit last wave is `waves.len()`.
    pub fn wave_of(&self, host: &str, roles: &[String]) -> usize {
        self.waves
            .iter()
            .position(|w| {
                w.hosts.iter().any(|p| glob(p, host)) || w.roles.iter().any(|r| roles.contains(r))
            })
            .unwrap_or(self.waves.len())
    }

    /// The name of wave `i`.
    pub fn wave_name(&self, i: usize) -> &str {
        self.waves.get(i).map_or(REST, |w| w.name.as_str())
    }
}

/// `*` (any run) and `?` (one character) matching, the whole name.
pub(crate) fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Classic two-pointer match with backtracking to the last `*`.
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A maintenance window: days of the week and a time range, in the
/// host's time zone (`Mon-Fri 09:00-16:00`, `Sat 22:00-02:00`, `daily
/// 00:00-24:00`). A range whose end is before its start runs past midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    /// Days it opens on, bit 0 = Monday.
    days: u8,
    /// Opens at, minutes after midnight.
    start: u16,
    /// Closes at, minutes after midnight (up to 24:00).
    end: u16,
}

/// Whether any of `windows` (as written; ones that do not parse are
/// left out, the config's validation refused them) is open at `weekday`
/// (0 = Monday) and `minute` after midnight; no windows: always open.
pub(crate) fn any_open(windows: &[String], weekday: u8, minute: u16) -> bool {
    windows.is_empty()
        || windows
            .iter()
            .filter_map(|w| Window::parse(w).ok())
            .any(|w| w.is_open(weekday, minute))
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

impl Window {
    /// Parses `DAYS HH:MM-HH:MM`; DAYS is `daily`, one day, a range
    /// (`Mon-Fri`) or a list (`Sat,Sun`).
    pub(crate) fn parse(text: &str) -> Result<Window, String> {
        let (days, times) = text
            .trim()
            .split_once(' ')
            .ok_or("expected days and a time range, such as \"Mon-Fri 09:00-16:00\"")?;
        let day = |d: &str| {
            DAYS.iter()
                .position(|x| x.eq_ignore_ascii_case(d))
                .ok_or(format!("`{d}` is not a day (Mon … Sun)"))
        };
        let mut mask = 0u8;
        if days.eq_ignore_ascii_case("daily") {
            mask = 0x7f;
        } else {
            for part in days.split(',') {
                match part.split_once('-') {
                    Some((a, b)) => {
                        let (a, b) = (day(a)?, day(b)?);
                        let mut d = a;
                        loop {
                            mask |= 1 << d;
                            if d == b {
                                break;
                            }
                            d = (d + 1) % 7;
                        }
                    }
                    None => mask |= 1 << day(part)?,
                }
            }
        }
        let (a, b) = times
            .trim()
            .split_once('-')
            .ok_or("expected a time range such as 09:00-16:00")?;
        let minute = |t: &str| -> Result<u16, String> {
            let (h, m) = t.split_once(':').ok_or(format!("`{t}` is not HH:MM"))?;
            let (h, m): (u16, u16) = (
                h.parse().map_err(|_| format!("`{t}` is not HH:MM"))?,
                m.parse().map_err(|_| format!("`{t}` is not HH:MM"))?,
            );
            if m >= 60 || h > 24 || (h == 24 && m > 0) {
                return Err(format!("`{t}` is not a time of day"));
            }
            Ok(h * 60 + m)
        };
        let (start, end) = (minute(a)?, minute(b)?);
        if start == end {
            return Err("the window opens and closes at the same time".into());
        }
        Ok(Window {
            days: mask,
            start,
            end,
        })
    }

    /// Whether the window is open at `weekday` (0 = Monday) and `minute`
    /// after midnight. Past midnight, the day it opened on counts.
    pub(crate) fn is_open(&self, weekday: u8, minute: u16) -> bool {
        let on = |d: u8| self.days & (1 << (d % 7)) != 0;
        if self.start < self.end {
            on(weekday) && (self.start..self.end).contains(&minute)
        } else {
            (on(weekday) && minute >= self.start) || (on((weekday + 6) % 7) && minute < self.end)
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetFile {
    #[serde(default)]
    wave: Vec<WaveFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaveFile {
    name: String,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    min_healthy: Option<toml::Value>,
    soak: Option<String>,
    max_parallel: Option<u32>,
    max_failed: Option<toml::Value>,
    #[serde(default)]
    windows: Vec<String>,
    reboot_mode: Option<RebootMode>,
    reboot_windows: Option<Vec<String>>,
}

/// A wave's `key` (`min_healthy`, `max_failed`): a count or a percentage.
fn threshold(v: Option<&toml::Value>, key: &str, default: Threshold) -> Result<Threshold, String> {
    match v {
        None => Ok(default),
        Some(toml::Value::Integer(n)) if *n >= 0 => Ok(Threshold::Count(*n as u32)),
        Some(toml::Value::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<u32>().ok())
            .filter(|p| *p <= 100)
            .map(Threshold::Percent)
            .ok_or_else(|| format!("`{key}` = \"{s}\" is not a percentage such as \"50%\"")),
        Some(other) => Err(format!(
            "`{key}` must be a count (3) or a percentage (\"50%\"), not {other}"
        )),
    }
}

/// Parses `fleet.toml`; every problem is a diagnostic naming its line.
pub(crate) fn parse(text: &str) -> Result<FleetPolicy, Vec<Diagnostic>> {
    let src = SourceText::new(FLEET_FILE, text);
    let at = |span: Option<std::ops::Range<usize>>, message: String| {
        src.diag(&span.unwrap_or(0..0), message)
    };
    let file: FleetFile =
        toml::from_str(text).map_err(|e| vec![at(e.span(), e.message().trim_end().to_owned())])?;
    let mut problems = Vec::new();
    let mut waves = Vec::new();
    // Without spans per field after serde, a wave's problems point at its
    // `name`, found in the text.
    let locate = |name: &str| {
        let needle = format!("\"{name}\"");
        text.find(&needle).map(|s| s..s + needle.len())
    };
    for w in file.wave {
        let bad = |problems: &mut Vec<Diagnostic>, message: String| {
            problems.push(at(
                locate(&w.name),
                format!("[[wave]] `{}`: {message}", w.name),
            ));
        };
        if w.hosts.is_empty() && w.roles.is_empty() {
            bad(
                &mut problems,
                "names no `hosts` and no `roles`, so no host is in it".into(),
            );
        }
        if w.name == REST || waves.iter().any(|o: &Wave| o.name == w.name) {
            bad(
                &mut problems,
                format!(
                    "the name is taken (waves are unique, and `{REST}` is the implicit last one)"
                ),
            );
        }
        let min_healthy = threshold(
            w.min_healthy.as_ref(),
            "min_healthy",
            Threshold::Percent(100),
        )
        .map_err(|m| bad(&mut problems, m))
        .ok();
        let max_failed = threshold(w.max_failed.as_ref(), "max_failed", Threshold::Count(0))
            .map_err(|m| bad(&mut problems, m))
            .ok();
        let soak = match &w.soak {
            None => Some(Duration::ZERO),
            Some(s) => humantime::parse_duration(s)
                .map_err(|e| {
                    bad(
                        &mut problems,
                        format!("`soak` = \"{s}\" is not a duration such as \"10m\": {e}"),
                    );
                })
                .ok(),
        };
        if w.max_parallel == Some(0) {
            bad(&mut problems, "`max_parallel` must be at least 1".into());
        }
        for window in &w.windows {
            if let Err(e) = Window::parse(window) {
                bad(&mut problems, format!("window \"{window}\": {e}"));
            }
        }
        for window in w.reboot_windows.iter().flatten() {
            if let Err(e) = Window::parse(window) {
                bad(&mut problems, format!("reboot window \"{window}\": {e}"));
            }
        }
        if let (Some(min_healthy), Some(max_failed), Some(soak)) = (min_healthy, max_failed, soak) {
            waves.push(Wave {
                name: w.name,
                hosts: w.hosts,
                roles: w.roles,
                min_healthy,
                soak,
                max_parallel: w.max_parallel,
                max_failed,
                windows: w.windows,
                reboot_mode: w.reboot_mode,
                reboot_windows: w.reboot_windows,
            });
        }
    }
    if problems.is_empty() {
        Ok(FleetPolicy { waves })
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_parse_and_hosts_fall_into_the_first_that_matches() {
        let p = parse(
            "[[wave]]\nname = \"canary\"\nhosts = [\"web1\", \"db-c?\"]\nmin_healthy = 1\nsoak = \"10m\"\n\n\
             [[wave]]\nname = \"web\"\nroles = [\"web\"]\nmin_healthy = \"50%\"\nmax_failed = \"10%\"\nmax_parallel = 2\n",
        )
        .expect("valid");
        assert_eq!(p.waves.len(), 2);
        assert_eq!(p.waves[0].soak, Duration::from_secs(600));
        assert_eq!(p.waves[1].min_healthy, Threshold::Percent(50));
        assert_eq!(p.wave_of("web1", &[]), 0);
        assert_eq!(p.wave_of("db-c1", &[]), 0);
        assert_eq!(p.wave_of("web2", &["web".into()]), 1);
        assert_eq!(p.wave_of("mail", &[]), 2);
        assert_eq!(p.wave_name(2), REST);
        assert_eq!(Threshold::Percent(50).at_least(3), 2);
        assert_eq!(Threshold::Percent(10).at_most(9), 0);
        assert_eq!(Threshold::Percent(10).at_most(10), 1);
    }

    #[test]
    fn bad_waves_are_refused_with_their_line() {
        let errs = parse(
            "[[wave]]\nname = \"a\"\nhosts = [\"*\"]\nmin_healthy = \"half\"\n\n[[wave]]\nname = \"b\"\nsoak = \"long\"\n",
        )
        .expect_err("invalid");
        let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "fleet.toml:2:8: [[wave]] `a`: `min_healthy` = \"half\" is not a percentage such as \"50%\"",
                "fleet.toml:7:8: [[wave]] `b`: names no `hosts` and no `roles`, so no host is in it",
                "fleet.toml:7:8: [[wave]] `b`: `soak` = \"long\" is not a duration such as \"10m\": expected number at 0",
            ]
        );
        let errs = parse("[[wave]]\nname = \"a\"\nhost = [\"*\"]\n").expect_err("unknown key");
        assert!(
            errs[0]
                .to_string()
                .starts_with("fleet.toml:3:1: unknown field `host`"),
            "{errs:?}"
        );
    }

    #[test]
    fn a_wave_overrides_the_reboot_mode_and_windows_but_never_a_hosts_never() {
        let p = parse(
            "[[wave]]\nname = \"canary\"\nhosts = [\"c*\"]\nreboot_mode = \"when-required\"\nreboot_windows = [\"daily 02:00-04:00\"]\n\n\
             [[wave]]\nname = \"db\"\nhosts = [\"db*\"]\nreboot_mode = \"report\"\n",
        )
        .expect("valid");
        let host = ["Sat 01:00-02:00".to_owned()];
        assert_eq!(
            p.waves[0].reboot_policy(RebootMode::Report, &host),
            (
                RebootMode::WhenRequired,
                vec!["daily 02:00-04:00".to_owned()]
            )
        );
        assert_eq!(
            p.waves[1].reboot_policy(RebootMode::WhenRequired, &host),
            (RebootMode::Report, host.to_vec())
        );
        assert_eq!(
            p.waves[0].reboot_policy(RebootMode::Never, &host).0,
            RebootMode::Never
        );
        // Written before the override existed: a last good state still reads.
        let old = r#"{"name":"a","hosts":[],"roles":[],"min_healthy":{"count":1},"soak":0,"max_parallel":null,"max_failed":{"count":0},"windows":[]}"#;
        let w: Wave = serde_json::from_str(old).expect("old wave");
        assert_eq!((w.reboot_mode, w.reboot_windows), (None, None));
    }

    #[test]
    fn a_bad_reboot_override_is_refused_with_its_line() {
        let errs = parse(
            "[[wave]]\nname = \"a\"\nhosts = [\"*\"]\nreboot_windows = [\"Someday 01:00-02:00\"]\n",
        )
        .expect_err("bad window");
        assert_eq!(
            errs[0].to_string(),
            "fleet.toml:2:8: [[wave]] `a`: reboot window \"Someday 01:00-02:00\": `Someday` is not a day (Mon … Sun)"
        );
        let errs = parse("[[wave]]\nname = \"a\"\nhosts = [\"*\"]\nreboot_mode = \"always\"\n")
            .expect_err("bad mode");
        assert!(
            errs[0]
                .to_string()
                .starts_with("fleet.toml:4:15: unknown variant `always`"),
            "{errs:?}"
        );
    }

    #[test]
    fn windows_open_on_their_days_and_hours_also_past_midnight() {
        let w = Window::parse("Mon-Fri 09:00-16:00").expect("window");
        assert!(w.is_open(0, 9 * 60));
        assert!(!w.is_open(0, 16 * 60));
        assert!(!w.is_open(5, 10 * 60));
        let night = Window::parse("Sat,Sun 22:00-02:00").expect("window");
        assert!(night.is_open(5, 23 * 60));
        assert!(night.is_open(6, 60), "Saturday's window runs into Sunday");
        assert!(night.is_open(0, 60), "Sunday's window runs into Monday");
        assert!(!night.is_open(1, 60));
        assert!(
            Window::parse("daily 00:00-24:00")
                .expect("window")
                .is_open(3, 0)
        );
        for bad in [
            "Mon",
            "Someday 09:00-10:00",
            "Mon 9-10",
            "Mon 09:00-09:00",
            "Mon 25:00-26:00",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn globs_match_whole_names() {
        assert!(glob("web*", "web12"));
        assert!(glob("*.example.com", "a.example.com"));
        assert!(glob("db-?", "db-1"));
        assert!(!glob("db-?", "db-12"));
        assert!(!glob("web", "web1"));
        assert!(glob("*", ""));
    }
}
