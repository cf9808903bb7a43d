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

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use minijinja::value::{Enumerator, Object, ObjectRepr};
use minijinja::{Error, ErrorKind, Value};

use crate::desired::facts::{CustomFact, CustomFacts, Facts, FactsRead};

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
    }
    Value::from_object(Tracked {
        builtin: Value::from(minijinja::value::Serde(&builtin)),
        custom: Value::from_object(TrackedCustom {
            facts: custom_values(&facts.custom),
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
    reads: Reads,
}

impl Object for Tracked {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        if name == "custom" {
            // Which custom facts are read is recorded by `custom` itself.
            return Some(self.custom.clone());
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
        Enumerator::Values(keys)
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
}
