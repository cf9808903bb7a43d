//! Helpers shared by the integration tests: repos made with the real `git`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use driftless::source::git::GitSourceSettings;
use gix::ObjectId;

/// Runs `git` in `dir` isolated from the host's git config, returning stdout.
pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    git_env(dir, args, &[])
}

/// Like [`git`], with extra environment variables.
pub(crate) fn git_env(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> String {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// A fresh non-bare repository on branch `main`.
pub(crate) fn new_repo(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    git(dir, &["init", "-q"]);
    dir.to_path_buf()
}

/// Writes `path` (creating parents) and commits everything with `msg`.
pub(crate) fn commit_file(repo: &Path, path: &str, contents: &str, msg: &str) -> ObjectId {
    let full = repo.join(path);
    std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
    std::fs::write(&full, contents).expect("write");
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", msg]);
    head(repo)
}

/// The id of `HEAD` in `repo`.
pub(crate) fn head(repo: &Path) -> ObjectId {
    rev(repo, "HEAD")
}

/// Resolves `spec` in `repo`.
pub(crate) fn rev(repo: &Path, spec: &str) -> ObjectId {
    ObjectId::from_hex(git(repo, &["rev-parse", spec]).as_bytes()).expect("hex id")
}

/// Settings for `url` on branch `main` with `timeout`.
pub(crate) fn settings(url: &str, timeout: Duration) -> GitSourceSettings {
    GitSourceSettings {
        url: url.to_owned(),
        branch: "main".to_owned(),
        ssh_key: None,
        known_hosts: None,
        ca_file: None,
        timeout,
    }
}

/// Number of `.pack` files in a bare cache.
pub(crate) fn pack_count(cache: &Path) -> usize {
    std::fs::read_dir(cache.join("objects/pack"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
                .count()
        })
        .unwrap_or(0)
}
