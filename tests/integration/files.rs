//! Files whose bytes driftless does not own: `replace = false` (written
//! once, then left to the admin or the application) and a `[[file]]`
//! without content (owner, group and mode only), on a temporary root:
//! idempotent, healed where owned, rolled back, pruned to how they were.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::util::{Env, converge_args, fingerprint, plan_json_args, write_repo};

struct Host {
    env: Env,
    repo: PathBuf,
    root: PathBuf,
}

impl Host {
    fn new() -> Self {
        let env = Env::new();
        let (repo, root) = (env.path().join("repo"), env.path().join("root"));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        Self { env, repo, root }
    }

    fn declare(&self, body: &str) {
        std::fs::remove_dir_all(&self.repo).ok();
        write_repo(&self.repo, &[("hosts/h.toml", body)]);
    }

    fn converge(&self) -> crate::util::Run {
        self.env.run(&converge_args(&self.repo, &self.root, "h"))
    }

    fn file(&self) -> PathBuf {
        self.root.join("etc/app.conf")
    }

    fn mode(&self) -> u32 {
        std::fs::metadata(self.file()).unwrap().permissions().mode() & 0o7777
    }

    fn set_mode(&self, mode: u32) {
        std::fs::set_permissions(self.file(), std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn text(&self) -> String {
        std::fs::read_to_string(self.file()).unwrap()
    }
}

const CREATE_ONCE: &str =
    "[[file]]\npath = '/etc/app.conf'\ncontent = \"default\\n\"\nmode = '0640'\nreplace = false\n";

#[test]
fn replace_false_writes_a_missing_file_once_and_then_leaves_its_bytes_alone() {
    let h = Host::new();
    h.declare(CREATE_ONCE);
    h.converge().expect_code(2);
    assert_eq!(h.text(), "default\n");
    assert_eq!(h.mode(), 0o640);
    h.converge().expect_code(0);

    // The application (or an admin) edits it: that is not drift.
    std::fs::write(h.file(), "tuned by hand\n").unwrap();
    h.converge().expect_code(0);
    assert_eq!(h.text(), "tuned by hand\n");

    // Its mode is still managed, and healed without touching the bytes.
    h.set_mode(0o666);
    let plan = h.env.run(&plan_json_args(&h.repo, &h.root, "h"));
    plan.expect_code(2);
    let json: serde_json::Value = serde_json::from_str(plan.stdout.trim()).unwrap();
    assert_eq!(json["changes"].as_array().map(Vec::len), Some(1), "{json}");
    assert!(json["changes"][0]["diff"].is_null(), "{json}");
    h.converge().expect_code(2);
    assert_eq!(h.mode(), 0o640);
    assert_eq!(h.text(), "tuned by hand\n");

    // Dropped from the repo: its bytes are the application's now, so it
    // stays (review: pruning it deleted what the application wrote).
    h.declare("");
    h.converge().expect_code(0);
    assert_eq!(h.text(), "tuned by hand\n");
}

const MODE_ONLY: &str = "[[file]]\npath = '/etc/app.conf'\nmode = '0600'\n";

#[test]
fn a_file_without_content_manages_its_mode_and_is_pruned_to_its_old_mode_only() {
    let h = Host::new();
    std::fs::write(h.file(), "owned by a package\n").unwrap();
    h.set_mode(0o644);
    h.declare(MODE_ONLY);
    h.converge().expect_code(2);
    assert_eq!(h.mode(), 0o600);
    assert_eq!(h.text(), "owned by a package\n");
    h.converge().expect_code(0);

    // The package updates the bytes: not driftless's business.
    std::fs::write(h.file(), "a newer package's version\n").unwrap();
    h.set_mode(0o600);
    h.converge().expect_code(0);

    // Dropped: the mode it had is put back, the bytes are the package's.
    h.declare("");
    h.converge().expect_code(2);
    assert_eq!(h.mode(), 0o644);
    assert_eq!(h.text(), "a newer package's version\n");
    h.converge().expect_code(0);
}

#[test]
fn a_failed_check_rolls_a_mode_only_file_back() {
    let h = Host::new();
    std::fs::write(h.file(), "x\n").unwrap();
    h.set_mode(0o644);
    h.declare(&format!(
        "{MODE_ONLY}[[check]]\nname = 'broken'\ncommand = ['false']\nretries = 0\n"
    ));
    h.converge().expect_code(4);
    assert_eq!(h.mode(), 0o644);
    assert_eq!(h.text(), "x\n");
}

#[test]
fn a_file_without_content_that_does_not_exist_is_an_error_that_changes_nothing() {
    let h = Host::new();
    h.declare(&format!(
        "{MODE_ONLY}[[file]]\npath = '/etc/other.conf'\ncontent = 'x'\n"
    ));
    let before = fingerprint(&h.root);
    let run = h.converge();
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("/etc/app.conf does not exist; a [[file]] without `content` or `source`"),
        "{}",
        run.stderr
    );
    assert_eq!(fingerprint(&h.root), before);
    assert!(!h.root.join("etc/other.conf").exists());
}

/// A validator that accepts content starting with `good`, and says what
/// it read otherwise.
const VALIDATOR: &str = "validate = ['/bin/sh', '-c', 'head -c 200 \"$1\" | grep -q ^good || { echo \"rejected: $(cat \"$1\")\" >&2; exit 3; }', 'validator', '%']\n";

fn validated(content: &str, extra: &str) -> String {
    format!("[[file]]\npath = '/etc/app.conf'\ncontent = \"{content}\\n\"\n{VALIDATOR}{extra}")
}

#[test]
fn a_validator_checks_the_new_content_before_it_replaces_the_old() {
    let h = Host::new();
    h.declare(&validated("good one", ""));
    let plan = h.env.run(&plan_json_args(&h.repo, &h.root, "h"));
    let json: serde_json::Value = serde_json::from_str(plan.stdout.trim()).unwrap();
    assert_eq!(json["changes"][0]["validate"][4], "%", "{json}");
    h.converge().expect_code(2);
    assert_eq!(h.text(), "good one\n");
    h.converge().expect_code(0);

    // Rejected: the converge fails, the old file stays, nothing is left
    // next to it, and the validator's words are in the error.
    h.declare(&validated("bad one", ""));
    let run = h.converge();
    run.expect_code(4);
    assert!(
        run.stderr.contains("rejected the new content (exit 3)")
            && run.stderr.contains("rejected: bad one"),
        "{}",
        run.stderr
    );
    assert_eq!(h.text(), "good one\n");
    let names: Vec<String> = std::fs::read_dir(h.root.join("etc"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["app.conf"]);
    // The desired state is to blame: the same content is held, not retried.
    h.converge().expect_code(3);
}

#[test]
fn a_sensitive_files_validator_output_is_not_shown() {
    let h = Host::new();
    h.declare(&validated("hunter2", "sensitive = true\n"));
    let run = h.converge();
    run.expect_code(4);
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
    assert!(
        run.stderr.contains("its output is hidden"),
        "{}",
        run.stderr
    );
    assert!(!h.file().exists());
}

#[test]
fn a_validator_that_cannot_run_is_the_hosts_fault_and_is_tried_again() {
    let h = Host::new();
    h.declare(
        "[[file]]\npath = '/etc/app.conf'\ncontent = 'x'\nvalidate = ['/nonexistent/validator', '%']\n",
    );
    h.converge().expect_code(4);
    assert!(!h.file().exists());
    // Not quarantined: the next run tries again.
    h.converge().expect_code(4);
}
