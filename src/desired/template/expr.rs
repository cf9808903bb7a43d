//! What a host or role file computes outside `template = true` content:
//! `when` conditions, `for_each` lists, and `{{ … }}` in a resource's
//! string keys (`path = "/etc/{{ vars.app }}/app.conf"`), over `vars`,
//! `facts`, `host` and, in a `for_each`, `item`.
//!
//! Never over `secrets`: what a key says is shown in plans, logs and
//! JSON, so a secret has no way into it (it goes in a file's content,
//! which is then sensitive).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::AtomicBool;

use minijinja::value::ValueKind;
use minijinja::{Environment, Value};

use super::header::Header;
use super::{Failure, Scope, environment};

/// Whether a string has anything to render.
pub(crate) fn is_templated(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

impl Scope {
    /// The same scope (facts, host, secrets, the record of facts read)
    /// with `vars` instead.
    pub(crate) fn with_vars(&self, vars: &toml::Table) -> Scope {
        let ctx = minijinja::context! {
            vars => Value::from(minijinja::value::Serde(vars)),
            ..self.ctx.clone()
        };
        self.derived(ctx, vars.keys().cloned().collect())
    }

    /// The same scope with `item` (a `for_each` item) in it.
    pub(crate) fn with_item(&self, item: &Value) -> Scope {
        self.derived(self.key_context(Some(item)), self.vars.clone())
    }

    /// This scope with another context and names of vars; the rest (the
    /// secrets, the facts, the record of facts read) shared.
    fn derived(&self, ctx: Value, vars: Vec<String>) -> Scope {
        Scope {
            ctx,
            secrets: self.secrets.clone(),
            vars,
            facts: self.facts.clone(),
            reads: std::sync::Arc::clone(&self.reads),
            values_env: self.values_env.clone(),
        }
    }

    /// The environment values render in, made on first use.
    fn values_env(&self) -> Result<&Environment<'static>, String> {
        self.values_env
            .get_or_init(|| environment(&Header::default()).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// `vars` with the `{{ … }}` of their strings rendered over the other
    /// vars (each after those it reads), `facts` and `host`. Errors are
    /// `(var, message)`: a cycle names its members.
    pub(crate) fn expand_vars(
        &self,
        vars: &toml::Table,
    ) -> Result<toml::Table, Vec<(String, String)>> {
        let templated: BTreeSet<&str> = vars
            .iter()
            .filter(|(_, v)| strings(v).iter().any(|s| is_templated(s)))
            .map(|(k, _)| k.as_str())
            .collect();
        let mut done = vars.clone();
        let mut errors = Vec::new();
        let mut state: BTreeMap<&str, Visit> = BTreeMap::new();
        for &k in &templated {
            // Each error once: a var that failed with another was named.
            if state.contains_key(k) {
                continue;
            }
            let mut path = Vec::new();
            if let Err(e) = self.expand_var(k, &templated, &mut done, &mut state, &mut path) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(done)
        } else {
            Err(errors)
        }
    }

    /// Renders the var `k` after the templated vars it reads (depth first;
    /// `path` is the chain being rendered, for a cycle's words).
    fn expand_var<'k>(
        &self,
        k: &'k str,
        templated: &BTreeSet<&'k str>,
        done: &mut toml::Table,
        state: &mut BTreeMap<&'k str, Visit>,
        path: &mut Vec<&'k str>,
    ) -> Result<(), (String, String)> {
        match state.get(k) {
            Some(Visit::Done) => return Ok(()),
            Some(Visit::Failed) => return Err((k.to_owned(), String::new())),
            Some(Visit::Open) => {
                let from = path.iter().position(|p| *p == k).unwrap_or(0);
                let mut cycle: Vec<String> =
                    path[from..].iter().map(|p| format!("vars.{p}")).collect();
                cycle.push(format!("vars.{k}"));
                return Err((
                    k.to_owned(),
                    format!("its value reads itself: {}", cycle.join(" -> ")),
                ));
            }
            None => {}
        }
        state.insert(k, Visit::Open);
        path.push(k);
        let value = done.get(k).cloned().unwrap_or(toml::Value::Boolean(false));
        let mut result = Ok(());
        for dep in reads(&value)
            .iter()
            .filter_map(|d| templated.get(d.as_str()).copied())
        {
            if let Err(e) = self.expand_var(dep, templated, done, state, path) {
                result = Err(if e.1.is_empty() {
                    (
                        k.to_owned(),
                        format!("it reads vars.{dep}, which could not be computed"),
                    )
                } else {
                    e
                });
                break;
            }
        }
        let result = result.and_then(|()| {
            let scope = self.with_vars(done);
            let mut value = value;
            render_strings(&mut value, &|s| scope.expand(s, None))
                .map_err(|e| (k.to_owned(), e))?;
            done.insert(k.to_owned(), value);
            Ok(())
        });
        path.pop();
        state.insert(
            k,
            if result.is_ok() {
                Visit::Done
            } else {
                Visit::Failed
            },
        );
        result
    }

    /// `text` rendered, or as it is when it has nothing to render. The
    /// error is a message; the caller places it at the key.
    pub(crate) fn expand(&self, text: &str, item: Option<&Value>) -> Result<String, String> {
        if !is_templated(text) {
            return Ok(text.to_owned());
        }
        let env = self.values_env()?;
        let tmpl = env
            .template_from_str(text)
            .map_err(|e| self.message(text, &e, &HashSet::new()))?;
        tmpl.render(self.key_context(item))
            .map_err(|e| self.message(text, &e, &tmpl.undeclared_variables(true)))
    }

    /// The value of the expression `expr`.
    pub(crate) fn eval(&self, expr: &str, item: Option<&Value>) -> Result<Value, String> {
        let env = self.values_env()?;
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

/// Where [`Scope::expand_vars`] stands with a var.
#[derive(Clone, Copy)]
enum Visit {
    Open,
    Done,
    Failed,
}

/// Every string in a TOML value.
fn strings(v: &toml::Value) -> Vec<&str> {
    match v {
        toml::Value::String(s) => vec![s.as_str()],
        toml::Value::Array(a) => a.iter().flat_map(strings).collect(),
        toml::Value::Table(t) => t.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// The vars (`x` of `vars.x`) the templated strings of `v` read.
fn reads(v: &toml::Value) -> BTreeSet<String> {
    let env = Environment::new();
    strings(v)
        .into_iter()
        .filter(|s| is_templated(s))
        .filter_map(|s| {
            env.template_from_str(s)
                .ok()
                .map(|t| t.undeclared_variables(true))
        })
        .flatten()
        .filter_map(|n| Some(n.strip_prefix("vars.")?.split('.').next()?.to_owned()))
        .collect()
}

/// Renders every templated string of `v` in place.
fn render_strings(
    v: &mut toml::Value,
    render: &dyn Fn(&str) -> Result<String, String>,
) -> Result<(), String> {
    match v {
        toml::Value::String(s) if is_templated(s) => *s = render(s)?,
        toml::Value::Array(a) => {
            for x in a {
                render_strings(x, render)?;
            }
        }
        toml::Value::Table(t) => {
            for (_, x) in t.iter_mut() {
                render_strings(x, render)?;
            }
        }
        _ => {}
    }
    Ok(())
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
    fn vars_compute_from_vars_in_the_order_they_need() {
        let vars: toml::Table = toml::from_str(
            "url = '{{ vars.scheme }}://{{ vars.host_name }}:{{ vars.port }}'\nhost_name = '{{ host }}.{{ vars.domain }}'\ndomain = 'example.com'\nscheme = 'https'\nport = 443\nlist = ['{{ vars.domain }}', 'x']",
        )
        .expect("toml");
        let s = Scope::new(&vars, &Facts::default(), "web1", None);
        let out = s.expand_vars(&vars).expect("expands");
        assert_eq!(out["url"].as_str(), Some("https://web1.example.com:443"));
        assert_eq!(out["list"][0].as_str(), Some("example.com"));
        let scoped = s.with_vars(&out);
        assert_eq!(
            scoped.expand("{{ vars.url }}", None).unwrap(),
            "https://web1.example.com:443"
        );
    }

    #[test]
    fn a_cycle_of_vars_is_named() {
        let vars: toml::Table = toml::from_str(
            "a = '{{ vars.b }}'\nb = 'x{{ vars.c }}'\nc = '{{ vars.a }}'\nd = '{{ vars.nope }}'",
        )
        .expect("toml");
        let s = Scope::new(&vars, &Facts::default(), "h", None);
        let errs = s.expand_vars(&vars).expect_err("cycle");
        assert!(
            errs.iter().any(|(k, m)| k == "a"
                && m == "its value reads itself: vars.a -> vars.b -> vars.c -> vars.a"),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|(k, m)| k == "d" && m.starts_with("undefined variable 'vars.nope'")),
            "{errs:?}"
        );
        assert_eq!(errs.len(), 2, "{errs:?}");
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
