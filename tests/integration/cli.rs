//! The binary, run on fixture repos and temporary roots.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use crate::util::{Env, converge_args, example_repo, fingerprint, plan_json_args, write_repo};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/invalid");

/// Every invalid repo in the corpus: `validate` exits 1 with each expected
/// located message, and `plan` and `converge` exit 1 and change nothing.
#[test]
fn invalid_repo_corpus_is_rejected_with_located_errors_and_changes_nothing() {
    let mut cases: Vec<_> = std::fs::read_dir(FIXTURES)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 30, "the corpus shrank: {}", cases.len());
    // Collect every mismatch, so one run shows all broken cases.
    let mut failures = Vec::new();
    for case in cases {
        let name = case
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let repo = case.join("repo");
        let repo = repo.to_str().expect("utf-8 path");
        let expected = std::fs::read_to_string(case.join("expected")).expect("expected file");
        let env = Env::new();
        // A case may bring its own agent config (the state directory case).
        if let Ok(agent) = std::fs::read_to_string(case.join("agent.toml")) {
            env.set_raw_config(&agent);
        }
        let v = env.run(&["validate", "--repo", repo, "--host", "h"]);
        if v.code != 1 || v.stderr.contains("panicked") {
            failures.push(format!(
                "{name}: validate exited {}\n{}{}",
                v.code, v.stdout, v.stderr
            ));
        }
        for line in expected.lines().filter(|l| !l.is_empty()) {
            if !v.stderr.contains(line) {
                failures.push(format!("{name}: missing `{line}` in:\n{}", v.stderr));
            }
        }
        let root = env.path().join("root");
        std::fs::create_dir(&root).expect("mkdir root");
        let root_s = root.to_str().expect("utf-8");
        let before = fingerprint(&root);
        env.run(&["plan", "--repo", repo, "--host", "h", "--root", root_s])
            .expect_code(1);
        env.run(&[
            "converge",
            "--now",
            "--create-root",
            "--repo",
            repo,
            "--host",
            "h",
            "--root",
            root_s,
        ])
        .expect_code(1);
        assert_eq!(fingerprint(&root), before, "{name}: the root changed");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_source_over_the_size_cap_is_rejected() {
    let env = Env::new();
    let repo = env.path().join("repo");
    write_repo(
        &repo,
        &[
            (
                "hosts/h.toml",
                "[[file]]\npath = '/big'\nsource = 'files/big'\n",
            ),
            ("files/.keep", ""),
        ],
    );
    let big = std::fs::File::create(repo.join("files/big")).expect("create");
    big.set_len(16 * 1024 * 1024 + 1).expect("grow");
    let v = env.run(&[
        "validate",
        "--repo",
        repo.to_str().expect("utf-8"),
        "--host",
        "h",
    ]);
    v.expect_code(1);
    assert!(
        v.stderr.contains(
            "hosts/h.toml:1:1: source `files/big` is 16777217 bytes, over the cap of 16777216 bytes"
        ),
        "{}",
        v.stderr
    );
}

#[test]
fn the_example_validates_for_every_host() {
    let env = Env::new();
    let ex = example_repo();
    let v = env.run(&[
        "validate",
        "--repo",
        ex.to_str().expect("utf-8"),
        "--all-hosts",
    ]);
    v.expect_code(0);
    assert!(v.stdout.contains("valid"));
}

/// Converge into an empty root, then again: the second run exits 0 and
/// touches nothing (same mtimes and inodes everywhere).
#[test]
fn the_example_converges_and_a_second_run_changes_nothing() {
    for host in ["web1", "db1", "somewhere-else"] {
        let env = Env::new();
        let root = env.path().join("root");
        let (repo, root_s) = (example_repo(), root.to_str().expect("utf-8").to_owned());
        let args = converge_args(&repo, &root, host);
        let first = env.run(&args);
        first.expect_code(2);
        let expected_file = if host == "somewhere-else" {
            "hosts/default.toml".to_owned()
        } else {
            format!("hosts/{host}.toml")
        };
        assert!(
            first.stdout.contains(&expected_file),
            "{host}: {}",
            first.stdout
        );
        let after_first = fingerprint(&root);
        assert!(
            after_first.len() > 5,
            "{host}: too little was written: {after_first:?}"
        );
        env.run(&args).expect_code(0);
        assert_eq!(
            fingerprint(&root),
            after_first,
            "{host}: the second converge changed something"
        );
        env.run(&[
            "plan",
            "--repo",
            repo.to_str().expect("utf-8"),
            "--root",
            &root_s,
            "--host",
            host,
        ])
        .expect_code(0);
    }
    // Spot-check the web host's result.
    let env = Env::new();
    let root = env.path().join("root");
    let repo = example_repo();
    env.run(&converge_args(&repo, &root, "web1")).expect_code(2);
    let conf = std::fs::read_to_string(root.join("etc/nginx/conf.d/site.conf")).expect("site.conf");
    assert!(
        conf.contains("worker_connections 2048;") && conf.contains("server_name www.example.com;")
    );
    assert_eq!(
        std::fs::read_link(root.join("srv/www/current")).expect("link"),
        Path::new("releases/v1")
    );
    let mode = |p: &str| {
        std::fs::metadata(root.join(p))
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("opt/admin/bin"), 0o750);
    assert_eq!(mode("opt/admin/bin/disk-report"), 0o750);
    assert_eq!(mode("etc/motd"), 0o644);
    let repo_file = std::fs::read_to_string(root.join("etc/yum.repos.d/example-internal.repo"))
        .expect("repo file");
    assert!(repo_file.contains("[example-internal]\n") && repo_file.contains("gpgcheck=1\n"));
}

/// A hand edit of a managed file is reported by `plan` (exit 2, with a diff)
/// and healed by `converge`; so is a mode change.
#[test]
fn drift_is_reported_and_healed() {
    let env = Env::new();
    let root = env.path().join("root");
    let repo = example_repo();
    let (repo_s, root_s) = (repo.to_str().expect("utf-8"), root.to_str().expect("utf-8"));
    let plan = ["plan", "--repo", repo_s, "--root", root_s, "--host", "web1"];
    let converge = converge_args(&repo, &root, "web1");
    env.run(&converge).expect_code(2);
    let conf = root.join("etc/sysctl.d/90-driftless.conf");
    let good = std::fs::read_to_string(&conf).expect("read");
    std::fs::write(
        &conf,
        good.replace("tcp_syncookies = 1", "tcp_syncookies = 0"),
    )
    .expect("edit");
    std::fs::set_permissions(
        root.join("opt/admin/bin"),
        std::fs::Permissions::from_mode(0o777),
    )
    .expect("chmod");
    let p = env.run(&plan);
    p.expect_code(2);
    // The two drifts, and the command refreshed by the file's.
    assert!(p.stdout.contains("3 changes pending"), "{}", p.stdout);
    assert!(
        p.stdout.contains("command:sysctl (run)")
            && p.stdout
                .contains("file:/etc/sysctl.d/90-driftless.conf changed"),
        "{}",
        p.stdout
    );
    assert!(
        p.stdout.contains("-net.ipv4.tcp_syncookies = 0")
            && p.stdout.contains("+net.ipv4.tcp_syncookies = 1"),
        "{}",
        p.stdout
    );
    assert!(
        p.stdout.contains("mode is 0777, should be 0750"),
        "{}",
        p.stdout
    );
    env.run(&converge).expect_code(2);
    assert_eq!(std::fs::read_to_string(&conf).expect("read"), good);
    env.run(&plan).expect_code(0);
}

/// A symlink planted at a managed path is replaced, never followed: the
/// file it pointed to is untouched.
#[test]
fn a_symlink_planted_at_a_managed_path_is_not_followed() {
    let env = Env::new();
    let (root, outside) = (env.path().join("root"), env.path().join("outside"));
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::write(outside.join("passwd"), "precious\n").expect("write");
    symlink(outside.join("passwd"), root.join("etc/motd")).expect("plant");
    let repo = env.path().join("repo");
    write_repo(
        &repo,
        &[(
            "hosts/h.toml",
            "[[file]]\npath = '/etc/motd'\ncontent = \"hello\\n\"\n",
        )],
    );
    let args = converge_args(&repo, &root, "h");
    let r = env.run(&args);
    r.expect_code(2);
    assert!(r.stdout.contains("is a symlink to"), "{}", r.stdout);
    assert_eq!(
        std::fs::read_to_string(outside.join("passwd")).expect("read"),
        "precious\n"
    );
    let md = std::fs::symlink_metadata(root.join("etc/motd")).expect("lstat");
    assert!(md.is_file());
    assert_eq!(
        std::fs::read_to_string(root.join("etc/motd")).expect("read"),
        "hello\n"
    );
}

/// A symlink planted at a parent directory cannot lead a write out of the
/// root: absolute targets resolve inside the root, `..` stops at it.
#[test]
fn a_symlink_planted_at_a_parent_cannot_escape_the_root() {
    let env = Env::new();
    let (root, outside) = (env.path().join("root"), env.path().join("outside"));
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::create_dir_all(&outside).expect("mkdir");
    let repo = env.path().join("repo");
    write_repo(
        &repo,
        &[(
            "hosts/h.toml",
            "[[file]]\npath = '/etc/motd'\ncontent = 'x'\n[[file]]\npath = '/var/x'\ncontent = 'y'\n",
        )],
    );
    // /etc -> <outside> (absolute: resolves to <root>/<outside>, which does
    // not exist, so nothing may be written anywhere).
    symlink(&outside, root.join("etc")).expect("plant");
    let args = converge_args(&repo, &root, "h");
    let before = fingerprint(&root);
    let r = env.run(&args);
    r.expect_code(1);
    assert!(
        r.stderr.contains(&format!(
            "is a symlink (etc -> {}) that points outside the root",
            outside.display()
        )),
        "{}",
        r.stderr
    );
    assert_eq!(fingerprint(&root), before);
    assert!(fingerprint(&outside).is_empty(), "wrote outside the root");
    // /var -> ../../../.. (climbs above the root: stops at the root).
    std::fs::remove_file(root.join("etc")).expect("rm");
    symlink("../../../../../../..", root.join("var")).expect("plant");
    env.run(&args).expect_code(2);
    assert!(fingerprint(&outside).is_empty(), "wrote outside the root");
    assert_eq!(
        std::fs::read_to_string(root.join("x")).expect("written at the root"),
        "y"
    );
}

/// Restores `chattr -i` even when the test fails.
struct Immutable<'a>(&'a Path);

impl Drop for Immutable<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(self.0)
            .status();
    }
}

/// A step that fails mid-way (a real EPERM from an immutable directory)
/// puts back every file changed before it, byte for byte: exit 4.
#[test]
fn a_failure_mid_way_restores_earlier_changes() {
    let env = Env::new();
    let root = env.path().join("root");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::create_dir_all(root.join("locked")).expect("mkdir");
    std::fs::write(root.join("etc/a.conf"), "old a\n").expect("write");
    std::fs::set_permissions(
        root.join("etc/a.conf"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    let repo = env.path().join("repo");
    write_repo(
        &repo,
        &[(
            "hosts/h.toml",
            "[[file]]\npath = '/etc/a.conf'\ncontent = \"new a\\n\"\n[[directory]]\npath = '/etc/new.d'\n[[file]]\npath = '/locked/b.conf'\ncontent = \"b\\n\"\n",
        )],
    );
    let status = std::process::Command::new("chattr")
        .arg("+i")
        .arg(root.join("locked"))
        .status()
        .expect("run chattr");
    assert!(
        status.success(),
        "chattr +i failed: this test needs a filesystem with immutable flags (ext4)"
    );
    let _guard = Immutable(&root.join("locked"));
    let before = fingerprint(&root);
    let r = env.run(&converge_args(&repo, &root, "h"));
    r.expect_code(4);
    assert!(r.stderr.contains("file:/locked/b.conf"), "{}", r.stderr);
    assert!(r.stderr.contains("restored"), "{}", r.stderr);
    let after = fingerprint(&root);
    // Same bytes and metadata; the rewritten file is a new inode with a new
    // mtime, which is the price of atomic writes.
    let strip = |f: &crate::util::Fingerprint| -> Vec<(std::path::PathBuf, String)> {
        f.iter()
            .map(|(p, v)| {
                (
                    p.clone(),
                    v.split(" mtime=").next().unwrap_or("").to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(strip(&after), strip(&before));
    assert_eq!(
        std::fs::read_to_string(root.join("etc/a.conf")).expect("read"),
        "old a\n"
    );
    // An immutable file (EPERM) is the host's doing, not the commit's.
    let st = env.run(&["status", "--json"]);
    let st: serde_json::Value = serde_json::from_str(&st.stdout).expect("json");
    assert!(st["status"]["quarantine"].is_null(), "{st}");
}

#[test]
fn plan_json_is_machine_readable() {
    let env = Env::new();
    let root = env.path().join("root");
    std::fs::create_dir(&root).expect("mkdir");
    let repo = env.path().join("repo");
    write_repo(
        &repo,
        &[(
            "hosts/h.toml",
            "[[file]]\npath = '/motd'\ncontent = \"x\\n\"\nmode = '0600'\n",
        )],
    );
    let r = env.run(&plan_json_args(&repo, &root, "h"));
    r.expect_code(2);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(v["result"], "changes_pending");
    assert_eq!(v["host_file"], "hosts/h.toml");
    assert_eq!(v["changes"][0]["resource"]["kind"], "file");
    assert_eq!(v["changes"][0]["action"], "write_file");
    assert_eq!(v["changes"][0]["mode"], "0600");
    let v = env.run(&["validate", "--json", "--repo", FIXTURES_ONE, "--host", "h"]);
    v.expect_code(1);
    let v: serde_json::Value = serde_json::from_str(&v.stdout).expect("json");
    assert_eq!(v["result"], "invalid");
    let sorce = v["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .find(|d| d["message"].as_str().is_some_and(|m| m.contains("sorce")))
        .expect("the unknown key is reported");
    assert_eq!(
        (
            sorce["file"].as_str(),
            sorce["line"].as_u64(),
            sorce["column"].as_u64()
        ),
        (Some("hosts/h.toml"), Some(3), Some(1))
    );
}

const FIXTURES_ONE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/invalid/unknown-key-did-you-mean/repo"
);

#[test]
fn dry_run_and_audit_mode_change_nothing() {
    let env = Env::new();
    let root = env.path().join("root");
    let repo = example_repo();
    let args = converge_args(&repo, &root, "web1");
    let mut dry = args.clone();
    dry.push("--dry-run".to_owned());
    env.run(&dry).expect_code(2);
    assert!(!root.exists(), "a dry run created the root");
    env.set_config("mode = \"audit\"\n");
    env.run(&args).expect_code(2);
    assert!(!root.exists(), "audit mode changed the host");
}

#[test]
fn errors_before_any_change_exit_1_with_a_clear_message() {
    let env = Env::new();
    let ex = example_repo();
    let ex = ex.to_str().expect("utf-8");
    // No host file and no default.
    let repo = env.path().join("repo");
    write_repo(&repo, &[("hosts/web1.toml", "")]);
    let r = env.run(&[
        "plan",
        "--repo",
        repo.to_str().expect("utf-8"),
        "--host",
        "db7.example.com",
    ]);
    r.expect_code(1);
    assert!(
        r.stderr
            .contains("looked for hosts/db7.example.com.toml, hosts/db7.toml, hosts/default.toml"),
        "{}",
        r.stderr
    );
    // A bad agent config names its file.
    env.set_config("hots = 'x'\n");
    let r = env.run(&["validate", "--repo", ex]);
    r.expect_code(1);
    assert!(
        r.stderr.contains("agent.toml") && r.stderr.contains("hots"),
        "{}",
        r.stderr
    );
    env.set_config("");
    // No --repo and no source.
    let r = env.run(&["plan"]);
    r.expect_code(1);
    assert!(r.stderr.contains("pass --repo DIR"), "{}", r.stderr);
    // Usage errors are errors (1), not "changes" (2).
    env.run(&["converge", "--repo", ex]).expect_code(1);
    // A unit that does not exist, with no package to bring it, is refused
    // at plan time.
    write_repo(
        &repo,
        &[(
            "hosts/h.toml",
            "[[service]]\nname = 'no-such-unit'\nenabled = true\n",
        )],
    );
    let root = env.path().join("root");
    std::fs::create_dir_all(&root).expect("mkdir");
    let args = [
        "converge",
        "--now",
        "--repo",
        repo.to_str().expect("utf-8"),
        "--host",
        "h",
        "--root",
        root.to_str().expect("utf-8"),
    ];
    let r = env.run(&args);
    r.expect_code(1);
    assert!(
        r.stderr
            .contains("unit no-such-unit.service does not exist"),
        "{}",
        r.stderr
    );
    // A package dnf cannot install fails the converge with dnf's own words,
    // and the repo file written before the transaction is taken back.
    write_repo(
        &repo,
        &[(
            "hosts/h.toml",
            "[[repo]]\nname = 'nowhere'\nbaseurl = 'file:///nonexistent'\n[[package]]\nname = 'nginx'\n",
        )],
    );
    let r = env.run(&args);
    r.expect_code(4);
    assert!(
        r.stderr.contains("dnf") && r.stderr.contains("failed with exit code 1"),
        "{}",
        r.stderr
    );
    // The repo file and the directories created for it are gone again
    // (dnf's own cache, logs and rpm database under the root are dnf's).
    assert!(
        !root.join("etc").exists(),
        "the repo file was not taken back"
    );
}

/// `state = "absent"` removes files, symlinks and empty directories, and a
/// second run finds nothing left to do.
#[test]
fn absent_resources_are_removed() {
    let env = Env::new();
    let root = env.path().join("root");
    std::fs::create_dir_all(root.join("etc/old.d")).expect("mkdir");
    std::fs::write(root.join("etc/old.d/x.conf"), "x").expect("write");
    symlink("/nowhere", root.join("etc/old-link")).expect("symlink");
    let repo = env.path().join("repo");
    write_repo(
        &repo,
        &[(
            "hosts/h.toml",
            "[[file]]\npath = '/etc/old.d/x.conf'\nstate = 'absent'\n[[directory]]\npath = '/etc/old.d'\nstate = 'absent'\n[[symlink]]\npath = '/etc/old-link'\nstate = 'absent'\n[[file]]\npath = '/etc/never-was'\nstate = 'absent'\n",
        )],
    );
    let args = converge_args(&repo, &root, "h");
    let r = env.run(&args);
    r.expect_code(2);
    assert!(r.stdout.contains("3 changes applied"), "{}", r.stdout);
    assert!(!root.join("etc/old.d").exists());
    assert!(std::fs::symlink_metadata(root.join("etc/old-link")).is_err());
    env.run(&args).expect_code(0);
}

/// A valid but empty host file is valid, and converges to nothing.
#[test]
fn an_empty_host_file_is_valid() {
    let env = Env::new();
    let repo = env.path().join("repo");
    write_repo(&repo, &[("hosts/h.toml", "")]);
    let repo = repo.to_str().expect("utf-8");
    env.run(&["validate", "--repo", repo, "--host", "h"])
        .expect_code(0);
    let root = env.path().join("root");
    env.run(&[
        "converge",
        "--now",
        "--create-root",
        "--repo",
        repo,
        "--host",
        "h",
        "--root",
        root.to_str().expect("utf-8"),
    ])
    .expect_code(0);
}

/// With --root, enablement is managed through `systemctl --root` and the
/// live state is reported as not applicable, not silently dropped.
#[test]
fn services_in_a_root_are_enabled_and_live_state_is_noted() {
    let env = Env::new();
    let root = env.path().join("root");
    let units = root.join("etc/systemd/system");
    std::fs::create_dir_all(&units).expect("mkdir");
    std::fs::write(
        units.join("demo.service"),
        "[Unit]\nDescription=demo\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
    )
    .expect("write unit");
    let repo = env.path().join("repo");
    write_repo(
        &repo,
        &[(
            "hosts/h.toml",
            "[[service]]\nname = 'demo'\nenabled = true\nstate = 'running'\n",
        )],
    );
    let (repo, root_s) = (repo.to_str().expect("utf-8"), root.to_str().expect("utf-8"));
    let plan = env.run(&["plan", "--repo", repo, "--host", "h", "--root", root_s]);
    plan.expect_code(2);
    assert!(
        plan.stdout.contains("service:demo.service (enable)"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("live state is not applicable with --root"),
        "{}",
        plan.stdout
    );
    env.run(&[
        "converge",
        "--now",
        "--create-root",
        "--repo",
        repo,
        "--host",
        "h",
        "--root",
        root_s,
    ])
    .expect_code(2);
    let link = units.join("multi-user.target.wants/demo.service");
    assert!(
        std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()),
        "not enabled in the root"
    );
    let again = env.run(&["plan", "--repo", repo, "--host", "h", "--root", root_s]);
    again.expect_code(0);
    assert!(again.stdout.contains("not applicable"), "{}", again.stdout);
}

/// The example's app1: its group and user are created in the root (with
/// the host's shadow-utils, `-R`), own the directory and files declared
/// with them, and its secrets are decrypted with the example's key; the
/// second converge changes nothing. (As root, as CI runs: useradd -R.)
#[test]
fn the_example_app1_creates_its_accounts_and_decrypts_its_secrets() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let env = Env::new();
    let key = env.path().join("app1.age.key");
    std::fs::copy(example_repo().join("../keys/app1.age.key"), &key).expect("copy key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    env.set_config(&format!("[secrets]\nidentity = \"{}\"\n", key.display()));
    let root = env.path().join("root");
    write_repo(
        &root,
        &[
            ("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n"),
            ("etc/group", "root:x:0:\n"),
            ("etc/shadow", "root:*:19000:0:99999:7:::\n"),
            ("etc/gshadow", "root:*::\n"),
        ],
    );
    let args = converge_args(&example_repo(), &root, "app1");
    let first = env.run(&args);
    first.expect_code(2);
    assert!(
        !first.stdout.contains("example-api-token")
            && !first.stdout.contains("example-db-password"),
        "{}",
        first.stdout
    );
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("passwd");
    assert!(
        passwd.contains("app:x:2500:2500:Example application:/srv/app:/sbin/nologin\n"),
        "{passwd}"
    );
    let conf = root.join("etc/app/app.conf");
    assert!(
        std::fs::read_to_string(&conf)
            .expect("app.conf")
            .contains("api_token = \"example-api-token\"")
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/app/db.password")).expect("secret"),
        "example-db-password\n"
    );
    for path in ["srv/app", "etc/app/db.password"] {
        let m = std::fs::metadata(root.join(path)).expect("stat");
        assert_eq!((m.uid(), m.gid()), (2500, 2500), "{path}");
    }
    assert_eq!(std::fs::metadata(&conf).expect("stat").gid(), 2500);
    let after_first = fingerprint(&root);
    env.run(&args).expect_code(0);
    assert_eq!(
        fingerprint(&root),
        after_first,
        "the second converge changed something"
    );
}

/// dnf 5's `config-manager setopt` writes its settings to
/// /etc/dnf/repos.override.d, where they win over the repo file driftless
/// keeps: the plan says so for each declared repository they touch, and
/// converging does not hide it.
#[test]
fn a_dnf5_override_of_a_declared_repo_is_shown() {
    let env = Env::new();
    let repo = env.path().join("repo");
    let root = env.path().join("root");
    write_repo(
        &repo,
        &[(
            "hosts/h.toml",
            "[[repo]]\nname = 'appstream'\nbaseurl = 'https://mirror.example.com/appstream'\n\n[[repo]]\nname = 'epel'\nbaseurl = 'https://mirror.example.com/epel'\n",
        )],
    );
    // As `dnf config-manager setopt appstream.enabled=0 '*-debuginfo.enabled=1'` leaves it.
    write_repo(
        &root,
        &[(
            "etc/dnf/repos.override.d/99-config_manager.repo",
            "# Generated by dnf5 config-manager.\n# Do not modify this file manually, use dnf5 config-manager instead.\n[appstream]\nenabled=0\n\n[*-debuginfo]\nenabled=1\n",
        )],
    );
    let plan = env.run(&plan_json_args(&repo, &root, "h"));
    plan.expect_code(2);
    let json: serde_json::Value = serde_json::from_str(plan.stdout.trim()).expect("json");
    let notes: Vec<&str> = json["notices"]
        .as_array()
        .expect("notices")
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with(
            "repo:appstream is overridden by dnf 5 in /etc/dnf/repos.override.d/99-config_manager.repo ([appstream] enabled=0)"
        ),
        "{notes:?}"
    );
    env.run(&converge_args(&repo, &root, "h")).expect_code(2);
    let again = env.run(&converge_args(&repo, &root, "h"));
    again.expect_code(0);
    assert!(
        again.stdout.contains("overridden by dnf 5")
            || again.stderr.contains("overridden by dnf 5"),
        "{}\n{}",
        again.stdout,
        again.stderr
    );
}
