//! `[[command]]` against temporary roots: each guard, `refresh_on`, what
//! `plan` says, and a failing command rolling the rest back. The commands
//! run on this machine and write only under `$DRIFTLESS_ROOT` and into a
//! log of their runs.

use std::path::PathBuf;

use crate::util::{Env, converge_args, write_repo};

struct Host {
    env: Env,
    repo: PathBuf,
    root: PathBuf,
    log: PathBuf,
}

impl Host {
    fn new() -> Self {
        let env = Env::new();
        let repo = env.path().join("repo");
        let root = env.path().join("root");
        let log = env.path().join("runs.log");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        Self {
            env,
            repo,
            root,
            log,
        }
    }

    /// Declares `body` for host h, where `{record}` is a command that logs
    /// its run as `NAME`.
    fn declare(&self, body: &str) {
        write_repo(
            &self.repo,
            &[(
                "hosts/h.toml",
                &body.replace("{log}", &self.log.display().to_string()),
            )],
        );
    }

    fn converge(&self) -> crate::util::Run {
        self.env.run(&converge_args(&self.repo, &self.root, "h"))
    }

    fn plan_json(&self) -> serde_json::Value {
        let run = self.env.run(&[
            "plan",
            "--json",
            "--repo",
            self.repo.to_str().expect("utf-8"),
            "--root",
            self.root.to_str().expect("utf-8"),
            "--host",
            "h",
        ]);
        serde_json::from_str(run.stdout.trim()).expect("plan JSON")
    }

    /// The names logged, one per run.
    fn runs(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// A command that logs `name` and (optionally) touches a path in the root.
fn record(name: &str, touch: Option<&str>) -> String {
    let touch = touch.map_or(String::new(), |p| {
        format!(" && touch \"$DRIFTLESS_ROOT{p}\"")
    });
    format!("command = '''echo {name} >> {{log}}{touch}'''\nshell = true\n")
}

#[test]
fn creates_runs_until_the_path_exists() {
    let h = Host::new();
    h.declare(&format!(
        "[[command]]\nname = 'init'\n{}creates = '/var/lib/app/.initialised'\n[[directory]]\npath = '/var/lib/app'\n",
        record("init", Some("/var/lib/app/.initialised"))
    ));
    let plan = h.plan_json();
    let run = plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .find(|c| c["action"] == "run_command")
        .expect("the command is planned")
        .clone();
    assert_eq!(run["resource"]["key"], "init");
    assert_eq!(
        run["reasons"][0],
        "/var/lib/app/.initialised does not exist"
    );
    assert!(plan["notices"].to_string().contains("not undone"), "{plan}");
    assert!(h.runs().is_empty(), "plan ran the command");
    h.converge().expect_code(2);
    assert_eq!(h.runs(), ["init"]);
    h.converge().expect_code(0);
    assert_eq!(h.runs(), ["init"], "ran again though the path exists");
}

#[test]
fn unless_and_onlyif_decide_by_exit_code() {
    let h = Host::new();
    h.declare(&format!(
        "[[command]]\nname = 'enrol'\n{}unless = ['/bin/sh', '-c', 'test -e \"$DRIFTLESS_ROOT/etc/enrolled\"']\n\
         [[command]]\nname = 'rebuild'\n{}onlyif = ['/bin/sh', '-c', 'test -e \"$DRIFTLESS_ROOT/etc/stale\"']\n",
        record("enrol", Some("/etc/enrolled")),
        record("rebuild", None)
    ));
    // Not enrolled, not stale: only enrol runs.
    h.converge().expect_code(2);
    assert_eq!(h.runs(), ["enrol"]);
    h.converge().expect_code(0);
    assert_eq!(h.runs(), ["enrol"]);
    // Stale: rebuild runs, each converge while it stays stale.
    std::fs::write(h.root.join("etc/stale"), "").expect("touch");
    h.converge().expect_code(2);
    h.converge().expect_code(2);
    assert_eq!(h.runs(), ["enrol", "rebuild", "rebuild"]);
}

#[test]
fn refresh_on_runs_once_after_its_file_changes_and_not_at_all_otherwise() {
    let h = Host::new();
    let declare = |value: &str| {
        h.declare(&format!(
            "[[file]]\npath = '/etc/sysctl.d/90-app.conf'\ncontent = 'vm.swappiness = {value}\\n'\n\
             [[file]]\npath = '/etc/unrelated'\ncontent = '{value}'\n\
             [[command]]\nname = 'sysctl'\n{}refresh_on = ['file:/etc/sysctl.d/90-app.conf']\n",
            record("sysctl", None)
        ));
    };
    declare("10");
    h.converge().expect_code(2);
    assert_eq!(h.runs(), ["sysctl"]);
    h.converge().expect_code(0);
    assert_eq!(h.runs(), ["sysctl"], "ran though nothing changed");
    // Only the unrelated file drifts: healed, no refresh.
    std::fs::write(h.root.join("etc/unrelated"), "drift").expect("drift");
    h.converge().expect_code(2);
    assert_eq!(h.runs(), ["sysctl"]);
    declare("20");
    let plan = h.plan_json();
    let runs: Vec<_> = plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["action"] == "run_command")
        .collect();
    assert_eq!(runs.len(), 1, "{plan}");
    assert_eq!(
        runs[0]["reasons"][0],
        "file:/etc/sysctl.d/90-app.conf changed"
    );
    h.converge().expect_code(2);
    assert_eq!(h.runs(), ["sysctl", "sysctl"]);
}

#[test]
fn a_failing_command_rolls_back_the_rest_and_is_said_not_undone() {
    let h = Host::new();
    std::fs::write(h.root.join("etc/app.conf"), "old\n").expect("write");
    h.declare(
        "[[file]]\npath = '/etc/app.conf'\ncontent = \"new\\n\"\n\
         [[command]]\nname = 'migrate'\ncommand = '''echo migrate >> {log}; echo schema too new >&2; exit 3'''\nshell = true\nrefresh_on = ['file:/etc/app.conf']\n",
    );
    let run = h.converge();
    run.expect_code(4);
    assert!(
        run.stderr.contains("migrate") && run.stderr.contains("schema too new"),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(h.root.join("etc/app.conf")).expect("read"),
        "old\n",
        "the file written before the command was not restored"
    );
    // It ran (and what it did stays done).
    assert_eq!(h.runs(), ["migrate"]);
}

#[test]
fn a_guard_that_cannot_run_is_an_error_before_any_change() {
    let h = Host::new();
    h.declare(
        "[[file]]\npath = '/etc/app.conf'\ncontent = 'x'\n\
         [[command]]\nname = 'g'\ncommand = ['/bin/true']\nunless = ['/nonexistent/guard']\n",
    );
    let run = h.converge();
    run.expect_code(1);
    assert!(
        run.stderr.contains("`unless` guard of command:g"),
        "{}",
        run.stderr
    );
    assert!(!h.root.join("etc/app.conf").exists());
}

/// Regression (issue 23): guards were evaluated while observing, before
/// anything was written. Puppet's pattern `refresh_on` + `unless` reading
/// the managed file (apply a value when its file changed, unless it is
/// already live) then never applied a new value: the guard compared the
/// live value with the old file, said "done", and the host reported in
/// sync for ever. Guards run when the command is about to: the new value
/// is applied in the converge that writes it.
#[test]
fn a_guard_reading_a_file_this_converge_writes_sees_the_new_file() {
    let h = Host::new();
    let declare = |value: &str| {
        h.declare(&format!(
            "[[file]]\npath = '/etc/app.conf'\ncontent = \"limit = {value}\\n\"\n\
             [[command]]\nname = 'apply'\n\
             command = '''echo apply >> {{log}}; mkdir -p \"$DRIFTLESS_ROOT/run\"; cp \"$DRIFTLESS_ROOT/etc/app.conf\" \"$DRIFTLESS_ROOT/run/live\"'''\n\
             shell = true\n\
             unless = ['sh', '-c', 'cmp -s \"$DRIFTLESS_ROOT/etc/app.conf\" \"$DRIFTLESS_ROOT/run/live\"']\n\
             refresh_on = ['file:/etc/app.conf']\n"
        ));
    };
    let live = || std::fs::read_to_string(h.root.join("run/live")).unwrap_or_default();
    declare("1");
    h.converge().expect_code(2);
    assert_eq!(live(), "limit = 1\n");
    h.converge().expect_code(0);
    assert_eq!(h.runs(), ["apply"]);
    // A new value: written and applied in one converge, not one late or
    // never.
    declare("2");
    let plan = h.plan_json();
    assert!(
        plan["notices"]
            .to_string()
            .contains("guards of command:apply are checked again when each is about to run"),
        "{plan}"
    );
    h.converge().expect_code(2);
    assert_eq!(live(), "limit = 2\n");
    assert_eq!(h.runs(), ["apply", "apply"]);
    h.converge().expect_code(0);
    assert_eq!(h.runs(), ["apply", "apply"]);
    // Refreshed while the value is live already (the file changed back by
    // hand): the guard, run now, says there is nothing to do.
    std::fs::write(h.root.join("etc/app.conf"), "limit = 1\n").unwrap();
    std::fs::write(h.root.join("run/live"), "limit = 2\n").unwrap();
    h.converge().expect_code(2);
    assert_eq!(
        h.runs(),
        ["apply", "apply"],
        "ran though its guard said done"
    );
}

/// A guard's output tail is in the plan's reason.
#[test]
fn a_plan_shows_what_a_guard_printed() {
    let h = Host::new();
    h.declare(
        "[[command]]\nname = 'check'\ncommand = ['/bin/true']\n\
         unless = ['sh', '-c', 'echo net.ipv4.ip_forward = 1; echo want 0 >&2; exit 1']\n",
    );
    let plan = h.plan_json();
    let reason = plan["changes"][0]["reasons"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        reason.starts_with("`unless` failed (exit 1): ") && reason.contains("want 0"),
        "{plan}"
    );
}
