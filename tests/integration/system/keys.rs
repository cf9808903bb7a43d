//! `[[authorized_key]]` on a real host: a user declared in the same
//! converge gets its keys in a `~/.ssh` sshd accepts (owner, 0700, 0600),
//! as ssh-keygen reads them; a no-op; a key added by hand removed by
//! `exclusive`; a failed converge puts the file back; dropped, root's file
//! gets back the key it held before driftless and loses the one it added.

use super::harness::Host;
use crate::util::ssh_keys::{ADMIN, BACKUP, EARLIER};

const HOST_FILE: &str = "hosts/web1.toml";
const ALICE: &str = "/home/alice/.ssh/authorized_keys";
const ROOT: &str = "/root/.ssh/authorized_keys";

/// The backup key, limited to one network and without agent forwarding.
fn backup() -> String {
    format!("from=\"10.0.0.0/8\",no-agent-forwarding {BACKUP}")
}

/// alice (declared here) with `keys`, and root with ADMIN added; `extra`
/// after them.
fn config(keys: &[&str], extra: &str) -> String {
    let keys: Vec<String> = keys.iter().map(|k| format!("'{k}'")).collect();
    format!(
        "[[user]]\nname = 'alice'\n\n[[authorized_key]]\nuser = 'alice'\nkeys = [{}]\nexclusive = true\n\n[[authorized_key]]\nuser = 'root'\nkeys = ['{ADMIN}']\n{extra}",
        keys.join(", ")
    )
}

/// `stat`'s owner, group and mode of a host path.
fn stat(host: &Host, path: &str) -> String {
    let run = host.exec(&["stat", "-c", "%U:%G %a", path]);
    run.expect_code(0);
    run.stdout.trim().to_owned()
}

/// The fingerprints ssh-keygen reads from an authorized_keys file, with
/// their comments.
fn listed(host: &Host, path: &str) -> Vec<String> {
    let run = host.exec(&["ssh-keygen", "-l", "-f", path]);
    run.expect_code(0);
    run.stdout.lines().map(str::to_owned).collect()
}

#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
fn authorized_keys_are_written_as_sshd_wants_healed_rolled_back_and_put_back() {
    let host = Host::boot("web1");
    // Root's file held a key before driftless.
    std::fs::create_dir_all(host.path("/root/.ssh")).expect("mkdir /root/.ssh");
    std::fs::write(host.path(ROOT), format!("{EARLIER}\n")).expect("write root's keys");
    let backup = backup();
    host.write_config(&[(HOST_FILE, &config(&[ADMIN, &backup], ""))]);
    host.converge().expect_code(2);

    assert_eq!(
        host.read(ALICE).as_deref(),
        Some(format!("{ADMIN}\n{backup}\n").as_str())
    );
    let keys = listed(&host, ALICE);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys[0].contains("admin@laptop") && keys[1].contains("backup"),
        "{keys:?}"
    );
    assert!(keys.iter().all(|k| k.contains("(ED25519)")), "{keys:?}");
    // sshd's StrictModes: the user's own, nobody else may write.
    assert_eq!(stat(&host, "/home/alice/.ssh"), "alice:alice 700");
    assert_eq!(stat(&host, ALICE), "alice:alice 600");
    assert_eq!(
        host.read(ROOT).as_deref(),
        Some(format!("{EARLIER}\n{ADMIN}\n").as_str())
    );

    // A no-op changes nothing, not even the inode.
    let before = (host.identity(ALICE), host.identity(ROOT));
    host.converge().expect_code(0);
    assert_eq!((host.identity(ALICE), host.identity(ROOT)), before);

    // A key added by hand: `exclusive` takes it away.
    host.exec(&[
        "ssh-keygen",
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "by-hand",
        "-f",
        "/root/hand",
    ])
    .expect_code(0);
    host.exec(&["sh", "-c", &format!("cat /root/hand.pub >> {ALICE}")])
        .expect_code(0);
    // And the file handed to root, writable by its group: both healed.
    host.exec(&["chown", "root:root", ALICE]).expect_code(0);
    host.exec(&["chmod", "0664", ALICE]).expect_code(0);
    assert_eq!(listed(&host, ALICE).len(), 3);
    host.converge().expect_code(2);
    assert_eq!(
        host.read(ALICE).as_deref(),
        Some(format!("{ADMIN}\n{backup}\n").as_str())
    );
    assert_eq!(
        stat(&host, ALICE),
        "alice:alice 600",
        "owner and mode healed"
    );

    // A converge that fails its check puts the file back.
    let healed = host.identity(ALICE);
    host.write_config(&[(
        HOST_FILE,
        &config(
            &[ADMIN],
            "\n[[check]]\nname = 'broken'\ncommand = ['false']\nretries = 0\n",
        ),
    )]);
    host.converge().expect_code(4);
    assert_eq!(
        host.read(ALICE).as_deref(),
        Some(format!("{ADMIN}\n{backup}\n").as_str())
    );
    assert_eq!(stat(&host, ALICE), "alice:alice 600");
    assert_ne!(host.identity(ALICE), healed, "written back, not left");

    // Dropped: root keeps the key it had before and loses the one
    // driftless added; alice's file, which driftless created, is emptied.
    host.write_config(&[(HOST_FILE, "[[user]]\nname = 'alice'\n")]);
    host.converge().expect_code(2);
    assert_eq!(
        host.read(ROOT).as_deref(),
        Some(format!("{EARLIER}\n").as_str())
    );
    assert_eq!(host.read(ALICE).as_deref(), Some(""));
    host.converge().expect_code(0);
}
