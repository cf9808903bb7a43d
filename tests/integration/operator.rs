//! The operator's experience: what an admin coming from Puppet or Ansible
//! sees — change markers, diffs where people look, the history of one
//! generation, a missing root refused, and messages that say what to do.

use std::path::Path;

use crate::util::{Env, converge_args, write_repo};

/// A repo for host `h` with the given host file.
fn repo(dir: &Path, host_file: &str) -> String {
    write_repo(dir, &[("hosts/h.toml", host_file)]);
    dir.to_str().expect("utf-8").to_owned()
}

const MOTD: &str = r#"
[[file]]
path = "/etc/motd"
content = "hello\nworld\n"

[[symlink]]
path = "/etc/motd.link"
target = "motd"
"#;

#[test]
fn created_changed_and_removed_have_their_own_markers() {
    let env = Env::new();
    let root = env.path().join("root");
    let r = repo(&env.path().join("repo"), MOTD);
    let first = env.run(&converge_args(Path::new(&r), &root, "h"));
    first.expect_code(2);
    assert!(
        first.stdout.contains("  + file:/etc/motd (write file)"),
        "a created file is not marked +:\n{}",
        first.stdout
    );
    assert!(
        first.stdout.contains("  + symlink:/etc/motd.link (link)"),
        "a created symlink is not marked +:\n{}",
        first.stdout
    );
    std::fs::write(root.join("etc/motd"), "hello\n").unwrap();
    let plan = env.run(&[
        "plan",
        "--repo",
        &r,
        "--host",
        "h",
        "--root",
        root.to_str().unwrap(),
    ]);
    plan.expect_code(2);
    assert!(plan.stdout.contains("  ~ file:/etc/motd (write file)"));
    // The diff says which side is which.
    assert!(
        plan.stdout.contains("--- /etc/motd (current)")
            && plan.stdout.contains("+++ /etc/motd (desired)")
            && plan.stdout.contains("+world"),
        "{}",
        plan.stdout
    );
    let (_, json) = json_of(&env.run(&[
        "plan",
        "--json",
        "--repo",
        &r,
        "--host",
        "h",
        "--root",
        root.to_str().unwrap(),
    ]));
    assert_eq!(json["changes"][0]["creates"], false);

    repo(
        &env.path().join("repo"),
        "[[file]]\npath = \"/etc/motd\"\nstate = \"absent\"\n",
    );
    let removed = env.run(&converge_args(Path::new(&r), &root, "h"));
    removed.expect_code(2);
    assert!(
        removed.stdout.contains("  - file:/etc/motd (remove)"),
        "{}",
        removed.stdout
    );
}

#[test]
fn converge_shows_its_diffs_with_diff_or_v_and_never_for_sensitive_files() {
    let env = Env::new();
    let root = env.path().join("root");
    let dir = env.path().join("repo");
    let host = |motd: &str, secret: &str| {
        format!(
            "[[file]]\npath = \"/etc/motd\"\ncontent = \"{motd}\"\n\n[[file]]\npath = \"/etc/secret\"\ncontent = \"{secret}\"\nsensitive = true\n"
        )
    };
    let r = repo(&dir, &host("one\\n", "pw-one\\n"));
    let mut args = converge_args(Path::new(&r), &root, "h");
    env.run(&args).expect_code(2);

    repo(&dir, &host("two\\n", "pw-two\\n"));
    let plain = env.run(&args);
    plain.expect_code(2);
    assert!(
        plain.stdout.contains("~ file:/etc/motd") && !plain.stdout.contains("+two"),
        "a plain converge lists what it did, without diffs:\n{}",
        plain.stdout
    );

    repo(&dir, &host("three\\n", "pw-three\\n"));
    args.push("--diff".into());
    let diffed = env.run(&args);
    diffed.expect_code(2);
    assert!(
        diffed.stdout.contains("-two") && diffed.stdout.contains("+three"),
        "--diff shows no diff:\n{}",
        diffed.stdout
    );
    assert!(
        !diffed.stdout.contains("pw-") && diffed.stdout.contains("content hidden"),
        "a sensitive file's content was shown:\n{}",
        diffed.stdout
    );

    repo(&dir, &host("four\\n", "pw-four\\n"));
    args.pop();
    args.push("-v".into());
    let verbose = env.run(&args);
    verbose.expect_code(2);
    assert!(
        verbose.stdout.contains("+four") && !verbose.stdout.contains("pw-"),
        "-v shows no diff:\n{}",
        verbose.stdout
    );
}

#[test]
fn history_says_when_there_is_nothing_and_shows_one_generation_in_full() {
    let env = Env::new();
    let empty = env.run(&["history"]);
    empty.expect_code(0);
    assert!(
        empty.stdout.contains("no generations yet"),
        "{}",
        empty.stdout
    );
    assert!(
        !env.state_dir().exists(),
        "history created the state directory"
    );

    let root = env.path().join("root");
    let r = repo(
        &env.path().join("repo"),
        "[[file]]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n\n[[check]]\nname = \"motd-there\"\ncommand = [\"/bin/true\"]\n",
    );
    env.run(&converge_args(Path::new(&r), &root, "h"))
        .expect_code(2);

    let one = env.run(&["history", "1"]);
    one.expect_code(0);
    for want in [
        "generation 1: applied",
        "hosts/h.toml",
        root.to_str().unwrap(),
        "+ file:/etc/motd (write file)",
        "does not exist",
        "+hi",
        "passed motd-there",
    ] {
        assert!(
            one.stdout.contains(want),
            "history 1 lacks {want:?}:\n{}",
            one.stdout
        );
    }
    let (_, json) = json_of(&env.run(&["history", "1", "--json"]));
    let g = &json["generation_detail"];
    assert_eq!(g["id"], 1);
    assert_eq!(g["status"], "applied");
    assert_eq!(g["checks"][0]["name"], "motd-there");
    assert_eq!(g["checks"][0]["passed"], true);
    let planned: Vec<&str> = g["planned"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["path"].as_str())
        .collect();
    assert_eq!(planned, ["/etc", "/etc/motd"]);
    assert!(g["duration_s"].is_u64(), "{g}");

    let missing = env.run(&["history", "7"]);
    missing.expect_code(1);
    assert!(
        missing.stderr.contains("no generation 7") && missing.stderr.contains("1 to 1"),
        "{}",
        missing.stderr
    );
}

#[test]
fn a_missing_root_is_refused_unless_asked_and_shown_absolute() {
    let env = Env::new();
    let r = repo(
        &env.path().join("repo"),
        "[[file]]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n",
    );
    // A relative root, from the env's directory: the typo case.
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--repo", &r, "--host", "h", "--root", "rooot"]);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_driftless"))
            .args(&all)
            .arg("--config")
            .arg(env.config())
            .current_dir(env.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let absolute = env.path().join("rooot");
    let absolute = absolute.to_str().unwrap();
    let (code, _, err) = run(&["converge", "--now"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("the root {absolute} does not exist"))
            && err.contains("--create-root"),
        "{err}"
    );
    assert!(!env.path().join("rooot").exists(), "the root was created");

    let (code, out, err) = run(&["plan"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        out.contains(&format!("root {absolute} (missing: planned as empty)")),
        "{out}"
    );

    let (code, out, err) = run(&["converge", "--now", "--create-root"]);
    assert_eq!(code, 2, "{err}");
    assert!(out.contains(&format!("root {absolute}")), "{out}");
    assert!(env.path().join("rooot/etc/motd").exists());
}

#[test]
fn status_always_says_when_driftless_last_looked_and_what_it_found() {
    let env = Env::new();
    let never = env.run(&["status"]);
    never.expect_code(0);
    assert!(
        never.stdout.contains("last run:    never"),
        "{}",
        never.stdout
    );

    let root = env.path().join("root");
    let r = repo(
        &env.path().join("repo"),
        "[[file]]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n",
    );
    let args = converge_args(Path::new(&r), &root, "h");
    env.run(&args).expect_code(2);
    let changed = env.run(&["status"]);
    assert!(
        changed.stdout.contains("last run:    changed at ")
            && changed.stdout.contains("2 changes applied, generation 1"),
        "{}",
        changed.stdout
    );

    // In sync: no generation, but the run is on record.
    env.run(&args).expect_code(0);
    let (_, json) = json_of(&env.run(&["status", "--json"]));
    let last = &json["status"]["last_run"];
    assert_eq!(last["outcome"], "in_sync", "{json}");
    assert_eq!(last["changes"], 0);
    assert!(last["generation"].is_null());
    assert!(
        last["at"].as_str().is_some_and(|a| a.ends_with('Z')),
        "{last}"
    );
    let in_sync = env.run(&["status"]);
    assert!(
        in_sync.stdout.contains("last run:    in sync at "),
        "{}",
        in_sync.stdout
    );

    // An audit finds drift and says so; a dry run leaves the record alone.
    std::fs::write(root.join("etc/motd"), "changed\n").unwrap();
    let mut dry = args.clone();
    dry.push("--dry-run".into());
    env.run(&dry).expect_code(2);
    let (_, json) = json_of(&env.run(&["status", "--json"]));
    assert_eq!(json["status"]["last_run"]["outcome"], "in_sync");
    env.set_config("mode = \"audit\"\n");
    env.run(&args);
    let audit = env.run(&["status"]);
    assert!(
        audit.stdout.contains("1 change pending (audit)"),
        "{}",
        audit.stdout
    );
}

#[test]
fn validate_all_hosts_says_what_it_validated_and_whom_a_problem_fails_for() {
    let env = Env::new();
    let dir = env.path().join("repo");
    let motd = "[[file]]\npath = \"/etc/motd\"\nsource = \"files/motd.j2\"\ntemplate = true\n";
    write_repo(
        &dir,
        &[
            ("hosts/web1.toml", &format!("[vars]\nwho = \"a\"\n{motd}")),
            ("hosts/db1.toml", "[[package]]\nname = \"postgresql\"\n"),
            ("hosts/default.toml", ""),
            ("files/motd.j2", "hi {{ vars.who }}\n"),
        ],
    );
    let d = dir.to_str().unwrap();
    let ok = env.run(&["validate", "--repo", d, "--all-hosts"]);
    ok.expect_code(0);
    assert!(
        ok.stdout.contains("3 hosts valid: db1, default, web1"),
        "{}",
        ok.stdout
    );
    let (_, json) = json_of(&env.run(&["validate", "--json", "--repo", d, "--all-hosts"]));
    assert_eq!(json["hosts"], serde_json::json!(["db1", "default", "web1"]));

    // A template two hosts use, undefined for one of them.
    write_repo(&dir, &[("hosts/db1.toml", motd), ("hosts/app1.toml", motd)]);
    let bad = env.run(&["validate", "--repo", d, "--all-hosts"]);
    bad.expect_code(1);
    assert!(
        bad.stderr.contains(
            "files/motd.j2:1:7: undefined variable 'vars.who' (for file:/etc/motd) [hosts: app1, db1]"
        ),
        "{}",
        bad.stderr
    );
    assert!(
        bad.stderr.contains("invalid: 1 problem in 4 hosts\n"),
        "validate changes nothing and must not say it did not: {}",
        bad.stderr
    );
}

/// Agent config errors read like config-repo errors (`config check`, and
/// any command that needs the config); `status` still answers, exit 0,
/// with the error shown (issue 20, 8).
#[test]
fn agent_config_errors_read_like_config_repo_errors() {
    let env = Env::new();
    env.set_raw_config("state_dir = \"/tmp/x\"\nmode = \"enforc\"\n");
    let file = env.config();
    let want = format!(
        "{}:2:8: unknown value `enforc` (did you mean `enforce`?); allowed values: enforce, audit",
        file.display()
    );
    let run = env.run(&["config", "check"]);
    run.expect_code(1);
    assert!(run.stderr.contains(&want), "{}", run.stderr);
    let run = env.run(&["history"]);
    run.expect_code(1);
    assert!(run.stderr.contains(&want), "{}", run.stderr);
    let run = env.run(&["status"]);
    run.expect_code(0);
    assert!(run.stdout.contains(&want), "{}", run.stdout);
    env.set_raw_config("[source]\nurl = \"https://127.0.0.1/r.git\"\nbrnch = \"main\"\n");
    let run = env.run(&["config", "check"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains(&format!(
            "{}:3:1: unknown key `brnch` (did you mean `branch`?)",
            file.display()
        )),
        "{}",
        run.stderr
    );
    // A value that parses but does not validate is placed too.
    env.set_raw_config("[schedule]\ninterval = \"0s\"\n");
    let run = env.run(&["config", "check"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains(&format!(
            "{}:2:1: [schedule] interval must be more than 0s",
            file.display()
        )),
        "{}",
        run.stderr
    );
    env.set_raw_config("");
    env.run(&["config", "check"]).expect_code(0);
}

#[test]
fn rollback_of_the_wrong_root_names_the_root_the_generations_belong_to() {
    let env = Env::new();
    let root = env.path().join("demo");
    let r = repo(
        &env.path().join("repo"),
        "[[file]]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n",
    );
    env.run(&converge_args(Path::new(&r), &root, "h"))
        .expect_code(2);
    // Another root than the demo's (the host's `/` is what an admin would
    // forget to change; a scratch directory stands in for it here).
    let other = env.path().join("elsewhere");
    std::fs::create_dir(&other).unwrap();
    let run = env.run(&["rollback", "--root", other.to_str().unwrap()]);
    run.expect_code(1);
    assert!(
        run.stderr.contains(&format!(
            "the applied generations belong to root {}: run `driftless rollback --root {}`",
            root.display(),
            root.display()
        )),
        "{}",
        run.stderr
    );
    assert!(root.join("etc/motd").exists(), "the demo was rolled back");
}

#[test]
fn facts_shows_what_a_template_sees() {
    let env = Env::new();
    let dir = env.path().join("repo");
    write_repo(
        &dir,
        &[
            ("hosts/h.toml", "roles = [\"base\"]\n[vars]\nport = 8080\n"),
            (
                "roles/base.toml",
                "[vars]\nport = 80\nadmin = \"ops@example.com\"\n",
            ),
        ],
    );
    let d = dir.to_str().unwrap();
    let text = env.run(&["facts", "--repo", d, "--host", "h"]);
    text.expect_code(0);
    for want in [
        "host = \"h\"",
        "facts.cpus = ",
        "facts.arch = ",
        // The host file overrides its role.
        "vars.port = 8080",
        "vars.admin = \"ops@example.com\"",
    ] {
        assert!(text.stdout.contains(want), "no {want:?}:\n{}", text.stdout);
    }
    let (code, json) = json_of(&env.run(&["facts", "--json", "--repo", d, "--host", "h"]));
    assert_eq!(code, 0);
    let scope = &json["facts"];
    assert_eq!(scope["host"], "h");
    assert_eq!(scope["vars"]["port"], 8080);
    assert!(
        scope["facts"]["cpus"].as_u64().is_some_and(|n| n >= 1),
        "{scope}"
    );
    assert_eq!(scope["facts"]["arch"], std::env::consts::ARCH, "{scope}");

    // Without a config repo: the facts, and no vars.
    let bare = env.run(&["facts"]);
    bare.expect_code(0);
    assert!(bare.stdout.contains("vars: unknown"), "{}", bare.stdout);
}

#[test]
fn audit_mode_says_it_changed_nothing_and_plan_says_a_pinned_host_is_held() {
    let env = Env::new();
    let root = env.path().join("root");
    let r = repo(
        &env.path().join("repo"),
        "[[file]]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n\n[[file]]\npath = \"/etc/issue\"\ncontent = \"x\\n\"\n",
    );
    let args = converge_args(Path::new(&r), &root, "h");
    env.set_config("mode = \"audit\"\n");
    let audit = env.run(&args);
    audit.expect_code(2);
    assert!(
        audit
            .stdout
            .contains("audit mode: 3 resources drifted, nothing changed:"),
        "{}",
        audit.stdout
    );
    assert!(!root.join("etc").exists(), "audit mode changed the host");

    env.set_config("");
    env.run(&args).expect_code(2);
    env.run(&["rollback", "--root", root.to_str().unwrap()])
        .expect_code(0);
    let plan = env.run(&[
        "plan",
        "--repo",
        &r,
        "--host",
        "h",
        "--root",
        root.to_str().unwrap(),
    ]);
    plan.expect_code(3);
    assert!(
        plan.stderr.contains("pinned") && plan.stderr.contains("`converge` would apply nothing"),
        "{}",
        plan.stderr
    );
    env.run(&args).expect_code(3);
}

#[test]
fn read_only_commands_create_nothing_and_tell_a_user_to_run_as_root() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let root = env.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let r = repo(
        &env.path().join("repo"),
        "[[file]]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n",
    );
    let rs = root.to_str().unwrap();
    for args in [
        vec!["status"],
        vec!["history"],
        vec!["source", "status"],
        vec!["validate", "--repo", &r, "--host", "h"],
        vec!["plan", "--repo", &r, "--host", "h", "--root", rs],
        vec!["facts", "--repo", &r, "--host", "h"],
    ] {
        let run = env.run(&args);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        assert!(
            !env.state_dir().exists(),
            "`{}` created the state directory",
            args.join(" ")
        );
    }

    // A state directory that exists (root's, 0700), read by another user.
    env.run(&converge_args(Path::new(&r), &root, "h"))
        .expect_code(2);
    for p in [env.path(), &env.config()] {
        let mode = if p.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    for args in [["status"], ["history"]] {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_driftless"))
            .args(args)
            .arg("--config")
            .arg(env.config())
            .env("NO_COLOR", "1")
            .output()
            .expect("setpriv (util-linux)");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("permission denied") && err.contains("run as root"),
            "`{}` as a user: {err}",
            args[0]
        );
    }
}

#[test]
fn nothing_was_changed_is_said_only_where_something_could_have_changed() {
    let env = Env::new();
    let root = env.path().join("root");
    let r = repo(
        &env.path().join("repo"),
        "[[file]]\npath = \"/etc/motd\"\ncontent = \"x\"\nowner = \"no-such-user-here\"\n",
    );
    let rs = root.to_str().unwrap();
    let plan = env.run(&["plan", "--repo", &r, "--host", "h", "--root", rs]);
    plan.expect_code(1);
    assert!(
        plan.stderr
            .contains("hosts/h.toml:1:1: owner `no-such-user-here` does not exist")
            && plan.stderr.contains("error: cannot plan: 1 problem\n"),
        "{}",
        plan.stderr
    );
    let converge = env.run(&converge_args(Path::new(&r), &root, "h"));
    converge.expect_code(1);
    assert!(
        converge
            .stderr
            .contains("error: cannot plan: 1 problem (nothing was changed)"),
        "{}",
        converge.stderr
    );
}

/// Runs `driftless ARGS` on a terminal (`script` gives it a pty), with or
/// without `NO_COLOR`, and returns what the terminal showed.
fn on_a_terminal(env: &Env, args: &[&str], no_color: bool) -> String {
    let mut line = format!(
        "{} --config {}",
        env!("CARGO_BIN_EXE_driftless"),
        env.config().display()
    );
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .env_remove("NO_COLOR");
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    let out = cmd.output().expect("script(1) from util-linux");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn no_color_is_honoured_on_a_terminal_too() {
    let env = Env::new();
    let r = repo(
        &env.path().join("repo"),
        "[[file]]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n",
    );
    let root = env.path().join("root");
    let args = [
        "plan",
        "--repo",
        &r,
        "--host",
        "h",
        "--root",
        root.to_str().unwrap(),
    ];
    let colored = on_a_terminal(&env, &args, false);
    assert!(
        colored.contains("\x1b[32m+\x1b[0m file:/etc/motd"),
        "a terminal gets colours:\n{colored:?}"
    );
    let plain = on_a_terminal(&env, &args, true);
    assert!(plain.contains("+ file:/etc/motd"), "{plain:?}");
    assert!(
        !plain.contains('\x1b'),
        "NO_COLOR still coloured: {plain:?}"
    );
}

/// The exit code and the parsed `--json` document of a run.
fn json_of(run: &crate::util::Run) -> (i32, serde_json::Value) {
    let value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", run.stdout, run.stderr));
    (run.code, value)
}

/// `driftless pause --reason` freezes a host as `puppet agent --disable`
/// does: every converge is refused (exit 3) with the reason, who paused
/// and since when, until `unpause`; `--force` overrides and says so; a
/// quarantine ends when the fix is applied and `retry` says what it does.
#[test]
fn a_paused_host_refuses_every_converge_until_unpaused() {
    let env = Env::new();
    let root = env.path().join("root");
    let r = repo(&env.path().join("repo"), MOTD);
    let converge = converge_args(Path::new(&r), &root, "h");
    env.run(&converge).expect_code(2);

    let paused = env.run(&["pause", "--reason", "INC-42: database migration"]);
    paused.expect_code(0);
    assert!(paused.stdout.contains("paused"), "{}", paused.stdout);
    std::fs::write(root.join("etc/motd"), "edited by hand\n").unwrap();
    let refused = env.run(&converge);
    refused.expect_code(3);
    let said = format!("{}{}", refused.stdout, refused.stderr);
    assert!(
        said.contains("paused by") && said.contains("INC-42: database migration"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/motd")).unwrap(),
        "edited by hand\n",
        "a paused host was changed"
    );
    let status = env.run(&["status", "--json"]);
    status.expect_code(0);
    let doc = crate::json_schema::check(&status.stdout, 0);
    assert_eq!(
        doc["status"]["paused"]["reason"], "INC-42: database migration",
        "{doc}"
    );
    assert!(
        doc["status"]["paused"]["by"]
            .as_str()
            .is_some_and(|b| !b.is_empty())
    );
    let text = env.run(&["status"]);
    assert!(text.stdout.contains("PAUSED by"), "{}", text.stdout);
    // A plan still shows what a converge would do, and says it would hold.
    let mut plan = converge.clone();
    plan[0] = "plan".into();
    plan.retain(|a| a != "--now" && a != "--create-root");
    env.run(&plan).expect_code(3);

    // --force: converges, and says it did so against the pause.
    let mut forced = converge.clone();
    forced.push("--force".into());
    let run = env.run(&forced);
    run.expect_code(2);
    assert!(
        run.stdout
            .contains("--force: converged although the host is paused"),
        "{}",
        run.stdout
    );
    // Still paused for everyone else.
    env.run(&converge).expect_code(3);

    let unpaused = env.run(&["unpause", "--json"]);
    unpaused.expect_code(0);
    crate::json_schema::check(&unpaused.stdout, 0);
    std::fs::write(root.join("etc/motd"), "edited by hand\n").unwrap();
    env.run(&converge).expect_code(2);
    env.run(&converge).expect_code(0);
    assert!(env.run(&["unpause"]).stdout.contains("was not paused"));
    // Pausing needs a reason.
    let bare = env.run(&["pause", "--reason", " "]);
    bare.expect_code(1);
}

/// Regression: a bad commit was rolled back and quarantined, the fix
/// pushed and applied, and `status` kept saying `quarantined: <bad>`
/// (and the metric stayed 1) until someone ran `retry`, whose message
/// then promised a retry of a commit nobody would apply.
#[test]
fn a_quarantine_ends_when_the_fix_is_applied_and_retry_says_what_it_does() {
    let env = Env::new();
    let root = env.path().join("root");
    let dir = env.path().join("repo");
    let r = repo(&dir, MOTD);
    let converge = converge_args(Path::new(&r), &root, "h");
    env.run(&converge).expect_code(2);
    repo(
        &dir,
        &format!("{MOTD}[[check]]\nname = 'broken'\ncommand = ['false']\nretries = 0\n")
            .replace("world", "v2"),
    );
    env.run(&converge).expect_code(4);
    let st = crate::json_schema::check(&env.run(&["status", "--json"]).stdout, 0);
    assert!(st["status"]["quarantine"].is_object(), "{st}");
    // The fix.
    repo(&dir, &MOTD.replace("world", "v3"));
    env.run(&converge).expect_code(2);
    let st = crate::json_schema::check(&env.run(&["status", "--json"]).stdout, 0);
    assert!(st["status"]["quarantine"].is_null(), "{st}");
    let retry = env.run(&["retry"]);
    retry.expect_code(0);
    assert!(
        retry.stdout.contains("nothing is quarantined"),
        "{}",
        retry.stdout
    );
}

/// The man pages carry what an admin looks for (FILES, EXIT STATUS,
/// EXAMPLES, SEE ALSO), agent.toml(5) documents the agent config, and the
/// shell completions offer no hidden command.
#[test]
fn man_pages_have_their_sections_and_completions_no_hidden_command() {
    let env = Env::new();
    let man = env.path().join("man");
    let completions = env.path().join("completions");
    env.run(&[
        "assets",
        "--man",
        man.to_str().unwrap(),
        "--completions",
        completions.to_str().unwrap(),
    ])
    .expect_code(0);
    let mut pages = 0;
    for e in std::fs::read_dir(&man).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        if p.extension().is_some_and(|x| x == "1") {
            pages += 1;
            for section in [".SH EXIT STATUS", ".SH FILES", ".SH SEE ALSO"] {
                assert!(text.contains(section), "{} has no {section}", p.display());
            }
        }
    }
    assert!(pages > 20, "only {pages} pages");
    for page in [
        "driftless.1",
        "driftless-converge.1",
        "driftless-pause.1",
        "driftless-config-check.1",
    ] {
        let text = std::fs::read_to_string(man.join(page)).unwrap();
        assert!(text.contains(".SH EXAMPLES"), "{page} has no EXAMPLES");
    }
    let agent = std::fs::read_to_string(man.join("agent.toml.5")).unwrap();
    for key in [
        "[source]",
        "[schedule]",
        "[fleet]",
        "nudge_splay",
        "[[hook]]",
        "backoff_max",
        "identity",
        "facts_dir",
        "[download]",
        "max_size",
    ] {
        assert!(agent.contains(key), "agent.toml(5) does not document {key}");
    }
    assert!(!man.join("driftless-assets.1").exists());
    let bash = std::fs::read_to_string(completions.join("driftless.bash")).unwrap();
    assert!(
        !bash.contains("assets"),
        "bash completion offers the hidden `assets`"
    );
    assert!(bash.contains("pause") && bash.contains("converge"));
}

/// Healed drift is visible: the drift counts the resources changed by hand,
/// not the command their healing refreshes; `history` marks the generation
/// that healed it and says who started each run (issue 20, 11).
#[test]
fn history_marks_healed_drift_and_who_started_each_run() {
    let env = Env::new();
    let root = env.path().join("root");
    let marker = env.path().join("refreshed");
    let r = repo(
        &env.path().join("repo"),
        &format!(
            "{MOTD}[[command]]\nname = 'reload-motd'\ncommand = ['/bin/sh', '-c', 'echo x >> {}']\nrefresh_on = ['file:/etc/motd']\n",
            marker.display()
        ),
    );
    let converge = converge_args(Path::new(&r), &root, "h");
    env.run(&converge).expect_code(2);
    std::fs::write(root.join("etc/motd"), "edited by hand\n").unwrap();
    let mut json = converge.clone();
    json.push("--json".into());
    let healed = env.run(&json);
    healed.expect_code(2);
    let doc = crate::json_schema::check(&healed.stdout, 2);
    assert_eq!(doc["changes"].as_array().unwrap().len(), 2, "{doc}");
    let history = crate::json_schema::check(&env.run(&["history", "--json"]).stdout, 0);
    let gens = history["history"].as_array().unwrap();
    assert_eq!(gens[0]["healed"], 0, "a new desired state is no drift");
    assert_eq!(
        gens[1]["healed"], 1,
        "the file, not the command it refreshed: {history}"
    );
    assert!(
        gens[1]["started_by"].as_str().is_some_and(
            |b| b.starts_with("converge --now by ") && b.ends_with("in its own process")
        ),
        "{history}"
    );
    let text = env.run(&["history"]);
    assert!(
        text.stdout.contains("by:  converge --now by"),
        "{}",
        text.stdout
    );
    let one = env.run(&["history", "2"]);
    assert!(
        one.stdout.contains("healed drift:  1 resource"),
        "{}",
        one.stdout
    );
}

/// The smaller points of issue 20 on the command line: a requested rollback
/// is no warning; `rollback --to N` of an undone generation says so; a
/// converge's summary does not repeat what its plan said would happen;
/// `--dry-run` says dry run.
#[test]
fn rollback_dry_run_and_notes_say_what_happened() {
    let env = Env::new();
    let root = env.path().join("root");
    let dir = env.path().join("repo");
    let r = repo(
        &dir,
        &format!(
            "{MOTD}[[command]]\nname = 'stamp'\ncommand = ['/bin/true']\ncreates = '/nonexistent-stamp'\n"
        ),
    );
    let converge = converge_args(Path::new(&r), &root, "h");
    let mut plan = converge.clone();
    plan[0] = "plan".into();
    plan.retain(|a| a != "--now" && a != "--create-root");
    let p = env.run(&plan);
    assert!(p.stdout.contains("command:stamp will run"), "{}", p.stdout);
    let run = env.run(&converge);
    run.expect_code(2);
    assert!(
        !run.stdout.contains("will run"),
        "the summary repeats the plan's future: {}",
        run.stdout
    );
    let mut dry = converge.clone();
    dry.push("--dry-run".into());
    repo(&dir, &MOTD.replace("world", "again"));
    let d = env.run(&dry);
    d.expect_code(2);
    assert!(d.stdout.contains("dry run:"), "{}", d.stdout);
    assert!(!d.stdout.contains("audit mode"), "{}", d.stdout);

    env.run(&converge).expect_code(2);
    let rs = root.to_str().unwrap();
    let rb = env.run(&["rollback", "--root", rs]);
    rb.expect_code(0);
    assert!(
        !rb.stderr.contains("WARN"),
        "a requested rollback warns: {}",
        rb.stderr
    );
    let again = env.run(&["rollback", "--to", "2", "--root", rs]);
    again.expect_code(1);
    assert!(
        again.stderr.contains("generation 2 was undone already"),
        "{}",
        again.stderr
    );
}

/// As a user with the RPM's agent.toml (0600), `status` says to run as
/// root, and still answers; other commands say so and fail.
#[test]
fn status_as_a_user_says_to_run_as_root() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(env.config(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let as_nobody = |args: &[&str]| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_driftless"))
            .args(args)
            .arg("--config")
            .arg(env.config())
            .env("NO_COLOR", "1")
            .output()
            .expect("setpriv (util-linux)")
    };
    let st = as_nobody(&["status"]);
    let out = String::from_utf8_lossy(&st.stdout);
    assert_eq!(st.status.code(), Some(0), "{out}");
    assert!(out.contains("run as root"), "{out}");
    let h = as_nobody(&["history"]);
    let err = String::from_utf8_lossy(&h.stderr);
    assert_eq!(h.status.code(), Some(1), "{err}");
    assert!(err.contains("run as root"), "{err}");
}
