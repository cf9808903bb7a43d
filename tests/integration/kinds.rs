//! A kind added by its module alone: `[[sysctl_file]]` (kernel parameters
//! in a file of their own under /etc/sysctl.d) is converged, refreshes
//! what refers to it, heals, and is pruned like any path, on a temporary
//! root; its keys are checked where they are written. The host settings
//! (`[[sysctl]]`, `[[alternative]]`) as far as a root holds them.

use std::path::PathBuf;

use crate::util::{Env, converge_args, plan_json_args, write_repo};

const FILE: &str = "etc/sysctl.d/90-hardening.conf";

struct Host {
    env: Env,
    repo: PathBuf,
    root: PathBuf,
}

impl Host {
    fn new() -> Self {
        let env = Env::new();
        let (repo, root) = (env.path().join("repo"), env.path().join("root"));
        Self { env, repo, root }
    }

    fn declare(&self, body: &str) {
        std::fs::remove_dir_all(&self.repo).ok();
        let marker = self.env.path().join("applied");
        write_repo(
            &self.repo,
            &[(
                "hosts/h.toml",
                &body.replace("{marker}", &marker.display().to_string()),
            )],
        );
    }

    fn converge(&self) -> crate::util::Run {
        self.env.run(&converge_args(&self.repo, &self.root, "h"))
    }

    fn applied(&self) -> usize {
        std::fs::read_to_string(self.env.path().join("applied")).map_or(0, |t| t.lines().count())
    }
}

fn hardening(forward: &str) -> String {
    format!(
        r#"
[[sysctl_file]]
name = "90-hardening"
settings = {{ "net.ipv4.ip_forward" = {forward}, "kernel.kptr_restrict" = "2", "kernel/yama/ptrace_scope" = 1 }}

[[command]]
name = "sysctl-system"
command = ["sh", "-c", "echo applied >> {{marker}}"]
refresh_on = ["sysctl_file:90-hardening"]
"#
    )
}

#[test]
fn a_sysctl_file_is_written_refreshes_what_refers_to_it_heals_and_is_pruned() {
    let h = Host::new();
    h.declare(&hardening("0"));
    h.converge().expect_code(2);
    let path = h.root.join(FILE);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "# Managed by driftless: local changes are overwritten.\nkernel.kptr_restrict = 2\nkernel/yama/ptrace_scope = 1\nnet.ipv4.ip_forward = 0\n"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
        0o644
    );
    assert_eq!(h.applied(), 1, "the refresh ran once");
    h.converge().expect_code(0);
    assert_eq!(h.applied(), 1, "a no-op refreshes nothing");

    // A changed setting: the file and the refresh, with the diff shown.
    h.declare(&hardening("1"));
    let plan = h.env.run(&plan_json_args(&h.repo, &h.root, "h"));
    plan.expect_code(2);
    let json: serde_json::Value = serde_json::from_str(plan.stdout.trim()).unwrap();
    let change = &json["changes"][0];
    assert_eq!(change["resource"]["kind"], "sysctl_file", "{json}");
    assert_eq!(change["resource"]["key"], "90-hardening", "{json}");
    assert!(
        change["diff"]
            .as_str()
            .unwrap_or_default()
            .contains("+net.ipv4.ip_forward = 1"),
        "{json}"
    );
    h.converge().expect_code(2);
    assert_eq!(h.applied(), 2);

    // Drift is healed.
    std::fs::write(&path, "net.ipv4.ip_forward = 1\nkernel.kptr_restrict = 0\n").unwrap();
    h.converge().expect_code(2);
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("kernel.kptr_restrict = 2")
    );

    // Dropped from the repo: driftless made it, so it goes.
    h.declare("");
    h.converge().expect_code(2);
    assert!(!path.exists());
    h.converge().expect_code(0);
}

const MODPROBE: &str = "etc/modprobe.d/cramfs.conf";

#[test]
fn a_kernel_module_file_is_written_changed_healed_and_pruned() {
    let h = Host::new();
    h.declare("[[kernel_module]]\nname = 'cramfs'\nstate = 'disabled'\n");
    h.converge().expect_code(2);
    let path = h.root.join(MODPROBE);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "# Managed by driftless: local changes are overwritten.\nblacklist cramfs\ninstall cramfs /bin/false\n"
    );
    h.converge().expect_code(0);

    h.declare("[[kernel_module]]\nname = 'cramfs'\nstate = 'options'\noptions = 'debug=1'\n");
    let plan = h.env.run(&plan_json_args(&h.repo, &h.root, "h"));
    plan.expect_code(2);
    let json: serde_json::Value = serde_json::from_str(plan.stdout.trim()).unwrap();
    let diff = json["changes"][0]["diff"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        diff.contains("-install cramfs /bin/false") && diff.contains("+options cramfs debug=1"),
        "{json}"
    );
    h.converge().expect_code(2);

    std::fs::write(&path, "# someone\n").unwrap();
    h.converge().expect_code(2);
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .ends_with("options cramfs debug=1\n")
    );

    h.declare("");
    h.converge().expect_code(2);
    assert!(!path.exists(), "driftless made it, so it goes");
}

#[test]
fn a_dropin_is_written_under_its_units_directory_and_pruned() {
    let h = Host::new();
    let body = "[[dropin]]\nunit = 'dl-web'\nname = '10-limits'\ncontent = \"[Service]\\nLimitNOFILE=65536\"\n\n[[command]]\nname = 'reload'\ncommand = ['sh', '-c', 'echo applied >> {marker}']\nrefresh_on = ['dropin:dl-web/10-limits']\n";
    h.declare(body);
    h.converge().expect_code(2);
    let path = h
        .root
        .join("etc/systemd/system/dl-web.service.d/10-limits.conf");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "[Service]\nLimitNOFILE=65536\n"
    );
    assert_eq!(h.applied(), 1, "refreshed on the drop-in");
    h.converge().expect_code(0);
    h.declare("");
    h.converge().expect_code(2);
    assert!(!path.exists());
}

const MSGMAX: &str = "etc/sysctl.d/90-driftless-kernel.msgmax.conf";

fn msgmax(value: &str, extra: &str) -> String {
    format!(
        "[[sysctl]]\nname = 'kernel.msgmax'\nvalue = {value}\n\n[[command]]\nname = 'reload'\ncommand = ['sh', '-c', 'echo applied >> {{marker}}']\nrefresh_on = ['sysctl:kernel.msgmax']\n{extra}"
    )
}

/// On a temporary root a `[[sysctl]]` is its persisting file (the running
/// kernel's live value is the running host's, not the root's: the plan
/// says so); the live side is the sandbox system test's.
#[test]
fn a_sysctl_is_persisted_on_a_root_refreshes_heals_rolls_back_and_is_pruned() {
    let h = Host::new();
    h.declare(&msgmax("9000", ""));
    let plan = h.env.run(&plan_json_args(&h.repo, &h.root, "h"));
    let json = crate::json_schema::check(&plan.stdout, plan.code);
    let changes = json["changes"].as_array().cloned().unwrap_or_default();
    // The root is empty: the file's directories come first, as a file's
    // missing parents do (a rollback removes them again).
    let dirs: Vec<&str> = changes
        .iter()
        .filter(|c| c["action"] == "create_dir")
        .filter_map(|c| c["path"].as_str())
        .collect();
    assert_eq!(dirs, ["/etc", "/etc/sysctl.d"], "{json}");
    let change = &changes[2];
    assert_eq!(change["action"], "set", "{json}");
    assert_eq!(change["resource"]["kind"], "sysctl", "{json}");
    assert_eq!(change["domain"], "sysctl", "{json}");
    assert_eq!(change["name"], "kernel.msgmax", "{json}");
    let expected = "# Managed by driftless: local changes are overwritten.\nkernel.msgmax = 9000\n";
    assert_eq!(
        change["facets"],
        serde_json::json!([{ "facet": "file", "from": null, "to": expected }]),
        "{json}"
    );
    assert!(
        json["notices"].to_string().contains(
            "sysctl:kernel.msgmax: the live value is applied on the running host only, not with --root"
        ),
        "{json}"
    );
    h.converge().expect_code(2);
    let path = h.root.join(MSGMAX);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
        0o644
    );
    assert_eq!(h.applied(), 1, "refreshed on sysctl:kernel.msgmax");
    h.converge().expect_code(0);
    assert_eq!(h.applied(), 1, "a no-op refreshes nothing");

    // Drift of the file is healed.
    std::fs::write(&path, "kernel.msgmax = 1\n").unwrap();
    h.converge().expect_code(2);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);

    // A failed check puts the file back.
    h.declare(&msgmax(
        "'9100'",
        "\n[[check]]\nname = 'broken'\ncommand = ['false']\nretries = 0\n",
    ));
    h.converge().expect_code(4);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);

    // Dropped: there was no file before driftless, so it goes.
    h.declare("");
    h.converge().expect_code(2);
    assert!(!path.exists());
    h.converge().expect_code(0);
}

/// The alternatives tools switch the running host only: on a temporary
/// root an `[[alternative]]` changes nothing, and the plan says so (the
/// sandbox system test converges one).
#[test]
fn an_alternative_is_left_alone_on_a_root_with_a_note() {
    let h = Host::new();
    h.declare("[[alternative]]\nname = 'editor'\npath = '/usr/bin/vi'\n");
    let plan = h.env.run(&plan_json_args(&h.repo, &h.root, "h"));
    let json = crate::json_schema::check(&plan.stdout, plan.code);
    assert_eq!(json["result"], "in_sync", "{json}");
    assert!(
        json["notices"].to_string().contains(
            "alternative:editor: alternatives are switched on the running host only, not with --root"
        ),
        "{json}"
    );
    h.converge().expect_code(0);
}
