//! What a host or role file computes outside `template = true` content:
//! `when` conditions, `for_each` lists, and `{{ … }}` in a resource's
//! string keys (`path = "/etc/{{ vars.app }}/app.conf"`), over `vars`,
//! `facts`, `host` and, in a `for_each`, `item`.
//!
//! Never over `secrets`: what a key says is shown in plans, logs and
//! JSON, so a secret has no way into it (it goes in a file's content,
//! which is then sensitive).

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;

use minijinja::Value;
use minijinja::value::ValueKind;

use super::header::Header;
use super::{Failure, Scope, environment};

/// Whether a string has anything to render.
pub(crate) fn is_templated(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

impl Scope {
    /// `text` rendered, or as it is when it has nothing to render. The
    /// error is a message; the caller places it at the key.
    pub(crate) fn expand(&self, text: &str, item: Option<&Value>) -> Result<String, String> {
        if !is_templated(text) {
            return Ok(text.to_owned());
        }
        let env = environment(&Header::default()).map_err(|e| e.to_string())?;
        let tmpl = env
            .template_from_str(text)
            .map_err(|e| self.message(text, &e, &HashSet::new()))?;
        tmpl.render(self.key_context(item))
            .map_err(|e| self.message(text, &e, &tmpl.undeclared_variables(true)))
    }

    /// The value of the expression `expr`.
    pub(crate) fn eval(&self, expr: &str, item: Option<&Value>) -> Result<Value, String> {
        let env = environment(&Header::default()).map_err(|e| e.to_string())?;
        let compiled = env
            .compile_expression(expr)
            .map_err(|e| self.message(expr, &e, &HashSet::new()))?;
        compiled
            .eval(self.key_context(item))
            .map_err(|e| self.message(expr, &e, &compiled.undeclared_variables(true)))
    }

    /// A `when`: true or false; anything else is an error (a string
    /// `"no"` is not false: write `vars.x | bool`).
    pub(crate) fn condition(&self, expr: &str, item: Option<&Value>) -> Result<bool, String> {
        let v = self.eval(expr, item)?;
        match v.kind() {
            ValueKind::Bool => Ok(v.is_true()),
            other => Err(format!(
                "`when` must be true or false, but `{expr}` is {other} `{v}` (compare it, or apply `| bool`)"
            )),
        }
    }

    /// A `for_each`: the items of a list, or of a map as `{key, value}`
    /// pairs (as Ansible's `dict2items`), in order.
    pub(crate) fn items(&self, expr: &str) -> Result<Vec<Value>, String> {
        let v = self.eval(expr, None)?;
        match v.kind() {
            ValueKind::Seq => Ok(v.try_iter().map_err(|e| e.to_string())?.collect()),
            ValueKind::Map => {
                let keys: Vec<Value> = v.try_iter().map_err(|e| e.to_string())?.collect();
                keys.into_iter()
                    .map(|k| {
                        let value = v.get_item(&k).map_err(|e| e.to_string())?;
                        Ok(minijinja::context! { key => k, value => value })
                    })
                    .collect()
            }
            other => Err(format!(
                "`for_each` must be a list or a map, but `{expr}` is {other}"
            )),
        }
    }

    /// `vars`, `facts`, `host`, and `item` when there is one.
    fn key_context(&self, item: Option<&Value>) -> Value {
        match item {
            Some(item) => minijinja::context! { item => item.clone(), ..self.ctx.clone() },
            None => self.ctx.clone(),
        }
    }

    /// The words of a failure, as a template's (the undefined name, the
    /// unknown test, what else minijinja says).
    fn message(&self, text: &str, e: &minijinja::Error, names: &HashSet<String>) -> String {
        let read = AtomicBool::new(false);
        let failure = Failure {
            text,
            scope: self,
            file: "",
            first_line: 1,
            read: &read,
        };
        let mut names = names.clone();
        names.retain(|n| !n.starts_with("item"));
        failure.error(e, &self.missing(&names)).message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::facts::Facts;

    fn scope() -> Scope {
        let vars: toml::Table =
            toml::from_str("app = 'shop'\nports = [80, 443]\nusers = { alice = 1001, bob = 1002 }")
                .expect("toml");
        Scope::new(&vars, &Facts::default(), "web1", None)
    }

    #[test]
    fn keys_render_with_vars_host_and_item() {
        let s = scope();
        assert_eq!(s.expand("/etc/plain", None).unwrap(), "/etc/plain");
        assert_eq!(
            s.expand("/etc/{{ vars.app }}/{{ host }}.conf", None)
                .unwrap(),
            "/etc/shop/web1.conf"
        );
        let item = Value::from(8080);
        assert_eq!(
            s.expand("port-{{ item }}", Some(&item)).unwrap(),
            "port-8080"
        );
        let err = s.expand("/etc/{{ vars.ap }}", None).unwrap_err();
        assert_eq!(
            err,
            "undefined variable 'vars.ap' (did you mean 'vars.app'?)"
        );
        let err = s.expand("{{ secrets.x }}", None).unwrap_err();
        assert!(err.contains("undefined variable 'secrets"), "{err}");
    }

    #[test]
    fn conditions_are_booleans() {
        let s = scope();
        assert!(s.condition("vars.app == 'shop'", None).unwrap());
        assert!(!s.condition("443 not in vars.ports", None).unwrap());
        let err = s.condition("vars.app", None).unwrap_err();
        assert!(err.contains("must be true or false"), "{err}");
        let err = s.condition("facts.os_famly == 'RedHat'", None).unwrap_err();
        assert!(
            err.starts_with("undefined variable 'facts.os_famly'"),
            "{err}"
        );
    }

    #[test]
    fn for_each_takes_lists_and_maps() {
        let s = scope();
        let items = s.items("vars.ports").unwrap();
        assert_eq!(items, vec![Value::from(80), Value::from(443)]);
        let items = s.items("vars.users").unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(
            s.expand("{{ item.key }}={{ item.value }}", Some(&items[1]))
                .unwrap(),
            "bob=1002"
        );
        let err = s.items("vars.app").unwrap_err();
        assert!(err.contains("must be a list or a map"), "{err}");
    }
}
