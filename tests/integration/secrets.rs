//! Secrets in the config repo, encrypted with age to the host's key: made
//! and encrypted with `driftless secret`, decrypted by a converge into a
//! temporary root, and never shown anywhere but in the file they belong to
//! (and the state directory's private object store).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::util::{Env, converge_args, fingerprint, write_repo};

const PASSWORD: &str = "correct-horse-battery-staple";
const TOKEN: &str = "tok-5f1d0c9e";

struct Host {
    env: Env,
    repo: PathBuf,
    root: PathBuf,
    key: PathBuf,
}

impl Host {
    /// A host with its own key, and a repo holding a secret file and a
    /// template reading a secret variable, both encrypted to that key.
    fn new() -> Self {
        let env = Env::new();
        let key = env.path().join("age.key");
        let recipient = env
            .run(&["secret", "keygen", key.to_str().expect("utf-8")])
            .expect_code(0)
            .stdout
            .trim()
            .to_owned();
        assert!(recipient.starts_with("age1"), "{recipient}");
        assert_eq!(
            std::fs::metadata(&key).expect("key").mode() & 0o777,
            0o600,
            "keygen wrote a key others can read"
        );
        env.set_config(&format!("[secrets]\nidentity = \"{}\"\n", key.display()));
        let printed = env
            .run(&["secret", "recipient"])
            .expect_code(0)
            .stdout
            .clone();
        assert_eq!(printed.trim(), recipient);

        let repo = env.path().join("repo");
        write_repo(
            &repo,
            &[(
                "hosts/h.toml",
                "[[file]]\npath = '/etc/db.password'\nsource = 'files/db.password.age'\nmode = '0600'\n\n\
                 [[file]]\npath = '/etc/app.conf'\ncontent = \"token={{ secrets.api.token }}\\n\"\ntemplate = true\n\n\
                 [[file]]\npath = '/etc/motd'\ncontent = 'hello\\n'\n",
            )],
        );
        let host = Self {
            root: env.path().join("root"),
            env,
            repo,
            key,
        };
        host.seal(&recipient, "files/db.password", &format!("{PASSWORD}\n"));
        host.seal(
            &recipient,
            "hosts/h.secrets.toml",
            &format!("[api]\ntoken = \"{TOKEN}\"\n"),
        );
        host
    }

    /// Writes `plain` as `name` and encrypts it to `name.age` with
    /// `driftless secret encrypt`; the plain file is removed, as an admin
    /// would before committing.
    fn seal(&self, recipient: &str, name: &str, plain: &str) {
        let file = self.repo.join(name);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, plain).expect("write");
        self.env
            .run(&[
                "secret",
                "encrypt",
                "--to",
                recipient,
                file.to_str().expect("utf-8"),
            ])
            .expect_code(0);
        std::fs::remove_file(&file).expect("remove plain");
        let sealed =
            std::fs::read_to_string(self.repo.join(format!("{name}.age"))).expect("sealed");
        assert!(sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!sealed.contains(plain.trim()));
    }

    fn args(&self, command: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = command.iter().map(|s| (*s).to_owned()).collect();
        for (flag, value) in [("--repo", &self.repo), ("--root", &self.root)] {
            v.push(flag.to_owned());
            v.push(value.display().to_string());
        }
        v.extend(["--host".to_owned(), "h".to_owned()]);
        v
    }
}

/// Every file under `dir` holding `needle`.
fn holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            let m = std::fs::symlink_metadata(&p).expect("stat");
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file()
                && std::fs::read(&p)
                    .expect("read")
                    .windows(needle.len())
                    .any(|w| w == needle.as_bytes())
            {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_secret_is_decrypted_with_the_host_key_and_shown_nowhere() {
    let h = Host::new();
    let plan = h.env.run(&h.args(&["plan", "--json"]));
    plan.expect_code(2);
    let converge = h.env.run(
        &[
            &converge_args(&h.repo, &h.root, "h")[..],
            &["-vv".to_owned(), "--diff".to_owned()],
        ]
        .concat(),
    );
    converge.expect_code(2);
    assert_eq!(
        std::fs::read_to_string(h.root.join("etc/db.password")).expect("secret file"),
        format!("{PASSWORD}\n")
    );
    assert_eq!(
        std::fs::metadata(h.root.join("etc/db.password"))
            .expect("stat")
            .mode()
            & 0o7777,
        0o600
    );
    assert_eq!(
        std::fs::read_to_string(h.root.join("etc/app.conf")).expect("template"),
        format!("token={TOKEN}\n")
    );
    // Drift on the secret file: healed, and the plan says only that the
    // content is hidden.
    std::fs::write(h.root.join("etc/db.password"), "guess\n").expect("drift");
    std::fs::write(h.root.join("etc/app.conf"), "token=guess\n").expect("drift");
    let drift = h.env.run(&h.args(&["plan", "--json"]));
    drift.expect_code(2);
    let drift_json: serde_json::Value = serde_json::from_str(drift.stdout.trim()).expect("json");
    let reasons = drift_json.to_string();
    assert!(
        reasons.contains("content hidden: the file is sensitive"),
        "{reasons}"
    );
    let heal = h.env.run(
        &[
            &converge_args(&h.repo, &h.root, "h")[..],
            &["--diff".to_owned()],
        ]
        .concat(),
    );
    heal.expect_code(2);
    assert_eq!(
        std::fs::read_to_string(h.root.join("etc/db.password")).expect("healed"),
        format!("{PASSWORD}\n")
    );
    let history = h.env.run(&["history", "--json"]);
    let generation = h.env.run(&["history", "--json", "2"]);
    let status = h.env.run(&["status", "--json"]);
    for secret in [PASSWORD, TOKEN] {
        for (what, text) in [
            ("plan", &plan.stdout),
            ("plan stderr", &plan.stderr),
            ("converge", &converge.stdout),
            ("converge log", &converge.stderr),
            ("drift plan", &drift.stdout),
            ("heal", &heal.stdout),
            ("heal log", &heal.stderr),
            ("history", &history.stdout),
            ("generation", &generation.stdout),
            ("status", &status.stdout),
        ] {
            assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
        }
        // In the state directory, only the private object store holds it.
        for f in holding(&h.env.state_dir(), secret) {
            assert!(
                f.parent().is_some_and(|p| p.ends_with("objects")),
                "{} holds a secret",
                f.display()
            );
            assert_eq!(
                std::fs::metadata(&f).expect("stat").mode() & 0o077,
                0,
                "{} is readable by others",
                f.display()
            );
        }
    }
}

#[test]
fn a_wrong_or_unsafe_key_fails_before_any_change() {
    let h = Host::new();
    // Another host's key: the secrets are not encrypted to it.
    let other = h.env.path().join("other.key");
    h.env
        .run(&["secret", "keygen", other.to_str().expect("utf-8")])
        .expect_code(0);
    h.env
        .set_config(&format!("[secrets]\nidentity = \"{}\"\n", other.display()));
    std::fs::create_dir_all(h.root.join("etc")).expect("mkdir");
    let before = fingerprint(&h.root);
    let run = h.env.run(&converge_args(&h.repo, &h.root, "h"));
    run.expect_code(1);
    assert!(
        run.stderr.contains(
            "hosts/h.toml:1:1: source `files/db.password.age` is not encrypted to this host's key"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("hosts/h.secrets.toml.age:1:1: `hosts/h.secrets.toml.age` is not encrypted to this host's key"),
        "{}",
        run.stderr
    );
    assert_eq!(fingerprint(&h.root), before, "a wrong key changed the host");

    // A key others can read is refused, naming the file and the fix.
    std::fs::set_permissions(&h.key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    h.env
        .set_config(&format!("[secrets]\nidentity = \"{}\"\n", h.key.display()));
    let run = h.env.run(&converge_args(&h.repo, &h.root, "h"));
    run.expect_code(1);
    assert!(run.stderr.contains("has mode 0644"), "{}", run.stderr);
    assert_eq!(
        fingerprint(&h.root),
        before,
        "an unsafe key changed the host"
    );

    // No key at all: the setting to add is named.
    h.env.set_config("");
    let run = h.env.run(&converge_args(&h.repo, &h.root, "h"));
    run.expect_code(1);
    assert!(run.stderr.contains("[secrets] identity"), "{}", run.stderr);
    assert_eq!(fingerprint(&h.root), before, "no key changed the host");
}

#[test]
fn validate_all_hosts_checks_secrets_without_any_key() {
    let h = Host::new();
    h.env.set_config("");
    h.env
        .run(&[
            "validate",
            "--all-hosts",
            "--repo",
            h.repo.to_str().expect("utf-8"),
        ])
        .expect_code(0);
    // A plain file where a secret should be: refused, located.
    std::fs::write(
        h.repo.join("files/db.password.age"),
        format!("{PASSWORD}\n"),
    )
    .expect("write");
    let run = h.env.run(&[
        "validate",
        "--all-hosts",
        "--repo",
        h.repo.to_str().expect("utf-8"),
    ]);
    run.expect_code(1);
    assert!(
        run.stderr.contains(
            "hosts/h.toml:1:1: source `files/db.password.age` is not an age-encrypted file"
        ),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(PASSWORD), "{}", run.stderr);
}

/// Every output of `args`, with and without `--json`, in one string.
fn outputs(h: &Host, args: &[String]) -> (i32, String) {
    let text = h.env.run(args);
    let mut json_args = args.to_vec();
    json_args.push("--json".to_owned());
    let json = h.env.run(&json_args);
    assert_eq!(
        text.code, json.code,
        "{args:?}: text and JSON exit codes differ"
    );
    (
        text.code,
        [text.stdout, text.stderr, json.stdout, json.stderr].join("\n"),
    )
}

/// Regression (issue 19, 3 and 4): `{% include secrets.x %}` failed with
/// "tried to include non-existing template '<the secret>'" in validate,
/// plan, converge and JSON; `{{ debug() }}` rendered the whole context,
/// secrets included, into a file not marked sensitive.
#[test]
fn a_template_cannot_show_a_secret_through_an_include_or_debug() {
    let h = Host::new();
    for (template, want) in [
        (
            "{% include secrets.api.token %}",
            "templates cannot include, import or extend other templates",
        ),
        (
            "{% import secrets.api.token as x %}",
            "cannot include, import or extend",
        ),
        (
            "{% extends secrets.api.token %}",
            "cannot include, import or extend",
        ),
        ("{{ debug() }}", "unknown function"),
    ] {
        write_repo(
            &h.repo,
            &[(
                "hosts/h.toml",
                &format!(
                    "[[file]]\npath = '/etc/app.conf'\ncontent = \"{template}\\n\"\ntemplate = true\n"
                ),
            )],
        );
        for args in [
            h.args(&["plan"]),
            converge_args(&h.repo, &h.root, "h"),
            vec![
                "validate".to_owned(),
                "--repo".to_owned(),
                h.repo.display().to_string(),
                "--host".to_owned(),
                "h".to_owned(),
            ],
        ] {
            let (code, all) = outputs(&h, &args);
            assert_eq!(code, 1, "{template} {args:?}:\n{all}");
            assert!(all.contains(want), "{template} {args:?}:\n{all}");
            assert!(
                !all.contains(TOKEN),
                "{template} {args:?} shows the secret:\n{all}"
            );
        }
    }
}

/// Regression (issue 19, 5): a file written from an `.age` source by one
/// generation, then declared with plain content (or dropped, so pruning
/// puts the original back), had its old secret shown as the `-` side of
/// `plan`, `converge --diff` and `history N --json`.
#[test]
fn a_content_that_was_secret_is_never_shown_by_a_later_generation() {
    let h = Host::new();
    std::fs::create_dir_all(h.root.join("etc")).expect("mkdir");
    std::fs::write(h.root.join("etc/db.password"), "the original\n").expect("original");
    h.env
        .run(&converge_args(&h.repo, &h.root, "h"))
        .expect_code(2);
    let diff_run = |h: &Host| {
        let (code, mut all) = outputs(h, &h.args(&["plan"]));
        assert_eq!(code, 2, "{all}");
        let mut converge = converge_args(&h.repo, &h.root, "h");
        converge.push("--diff".to_owned());
        let run = h.env.run(&converge);
        run.expect_code(2);
        all.push_str(&run.stdout);
        all.push_str(&run.stderr);
        let history = h.env.run(&["history", "--json"]);
        let newest: serde_json::Value = serde_json::from_str(&history.stdout).expect("history");
        let id = newest["history"]
            .as_array()
            .and_then(|g| g.last())
            .and_then(|g| g["id"].as_u64())
            .expect("a generation");
        let detail = h.env.run(&["history", "--json", &id.to_string()]);
        detail.expect_code(0);
        all.push_str(&detail.stdout);
        all
    };

    // The same path, now with plain content: the old secret stays hidden.
    let plain = "[[file]]\npath = '/etc/db.password'\ncontent = \"public\\n\"\nmode = '0600'\n";
    write_repo(&h.repo, &[("hosts/h.toml", plain)]);
    let all = diff_run(&h);
    assert!(
        !all.contains(PASSWORD),
        "a later generation shows the old secret:\n{all}"
    );
    assert!(all.contains("what the file holds now was secret"), "{all}");
    assert_eq!(
        std::fs::read_to_string(h.root.join("etc/db.password")).expect("file"),
        "public\n"
    );

    // The secret again, then dropped: pruning puts the original back
    // without showing what it replaces.
    let h2 = Host::new();
    std::fs::create_dir_all(h2.root.join("etc")).expect("mkdir");
    std::fs::write(h2.root.join("etc/db.password"), "the original\n").expect("original");
    h2.env
        .run(&converge_args(&h2.repo, &h2.root, "h"))
        .expect_code(2);
    write_repo(
        &h2.repo,
        &[(
            "hosts/h.toml",
            "[[file]]\npath = '/etc/motd'\ncontent = 'hello\\n'\n",
        )],
    );
    std::fs::remove_file(h2.repo.join("files/db.password.age")).expect("drop the secret");
    std::fs::remove_file(h2.repo.join("hosts/h.secrets.toml.age")).expect("drop the vars");
    let all = diff_run(&h2);
    assert!(
        !all.contains(PASSWORD),
        "pruning shows the old secret:\n{all}"
    );
    assert_eq!(
        std::fs::read_to_string(h2.root.join("etc/db.password")).expect("file"),
        "the original\n"
    );
}
