//! Edits of part of a file on a real host: an `[[ini]]` setting in the
//! config file an installed RPM owns (the file stays the package's, the
//! service restarts on the edit), and a `[[line]]` of sshd's config that
//! sshd itself validates before it replaces the file; and a release
//! downloaded from a loopback HTTPS server with a pinned checksum.

use std::collections::BTreeMap;

use super::harness::{AGENT_CONFIG, Host, conf_sum, web_events};
use crate::https::HttpsFiles;

const HOST_FILE: &str = "hosts/web1.toml";
const CONF: &str = "/etc/dl-web/dl-web.conf";
const SSHD: &str = "/etc/ssh/sshd_config";

/// What the loopback server serves at /tool, and its sha256.
const TOOL: &[u8] = b"#!/bin/sh\necho tool 1.0\n";

fn host_file(sshd_line: &str, url: &str) -> String {
    use sha2::Digest;
    let sha = hex::encode(sha2::Sha256::digest(TOOL));
    format!(
        r#"[[file]]
path = "/usr/local/bin/dl-release"
source = "{url}"
sha256 = "{sha}"
mode = "0755"

[[repo]]
name = "driftless-test"
baseurl = "file:///srv/repo"
gpgcheck = false

[[package]]
name = "dl-web"

[[ini]]
name = "dl-web-listen"
path = "{CONF}"
key = "listen"
value = 9090

[[service]]
name = "dl-web"
enabled = true
state = "running"
restart_on = ["ini:dl-web-listen"]

[[line]]
name = "sshd-root"
path = "{SSHD}"
line = "{sshd_line}"
match = "^#?PermitRootLogin"
validate = ["/usr/sbin/sshd", "-t", "-f", "%"]
"#
    )
}

#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
fn an_edit_of_an_rpm_owned_file_and_a_line_sshd_validates() {
    let host = Host::boot("web1");
    // sshd -t wants its privilege separation directory, which its unit
    // (masked here) would make.
    host.exec(&["mkdir", "-p", "/run/sshd"]).expect_code(0);
    let sshd_before = host.read(SSHD).expect("the rootfs has sshd_config");
    // Hosts share the machine's network: the server on 127.0.0.1 is theirs.
    let certs = tempfile::tempdir().expect("a certificate directory");
    let files = BTreeMap::from([("/tool".to_owned(), TOOL.to_vec())]);
    let server = HttpsFiles::start(certs.path(), 0, files);
    let ca = std::fs::read(&server.ca_file).expect("the CA");
    std::fs::write(host.path("/srv/test-ca.pem"), ca).expect("the CA in the host");
    std::fs::write(
        host.path(AGENT_CONFIG),
        "[download]\nca_file = \"/srv/test-ca.pem\"\n",
    )
    .expect("the agent config");
    let url = server.url("/tool");
    host.write_config(&[(HOST_FILE, &host_file("PermitRootLogin no", &url))]);
    // dl-web.conf comes with the package this converge installs: the edit
    // is planned after the package transaction.
    host.converge().expect_code(2);
    let conf = host.read(CONF).expect("dl-web.conf");
    assert_eq!(conf, "# dl-web default configuration\nlisten = 9090\n");
    assert_eq!(
        host.exec(&["rpm", "-qf", CONF]).stdout.trim(),
        "dl-web-1.0-1.noarch",
        "the file stays the package's"
    );
    let verify = host.exec(&["rpm", "-V", "dl-web"]);
    assert!(
        verify.stdout.contains(CONF),
        "rpm -V sees the edit: {}",
        verify.stdout
    );
    assert_eq!(
        web_events(&host).last(),
        Some(&("start".to_owned(), conf_sum(&conf))),
        "dl-web runs with the edited file"
    );
    let sshd = host.read(SSHD).expect("sshd_config");
    assert!(sshd.lines().any(|l| l == "PermitRootLogin no"), "{sshd}");
    assert_eq!(sshd.lines().count(), sshd_before.lines().count());
    let run = host.exec(&["/usr/local/bin/dl-release"]);
    assert_eq!(run.stdout, "tool 1.0\n", "the downloaded release runs");
    // The no-op needs no network.
    server.stop();
    host.converge().expect_code(0);

    // sshd refuses the next edit: nothing is replaced, the converge fails.
    host.write_config(&[(HOST_FILE, &host_file("PermitRootLogin sometimes", &url))]);
    let run = host.converge();
    run.expect_code(4);
    assert!(
        run.stderr.contains("rejected the new content"),
        "{}",
        run.stderr
    );
    assert_eq!(host.read(SSHD).as_deref(), Some(sshd.as_str()));
}
