//! The `--json` contract of docs/json.md, as typed documents that refuse
//! unknown fields: every command's output is read into them, so a field
//! that appears, disappears or changes type without the docs breaks here.
//! (`dead_code`: the fields exist to be checked, not read.)

#![allow(dead_code)]

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::util::{Env, converge_args, write_repo};

/// The envelope, spelled out in each document (`deny_unknown_fields` does
/// not combine with `flatten`).
macro_rules! document {
    ($name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct $name {
            schema: u32,
            command: Option<String>,
            result: Outcome,
            exit_code: u8,
            duration_ms: u64,
            #[serde(default)]
            error: Option<String>,
            $($field: $ty,)*
        }
    };
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Valid,
    Invalid,
    InSync,
    ChangesPending,
    Changed,
    Done,
    Held,
    RolledBack,
    RollbackFailed,
    Error,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Diagnostic {
    file: String,
    line: Option<usize>,
    column: Option<usize>,
    message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceId {
    kind: Kind,
    key: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Repo,
    Package,
    Directory,
    Archive,
    File,
    SysctlFile,
    KernelModule,
    Firewalld,
    Dropin,
    Symlink,
    Line,
    Block,
    Ini,
    AuthorizedKey,
    Sysctl,
    Alternative,
    Mount,
    Command,
    Service,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    CreateDir,
    WriteFile,
    SetMeta,
    Symlink,
    RemoveFile,
    RemoveDir,
    Extract,
    RemoveTree,
    Set,
    Package,
    DaemonReload,
    Service,
    RunCommand,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    resource: ResourceId,
    action: Action,
    reasons: Vec<String>,
    creates: bool,
    #[serde(default)]
    diff: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    package_action: Option<String>,
    #[serde(default)]
    spec: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    installed: Option<Vec<String>>,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    verb: Option<String>,
    #[serde(default)]
    argv: Option<Vec<String>>,
    #[serde(default)]
    validate: Option<Vec<String>>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    format: Option<ArchiveFormat>,
    #[serde(default)]
    strip_components: Option<u32>,
    #[serde(default)]
    domain: Option<Domain>,
    #[serde(default)]
    facets: Option<Vec<FacetChange>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Domain {
    Sysctl,
    Alternative,
    Mount,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FacetChange {
    facet: String,
    from: Option<String>,
    to: Option<String>,
}

#[derive(Debug, Deserialize)]
enum ArchiveFormat {
    #[serde(rename = "tar.gz")]
    TarGz,
    #[serde(rename = "tar")]
    Tar,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Origin {
    file: String,
    line: usize,
    column: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanProblem {
    resource: ResourceId,
    origin: Origin,
    message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckRecord {
    name: String,
    passed: bool,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Generation {
    id: u64,
    key: String,
    source: String,
    host_file: String,
    root: String,
    started_at: String,
    #[serde(default)]
    finished_at: Option<String>,
    status: String,
    #[serde(default)]
    reason: Option<String>,
    changes: usize,
    dnf_transactions: Vec<u64>,
    #[serde(default)]
    rollback_dnf_transactions: Vec<u64>,
    #[serde(default)]
    checks: Vec<CheckRecord>,
    healed: usize,
    started_by: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerationDetail {
    id: u64,
    key: String,
    source: String,
    host_file: String,
    root: String,
    started_at: String,
    #[serde(default)]
    finished_at: Option<String>,
    status: String,
    #[serde(default)]
    reason: Option<String>,
    changes: usize,
    dnf_transactions: Vec<u64>,
    #[serde(default)]
    rollback_dnf_transactions: Vec<u64>,
    #[serde(default)]
    checks: Vec<CheckRecord>,
    healed: usize,
    started_by: String,
    #[serde(default)]
    duration_s: Option<u64>,
    planned: Vec<Change>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pause {
    reason: String,
    by: String,
    at: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mark {
    key: String,
    source: String,
    at: String,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LastRun {
    at: String,
    outcome: Outcome,
    duration_ms: u64,
    changes: usize,
    drifted: usize,
    key: Option<String>,
    error: Option<String>,
    generation: Option<u64>,
    audit: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceRef {
    url: String,
    branch: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DaemonView {
    pid: u32,
    version: String,
    state: String,
    status_line: String,
    next_run: Option<String>,
    interval_s: u64,
    last_run: Option<LastRun>,
    fetch_failures: u32,
    fetch_failing_since: Option<String>,
    fetch_error: Option<String>,
    next_fetch: Option<String>,
    converges: std::collections::BTreeMap<String, u64>,
    metrics_error: Option<String>,
    nudge_error: Option<String>,
    config_files: Vec<String>,
    config_fingerprint: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentStatus {
    host: String,
    source: Option<SourceRef>,
    fetched_head: Option<String>,
    mode: Mode,
    fetch_failures: u32,
    version: String,
    daemon: Option<DaemonView>,
    daemon_error: Option<String>,
    config_error: Option<String>,
    reload_pending: bool,
    applied_commit: Option<String>,
    last_good: Option<Mark>,
    quarantine: Option<Mark>,
    pinned: Option<Mark>,
    paused: Option<Pause>,
    interrupted: Option<u32>,
    last_generation: Option<Generation>,
    last_run: Option<LastRun>,
    /// With `[fleet]` only.
    #[serde(default)]
    fleet: Option<HostRecord>,
    #[serde(default)]
    fleet_halt: Option<String>,
    #[serde(default)]
    reboot: Option<RebootRecord>,
}

/// `status`'s `reboot` (docs/reboots.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RebootRecord {
    #[serde(default)]
    required_since: Option<String>,
    #[serde(default)]
    reasons: Vec<String>,
    #[serde(default)]
    method: String,
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    asked: Option<Asked>,
    #[serde(default)]
    cancelled: Option<Asked>,
    #[serde(default)]
    waiting: Option<String>,
    #[serde(default)]
    pending: Option<RebootPending>,
    #[serde(default)]
    rebooted: Option<Rebooted>,
    #[serde(default)]
    slot: Option<HeldSlot>,
}

/// The reboot slot of the fleet a host holds (`status.reboot.slot`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeldSlot {
    key: String,
    wave: String,
    at: String,
    #[serde(default)]
    kept: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Asked {
    by: String,
    at: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RebootPending {
    at: String,
    kernel: String,
    boot: String,
    reasons: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rebooted {
    at: String,
    asked_at: String,
    old_kernel: String,
    new_kernel: String,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Mode {
    Enforce,
    Audit,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FetchRecord {
    at: String,
    #[serde(default)]
    head: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceStatus {
    url: String,
    branch: String,
    fetched_head: Option<String>,
    applied_commit: Option<String>,
    applied_at: Option<String>,
    pending: bool,
    last_fetch: Option<FetchRecord>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Facts {
    hostname: String,
    fqdn: String,
    os_id: String,
    os_version_id: String,
    os_family: String,
    os_major: String,
    os_minor: String,
    arch: String,
    kernel: String,
    machine_id: String,
    cpus: u64,
    memory_mb: u64,
    systemd_version: Option<u64>,
    virtualization: String,
    selinux: String,
    interfaces: Vec<String>,
    default_ipv4: Option<DefaultRoute>,
    default_ipv6: Option<DefaultRoute>,
    mounts: Vec<Mount>,
    custom: serde_json::Map<String, Value>,
    packages: std::collections::BTreeMap<String, InstalledPackage>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackageBuild {
    name: String,
    epoch: String,
    version: String,
    release: String,
    arch: String,
    evr: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstalledPackage {
    name: String,
    epoch: String,
    version: String,
    release: String,
    arch: String,
    evr: String,
    builds: Vec<PackageBuild>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultRoute {
    interface: String,
    address: String,
    gateway: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mount {
    path: String,
    device: String,
    fstype: String,
    options: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateScope {
    host: String,
    facts: Facts,
    vars: Option<serde_json::Map<String, Value>>,
}

document!(Validate {
    source: Option<String>,
    host: Option<String>,
    host_file: Option<String>,
    roles: Vec<String>,
    hosts: Option<Vec<String>>,
    diagnostics: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
});

document!(Plan {
    source: Option<String>,
    host: Option<String>,
    host_file: Option<String>,
    roles: Vec<String>,
    root: Option<String>,
    mode: Mode,
    changes: Vec<Change>,
    notices: Vec<String>,
    diagnostics: Vec<Diagnostic>,
    plan_problems: Vec<PlanProblem>,
});

document!(Converge {
    source: Option<String>,
    host: Option<String>,
    host_file: Option<String>,
    roles: Vec<String>,
    root: Option<String>,
    mode: Mode,
    changes: Vec<Change>,
    notices: Vec<String>,
    diagnostics: Vec<Diagnostic>,
    plan_problems: Vec<PlanProblem>,
    generation: Option<u64>,
    dnf_transactions: Option<Vec<u64>>,
    restore_errors: Vec<String>,
    drifted: usize,
});

document!(Status { status: Option<AgentStatus> });

document!(History {
    history: Option<Vec<Generation>>,
    generation_detail: Option<GenerationDetail>,
});

document!(SourceStatusDoc { source_status: Option<SourceStatus> });

document!(FactsDoc {
    source: Option<String>,
    host: Option<String>,
    host_file: Option<String>,
    roles: Vec<String>,
    diagnostics: Vec<Diagnostic>,
    facts: Option<TemplateScope>,
});

document!(Action_ { notices: Vec<String> });

/// A host's record in etcd (`fleet status`; `status` under `fleet`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HostRecord {
    host: String,
    wave: String,
    roles: Vec<String>,
    applied: Option<String>,
    healthy_since: Option<u64>,
    outcome: String,
    at: u64,
    rolled_back: Vec<RolledBack>,
    waiting: Option<String>,
    version: String,
    os: String,
    kernel: String,
    paused: Option<String>,
    drift: Drift,
    last_error: Option<String>,
    /// Absent unless the host is applying a new commit right now.
    #[serde(default)]
    applying: Option<String>,
    #[serde(default)]
    reboot_required_since: Option<String>,
    #[serde(default)]
    rebooted_at: Option<String>,
    #[serde(default)]
    rebooting_since: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RolledBack {
    commit: String,
    reason: String,
    at: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Drift {
    count: usize,
    resources: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Halt {
    reason: String,
    at: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetStatus {
    prefix: String,
    commit: Option<String>,
    halt: Option<Halt>,
    unreadable: Vec<String>,
    waves: Vec<WaveStatus>,
    disappeared: Vec<String>,
    read_at: u64,
    reboot_slots: Vec<RebootSlot>,
    reboot_halts: Vec<RebootHalt>,
}

/// A reboot slot held (`fleet status`'s `reboot_slots`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RebootSlot {
    key: String,
    host: String,
    wave: String,
    since: String,
    rebooting_at: Option<u64>,
    back_within: u64,
    kept: Option<String>,
}

/// A wave whose reboots are halted (`fleet status`'s `reboot_halts`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RebootHalt {
    wave: String,
    host: String,
    reason: String,
    at: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaveStatus {
    name: String,
    live: usize,
    failed: bool,
    state: WaveState,
    hosts: Vec<HostRecord>,
    on_commit: Vec<String>,
    rolled_back: Vec<(String, String)>,
    waiting: Vec<(String, String)>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WaveState {
    Done,
    Progressing,
    Waiting,
    Halted,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetWait {
    prefix: String,
    commit: String,
    wave: Option<String>,
    state: WaitState,
    landed: Vec<String>,
    missing: Vec<(String, String)>,
    halted_by: Option<(String, String)>,
    fleet_halt: Option<String>,
    waited_s: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WaitState {
    Landed,
    Halted,
    Timeout,
}

document!(FleetStatusDoc {
    fleet: Option<FleetStatus>
});

document!(FleetWaitDoc {
    wait: Option<FleetWait>
});

document!(UsageError {});

/// Reads `stdout` as the document of its `command`, failing the test on
/// any field the contract does not know, a missing one, or a wrong type.
/// Also checks what holds for every document: schema 1 and an exit code
/// that agrees with the result.
pub(crate) fn check(stdout: &str, exit_code: i32) -> Value {
    let value: Value = serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{stdout}"));
    let typed = |r: Result<(), serde_json::Error>| {
        r.unwrap_or_else(|e| panic!("breaks docs/json.md: {e}\n{value:#}"));
    };
    let command = value["command"].as_str().map(str::to_owned);
    match command.as_deref() {
        Some("validate") => typed(read::<Validate>(&value)),
        Some("plan") => typed(read::<Plan>(&value)),
        Some("converge") => typed(read::<Converge>(&value)),
        Some("status") => typed(read::<Status>(&value)),
        Some("history") => typed(read::<History>(&value)),
        Some("source status") => typed(read::<SourceStatusDoc>(&value)),
        Some("facts") => typed(read::<FactsDoc>(&value)),
        Some("fleet status") => typed(read::<FleetStatusDoc>(&value)),
        Some("fleet wait") => {
            typed(read::<FleetWaitDoc>(&value));
            // The wait's own word and the result agree.
            let want = match value["wait"]["state"].as_str() {
                Some("landed") => "done",
                Some("halted") => "rolled_back",
                Some("timeout") => "held",
                _ => "error",
            };
            assert_eq!(value["result"], want, "{value}");
        }
        Some(
            "rollback" | "resume" | "retry" | "recover" | "pause" | "unpause" | "reboot"
            | "config check" | "fleet halt" | "fleet resume" | "fleet nudge",
        ) => {
            typed(read::<Action_>(&value));
        }
        None => typed(read::<UsageError>(&value)),
        Some(other) => panic!("a command docs/json.md does not list: {other}"),
    }
    assert_eq!(value["schema"], 1, "{value}");
    assert_eq!(
        value["exit_code"].as_i64(),
        Some(i64::from(exit_code)),
        "the document's exit_code is not the process's: {value}"
    );
    let expected = match value["result"].as_str().unwrap_or("") {
        "valid" | "in_sync" | "done" => 0,
        "invalid" | "error" => 1,
        "changes_pending" | "changed" => 2,
        "held" => 3,
        "rolled_back" => 4,
        "rollback_failed" => 5,
        other => panic!("unknown result {other}"),
    };
    assert_eq!(
        exit_code, expected,
        "result and exit code disagree: {value}"
    );
    value
}

/// Whether `v` reads as a `T`.
fn read<T: serde::de::DeserializeOwned>(v: &Value) -> Result<(), serde_json::Error> {
    serde_json::from_value::<T>(v.clone()).map(|_| ())
}

/// Runs `args` with `--json` and checks the document.
fn json(env: &Env, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let run = env.run(&all);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    check(&run.stdout, run.code)
}

#[test]
fn every_command_prints_the_documented_json() {
    let env = Env::new();
    let dir = env.path().join("repo");
    write_repo(
        &dir,
        &[
            (
                "hosts/h.toml",
                "roles = [\"base\"]\n[vars]\nwho = \"ops\"\n\n[[file]]\npath = \"/etc/motd\"\nsource = \"files/motd.j2\"\ntemplate = true\n\n[[symlink]]\npath = \"/etc/motd.link\"\ntarget = \"motd\"\n\n[[check]]\nname = \"true\"\ncommand = [\"/bin/true\"]\n",
            ),
            (
                "roles/base.toml",
                "[[directory]]\npath = \"/srv\"\nmode = \"0750\"\n\n[[sysctl]]\nname = \"kernel.msgmax\"\nvalue = 9000\n",
            ),
            ("hosts/default.toml", ""),
            ("files/motd.j2", "hi {{ vars.who }}\n"),
        ],
    );
    let d = dir.to_str().unwrap();
    let root = env.path().join("root");
    let r = root.to_str().unwrap();
    let on = |cmd: &[&'static str]| -> Vec<&str> {
        let mut v: Vec<&str> = cmd.to_vec();
        v.extend(["--repo", d, "--host", "h"]);
        v
    };

    // Before anything ran.
    json(&env, &["status"]);
    json(&env, &["history"]);
    json(&env, &["source", "status"]);
    json(&env, &["retry"]);
    json(&env, &["resume"]);
    // An operator's reboot: asked (the record shows in status), then
    // cancelled.
    let asked = json(&env, &["reboot", "--now"]);
    assert_eq!(asked["result"], "done", "{asked}");
    let s = json(&env, &["status"]);
    assert!(s["status"]["reboot"]["asked"]["by"].is_string(), "{s}");
    json(&env, &["reboot", "--cancel"]);
    let s = json(&env, &["status"]);
    assert!(s["status"]["reboot"]["asked"].is_null(), "{s}");
    json(&env, &["facts"]);

    let v = json(&env, &on(&["validate"]));
    assert_eq!(v["result"], "valid");
    let v = json(&env, &["validate", "--repo", d, "--all-hosts"]);
    assert_eq!(v["hosts"], serde_json::json!(["default", "h"]));
    json(&env, &on(&["facts"]));

    let mut plan = on(&["plan"]);
    plan.extend(["--root", r]);
    let p = json(&env, &plan);
    assert_eq!(p["result"], "changes_pending");

    let args = converge_args(Path::new(d), &root, "h");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut dry = args.clone();
    dry.push("--dry-run");
    let c = json(&env, &dry);
    assert_eq!(c["mode"], "audit");
    let c = json(&env, &args);
    assert_eq!(c["result"], "changed");
    assert_eq!(c["generation"], 1);
    let c = json(&env, &args);
    assert_eq!(c["result"], "in_sync");

    let s = json(&env, &["status"]);
    assert_eq!(s["status"]["last_run"]["outcome"], "in_sync");
    let h = json(&env, &["history"]);
    assert_eq!(h["history"][0]["checks"][0]["name"], "true");
    let g = json(&env, &["history", "1"]);
    assert_eq!(g["generation_detail"]["id"], 1);
    json(&env, &["history", "9"]);
    json(&env, &["recover", "--root", r]);
    json(&env, &["rollback", "--root", r]);
    // Pinned: plan says converge would hold, with the same exit code.
    let held = json(&env, &plan);
    assert_eq!(held["result"], "held", "{held}");
    let held = json(&env, &args);
    assert_eq!(held["result"], "held", "{held}");
    json(&env, &["resume"]);
    assert_eq!(json(&env, &args)["result"], "changed");

    // Audit mode: drift found, nothing changed, and the document says so.
    std::fs::write(root.join("etc/motd"), "edited\n").unwrap();
    env.set_config("mode = \"audit\"\n");
    let audit = json(&env, &args);
    assert_eq!(audit["result"], "changes_pending", "{audit}");
    assert_eq!(audit["mode"], "audit");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/motd")).unwrap(),
        "edited\n"
    );
    env.set_config("");

    // Invalid, and a plan that cannot be made.
    write_repo(&dir, &[("files/motd.j2", "hi {{ vars.whom }}\n")]);
    let bad = json(&env, &on(&["validate"]));
    assert_eq!(bad["diagnostics"][0]["line"], 1);
    json(&env, &args);
    write_repo(
        &dir,
        &[
            ("files/motd.j2", "hi\n"),
            (
                "hosts/h.toml",
                "[[file]]\npath = \"/etc/motd\"\ncontent = \"x\"\nowner = \"no-such-user-here\"\n",
            ),
        ],
    );
    let problem = json(&env, &plan);
    assert_eq!(problem["result"], "error", "{problem}");
    assert!(
        problem["plan_problems"][0]["origin"]["column"].is_u64(),
        "{problem}"
    );

    // A usage error, still one document.
    let usage = env.run(&["plan", "--no-such-option", "--json"]);
    let u = check(&usage.stdout, usage.code);
    assert!(u["command"].is_null());
}
