//! A kind added by its module alone: `[[sysctl_file]]` (kernel parameters
//! in a file of their own under /etc/sysctl.d) is converged, refreshes
//! what refers to it, heals, and is pruned like any path, on a temporary
//! root; its keys are checked where they are written. The host settings
//! (`[[sysctl]]`, `[[alternative]]`) as far as a root holds them.

use std::path::PathBuf;

use crate::util::ssh_keys::{ADMIN, BACKUP, EARLIER};
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
fn authorized_keys_are_added_replaced_by_their_key_removed_and_put_back_when_dropped() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let h = Host::new();
    let backup = format!("from=\"10.0.0.0/8\",no-agent-forwarding {BACKUP}");
    let decl = |keys: &str, extra: &str| {
        format!("[[authorized_key]]\nuser = 'root'\nkeys = [{keys}]\n{extra}")
    };
    h.declare(&decl(&format!("'{ADMIN}', '{backup}'"), ""));
    h.converge().expect_code(2);
    let path = h.root.join("root/.ssh/authorized_keys");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{ADMIN}\n{backup}\n")
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    h.converge().expect_code(0);

    // The same key with other options replaces its line; a line of
    // another key (written by hand) stays without `exclusive`. Audit
    // mode reports it and changes nothing.
    let drifted = format!("{EARLIER}\n{ADMIN}\n{BACKUP} old\n");
    std::fs::write(&path, &drifted).unwrap();
    h.env.set_config("mode = \"audit\"\n");
    let audit = h.converge();
    audit.expect_code(2);
    assert!(
        audit.stdout.contains("authorized_key:root")
            && audit
                .stdout
                .contains("has other options, comment or copies"),
        "{}",
        audit.stdout
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), drifted);
    h.env.set_config("");
    h.converge().expect_code(2);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{EARLIER}\n{ADMIN}\n{backup}\n")
    );
    // `absent` removes a key by its blob, whatever its comment.
    h.declare(&decl(
        &format!("'{ADMIN}'"),
        &format!("absent = ['{BACKUP}']\n"),
    ));
    h.converge().expect_code(2);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{EARLIER}\n{ADMIN}\n")
    );
    // `exclusive`: the file is the declared keys.
    h.declare(&decl(&format!("'{ADMIN}'"), "exclusive = true\n"));
    h.converge().expect_code(2);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{ADMIN}\n")
    );
    h.converge().expect_code(0);
    // A mode others can read or write (sshd refuses the latter) is put
    // back to 0600 without rewriting the keys.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
    let written = std::fs::metadata(&path).unwrap().ino();
    h.converge().expect_code(2);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(
        std::fs::metadata(&path).unwrap().ino(),
        written,
        "not rewritten"
    );
    h.converge().expect_code(0);

    // Dropped: as it was before driftless managed it (an edit leaves
    // the file it created, empty); the earlier key went with `exclusive`.
    h.declare("");
    h.converge().expect_code(2);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "");

    // A file that held a key before: `exclusive` takes it away, dropping
    // the declaration puts it back, line for line.
    let h = Host::new();
    let path = h.root.join("root/.ssh/authorized_keys");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, format!("# mine\n{EARLIER}\n")).unwrap();
    h.declare(&decl(&format!("'{ADMIN}'"), "exclusive = true\n"));
    h.converge().expect_code(2);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{ADMIN}\n")
    );
    h.declare("");
    h.converge().expect_code(2);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("# mine\n{EARLIER}\n")
    );
}

#[test]
fn authorized_keys_created_by_a_failed_converge_go_with_its_rollback() {
    let h = Host::new();
    h.declare(&format!(
        "[[authorized_key]]\nuser = 'root'\nkeys = ['{ADMIN}']\n\n[[check]]\nname = 'broken'\ncommand = ['false']\nretries = 0\n"
    ));
    h.converge().expect_code(4);
    assert!(
        !h.root.join("root/.ssh").exists(),
        "the file and ~/.ssh it made are gone"
    );
}

#[test]
fn authorized_keys_at_the_default_path_of_a_user_whose_home_is_elsewhere_are_refused() {
    let h = Host::new();
    std::fs::create_dir_all(h.root.join("etc")).unwrap();
    std::fs::write(
        h.root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/srv/alice:/bin/bash\n",
    )
    .unwrap();
    std::fs::write(h.root.join("etc/group"), "root:x:0:\nalice:x:1000:\n").unwrap();
    h.declare(&format!(
        "[[authorized_key]]\nuser = 'alice'\nkeys = ['{ADMIN}']\n"
    ));
    let run = h.converge();
    run.expect_code(1);
    assert!(
        run.stderr.contains("hosts/h.toml:1:1")
            && run.stderr.contains("not in alice's home /srv/alice")
            && run.stderr.contains("set `path`"),
        "{}",
        run.stderr
    );
    assert!(!h.root.join("home").exists(), "nothing written");
    // With `path`, it is written there, owned by alice.
    h.declare(&format!(
        "[[authorized_key]]\nuser = 'alice'\npath = '/srv/alice/.ssh/authorized_keys'\nkeys = ['{ADMIN}']\n"
    ));
    h.converge().expect_code(2);
    let made = h.root.join("srv/alice/.ssh/authorized_keys");
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(&made).unwrap();
    assert_eq!(
        (md.uid(), md.gid(), md.mode() & 0o7777),
        (1000, 1000, 0o600)
    );
    let dir = std::fs::metadata(made.parent().unwrap()).unwrap();
    assert_eq!((dir.uid(), dir.mode() & 0o7777), (1000, 0o700));
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

/// The fstab of a host before driftless: its lines must stay as they are.
const FSTAB: &str = "# /etc/fstab: static file system information.\nUUID=4b1d / xfs defaults 0 1\n/dev/vg/data  /data  xfs  defaults  0 2\n";

#[test]
fn a_mount_line_is_written_among_the_others_healed_rolled_back_and_pruned_on_a_root() {
    let h = Host::new();
    std::fs::create_dir_all(h.root.join("etc")).unwrap();
    let fstab = h.root.join("etc/fstab");
    std::fs::write(&fstab, FSTAB).unwrap();
    let shm = |options: &str, extra: &str| {
        format!(
            "[[mount]]\npath = '/dev/shm'\ndevice = 'tmpfs'\nfstype = 'tmpfs'\noptions = '{options}'\n{extra}"
        )
    };
    h.declare(&shm("nodev,nosuid,noexec", ""));
    let plan = h.env.run(&plan_json_args(&h.repo, &h.root, "h"));
    let json = crate::json_schema::check(&plan.stdout, plan.code);
    let text = json.to_string();
    assert!(
        text.contains("/etc/fstab line: absent → `tmpfs /dev/shm tmpfs nodev,nosuid,noexec 0 0`")
            && text.contains("mount:/dev/shm: mounts are changed on the running host only"),
        "{json}"
    );
    h.converge().expect_code(2);
    let line = "tmpfs /dev/shm tmpfs nodev,nosuid,noexec 0 0\n";
    assert_eq!(
        std::fs::read_to_string(&fstab).unwrap(),
        format!("{FSTAB}{line}")
    );
    h.converge().expect_code(0);

    // A hand edit of the line is healed in its place; the others stay.
    let edited = FSTAB.replace(
        "UUID=4b1d",
        "tmpfs   /dev/shm tmpfs defaults 0 0\nUUID=4b1d",
    );
    std::fs::write(&fstab, &edited).unwrap();
    h.converge().expect_code(2);
    assert_eq!(
        std::fs::read_to_string(&fstab).unwrap(),
        FSTAB.replace(
            "UUID=4b1d",
            "tmpfs /dev/shm tmpfs nodev,nosuid,noexec 0 0\nUUID=4b1d"
        )
    );
    std::fs::write(&fstab, format!("{FSTAB}{line}")).unwrap();

    // A failed check puts the line back.
    h.declare(&shm(
        "nodev",
        "\n[[check]]\nname = 'broken'\ncommand = ['false']\nretries = 0\n",
    ));
    h.converge().expect_code(4);
    assert_eq!(
        std::fs::read_to_string(&fstab).unwrap(),
        format!("{FSTAB}{line}")
    );

    // `absent` removes a line driftless did not write; dropped, the
    // mounts are put back as they were: /data's line again, no /dev/shm.
    h.declare(&format!(
        "{}\n[[mount]]\npath = '/data'\nstate = 'absent'\n",
        shm("nodev,nosuid,noexec", "")
    ));
    h.converge().expect_code(2);
    assert!(!std::fs::read_to_string(&fstab).unwrap().contains("/data"));
    h.declare("");
    h.converge().expect_code(2);
    let back = std::fs::read_to_string(&fstab).unwrap();
    assert!(
        back.contains("/dev/vg/data /data xfs defaults 0 2") && !back.contains("/dev/shm"),
        "{back}"
    );
    h.converge().expect_code(0);
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
