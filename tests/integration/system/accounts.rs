//! `[[user]]`, `[[group]]` and secrets on a real host: accounts created,
//! changed, healed and removed with the host's own shadow-utils, a file
//! owned by a user created in the same converge, the account databases
//! restored byte for byte by a rollback, and a secret decrypted with the
//! host's key (and refused, before any change, with another key).

use std::process::Command;

use super::harness::{AGENT_CONFIG, CONFIG_DIR, Host};

const HOST_FILE: &str = "hosts/db1.toml";
const DATABASES: [&str; 4] = ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"];
const HASH: &str = "$6$saltsalt$7sq5tjZ0Wf5gnH0B/5c1ZGzLmxVwxZ7Xb0q6hDvpzK2b3uXGm8g7C9D5oP1hXg0y1kqQdZ8Y4Qy0Zt0y9tQx/.";
const PASSWORD: &str = "s3cret-db-password";

/// The accounts and the files they own; `shell` and `extra` vary.
fn host_file(shell: &str, extra: &str) -> String {
    format!(
        r#"[[group]]
name = "app"
gid = 2500

[[group]]
name = "deploy"
system = true

[[user]]
name = "app"
uid = 2500
group = "app"
groups = ["deploy"]
home = "/home/app"
shell = "{shell}"
comment = "Application"
password = '{HASH}'

[[file]]
path = "/etc/app/app.conf"
content = "owned by app\n"
owner = "app"
group = "app"
mode = "0640"

[[file]]
path = "/etc/app/db.password"
source = "files/db.password.age"
owner = "app"
mode = "0600"
{extra}"#
    )
}

/// Each account database's bytes.
fn databases(host: &Host) -> Vec<Option<String>> {
    DATABASES.iter().map(|p| host.read(p)).collect()
}

/// The line of `name` in an account database.
fn entry(host: &Host, db: &str, name: &str) -> Option<String> {
    host.read(db)?
        .lines()
        .find(|l| l.split(':').next() == Some(name))
        .map(str::to_owned)
}

/// Encrypts `plain` to `recipient` with this machine's driftless, into
/// the host's config repo as `name`.
fn seal(host: &Host, recipient: &str, name: &str, plain: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("plain");
    std::fs::write(&input, plain).expect("write plain");
    let out = host.path(&format!("{CONFIG_DIR}/{name}"));
    std::fs::create_dir_all(out.parent().expect("parent")).expect("mkdir");
    let run = Command::new(env!("CARGO_BIN_EXE_driftless"))
        .args(["secret", "encrypt", "--to", recipient, "--output"])
        .arg(&out)
        .arg(&input)
        .output()
        .expect("run driftless secret encrypt");
    assert!(run.status.success(), "{run:?}");
}

#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
fn users_and_groups_are_managed_and_rolled_back_and_secrets_decrypt_with_the_host_key() {
    let host = Host::boot("db1");
    let keygen = host.driftless(&["secret", "keygen", "/srv/age.key"]);
    keygen.expect_code(0);
    let recipient = keygen.stdout.trim().to_owned();
    std::fs::write(
        host.path(AGENT_CONFIG),
        "[secrets]\nidentity = '/srv/age.key'\n",
    )
    .expect("agent config");
    host.write_config(&[(HOST_FILE, &host_file("/bin/bash", ""))]);
    seal(
        &host,
        &recipient,
        "files/db.password.age",
        &format!("{PASSWORD}\n"),
    );

    // Created: the groups, then the user in them, then the files it owns.
    let run = host.converge();
    run.expect_code(2);
    assert!(!run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD));
    assert!(
        !run.stderr.contains(HASH),
        "the hash was logged: {}",
        run.stderr
    );
    assert_eq!(
        entry(&host, "/etc/passwd", "app").as_deref(),
        Some("app:x:2500:2500:Application:/home/app:/bin/bash")
    );
    assert_eq!(
        entry(&host, "/etc/shadow", "app")
            .as_deref()
            .and_then(|l| l.split(':').nth(1)),
        Some(HASH)
    );
    let deploy = entry(&host, "/etc/group", "deploy").expect("deploy group");
    assert!(deploy.ends_with(":app"), "{deploy}");
    let gid: u32 = deploy
        .split(':')
        .nth(2)
        .expect("gid")
        .parse()
        .expect("number");
    assert!(gid < 1000, "a system group got gid {gid}");
    assert!(host.path("/home/app").is_dir(), "the home was not created");
    let id = host.exec(&["stat", "-c", "%U:%G %a", "/etc/app/app.conf"]);
    assert_eq!(id.stdout.trim(), "app:app 640");
    // The secret, decrypted with the host's key, owned by the new user.
    assert_eq!(
        host.read("/etc/app/db.password").as_deref(),
        Some(format!("{PASSWORD}\n").as_str())
    );
    let id = host.exec(&["stat", "-c", "%U %a", "/etc/app/db.password"]);
    assert_eq!(id.stdout.trim(), "app 600");

    // In sync: nothing to do.
    host.converge().expect_code(0);

    // Drift: another shell, a supplementary group taken away, another
    // password. Detected, and healed.
    host.exec(&["usermod", "-s", "/bin/sh", "-G", "", "-p", "!", "app"])
        .expect_code(0);
    let (_, plan) = host.plan_json();
    let reasons = plan["changes"][0]["reasons"].to_string();
    assert!(
        reasons.contains("shell is `/bin/sh`, should be `/bin/bash`"),
        "{plan}"
    );
    assert!(
        reasons.contains("supplementary groups are none, should be deploy"),
        "{plan}"
    );
    assert!(reasons.contains("password differs (hidden)"), "{plan}");
    assert!(!plan.to_string().contains(HASH), "the plan shows the hash");
    host.converge().expect_code(2);
    assert_eq!(
        entry(&host, "/etc/passwd", "app").as_deref(),
        Some("app:x:2500:2500:Application:/home/app:/bin/bash")
    );
    assert!(
        entry(&host, "/etc/group", "deploy")
            .expect("deploy")
            .ends_with(":app")
    );
    assert!(
        entry(&host, "/etc/shadow", "app")
            .expect("shadow")
            .contains(HASH)
    );
    host.converge().expect_code(0);

    // A failing converge (a new shell and a new user, then a failing
    // check): the account databases come back byte for byte.
    let before = databases(&host);
    host.write_config(&[(
        HOST_FILE,
        &host_file(
            "/bin/sh",
            "\n[[user]]\nname = 'extra'\nuid = 2600\n\n[[check]]\nname = 'fails'\ncommand = ['/bin/false']\nretries = 0\n",
        ),
    )]);
    seal(
        &host,
        &recipient,
        "files/db.password.age",
        &format!("{PASSWORD}\n"),
    );
    host.converge().expect_code(4);
    assert_eq!(
        databases(&host),
        before,
        "the account databases were not restored"
    );
    assert_eq!(entry(&host, "/etc/passwd", "extra"), None);

    // With another host's key the secret cannot be read: nothing changes.
    host.write_config(&[(HOST_FILE, &host_file("/bin/sh", ""))]);
    seal(&host, &recipient, "files/db.password.age", "rotated\n");
    host.driftless(&["secret", "keygen", "/srv/other.key"])
        .expect_code(0);
    std::fs::write(
        host.path(AGENT_CONFIG),
        "[secrets]\nidentity = '/srv/other.key'\n",
    )
    .expect("agent config");
    let run = host.converge();
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("`files/db.password.age` is not encrypted to this host's key"),
        "{}",
        run.stderr
    );
    assert_eq!(databases(&host), before, "a wrong key changed the accounts");
    assert_eq!(
        host.read("/etc/app/db.password").as_deref(),
        Some(format!("{PASSWORD}\n").as_str())
    );

    // Removed: the user, then its groups; its home is left.
    std::fs::write(
        host.path(AGENT_CONFIG),
        "[secrets]\nidentity = '/srv/age.key'\n",
    )
    .expect("agent config");
    host.write_config(&[(
        HOST_FILE,
        "[[user]]\nname = 'app'\nstate = 'absent'\n\n[[group]]\nname = 'app'\nstate = 'absent'\n\n[[group]]\nname = 'deploy'\nstate = 'absent'\n",
    )]);
    host.converge().expect_code(2);
    assert_eq!(entry(&host, "/etc/passwd", "app"), None);
    assert_eq!(entry(&host, "/etc/group", "app"), None);
    assert_eq!(entry(&host, "/etc/group", "deploy"), None);
    assert!(host.path("/home/app").is_dir(), "the home was removed");
    host.converge().expect_code(0);
}
