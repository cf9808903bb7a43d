//! The stat cache: a no-op converge reads no managed file whose stat did
//! not move, and no change to a file ever hides behind it — content changed
//! with size and mtime put back, mode, owner, a replaced inode, a retargeted
//! symlink.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::{Env, Run, converge_args, fingerprint, write_repo};

const FILES: [&str; 5] = ["/etc/a", "/etc/b", "/etc/c", "/etc/d", "/etc/e"];

fn host_file() -> String {
    let mut text = String::new();
    for f in FILES {
        text.push_str(&format!(
            "[[file]]\npath = \"{f}\"\ncontent = \"content of {f}\\n\"\nmode = \"0644\"\n\n"
        ));
    }
    text.push_str("[[symlink]]\npath = \"/etc/link\"\ntarget = \"a\"\n");
    text
}

/// The paths a `-vv` run observed from the cache, without reading them.
fn cached(run: &Run) -> Vec<String> {
    run.stderr
        .lines()
        .filter(|l| l.contains("observed") && l.contains("cached=true"))
        .filter_map(|l| {
            let at = l.find("path=\"")? + 6;
            let rest = &l[at..];
            Some(rest[..rest.find('"')?].to_owned())
        })
        .collect()
}

/// Files written in this second are not trusted (their timestamps could be
/// shared by a later write): wait until they are old enough.
fn age_past_racy_window() {
    std::thread::sleep(Duration::from_millis(2100));
}

#[test]
fn a_warm_no_op_reads_no_file_and_writes_no_cache() {
    let env = Env::new();
    let root = env.path().join("root");
    let repo = env.path().join("repo");
    write_repo(&repo, &[("hosts/h.toml", &host_file())]);
    let mut args = converge_args(&repo, &root, "h");
    env.run(&args).expect_code(2);
    age_past_racy_window();
    args.push("-vv".into());
    // The first run after the writes reads every file and records them.
    let cold = env.run(&args);
    cold.expect_code(0);
    assert!(cached(&cold).is_empty(), "{}", cold.stderr);
    assert!(env.state_dir().join("stat-cache.json").exists());
    let state = fingerprint(&env.state_dir());
    let warm = env.run(&args);
    warm.expect_code(0);
    let mut hits = cached(&warm);
    hits.sort();
    assert_eq!(hits, FILES, "{}", warm.stderr);
    let mut after = fingerprint(&env.state_dir());
    let mut before = state;
    after.remove(Path::new("last-run.json"));
    before.remove(Path::new("last-run.json"));
    assert_eq!(after, before, "a warm no-op rewrote the state directory");
}

#[test]
fn no_change_hides_behind_the_cache() {
    let env = Env::new();
    let root = env.path().join("root");
    let repo = env.path().join("repo");
    write_repo(&repo, &[("hosts/h.toml", &host_file())]);
    let args = converge_args(&repo, &root, "h");
    env.run(&args).expect_code(2);
    age_past_racy_window();
    env.run(&args).expect_code(0);
    let p = |f: &str| root.join(f.trim_start_matches('/'));
    assert!(
        std::fs::read_to_string(env.state_dir().join("stat-cache.json"))
            .unwrap()
            .contains("/etc/a"),
        "the cache is not warm, so this test would prove nothing"
    );

    // a: same size, mtime put back by `touch -d`: only ctime tells.
    let before = std::fs::metadata(p("/etc/a")).unwrap();
    std::fs::write(p("/etc/a"), "CONTENT OF /etc/a\n").unwrap();
    let touched = Command::new("touch")
        .arg("-d")
        .arg(format!("@{}.{:09}", before.mtime(), before.mtime_nsec()))
        .arg(p("/etc/a"))
        .status()
        .unwrap();
    assert!(touched.success());
    let after = std::fs::metadata(p("/etc/a")).unwrap();
    assert_eq!(
        (after.len(), after.mtime(), after.mtime_nsec()),
        (before.len(), before.mtime(), before.mtime_nsec())
    );
    // b: mode; c: owner; d: another inode, same size, mtime put back.
    std::fs::set_permissions(p("/etc/b"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(p("/etc/c"), Some(65534), None).unwrap();
    let d_before = std::fs::metadata(p("/etc/d")).unwrap();
    let tmp = root.join("etc/d.new");
    std::fs::write(&tmp, "CONTENT OF /etc/d\n").unwrap();
    std::fs::rename(&tmp, p("/etc/d")).unwrap();
    Command::new("touch")
        .arg("-d")
        .arg(format!(
            "@{}.{:09}",
            d_before.mtime(),
            d_before.mtime_nsec()
        ))
        .arg(p("/etc/d"))
        .status()
        .unwrap();
    // The symlink retargeted.
    std::fs::remove_file(root.join("etc/link")).unwrap();
    std::os::unix::fs::symlink("b", root.join("etc/link")).unwrap();

    let heal = env.run(&args);
    heal.expect_code(2);
    for (what, line) in [
        ("content, size and mtime kept", "~ file:/etc/a (write file)"),
        ("mode", "~ file:/etc/b (set owner/group/mode)"),
        ("owner", "~ file:/etc/c (set owner/group/mode)"),
        ("another inode", "~ file:/etc/d (write file)"),
        ("symlink target", "~ symlink:/etc/link (link)"),
    ] {
        assert!(
            heal.stdout.contains(line),
            "a changed {what} was missed:\n{}",
            heal.stdout
        );
    }
    assert!(
        !heal.stdout.contains("/etc/e"),
        "an unchanged file was changed:\n{}",
        heal.stdout
    );
    assert_eq!(
        std::fs::read_to_string(p("/etc/a")).unwrap(),
        "content of /etc/a\n"
    );
    env.run(&args).expect_code(0);
}

/// A `--repo` directory's load is kept under a stamp of every path it
/// looked at: a warm no-op reads no source, and no change to the repo hides
/// behind it — a source edited in place with its size and mtime put back
/// (only ctime tells), a file where the load found none, a source replaced
/// by another inode.
#[test]
fn a_repo_directory_is_loaded_again_whenever_what_it_read_changed() {
    let env = Env::new();
    let root = env.path().join("root");
    let repo = env.path().join("repo");
    write_repo(
        &repo,
        &[
            (
                "hosts/h.toml",
                "[[file]]\npath = \"/etc/motd\"\nsource = \"files/motd\"\n",
            ),
            ("files/motd", "aaaa\n"),
        ],
    );
    let mut args = converge_args(&repo, &root, "h");
    args.push("-vv".into());
    let from_cache = |run: &Run| {
        run.stderr
            .contains("desired state from the state directory")
    };
    let motd = || std::fs::read_to_string(root.join("etc/motd")).unwrap();
    // Written just now: not trusted, nothing kept.
    let first = env.run(&args);
    first.expect_code(2);
    assert!(!env.state_dir().join("desired-cache.json").exists());
    age_past_racy_window();
    let cold = env.run(&args);
    cold.expect_code(0);
    assert!(!from_cache(&cold), "{}", cold.stderr);
    assert!(
        env.state_dir().join("desired-cache.json").exists(),
        "{}",
        cold.stderr
    );
    let warm = env.run(&args);
    warm.expect_code(0);
    assert!(
        from_cache(&warm),
        "the warm no-op loaded the repo: {}",
        warm.stderr
    );

    // a: in place, same size, mtime put back.
    let src = repo.join("files/motd");
    let before = std::fs::metadata(&src).unwrap();
    std::fs::write(&src, "bbbb\n").unwrap();
    let touched = Command::new("touch")
        .arg("-d")
        .arg(format!("@{}.{:09}", before.mtime(), before.mtime_nsec()))
        .arg(&src)
        .status()
        .unwrap();
    assert!(touched.success());
    age_past_racy_window();
    let run = env.run(&args);
    run.expect_code(2);
    assert!(!from_cache(&run), "{}", run.stderr);
    assert_eq!(motd(), "bbbb\n");

    // b: another inode renamed over the source.
    age_past_racy_window();
    env.run(&args).expect_code(0);
    std::fs::write(repo.join("files/motd.new"), "cccc\n").unwrap();
    std::fs::rename(repo.join("files/motd.new"), &src).unwrap();
    age_past_racy_window();
    env.run(&args).expect_code(2);
    assert_eq!(motd(), "cccc\n");

    // c: a file where the load looked and found none (the host's secret
    // vars): it is read, and here refused, not hidden by the cache.
    age_past_racy_window();
    assert!(from_cache(&env.run(&args)));
    std::fs::write(repo.join("hosts/h.secrets.toml.age"), "not age\n").unwrap();
    let run = env.run(&args);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(!from_cache(&run), "{}", run.stderr);
    assert!(run.stderr.contains("h.secrets.toml.age"), "{}", run.stderr);

    // A change younger than the racy window is never trusted either way.
    std::fs::remove_file(repo.join("hosts/h.secrets.toml.age")).unwrap();
    let run = env.run(&args);
    run.expect_code(0);
    assert!(!from_cache(&run), "{}", run.stderr);
}
