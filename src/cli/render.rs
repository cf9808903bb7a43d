//! What the commands print: human text by default, JSON with `--json`.
//! Logs go to stderr through tracing; results go to stdout.
//!
//! Each use case returns its own typed result; [`Report`] is the one shape
//! the command line renders them in (the `--json` document).

use std::io::{IsTerminal, Write};

use serde::Serialize;

use crate::agent::Mark;
use crate::app::{
    ActionResult, AgentStatus, ConvergeResult, FactsResult, GenerationDetail, Outcome, Run,
    SourceStatus, Subject, TemplateScope, ValidateResult,
};
use crate::desired::Diagnostic;
use crate::plan::{Change, Marker, PlanProblem};
use crate::store::Generation;

/// The version of the `--json` documents (docs/json.md). It changes only
/// when a field changes meaning or goes away; new fields may appear.
pub const JSON_SCHEMA: u32 = 1;

/// A usage error (from the argument parser) as a `--json` document.
pub fn usage_error_json(message: &str) -> serde_json::Value {
    serde_json::json!({
        "schema": JSON_SCHEMA,
        "command": null,
        "result": "error",
        "exit_code": 1,
        "duration_ms": 0,
        "error": message.trim_end(),
    })
}

/// Which result a report holds: what its `--json` document carries and
/// how its text is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `validate`.
    Validate,
    /// `plan`.
    Plan,
    /// `converge`.
    Converge,
    /// `status`.
    Status,
    /// `history`, `history N`.
    History,
    /// `facts`.
    Facts,
    /// `source status`.
    SourceStatus,
    /// `fleet status`.
    FleetStatus,
    /// `fleet wait`.
    FleetWait,
    /// A command that only says what it did, by its name: `rollback`,
    /// `resume`, `retry`, `recover`, `pause`, `fleet halt|resume`,
    /// `config check`.
    Action(&'static str),
}

impl Shape {
    /// The command's name in its `--json` document.
    pub(crate) fn command(self) -> &'static str {
        match self {
            Shape::Validate => "validate",
            Shape::Plan => "plan",
            Shape::Converge => "converge",
            Shape::Status => "status",
            Shape::History => "history",
            Shape::Facts => "facts",
            Shape::SourceStatus => "source status",
            Shape::FleetStatus => "fleet status",
            Shape::FleetWait => "fleet wait",
            Shape::Action(name) => name,
        }
    }

    /// The command's own fields in its `--json` document (docs/json.md).
    fn fields(self) -> &'static [&'static str] {
        match self {
            Shape::Validate => &[
                "source",
                "host",
                "host_file",
                "roles",
                "hosts",
                "diagnostics",
                "warnings",
            ],
            Shape::Plan => &[
                "source",
                "host",
                "host_file",
                "roles",
                "root",
                "mode",
                "changes",
                "notices",
                "diagnostics",
                "plan_problems",
            ],
            Shape::Converge => &[
                "source",
                "host",
                "host_file",
                "roles",
                "root",
                "mode",
                "changes",
                "notices",
                "diagnostics",
                "plan_problems",
                "generation",
                "dnf_transactions",
                "restore_errors",
                "drifted",
            ],
            Shape::Status => &["status"],
            Shape::History => &["history", "generation_detail"],
            Shape::SourceStatus => &["source_status"],
            Shape::FleetStatus => &["fleet"],
            Shape::FleetWait => &["wait"],
            Shape::Facts => &[
                "source",
                "host",
                "host_file",
                "roles",
                "facts",
                "diagnostics",
            ],
            Shape::Action(_) => &["notices"],
        }
    }
}

/// Everything a command reports.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Which command's result it holds.
    #[serde(skip)]
    shape: Shape,
    /// How it ended.
    pub result: Outcome,
    /// The host name used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The host file chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_file: Option<String>,
    /// Roles applied, in order.
    pub roles: Vec<String>,
    /// Where the desired state came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The root converged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Planned (or, for converge, applied) changes.
    pub changes: Vec<Change>,
    /// Problems in the config repo.
    pub diagnostics: Vec<Diagnostic>,
    /// What is valid but probably not meant as written.
    pub warnings: Vec<Diagnostic>,
    /// Problems planning against this host.
    pub plan_problems: Vec<PlanProblem>,
    /// The error, with its causes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Details of a failed restore.
    pub restore_errors: Vec<String>,
    /// Things the operator should know that are not changes.
    #[serde(rename = "notices")]
    pub notes: Vec<String>,
    /// Enforce, or audit (nothing is changed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<crate::config::Mode>,
    /// The host files `validate --all-hosts` validated, by host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    /// Resources found drifted from a desired state already applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drifted: Option<usize>,
    /// One generation in full (`history N`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation_detail: Option<GenerationDetail>,
    /// The facts and vars templates see (`facts`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facts: Option<TemplateScope>,
    /// dnf transactions this converge recorded.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dnf_transactions: Vec<u64>,
    /// `source status` output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_status: Option<SourceStatus>,
    /// `fleet status` output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<crate::app::FleetStatus>,
    /// `fleet wait` output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait: Option<crate::app::FleetWait>,
    /// The generation a converge recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// `status` output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<AgentStatus>,
    /// `history` output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<Generation>>,
    /// Show the diffs of a converge's changes (`--diff`, `-v`); a plan
    /// always shows them.
    #[serde(skip)]
    pub show_diffs: bool,
    /// A converge with `--dry-run` (said as such, not as audit mode).
    #[serde(skip)]
    pub dry_run: bool,
}

impl Report {
    /// An empty report of a command whose result has `shape`, ended by
    /// `error` before it had one.
    pub(crate) fn error(shape: Shape, error: &anyhow::Error) -> Self {
        let mut r = Self::new(shape);
        r.error = Some(format!("{error:#}"));
        r
    }

    fn with_subject(mut self, s: Subject) -> Self {
        self.source = s.source;
        self.host = s.host;
        self.host_file = s.host_file;
        self.roles = s.roles;
        self
    }

    /// `validate`.
    pub fn validate(v: ValidateResult) -> Self {
        let mut r = Self::new(Shape::Validate).with_subject(v.subject);
        r.result = v.outcome;
        r.diagnostics = v.diagnostics;
        r.warnings = v.warnings;
        r.error = v.error;
        r.hosts = v.hosts;
        r
    }

    /// `plan`.
    pub fn plan(run: Run) -> Self {
        Self::run(Shape::Plan, run)
    }

    /// A plan or the run part of a converge.
    fn run(shape: Shape, run: Run) -> Self {
        let mut r = Self::new(shape).with_subject(run.subject);
        r.result = run.outcome;
        r.root = run.root;
        r.changes = run.changes;
        r.notes = run.notes;
        r.diagnostics = run.diagnostics;
        r.plan_problems = run.plan_problems;
        r.error = run.error;
        r
    }

    /// `converge`.
    pub fn converge(c: ConvergeResult) -> Self {
        let mut r = Self::run(Shape::Converge, c.run);
        r.generation = c.generation;
        r.dnf_transactions = c.dnf_transactions;
        r.restore_errors = c.restore_errors;
        r.drifted = Some(c.drifted);
        r.mode = Some(if c.audit {
            crate::config::Mode::Audit
        } else {
            crate::config::Mode::Enforce
        });
        r
    }

    /// `status`.
    pub fn status(s: AgentStatus) -> Self {
        let mut r = Self::new(Shape::Status);
        r.result = Outcome::Done;
        r.status = Some(s);
        r
    }

    /// `history`.
    pub fn history(h: Vec<Generation>) -> Self {
        let mut r = Self::new(Shape::History);
        r.result = Outcome::Done;
        r.history = Some(h);
        r
    }

    /// `facts`.
    pub fn facts(f: FactsResult) -> Self {
        let mut r = Self::new(Shape::Facts).with_subject(f.subject);
        r.result = f.outcome;
        r.facts = f.scope;
        r.diagnostics = f.diagnostics;
        r.error = f.error;
        r
    }

    /// `history N`.
    pub fn generation(g: GenerationDetail) -> Self {
        let mut r = Self::new(Shape::History);
        r.result = Outcome::Done;
        r.generation_detail = Some(g);
        r
    }

    /// `source status`.
    pub fn source_status(s: SourceStatus) -> Self {
        let mut r = Self::new(Shape::SourceStatus);
        r.result = Outcome::Done;
        r.source_status = Some(s);
        r
    }

    /// `fleet status`.
    pub fn fleet_status(s: crate::app::FleetStatus) -> Self {
        let mut r = Self::new(Shape::FleetStatus);
        r.result = Outcome::Done;
        r.fleet = Some(s);
        r
    }

    /// `fleet wait`: landed 0, halted 4, timeout 3.
    pub fn fleet_wait(w: crate::app::FleetWait) -> Self {
        let mut r = Self::new(Shape::FleetWait);
        r.result = w.outcome();
        r.wait = Some(w);
        r
    }

    /// `rollback`, `resume`, `retry`, `recover`, `fleet halt|resume`.
    pub fn action(command: &'static str, a: ActionResult) -> Self {
        let mut r = Self::new(Shape::Action(command));
        r.result = a.outcome;
        r.notes = a.notes;
        r.error = a.error;
        r
    }

    fn new(shape: Shape) -> Self {
        Self {
            shape,
            result: Outcome::Error,
            host: None,
            host_file: None,
            roles: Vec::new(),
            source: None,
            root: None,
            changes: Vec::new(),
            diagnostics: Vec::new(),
            warnings: Vec::new(),
            plan_problems: Vec::new(),
            error: None,
            restore_errors: Vec::new(),
            notes: Vec::new(),
            dnf_transactions: Vec::new(),
            source_status: None,
            fleet: None,
            wait: None,
            generation: None,
            status: None,
            history: None,
            mode: None,
            hosts: None,
            drifted: None,
            generation_detail: None,
            facts: None,
            show_diffs: false,
            dry_run: false,
        }
    }

    /// The `--json` document: the envelope (`schema`, `command`, `result`,
    /// `exit_code`, `duration_ms`, `error`) and the command's own fields
    /// only (docs/json.md).
    pub fn json(&self, duration_ms: u64) -> serde_json::Value {
        use serde_json::{Value, json};
        let full = serde_json::to_value(self).unwrap_or(Value::Null);
        let own = self.shape.fields();
        let mut out = serde_json::Map::new();
        out.insert("schema".into(), json!(JSON_SCHEMA));
        out.insert("command".into(), json!(self.shape.command()));
        out.insert("result".into(), json!(self.result));
        out.insert(
            "exit_code".into(),
            json!(crate::outcome::ExitCode::from(self.result) as u8),
        );
        out.insert("duration_ms".into(), json!(duration_ms));
        if let Some(e) = &self.error {
            out.insert("error".into(), json!(e));
        }
        for key in own {
            if let Some(v) = full.get(*key) {
                out.insert((*key).into(), v.clone());
            }
        }
        Value::Object(out)
    }

    /// Prints the report: JSON on stdout (one document on one line, so that
    /// it is also the last line of a `converge --now --json` stream), or
    /// text (results on stdout, problems on stderr).
    pub fn print(&self, json: bool, duration_ms: u64) -> std::io::Result<()> {
        if json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, &self.json(duration_ms))?;
            return writeln!(out);
        }
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        let paint = |code: &str, s: &str| {
            if color {
                format!("\x1b[{code}m{s}\x1b[0m")
            } else {
                s.to_owned()
            }
        };
        self.print_subject(&mut out, &mut err)?;
        if let Some(f) = &self.fleet {
            return fleet_text(&mut out, f);
        }
        if let Some(w) = &self.wait {
            return wait_text(&mut out, w);
        }
        if let Some(st) = &self.source_status {
            return source_status_text(&mut out, st);
        }
        if let Some(st) = &self.status {
            status_text(&mut out, st, &paint)?;
        }
        if let Some(scope) = &self.facts {
            print_scope(&mut out, scope)?;
        }
        if let Some(g) = &self.generation_detail {
            self.print_generation(&mut out, g, &paint)?;
        }
        if let Some(h) = &self.history {
            history_text(&mut out, h)?;
        }
        self.print_outcome(&mut out, &mut err, &paint)?;
        self.print_changes(&mut out, &paint)?;
        self.print_error(&mut err)
    }

    /// The host, its file and roles, the source; and the problems found.
    fn print_subject(&self, out: &mut impl Write, err: &mut impl Write) -> std::io::Result<()> {
        if let (Some(host), Some(file)) = (&self.host, &self.host_file) {
            let roles = if self.roles.is_empty() {
                String::new()
            } else {
                format!(" (roles: {})", self.roles.join(", "))
            };
            writeln!(out, "host {host}: {file}{roles}")?;
        }
        if let Some(src) = &self.source {
            let root = self
                .root
                .as_deref()
                .map(|r| format!(", root {r}"))
                .unwrap_or_default();
            writeln!(out, "from {src}{root}")?;
        }
        for d in &self.diagnostics {
            writeln!(err, "{d}")?;
        }
        for d in &self.warnings {
            writeln!(err, "warning: {d}")?;
        }
        for p in &self.plan_problems {
            writeln!(err, "{}: {} ({})", p.origin, p.message, p.resource)?;
        }
        Ok(())
    }

    /// The line that says how the command ended.
    fn print_outcome(
        &self,
        out: &mut impl Write,
        err: &mut impl Write,
        paint: &dyn Fn(&str, &str) -> String,
    ) -> std::io::Result<()> {
        let n = self.changes.len();
        let plural = if n == 1 { "" } else { "s" };
        match self.result {
            Outcome::Valid => match &self.hosts {
                Some(hosts) => writeln!(
                    out,
                    "{}",
                    paint(
                        "32",
                        &format!(
                            "{} valid: {}",
                            crate::words::count(hosts.len(), "host"),
                            hosts.join(", ")
                        )
                    )
                )?,
                None => writeln!(out, "{}", paint("32", "valid"))?,
            },
            Outcome::Invalid => {
                let problems = crate::words::count(self.diagnostics.len(), "problem");
                let of_hosts = self
                    .hosts
                    .as_ref()
                    .map(|h| format!(" in {}", crate::words::count(h.len(), "host")))
                    .unwrap_or_default();
                // Only a converge could have changed something.
                let nothing = if self.shape == Shape::Converge {
                    "; nothing was changed"
                } else {
                    ""
                };
                writeln!(err, "invalid: {problems}{of_hosts}{nothing}")?;
            }
            Outcome::InSync => writeln!(out, "{}", paint("32", "in sync: nothing to change"))?,
            Outcome::ChangesPending
                if self.shape == Shape::Converge
                    && self.mode == Some(crate::config::Mode::Audit) =>
            {
                let what = if self.dry_run {
                    format!("dry run: {n} change{plural} pending, nothing changed:")
                } else {
                    format!("audit mode: {n} resource{plural} drifted, nothing changed:")
                };
                writeln!(out, "{}", paint("33", &what))?;
            }
            Outcome::ChangesPending => writeln!(out, "{n} change{plural} pending:")?,
            Outcome::Changed => {
                let generation = self
                    .generation
                    .map(|g| format!(" (generation {g})"))
                    .unwrap_or_default();
                writeln!(out, "{n} change{plural} applied{generation}:")?;
            }
            // Held: the error (a pin, or no last good state) says why when
            // nothing was done; otherwise say what was done towards it.
            Outcome::Held => match (self.generation, self.changes.is_empty(), &self.error) {
                (Some(g), _, _) => writeln!(
                    out,
                    "{}",
                    paint(
                        "33",
                        &format!(
                            "{n} change{plural} applied towards the last good state (generation {g}):"
                        )
                    )
                )?,
                (None, false, _) => writeln!(
                    out,
                    "{}",
                    paint(
                        "33",
                        &format!("{n} change{plural} pending towards the last good state:")
                    )
                )?,
                (None, true, None) => writeln!(
                    out,
                    "{}",
                    paint("33", "held at the last good state: nothing to change")
                )?,
                (None, true, Some(_)) => {}
            },
            _ => {}
        }
        Ok(())
    }

    /// The changes (with their diffs when a plan shows them or a converge
    /// is asked to), the notes, the dnf transactions.
    fn print_changes(
        &self,
        out: &mut impl Write,
        paint: &dyn Fn(&str, &str) -> String,
    ) -> std::io::Result<()> {
        for c in &self.changes {
            print_change(out, c, paint)?;
            // A plan shows its diffs; a converge lists what was done and
            // shows them when asked (`--diff`, `-v`).
            if self.shape == Shape::Plan || self.show_diffs {
                print_diff(out, c, paint)?;
            }
        }
        for n in &self.notes {
            writeln!(out, "note: {n}")?;
        }
        if !self.dnf_transactions.is_empty() {
            let ids: Vec<String> = self.dnf_transactions.iter().map(u64::to_string).collect();
            writeln!(out, "dnf transaction: {}", ids.join(", "))?;
        }
        Ok(())
    }

    /// The error, with what it means for the host, and a restore's errors.
    fn print_error(&self, err: &mut impl Write) -> std::io::Result<()> {
        if let Some(e) = &self.error {
            let generation = self
                .generation
                .map(|g| format!(" (generation {g})"))
                .unwrap_or_default();
            let what = match self.result {
                Outcome::RolledBack => format!(
                    "converge failed{generation}; the host was restored to its state before this run"
                ),
                Outcome::RollbackFailed if self.shape == Shape::Converge => format!(
                    "converge failed{generation} AND restoring the host failed; the host needs attention"
                ),
                Outcome::RollbackFailed => {
                    "restoring the host failed; the host needs attention".to_owned()
                }
                Outcome::Held => "held".to_owned(),
                _ => "error".to_owned(),
            };
            // Exit 1 of a converge is an error before any change: say so
            // there, and only there (nothing else could have changed).
            let nothing = if self.shape == Shape::Converge
                && self.result == Outcome::Error
                && !e.contains("nothing was changed")
            {
                " (nothing was changed)"
            } else {
                ""
            };
            writeln!(err, "{what}: {e}{nothing}")?;
        }
        for e in &self.restore_errors {
            writeln!(err, "  restore: {e}")?;
        }
        Ok(())
    }

    /// `history N`: one generation in full.
    fn print_generation(
        &self,
        out: &mut impl Write,
        g: &GenerationDetail,
        paint: &dyn Fn(&str, &str) -> String,
    ) -> std::io::Result<()> {
        let r = &g.record;
        writeln!(out, "generation {}: {}", r.id, r.status)?;
        writeln!(out, "  desired state: {} ({})", r.key, r.source)?;
        writeln!(out, "  host file:     {}", r.host_file)?;
        writeln!(out, "  root:          {}", r.root)?;
        let took = g
            .duration_s
            .map(|s| format!(" ({s} s)"))
            .unwrap_or_default();
        writeln!(
            out,
            "  started:       {}, finished: {}{took}",
            r.started_at,
            r.finished_at.as_deref().unwrap_or("not finished")
        )?;
        if !r.started_by.is_empty() {
            writeln!(out, "  started by:    {}", r.started_by)?;
        }
        if r.healed > 0 {
            writeln!(
                out,
                "  healed drift:  {} (changed by hand or by something else since they were applied)",
                crate::words::count(r.healed, "resource")
            )?;
        }
        if let Some(why) = &r.reason {
            writeln!(out, "  why:           {why}")?;
        }
        if !r.dnf_transactions.is_empty() {
            writeln!(out, "  dnf transactions: {:?}", r.dnf_transactions)?;
        }
        if !r.rollback_dnf_transactions.is_empty() {
            writeln!(
                out,
                "  restored by dnf transactions: {:?}",
                r.rollback_dnf_transactions
            )?;
        }
        let n = g.planned.len();
        writeln!(out, "  {n} change{}:", if n == 1 { "" } else { "s" })?;
        for c in &g.planned {
            print_change(out, c, paint)?;
            print_diff(out, c, paint)?;
        }
        if r.checks.is_empty() {
            writeln!(out, "  checks: none ran")?;
        } else {
            writeln!(out, "  checks:")?;
            for c in &r.checks {
                match &c.error {
                    None => writeln!(out, "    {} {}", paint("32", "passed"), c.name)?,
                    Some(e) => writeln!(out, "    {} {}: {e}", paint("31", "failed"), c.name)?,
                }
            }
        }
        Ok(())
    }
}

/// `source status`.
fn source_status_text(out: &mut impl Write, st: &SourceStatus) -> std::io::Result<()> {
    let none = || "(none)".to_owned();
    writeln!(out, "url:      {}", st.url)?;
    writeln!(out, "branch:   {}", st.branch)?;
    writeln!(
        out,
        "fetched:  {}",
        st.fetched_head.clone().unwrap_or_else(none)
    )?;
    let at = st
        .applied_at
        .as_deref()
        .map(|a| format!(" (at {a})"))
        .unwrap_or_default();
    writeln!(
        out,
        "applied:  {}{at}",
        st.applied_commit.clone().unwrap_or_else(none)
    )?;
    writeln!(
        out,
        "pending:  {}",
        if st.pending {
            "yes: the fetched head is not applied yet"
        } else {
            "no"
        }
    )?;
    match &st.last_fetch {
        Some(f) => match &f.error {
            Some(e) => writeln!(out, "last fetch: FAILED at {}: {e}", f.at)?,
            None => writeln!(out, "last fetch: ok at {}", f.at)?,
        },
        None => writeln!(out, "last fetch: never")?,
    }
    Ok(())
}

/// `history`: one line (and its why) per generation.
fn history_text(out: &mut impl Write, h: &[Generation]) -> std::io::Result<()> {
    if h.is_empty() {
        writeln!(out, "no generations yet: no converge has changed this host")?;
    } else {
        writeln!(
            out,
            "{:>4}  {:<20}  {:<14}  {:>7}  {:<7}  source",
            "gen", "started", "result", "changes", "healed"
        )?;
        for g in h {
            let status = g.status.to_string();
            let healed = if g.healed > 0 {
                g.healed.to_string()
            } else {
                "-".to_owned()
            };
            writeln!(
                out,
                "{:>4}  {:<20}  {:<14}  {:>7}  {:<7}  {}",
                g.id, g.started_at, status, g.changes, healed, g.source
            )?;
            if !g.started_by.is_empty() {
                writeln!(out, "      by:  {}", g.started_by)?;
            }
            if let Some(r) = &g.reason {
                writeln!(out, "      why: {r}")?;
            }
        }
    }
    Ok(())
}

/// `status`: what needs attention first, then the marks and the runs.
fn status_text(
    out: &mut impl Write,
    st: &AgentStatus,
    paint: &dyn Fn(&str, &str) -> String,
) -> std::io::Result<()> {
    if let Some(e) = &st.config_error {
        writeln!(
            out,
            "{}",
            paint(
                "31",
                &format!(
                    "AGENT CONFIG INVALID: {e}; a running daemon keeps the config it loaded last (`driftless config check`)"
                )
            )
        )?;
    }
    if st.reload_pending {
        writeln!(
            out,
            "{}",
            paint(
                "33",
                "RELOAD PENDING: the agent config files changed since the daemon read them (`systemctl reload driftless`)"
            )
        )?;
    }
    if let Some(h) = &st.fleet_halt {
        writeln!(
            out,
            "{}",
            paint(
                "33",
                &format!(
                    "FLEET HALTED: {h} (no host applies a new commit until `driftless fleet resume`)"
                )
            )
        )?;
    }
    if let Some(p) = &st.paused {
        writeln!(
            out,
            "{}",
            paint(
                "33",
                &format!(
                    "PAUSED by {} since {}: {} (`driftless unpause`)",
                    p.by, p.at, p.reason
                )
            )
        )?;
    }
    status_reboot(out, st, paint)?;
    status_marks(out, st)?;
    status_last_run(out, st)?;
    status_daemon(out, st)
}

/// `status`: a reboot required, asked for, waiting or in progress, the
/// services that need a restart, and the last reboot seen through.
fn status_reboot(
    out: &mut impl Write,
    st: &AgentStatus,
    paint: &dyn Fn(&str, &str) -> String,
) -> std::io::Result<()> {
    let Some(r) = &st.reboot else {
        return Ok(());
    };
    if let Some(p) = &r.pending {
        writeln!(
            out,
            "{}",
            paint(
                "33",
                &format!(
                    "REBOOTING: asked of systemd at {} from kernel {}",
                    p.at, p.kernel
                )
            )
        )?;
    }
    if let Some(since) = &r.required_since {
        let mut line = format!(
            "REBOOT REQUIRED since {since}: {} (judged by {})",
            r.reasons.join("; "),
            r.method
        );
        if let Some(a) = &r.asked {
            line.push_str(&format!("; asked by {} at {}", a.by, a.at));
        }
        if let Some(w) = &r.waiting {
            line.push_str(&format!("; waiting: {w}"));
        }
        writeln!(out, "{}", paint("33", &line))?;
    } else if let Some(a) = &r.asked {
        writeln!(out, "reboot asked by {} at {}", a.by, a.at)?;
    }
    if !r.services.is_empty() {
        writeln!(
            out,
            "services that need a restart (they map replaced files): {}",
            r.services.join(", ")
        )?;
    }
    if let Some(b) = &r.rebooted {
        writeln!(
            out,
            "rebooted: {} (asked at {}), kernel {} -> {}, health checks passed",
            b.at, b.asked_at, b.old_kernel, b.new_kernel
        )?;
    }
    if let Some(s) = &r.slot {
        let line = format!("holds a reboot slot of wave {} since {}", s.wave, s.at);
        match &s.kept {
            Some(why) => writeln!(
                out,
                "{}",
                paint(
                    "31",
                    &format!("{line}, KEPT (its wave's reboots are halted): {why}")
                )
            )?,
            None => writeln!(out, "{line}")?,
        }
    }
    Ok(())
}

/// `status`: the last good state, quarantine and pin, what is applied
/// and pending, the last generation, the host and its source.
fn status_marks(out: &mut impl Write, st: &AgentStatus) -> std::io::Result<()> {
    let mark = |m: &Option<Mark>| match m {
        Some(m) => format!(
            "{} ({}) since {}{}",
            m.key,
            m.source,
            m.at,
            m.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        None => "none".to_owned(),
    };
    writeln!(out, "last good:   {}", mark(&st.last_good))?;
    writeln!(out, "quarantined: {}", mark(&st.quarantine))?;
    writeln!(out, "pinned:      {}", mark(&st.pinned))?;
    // After `driftless rollback` the host runs what was there
    // before the undone generations, not the applied commit.
    let undone = st
        .pinned
        .as_ref()
        .filter(|p| p.source == "driftless rollback");
    let applied = st
        .applied_commit
        .as_deref()
        .unwrap_or("none (no git commit applied)");
    let trial = st
        .pinned
        .as_ref()
        .filter(|p| p.source == crate::agent::policy::TRIAL_PIN);
    match (undone, trial) {
        (Some(p), _) => writeln!(
            out,
            "applied commit: {applied}, undone: the host runs the state {}",
            p.key
        )?,
        (None, Some(p)) => writeln!(
            out,
            "applied commit: {applied} (the configured branch); the host runs {} ({}): `driftless resume` returns to the branch",
            p.key,
            p.reason.as_deref().unwrap_or("a trial")
        )?,
        (None, None) => writeln!(out, "applied commit: {applied}")?,
    }
    if let (Some(head), Some(applied)) = (&st.fetched_head, &st.applied_commit)
        && head != applied
        && st.pinned.is_none()
    {
        writeln!(out, "pending:     {head} (fetched, not applied yet)")?;
    }
    if let Some(n) = st.interrupted {
        writeln!(
            out,
            "interrupted: {} in a row",
            crate::words::count(n as usize, "converge")
        )?;
    }
    match &st.last_generation {
        Some(g) => writeln!(
            out,
            "last generation: {} {} at {}{}",
            g.id,
            g.status,
            g.started_at,
            g.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        )?,
        None => writeln!(out, "last generation: none")?,
    }
    writeln!(
        out,
        "host:        {} (mode {}, driftless {})",
        st.host,
        match st.mode {
            crate::config::Mode::Enforce => "enforce",
            crate::config::Mode::Audit => "audit",
        },
        st.version
    )?;
    if let Some(src) = &st.source {
        writeln!(
            out,
            "source:      {} ({}), fetched {}",
            src.url,
            src.branch,
            st.fetched_head.as_deref().unwrap_or("nothing yet")
        )?;
    }
    if st.fetch_failures > 0 {
        writeln!(
            out,
            "fetch:       {} in a row",
            crate::words::count(st.fetch_failures as usize, "failure")
        )?;
    }
    Ok(())
}

/// `status`: the last run.
fn status_last_run(out: &mut impl Write, st: &AgentStatus) -> std::io::Result<()> {
    match st
        .last_run
        .as_ref()
        .or(st.daemon.as_ref().and_then(|d| d.last_run.as_ref()))
    {
        Some(l) => {
            let n = l.changes;
            let what = match (l.audit, n) {
                (_, 0) => String::new(),
                (true, _) => format!(", {n} change{} pending (audit)", plural_s(n)),
                (false, _) => format!(", {n} change{} applied", plural_s(n)),
            };
            let drift = if l.drifted > 0 {
                format!(", {} drifted", l.drifted)
            } else {
                String::new()
            };
            let generation = l
                .generation
                .map(|g| format!(", generation {g}"))
                .unwrap_or_default();
            writeln!(
                out,
                "last run:    {} at {} ({} ms{what}{drift}{generation})",
                l.outcome.as_str().replace('_', " "),
                l.at,
                l.duration_ms
            )?;
            if let Some(e) = &l.error {
                writeln!(out, "             {e}")?;
            }
        }
        None => writeln!(out, "last run:    never")?,
    }
    Ok(())
}

/// `status`: the daemon, or why it is not shown.
fn status_daemon(out: &mut impl Write, st: &AgentStatus) -> std::io::Result<()> {
    match &st.daemon {
        Some(d) => {
            writeln!(
                out,
                "daemon:      {} (pid {}): {}",
                d.state, d.pid, d.status_line
            )?;
            if let Some(n) = &d.next_run {
                writeln!(out, "next run:    {n}")?;
            }
            if let Some(n) = &d.next_fetch {
                writeln!(
                    out,
                    "next fetch:  {n} (backing off after failed fetches; `converge --now` fetches at once)"
                )?;
            }
            if let Some(e) = &d.metrics_error {
                writeln!(out, "metrics:     NOT WRITTEN: {e}")?;
            }
            if let Some(e) = &d.nudge_error {
                writeln!(
                    out,
                    "nudges:      NOT HEARD, the watch of the fleet's nudge key is {e} (the schedule goes on)"
                )?;
            }
        }
        None => match &st.daemon_error {
            Some(e) => writeln!(
                out,
                "daemon:      did not answer ({e}); shown: the state files"
            )?,
            None => writeln!(out, "daemon:      not running")?,
        },
    }
    Ok(())
}

/// One change as a list line (`+` created, `~` changed, `-` removed) and
/// its reasons.
fn print_change(
    out: &mut impl Write,
    c: &Change,
    paint: &dyn Fn(&str, &str) -> String,
) -> std::io::Result<()> {
    let marker = c.marker();
    let code = match marker {
        Marker::Created => "32",
        Marker::Changed => "33",
        Marker::Removed => "31",
    };
    writeln!(
        out,
        "  {} {} {}",
        paint(code, marker.sign()),
        c.resource,
        paint("2", &format!("({})", c.op.verb()))
    )?;
    for r in &c.reasons {
        writeln!(out, "      {r}")?;
    }
    Ok(())
}

/// A change's diff, when it has one (never for a sensitive file).
fn print_diff(
    out: &mut impl Write,
    c: &Change,
    paint: &dyn Fn(&str, &str) -> String,
) -> std::io::Result<()> {
    for line in c.diff.iter().flat_map(|d| d.lines()) {
        let code = match line.as_bytes().first() {
            Some(b'+') => "32",
            Some(b'-') => "31",
            Some(b'@') => "36",
            _ => "0",
        };
        writeln!(out, "      {}", paint(code, line))?;
    }
    Ok(())
}

/// "s" for a count other than one.
fn plural_s(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `facts`: every name a template can use, with its value, as it would
/// write it (`{{ facts.cpus }}`).
fn print_scope(out: &mut impl Write, scope: &TemplateScope) -> std::io::Result<()> {
    writeln!(out, "host = {:?}", scope.host)?;
    let facts = serde_json::to_value(&scope.facts).unwrap_or_default();
    if let Some(map) = facts.as_object() {
        for (k, v) in map {
            // A list of records (mounts) and the custom facts: one line
            // each, as a template would name it.
            match v {
                serde_json::Value::Array(items) if items.iter().any(|i| i.is_object()) => {
                    for (i, item) in items.iter().enumerate() {
                        writeln!(out, "facts.{k}[{i}] = {item}")?;
                    }
                }
                serde_json::Value::Object(custom) if k == "custom" => {
                    for (name, value) in custom {
                        writeln!(out, "facts.custom.{name} = {value}")?;
                    }
                }
                serde_json::Value::Object(packages) if k == "packages" => {
                    print_packages(out, packages, scope.vars.is_some())?;
                }
                _ => writeln!(out, "facts.{k} = {v}")?,
            }
        }
    }
    match &scope.vars {
        Some(vars) if vars.is_empty() => writeln!(out, "vars: none declared")?,
        Some(vars) => {
            for (k, v) in vars {
                writeln!(out, "vars.{k} = {v}")?;
            }
        }
        None => writeln!(
            out,
            "vars: unknown (no config repo read: configure [source] or pass --repo)"
        )?,
    }
    Ok(())
}

/// `facts.packages`: those looked up, each as a template names it, or how
/// they are read when none were.
fn print_packages(
    out: &mut impl Write,
    packages: &serde_json::Map<String, serde_json::Value>,
    repo_read: bool,
) -> std::io::Result<()> {
    if packages.is_empty() {
        let why = if repo_read {
            "none of the declared packages or those the templates read is installed"
        } else {
            "configure [source] or pass --repo to list the host's declared packages"
        };
        return writeln!(
            out,
            "facts.packages: read on demand, as facts.packages.NAME ({why})"
        );
    }
    for (name, value) in packages {
        // `facts.packages.dl-hello` would be a subtraction in a template.
        let plain = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if plain {
            writeln!(out, "facts.packages.{name} = {value}")?;
        } else {
            writeln!(out, "facts.packages[{name:?}] = {value}")?;
        }
    }
    Ok(())
}

/// One host of `fleet status`: what it runs, how its last run went, and
/// its inventory.
fn host_line(h: &crate::fleet::record::HostRecord, now: u64) -> String {
    let runs = h
        .applied
        .as_deref()
        .map_or("nothing".to_owned(), |c| c.chars().take(12).collect());
    let mut line = format!("{}: runs {runs}, last {}", h.host, h.outcome);
    if let Some(c) = &h.applying {
        let c: String = c.chars().take(12).collect();
        line.push_str(&format!("; APPLYING {c} now"));
    }
    if !h.os.is_empty() || !h.kernel.is_empty() {
        line.push_str(&format!("; {}, kernel {}", h.os, h.kernel));
    }
    line.push_str(&format!("; driftless {}", h.version));
    if h.drift.count > 0 {
        let more = if h.drift.count > h.drift.resources.len() {
            ", …"
        } else {
            ""
        };
        line.push_str(&format!(
            "; drift {} ({}{more})",
            h.drift.count,
            h.drift.resources.join(", ")
        ));
    }
    if let Some(p) = &h.paused {
        line.push_str(&format!("; PAUSED: {p}"));
    }
    if let Some(r) = &h.rebooting_since {
        line.push_str(&format!("; REBOOTING since {r}"));
    } else if let Some(r) = &h.reboot_required_since {
        line.push_str(&format!("; reboot required since {r}"));
    }
    if let Some(e) = &h.last_error {
        line.push_str(&format!("; error: {e}"));
    }
    let age = std::time::Duration::from_secs(now.saturating_sub(h.at));
    line.push_str(&format!(
        "; record written {} ago",
        humantime::format_duration(age)
    ));
    line
}

/// How `fleet wait` ended, for people.
fn wait_text(out: &mut dyn Write, w: &crate::app::FleetWait) -> std::io::Result<()> {
    let short: String = w.commit.chars().take(12).collect();
    let scope = w.wave.as_ref().map_or("every live host".to_owned(), |x| {
        format!("every host of wave {x}")
    });
    match w.state.as_str() {
        "landed" => writeln!(
            out,
            "{short} landed: {scope} runs it ({} hosts) after {}s",
            w.landed.len(),
            w.waited_s
        )?,
        "halted" => {
            let (host, why) = w.halted_by.clone().unwrap_or_default();
            writeln!(
                out,
                "the rollout of {short} is HALTED: {host} rolled it back: {why}"
            )?;
        }
        _ => {
            writeln!(
                out,
                "timed out after {}s: {} of {} hosts do not run {short}: {}",
                w.waited_s,
                w.missing.len(),
                w.missing.len() + w.landed.len(),
                if w.missing.is_empty() {
                    format!("no live host in scope ({scope})")
                } else {
                    crate::app::named_hosts(&w.missing)
                }
            )?;
        }
    }
    if let Some(h) = &w.fleet_halt {
        writeln!(out, "the fleet is halted: {h} (`driftless fleet resume`)")?;
    }
    Ok(())
}

/// `fleet status`: the waves whose reboots are halted, and the reboot
/// slots held (draining, rebooting, or kept by a host not back healthy).
fn reboots_text(out: &mut dyn Write, f: &crate::app::FleetStatus) -> std::io::Result<()> {
    for h in &f.reboot_halts {
        let by = if h.host.is_empty() {
            String::new()
        } else {
            format!(" by {}", h.host)
        };
        writeln!(
            out,
            "REBOOTS HALTED in wave {} (and the waves after it){by}: {} (`driftless fleet resume --reboots`)",
            h.wave, h.reason
        )?;
    }
    for s in &f.reboot_slots {
        let what = match (&s.kept, s.rebooting_at) {
            (Some(why), _) => format!("KEPT: {why}"),
            (None, Some(at)) => format!(
                "rebooting for {} (back within {})",
                humantime::format_duration(std::time::Duration::from_secs(
                    f.read_at.saturating_sub(at)
                )),
                humantime::format_duration(std::time::Duration::from_secs(s.back_within))
            ),
            (None, None) => "draining before its reboot".to_owned(),
        };
        writeln!(
            out,
            "reboot slot of wave {} held by {} since {}: {what}",
            s.wave, s.host, s.since
        )?;
    }
    Ok(())
}

/// `fleet status` for people.
fn fleet_text(out: &mut dyn Write, f: &crate::app::FleetStatus) -> std::io::Result<()> {
    let short = |c: &str| c.chars().take(12).collect::<String>();
    let commit = f
        .commit
        .as_deref()
        .map_or("(none fetched)".to_owned(), short);
    writeln!(out, "fleet {}: commit {commit}", f.prefix)?;
    if let Some(h) = &f.halt {
        let since = if h.at.is_empty() {
            String::new()
        } else {
            format!(" since {}", h.at)
        };
        writeln!(
            out,
            "HALTED{since}: {} (`driftless fleet resume`)",
            h.reason
        )?;
    }
    for key in &f.unreadable {
        writeln!(
            out,
            "UNREADABLE record {key}: new commits are held until its host rewrites it or it is deleted"
        )?;
    }
    reboots_text(out, f)?;
    for w in &f.waves {
        writeln!(
            out,
            "wave {}: {} ({} of {} live hosts on it)",
            w.name,
            w.state,
            w.on_commit.len(),
            w.live
        )?;
        for h in &w.hosts {
            writeln!(out, "  {}", host_line(h, f.read_at))?;
        }
        for (host, why) in &w.rolled_back {
            writeln!(out, "  rolled back on {host}: {why}")?;
        }
        for (host, why) in &w.waiting {
            writeln!(out, "  {host} waits: {why}")?;
        }
    }
    if !f.disappeared.is_empty() {
        writeln!(
            out,
            "disappeared (no live record): {}",
            f.disappeared.join(", ")
        )?;
    }
    Ok(())
}
