//! `GitTree` reads a fetched commit straight from the cache's object database.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::common::*;
use driftless::desired::tree::{ConfigTree, EntryKind};
use driftless::source::git::{GitTree, fetch, open_or_init_cache};

#[test]
fn reads_files_dirs_symlinks_and_submodules() {
    let tmp = tempfile::tempdir().unwrap();
    let src = new_repo(&tmp.path().join("src"));
    commit_file(&src, "hosts/web1.toml", "role = \"web\"\n", "web1");
    commit_file(&src, "hosts/db1.toml", "role = \"db\"\n", "db1");
    commit_file(
        &src,
        "roles/web/files/index.html",
        "<h1>hi</h1>\n",
        "web role",
    );
    std::fs::write(src.join("run.sh"), "#!/bin/sh\n").unwrap();
    git(&src, &["add", "run.sh"]);
    git(&src, &["update-index", "--chmod=+x", "run.sh"]);
    std::os::unix::fs::symlink("hosts/web1.toml", src.join("current")).unwrap();
    std::os::unix::fs::symlink("roles/web", src.join("webrole")).unwrap();
    git(&src, &["add", "current", "webrole"]);
    // A submodule entry (gitlink) pointing at some commit; added last, as
    // `git add -A` would drop it for lack of a checkout.
    let some_commit = head(&src).to_string();
    git(
        &src,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{some_commit},vendor/lib"),
        ],
    );
    git(&src, &["commit", "-q", "-m", "links"]);
    let commit = head(&src);

    let cache = tmp.path().join("cache");
    let repo = open_or_init_cache(&cache).unwrap();
    fetch(
        &repo,
        &settings(&src.display().to_string(), Duration::from_secs(30)),
        &AtomicBool::new(false),
    )
    .unwrap();
    // Drop the source: everything must come from the cache.
    std::fs::remove_dir_all(&src).unwrap();

    let tree = GitTree::new(&repo, commit).unwrap();
    assert_eq!(
        tree.describe(),
        format!("commit {}", &commit.to_string()[..12])
    );

    assert_eq!(tree.kind("").unwrap(), Some(EntryKind::Dir));
    assert_eq!(tree.kind("hosts").unwrap(), Some(EntryKind::Dir));
    assert_eq!(
        tree.kind("hosts/web1.toml").unwrap(),
        Some(EntryKind::File { size: 13 })
    );
    assert_eq!(tree.read("hosts/web1.toml").unwrap(), b"role = \"web\"\n");
    assert_eq!(
        tree.kind("run.sh").unwrap(),
        Some(EntryKind::File { size: 10 })
    );
    assert_eq!(tree.read("run.sh").unwrap(), b"#!/bin/sh\n");
    assert_eq!(
        tree.kind("current").unwrap(),
        Some(EntryKind::Symlink {
            target: "hosts/web1.toml".into()
        })
    );
    assert_eq!(tree.kind("vendor/lib").unwrap(), Some(EntryKind::Other));
    assert_eq!(tree.kind("nope").unwrap(), None);
    assert_eq!(tree.kind("hosts/nope.toml").unwrap(), None);
    // Below a file, and through a symlinked directory: absent, never followed.
    assert_eq!(tree.kind("run.sh/x").unwrap(), None);
    assert_eq!(tree.kind("webrole/files/index.html").unwrap(), None);
    assert!(tree.kind("hosts/../run.sh").is_err());
    assert!(tree.kind("/hosts").is_err());

    assert_eq!(
        tree.list("").unwrap(),
        ["current", "hosts", "roles", "run.sh", "vendor", "webrole"]
    );
    assert_eq!(tree.list("hosts").unwrap(), ["db1.toml", "web1.toml"]);
    assert_eq!(tree.list("roles/web/files").unwrap(), ["index.html"]);
    assert!(tree.list("missing").unwrap().is_empty());
    assert!(tree.list("run.sh").is_err());

    let err = tree.read("current").unwrap_err();
    assert!(format!("{err:#}").contains("not a regular file"), "{err:#}");
    assert!(tree.read("hosts").is_err());
    let err = tree.read("missing.toml").unwrap_err();
    assert!(format!("{err:#}").contains(&tree.describe()), "{err:#}");
}

#[test]
fn unknown_commit_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = open_or_init_cache(tmp.path()).unwrap();
    let id = gix::ObjectId::from_hex(b"1234567890123456789012345678901234567890").unwrap();
    let err = GitTree::new(&repo, id).err().expect("no such commit");
    assert!(format!("{err:#}").contains(&id.to_string()), "{err:#}");
}
