//! `[[file]]` downloads pinned by `sha256`, from a real HTTPS server on
//! loopback (its CA in the agent config's `[download] ca_file`), on
//! temporary roots: fetched once into the object store, a no-op that
//! never touches the network, healed from the store, resumed with a
//! `Range`; a mismatch, the size cap and an untrusted certificate change
//! nothing; an unreachable server holds the file and quarantines nothing.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::gitserver::free_port;
use crate::https::HttpsFiles;
use crate::util::{Env, converge_args, fingerprint, hex_sha, plan_json_args, write_repo};

/// A release binary: not text, larger than one TLS record.
fn release() -> Vec<u8> {
    (0..50_000u32)
        .flat_map(|i| (i * 7919).to_le_bytes())
        .collect()
}

struct Host {
    env: Env,
    repo: PathBuf,
    root: PathBuf,
    certs: PathBuf,
}

impl Host {
    fn new() -> Self {
        let env = Env::new();
        let (repo, root) = (env.path().join("repo"), env.path().join("root"));
        let certs = env.path().join("certs");
        std::fs::create_dir_all(root.join("usr/local/bin")).unwrap();
        std::fs::create_dir_all(&certs).unwrap();
        Self {
            env,
            repo,
            root,
            certs,
        }
    }

    /// A server on `port` (0: any) serving the release at `/tool`.
    fn serve(&self, port: u16) -> HttpsFiles {
        let files = BTreeMap::from([("/tool".to_owned(), release())]);
        let server = HttpsFiles::start(&self.certs, port, files);
        self.trust(&server, "");
        server
    }

    /// The agent config: the server's CA trusted, and `extra` keys.
    fn trust(&self, server: &HttpsFiles, extra: &str) {
        self.env.set_config(&format!(
            "[download]\nca_file = \"{}\"\n{extra}",
            server.ca_file.display()
        ));
    }

    fn declare(&self, url: &str, sha256: &str) {
        std::fs::remove_dir_all(&self.repo).ok();
        let body = format!(
            "[[file]]\npath = '/usr/local/bin/tool'\nsource = '{url}'\nsha256 = '{sha256}'\nmode = '0755'\n"
        );
        write_repo(&self.repo, &[("hosts/h.toml", &body)]);
    }

    fn converge(&self) -> crate::util::Run {
        self.env.run(&converge_args(&self.repo, &self.root, "h"))
    }

    fn tool(&self) -> PathBuf {
        self.root.join("usr/local/bin/tool")
    }
}

#[test]
fn a_download_is_fetched_once_and_a_noop_or_a_heal_needs_no_network() {
    let h = Host::new();
    let server = h.serve(0);
    h.declare(&server.url("/tool"), &hex_sha(&release()));
    // The plan says where the bytes come from and shows no binary diff.
    let plan = h.env.run(&plan_json_args(&h.repo, &h.root, "h"));
    plan.expect_code(2);
    let v: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let change = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "/usr/local/bin/tool")
        .unwrap();
    let reasons = change["reasons"].to_string();
    assert!(
        reasons.contains(&format!(
            "downloaded from {}, sha256 {}",
            server.url("/tool"),
            hex_sha(&release())
        )),
        "{reasons}"
    );
    h.converge().expect_code(2);
    assert_eq!(std::fs::read(h.tool()).unwrap(), release());
    let mode = std::fs::metadata(h.tool()).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o755);
    // The plan's download went into the object store: the converge did
    // not fetch it again.
    assert_eq!(server.seen().len(), 1, "{:?}", server.seen());
    server.stop();
    // No network from here on: the no-op reads no content at all...
    let before = fingerprint(&h.root);
    h.converge().expect_code(0);
    assert_eq!(fingerprint(&h.root), before);
    // ...and drift is healed from the object store.
    std::fs::write(h.tool(), b"tampered").unwrap();
    h.converge().expect_code(2);
    assert_eq!(std::fs::read(h.tool()).unwrap(), release());
}

#[test]
fn a_checksum_mismatch_names_the_url_and_both_hashes_and_changes_nothing() {
    let h = Host::new();
    let server = h.serve(0);
    std::fs::write(h.tool(), b"the old build").unwrap();
    let wrong = hex_sha(b"some other release");
    h.declare(&server.url("/tool"), &wrong);
    let before = fingerprint(&h.root);
    let r = h.converge();
    r.expect_code(1);
    for word in [server.url("/tool"), wrong, hex_sha(&release())] {
        assert!(r.stderr.contains(&word), "{word} missing in:\n{}", r.stderr);
    }
    assert!(r.stderr.contains("checksum mismatch"), "{}", r.stderr);
    assert_eq!(fingerprint(&h.root), before);
    // Nothing of the bad download is kept to be resumed from.
    let parts = h.env.state_dir().join("downloads");
    assert_eq!(std::fs::read_dir(parts).unwrap().count(), 0);
}

#[test]
fn an_unreachable_server_holds_the_file_and_a_later_run_applies_it() {
    let h = Host::new();
    std::fs::write(h.tool(), b"the old build").unwrap();
    let port = free_port();
    // The CA is made by the first server; nothing listens on `port` yet.
    let url = format!("https://127.0.0.1:{port}/tool");
    h.declare(&url, &hex_sha(&release()));
    let first = HttpsFiles::start(&h.certs, 0, BTreeMap::new());
    h.trust(&first, "");
    first.stop();
    let before = fingerprint(&h.root);
    let r = h.converge();
    r.expect_code(1);
    assert!(r.stderr.contains("left as it is"), "{}", r.stderr);
    assert!(r.stderr.contains(&url), "{}", r.stderr);
    assert_eq!(fingerprint(&h.root), before);
    // Not held against the desired state: with the server up, it applies.
    let server = h.serve(port);
    h.converge().expect_code(2);
    assert_eq!(std::fs::read(h.tool()).unwrap(), release());
    drop(server);
}

#[test]
fn a_server_error_is_the_environments_and_changes_nothing() {
    let h = Host::new();
    let server = h.serve(0);
    std::fs::write(h.tool(), b"the old build").unwrap();
    h.declare(&server.url("/fail"), &hex_sha(&release()));
    let before = fingerprint(&h.root);
    let r = h.converge();
    r.expect_code(1);
    assert!(r.stderr.contains("HTTP 500"), "{}", r.stderr);
    h.declare(&server.url("/missing"), &hex_sha(&release()));
    let r = h.converge();
    r.expect_code(1);
    assert!(r.stderr.contains("HTTP 404"), "{}", r.stderr);
    assert_eq!(fingerprint(&h.root), before);
}

#[test]
fn a_download_over_the_size_cap_is_refused() {
    let h = Host::new();
    let server = h.serve(0);
    h.trust(&server, "max_size = 1000\n");
    h.declare(&server.url("/tool"), &hex_sha(&release()));
    let before = fingerprint(&h.root);
    let r = h.converge();
    r.expect_code(1);
    assert!(
        r.stderr
            .contains("is larger than the download cap of 1000 bytes ([download] max_size"),
        "{}",
        r.stderr
    );
    assert_eq!(fingerprint(&h.root), before);
}

#[test]
fn a_server_the_agent_does_not_trust_is_refused() {
    let h = Host::new();
    let server = h.serve(0);
    // The system's roots only: the throwaway CA is not among them.
    h.env.set_config("");
    h.declare(&server.url("/tool"), &hex_sha(&release()));
    let before = fingerprint(&h.root);
    let r = h.converge();
    r.expect_code(1);
    assert!(r.stderr.contains(&server.url("/tool")), "{}", r.stderr);
    assert_eq!(fingerprint(&h.root), before);
    assert!(server.seen().is_empty(), "{:?}", server.seen());
}

#[test]
fn an_interrupted_download_is_resumed_with_a_range() {
    let h = Host::new();
    let server = h.serve(0);
    let body = release();
    h.declare(&server.url("/tool"), &hex_sha(&body));
    // What a run stopped halfway left in the state directory.
    let parts = h.env.state_dir().join("downloads");
    std::fs::create_dir_all(&parts).unwrap();
    let half = body.len() / 2;
    std::fs::write(
        parts.join(format!("{}.part", hex_sha(&body))),
        &body[..half],
    )
    .unwrap();
    h.converge().expect_code(2);
    assert_eq!(std::fs::read(h.tool()).unwrap(), body);
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].range.as_deref(),
        Some(format!("bytes={half}-").as_str())
    );
}
