//! `driftless facts` and templates reading facts: the richer facts of this
//! machine with their types, and custom facts from a facts directory
//! (TOML and JSON files, programs) with a broken one named.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::util::{Env, converge_args, write_repo};

fn json(run: &crate::util::Run) -> Value {
    crate::json_schema::check(&run.stdout, run.code)
}

fn program(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn is_route(v: &Value) -> bool {
    v.is_null()
        || ["address", "interface", "gateway"]
            .iter()
            .all(|k| v[k].is_string())
}

#[test]
fn facts_json_has_the_richer_facts_with_sane_types() {
    let env = Env::new();
    let run = env.run(&["facts", "--json"]);
    run.expect_code(0);
    let doc = json(&run);
    let f = &doc["facts"]["facts"];
    for key in [
        "os_family",
        "os_major",
        "os_minor",
        "kernel",
        "virtualization",
    ] {
        assert!(f[key].is_string(), "{key}: {f}");
    }
    assert!(!f["kernel"].as_str().unwrap().is_empty(), "{f}");
    assert!(!f["virtualization"].as_str().unwrap().is_empty(), "{f}");
    assert!(
        ["enforcing", "permissive", "disabled"].contains(&f["selinux"].as_str().unwrap()),
        "{f}"
    );
    assert!(
        f["systemd_version"].is_null() || f["systemd_version"].as_u64().is_some(),
        "{f}"
    );
    let interfaces = f["interfaces"].as_array().unwrap();
    assert!(interfaces.iter().all(Value::is_string), "{f}");
    assert!(!interfaces.contains(&Value::from("lo")), "{f}");
    assert!(
        is_route(&f["default_ipv4"]) && is_route(&f["default_ipv6"]),
        "{f}"
    );
    let mounts = f["mounts"].as_array().unwrap();
    assert!(
        mounts
            .iter()
            .all(|m| ["path", "device", "fstype", "options"]
                .iter()
                .all(|k| m[k].is_string())),
        "{f}"
    );
    assert!(mounts.iter().any(|m| m["path"] == "/"), "{f}");
    // The env's facts directory does not exist: no custom facts.
    assert_eq!(f["custom"], serde_json::json!({}));
    // Packages are looked up by name: without a config repo, none is.
    assert_eq!(f["packages"], serde_json::json!({}));

    let text = env.run(&["facts"]);
    text.expect_code(0);
    for want in [
        "facts.os_family = ",
        "facts.kernel = ",
        "facts.mounts[0] = ",
        "facts.packages: read on demand, as facts.packages.NAME (configure [source] or pass --repo",
    ] {
        assert!(text.stdout.contains(want), "no {want:?}:\n{}", text.stdout);
    }
}

/// A facts directory as an admin writes one, with a program that fails.
fn facts_dir(env: &Env) {
    let dir = env.facts_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rack.toml"), "row = 3\n[pdu]\nid = \"p1\"\n").unwrap();
    std::fs::write(dir.join("owner.json"), "{\"team\": \"db\"}\n").unwrap();
    program(
        &dir.join("raid.sh"),
        "#!/bin/sh\necho '{\"level\": 10, \"disks\": [\"sda\", \"sdb\"]}'\n",
    );
    program(
        &dir.join("broken"),
        "#!/bin/sh\necho 'no controller found' >&2\nexit 3\n",
    );
    std::fs::write(dir.join("README"), "not a fact\n").unwrap();
}

#[test]
fn custom_facts_come_from_files_and_programs_and_a_broken_one_is_named() {
    let env = Env::new();
    facts_dir(&env);
    let run = env.run(&["facts", "--json"]);
    // Shown, and loud: a broken custom fact is an error of `facts`.
    run.expect_code(1);
    let doc = json(&run);
    let custom = &doc["facts"]["facts"]["custom"];
    assert_eq!(
        custom["rack"],
        serde_json::json!({"row": 3, "pdu": {"id": "p1"}})
    );
    assert_eq!(custom["owner"]["team"], "db");
    assert_eq!(custom["raid"]["level"], 10);
    assert!(
        custom.get("broken").is_none() && custom.get("README").is_none(),
        "{custom}"
    );
    let error = doc["error"].as_str().unwrap();
    let path = env.facts_dir().join("broken");
    assert!(
        error.contains("custom fact `broken`")
            && error.contains(&path.display().to_string())
            && error.contains("exit code 3")
            && error.contains("no controller found"),
        "{error}"
    );
    let text = env.run(&["facts"]);
    assert!(
        text.stdout.contains("facts.custom.raid = "),
        "{}",
        text.stdout
    );
}

#[test]
fn templates_read_facts_and_custom_facts_and_a_broken_one_fails_only_its_reader() {
    let env = Env::new();
    facts_dir(&env);
    let repo = env.path().join("repo");
    let root = env.path().join("root");
    write_repo(
        &repo,
        &[(
            "hosts/h.toml",
            "[[file]]\npath = '/etc/facts'\ntemplate = true\ncontent = '''\n{{ facts.os_family }} row={{ facts.custom.rack.row }} pdu={{ facts.custom.rack.pdu.id }} raid={{ facts.custom.raid.level }}\n'''\n",
        )],
    );
    env.run(&converge_args(&repo, &root, "h")).expect_code(2);
    let family = env.run(&["facts", "--json"]);
    let family = json(&family)["facts"]["facts"]["os_family"].clone();
    assert_eq!(
        std::fs::read_to_string(root.join("etc/facts")).unwrap(),
        format!("{} row=3 pdu=p1 raid=10\n", family.as_str().unwrap())
    );
    env.run(&converge_args(&repo, &root, "h")).expect_code(0);

    // A template reading the broken fact fails, at its line, naming the
    // program; nothing is changed.
    write_repo(
        &repo,
        &[(
            "hosts/h.toml",
            "[[file]]\npath = '/etc/facts'\ntemplate = true\ncontent = 'ctl={{ facts.custom.broken.model }}'\n",
        )],
    );
    let run = env.run(&converge_args(&repo, &root, "h"));
    run.expect_code(1);
    let out = format!("{}{}", run.stdout, run.stderr);
    let path = env.facts_dir().join("broken");
    assert!(
        out.contains("hosts/h.toml:4")
            && out.contains("custom fact `broken`: ")
            && out.contains(&path.display().to_string()),
        "{out}"
    );
    assert!(
        std::fs::read_to_string(root.join("etc/facts"))
            .unwrap()
            .contains("row=3")
    );

    // Validating every host (CI): another host's custom facts are
    // placeholders, so its templates still render.
    let all = env.run(&["validate", "--all-hosts", "--repo", repo.to_str().unwrap()]);
    all.expect_code(0);
}

/// The test RPMs `dl-hello` 1.0 and 2.0 and `dl-tool` 1.0, built from the
/// system suite's specs with this machine's rpmbuild (Debian's `rpm`
/// package has it; `.ci/run` installs it).
fn test_rpms(out: &Path) -> [std::path::PathBuf; 3] {
    let specs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/system/rpms");
    let top = out.join("rpmbuild");
    ["dl-hello-1.0", "dl-hello-2.0", "dl-tool-1.0"].map(|nv| {
        let built = std::process::Command::new("rpmbuild")
            .args(["-bb", "--quiet"])
            .arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .arg("--define")
            .arg(format!("_rpmdir {}", out.display()))
            .args(["--define", "_rpmfilename %%{NAME}-%%{VERSION}.rpm"])
            .args(["--define", "_build_id_links none"])
            .arg(specs.join(format!("{nv}.spec")))
            .output()
            .expect("rpmbuild (apt-get install rpm)");
        assert!(built.status.success(), "rpmbuild {nv}: {built:?}");
        out.join(format!("{nv}.rpm"))
    })
}

/// `rpm --root ROOT ARGS`: the database under a test's root, the one
/// driftless reads there (on Debian `ROOT/root/.rpmdb`, on RHEL
/// `ROOT/var/lib/rpm`: the same `--root` finds it either way). Packages go
/// into the database only (`--justdb`): the facts are about the database.
fn rpm_in(root: &Path, args: &[&str], rpm: Option<&Path>) {
    let out = std::process::Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args(args)
        .args(rpm)
        .output()
        .expect("rpm (apt-get install rpm)");
    assert!(out.status.success(), "rpm {args:?} {rpm:?}: {out:?}");
}

const INSTALL: &[&str] = &["-U", "--justdb", "--nodeps", "--noscripts"];

/// A root in `env` whose rpm database has `dl-hello` 1.0, and the test
/// RPMs.
fn root_with_hello(env: &Env) -> (std::path::PathBuf, [std::path::PathBuf; 3]) {
    let rpms = test_rpms(&env.path().join("rpms"));
    let root = env.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    rpm_in(&root, &["--initdb"], None);
    rpm_in(&root, INSTALL, Some(&rpms[0]));
    (root, rpms)
}

const PACKAGE_FACTS_HOST: &str = r#"
[[file]]
path = "/etc/hello-version"
template = true
content = "{{ facts.packages['dl-hello'].version }}-{{ facts.packages['dl-hello'].release }} {{ facts.packages['dl-hello'].evr }}\n"

[[file]]
path = "/etc/has-hello"
when = "facts.packages['dl-hello'] is defined"
content = "yes\n"

[[file]]
path = "/etc/has-nginx"
when = "facts.packages.nginx is defined"
content = "yes\n"
"#;

/// `facts.packages.NAME` comes from the rpm database of the root being
/// converged: a template renders the installed version, a `when` tests
/// whether a package is installed, and reading a field of one that is not
/// is a located error.
#[test]
fn templates_and_conditions_read_installed_package_versions_from_the_roots_rpm_database() {
    let env = Env::new();
    let (root, _) = root_with_hello(&env);
    let repo = env.path().join("repo");
    write_repo(&repo, &[("hosts/h.toml", PACKAGE_FACTS_HOST)]);

    env.run(&converge_args(&repo, &root, "h")).expect_code(2);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hello-version")).unwrap(),
        "1.0-1 1.0-1\n"
    );
    assert!(root.join("etc/has-hello").exists());
    assert!(!root.join("etc/has-nginx").exists());
    env.run(&converge_args(&repo, &root, "h")).expect_code(0);

    write_repo(
        &repo,
        &[(
            "hosts/h.toml",
            "[[file]]\npath = '/etc/nginx-version'\ntemplate = true\ncontent = 'v={{ facts.packages.nginx.version }}'\n",
        )],
    );
    let run = env.run(&converge_args(&repo, &root, "h"));
    run.expect_code(1);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        out.contains("hosts/h.toml:4:20: undefined variable 'facts.packages.nginx'"),
        "{out}"
    );
    assert!(!root.join("etc/nginx-version").exists());
}

/// The cached desired state of a commit is kept under the packages its
/// templates read, as they are installed: a new version of one loads the
/// commit again and renders it; a package no template reads changes
/// nothing.
#[test]
fn a_new_version_of_a_package_a_template_reads_loads_the_commit_again() {
    use crate::source::common::{commit_file, new_repo};
    let env = Env::new();
    let (root, [_, hello2, tool]) = root_with_hello(&env);
    let origin = new_repo(&env.path().join("origin"));
    commit_file(&origin, "hosts/h.toml", PACKAGE_FACTS_HOST, "packages");
    env.set_config(&format!(
        "host = 'h'\n[source]\nurl = 'file://{}'\nbranch = 'main'\n",
        origin.display()
    ));
    let converge = || {
        let run = env.run(&["converge", "--now", "-vv", "--root", root.to_str().unwrap()]);
        let cached = run.stderr.contains("the commit was loaded before");
        (run, cached)
    };
    let version = || std::fs::read_to_string(root.join("etc/hello-version")).unwrap();

    let (cold, cached) = converge();
    cold.expect_code(2);
    assert!(!cached, "{}", cold.stderr);
    assert_eq!(version(), "1.0-1 1.0-1\n");
    let (warm, cached) = converge();
    warm.expect_code(0);
    assert!(cached, "{}", warm.stderr);

    // A package no template reads: still a cache hit.
    rpm_in(&root, INSTALL, Some(&tool));
    let (unread, cached) = converge();
    unread.expect_code(0);
    assert!(cached, "{}", unread.stderr);

    // The package the template reads is upgraded: loaded again, rendered.
    rpm_in(&root, INSTALL, Some(&hello2));
    let (upgraded, cached) = converge();
    upgraded.expect_code(2);
    assert!(!cached, "{}", upgraded.stderr);
    assert_eq!(version(), "2.0-1 2.0-1\n");
    let (again, cached) = converge();
    again.expect_code(0);
    assert!(cached, "{}", again.stderr);

    // Removed: loaded again, and the template that reads its version
    // without `is defined` fails at its line; nothing is changed.
    rpm_in(
        &root,
        &["-e", "--justdb", "--nodeps", "--noscripts", "dl-hello"],
        None,
    );
    let (removed, cached) = converge();
    removed.expect_code(1);
    assert!(!cached, "{}", removed.stderr);
    assert!(
        removed
            .stderr
            .contains("hosts/h.toml:5:18: undefined variable 'facts.packages['dl-hello'].version'"),
        "{}",
        removed.stderr
    );
    assert_eq!(version(), "2.0-1 2.0-1\n");
}

/// With a config repo, `facts` looks up the host's declared packages (and
/// those its templates read) in this machine's rpm database; one that is
/// not installed is absent, as it is undefined in templates.
#[test]
fn facts_with_a_repo_looks_up_the_declared_packages() {
    let env = Env::new();
    let repo = env.path().join("repo");
    write_repo(
        &repo,
        &[(
            "hosts/h.toml",
            "[[package]]\nname = 'dl-not-installed-anywhere'\n[[file]]\npath = '/x'\nwhen = 'facts.packages.dl_other is defined'\ncontent = ''\n",
        )],
    );
    let args = ["facts", "--repo", repo.to_str().unwrap(), "--host", "h"];
    let run = env.run(&[&args[..], &["--json"]].concat());
    run.expect_code(0);
    let doc = json(&run);
    assert_eq!(doc["facts"]["facts"]["packages"], serde_json::json!({}));
    let text = env.run(&args);
    text.expect_code(0);
    assert!(
        text.stdout.contains(
            "facts.packages: read on demand, as facts.packages.NAME (none of the declared packages or those the templates read is installed)"
        ),
        "{}",
        text.stdout
    );
}
