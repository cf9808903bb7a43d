//! Pruning on temporary roots: what the repo no longer declares is
//! removed if driftless created it and put back byte for byte if it was
//! there before; a directory holding what driftless does not manage is
//! left with a note; `prune = false` hands a resource back; and a
//! converge that fails restores what pruning removed.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::util::{Env, converge_args, plan_json_args, write_repo};

const KEEP: &str = "[[file]]\npath = '/etc/keep'\ncontent = \"kept\\n\"\n";

#[test]
fn dropped_resources_are_removed_or_put_back_as_they_were() {
    let env = Env::new();
    let repo = env.path().join("repo");
    let root = env.path().join("root");
    // Was there before driftless: restored with its bytes, mode and owner.
    write_repo(&root, &[("etc/app.conf", "original\n")]);
    let conf = root.join("etc/app.conf");
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    nix::unistd::chown(
        &conf,
        Some(nix::unistd::Uid::from_raw(7)),
        Some(nix::unistd::Gid::from_raw(8)),
    )
    .expect("chown");
    write_repo(
        &repo,
        &[(
            "hosts/h.toml",
            &format!(
                "{KEEP}\
                 [[file]]\npath = '/etc/app.conf'\ncontent = \"managed\\n\"\nmode = '0600'\n\n\
                 [[file]]\npath = '/etc/motd'\ncontent = \"hello\\n\"\n\n\
                 [[directory]]\npath = '/srv/data'\n\n\
                 [[directory]]\npath = '/srv/empty'\n\n\
                 [[symlink]]\npath = '/etc/current'\ntarget = 'motd'\n\n\
                 [[file]]\npath = '/etc/handed-back'\ncontent = \"mine now\\n\"\nprune = false\n"
            ),
        )],
    );
    let args = converge_args(&repo, &root, "h");
    env.run(&args).expect_code(2);
    assert_eq!(std::fs::read_to_string(&conf).expect("conf"), "managed\n");
    // Someone puts a file of their own in a managed directory.
    std::fs::write(root.join("srv/data/theirs"), "not driftless's\n").expect("write");

    write_repo(&repo, &[("hosts/h.toml", KEEP)]);
    let plan = env.run(&plan_json_args(&repo, &root, "h"));
    plan.expect_code(2);
    let json: serde_json::Value = serde_json::from_str(plan.stdout.trim()).expect("json");
    let reasons = |key: &str| -> String {
        json["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .find(|c| c["resource"]["key"] == key)
            .map(|c| c["reasons"][0].as_str().expect("reason").to_owned())
            .unwrap_or_else(|| panic!("no change for {key}: {json}"))
    };
    assert_eq!(
        reasons("/etc/motd"),
        "no longer declared; created by driftless (generation 1)"
    );
    assert_eq!(
        reasons("/etc/app.conf"),
        "no longer declared; put back as it was before driftless managed it (generation 1)"
    );
    let notes = json["notices"].to_string();
    assert!(notes.contains("/srv/data is no longer declared"), "{notes}");
    assert!(
        notes.contains("file:/etc/handed-back is no longer declared and has `prune = false`"),
        "{notes}"
    );

    env.run(&args).expect_code(2);
    assert!(
        !root.join("etc/motd").exists(),
        "a file driftless created was left"
    );
    assert!(
        !root.join("srv/empty").exists(),
        "an empty directory driftless created was left"
    );
    assert!(
        root.join("etc/current").symlink_metadata().is_err(),
        "the symlink was left"
    );
    assert_eq!(std::fs::read_to_string(&conf).expect("conf"), "original\n");
    let m = std::fs::metadata(&conf).expect("stat");
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 7, 8));
    assert_eq!(
        std::fs::read_to_string(root.join("srv/data/theirs")).expect("theirs"),
        "not driftless's\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/handed-back")).expect("handed back"),
        "mine now\n"
    );
    // Forgotten now: nothing more to do, and a hand change to the handed
    // back file is not healed.
    std::fs::write(root.join("etc/handed-back"), "changed by hand\n").expect("write");
    env.run(&args).expect_code(0);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/handed-back")).expect("handed back"),
        "changed by hand\n"
    );
}

#[test]
fn a_failed_converge_restores_what_pruning_removed() {
    let env = Env::new();
    let repo = env.path().join("repo");
    let root = env.path().join("root");
    write_repo(
        &repo,
        &[(
            "hosts/h.toml",
            &format!("{KEEP}[[file]]\npath = '/etc/motd'\ncontent = \"hello\\n\"\n"),
        )],
    );
    let args = converge_args(&repo, &root, "h");
    env.run(&args).expect_code(2);
    write_repo(
        &repo,
        &[(
            "hosts/h.toml",
            &format!("{KEEP}[[check]]\nname = 'fails'\ncommand = ['/bin/false']\nretries = 0\n"),
        )],
    );
    env.run(&args).expect_code(4);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/motd")).expect("motd restored"),
        "hello\n"
    );
    // The inventory still holds it: the next good commit prunes it.
    write_repo(&repo, &[("hosts/h.toml", KEEP)]);
    env.run(&args).expect_code(2);
    assert!(!root.join("etc/motd").exists());
}
