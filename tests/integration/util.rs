//! Helpers for the integration tests: run the binary, build repos, and
//! fingerprint a directory tree to prove that nothing changed.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The outcome of one run of the binary.
#[derive(Debug)]
pub(crate) struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    pub(crate) fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "panic: {}", self.stderr);
        self
    }
}

/// A scratch area with an agent config of its own, so tests never read
/// /etc/driftless.
pub(crate) struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = Self { dir };
        env.set_config("");
        env
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn config(&self) -> PathBuf {
        self.dir.path().join("agent.toml")
    }

    /// Writes the agent config: `text`, with this env's own state
    /// directory and facts directory (tests never touch /var/lib/driftless
    /// or /etc/driftless/facts.d).
    pub(crate) fn set_config(&self, text: &str) {
        let text = format!(
            "state_dir = \"{}\"\nfacts_dir = \"{}\"\n{text}",
            self.state_dir().display(),
            self.facts_dir().display()
        );
        std::fs::write(self.config(), text).expect("write agent.toml");
    }

    /// Writes the agent config exactly as given.
    pub(crate) fn set_raw_config(&self, text: &str) {
        std::fs::write(self.config(), text).expect("write agent.toml");
    }

    /// Where this env's agent reads custom facts (missing until a test
    /// makes it).
    pub(crate) fn facts_dir(&self) -> PathBuf {
        self.dir.path().join("facts.d")
    }

    /// Where this env's agent keeps its state.
    pub(crate) fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Runs `driftless ARGS --config <this env's config>`.
    pub(crate) fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Run {
        self.run_env(args, &[])
    }

    /// Like [`Env::run`], with extra environment variables.
    pub(crate) fn run_env<S: AsRef<std::ffi::OsStr>>(
        &self,
        args: &[S],
        vars: &[(&str, &str)],
    ) -> Run {
        let config = self.config();
        let out = Command::new(env!("CARGO_BIN_EXE_driftless"))
            .args(args)
            .envs(vars.iter().copied())
            .arg("--config")
            .arg(&config)
            .env_remove("DRIFTLESS_LOG")
            .env("NO_COLOR", "1")
            .output()
            .expect("run driftless");
        Run {
            code: out.status.code().unwrap_or_else(|| {
                128 + std::os::unix::process::ExitStatusExt::signal(&out.status).unwrap_or(0)
            }),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// `converge --now --create-root` of `host` from `repo` into `root` (the
/// tests converge into fresh temporary roots).
pub(crate) fn converge_args(repo: &Path, root: &Path, host: &str) -> Vec<String> {
    on(&["converge", "--now", "--create-root"], repo, root, host)
}

/// `plan --json` of `host` from `repo` against `root`.
pub(crate) fn plan_json_args(repo: &Path, root: &Path, host: &str) -> Vec<String> {
    on(&["plan", "--json"], repo, root, host)
}

fn on(command: &[&str], repo: &Path, root: &Path, host: &str) -> Vec<String> {
    let mut v: Vec<String> = command.iter().map(|s| (*s).to_owned()).collect();
    for (flag, value) in [
        ("--repo", repo.display().to_string()),
        ("--root", root.display().to_string()),
        ("--host", host.to_owned()),
    ] {
        v.push(flag.to_owned());
        v.push(value);
    }
    v
}

/// The SHA-256 of `bytes` as `sha256sum` prints it (what `sha256 = …`
/// declares).
pub(crate) fn hex_sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Writes a config repo from (path, content) pairs.
pub(crate) fn write_repo(dir: &Path, files: &[(&str, &str)]) {
    for (p, c) in files {
        let full = dir.join(p);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, c).expect("write");
    }
}

/// The repo shipped in examples/.
pub(crate) fn example_repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config-repo")
}

/// Everything observable about each entry of a tree: type, metadata,
/// mtime, inode, and content hash or link target.
pub(crate) type Fingerprint = BTreeMap<PathBuf, String>;

pub(crate) fn fingerprint(root: &Path) -> Fingerprint {
    let mut out = BTreeMap::new();
    if root.exists() {
        walk(root, root, &mut out);
    }
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Fingerprint) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for p in entries {
        let md = std::fs::symlink_metadata(&p).expect("lstat");
        let what = if md.file_type().is_symlink() {
            format!(
                "link {}",
                std::fs::read_link(&p).expect("readlink").display()
            )
        } else if md.is_dir() {
            "dir".to_owned()
        } else {
            let data = std::fs::read(&p).expect("read");
            format!("file {:x}", md5ish(&data))
        };
        out.insert(
            p.strip_prefix(root).expect("prefix").to_owned(),
            format!(
                "{what} mode={:o} uid={} gid={} mtime={}.{} ino={}",
                md.mode(),
                md.uid(),
                md.gid(),
                md.mtime(),
                md.mtime_nsec(),
                md.ino()
            ),
        );
        if md.is_dir() && !md.file_type().is_symlink() {
            walk(root, &p, out);
        }
    }
}

/// A cheap content fingerprint (FNV-1a); collisions do not matter here.
fn md5ish(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// What a recording hook wrote (`env | grep ^DRIFTLESS_ | sort` then
/// `---`, per run): one map of its variables per run.
pub(crate) fn hook_records(text: &str) -> Vec<BTreeMap<String, String>> {
    text.split("---\n")
        .filter(|run| !run.trim().is_empty())
        .map(|run| {
            run.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

/// Runs `driftless ARGS --config CONFIG` and returns it with the peak
/// resident set (KiB) of the largest process of its tree, as the kernel
/// counted it (`getrusage` of the children, read by a python3 wrapper
/// that only waits): a bound on memory, not a timing.
pub(crate) fn run_measured(config: &Path, args: &[String]) -> (Run, u64) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import resource, subprocess, sys\n\
             r = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)\n\
             sys.stdout.buffer.write(r.stdout)\n\
             sys.stderr.buffer.write(r.stderr)\n\
             sys.stderr.write('\\nPEAK_RSS_KIB=%d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
             sys.exit(r.returncode)",
            env!("CARGO_BIN_EXE_driftless"),
        ])
        .args(args)
        .arg("--config")
        .arg(config)
        .env("NO_COLOR", "1")
        .env_remove("DRIFTLESS_LOG")
        .output()
        .expect("python3");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let peak = stderr
        .lines()
        .find_map(|l| l.strip_prefix("PEAK_RSS_KIB="))
        .and_then(|v| v.parse().ok())
        .expect("the peak RSS");
    (
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        },
        peak,
    )
}

/// Public keys for `[[authorized_key]]` tests, made with `ssh-keygen -t
/// ed25519` (the private halves were thrown away): an admin's, a backup
/// job's, and one a file held before driftless.
pub(crate) mod ssh_keys {
    /// An admin's key.
    pub(crate) const ADMIN: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMiQofGsbPyvEfXe/1o0kVS8Ri9h5D8Isut2wyglcRvw admin@laptop";
    /// A backup job's key.
    pub(crate) const BACKUP: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMuSLXoKci/kx6tjWfYhv0behmxaAmhR2N6LSzygq6BZ backup";
    /// A key that was there before.
    pub(crate) const EARLIER: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMzOKj+ozaC/N4yOjG84NXVAYjtgMNsz6kAVBPdp8W7x earlier";
}
