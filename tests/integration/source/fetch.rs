//! Fetching into the cache over local transports, history checks, and the
//! time bounds against servers that never answer.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::common::*;
use driftless::source::git::{
    SourceError, commits_between, ensure_not_rewound, fetch, fetched_head, is_ancestor,
    open_or_init_cache,
};

const LOCAL_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn fetch_from_file_url_and_plain_path() {
    let tmp = tempfile::tempdir().unwrap();
    let src = new_repo(&tmp.path().join("src"));
    let c1 = commit_file(&src, "hosts/web1.toml", "a = 1\n", "first");

    for (name, url) in [
        ("cache-url", format!("file://{}", src.display())),
        ("cache-path", src.display().to_string()),
    ] {
        let cache = tmp.path().join(name);
        let repo = open_or_init_cache(&cache).unwrap();
        assert!(repo.is_bare());
        let out = fetch(
            &repo,
            &settings(&url, LOCAL_TIMEOUT),
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(out.head, c1, "{url}");
        assert_eq!(out.previous, None);
        assert!(out.changed && out.pack_received);
        assert_eq!(fetched_head(&repo).unwrap(), Some(c1));
        // Nothing about the remote was persisted in the cache's config.
        let config = std::fs::read_to_string(cache.join("config")).unwrap();
        assert!(!config.contains("remote"), "{config}");
        assert!(!config.contains("sshCommand"), "{config}");
        // Re-opening an existing cache works and sees the fetched ref.
        let again = open_or_init_cache(&cache).unwrap();
        assert_eq!(fetched_head(&again).unwrap(), Some(c1));
    }
}

#[test]
fn initial_unchanged_and_incremental_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let src = new_repo(&tmp.path().join("src"));
    for i in 0..5 {
        commit_file(
            &src,
            &format!("f{i}.txt"),
            &format!("{i}\n"),
            &format!("c{i}"),
        );
    }
    let c5 = head(&src);
    let cache = tmp.path().join("cache");
    let repo = open_or_init_cache(&cache).unwrap();
    let s = settings(&format!("file://{}", src.display()), LOCAL_TIMEOUT);
    let stop = AtomicBool::new(false);

    let first = fetch(&repo, &s, &stop).unwrap();
    assert_eq!(first.head, c5);
    assert!(first.pack_received && first.changed);
    // 5 commits + 5 trees + 5 blobs.
    assert_eq!(first.objects_received, 15);
    assert_eq!(pack_count(&cache), 1);

    // Unchanged remote: gix sees from the ref advertisement that it already
    // has the advertised object, negotiates nothing and receives no pack.
    let same = fetch(&repo, &s, &stop).unwrap();
    assert_eq!(same.head, c5);
    assert_eq!(same.previous, Some(c5));
    assert!(!same.changed);
    assert!(!same.pack_received);
    assert_eq!(same.objects_received, 0);
    assert_eq!(same.negotiation_rounds, 0);
    assert_eq!(pack_count(&cache), 1, "no new pack file on disk either");

    // One new commit: an incremental pack with only the new objects.
    let c6 = commit_file(&src, "f5.txt", "5\n", "c6");
    let next = fetch(&repo, &s, &stop).unwrap();
    assert_eq!(next.head, c6);
    assert_eq!(next.previous, Some(c5));
    assert!(next.changed && next.pack_received);
    // commit + root tree + blob; gix may add the old root tree as the base of
    // a thin-pack delta when it completes the pack, hence up to 4.
    assert!((3..=4).contains(&next.objects_received), "{next:?}");
    assert!(next.negotiation_rounds >= 1);
    assert_eq!(pack_count(&cache), 2);
    assert!(is_ancestor(&repo, c5, c6).unwrap());
    ensure_not_rewound(&repo, c5, c6).unwrap();
}

#[test]
fn force_push_is_fetched_and_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let src = new_repo(&tmp.path().join("src"));
    let c1 = commit_file(&src, "a", "1", "c1");
    let c2 = commit_file(&src, "a", "2", "c2");
    let repo = open_or_init_cache(&tmp.path().join("cache")).unwrap();
    let s = settings(&src.display().to_string(), LOCAL_TIMEOUT);
    let stop = AtomicBool::new(false);
    assert_eq!(fetch(&repo, &s, &stop).unwrap().head, c2);

    // Rewrite: drop c2, commit something else on c1.
    git(&src, &["reset", "-q", "--hard", "HEAD~1"]);
    let c2b = commit_file(&src, "a", "evil", "c2 rewritten");
    let out = fetch(&repo, &s, &stop).unwrap();
    assert_eq!(out.head, c2b, "the + refspec accepts the rewrite");
    assert!(out.changed);
    assert!(!is_ancestor(&repo, c2, c2b).unwrap());
    assert!(is_ancestor(&repo, c1, c2b).unwrap());
    assert!(is_ancestor(&repo, c2b, c2b).unwrap());
    let err = ensure_not_rewound(&repo, c2, c2b).unwrap_err();
    assert!(matches!(
        err.downcast_ref::<SourceError>(),
        Some(SourceError::Rewind { applied, fetched }) if *applied == c2 && *fetched == c2b
    ));

    // Rewind to a commit the cache already has: the ref moves, no pack.
    git(&src, &["reset", "-q", "--hard", &c1.to_string()]);
    let back = fetch(&repo, &s, &stop).unwrap();
    assert_eq!(back.head, c1);
    assert!(back.changed);
    assert!(!back.pack_received);
    assert!(ensure_not_rewound(&repo, c2b, c1).is_err());
}

#[test]
fn commits_between_includes_merged_side_branch() {
    let tmp = tempfile::tempdir().unwrap();
    let src = new_repo(&tmp.path().join("src"));
    let base = commit_file(&src, "a", "1", "base");
    git(&src, &["checkout", "-q", "-b", "side"]);
    let s1 = commit_file(&src, "s", "1", "side 1");
    let s2 = commit_file(&src, "s", "2", "side 2");
    git(&src, &["checkout", "-q", "main"]);
    let m1 = commit_file(&src, "a", "2", "main 1");
    git(
        &src,
        &["merge", "-q", "--no-ff", "-m", "merge side", "side"],
    );
    let merge = head(&src);

    let repo = open_or_init_cache(&tmp.path().join("cache")).unwrap();
    fetch(
        &repo,
        &settings(&src.display().to_string(), LOCAL_TIMEOUT),
        &AtomicBool::new(false),
    )
    .unwrap();

    let mut got = commits_between(&repo, Some(base), merge).unwrap();
    assert_eq!(got[0], merge, "newest first");
    got.sort();
    let mut want = vec![merge, m1, s1, s2];
    want.sort();
    assert_eq!(got, want);

    assert_eq!(commits_between(&repo, None, merge).unwrap().len(), 5);
    assert!(
        commits_between(&repo, Some(merge), merge)
            .unwrap()
            .is_empty()
    );
    // from = a side commit: its ancestors (base) are excluded too.
    let mut from_side = commits_between(&repo, Some(s1), merge).unwrap();
    from_side.sort();
    let mut want = vec![merge, m1, s2];
    want.sort();
    assert_eq!(from_side, want);
    assert!(is_ancestor(&repo, s1, merge).unwrap());
    assert!(!is_ancestor(&repo, merge, s1).unwrap());
}

#[test]
fn missing_branch_and_refused_urls() {
    let tmp = tempfile::tempdir().unwrap();
    let src = new_repo(&tmp.path().join("src"));
    commit_file(&src, "a", "1", "c1");
    let repo = open_or_init_cache(&tmp.path().join("cache")).unwrap();
    let stop = AtomicBool::new(false);

    let mut s = settings(&src.display().to_string(), LOCAL_TIMEOUT);
    s.branch = "nope".into();
    let err = fetch(&repo, &s, &stop).unwrap_err();
    assert!(
        matches!(err.downcast_ref::<SourceError>(), Some(SourceError::BranchNotFound { branch, .. }) if branch == "nope"),
        "{err:#}"
    );

    s.branch = "main:refs/heads/x".into();
    let err = fetch(&repo, &s, &stop).unwrap_err();
    assert!(
        format!("{err:#}").contains("invalid branch name"),
        "{err:#}"
    );

    let s = settings("git://127.0.0.1:1/x.git", LOCAL_TIMEOUT);
    let err = fetch(&repo, &s, &stop).unwrap_err();
    assert!(
        format!("{err:#}").contains("git:// is not supported"),
        "{err:#}"
    );
}

#[test]
fn password_is_not_shown_in_errors() {
    let repo_dir = tempfile::tempdir().unwrap();
    let repo = open_or_init_cache(repo_dir.path()).unwrap();
    let server = StallServer::start();
    let s = settings(
        &format!("https://user:s3cret@127.0.0.1:{}/x.git", server.port),
        Duration::from_secs(1),
    );
    let err = fetch(&repo, &s, &AtomicBool::new(false)).unwrap_err();
    let msg = format!("{err:#}");
    assert!(!msg.contains("s3cret"), "{msg}");
    assert!(msg.contains("timed out after 1s"), "{msg}");
}

/// A TCP server on 127.0.0.1 that accepts connections and never says a word.
/// It holds every connection until dropped, and gives up by itself after 30s.
struct StallServer {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl StallServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut held = Vec::new();
            while !stop2.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(30) {
                if let Ok((conn, _)) = listener.accept() {
                    held.push(conn);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        StallServer { port, stop }
    }
}

impl Drop for StallServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn assert_timeout(err: &anyhow::Error, secs: u64) {
    assert!(
        matches!(err.downcast_ref::<SourceError>(), Some(SourceError::Timeout { after, .. }) if after.as_secs() == secs),
        "{err:#}"
    );
    let msg = format!("{err:#}");
    assert!(msg.contains(&format!("timed out after {secs}s")), "{msg}");
    assert!(!msg.contains("interrupted"), "{msg}");
}

#[test]
fn stalled_https_server_times_out() {
    let server = StallServer::start();
    let dir = tempfile::tempdir().unwrap();
    let repo = open_or_init_cache(dir.path()).unwrap();
    let s = settings(
        &format!("https://127.0.0.1:{}/x.git", server.port),
        Duration::from_secs(2),
    );
    let started = Instant::now();
    let err = fetch(&repo, &s, &AtomicBool::new(false)).unwrap_err();
    let took = started.elapsed();
    assert_timeout(&err, 2);
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[test]
fn stalled_ssh_server_times_out() {
    let server = StallServer::start();
    let dir = tempfile::tempdir().unwrap();
    let repo = open_or_init_cache(&dir.path().join("cache")).unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, "").unwrap();
    let mut s = settings(
        &format!("ssh://git@127.0.0.1:{}/x.git", server.port),
        Duration::from_secs(2),
    );
    s.known_hosts = Some(known_hosts);
    let started = Instant::now();
    let err = fetch(&repo, &s, &AtomicBool::new(false)).unwrap_err();
    let took = started.elapsed();
    assert_timeout(&err, 2);
    assert!(took < Duration::from_secs(4), "{took:?}");
}

#[test]
fn interrupt_stops_a_stalled_fetch_promptly() {
    let server = StallServer::start();
    let dir = tempfile::tempdir().unwrap();
    let repo = open_or_init_cache(dir.path()).unwrap();
    let s = settings(
        &format!("https://127.0.0.1:{}/x.git", server.port),
        Duration::from_secs(60),
    );
    let flag = Arc::new(AtomicBool::new(false));
    let setter = {
        let flag = Arc::clone(&flag);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            flag.store(true, Ordering::Relaxed);
        })
    };
    let started = Instant::now();
    let err = fetch(&repo, &s, &flag).unwrap_err();
    let took = started.elapsed();
    setter.join().unwrap();
    assert!(
        matches!(
            err.downcast_ref::<SourceError>(),
            Some(SourceError::Interrupted { .. })
        ),
        "{err:#}"
    );
    assert!(format!("{err:#}").contains("interrupted"));
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

/// A server that answers every connection with bytes that are not TLS, not
/// SSH and not git, then hangs up. Stops by itself after 30s.
fn garbage_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok((mut conn, _)) = listener.accept() {
                use std::io::Write;
                let _ =
                    conn.write_all(b"\x00\xffHTTP/9.9 garbage\r\n\x16\x03\x01\x00\x02zz\n-----\n");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    port
}

/// Garbage from the server is a prompt, clear error, and the cache keeps
/// what it had (the staging ref does not move).
#[test]
fn a_server_sending_garbage_fails_cleanly_and_keeps_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let src = new_repo(&dir.path().join("src"));
    let good = commit_file(&src, "hosts/h.toml", "", "c1");
    let repo = open_or_init_cache(&dir.path().join("cache.git")).unwrap();
    let flag = AtomicBool::new(false);
    fetch(
        &repo,
        &settings(src.to_str().unwrap(), Duration::from_secs(10)),
        &flag,
    )
    .unwrap();
    let port = garbage_server();
    for url in [
        format!("https://127.0.0.1:{port}/fleet.git"),
        format!("ssh://git@127.0.0.1:{port}/fleet.git"),
    ] {
        let started = Instant::now();
        let err = fetch(&repo, &settings(&url, Duration::from_secs(10)), &flag)
            .expect_err("garbage must fail");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{url}: took {:?}",
            started.elapsed()
        );
        assert!(
            format!("{err:#}").contains(&format!("127.0.0.1:{port}")),
            "{url}: {err:#}"
        );
        assert_eq!(fetched_head(&repo).unwrap(), Some(good), "{url}");
    }
}
