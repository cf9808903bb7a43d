//! The package, rollback and blame system tests again on a host with dnf 5
//! and rpm 6 (a Debian forky root: dnf 5.4, rpm 6.1), the generation of
//! Fedora 41+ and EL 11; the same test bodies as on dnf 4, whose names
//! they keep.

use super::harness::{Suite, on_suite};
use super::{blame, floor, host, rollback};

/// One `#[test]` per listed test, running it with hosts built on forky.
macro_rules! on_dnf5 {
    ($($module:ident::$test:ident,)*) => {
        $(
            #[test]
            #[ignore = "needs root and a sandbox systemd host with dnf 5: system test (run with --include-ignored)"]
            fn $test() {
                on_suite(Suite::Forky, $module::$test);
            }
        )*
    };
}

on_dnf5! {
    host::from_empty_host_one_converge_applies_everything,
    host::second_converge_is_a_no_op,
    host::a_name_an_installed_package_provides_counts_as_installed,
    host::pinned_version_upgrades_and_downgrades_in_one_transaction,
    host::config_change_restarts_exactly_that_service_once,
    host::drift_is_reported_and_healed,
    host::unknown_package_fails_with_dnfs_message_and_nothing_after_runs,
    host::failing_scriptlet_fails_the_converge,
    host::failed_transaction_restores_the_repo_file,
    host::latest_installs_the_newest_build_with_one_metadata_query,
    host::a_file_can_be_owned_by_a_user_its_package_creates,
    host::other_dnf_failures_carry_dnfs_message,
    rollback::upgrade_to_a_failing_service_rolls_back_to_the_old_package,
    rollback::a_failing_check_after_a_config_change_rolls_back,
    rollback::a_dnf_failure_leaves_the_host_exactly_as_before,
    rollback::a_crash_at_every_step_leaves_old_or_new_never_a_mix,
    rollback::history_rollback_to_resume_and_retry,
    rollback::three_interrupted_converges_quarantine_the_head,
    blame::a_build_published_after_the_last_converge_is_installed,
    blame::a_busy_dnf_is_waited_for,
    floor::packages_are_not_queried_while_the_rpm_database_is_unchanged_and_every_change_is_seen,
    floor::units_read_over_d_bus_are_what_systemctl_reports_and_a_no_op_runs_no_process,
}
