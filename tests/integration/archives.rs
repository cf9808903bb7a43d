//! `[[archive]]`: release tarballs extracted into a directory on
//! temporary roots, from a loopback HTTPS server (its CA in the agent
//! config) or from the repo: extracted once and idempotent by the marker
//! (a no-op with the server stopped), a new `sha256` replaces the tree, a
//! failed check puts the old tree back, a dropped archive is removed, and
//! hostile tarballs are refused with nothing written.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::https::HttpsFiles;
use crate::util::{Env, converge_args, fingerprint, hex_sha, plan_json_args, write_repo};

/// One entry of a test tarball: name, type, mode, and data or link target.
type Item<'a> = (&'a str, tar::EntryType, u32, &'a [u8]);

/// A tar stream of `items`, names written raw (the builder itself would
/// refuse the hostile ones).
fn tar(items: &[Item<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, mode, data) in items {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(*mode);
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        let body: &[u8] = if kind.is_symlink() || kind.is_hard_link() {
            h.as_gnu_mut().unwrap().linkname[..data.len()].copy_from_slice(data);
            &[]
        } else {
            data
        };
        h.set_size(body.len() as u64);
        h.set_cksum();
        b.append(&h, body).unwrap();
    }
    b.into_inner().unwrap()
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A node_exporter-style release: one top directory to strip.
fn release(version: &str) -> Vec<u8> {
    use tar::EntryType::{Directory, Regular, Symlink};
    let top = format!("node_exporter-{version}.linux-amd64");
    let (bin, license, notes, link) = (
        format!("{top}/node_exporter"),
        format!("{top}/LICENSE"),
        format!("{top}/NOTES-{version}"),
        format!("{top}/current"),
    );
    let body = format!("#!/bin/sh\necho node_exporter {version}\n");
    gz(&tar(&[
        (&format!("{top}/"), Directory, 0o755, b""),
        (&bin, Regular, 0o755, body.as_bytes()),
        (&license, Regular, 0o644, b"Apache License 2.0\n"),
        (&notes, Regular, 0o600, version.as_bytes()),
        (&link, Symlink, 0o777, b"node_exporter"),
    ]))
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
        std::fs::create_dir_all(root.join("opt")).unwrap();
        std::fs::create_dir_all(&certs).unwrap();
        Self {
            env,
            repo,
            root,
            certs,
        }
    }

    /// Serves `files` and trusts the server.
    fn serve(&self, files: BTreeMap<String, Vec<u8>>) -> HttpsFiles {
        let server = HttpsFiles::start(&self.certs, 0, files);
        self.env.set_config(&format!(
            "[download]\nca_file = \"{}\"\n",
            server.ca_file.display()
        ));
        server
    }

    /// Declares the archive `source` with `sha256` (and `extra` lines),
    /// with the repo's `files` beside it.
    fn declare(&self, source: &str, sha256: &str, extra: &str, files: &[(&str, &[u8])]) {
        std::fs::remove_dir_all(&self.repo).ok();
        let body = format!(
            "[[archive]]\npath = '/opt/node_exporter'\nsource = '{source}'\nsha256 = '{sha256}'\nstrip_components = 1\n{extra}"
        );
        write_repo(&self.repo, &[("hosts/h.toml", &body)]);
        for (name, bytes) in files {
            let p = self.repo.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
    }

    fn converge(&self) -> crate::util::Run {
        self.env.run(&converge_args(&self.repo, &self.root, "h"))
    }

    fn dir(&self) -> PathBuf {
        self.root.join("opt/node_exporter")
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir().join(name)).unwrap()
    }

    /// What /opt holds: the tree and nothing beside it.
    fn opt(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.root.join("opt"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn an_archive_is_extracted_once_and_a_noop_needs_no_network() {
    let h = Host::new();
    let v1 = release("1.8.0");
    let server = h.serve(BTreeMap::from([("/ne.tar.gz".to_owned(), v1.clone())]));
    let url = server.url("/ne.tar.gz");
    h.declare(&url, &hex_sha(&v1), "", &[]);
    let plan = h.env.run(&plan_json_args(&h.repo, &h.root, "h"));
    plan.expect_code(2);
    let v = crate::json_schema::check(&plan.stdout, 2);
    let c = &v["changes"][0];
    assert_eq!(c["action"], "extract", "{c}");
    assert_eq!(c["path"], "/opt/node_exporter");
    assert_eq!(c["source"], url.as_str());
    assert_eq!(c["sha256"], hex_sha(&v1));
    assert_eq!(c["format"], "tar.gz");
    assert_eq!(c["strip_components"], 1);
    assert!(c["reasons"].to_string().contains("does not exist"), "{c}");
    h.converge().expect_code(2);
    // strip_components took the top directory away; modes are kept.
    assert_eq!(
        h.read("node_exporter"),
        "#!/bin/sh\necho node_exporter 1.8.0\n"
    );
    assert_eq!(mode(&h.dir().join("node_exporter")), 0o755);
    assert_eq!(mode(&h.dir().join("NOTES-1.8.0")), 0o600);
    assert_eq!(mode(&h.dir()), 0o755);
    let link = std::fs::read_link(h.dir().join("current")).unwrap();
    assert_eq!(link, Path::new("node_exporter"));
    assert!(h.read(".driftless-archive").contains(&hex_sha(&v1)));
    assert_eq!(h.opt(), ["node_exporter"]);
    // The plan's download went into the object store; from here on the
    // server is gone, and a no-op reads only the marker.
    assert_eq!(server.seen().len(), 1, "{:?}", server.seen());
    server.stop();
    let before = fingerprint(&h.root);
    h.converge().expect_code(0);
    assert_eq!(fingerprint(&h.root), before);
    // Drift inside the tree is not healed (as unarchive and archive do)...
    std::fs::write(h.dir().join("LICENSE"), "edited\n").unwrap();
    h.converge().expect_code(0);
    assert_eq!(h.read("LICENSE"), "edited\n");
    // ...a removed marker leaves a tree driftless cannot tell it made,
    // which it refuses to replace...
    let marker = std::fs::read(h.dir().join(".driftless-archive")).unwrap();
    std::fs::remove_file(h.dir().join(".driftless-archive")).unwrap();
    h.converge().expect_code(1);
    assert_eq!(h.read("LICENSE"), "edited\n");
    std::fs::write(h.dir().join(".driftless-archive"), marker).unwrap();
    // ...and a changed marker extracts again, from the object store.
    std::fs::write(h.dir().join(".driftless-archive"), "sha256 0\n").unwrap();
    std::fs::write(h.dir().join("LICENSE"), "edited\n").unwrap();
    h.converge().expect_code(2);
    assert_eq!(h.read("LICENSE"), "Apache License 2.0\n");
    assert_eq!(h.opt(), ["node_exporter"]);
}

#[test]
fn a_new_sha256_replaces_the_tree_and_a_failed_check_puts_the_old_one_back() {
    let h = Host::new();
    let (v1, v2) = (release("1.8.0"), release("1.8.2"));
    let src = "files/node_exporter.tar.gz";
    h.declare(
        src,
        &hex_sha(&v1),
        "owner = 'root'\nmode = '0750'\n",
        &[(src, &v1)],
    );
    h.converge().expect_code(2);
    let extracted = fingerprint(&h.dir());
    // The new release and a check that fails: the old tree comes back,
    // byte for byte (the same files: it was kept, not extracted again).
    let failing = "[[check]]\nname = 'broken'\ncommand = ['false']\nretries = 0\n";
    h.declare(src, &hex_sha(&v2), failing, &[(src, &v2)]);
    h.converge().expect_code(4);
    assert_eq!(fingerprint(&h.dir()), extracted);
    assert_eq!(mode(&h.dir()), 0o750);
    assert_eq!(h.opt(), ["node_exporter"]);
    // Without the check it replaces the tree: 1.8.0's own file is gone.
    h.declare(src, &hex_sha(&v2), "mode = '0750'\n", &[(src, &v2)]);
    let plan = h.env.run(&plan_json_args(&h.repo, &h.root, "h"));
    assert!(
        plan.stdout.contains(&format!(
            "holds archive sha256 {}, should be {}",
            hex_sha(&v1),
            hex_sha(&v2)
        )),
        "{}",
        plan.stdout
    );
    h.converge().expect_code(2);
    assert_eq!(
        h.read("node_exporter"),
        "#!/bin/sh\necho node_exporter 1.8.2\n"
    );
    assert!(!h.dir().join("NOTES-1.8.0").exists());
    assert_eq!(h.opt(), ["node_exporter"], "the old tree is not kept");
    h.converge().expect_code(0);
    // A repo file that is not what `sha256` pins is refused while loading.
    h.declare(src, &hex_sha(&v1), "", &[(src, &v2)]);
    let r = h.converge();
    r.expect_code(1);
    assert!(r.stderr.contains("but `sha256` says"), "{}", r.stderr);
}

#[test]
fn a_dropped_archive_is_removed() {
    let h = Host::new();
    let v1 = release("1.8.0");
    let src = "files/ne.tar.gz";
    h.declare(src, &hex_sha(&v1), "", &[(src, &v1)]);
    h.converge().expect_code(2);
    write_repo(&h.repo, &[("hosts/h.toml", "")]);
    let r = h.converge();
    r.expect_code(2);
    assert!(!h.dir().exists());
    assert!(h.opt().is_empty(), "{:?}", h.opt());
    h.converge().expect_code(0);
}

#[test]
fn hostile_tarballs_are_refused_with_nothing_written() {
    use tar::EntryType::{Char, Link, Regular, Symlink};
    let cases: [(&[Item<'_>], &str); 6] = [
        (&[("top/../evil", Regular, 0o644, b"x")], "`..` component"),
        (&[("/abs/passwd", Regular, 0o644, b"x")], "absolute path"),
        (
            &[("top/out", Symlink, 0o777, b"../../../etc")],
            "leaves the directory",
        ),
        (
            &[("top/etc", Symlink, 0o777, b"/etc")],
            "absolute path outside",
        ),
        (&[("top/null", Char, 0o666, b"")], "is a device"),
        (&[("top/h", Link, 0o644, b"/etc/shadow")], "absolute path"),
    ];
    for (items, word) in cases {
        let h = Host::new();
        let bytes = gz(&tar(items));
        let src = "files/evil.tar.gz";
        h.declare(src, &hex_sha(&bytes), "", &[(src, &bytes)]);
        let before = fingerprint(&h.root);
        let r = h.converge();
        r.expect_code(1);
        assert!(r.stderr.contains(word), "{word}:\n{}", r.stderr);
        assert!(
            r.stderr.contains("archive:/opt/node_exporter"),
            "{}",
            r.stderr
        );
        assert_eq!(fingerprint(&h.root), before, "{word}");
    }
}

#[test]
fn a_directory_driftless_did_not_extract_is_refused_with_nothing_changed() {
    let h = Host::new();
    std::fs::create_dir_all(h.dir().join("old")).unwrap();
    std::fs::write(h.dir().join("old/config"), "kept\n").unwrap();
    let before = fingerprint(&h.root);
    let v1 = release("1.8.0");
    let src = "files/ne.tar.gz";
    h.declare(src, &hex_sha(&v1), "", &[(src, &v1)]);
    let run = h.converge();
    run.expect_code(1);
    assert!(
        run.stderr.contains("holds files but no .driftless-archive"),
        "{}",
        run.stderr
    );
    assert_eq!(fingerprint(&h.root), before, "nothing of it was deleted");
    // Emptied by its owner, it is extracted into.
    std::fs::remove_dir_all(h.dir().join("old")).unwrap();
    h.converge().expect_code(2);
    assert_eq!(h.opt(), ["node_exporter"]);
}
