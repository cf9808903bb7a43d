//! Rendering `template = true` files with minijinja.
//!
//! Undefined variables are errors, not empty strings: a typo in a variable
//! name must fail validation instead of writing a broken config to a host.
//! Rendering work is bounded (minijinja's fuel) and so is the output, while
//! it is written: a template that loops for ever fails, it does not hang.
//!
//! Secrets never leave through a template by another way than its output,
//! which is then sensitive: every read of `secrets` is seen while
//! rendering (not only the name in the text), an error of a render that
//! read a secret keeps its kind and place but not its detail (which may
//! for), templates cannot include others, and minijinja's `debug()` (which
//! prints the whole context) is removed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use minijinja::value::{Enumerator, Object, ObjectRepr};
use minijinja::{Environment, UndefinedBehavior, Value};

/// Where a template's text starts, to turn a template line into a repo line.
pub(crate) struct TemplateOrigin<'a> {
    /// Repo file holding the template text.
    pub file: &'a str,
    /// Repo line of the template's first line.
    pub first_line: usize,
}

/// A template error placed in the repo: file, line, column and message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TemplateError {
    /// Repo file.
    pub file: String,
    /// Repo line, when minijinja knows it.
    pub line: Option<usize>,
    /// Column (in characters) on that line, when minijinja knows the span.
    pub column: Option<usize>,
    /// What went wrong.
    pub message: String,
}

/// The secret variables of a host (`hosts/<host>.secrets.toml.age`), as
/// templates see them under `secrets`.
pub(crate) enum SecretVars {
    /// Decrypted.
    Table(toml::Table),
    /// Not decrypted (checking only): every `secrets.x` renders as a
    /// placeholder, so templates still render and are checked.
    Placeholders,
}

/// What every `secrets.…` is when secrets are only checked.
#[derive(Debug)]
struct Placeholder;

impl Object for Placeholder {
    fn get_value(self: &Arc<Self>, _key: &Value) -> Option<Value> {
        Some(Value::from_object(Placeholder))
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(secret)")
    }
}

/// `secrets` as one render sees it: every way in (a key, the keys, the
/// whole table, a debug print) marks the render as having read a secret.
struct Watched {
    secrets: Value,
    read: Arc<AtomicBool>,
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.touch(), f)
    }
}

impl Watched {
    fn touch(&self) -> &Value {
        self.read.store(true, Ordering::Relaxed);
        &self.secrets
    }
}

impl Object for Watched {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.touch()
            .get_item(key)
            .ok()
            .filter(|v| !v.is_undefined())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.touch().try_iter() {
            Ok(keys) => Enumerator::Values(keys.collect()),
            Err(_) => Enumerator::Empty,
        }
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self.touch(), f)
    }
}

/// The values in scope of every template: `vars`, `facts`, `host` and,
/// when the host has a secrets file, `secrets`.
pub(crate) struct Scope {
    ctx: Value,
    /// The secrets, watched per render (see [`Watched`]).
    secrets: Option<Value>,
    /// The names under `vars` and `facts`, for "did you mean".
    vars: Vec<String>,
    facts: Vec<String>,
}

impl Scope {
    /// Builds the scope from serialisable parts.
    pub(crate) fn new(
        vars: &toml::Table,
        facts: &super::facts::Facts,
        host: &str,
        secrets: Option<&SecretVars>,
    ) -> Self {
        let secrets = secrets.map(|s| match s {
            SecretVars::Table(t) => Value::from(minijinja::value::Serde(t)),
            SecretVars::Placeholders => Value::from_object(Placeholder),
        });
        let ctx = minijinja::context! {
            vars => Value::from(minijinja::value::Serde(vars)),
            facts => Value::from(minijinja::value::Serde(facts)),
            host => host,
        };
        let facts = match toml::Table::try_from(facts) {
            Ok(t) => t.keys().cloned().collect(),
            Err(_) => Vec::new(),
        };
        Self {
            ctx,
            secrets,
            vars: vars.keys().cloned().collect(),
            facts,
        }
    }

    /// The context of one render, and the flag its reads of `secrets` set.
    fn for_render(&self) -> (Value, Arc<AtomicBool>) {
        let read = Arc::new(AtomicBool::new(false));
        let ctx = match &self.secrets {
            Some(secrets) => {
                let secrets = Value::from_object(Watched {
                    secrets: secrets.clone(),
                    read: Arc::clone(&read),
                });
                minijinja::context! { secrets => secrets, ..self.ctx.clone() }
            }
            None => self.ctx.clone(),
        };
        (ctx, read)
    }

    /// "did you mean" for an undefined `vars.x` or `facts.x` (or a bare
    /// name that is one of them without its prefix).
    fn suggest(&self, expr: &str) -> Option<String> {
        let (head, rest) = expr.split_once('.').unwrap_or(("", expr));
        let name = rest.split(['.', '[', ' ', '|']).next().unwrap_or(rest);
        let close = |names: &[String]| {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            super::schema::suggest(name, &names).map(str::to_owned)
        };
        match head {
            "vars" => close(&self.vars).map(|n| format!("vars.{n}")),
            "facts" => close(&self.facts).map(|n| format!("facts.{n}")),
            "" if self.vars.iter().any(|v| v == name) => Some(format!("vars.{name}")),
            "" if self.facts.iter().any(|v| v == name) => Some(format!("facts.{name}")),
            _ => None,
        }
    }
}

/// Instructions one template may run: far more than any real config file
/// needs (a 10,000-line loop is a few hundred thousand), far less than a
/// loop that would not end in a human lifetime.
pub(crate) const FUEL: u64 = 10_000_000;

/// A rendered template.
#[derive(Debug)]
pub(crate) struct Rendered {
    /// The output.
    pub text: String,
    /// Whether the template reads `secrets` (named in its text, or read
    /// while rendering): its output is then sensitive.
    pub reads_secrets: bool,
}

/// Renders `text`, at most `max_bytes` of output; keeps the trailing
/// newline that minijinja would drop, so a template's bytes match what its
/// author sees in the file.
pub(crate) fn render(
    text: &str,
    scope: &Scope,
    origin: &TemplateOrigin<'_>,
    max_bytes: u64,
) -> Result<Rendered, TemplateError> {
    let mut env = Environment::new();
    // `debug()` prints the whole context; errors keep no copy of it.
    env.remove_global("debug");
    env.set_debug(false);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    // Match Ansible's template module: keep the final newline, and drop the
    // newline after a block tag so `{% if %}` lines leave no blank lines.
    match minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .trim_blocks(true)
        .build()
    {
        Ok(syntax) => env.set_syntax(syntax),
        Err(e) => {
            return Err(TemplateError {
                file: origin.file.to_owned(),
                line: None,
                column: None,
                message: format!("template engine setup failed: {e}"),
            });
        }
    }
    let (ctx, read) = scope.for_render();
    let to_error = |e: minijinja::Error| {
        let span = e.range().and_then(|r| Some((r.start, text.get(r)?)));
        let secret = read.load(Ordering::Relaxed);
        let message = match (e.kind(), span) {
            // No loader: no template may include, import or extend another;
            // and the name it looked for may be a secret's value.
            (minijinja::ErrorKind::TemplateNotFound, _) => {
                "template error: templates cannot include, import or extend other templates"
                    .to_owned()
            }
            (minijinja::ErrorKind::UndefinedError, Some((_, expr))) => {
                let hint = scope
                    .suggest(expr)
                    .map(|s| format!(" (did you mean '{s}'?)"))
                    .unwrap_or_default();
                format!("undefined variable '{expr}'{hint}")
            }
            // The detail may quote a value, and this render read secrets.
            _ if secret => format!(
                "template error: {} (details hidden: the template reads secrets)",
                e.kind()
            ),
            _ => {
                let mut message = format!("template error: {}", e.kind());
                if let Some(detail) = e.detail() {
                    message.push_str(": ");
                    message.push_str(detail);
                }
                message
            }
        };
        // The span's place in the text; else only the line minijinja knows.
        let (line, column) = match span {
            Some((start, _)) => {
                let before = text.get(..start).unwrap_or("");
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                (Some(line), Some(column))
            }
            None => (e.line(), None),
        };
        TemplateError {
            file: origin.file.to_owned(),
            line: line.map(|l| origin.first_line + l - 1),
            column,
            message,
        }
    };
    let tmpl = env.template_from_str(text).map_err(to_error)?;
    let named = tmpl.undeclared_variables(false).contains("secrets");
    let mut out = Capped {
        buf: Vec::new(),
        max: max_bytes,
    };
    match tmpl.render_captured_to(&ctx, &mut out) {
        Ok(_) => {}
        Err(e) if out.buf.len() as u64 > max_bytes => {
            return Err(TemplateError {
                message: format!(
                    "template error: the output grew over the cap of {max_bytes} bytes"
                ),
                ..to_error(e)
            });
        }
        Err(e) => return Err(to_error(e)),
    }
    let text = String::from_utf8(out.buf).map_err(|_| TemplateError {
        file: origin.file.to_owned(),
        line: None,
        column: None,
        message: "template error: the output is not valid UTF-8".to_owned(),
    })?;
    Ok(Rendered {
        text,
        reads_secrets: named || read.load(Ordering::Relaxed),
    })
}

/// A buffer that refuses to grow past `max` bytes (rendering then stops).
struct Capped {
    buf: Vec<u8>,
    max: u64,
}

impl std::io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() as u64 > self.max {
            return Err(std::io::Error::other("output over the size cap"));
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::facts::Facts;

    fn scope() -> Scope {
        let vars: toml::Table = toml::from_str("port = 8080\nnames = ['a', 'b']").expect("toml");
        let facts = Facts {
            hostname: "web1".into(),
            cpus: 4,
            ..Facts::default()
        };
        Scope::new(&vars, &facts, "web1.example.com", None)
    }

    const AT: TemplateOrigin<'static> = TemplateOrigin {
        file: "files/t.j2",
        first_line: 1,
    };

    #[test]
    fn renders_vars_facts_and_host() {
        let out = render(
            "listen {{ vars.port }};\n{% for n in vars.names %}{{ n }}{% endfor %} {{ facts.hostname }} {{ facts.cpus }} {{ host }}\n",
            &scope(),
            &AT,
            1 << 20,
        );
        let out = out.expect("renders");
        assert_eq!(out.text, "listen 8080;\nab web1 4 web1.example.com\n");
        assert!(!out.reads_secrets);
    }

    #[test]
    fn secrets_render_when_decrypted_as_placeholders_when_checked_and_mark_the_output() {
        let vars = toml::Table::new();
        let table: toml::Table = toml::from_str("db = { password = 'hunter2' }").expect("toml");
        let text = "password={{ secrets.db.password }}\n";
        for (secrets, want) in [
            (SecretVars::Table(table), "password=hunter2\n"),
            (SecretVars::Placeholders, "password=(secret)\n"),
        ] {
            let scope = Scope::new(&vars, &Facts::default(), "h", Some(&secrets));
            let out = render(text, &scope, &AT, 1 << 20).expect("renders");
            assert_eq!(out.text, want);
            assert!(out.reads_secrets);
        }
        let err = render(text, &scope(), &AT, 1 << 20).expect_err("no secrets file");
        assert!(err.message.contains("undefined"), "{}", err.message);
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let err = render(
            "ok\nok\n{% if %}\n",
            &scope(),
            &TemplateOrigin {
                file: "hosts/a.toml",
                first_line: 10,
            },
            1 << 20,
        )
        .expect_err("broken template");
        assert_eq!(err.file, "hosts/a.toml");
        assert_eq!(err.line, Some(12));
        assert!(
            err.message.starts_with("template error: syntax error"),
            "{}",
            err.message
        );
    }

    #[test]
    fn undefined_variable_is_an_error() {
        let err = render("{{ vars.prot }}", &scope(), &AT, 1 << 20).expect_err("undefined");
        assert!(err.message.contains("undefined"), "{}", err.message);
        assert_eq!(err.line, Some(1));
    }

    /// Regression: two nested `range(100000)` loops hung validate, plan
    /// and converge; the output size was only checked after rendering.
    #[test]
    fn a_template_that_loops_for_ever_fails_promptly() {
        let started = std::time::Instant::now();
        let err = render(
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
            &scope(),
            &AT,
            1 << 20,
        )
        .expect_err("out of fuel");
        assert!(err.message.contains("fuel"), "{}", err.message);
        assert_eq!(err.line, Some(1));
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        let err = render(
            "{% for a in range(100000) %}xxxxxxxxxx{% endfor %}",
            &scope(),
            &AT,
            1000,
        )
        .expect_err("too big");
        assert!(
            err.message.contains("over the cap of 1000 bytes"),
            "{}",
            err.message
        );
    }

    fn with_secret() -> Scope {
        let table: toml::Table =
            toml::from_str("db_password = 'hunter2'\nport = 'x5432'").expect("toml");
        Scope::new(
            &toml::Table::new(),
            &Facts::default(),
            "h",
            Some(&SecretVars::Table(table)),
        )
    }

    /// Regression: `{% include secrets.db_password %}` (also `import` and
    /// `extends`) failed with "tried to include non-existing template
    /// 'hunter2'", printed by validate, plan, converge and in JSON.
    #[test]
    fn an_include_of_a_secret_does_not_name_it() {
        for text in [
            "{% include secrets.db_password %}",
            "{% import secrets.db_password as x %}",
            "{% extends secrets.db_password %}",
            "{% include 'other.j2' %}",
        ] {
            let err = render(text, &with_secret(), &AT, 1 << 20).expect_err(text);
            assert!(!err.message.contains("hunter2"), "{text}: {}", err.message);
            assert!(
                err.message.contains("cannot include, import or extend"),
                "{text}: {}",
                err.message
            );
            assert_eq!(err.line, Some(1), "{text}");
        }
    }

    /// Regression: `{{ debug() }}` rendered the whole context, secrets
    /// included, into a file that was not marked sensitive.
    #[test]
    fn debug_is_not_a_function_templates_have() {
        for text in ["{{ debug() }}", "{{ debug(secrets) }}"] {
            let err = render(text, &with_secret(), &AT, 1 << 20).expect_err(text);
            assert!(!err.message.contains("hunter2"), "{}", err.message);
            assert!(err.message.contains("unknown function"), "{}", err.message);
        }
    }

    /// An error of a render that read a secret keeps its kind and place,
    /// not its detail (which may quote the value).
    #[test]
    fn an_error_after_reading_a_secret_hides_its_detail() {
        let err = render(
            "a\n{{ secrets.port | int + 'x' }}\n",
            &with_secret(),
            &AT,
            1 << 20,
        )
        .expect_err("bad arithmetic");
        assert!(!err.message.contains("x5432"), "{}", err.message);
        assert!(err.message.contains("details hidden"), "{}", err.message);
        assert_eq!(err.line, Some(2));
        // A template that reads no secret keeps its detail.
        let err = render("{{ vars.port + 'x' }}", &scope(), &AT, 1 << 20).expect_err("bad");
        assert!(!err.message.contains("details hidden"), "{}", err.message);
    }

    /// Every read of `secrets` while rendering marks the output, also a
    /// whole-table print (`pprint`).
    #[test]
    fn a_printed_secrets_table_marks_the_output_sensitive() {
        let out = render("{{ secrets | pprint }}", &with_secret(), &AT, 1 << 20).expect("renders");
        assert!(out.reads_secrets);
        let out = render(
            "{% for k in secrets %}{{ k }} {% endfor %}",
            &with_secret(),
            &AT,
            1 << 20,
        )
        .expect("renders");
        assert!(out.reads_secrets);
        assert_eq!(out.text, "db_password port ");
    }
}
