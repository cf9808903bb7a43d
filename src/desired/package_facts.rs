//! `facts.packages.<name>`: the installed versions of the packages a
//! template reads (Ansible's `package_facts`, by name only).
//!
//! Listing every installed package (`rpm -qa`) on every converge is what
//! the facts must never cost: a full RHEL database takes seconds. So the
//! packages are not gathered, they are *looked up*: a name is asked of the
//! host the first time a template (or a `when`) reads it, through a
//! [`PackageLookup`] that `system` provides, and the answer is kept for the
//! rest of the run. A name is read into the load's [`FactsRead`] like any
//! fact, so the desired-state cache is kept under the answers for exactly
//! those names: on the next converge they are asked again in one batch
//! ([`Packages::prefetch`]) and a changed version loads the commit again.
//!
//! This is the one place where rendering reaches the host; it does so
//! through a trait object given to it, so `desired` still imports nothing
//! of `system`, and a test gives a lookup of its own.
//!
//! [`FactsRead`]: super::facts::FactsRead

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// One installed build, with the fields of Ansible's `package_facts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PackageBuild {
    /// Package name (`nginx`).
    pub name: String,
    /// Epoch as a string, `"0"` when the package has none.
    pub epoch: String,
    /// Upstream version (`1.20.1`).
    pub version: String,
    /// Release (`14.el9`).
    pub release: String,
    /// Architecture (`x86_64`, `noarch`).
    pub arch: String,
    /// `E:V-R`, the epoch left out when it is 0 (`1:1.20.1-14.el9`), as
    /// `version` of a `[[package]]` is written.
    pub evr: String,
}

/// `facts.packages.<name>`: an installed package.
///
/// When more than one build of the name is installed (the kernels an
/// install-only package keeps, a multilib pair such as `glibc.x86_64` and
/// `glibc.i686`), the fields at the top are those of one of them, chosen
/// the same way every time: the highest EVR by rpm's ordering, and at the
/// same EVR the machine's architecture, then `noarch`, then the first
/// architecture by name. Every build is under `builds`, lowest EVR first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstalledPackage {
    /// The chosen build.
    #[serde(flatten)]
    pub chosen: PackageBuild,
    /// Every installed build of the name.
    pub builds: Vec<PackageBuild>,
}

/// What looking up one name found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackageFact {
    /// Installed.
    Installed(InstalledPackage),
    /// Not installed (or no rpm on this host): undefined in templates.
    NotInstalled,
    /// The lookup failed (a broken rpm database): reading it fails the
    /// template with this error.
    Failed(String),
}

/// Asks the host which builds of some packages are installed.
pub trait PackageLookup: Send + Sync + std::fmt::Debug {
    /// An answer for each of `names` (all valid package names), asked at
    /// once: one `rpm -q` for all of them.
    fn lookup(&self, names: &[&str]) -> BTreeMap<String, PackageFact>;
}

/// Where the answers come from.
#[derive(Clone, Debug, Default)]
enum Source {
    /// No lookup was given: every package is not installed.
    #[default]
    Nothing,
    /// This host's (or a root's) rpm database.
    Lookup(Arc<dyn PackageLookup>),
    /// Another host's packages, which this machine cannot know (validating
    /// other hosts' files in CI): each is a placeholder.
    Placeholders,
}

/// The packages templates see, looked up by name when read. Clones share
/// the answers found so far.
#[derive(Clone, Debug, Default)]
pub struct Packages {
    source: Source,
    /// The answers so far, by name.
    found: Arc<Mutex<BTreeMap<String, PackageFact>>>,
}

impl PartialEq for Packages {
    fn eq(&self, other: &Self) -> bool {
        let kind = |s: &Source| std::mem::discriminant(s);
        kind(&self.source) == kind(&other.source) && self.answers() == other.answers()
    }
}

impl Eq for Packages {}

impl Packages {
    /// Packages looked up with `lookup`.
    pub fn lookup(lookup: Arc<dyn PackageLookup>) -> Self {
        Self {
            source: Source::Lookup(lookup),
            found: Arc::default(),
        }
    }

    /// Another host's packages: placeholders.
    pub fn placeholders() -> Self {
        Self {
            source: Source::Placeholders,
            found: Arc::default(),
        }
    }

    /// Whether these are another host's packages (see [`Self::placeholders`]).
    pub fn is_placeholders(&self) -> bool {
        matches!(self.source, Source::Placeholders)
    }

    /// The answers found so far.
    fn answers(&self) -> BTreeMap<String, PackageFact> {
        self.found
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Looks up, in one batch, those of `names` not asked yet.
    pub fn prefetch(&self, names: &[&str]) {
        // Held across the lookup, so that two renders reading the same new
        // name ask the host once.
        let mut found = self
            .found
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut ask: Vec<&str> = Vec::new();
        for &name in names {
            if found.contains_key(name) || ask.contains(&name) {
                continue;
            }
            // A name no package can have is not asked: it is not
            // installed, and it never reaches rpm's command line as an
            // option.
            if super::checks::package_name(name).is_err() {
                found.insert(name.to_owned(), PackageFact::NotInstalled);
            } else {
                ask.push(name);
            }
        }
        if ask.is_empty() {
            return;
        }
        let mut answers = match &self.source {
            Source::Lookup(l) => l.lookup(&ask),
            Source::Nothing | Source::Placeholders => BTreeMap::new(),
        };
        for name in ask {
            let answer = answers.remove(name).unwrap_or(PackageFact::NotInstalled);
            found.insert(name.to_owned(), answer);
        }
    }

    /// The package `name`, looked up if it was not yet.
    pub fn get(&self, name: &str) -> PackageFact {
        self.prefetch(&[name]);
        self.answers()
            .remove(name)
            .unwrap_or(PackageFact::NotInstalled)
    }

    /// The state of `name` as a cache key sees it: installed builds, not
    /// installed and a failure are all different.
    pub(super) fn key_of(&self, name: &str) -> serde_json::Value {
        if self.is_placeholders() {
            return serde_json::json!("placeholder");
        }
        match self.get(name) {
            PackageFact::Installed(p) => serde_json::json!({ "builds": p.builds }),
            PackageFact::NotInstalled => serde_json::Value::Null,
            PackageFact::Failed(e) => serde_json::json!({ "failed": e }),
        }
    }

    /// Every failed lookup so far, by name.
    pub fn errors(&self) -> Vec<(String, String)> {
        self.answers()
            .into_iter()
            .filter_map(|(name, f)| match f {
                PackageFact::Failed(e) => Some((name, e)),
                _ => None,
            })
            .collect()
    }

    /// What `driftless facts --json` shows: the installed packages among
    /// those looked up (the others are absent, as in templates).
    pub(super) fn serialize_found<S: serde::Serializer>(
        p: &Packages,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let installed: BTreeMap<String, InstalledPackage> = p
            .answers()
            .into_iter()
            .filter_map(|(name, f)| match f {
                PackageFact::Installed(i) => Some((name, i)),
                _ => None,
            })
            .collect();
        installed.serialize(s)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A lookup from a fixed table that counts the batches it is asked.
    #[derive(Debug, Default)]
    pub(crate) struct Fixed {
        pub(crate) table: BTreeMap<String, PackageFact>,
        pub(crate) batches: Mutex<Vec<Vec<String>>>,
    }

    impl Fixed {
        /// Installed builds `nginx` 1:1.20.1-14.el9 and a failing `broken`.
        pub(crate) fn sample() -> Arc<Self> {
            let build = PackageBuild {
                name: "nginx".into(),
                epoch: "1".into(),
                version: "1.20.1".into(),
                release: "14.el9".into(),
                arch: "x86_64".into(),
                evr: "1:1.20.1-14.el9".into(),
            };
            Arc::new(Self {
                table: BTreeMap::from([
                    (
                        "nginx".to_owned(),
                        PackageFact::Installed(InstalledPackage {
                            chosen: build.clone(),
                            builds: vec![build],
                        }),
                    ),
                    (
                        "broken".to_owned(),
                        PackageFact::Failed("rpm: database broken".into()),
                    ),
                ]),
                batches: Mutex::default(),
            })
        }
    }

    impl PackageLookup for Fixed {
        fn lookup(&self, names: &[&str]) -> BTreeMap<String, PackageFact> {
            self.batches
                .lock()
                .expect("lock")
                .push(names.iter().map(|n| (*n).to_owned()).collect());
            names
                .iter()
                .filter_map(|n| Some(((*n).to_owned(), self.table.get(*n)?.clone())))
                .collect()
        }
    }

    #[test]
    fn each_name_is_asked_once_and_a_batch_asks_only_the_new_ones() {
        let fixed = Fixed::sample();
        let p = Packages::lookup(fixed.clone());
        p.prefetch(&["nginx", "httpd", "nginx"]);
        assert!(matches!(p.get("nginx"), PackageFact::Installed(_)));
        assert_eq!(p.get("httpd"), PackageFact::NotInstalled);
        assert!(matches!(p.get("broken"), PackageFact::Failed(_)));
        // Not a package name: never asked, never an option of rpm.
        assert_eq!(p.get("--eval=%(id)"), PackageFact::NotInstalled);
        assert_eq!(
            *fixed.batches.lock().expect("lock"),
            vec![
                vec!["nginx".to_owned(), "httpd".to_owned()],
                vec!["broken".to_owned()]
            ]
        );
        assert_eq!(
            p.errors(),
            vec![("broken".to_owned(), "rpm: database broken".to_owned())]
        );
        // A clone shares the answers.
        p.clone().get("nginx");
        assert_eq!(fixed.batches.lock().expect("lock").len(), 2);
    }

    #[test]
    fn json_shows_the_installed_packages_found_with_ansibles_fields() {
        let p = Packages::lookup(Fixed::sample());
        p.prefetch(&["nginx", "httpd"]);
        let v = serde_json::to_value(Wrap(&p)).expect("json");
        assert_eq!(v["nginx"]["version"], "1.20.1");
        assert_eq!(v["nginx"]["epoch"], "1");
        assert_eq!(v["nginx"]["evr"], "1:1.20.1-14.el9");
        assert_eq!(v["nginx"]["builds"][0]["arch"], "x86_64");
        assert!(v.get("httpd").is_none(), "{v}");
    }

    struct Wrap<'a>(&'a Packages);

    impl Serialize for Wrap<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            Packages::serialize_found(self.0, s)
        }
    }

    #[test]
    fn no_lookup_means_nothing_is_installed() {
        let p = Packages::default();
        assert_eq!(p.get("nginx"), PackageFact::NotInstalled);
        assert_eq!(p.key_of("nginx"), serde_json::Value::Null);
        assert_eq!(
            Packages::placeholders().key_of("nginx"),
            serde_json::json!("placeholder")
        );
    }
}
