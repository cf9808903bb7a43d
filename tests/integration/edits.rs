//! Edits of part of a file something else owns (`[[line]]`, `[[block]]`,
//! `[[ini]]`) on a temporary root: applied with the file's owner and mode
//! kept, idempotent, healed, shown as a diff of the whole file, rolled
//! back, pruned to what they replaced (other changes to the file stay),
//! validated, and refused where they cannot be right.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::util::{Env, converge_args, fingerprint, plan_json_args, write_repo};

const SSHD: &str = "# from the openssh-server package\n#PermitRootLogin prohibit-password\nPasswordAuthentication yes\n\nMatch User backup\n    X11Forwarding no\n";
const DNF: &str = "[main]\ngpgcheck=1\ninstallonly_limit=3\n";

struct Host {
    env: Env,
    repo: PathBuf,
    root: PathBuf,
}

impl Host {
    fn new() -> Self {
        let env = Env::new();
        let (repo, root) = (env.path().join("repo"), env.path().join("root"));
        for (path, text, mode) in [
            ("etc/ssh/sshd_config", SSHD, 0o600),
            ("etc/dnf/dnf.conf", DNF, 0o644),
        ] {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        Self { env, repo, root }
    }

    fn declare(&self, body: &str) {
        std::fs::remove_dir_all(&self.repo).ok();
        let marker = self.env.path().join("refreshed");
        write_repo(
            &self.repo,
            &[(
                "hosts/h.toml",
                &body.replace("{marker}", &marker.display().to_string()),
            )],
        );
    }

    fn converge(&self) -> crate::util::Run {
        self.env.run(&converge_args(&self.repo, &self.root, "h"))
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.root.join(path)).unwrap()
    }

    fn refreshed(&self) -> usize {
        std::fs::read_to_string(self.env.path().join("refreshed")).map_or(0, |t| t.lines().count())
    }
}

const HARDENING: &str = r#"
[[line]]
name = "sshd-no-root"
path = "/etc/ssh/sshd_config"
line = "PermitRootLogin no"
match = "^#?PermitRootLogin"

[[block]]
name = "sshd-crypto"
path = "/etc/ssh/sshd_config"
block = "Ciphers aes256-gcm@openssh.com\nMACs hmac-sha2-512-etm@openssh.com\n"
before = "^Match "

[[ini]]
name = "dnf-installonly"
path = "/etc/dnf/dnf.conf"
section = "main"
key = "installonly_limit"
value = 2

[[ini]]
name = "dnf-gpgcheck"
path = "/etc/dnf/dnf.conf"
section = "main"
key = "gpgcheck"
value = 1

[[command]]
name = "reload-sshd"
command = ["sh", "-c", "echo reload >> {marker}"]
refresh_on = ["line:sshd-no-root", "block:sshd-crypto"]
"#;

const SSHD_HARDENED: &str = "# from the openssh-server package\nPermitRootLogin no\nPasswordAuthentication yes\n\n# BEGIN DRIFTLESS MANAGED BLOCK sshd-crypto\nCiphers aes256-gcm@openssh.com\nMACs hmac-sha2-512-etm@openssh.com\n# END DRIFTLESS MANAGED BLOCK sshd-crypto\nMatch User backup\n    X11Forwarding no\n";

#[test]
fn edits_change_their_part_keep_the_files_owner_and_mode_and_heal() {
    let h = Host::new();
    h.declare(HARDENING);
    let plan = h.env.run(&plan_json_args(&h.repo, &h.root, "h"));
    plan.expect_code(2);
    let json: serde_json::Value = serde_json::from_str(plan.stdout.trim()).unwrap();
    let line = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["resource"]["kind"] == "line")
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(line["resource"]["key"], "sshd-no-root");
    let diff = line["diff"].as_str().unwrap_or_default();
    assert!(
        diff.contains("-#PermitRootLogin prohibit-password")
            && diff.contains("+PermitRootLogin no"),
        "{diff}"
    );

    h.converge().expect_code(2);
    assert_eq!(h.read("etc/ssh/sshd_config"), SSHD_HARDENED);
    // `gpgcheck=1` was already 1: the package's spelling stays.
    assert_eq!(
        h.read("etc/dnf/dnf.conf"),
        "[main]\ngpgcheck=1\ninstallonly_limit = 2\n"
    );
    let mode = std::fs::metadata(h.root.join("etc/ssh/sshd_config"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o600);
    assert_eq!(h.refreshed(), 1, "one refresh for both edits");
    h.converge().expect_code(0);
    assert_eq!(h.refreshed(), 1);

    // Someone puts the old line back: healed, and the refresh runs.
    std::fs::write(
        h.root.join("etc/ssh/sshd_config"),
        SSHD_HARDENED.replace("PermitRootLogin no", "PermitRootLogin yes"),
    )
    .unwrap();
    h.converge().expect_code(2);
    assert_eq!(h.read("etc/ssh/sshd_config"), SSHD_HARDENED);
    assert_eq!(h.refreshed(), 2);
}

#[test]
fn a_failed_check_puts_the_edited_files_back() {
    let h = Host::new();
    h.declare(&format!(
        "{HARDENING}\n[[check]]\nname = 'broken'\ncommand = ['false']\nretries = 0\n"
    ));
    h.converge().expect_code(4);
    assert_eq!(h.read("etc/ssh/sshd_config"), SSHD);
    assert_eq!(h.read("etc/dnf/dnf.conf"), DNF);
}

#[test]
fn dropped_edits_put_back_what_they_replaced_and_leave_the_rest() {
    let h = Host::new();
    h.declare(HARDENING);
    h.converge().expect_code(2);
    // The package updates another line meanwhile.
    let updated = h
        .read("etc/ssh/sshd_config")
        .replace("PasswordAuthentication yes", "PasswordAuthentication no");
    std::fs::write(h.root.join("etc/ssh/sshd_config"), &updated).unwrap();
    h.declare("");
    h.converge().expect_code(2);
    assert_eq!(
        h.read("etc/ssh/sshd_config"),
        SSHD.replace("PasswordAuthentication yes", "PasswordAuthentication no")
    );
    assert_eq!(h.read("etc/dnf/dnf.conf"), DNF);
    h.converge().expect_code(0);
}

#[test]
fn a_validator_refuses_an_edit_before_it_replaces_the_file() {
    let h = Host::new();
    h.declare(
        "[[line]]\nname = 'bad'\npath = '/etc/ssh/sshd_config'\nline = 'NoSuchOption yes'\nvalidate = ['/bin/sh', '-c', '! grep -q NoSuchOption \"$1\" || { echo \"unsupported option\" >&2; exit 255; }', 'sshd-t', '%']\n",
    );
    let run = h.converge();
    run.expect_code(4);
    assert!(run.stderr.contains("unsupported option"), "{}", run.stderr);
    assert_eq!(h.read("etc/ssh/sshd_config"), SSHD);
}

#[test]
fn an_edit_of_a_missing_file_is_an_error_unless_it_may_create_it() {
    let h = Host::new();
    h.declare("[[line]]\nname = 'x'\npath = '/etc/motd.d/note'\nline = 'hello'\n");
    let before = fingerprint(&h.root);
    let run = h.converge();
    run.expect_code(1);
    assert!(
        run.stderr.contains("/etc/motd.d/note does not exist"),
        "{}",
        run.stderr
    );
    assert_eq!(fingerprint(&h.root), before);

    h.declare("[[line]]\nname = 'x'\npath = '/etc/motd.d/note'\nline = 'hello'\ncreate = true\n");
    h.converge().expect_code(2);
    assert_eq!(h.read("etc/motd.d/note"), "hello\n");
    h.converge().expect_code(0);
}

/// Regression (review): an edit replaced by a whole `[[file]]` of the same
/// path was "put back" after the file was written, undoing it.
#[test]
fn an_edit_that_becomes_a_whole_file_is_not_undone_over_it() {
    let h = Host::new();
    h.declare("[[line]]\nname = 'root'\npath = '/etc/ssh/sshd_config'\nline = 'PermitRootLogin no'\nmatch = '^#?PermitRootLogin'\n");
    h.converge().expect_code(2);
    h.declare("[[file]]\npath = '/etc/ssh/sshd_config'\ncontent = \"whole\\n\"\nmode = '0600'\n");
    let run = h.converge();
    run.expect_code(2);
    assert_eq!(h.read("etc/ssh/sshd_config"), "whole\n");
    assert!(
        run.stdout.contains("managed by another declaration now"),
        "{}",
        run.stdout
    );
    h.converge().expect_code(0);
}
