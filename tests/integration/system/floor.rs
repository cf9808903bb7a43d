//! The no-op at its floor (issue 27): while the rpm database keeps its
//! identity the declared packages are not queried again, and whatever
//! changes the database (rpm or dnf, by hand, installing, removing,
//! upgrading, a rebuild in place) is seen by the next converge.

use std::time::Duration;

use super::harness::{Host, commands, program};
use crate::util::Run;

const HOST_FILE: &str = "hosts/web1.toml";

const CONFIG: &str = r#"[[repo]]
name = "driftless-test"
baseurl = "file:///srv/repo"
gpgcheck = false

[[package]]
name = "dl-hello"
version = "1.0-1"

[[package]]
name = "dl-tool"
"#;

/// How many `rpm` processes `run` started.
fn rpm_runs(run: &Run) -> usize {
    commands(run).iter().filter(|c| program(c) == "rpm").count()
}

/// Waits out the racily-clean window of the rpm database's stat (a change
/// within two seconds of a look is not trusted), then converges twice: the
/// first records the database's identity, the second is the no-op that
/// must not query.
fn settle(host: &Host) {
    std::thread::sleep(Duration::from_secs(3));
    host.converge().expect_code(0);
    let quiet = host.converge();
    quiet.expect_code(0);
    assert_eq!(
        rpm_runs(&quiet),
        0,
        "an unchanged rpm database was queried: {:?}",
        commands(&quiet)
    );
}

/// A change made behind driftless's back is seen: the converge queries the
/// database again and puts the declared state back (exit 2).
#[track_caller]
fn seen(host: &Host, change: &str) {
    host.exec(&["sh", "-c", change]).expect_code(0);
    let run = host.converge();
    run.expect_code(2);
    assert!(rpm_runs(&run) > 0, "{change}: not queried again");
    assert!(host.rpm_q("dl-tool").is_some(), "{change}");
    assert_eq!(host.rpm_q("dl-hello").as_deref(), Some("1.0-1"), "{change}");
    settle(host);
}

#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
pub(super) fn packages_are_not_queried_while_the_rpm_database_is_unchanged_and_every_change_is_seen()
 {
    let host = Host::boot("web1");
    host.write_config(&[(HOST_FILE, CONFIG)]);
    host.converge().expect_code(2);
    settle(&host);

    seen(&host, "rpm -e dl-tool");
    seen(&host, "dnf -y -q remove dl-tool");
    seen(&host, "rpm -U /srv/repo/dl-hello-2.0*.rpm");
    seen(&host, "dnf -y -q upgrade dl-hello");

    // A database rebuilt in place: nothing installed changed, but the
    // files did, so it is asked again (and finds the host in sync). The
    // hardest case: new files with the old size and mtime (`cp -p`), as
    // `rpmdb --rebuilddb` would leave them. (rpmdb itself cannot rename
    // the database directory on the sandbox's overlay root: EXDEV.)
    host.exec(&[
        "sh",
        "-c",
        "cd /var/lib/rpm && cp -p rpmdb.sqlite rebuilt && mv rebuilt rpmdb.sqlite",
    ])
    .expect_code(0);
    let run = host.converge();
    run.expect_code(0);
    assert!(rpm_runs(&run) > 0, "a rebuilt database was trusted");
    settle(&host);
}
