//! Package decisions: what one `[[package]]` needs, given what rpm says is
//! installed and what the repositories offer.

use serde::{Deserialize, Serialize};

use super::rpmver::{Evr, Nevra};
use crate::desired::model::{Package, PackageState};

/// What happens to one package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "package_action", rename_all = "snake_case")]
pub enum PackageChange {
    /// Install `spec` (a name, or `name-evr`).
    Install {
        /// dnf spec.
        spec: String,
    },
    /// Move to the newer `spec`.
    Upgrade {
        /// dnf spec.
        spec: String,
        /// What is installed now.
        from: String,
    },
    /// Move to the older `spec`.
    Downgrade {
        /// dnf spec.
        spec: String,
        /// What is installed now.
        from: String,
    },
    /// Remove every installed build.
    Remove {
        /// What is installed now.
        installed: Vec<String>,
    },
}

/// What one declared package needs in this converge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// It is as declared.
    AsDeclared,
    /// This change, for this reason.
    Change(PackageChange, String),
    /// A `latest` package no repository offers yet, while repo files are
    /// written in this converge: installed by name now if missing, and
    /// decided again once the repo files are written (see `converge`).
    AfterRepoFiles {
        /// The install, when it is not installed at all.
        install: Option<(PackageChange, String)>,
        /// What the operator should know.
        note: String,
    },
}

/// Decides package `p`. `repo_files_pending`: repo files are written in
/// this converge, before the package transaction. `latest_error`: why the
/// repository query for `latest` versions failed, for the message.
pub(crate) fn decide(
    p: &Package,
    installed: &[Nevra],
    available: Option<&Evr>,
    repo_files_pending: bool,
    latest_error: Option<&str>,
) -> Result<Decision, String> {
    if p.state == PackageState::Latest && available.is_none() && repo_files_pending {
        return Ok(Decision::AfterRepoFiles {
            install: installed.is_empty().then(|| {
                (
                    PackageChange::Install {
                        spec: p.name.clone(),
                    },
                    "not installed; the newest build is looked up after the repo files are written"
                        .to_owned(),
                )
            }),
            note: format!(
                "package {}: the latest version is checked after the repo files are written",
                p.name
            ),
        });
    }
    match plan_package(p, installed, available) {
        Ok(Some((change, reason))) => Ok(Decision::Change(change, reason)),
        Ok(None) => Ok(Decision::AsDeclared),
        Err(message) => Err(match latest_error {
            Some(e) => format!("{message} (the repository query failed: {e})"),
            None => message,
        }),
    }
}

/// The change `p` needs, with the reason, or `None` when it is as declared.
/// `Err` when it cannot be decided (a `latest` package no repository offers).
pub(crate) fn plan_package(
    p: &Package,
    installed: &[Nevra],
    available: Option<&Evr>,
) -> Result<Option<(PackageChange, String)>, String> {
    let newest = installed.iter().map(|n| &n.evr).max();
    let shown = || {
        installed
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let spec = |evr: &Evr| format!("{}-{evr}", p.name);
    Ok(match &p.state {
        PackageState::Present(None) => newest.is_none().then(|| {
            (
                PackageChange::Install {
                    spec: p.name.clone(),
                },
                "not installed".to_owned(),
            )
        }),
        PackageState::Present(Some(v)) => {
            let want = Evr::parse(v).ok_or_else(|| format!("version `{v}` is not an EVR"))?;
            match newest {
                _ if installed.iter().any(|n| n.evr == want) => None,
                None => Some((
                    PackageChange::Install { spec: spec(&want) },
                    format!("not installed, should be {want}"),
                )),
                Some(have) if want > *have => Some((
                    PackageChange::Upgrade {
                        spec: spec(&want),
                        from: shown(),
                    },
                    format!("{have} installed, pinned to {want}"),
                )),
                Some(have) => Some((
                    PackageChange::Downgrade {
                        spec: spec(&want),
                        from: shown(),
                    },
                    format!("{have} installed, pinned to {want}"),
                )),
            }
        }
        PackageState::Latest => {
            let Some(latest) = available else {
                return Err(format!(
                    "state = \"latest\", but no enabled repository offers {}",
                    p.name
                ));
            };
            match newest {
                None => Some((
                    PackageChange::Install { spec: spec(latest) },
                    format!("not installed; latest is {latest}"),
                )),
                Some(have) if latest > have => Some((
                    PackageChange::Upgrade {
                        spec: spec(latest),
                        from: shown(),
                    },
                    format!("{have} installed, {latest} available"),
                )),
                Some(_) => None,
            }
        }
        PackageState::Absent => (!installed.is_empty()).then(|| {
            (
                PackageChange::Remove {
                    installed: installed.iter().map(ToString::to_string).collect(),
                },
                format!("{} installed, should be absent", shown()),
            )
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nevra(evr: &str) -> Nevra {
        Nevra {
            name: "nginx".into(),
            evr: Evr::parse(evr).expect("evr"),
            arch: "x86_64".into(),
        }
    }

    fn pkg(state: PackageState) -> Package {
        Package {
            name: "nginx".into(),
            state,
        }
    }

    #[test]
    fn present_installs_only_when_missing() {
        let p = pkg(PackageState::Present(None));
        assert_eq!(plan_package(&p, &[nevra("1.0-1")], None), Ok(None));
        let (c, why) = plan_package(&p, &[], None).expect("ok").expect("change");
        assert_eq!(
            c,
            PackageChange::Install {
                spec: "nginx".into()
            }
        );
        assert_eq!(why, "not installed");
    }

    #[test]
    fn pins_upgrade_downgrade_and_respect_epochs() {
        let p = pkg(PackageState::Present(Some("1:1.20-1".into())));
        assert!(matches!(
            plan_package(&p, &[nevra("1.99-1")], None),
            Ok(Some((PackageChange::Upgrade { .. }, _)))
        ));
        assert!(matches!(
            plan_package(&p, &[nevra("2:0.1-1")], None),
            Ok(Some((PackageChange::Downgrade { .. }, _)))
        ));
        assert_eq!(plan_package(&p, &[nevra("1:1.20-1")], None), Ok(None));
        let Ok(Some((PackageChange::Install { spec }, _))) = plan_package(&p, &[], None) else {
            panic!("expected an install")
        };
        assert_eq!(spec, "nginx-1:1.20-1");
        // Several builds installed (kernels): the pinned one among them is enough.
        assert_eq!(
            plan_package(&p, &[nevra("1.0-1"), nevra("1:1.20-1")], None),
            Ok(None)
        );
    }

    #[test]
    fn latest_compares_with_the_repositories() {
        let p = pkg(PackageState::Latest);
        let avail = Evr::parse("1.2-1").expect("evr");
        assert_eq!(plan_package(&p, &[nevra("1.2-1")], Some(&avail)), Ok(None));
        assert!(matches!(
            plan_package(&p, &[nevra("1.1-9")], Some(&avail)),
            Ok(Some((PackageChange::Upgrade { .. }, _)))
        ));
        assert!(plan_package(&p, &[nevra("1.1-9")], None).is_err());
        // A locally newer build is not "downgraded to latest".
        assert_eq!(plan_package(&p, &[nevra("1.3-1")], Some(&avail)), Ok(None));
    }

    #[test]
    fn absent_removes_every_build() {
        let p = pkg(PackageState::Absent);
        assert_eq!(plan_package(&p, &[], None), Ok(None));
        let Ok(Some((PackageChange::Remove { installed }, _))) =
            plan_package(&p, &[nevra("1-1"), nevra("2-1")], None)
        else {
            panic!("expected a removal")
        };
        assert_eq!(installed.len(), 2);
    }

    #[test]
    fn latest_waits_for_repo_files_written_in_the_same_converge() {
        let p = pkg(PackageState::Latest);
        let Ok(Decision::AfterRepoFiles { install, note }) = decide(&p, &[], None, true, None)
        else {
            panic!("expected a decision after the repo files")
        };
        assert!(matches!(install, Some((PackageChange::Install { .. }, _))));
        assert!(note.contains("after the repo files are written"), "{note}");
        let Ok(Decision::AfterRepoFiles { install, .. }) =
            decide(&p, &[nevra("1.0-1")], None, true, None)
        else {
            panic!("expected a decision after the repo files")
        };
        assert_eq!(install, None, "installed: only looked at again");
        let err = decide(&p, &[], None, false, Some("repo down")).expect_err("no repository");
        assert!(
            err.ends_with("(the repository query failed: repo down)"),
            "{err}"
        );
        assert_eq!(
            decide(&pkg(PackageState::Absent), &[], None, true, None),
            Ok(Decision::AsDeclared)
        );
    }
}
