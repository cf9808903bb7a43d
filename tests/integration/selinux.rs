//! SELinux labels on temporary roots with a policy fixture of real RHEL 9
//! `file_contexts` lines: every path driftless creates or replaces gets
//! the context libselinux's lookup gives its final path and type, set
//! before it appears; label drift is planned, audited and healed; rollback
//! and pruning put labels back exactly; a root without a policy gets none.
//!
//! This kernel has no SELinux: the `security.selinux` attribute is a plain
//! extended attribute here, which root can set and read (and which these
//! tests read back). Needs root, as every `--root` converge that chowns.

use std::path::{Path, PathBuf};

use crate::util::{Env, Run, converge_args, plan_json_args, write_repo};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/selinux");
const FILE_CONTEXTS: &str = "etc/selinux/targeted/contexts/files/file_contexts";

fn ctx(t: &str) -> String {
    format!("system_u:object_r:{t}:s0")
}

/// The label of `path` itself (a symlink is not followed).
fn label(path: &Path) -> Option<String> {
    selinux::SecurityContext::of_path(path, false, true)
        .unwrap_or_else(|e| panic!("reading the label of {}: {e}", path.display()))
        .map(|c| {
            String::from_utf8_lossy(c.as_bytes())
                .trim_end_matches('\0')
                .to_owned()
        })
}

fn set_label(path: &Path, context: &str) {
    let text = std::ffi::CString::new(context).unwrap();
    selinux::SecurityContext::from_c_str(&text, true)
        .set_for_path(path, false, true)
        .unwrap_or_else(|e| panic!("labelling {}: {e}", path.display()));
}

/// A temporary root with the policy fixture, a config repo and an agent
/// config of its own.
struct Host {
    env: Env,
    repo: PathBuf,
    root: PathBuf,
}

impl Host {
    fn new() -> Self {
        let env = Env::new();
        let repo = env.path().join("repo");
        let root = env.path().join("root");
        let files = root.join(FILE_CONTEXTS);
        std::fs::create_dir_all(files.parent().unwrap()).unwrap();
        std::fs::copy(
            Path::new(FIXTURE).join("config"),
            root.join("etc/selinux/config"),
        )
        .unwrap();
        for name in ["file_contexts", "file_contexts.subs_dist"] {
            std::fs::copy(
                Path::new(FIXTURE).join(name),
                files.parent().unwrap().join(name),
            )
            .unwrap();
        }
        Self { env, repo, root }
    }

    /// Adds to the policy what `semanage fcontext` would: a local file
    /// context (`.local`) or an equivalence (`.subs`).
    fn customize(&self, suffix: &str, line: &str) {
        let path = self.root.join(format!("{FILE_CONTEXTS}{suffix}"));
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push_str(line);
        text.push('\n');
        std::fs::write(path, text).unwrap();
    }

    fn declare(&self, toml: &str) {
        std::fs::remove_dir_all(&self.repo).ok();
        write_repo(&self.repo, &[("hosts/h.toml", toml)]);
    }

    fn converge(&self) -> Run {
        self.env.run(&converge_args(&self.repo, &self.root, "h"))
    }

    fn plan(&self) -> serde_json::Value {
        let r = self.env.run(&plan_json_args(&self.repo, &self.root, "h"));
        serde_json::from_str(r.stdout.trim())
            .unwrap_or_else(|e| panic!("plan is not json ({e}): {}\n{}", r.stdout, r.stderr))
    }

    fn at(&self, host_path: &str) -> PathBuf {
        self.root.join(host_path.trim_start_matches('/'))
    }

    fn label(&self, host_path: &str) -> Option<String> {
        label(&self.at(host_path))
    }
}

const LAYOUT: &str = r#"
[[file]]
path = "/etc/shadow"
content = "root:!!:19000:0:99999:7:::\n"
mode = "0000"

[[file]]
path = "/etc/hosts"
content = "127.0.0.1 localhost\n"

[[file]]
path = "/etc/resolv.conf"
content = "nameserver 127.0.0.53\n"

[[file]]
path = "/root/.ssh/authorized_keys"
content = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ7 admin@example.com\n"
mode = "0600"

[[directory]]
path = "/etc/shadow.d"

[[file]]
path = "/etc/systemd/system/app.service"
content = "[Service]\nExecStart=/usr/bin/app\n"

[[file]]
path = "/srv/web/index.html"
content = "<h1>hello</h1>\n"

[[file]]
path = "/srv/app/app.conf"
content = "cache = /srv/app/cache\n"

[[directory]]
path = "/var/www/html"

[[symlink]]
path = "/var/www/html/current"
target = "releases/42"

[[symlink]]
path = "/var/run"
target = "../run"

[[directory]]
path = "/var/www/html/cache"
selinux = { type = "httpd_cache_t" }

[[file]]
path = "/var/www/html/secret.txt"
content = "s3cret\n"
selinux = { user = "unconfined_u", type = "httpd_sys_ra_content_t", range = "s0:c1,c2" }
"#;

/// Each context case: the exact rule of the final path (never the
/// temporary name's), a rule for one file type only, `.subs_dist` and
/// `.subs` equivalences, a `.local` rule, explicit parts, directories
/// (declared and implicit parents) and symlinks; then the same tree is a
/// no-op, with the stat cache warm too.
#[test]
fn every_path_gets_the_policys_context_for_its_final_path_and_type() {
    let h = Host::new();
    h.customize(".subs", "/srv/web /var/www");
    h.customize(
        ".local",
        "/srv/app(/.*)?    system_u:object_r:httpd_sys_rw_content_t:s0",
    );
    std::fs::create_dir_all(h.at("/etc")).unwrap();
    h.declare(LAYOUT);
    h.converge().expect_code(2);
    for (path, want) in [
        // Exact-path rules: a lookup of the temporary name
        // (/etc/.shadow.driftless-…) would say etc_t.
        ("/etc/shadow", ctx("shadow_t")),
        ("/etc/hosts", ctx("net_conf_t")),
        ("/etc/resolv.conf", ctx("net_conf_t")),
        // sshd refuses keys without ssh_home_t; /root/.ssh is a parent
        // driftless creates, /root another.
        ("/root/.ssh/authorized_keys", ctx("ssh_home_t")),
        ("/root/.ssh", ctx("ssh_home_t")),
        ("/root", ctx("admin_home_t")),
        // `/etc/shadow.*  --` is for regular files only.
        ("/etc/shadow.d", ctx("etc_t")),
        // .subs_dist: /etc/systemd/system is /usr/lib/systemd/system.
        (
            "/etc/systemd/system/app.service",
            ctx("systemd_unit_file_t"),
        ),
        ("/etc/systemd/system", ctx("systemd_unit_file_t")),
        // .subs (semanage fcontext -a -e /var/www /srv/web).
        ("/srv/web/index.html", ctx("httpd_sys_content_t")),
        // .local (semanage fcontext -a -t httpd_sys_rw_content_t ...).
        ("/srv/app/app.conf", ctx("httpd_sys_rw_content_t")),
        ("/srv", ctx("var_t")),
        // Directories and symlinks, with a `-l` rule for the link.
        ("/var/www/html", ctx("httpd_sys_content_t")),
        ("/var/www/html/current", ctx("httpd_sys_content_t")),
        ("/var/run", ctx("var_run_t")),
        // Explicit parts over the policy's.
        ("/var/www/html/cache", ctx("httpd_cache_t")),
        (
            "/var/www/html/secret.txt",
            "unconfined_u:object_r:httpd_sys_ra_content_t:s0:c1,c2".to_owned(),
        ),
    ] {
        assert_eq!(h.label(path).as_deref(), Some(want.as_str()), "{path}");
    }
    h.converge().expect_code(0);
    h.converge().expect_code(0);
    let plan = h.plan();
    assert_eq!(plan["changes"], serde_json::json!([]), "{plan}");
}

/// A label changed by hand (chcon) is drift: plan shows it, audit reports
/// it without changing it, converge puts the policy's context back (as
/// Puppet does; a lasting exception belongs in the policy or in the
/// resource's `selinux`), and the stat cache does not hide it.
#[test]
fn label_drift_is_planned_audited_and_healed() {
    let h = Host::new();
    h.declare(LAYOUT);
    h.converge().expect_code(2);
    h.converge().expect_code(0);
    for path in ["/etc/hosts", "/var/www/html", "/var/www/html/current"] {
        set_label(&h.at(path), &ctx("etc_t"));
    }
    let plan = h.plan();
    let reasons: Vec<String> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c["resource"]["key"], c["reasons"]))
        .collect();
    assert_eq!(reasons.len(), 3, "{plan}");
    for (path, want) in [
        ("/etc/hosts", "net_conf_t"),
        ("/var/www/html", "httpd_sys_content_t"),
        ("/var/www/html/current", "httpd_sys_content_t"),
    ] {
        let line = format!(
            "SELinux context is {}, should be {}",
            ctx("etc_t"),
            ctx(want)
        );
        assert!(
            reasons
                .iter()
                .any(|r| r.contains(&format!("\"{path}\"")) && r.contains(&line)),
            "{path}: {reasons:?}"
        );
    }
    assert!(
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["selinux"] == ctx("net_conf_t")),
        "the plan says which context it sets: {plan}"
    );

    // Audit: reported, not changed.
    h.env.set_config("mode = \"audit\"\n");
    let mut args = converge_args(&h.repo, &h.root, "h");
    args.push("--json".into());
    let r = h.env.run(&args);
    r.expect_code(2);
    assert!(r.stdout.contains("SELinux context is"), "{}", r.stdout);
    assert_eq!(h.label("/etc/hosts"), Some(ctx("etc_t")));
    h.env.set_config("");

    h.converge().expect_code(2);
    assert_eq!(h.label("/etc/hosts"), Some(ctx("net_conf_t")));
    assert_eq!(h.label("/var/www/html"), Some(ctx("httpd_sys_content_t")));
    assert_eq!(
        h.label("/var/www/html/current"),
        Some(ctx("httpd_sys_content_t"))
    );
    h.converge().expect_code(0);
    // With the cache warm: a relabel moves ctime, so it is seen.
    set_label(&h.at("/etc/hosts"), &ctx("etc_t"));
    h.converge().expect_code(2);
    assert_eq!(h.label("/etc/hosts"), Some(ctx("net_conf_t")));
}

const HAND_SET: &str = "unconfined_u:object_r:user_tmp_t:s0";

/// What was there before keeps its own label through a rollback and
/// through pruning, exactly (a hand-set one too), file and directory.
#[test]
fn rollback_and_pruning_put_labels_back_exactly() {
    let h = Host::new();
    std::fs::create_dir_all(h.at("/etc/app/conf.d")).unwrap();
    std::fs::write(h.at("/etc/app/app.conf"), "original\n").unwrap();
    set_label(&h.at("/etc/app/app.conf"), HAND_SET);
    set_label(&h.at("/etc/app/conf.d"), HAND_SET);
    let managed = "[[file]]\npath = \"/etc/app/app.conf\"\ncontent = \"managed\\n\"\n\
                   [[directory]]\npath = \"/etc/app/conf.d\"\nmode = \"0750\"\n";
    let keep = "[[file]]\npath = \"/etc/keep\"\ncontent = \"kept\\n\"\n";

    // A failing check: the converge is rolled back, labels included.
    h.declare(&format!(
        "{keep}{managed}[[check]]\nname = \"broken\"\ncommand = [\"false\"]\nretries = 0\n"
    ));
    h.converge().expect_code(4);
    assert_eq!(
        std::fs::read_to_string(h.at("/etc/app/app.conf")).unwrap(),
        "original\n"
    );
    assert_eq!(h.label("/etc/app/app.conf").as_deref(), Some(HAND_SET));
    assert_eq!(h.label("/etc/app/conf.d").as_deref(), Some(HAND_SET));

    // Managed: the policy's context.
    h.declare(&format!("{keep}{managed}"));
    h.converge().expect_code(2);
    assert_eq!(h.label("/etc/app/app.conf"), Some(ctx("etc_t")));
    assert_eq!(h.label("/etc/app/conf.d"), Some(ctx("etc_t")));

    // Dropped from the repo: put back as it was, label and all.
    h.declare(keep);
    h.converge().expect_code(2);
    assert_eq!(
        std::fs::read_to_string(h.at("/etc/app/app.conf")).unwrap(),
        "original\n"
    );
    assert_eq!(h.label("/etc/app/app.conf").as_deref(), Some(HAND_SET));
    assert_eq!(h.label("/etc/app/conf.d").as_deref(), Some(HAND_SET));
    h.converge().expect_code(0);
}

/// Killed inside a write, after the temporary file is complete and before
/// the rename: the temporary already carries the final path's context, so
/// a rename (the next instant) would never show /etc/shadow as etc_t.
#[test]
fn the_temporary_file_is_labelled_before_the_rename() {
    let h = Host::new();
    std::fs::create_dir_all(h.at("/etc")).unwrap();
    std::fs::write(h.at("/etc/shadow"), "old\n").unwrap();
    set_label(&h.at("/etc/shadow"), &ctx("shadow_t"));
    h.declare("[[file]]\npath = \"/etc/shadow\"\ncontent = \"new\\n\"\nmode = \"0000\"\n");
    let r = h.env.run_env(
        &converge_args(&h.repo, &h.root, "h"),
        &[("DRIFTLESS_FAULT", "mid-write:1")],
    );
    assert_eq!(r.code, 137, "not killed mid-write: {}", r.stderr);
    let temps: Vec<PathBuf> = std::fs::read_dir(h.at("/etc"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".driftless-"))
        .collect();
    assert_eq!(temps.len(), 1, "{temps:?}");
    assert_eq!(std::fs::read_to_string(&temps[0]).unwrap(), "new\n");
    assert_eq!(label(&temps[0]), Some(ctx("shadow_t")), "{temps:?}");
    assert_eq!(
        std::fs::read_to_string(h.at("/etc/shadow")).unwrap(),
        "old\n"
    );
}

/// No policy in the root (or `SELINUX=disabled`): no label is read or
/// set, and nothing in the plan speaks of one.
#[test]
fn a_root_without_a_policy_gets_no_label() {
    for config in [None, Some("SELINUX=disabled\nSELINUXTYPE=targeted\n")] {
        let h = Host::new();
        match config {
            None => std::fs::remove_dir_all(h.at("/etc/selinux")).unwrap(),
            Some(text) => std::fs::write(h.at("/etc/selinux/config"), text).unwrap(),
        }
        h.declare(LAYOUT);
        let plan = h.plan();
        assert!(!plan.to_string().contains("system_u"), "{plan}");
        h.converge().expect_code(2);
        for path in [
            "/etc/shadow",
            "/root/.ssh",
            "/var/www/html/current",
            "/var/www/html/secret.txt",
        ] {
            assert_eq!(h.label(path), None, "{config:?}: {path}");
        }
        h.converge().expect_code(0);
    }
}

/// `selinux` parts are checked before anything is changed, each error at
/// its place.
#[test]
fn bad_selinux_parts_are_located_errors() {
    let h = Host::new();
    h.declare(
        "[[file]]\npath = \"/etc/a\"\ncontent = \"\"\nselinux = { tpye = \"etc_t\" }\n\
         [[directory]]\npath = \"/etc/b\"\nselinux = { type = \"etc t\" }\n\
         [[symlink]]\npath = \"/etc/c\"\ntarget = \"a\"\nselinux = \"etc_t\"\n",
    );
    let r = h.converge();
    r.expect_code(1);
    for want in [
        "hosts/h.toml:4:13: `selinux.tpye` is not a part of an SELinux context: use user, role, type or range (did you mean `type`?)",
        "hosts/h.toml:7:20: `selinux.type` `etc t` is not a valid SELinux type",
        "hosts/h.toml:11:11: `selinux` must be a table",
    ] {
        assert!(r.stderr.contains(want), "{want}\n{}", r.stderr);
    }
    assert!(!h.at("/etc/a").exists());
}

/// `[[authorized_key]]` creates the file and `~/.ssh` as an edit: both get
/// the policy's context (sshd refuses keys without ssh_home_t), and keep
/// it when the keys change.
#[test]
fn authorized_keys_and_their_directory_get_ssh_home_t() {
    use crate::util::ssh_keys::{ADMIN, BACKUP};
    let h = Host::new();
    h.declare(&format!(
        "[[authorized_key]]\nuser = 'root'\nkeys = ['{ADMIN}']\n"
    ));
    h.converge().expect_code(2);
    assert_eq!(
        h.label("/root/.ssh/authorized_keys"),
        Some(ctx("ssh_home_t"))
    );
    assert_eq!(h.label("/root/.ssh"), Some(ctx("ssh_home_t")));
    assert_eq!(h.label("/root"), Some(ctx("admin_home_t")));
    h.converge().expect_code(0);
    // A file relabelled by hand (a `cp` from elsewhere) is healed.
    set_label(&h.at("/root/.ssh/authorized_keys"), &ctx("admin_home_t"));
    h.converge().expect_code(2);
    assert_eq!(
        h.label("/root/.ssh/authorized_keys"),
        Some(ctx("ssh_home_t"))
    );
    h.declare(&format!(
        "[[authorized_key]]\nuser = 'root'\nkeys = ['{ADMIN}', '{BACKUP}']\n"
    ));
    h.converge().expect_code(2);
    assert_eq!(
        h.label("/root/.ssh/authorized_keys"),
        Some(ctx("ssh_home_t"))
    );
}
