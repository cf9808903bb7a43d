//! A state directory written by an earlier release is read by this one:
//! its generations, snapshots, inventory and quarantine keep their
//! meaning, so an upgrade of driftless never strands a host.
//!
//! `tests/fixtures/state-2026-12/` was written by the release of December
//! 2026 (before the resource kinds got their own modules): three converges
//! of a temporary root (v1; v2; v3 with a failing check, rolled back and
//! quarantined), with the root's path replaced by `@ROOT@`. `/etc/app.conf`
//! was there before driftless (`original`, mode 0640).

use std::path::{Path, PathBuf};

use crate::util::{Env, write_repo};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/state-2026-12");

/// Copies `from` into `to`, putting `root` where the fixture says `@ROOT@`.
fn copy_tree(from: &Path, to: &Path, root: &str) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_tree(&src, &dst, root);
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else {
            let bytes = std::fs::read(&src).unwrap();
            let bytes = match String::from_utf8(bytes) {
                Ok(text) => text.replace("@ROOT@", root).into_bytes(),
                Err(e) => e.into_bytes(),
            };
            std::fs::write(&dst, bytes).unwrap();
        }
    }
}

struct Old {
    env: Env,
    repo: PathBuf,
    root: PathBuf,
}

impl Old {
    /// The fixture's state directory and root, as the old release left them.
    fn new() -> Self {
        let env = Env::new();
        let root = env.path().join("root");
        let repo = env.path().join("repo");
        copy_tree(&Path::new(FIXTURE).join("root"), &root, "");
        let canonical = std::fs::canonicalize(&root).unwrap();
        copy_tree(
            &Path::new(FIXTURE).join("state"),
            &env.state_dir(),
            canonical.to_str().unwrap(),
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(env.state_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(
            root.join("etc/app.conf"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let v2 = std::fs::read_to_string(Path::new(FIXTURE).join("v2.toml")).unwrap();
        write_repo(&repo, &[("hosts/h.toml", &v2)]);
        Self { env, repo, root }
    }

    fn run(&self, args: &[&str]) -> crate::util::Run {
        let mut all: Vec<&str> = args.to_vec();
        let (repo, root) = (self.repo.to_str().unwrap(), self.root.to_str().unwrap());
        if matches!(args[0], "converge" | "plan") {
            all.extend(["--repo", repo, "--host", "h"]);
        }
        if matches!(args[0], "converge" | "plan" | "rollback" | "recover") {
            all.extend(["--root", root]);
        }
        self.env.run(&all)
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.root.join(path)).unwrap()
    }
}

#[test]
fn a_state_directory_of_the_previous_release_is_read_rolled_back_and_pruned() {
    let old = Old::new();
    // Its history: two applied generations and a rolled-back one, and the
    // quarantine that came with it.
    let history = old.run(&["history", "--json"]);
    history.expect_code(0);
    let doc: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    let statuses: Vec<String> = doc["history"]
        .as_array()
        .unwrap_or_else(|| panic!("{doc}"))
        .iter()
        .map(|g| g["status"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(statuses.len(), 3, "{doc}");
    assert!(
        statuses.iter().any(|s| s.contains("rolled")),
        "{statuses:?}"
    );
    let status = old.run(&["status", "--json"]);
    status.expect_code(0);
    assert!(
        status.stdout.contains("sha256:dc65d311fa96"),
        "{}",
        status.stdout
    );

    // The desired state of v2 is in force: nothing to do.
    old.run(&["converge", "--now"]).expect_code(0);

    // Its snapshots undo what it applied: v2 back to v1.
    old.run(&["rollback"]).expect_code(0);
    assert_eq!(old.read("etc/app.conf"), "managed v1\n");
    assert_eq!(old.read("srv/app/version"), "1\n");
    old.run(&["resume"]).expect_code(0);
    old.run(&["converge", "--now"]).expect_code(2);
    assert_eq!(old.read("etc/app.conf"), "managed v2\n");

    // Its inventory puts back what was there before: dropping app.conf
    // restores the original bytes and mode; what driftless made goes.
    write_repo(&old.repo, &[("hosts/h.toml", "")]);
    old.run(&["converge", "--now"]).expect_code(2);
    assert_eq!(old.read("etc/app.conf"), "original\n");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(old.root.join("etc/app.conf"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o640);
    assert!(!old.root.join("srv/app").exists());
    old.run(&["converge", "--now"]).expect_code(0);
}
