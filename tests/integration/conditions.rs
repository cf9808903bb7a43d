//! `when`, `for_each` and `{{ … }}` in a resource's keys, on temporary
//! roots: decided per host from its vars and facts, one resource per
//! item, pruned when an item goes, located errors that change nothing.

use std::path::{Path, PathBuf};

use crate::util::{Env, converge_args, write_repo};

fn repo(env: &Env, files: &[(&str, &str)]) -> PathBuf {
    let repo = env.path().join("repo");
    std::fs::remove_dir_all(&repo).ok();
    write_repo(&repo, files);
    repo
}

fn converge(env: &Env, repo: &Path, host: &str) -> (crate::util::Run, PathBuf) {
    let root = env.path().join(format!("root-{host}"));
    (env.run(&converge_args(repo, &root, host)), root)
}

const ROLE: &str = r#"
[[file]]
path = "/etc/motd"
content = "hello\n"
when = "vars.env == 'prod'"

[[file]]
path = "/etc/debug.conf"
content = "debug = on\n"
when = "vars.env != 'prod' and facts.cpus > 0"

[[file]]
path = "/etc/role-only"
content = "x\n"
"#;

#[test]
fn when_decides_per_host_and_the_host_file_overrides_a_role() {
    let env = Env::new();
    let repo = repo(
        &env,
        &[
            ("roles/base.toml", ROLE),
            (
                "hosts/prod1.toml",
                "roles = ['base']\n[vars]\nenv = 'prod'\n",
            ),
            (
                "hosts/dev1.toml",
                "roles = ['base']\n[vars]\nenv = 'dev'\n\n[[file]]\npath = '/etc/role-only'\ncontent = \"x\\n\"\nwhen = 'false'\n",
            ),
        ],
    );
    let (run, root) = converge(&env, &repo, "prod1");
    run.expect_code(2);
    assert!(root.join("etc/motd").exists());
    assert!(!root.join("etc/debug.conf").exists());
    assert!(root.join("etc/role-only").exists());
    let (run, root) = converge(&env, &repo, "dev1");
    run.expect_code(2);
    assert!(!root.join("etc/motd").exists());
    assert!(root.join("etc/debug.conf").exists());
    assert!(
        !root.join("etc/role-only").exists(),
        "the host file's declaration, which does not apply, wins over the role's"
    );
    converge(&env, &repo, "dev1").0.expect_code(0);
}

#[test]
fn for_each_declares_one_resource_per_item_and_a_dropped_item_is_pruned() {
    let env = Env::new();
    let host = |sites: &str| {
        format!(
            r#"
[vars]
app = "shop"
sites = [{sites}]
ports = {{ http = 80, https = 443 }}

[[directory]]
path = "/etc/{{{{ vars.app }}}}"

[[file]]
for_each = "vars.sites"
path = "/etc/{{{{ vars.app }}}}/{{{{ item }}}}.conf"
content = "site {{{{ item }}}}\n"
template = true

[[file]]
for_each = "vars.ports"
path = "/etc/{{{{ vars.app }}}}/port-{{{{ item.key }}}}"
content = "listen\n"
"#
        )
    };
    let repo1 = repo(&env, &[("hosts/h.toml", &host("'a', 'b'"))]);
    let (run, root) = converge(&env, &repo1, "h");
    run.expect_code(2);
    for f in ["a.conf", "b.conf", "port-http", "port-https"] {
        assert!(root.join("etc/shop").join(f).exists(), "{f}");
    }
    converge(&env, &repo1, "h").0.expect_code(0);
    let repo2 = repo(&env, &[("hosts/h.toml", &host("'a'"))]);
    converge(&env, &repo2, "h").0.expect_code(2);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/shop/a.conf")).unwrap(),
        "site a\n",
        "the item is in scope of the content template"
    );
    assert!(
        !root.join("etc/shop/b.conf").exists(),
        "pruned with its item"
    );
}

#[test]
fn validate_all_hosts_reports_a_bad_condition_for_every_host() {
    let env = Env::new();
    let repo = repo(
        &env,
        &[
            (
                "roles/base.toml",
                "[[file]]\npath = '/etc/motd'\ncontent = 'x'\nwhen = \"facts.os_famly == 'RedHat'\"\n",
            ),
            ("hosts/a.toml", "roles = ['base']\n"),
            ("hosts/b.toml", "roles = ['base']\n"),
        ],
    );
    let run = env.run(&["validate", "--repo", repo.to_str().unwrap(), "--all-hosts"]);
    run.expect_code(1);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        out.contains("roles/base.toml:4:8: `when`: undefined variable 'facts.os_famly' (did you mean 'facts.os_family'?)"),
        "{out}"
    );
    assert!(out.contains("[hosts: a, b]"), "{out}");
}

#[test]
fn vars_computed_from_vars_are_what_keys_and_templates_see() {
    let env = Env::new();
    let repo = repo(
        &env,
        &[
            (
                "roles/app.toml",
                "[vars]\nbase = '/srv/{{ vars.app }}'\n\n[[file]]\npath = '{{ vars.base }}/url'\ncontent = '{{ vars.url }}'\ntemplate = true\n",
            ),
            (
                "hosts/h.toml",
                "roles = ['app']\n[vars]\napp = 'shop'\nurl = 'https://{{ host }}{{ vars.base }}'\n\n[[directory]]\npath = '/srv/shop'\n",
            ),
        ],
    );
    let (run, root) = converge(&env, &repo, "h");
    run.expect_code(2);
    assert_eq!(
        std::fs::read_to_string(root.join("srv/shop/url")).unwrap(),
        "https://h/srv/shop"
    );
}

/// Regression (a ported hardening role): `fs.protected_hardlinks = 1` in
/// `[vars]` silently became a table `fs`. Valid TOML, so a warning, not an
/// error; a dotted key that is not a kernel parameter's is not warned of.
#[test]
fn a_dotted_kernel_parameter_in_vars_is_a_located_warning() {
    let env = Env::new();
    let repo = repo(
        &env,
        &[(
            "hosts/h.toml",
            "[vars]\nntp.servers = ['a']\nfs.protected_hardlinks = 1\n",
        )],
    );
    let run = env.run(&[
        "validate",
        "--repo",
        repo.to_str().unwrap(),
        "--host",
        "h",
        "--json",
    ]);
    run.expect_code(0);
    let json: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let warnings = json["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{json}");
    assert_eq!(
        (&warnings[0]["line"], &warnings[0]["column"]),
        (&3.into(), &1.into())
    );
    assert!(
        warnings[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("quote it: \"fs.protected_hardlinks\" = …"),
        "{json}"
    );
    let text = env.run(&["validate", "--repo", repo.to_str().unwrap(), "--host", "h"]);
    assert!(
        text.stderr.starts_with("warning: hosts/h.toml:3:1: "),
        "{}",
        text.stderr
    );
}

/// A resource whose `when` turns false is no longer managed here: what it
/// made is pruned like any dropped resource, and a failed converge that
/// turns it back on puts the host back as it was.
#[test]
fn a_when_that_turns_false_prunes_and_a_failed_converge_restores() {
    let env = Env::new();
    let host = |env_name: &str, check: &str| {
        format!(
            "[vars]\nenv = '{env_name}'\n\n[[file]]\npath = '/etc/debug.conf'\ncontent = \"debug = on\\n\"\nwhen = \"vars.env == 'dev'\"\n{check}"
        )
    };
    let repo1 = repo(&env, &[("hosts/h.toml", &host("dev", ""))]);
    let (run, root) = converge(&env, &repo1, "h");
    run.expect_code(2);
    assert!(root.join("etc/debug.conf").exists());
    let repo2 = repo(&env, &[("hosts/h.toml", &host("prod", ""))]);
    converge(&env, &repo2, "h").0.expect_code(2);
    assert!(
        !root.join("etc/debug.conf").exists(),
        "pruned once its when is false"
    );
    converge(&env, &repo2, "h").0.expect_code(0);
    let failing = "\n[[check]]\nname = 'broken'\ncommand = ['false']\nretries = 0\n";
    let repo3 = repo(&env, &[("hosts/h.toml", &host("dev", failing))]);
    converge(&env, &repo3, "h").0.expect_code(4);
    assert!(!root.join("etc/debug.conf").exists(), "rolled back");
}
