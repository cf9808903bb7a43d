//! `[[service]]`: a systemd unit, enabled or not, running or not, restarted or reloaded when what it reads changes.

use serde::{Deserialize, Serialize};

use super::ResourceId;
use super::{Decl, Identity, KindDef, Parsed, Prim, PrimKind, ReadContent, Relations};
use crate::desired::checks;
use crate::desired::parser::Parser;
use crate::desired::schema::{self, Fields, Sp};

/// Whether a unit should run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Active.
    Running,
    /// Inactive.
    Stopped,
    /// Stopped and masked (its unit file linked to `/dev/null`), so that
    /// nothing can start it, not even as a dependency.
    Masked,
}

/// A systemd unit. Unset fields are not managed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Full unit name (`nginx.service`).
    pub unit: String,
    /// Enabled at boot, if managed.
    pub enabled: Option<bool>,
    /// Running or stopped, if managed.
    pub state: Option<RunState>,
    /// Restart the unit when any of these changed in a converge.
    pub restart_on: Vec<ResourceId>,
    /// Reload the unit when any of these changed in a converge.
    pub reload_on: Vec<ResourceId>,
    /// How to restart it instead of `systemctl restart` (for units that
    /// refuse a manual stop, as auditd: `["/usr/sbin/service", "auditd",
    /// "restart"]`); also what a rollback restarts it with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_command: Option<Vec<String>>,
}

impl Identity for Service {
    fn key(&self) -> &str {
        &self.unit
    }
}

impl KindDef for Service {
    type Spec = Self;
    const KEYS: &'static [&'static str] = &[
        "name",
        "enabled",
        "state",
        "restart_on",
        "reload_on",
        "restart_command",
        "prune",
    ];

    fn parse(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<Parsed<Self::Spec>> {
        let unit = f.required_string(p.cx, "name");
        let unit = unit.and_then(|u| p.checked(&u, checks::unit_name));
        let state = match f.string(p.cx, "state") {
            None => Some(None),
            Some(s) => match s.get_ref().as_str() {
                "running" => Some(Some(RunState::Running)),
                "stopped" => Some(Some(RunState::Stopped)),
                "masked" => Some(Some(RunState::Masked)),
                other => {
                    p.cx.error(
                        &s.span(),
                        schema::unknown_state(other, &["running", "stopped", "masked"]),
                    );
                    None
                }
            },
        };
        let mut origins = Vec::new();
        let mut refs = |key: &str| -> Vec<ResourceId> {
            let mut ids = Vec::new();
            for r in f.string_list(p.cx, key).unwrap_or_default() {
                if let Some(id) = p.checked(&r, checks::reference) {
                    ids.push(id);
                    origins.push(p.cx.origin(&r.span()));
                }
            }
            ids
        };
        let restart_on = refs("restart_on");
        let reload_on = refs("reload_on");
        let restart_command = p.argv(f, "restart_command")?;
        if let Some(program) = restart_command.as_ref().and_then(|a| a.first())
            && !program.starts_with('/')
        {
            let span = f
                .raw("restart_command")
                .map(toml::Spanned::span)
                .unwrap_or_default();
            p.cx.error(
                &span,
                format!("`restart_command` must start with an absolute program, not `{program}`"),
            );
            return None;
        }
        let enabled = f.bool(p.cx, "enabled");
        if state == Some(Some(RunState::Masked)) {
            masked_alone(p, f, enabled.as_ref())?;
        }
        Some(Parsed {
            spec: Service {
                unit: unit?,
                enabled: enabled.map(Sp::into_inner),
                state: state?,
                restart_on,
                reload_on,
                restart_command,
            },
            content_line: 0,
            ref_origins: origins,
        })
    }

    fn resolve(spec: &Self, _: &mut dyn ReadContent, _: &Decl) -> Option<Self> {
        Some(spec.clone())
    }

    fn relations(s: &Self) -> Relations<'_> {
        Relations {
            refers_to: s
                .restart_on
                .iter()
                .map(|r| ("restart_on", r))
                .chain(s.reload_on.iter().map(|r| ("reload_on", r)))
                .collect(),
            ..Relations::default()
        }
    }

    const PRIM: PrimKind = PrimKind::Unit;

    fn lower(&self) -> Prim<'_> {
        Prim::Unit(self)
    }

    /// A unit is completed as `[[service]]` completes its `name`
    /// (`nginx` is `nginx.service`).
    fn reference_key(key: &str) -> Result<String, String> {
        checks::unit_name(key)
    }
}

/// A masked unit is neither enabled nor started, restarted or reloaded:
/// the keys that would say otherwise are refused, each at its place.
fn masked_alone(p: &Parser<'_, '_>, f: &Fields<'_, '_>, enabled: Option<&Sp<bool>>) -> Option<()> {
    let mut clash = false;
    if let Some(e) = enabled {
        p.cx.error(
            &e.span(),
            "`enabled` cannot be set on a masked unit (`state = \"masked\"`): a masked unit is never started at boot".to_owned(),
        );
        clash = true;
    }
    for key in ["restart_on", "reload_on", "restart_command"] {
        if let Some(v) = f.raw(key) {
            p.cx.error(
                &v.span(),
                format!("`{key}` cannot be set on a masked unit (`state = \"masked\"`): it is never restarted or reloaded"),
            );
            clash = true;
        }
    }
    (!clash).then_some(())
}
