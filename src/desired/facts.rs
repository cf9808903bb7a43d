//! Facts about the host that templates may use. Gathered by
//! `system::facts`; here only the value types, so rendering stays pure.
//!
//! Facts are gathered on every converge, and the cached desired state of a
//! commit is kept under the facts its templates *read* ([`FactsRead`]),
//! not all of them: a mount or a network interface that comes and goes
//! (a container starting) must not make every no-op load the commit
//! again, unless a template reads `facts.mounts` or `facts.interfaces`.
//!
//! Two kinds of facts are not gathered whole: custom facts (their programs
//! run only when read, see `system::facts::custom`) and package versions
//! (looked up by name when read, see [`Packages`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use super::package_facts::{
    InstalledPackage, PackageBuild, PackageFact, PackageLookup, Packages,
};

/// What templates see as `facts`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Facts {
    /// Short host name (`web1`).
    pub hostname: String,
    /// Fully qualified name (`web1.example.com`), or the short name.
    pub fqdn: String,
    /// `ID` from os-release (`rhel`, `rocky`, `almalinux`).
    pub os_id: String,
    /// `VERSION_ID` from os-release (`9.4`).
    pub os_version_id: String,
    /// Ansible's `ansible_os_family` from os-release `ID` and `ID_LIKE`
    /// (`RedHat`, `Debian`, `Suse`, `Archlinux`, `Alpine`, `Gentoo`);
    /// empty for a family it does not know.
    pub os_family: String,
    /// The major part of `VERSION_ID` (`9`); empty when there is none.
    pub os_major: String,
    /// The minor part of `VERSION_ID` (`4`); empty when there is none.
    pub os_minor: String,
    /// Machine architecture (`x86_64`).
    pub arch: String,
    /// The running kernel's release (`5.14.0-427.el9.x86_64`).
    pub kernel: String,
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// Online CPUs.
    pub cpus: u64,
    /// Total memory in MiB.
    pub memory_mb: u64,
    /// The installed systemd's version (`252`); `None` without systemd.
    pub systemd_version: Option<u64>,
    /// What the host runs in, as `systemd-detect-virt` names it (`none`,
    /// `kvm`, `qemu`, `vmware`, `docker`, `podman`, `lxc`, …).
    pub virtualization: String,
    /// The SELinux mode in force: `enforcing`, `permissive` or `disabled`.
    pub selinux: String,
    /// Network interfaces but loopback, by name, sorted.
    pub interfaces: Vec<String>,
    /// The IPv4 default route, `None` when there is none.
    pub default_ipv4: Option<DefaultRoute>,
    /// The IPv6 default route, `None` when there is none.
    pub default_ipv6: Option<DefaultRoute>,
    /// Mounted filesystems, in mount order (at most a bounded number).
    pub mounts: Vec<Mount>,
    /// `facts.custom.<name>`: the facts directory's files and programs.
    #[serde(serialize_with = "CustomFacts::serialize_values")]
    pub custom: CustomFacts,
    /// `facts.packages.<name>`: installed packages, looked up by name when
    /// read (shown: those looked up so far and installed).
    #[serde(serialize_with = "Packages::serialize_found")]
    pub packages: Packages,
}

/// The default route of one address family.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DefaultRoute {
    /// The interface it leaves by (`eth0`).
    pub interface: String,
    /// That interface's address (`192.0.2.10`); for IPv6 a global one
    /// before a link-local one. Empty when it has none.
    pub address: String,
    /// The gateway (`192.0.2.1`); empty for a route without one.
    pub gateway: String,
}

/// One mounted filesystem.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// Where it is mounted (`/boot`).
    pub path: String,
    /// What is mounted (`/dev/vda1`, `tmpfs`).
    pub device: String,
    /// Filesystem type (`xfs`).
    pub fstype: String,
    /// Mount and filesystem options (`rw,relatime,seclabel`).
    pub options: String,
}

/// One custom fact: its value, or why it could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CustomFact {
    /// The data of the file, or what the program printed.
    Value(serde_json::Value),
    /// What went wrong, naming the file.
    Failed(String),
}

/// The custom facts (`facts.custom.*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CustomFacts {
    /// Those read from the facts directory (not necessarily all of it:
    /// a program is only run when its fact is needed).
    Read(BTreeMap<String, CustomFact>),
    /// The facts directory could not be listed: every custom fact is
    /// this error.
    Unreadable(String),
    /// Another host's, which this machine cannot know (validating other
    /// hosts' files in CI): each renders as a placeholder.
    Placeholders,
}

impl Default for CustomFacts {
    fn default() -> Self {
        CustomFacts::Read(BTreeMap::new())
    }
}

impl CustomFacts {
    /// What `driftless facts --json` shows: the values that were read
    /// (failures are reported beside them, not as values).
    fn serialize_values<S: serde::Serializer>(c: &CustomFacts, s: S) -> Result<S::Ok, S::Error> {
        let values: BTreeMap<&str, &serde_json::Value> = match c {
            CustomFacts::Read(m) => m
                .iter()
                .filter_map(|(k, f)| match f {
                    CustomFact::Value(v) => Some((k.as_str(), v)),
                    CustomFact::Failed(_) => None,
                })
                .collect(),
            CustomFacts::Unreadable(_) | CustomFacts::Placeholders => BTreeMap::new(),
        };
        values.serialize(s)
    }

    /// Every failure, by fact name (`*` for an unreadable directory).
    pub fn errors(&self) -> Vec<(String, String)> {
        match self {
            CustomFacts::Read(m) => m
                .iter()
                .filter_map(|(k, f)| match f {
                    CustomFact::Failed(e) => Some((k.clone(), e.clone())),
                    CustomFact::Value(_) => None,
                })
                .collect(),
            CustomFacts::Unreadable(e) => vec![("*".to_owned(), e.clone())],
            CustomFacts::Placeholders => Vec::new(),
        }
    }

    /// The state of the fact `name` as a cache key sees it: a value, a
    /// failure or an absence are all different.
    fn key_of(&self, name: &str) -> serde_json::Value {
        match self {
            CustomFacts::Read(m) => match m.get(name) {
                Some(CustomFact::Value(v)) => serde_json::json!({ "value": v }),
                Some(CustomFact::Failed(e)) => serde_json::json!({ "failed": e }),
                None => serde_json::Value::Null,
            },
            CustomFacts::Unreadable(e) => serde_json::json!({ "unreadable": e }),
            CustomFacts::Placeholders => serde_json::json!("placeholder"),
        }
    }

    /// Every fact's state, for a read of them all.
    fn key_of_all(&self) -> serde_json::Value {
        match self {
            CustomFacts::Read(m) => m.keys().map(|k| (k.clone(), self.key_of(k))).collect(),
            _ => self.key_of(""),
        }
    }
}

impl Facts {
    /// The same facts as seen by another host name: used to validate other
    /// hosts' files on one machine (the config repo's CI). The custom
    /// facts and the installed packages are this machine's, not the other
    /// host's: they become placeholders.
    pub fn for_host(&self, name: &str) -> Facts {
        Facts {
            custom: CustomFacts::Placeholders,
            packages: Packages::placeholders(),
            ..self.named(name)
        }
    }

    /// These facts under another name (`--host NAME` on this machine).
    pub fn named(&self, name: &str) -> Facts {
        Facts {
            hostname: name.split('.').next().unwrap_or(name).to_owned(),
            fqdn: name.to_owned(),
            ..self.clone()
        }
    }

    /// The values of the facts `read` names, as the cache key of a load
    /// that read them: equal for two gatherings exactly when every fact
    /// the load read is the same.
    pub fn key_of(&self, read: &FactsRead) -> serde_json::Value {
        let all = serde_json::to_value(self).unwrap_or_default();
        let mut out = serde_json::Map::new();
        for name in &read.0 {
            let value = match name.as_str() {
                FactsRead::ALL => {
                    let mut v = all.clone();
                    if let Some(m) = v.as_object_mut() {
                        m.insert("custom".to_owned(), self.custom.key_of_all());
                        // Listing the facts does not list the packages
                        // (they cannot be listed): each one read is keyed
                        // by its own name.
                        m.remove("packages");
                    }
                    v
                }
                FactsRead::ALL_CUSTOM => self.custom.key_of_all(),
                n => {
                    if let Some(c) = n.strip_prefix(FactsRead::CUSTOM_PREFIX) {
                        self.custom.key_of(c)
                    } else if let Some(p) = n.strip_prefix(FactsRead::PACKAGES_PREFIX) {
                        self.packages.key_of(p)
                    } else {
                        all.get(n).cloned().unwrap_or_default()
                    }
                }
            };
            out.insert(name.clone(), value);
        }
        serde_json::Value::Object(out)
    }
}

/// Which facts a load read, by name: `os_id`, `custom.raid`, `custom.*`
/// (the custom facts were listed), `packages.nginx` or `*` (all facts
/// were listed, which lists no package).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactsRead(BTreeSet<String>);

impl FactsRead {
    /// Every fact was read (`facts` listed or printed whole).
    pub const ALL: &'static str = "*";
    /// Every custom fact was read.
    pub const ALL_CUSTOM: &'static str = "custom.*";
    /// What a custom fact's name is read as.
    pub const CUSTOM_PREFIX: &'static str = "custom.";
    /// What a package's name is read as.
    pub const PACKAGES_PREFIX: &'static str = "packages.";

    /// Records a read of `name`.
    pub fn insert(&mut self, name: String) {
        self.0.insert(name);
    }

    /// Adds every read of `other`.
    pub fn extend(&mut self, other: &FactsRead) {
        self.0.extend(other.0.iter().cloned());
    }

    /// The custom facts that were read: `None` for all of them.
    pub fn custom(&self) -> Option<Vec<&str>> {
        if self.0.contains(Self::ALL) || self.0.contains(Self::ALL_CUSTOM) {
            return None;
        }
        Some(
            self.0
                .iter()
                .filter_map(|n| n.strip_prefix(Self::CUSTOM_PREFIX))
                .collect(),
        )
    }

    /// The packages that were read, by name.
    pub fn packages(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter_map(|n| n.strip_prefix(Self::PACKAGES_PREFIX))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            os_id: "rocky".into(),
            mounts: vec![Mount {
                path: "/".into(),
                ..Mount::default()
            }],
            custom: CustomFacts::Read(BTreeMap::from([
                ("a".to_owned(), CustomFact::Value(serde_json::json!(1))),
                ("b".to_owned(), CustomFact::Failed("b.sh: exit 1".into())),
            ])),
            ..Facts::default()
        }
    }

    fn read(names: &[&str]) -> FactsRead {
        let mut r = FactsRead::default();
        for n in names {
            r.insert((*n).to_owned());
        }
        r
    }

    #[test]
    fn the_key_holds_only_the_facts_read() {
        let before = facts();
        let mut after = facts();
        after.mounts.push(Mount {
            path: "/run/user/1000".into(),
            ..Mount::default()
        });
        let os = read(&["os_id", "custom.a"]);
        assert_eq!(before.key_of(&os), after.key_of(&os));
        let mounts = read(&["mounts"]);
        assert_ne!(before.key_of(&mounts), after.key_of(&mounts));
        assert_ne!(before.key_of(&read(&["*"])), after.key_of(&read(&["*"])));
    }

    #[test]
    fn a_custom_fact_that_fails_or_goes_away_changes_the_key() {
        let ok = facts();
        let mut failed = facts();
        let mut gone = facts();
        if let CustomFacts::Read(m) = &mut failed.custom {
            m.insert("a".into(), CustomFact::Failed("a.toml: bad".into()));
        }
        if let CustomFacts::Read(m) = &mut gone.custom {
            m.remove("a");
        }
        let a = read(&["custom.a"]);
        assert_ne!(ok.key_of(&a), failed.key_of(&a));
        assert_ne!(ok.key_of(&a), gone.key_of(&a));
        assert_ne!(failed.key_of(&a), gone.key_of(&a));
        assert_eq!(a.custom(), Some(vec!["a"]));
        assert_eq!(read(&["custom.*"]).custom(), None);
        assert_eq!(read(&["*", "custom.a"]).custom(), None);
    }

    #[test]
    fn json_shows_values_and_leaves_failures_out() {
        let v = serde_json::to_value(facts()).expect("json");
        assert_eq!(v["custom"], serde_json::json!({ "a": 1 }));
        assert_eq!(
            facts().custom.errors(),
            vec![("b".to_owned(), "b.sh: exit 1".to_owned())]
        );
    }

    #[test]
    fn a_package_read_is_keyed_by_its_builds_and_listing_facts_reads_none() {
        let installed = |version: &str| {
            let build = PackageBuild {
                name: "nginx".into(),
                epoch: "0".into(),
                version: version.into(),
                release: "1.el9".into(),
                arch: "x86_64".into(),
                evr: format!("{version}-1.el9"),
            };
            PackageFact::Installed(InstalledPackage {
                chosen: build.clone(),
                builds: vec![build],
            })
        };
        let with = |fact: PackageFact| {
            let fixed = crate::desired::package_facts::tests::Fixed {
                table: BTreeMap::from([("nginx".to_owned(), fact)]),
                batches: std::sync::Mutex::default(),
            };
            Facts {
                packages: Packages::lookup(std::sync::Arc::new(fixed)),
                ..facts()
            }
        };
        let (old, new, gone) = (
            with(installed("1.20.1")),
            with(installed("1.22.0")),
            with(PackageFact::NotInstalled),
        );
        let nginx = read(&["packages.nginx"]);
        assert_eq!(nginx.packages(), vec!["nginx"]);
        assert_ne!(old.key_of(&nginx), new.key_of(&nginx));
        assert_ne!(old.key_of(&nginx), gone.key_of(&nginx));
        assert_eq!(old.key_of(&nginx), with(installed("1.20.1")).key_of(&nginx));
        // `*` does not cover packages; a package not read is not keyed.
        assert_eq!(old.key_of(&read(&["*"])), new.key_of(&read(&["*"])));
        assert_eq!(old.key_of(&read(&["os_id"])), new.key_of(&read(&["os_id"])));
    }

    #[test]
    fn another_host_keeps_the_machine_facts_but_not_the_custom_ones() {
        let other = facts().for_host("web2.example.com");
        assert_eq!(other.hostname, "web2");
        assert_eq!(other.fqdn, "web2.example.com");
        assert_eq!(other.os_id, "rocky");
        assert_eq!(other.custom, CustomFacts::Placeholders);
        assert!(other.packages.is_placeholders());
        assert_eq!(facts().named("web2").custom, facts().custom);
    }
}
