//! `[[kernel_module]]`: how a kernel module may be loaded, in a file of its
//! own under `/etc/modprobe.d` (as Puppet's `kmod` and dev-sec's hardening
//! write them): blacklisted (not loaded for a device it matches), disabled
//! (never loaded: `install NAME /bin/false`, RHEL's documented way), or
//! loaded with options. The file is what modprobe reads from then on;
//! driftless does not load or unload a module (a module in use cannot be
//! taken away safely): a change takes effect at the next load or boot.

use serde::{Deserialize, Serialize};

use super::{Decl, Form, Identity, KindDef, Parsed, PathDecl, Prim, PrimKind, ReadContent};
use crate::desired::parser::Parser;
use crate::desired::schema::{self, Fields};
use crate::desired::values::Ensure;

/// Where the files live.
const DIR: &str = "/etc/modprobe.d";

/// What a module's file says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleState {
    /// `blacklist NAME`: not loaded by its aliases (a device); still by name.
    Blacklisted,
    /// `blacklist NAME` and `install NAME /bin/false`: never loaded.
    Disabled,
    /// `options NAME OPTIONS`.
    Options(String),
}

/// A module's settings, `/etc/modprobe.d/NAME.conf`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelModule {
    /// The module (`cramfs`, `usb_storage`).
    pub name: String,
    /// What its file says (nothing when absent).
    pub state: Option<ModuleState>,
}

impl KernelModule {
    /// The file's bytes.
    fn render(&self) -> Vec<u8> {
        let name = &self.name;
        let body = match &self.state {
            None => String::new(),
            Some(ModuleState::Blacklisted) => format!("blacklist {name}\n"),
            Some(ModuleState::Disabled) => {
                format!("blacklist {name}\ninstall {name} /bin/false\n")
            }
            Some(ModuleState::Options(o)) => format!("options {name} {o}\n"),
        };
        format!("# Managed by driftless: local changes are overwritten.\n{body}").into_bytes()
    }
}

fn path_of(name: &str) -> String {
    format!("{DIR}/{name}.conf")
}

impl Identity for KernelModule {
    fn key(&self) -> &str {
        &self.name
    }

    fn path(&self) -> Option<String> {
        Some(path_of(&self.name))
    }
}

impl KindDef for KernelModule {
    type Spec = Self;
    const KEYS: &'static [&'static str] = &["name", "state", "options", "prune"];
    const PRIM: PrimKind = PrimKind::Path(Form::File);

    fn parse(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<Parsed<Self::Spec>> {
        let name = f.required_string(p.cx, "name");
        let name = name.and_then(|n| p.checked(&n, module_name).map(|()| n.into_inner()));
        let options = f.string(p.cx, "options");
        if let Some(o) = &options
            && (o.get_ref().trim().is_empty() || o.get_ref().contains('\n'))
        {
            p.cx.error(
                &o.span(),
                "`options` is one non-empty line: \"nohwcrypt=1 qos=0\"",
            );
        }
        let state = match f.required_string(p.cx, "state") {
            None => None,
            Some(s) => match (s.get_ref().as_str(), options) {
                ("blacklisted", None) => Some(Some(ModuleState::Blacklisted)),
                ("disabled", None) => Some(Some(ModuleState::Disabled)),
                ("options", Some(o)) => Some(Some(ModuleState::Options(o.into_inner()))),
                ("absent", None) => Some(None),
                ("options", None) => {
                    p.cx.error(&s.span(), "`state = \"options\"` needs `options`");
                    None
                }
                ("blacklisted" | "disabled" | "absent", Some(o)) => {
                    p.cx.error(&o.span(), "`options` goes with `state = \"options\"` only");
                    None
                }
                (other, _) => {
                    p.cx.error(
                        &s.span(),
                        schema::unknown_state(
                            other,
                            &["blacklisted", "disabled", "options", "absent"],
                        ),
                    );
                    None
                }
            },
        };
        Some(Parsed::plain(KernelModule {
            name: name?,
            state: state?,
        }))
    }

    fn resolve(spec: &Self, _: &mut dyn ReadContent, _: &Decl) -> Option<Self> {
        Some(spec.clone())
    }

    fn lower(&self) -> Prim<'_> {
        let ensure = if self.state.is_some() {
            Ensure::Present
        } else {
            Ensure::Absent
        };
        Prim::Path(PathDecl::generated(
            path_of(&self.name),
            ensure,
            self.render(),
            None,
        ))
    }

    fn absent(key: &str) -> Option<Self> {
        Some(KernelModule {
            name: key.to_owned(),
            state: None,
        })
    }

    fn path_of_key(key: &str) -> Option<String> {
        Some(path_of(key))
    }
}

/// A module name as modprobe takes it (`-` and `_` are the same to it).
fn module_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "kernel module name `{name}` is malformed (letters, digits, _ and - only)"
        ))
    }
}
