//! Planning host settings ([`Prim::Setting`](crate::desired::kinds::Prim)):
//! the declared facets that differ from what was observed become one
//! change per setting, with a reason naming each facet `current → desired`.
//! What the facets are called and how they are shown is the one `match`
//! over the domains on this side ([`facet_words`]).

use super::change::{Change, FacetChange, Op, without_credentials};
use super::files::Planner;
use super::observed::{Observed, ObservedHost, SettingObs, setting_key};
use crate::desired::kinds::{Domain, SettingDecl, alternative, mount, sysctl};
use crate::desired::model::ResourceId;

/// How a facet of `domain`'s setting `name` is named in a reason, and
/// whether a declared `want` is managed at all (a kernel parameter's live
/// value recorded as `None` was not there to put back).
fn facet_words(domain: Domain, name: &str, facet: &str, want: Option<&str>) -> (String, bool) {
    match domain {
        Domain::Sysctl => match facet {
            sysctl::LIVE => ("live value".to_owned(), want.is_some()),
            _ => (sysctl::file_of(name), true),
        },
        Domain::Alternative => ("choice".to_owned(), want.is_some()),
        Domain::Mount => match facet {
            mount::FSTAB => ("/etc/fstab line".to_owned(), true),
            _ => ("mount".to_owned(), true),
        },
    }
}

/// Why the declared facets cannot be set on this host, checked before
/// anything changes (a path that is not a registered alternative).
fn refused(decl: &SettingDecl<'_>, obs: &SettingObs) -> Option<String> {
    match decl.domain {
        Domain::Sysctl | Domain::Mount => None,
        Domain::Alternative => {
            // Not read on this root: nothing to check it against.
            if obs.not_here.iter().any(|(f, _)| f == alternative::CHOICE) {
                return None;
            }
            let want = decl
                .facets
                .iter()
                .find(|(k, _)| *k == alternative::CHOICE)?;
            let want = want.1.as_deref()?;
            (want != alternative::AUTO && !obs.choices.iter().any(|c| c == want)).then(|| {
                format!(
                    "`{want}` is not a registered alternative for {} (registered: {})",
                    decl.name,
                    if obs.choices.is_empty() {
                        "none".to_owned()
                    } else {
                        obs.choices.join(", ")
                    }
                )
            })
        }
    }
}

/// The file a setting's facets are kept in, if any (whose missing
/// directories the plan creates).
fn kept_in(domain: Domain, name: &str) -> Option<String> {
    match domain {
        Domain::Sysctl => Some(sysctl::file_of(name)),
        Domain::Alternative | Domain::Mount => None,
    }
}

/// A facet's value in a reason: a file's content by its lines that are
/// not comments, credentials masked.
fn shown(value: Option<&str>) -> String {
    match value {
        None => "absent".to_owned(),
        Some(v) => {
            let lines: Vec<&str> = v
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect();
            format!("`{}`", without_credentials(&lines.join("; ")))
        }
    }
}

impl Planner<'_> {
    /// Plans the setting `decl` (the resource `id`) against the host.
    pub(super) fn setting_decl(
        &mut self,
        decl: &SettingDecl<'_>,
        id: &ResourceId,
        host: &ObservedHost,
    ) -> Result<(), String> {
        let Some(obs) = host.settings.get(&setting_key(decl.domain, decl.name)) else {
            return Err(format!("{id} was not observed (internal error)"));
        };
        if let Some(why) = &obs.missing {
            if decl.ignore_missing {
                self.note(format!("{id} is skipped: {why} (ignore_missing = true)"));
                return Ok(());
            }
            return Err(format!(
                "{why}; check the name, or set `ignore_missing = true` for a parameter only some kernels have"
            ));
        }
        if let Some(why) = refused(decl, obs) {
            return Err(why);
        }
        for (_, why) in &obs.not_here {
            self.note(format!("{id}: {why}"));
        }
        let mut facets = Vec::new();
        let mut reasons = Vec::new();
        for (facet, want) in &decl.facets {
            if obs.not_here.iter().any(|(f, _)| f == facet) {
                continue;
            }
            let want = want.as_deref();
            let (label, managed) = facet_words(decl.domain, decl.name, facet, want);
            let have = obs.facet(facet);
            if !managed || have == want {
                continue;
            }
            reasons.push(format!("{label}: {} → {}", shown(have), shown(want)));
            facets.push(FacetChange {
                facet: (*facet).to_owned(),
                from: have.map(str::to_owned),
                to: want.map(str::to_owned),
            });
        }
        if !facets.is_empty() {
            if let Some(file) = kept_in(decl.domain, decl.name)
                && !obs.missing_parents.is_empty()
            {
                let missing = Observed::Missing {
                    missing_parents: obs.missing_parents.clone(),
                };
                self.parents(&file, &missing, false)?;
            }
            let op = Op::Set {
                domain: decl.domain,
                name: decl.name.to_owned(),
                facets,
            };
            self.setting(Change::new(id, op, reasons));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_registered_path_is_chosen_and_only_where_it_can_be_read() {
        let decl = |path: &'static str| SettingDecl {
            domain: Domain::Alternative,
            name: "editor",
            facets: vec![(alternative::CHOICE, Some(path.into()))],
            ignore_missing: false,
        };
        let obs = SettingObs {
            choices: vec!["/usr/bin/vi".into(), "/usr/bin/nano".into()],
            ..SettingObs::default()
        };
        assert_eq!(refused(&decl("/usr/bin/vi"), &obs), None);
        assert_eq!(refused(&decl("auto"), &obs), None);
        assert_eq!(
            refused(&decl("/usr/bin/ed"), &obs).as_deref(),
            Some(
                "`/usr/bin/ed` is not a registered alternative for editor (registered: /usr/bin/vi, /usr/bin/nano)"
            )
        );
        let not_here = SettingObs {
            not_here: vec![(alternative::CHOICE.into(), "--root".into())],
            ..SettingObs::default()
        };
        assert_eq!(refused(&decl("/usr/bin/ed"), &not_here), None);
    }

    #[test]
    fn a_password_in_a_mount_line_is_never_shown() {
        let line = "//nas/share /mnt/share cifs username=svc,password=hunter2,pass=x,vers=3.0 0 0";
        assert_eq!(
            without_credentials(line),
            "//nas/share /mnt/share cifs username=svc,password=********,pass=********,vers=3.0 0 0"
        );
        assert_eq!(
            shown(Some(line)),
            "`//nas/share /mnt/share cifs username=svc,password=********,pass=********,vers=3.0 0 0`"
        );
        let json = serde_json::to_string(&FacetChange {
            facet: mount::FSTAB.into(),
            from: Some(line.into()),
            to: None,
        })
        .expect("json");
        assert!(!json.contains("hunter2"), "{json}");
        assert!(json.contains("password=********"), "{json}");
        // Not an option named so: kept.
        assert_eq!(
            without_credentials("kernel.passwords = 1"),
            "kernel.passwords = 1"
        );
    }

    #[test]
    fn a_file_is_shown_by_its_lines_and_absence_in_words() {
        assert_eq!(shown(None), "absent");
        assert_eq!(
            shown(Some("# Managed\nkernel.msgmax = 9000\n")),
            "`kernel.msgmax = 9000`"
        );
    }
}
