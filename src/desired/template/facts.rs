//! `facts` as templates see it: every way in (a name, the list of names,
//! the whole map printed) is recorded, so that the cached desired state of
//! a commit is kept under the facts its templates read and no others
//! (see [`FactsRead`]). This is the one way facts reach a template: a
//! value made from [`Facts`] by another way would be read unrecorded, and
//! a change of it would not reach a cached state.
//!
//! A custom fact that failed is an invalid value: the render that reads it
//! fails with the fact's error (which names its file), it never renders
//! empty.
//!
//! `facts.packages.<name>` is looked up when read (see [`Packages`]); a
//! package that is not installed is undefined, so `is defined` tests it
//! and reading a field of it is an "undefined" error at its line. The
//! packages cannot be listed: that would be `rpm -qa` on every load.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use minijinja::value::{Enumerator, Object, ObjectRepr};
use minijinja::{Error, ErrorKind, Value};

use crate::desired::facts::{CustomFact, CustomFacts, Facts, FactsRead, PackageFact, Packages};

/// The reads of one load (shared by every render of it).
pub(super) type Reads = Arc<Mutex<FactsRead>>;

fn record(reads: &Reads, name: String) {
    // A poisoned lock means a panic elsewhere mid-render; the read set is
    // still a set of names.
    let mut r = reads
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    r.insert(name);
}

/// The value of `facts` in a template's context.
pub(super) fn value(facts: &Facts, reads: &Reads) -> Value {
    let mut builtin = serde_json::to_value(facts).unwrap_or_default();
    if let Some(m) = builtin.as_object_mut() {
        m.remove("custom");
        m.remove("packages");
    }
    Value::from_object(Tracked {
        builtin: Value::from(minijinja::value::Serde(&builtin)),
        custom: Value::from_object(TrackedCustom {
            facts: custom_values(&facts.custom),
            reads: Arc::clone(reads),
        }),
        packages: Value::from_object(TrackedPackages {
            packages: facts.packages.clone(),
            reads: Arc::clone(reads),
        }),
        reads: Arc::clone(reads),
    })
}

/// Each custom fact as a template value; `None`: placeholders.
fn custom_values(custom: &CustomFacts) -> Option<BTreeMap<String, Value>> {
    match custom {
        CustomFacts::Read(m) => Some(
            m.iter()
                .map(|(name, f)| {
                    let v = match f {
                        CustomFact::Value(v) => Value::from(minijinja::value::Serde(v)),
                        CustomFact::Failed(e) => failed(name, e),
                    };
                    (name.clone(), v)
                })
                .collect(),
        ),
        CustomFacts::Unreadable(e) => Some(BTreeMap::from([("*".to_owned(), failed("*", e))])),
        CustomFacts::Placeholders => None,
    }
}

fn failed(name: &str, error: &str) -> Value {
    Value::from(Error::new(
        ErrorKind::InvalidOperation,
        format!("custom fact `{name}`: {error}"),
    ))
}

/// `facts`.
#[derive(Debug)]
struct Tracked {
    builtin: Value,
    custom: Value,
    packages: Value,
    reads: Reads,
}

impl Object for Tracked {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        // Which custom facts and packages are read is recorded by each.
        if name == "custom" {
            return Some(self.custom.clone());
        }
        if name == "packages" {
            return Some(self.packages.clone());
        }
        record(&self.reads, name.to_owned());
        self.builtin
            .get_item(key)
            .ok()
            .filter(|v| !v.is_undefined())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        record(&self.reads, FactsRead::ALL.to_owned());
        let mut keys: Vec<Value> = self
            .builtin
            .try_iter()
            .map(Iterator::collect)
            .unwrap_or_default();
        keys.push(Value::from("custom"));
        keys.push(Value::from("packages"));
        Enumerator::Values(keys)
    }
}

/// `facts.packages`.
#[derive(Debug)]
struct TrackedPackages {
    packages: Packages,
    reads: Reads,
}

impl Object for TrackedPackages {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        record(&self.reads, format!("{}{name}", FactsRead::PACKAGES_PREFIX));
        if self.packages.is_placeholders() {
            return Some(Value::from_object(super::Placeholder("(package)")));
        }
        match self.packages.get(name) {
            PackageFact::Installed(p) => Some(Value::from(minijinja::value::Serde(&p))),
            PackageFact::NotInstalled => None,
            PackageFact::Failed(e) => Some(Value::from(Error::new(
                ErrorKind::InvalidOperation,
                format!("installed package `{name}`: {e}"),
            ))),
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        // Only `rpm -qa` could list them; a template reads one by name.
        Enumerator::NonEnumerable
    }
}

/// `facts.custom`.
#[derive(Debug)]
struct TrackedCustom {
    /// `None`: another host's facts, each a placeholder.
    facts: Option<BTreeMap<String, Value>>,
    reads: Reads,
}

impl Object for TrackedCustom {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        record(&self.reads, format!("{}{name}", FactsRead::CUSTOM_PREFIX));
        match &self.facts {
            None => Some(Value::from_object(super::Placeholder("(custom fact)"))),
            // An unreadable directory fails every custom fact.
            Some(m) => m.get(name).or_else(|| m.get("*")).cloned(),
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        record(&self.reads, FactsRead::ALL_CUSTOM.to_owned());
        match &self.facts {
            Some(m) => Enumerator::Values(m.keys().map(|k| Value::from(k.as_str())).collect()),
            None => Enumerator::Empty,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Scope, TemplateOrigin, render};
    use super::*;

    const AT: TemplateOrigin<'static> = TemplateOrigin {
        file: "files/t.j2",
        first_line: 1,
    };

    fn facts() -> Facts {
        Facts {
            os_family: "RedHat".into(),
            custom: CustomFacts::Read(BTreeMap::from([
                (
                    "rack".to_owned(),
                    CustomFact::Value(serde_json::json!({"row": 3})),
                ),
                (
                    "broken".to_owned(),
                    CustomFact::Failed("/etc/driftless/facts.d/broken.sh: exit 3".into()),
                ),
            ])),
            ..Facts::default()
        }
    }

    fn reads(scope: &Scope) -> Vec<String> {
        serde_json::from_value(serde_json::to_value(scope.facts_read()).expect("json"))
            .expect("names")
    }

    #[test]
    fn the_facts_a_template_reads_are_recorded_and_no_others() {
        let scope = Scope::new(&toml::Table::new(), &facts(), "h", None);
        let out = render(
            "{{ facts.os_family }} row {{ facts.custom.rack.row }}\n",
            &scope,
            &AT,
            1 << 20,
        )
        .expect("renders");
        assert_eq!(out.text, "RedHat row 3\n");
        assert_eq!(reads(&scope), vec!["custom.rack", "os_family"]);
        render(
            "{% for k in facts %}{{ k }}{% endfor %}",
            &scope,
            &AT,
            1 << 20,
        )
        .expect("renders");
        assert!(reads(&scope).contains(&"*".to_owned()));
    }

    #[test]
    fn a_failed_custom_fact_fails_the_template_that_reads_it_and_no_other() {
        let scope = Scope::new(&toml::Table::new(), &facts(), "h", None);
        let e = render("x={{ facts.custom.broken }}\n", &scope, &AT, 1 << 20).expect_err("fails");
        assert!(
            e.message.contains("custom fact `broken`: ")
                && e.message
                    .contains("/etc/driftless/facts.d/broken.sh: exit 3"),
            "{e:?}"
        );
        assert_eq!(e.line, Some(1));
        render("{{ facts.custom.rack.row }}", &scope, &AT, 1 << 20).expect("renders");
    }

    #[test]
    fn another_hosts_custom_facts_are_placeholders() {
        let scope = Scope::new(&toml::Table::new(), &facts().for_host("web2"), "web2", None);
        let out = render("{{ facts.custom.rack.row }}", &scope, &AT, 1 << 20).expect("renders");
        assert_eq!(out.text, "(custom fact)");
    }

    fn with_packages() -> (Facts, Arc<crate::desired::package_facts::tests::Fixed>) {
        let fixed = crate::desired::package_facts::tests::Fixed::sample();
        let facts = Facts {
            packages: Packages::lookup(fixed.clone()),
            ..facts()
        };
        (facts, fixed)
    }

    #[test]
    fn an_installed_package_renders_and_each_name_read_is_recorded() {
        let (facts, fixed) = with_packages();
        let scope = Scope::new(&toml::Table::new(), &facts, "h", None);
        let out = render(
            "{{ facts.packages.nginx.version }} {{ facts.packages['nginx'].evr }}\n\
             {% if facts.packages.httpd is defined %}httpd{% else %}no httpd{% endif %}.\n",
            &scope,
            &AT,
            1 << 20,
        )
        .expect("renders");
        assert_eq!(out.text, "1.20.1 1:1.20.1-14.el9\nno httpd.\n");
        assert_eq!(reads(&scope), vec!["packages.httpd", "packages.nginx"]);
        // Each name asked of the host once for the whole load.
        assert_eq!(fixed.batches.lock().expect("lock").len(), 2);
        // `when` conditions read through the same scope.
        assert!(
            scope
                .condition("facts.packages.nginx is defined", None)
                .expect("evaluates")
        );
        assert!(
            !scope
                .condition("facts.packages.httpd is defined", None)
                .expect("evaluates")
        );
    }

    #[test]
    fn a_missing_package_is_a_located_undefined_error_and_a_failed_one_names_it() {
        let (facts, _) = with_packages();
        let scope = Scope::new(&toml::Table::new(), &facts, "h", None);
        let e = render(
            "a\nv={{ facts.packages.httpd.version }}\n",
            &scope,
            &AT,
            1 << 20,
        )
        .expect_err("undefined");
        assert!(e.message.contains("undefined"), "{e:?}");
        assert!(e.message.contains("facts.packages.httpd"), "{e:?}");
        assert!(!e.message.contains("did you mean"), "{e:?}");
        assert_eq!(e.line, Some(2));
        // A name that is no identifier is read by subscript; the error
        // names the whole expression, not only the part after `[`.
        let e = render(
            "{{ facts.packages['dl-hello'].version }}",
            &scope,
            &AT,
            1 << 20,
        )
        .expect_err("undefined");
        assert!(
            e.message
                .starts_with("undefined variable 'facts.packages['dl-hello'].version'"),
            "{e:?}"
        );
        let e = render("{{ facts.packages.broken.version }}", &scope, &AT, 1 << 20)
            .expect_err("failed lookup");
        assert!(
            e.message
                .contains("installed package `broken`: rpm: database broken"),
            "{e:?}"
        );
        // They cannot be listed: that would be `rpm -qa`.
        let e = render(
            "{% for p in facts.packages %}{{ p }}{% endfor %}",
            &scope,
            &AT,
            1 << 20,
        )
        .expect_err("not iterable");
        assert!(e.message.contains("not iterable"), "{e:?}");
    }

    #[test]
    fn another_hosts_packages_are_placeholders() {
        let (facts, fixed) = with_packages();
        let scope = Scope::new(&toml::Table::new(), &facts.for_host("web2"), "web2", None);
        let out = render(
            "{{ facts.packages.httpd.version }}{% if facts.packages.x is defined %}!{% endif %}",
            &scope,
            &AT,
            1 << 20,
        )
        .expect("renders");
        assert_eq!(out.text, "(package)!");
        assert!(fixed.batches.lock().expect("lock").is_empty());
    }
}
