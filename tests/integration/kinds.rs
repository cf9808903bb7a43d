//! A kind added by its module alone: `[[sysctl_file]]` (kernel parameters
//! in a file of their own under /etc/sysctl.d) is converged, refreshes
//! what refers to it, heals, and is pruned like any path, on a temporary
//! root; its keys are checked where they are written.

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

#[test]
fn a_firewalld_zone_file_is_written_changed_healed_and_an_override_put_back_when_dropped() {
    let h = Host::new();
    let path = h.root.join("etc/firewalld/zones/public.xml");
    // An override the admin wrote before driftless managed the zone.
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let before =
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<zone><service name=\"ssh\"/></zone>\n";
    std::fs::write(&path, before).unwrap();
    let zone = |port: &str| {
        format!(
            "[[firewalld]]\nzone = 'public'\ntarget = 'DROP'\nservices = ['ssh', 'https']\nports = ['{port}']\nsources = ['10.1.0.0/16', '52:54:00:aa:bb:cc', 'ipset:office']\nrich_rules = ['rule family=\"ipv4\" source address=\"192.0.2.0/24\" service name=\"http\" accept']\nmasquerade = true\n"
        )
    };
    h.declare(&zone("8443/tcp"));
    h.converge().expect_code(2);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        r#"<?xml version="1.0" encoding="utf-8"?>
<!-- Managed by driftless: local changes are overwritten. -->
<zone target="DROP">
  <source address="10.1.0.0/16"/>
  <source address="52:54:00:aa:bb:cc"/>
  <source ipset="office"/>
  <service name="ssh"/>
  <service name="https"/>
  <port port="8443" protocol="tcp"/>
  <masquerade/>
  <rule family="ipv4">
    <source address="192.0.2.0/24"/>
    <service name="http"/>
    <accept/>
  </rule>
</zone>
"#
    );
    h.converge().expect_code(0);

    h.declare(&zone("9443/tcp"));
    let plan = h.env.run(&plan_json_args(&h.repo, &h.root, "h"));
    plan.expect_code(2);
    let json: serde_json::Value = serde_json::from_str(plan.stdout.trim()).unwrap();
    let diff = json["changes"][0]["diff"].as_str().unwrap_or_default();
    assert!(
        diff.contains("-  <port port=\"8443\"") && diff.contains("+  <port port=\"9443\""),
        "{json}"
    );
    h.converge().expect_code(2);

    // Drift: audit mode reports it and leaves it; a converge heals it.
    std::fs::write(&path, "<zone/>\n").unwrap();
    h.env.set_config("mode = \"audit\"\n");
    let audit = h.converge();
    audit.expect_code(2);
    assert!(
        audit.stdout.contains("firewalld:public"),
        "{}",
        audit.stdout
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "<zone/>\n");
    h.env.set_config("");
    h.converge().expect_code(2);
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("port=\"9443\"")
    );

    h.declare("");
    h.converge().expect_code(2);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        before,
        "the admin's override is put back"
    );
}
