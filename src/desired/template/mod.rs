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

mod ansible;
mod expr;
mod facts;
mod header;
mod yaml;

use header::Header;

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

/// What every `secrets.…` is when secrets are only checked, and every
/// `facts.custom.…` of another host: it renders as its text, and so does
/// any attribute of it.
#[derive(Debug)]
struct Placeholder(&'static str);

impl Object for Placeholder {
    fn get_value(self: &Arc<Self>, _key: &Value) -> Option<Value> {
        Some(Value::from_object(Placeholder(self.0)))
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
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
    /// The facts the renders read.
    reads: facts::Reads,
    /// The environment `when`, `for_each` and `{{ }}` in values render
    /// in: made once per scope, not per string.
    values_env: std::sync::OnceLock<Result<Environment<'static>, String>>,
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
            SecretVars::Placeholders => Value::from_object(Placeholder("(secret)")),
        });
        let reads = facts::Reads::default();
        let ctx = minijinja::context! {
            vars => Value::from(minijinja::value::Serde(vars)),
            facts => facts::value(facts, &reads),
            host => host,
        };
        let facts = match serde_json::to_value(facts) {
            Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
            _ => Vec::new(),
        };
        Self {
            ctx,
            secrets,
            vars: vars.keys().cloned().collect(),
            facts,
            reads,
            values_env: std::sync::OnceLock::new(),
        }
    }

    /// The facts read so far by the renders in this scope.
    pub(crate) fn facts_read(&self) -> super::facts::FactsRead {
        self.reads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
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

    /// Of the dotted names a template reads, those that are not defined,
    /// each cut after its first undefined part (`vars.ntp.servers` when
    /// `vars` has no `ntp` is `vars.ntp`). `secrets` is never walked: a
    /// read of it marks the output.
    fn missing(&self, names: &std::collections::HashSet<String>) -> Vec<String> {
        let mut out: Vec<String> = names
            .iter()
            .filter(|n| n.split('.').next() != Some("secrets"))
            .filter_map(|name| {
                let mut value = self.ctx.clone();
                let mut upto = Vec::new();
                for part in name.split('.') {
                    upto.push(part);
                    match value.get_attr(part) {
                        // A custom fact that failed is defined: its own
                        // error says what is wrong.
                        Ok(v) if v.kind() == minijinja::value::ValueKind::Invalid => return None,
                        Ok(v) if !v.is_undefined() => value = v,
                        _ => return Some(upto.join(".")),
                    }
                }
                None
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// "did you mean" for an undefined `vars.x` or `facts.x` (or a bare
    /// name that is one of them without its prefix).
    fn suggest(&self, expr: &str) -> Option<String> {
        let (head, rest) = expr.split_once('.').unwrap_or(("", expr));
        let name = rest.split(['.', '[', ' ', '|']).next().unwrap_or(rest);
        let close = |names: &[String]| {
            // A known name: what is undefined is deeper in it
            // (`facts.packages.nginx`), and it is no better a guess.
            if names.iter().any(|n| n == name) {
                return None;
            }
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
/// author sees in the file. An Ansible `#jinja2:` first line sets the
/// whitespace handling and is not part of the output.
pub(crate) fn render(
    text: &str,
    scope: &Scope,
    origin: &TemplateOrigin<'_>,
    max_bytes: u64,
) -> Result<Rendered, TemplateError> {
    let (header, text) = Header::read(text).map_err(|message| TemplateError {
        file: origin.file.to_owned(),
        line: Some(origin.first_line),
        column: Some(1),
        message,
    })?;
    let (ctx, read) = scope.for_render();
    let failure = Failure {
        text,
        scope,
        // The header line is not part of the template: lines count from
        // the one after it.
        file: origin.file,
        first_line: origin.first_line + usize::from(header.present),
        read: &read,
    };
    let env = environment(&header).map_err(|e| TemplateError {
        message: format!("template error: the template header: {e}"),
        ..failure.error(&e, &[])
    })?;
    let tmpl = env
        .template_from_str(text)
        .map_err(|e| failure.error(&e, &[]))?;
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
                ..failure.error(&e, &[])
            });
        }
        Err(e) => {
            let globals: Vec<&str> = env.globals().map(|(name, _)| name).collect();
            let mut names = tmpl.undeclared_variables(true);
            names.retain(|n| !globals.contains(&n.split('.').next().unwrap_or(n)));
            return Err(failure.error(&e, &scope.missing(&names)));
        }
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

/// The environment every template renders in: strict about undefined
/// names, bounded, without `debug()` or a loader, with the filters and
/// tests Ansible roles use.
fn environment(header: &Header) -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    // `debug()` prints the whole context; errors keep no copy of it.
    env.remove_global("debug");
    env.set_debug(false);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_syntax(header.syntax()?);
    ansible::add_to(&mut env);
    yaml::add_to(&mut env);
    Ok(env)
}

/// Turns a minijinja error of one render into a located [`TemplateError`]
/// that never quotes what a secret may have put in it.
struct Failure<'a> {
    text: &'a str,
    scope: &'a Scope,
    file: &'a str,
    first_line: usize,
    read: &'a AtomicBool,
}

impl Failure<'_> {
    /// The error, with `missing` the undefined names the template reads.
    fn error(&self, e: &minijinja::Error, missing: &[String]) -> TemplateError {
        let span = e.range().and_then(|r| Some((r.start, self.text.get(r)?)));
        // The span's place in the text; else only the line minijinja knows.
        let (line, column) = match span {
            Some((start, _)) => {
                let before = self.text.get(..start).unwrap_or("");
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                (Some(line), Some(column))
            }
            None => (e.line(), None),
        };
        TemplateError {
            file: self.file.to_owned(),
            line: line.map(|l| self.first_line + l - 1),
            column,
            message: self.message(e, span, missing),
        }
    }

    fn message(
        &self,
        e: &minijinja::Error,
        span: Option<(usize, &str)>,
        missing: &[String],
    ) -> String {
        let did_you_mean = |s: Option<String>| {
            s.map(|s| format!(" (did you mean '{s}'?)"))
                .unwrap_or_default()
        };
        match (e.kind(), span) {
            // No loader: no template may include, import or extend another;
            // and the name it looked for may be a secret's value.
            (minijinja::ErrorKind::TemplateNotFound, _) => {
                "template error: templates cannot include, import or extend other templates"
                    .to_owned()
            }
            (minijinja::ErrorKind::UndefinedError, Some((start, expr))) => {
                // The span may be a filter applied to the undefined name.
                let name = undefined_name(self.text, start, expr, missing);
                let hint = did_you_mean(self.scope.suggest(&name));
                format!("undefined variable '{name}'{hint}")
            }
            // No place (an expression's error may have none): the first
            // name it reads that is not defined.
            (minijinja::ErrorKind::UndefinedError, None) if !missing.is_empty() => {
                let name = missing[0].as_str();
                let hint = did_you_mean(self.scope.suggest(name));
                format!("undefined variable '{name}'{hint}")
            }
            (minijinja::ErrorKind::UnknownTest, Some((start, call))) => {
                match unknown_test(self.text, start, call) {
                    Some(name) => {
                        let known: Vec<&str> = BUILTIN_TESTS
                            .iter()
                            .chain(ansible::TESTS)
                            .copied()
                            .collect();
                        let hint =
                            did_you_mean(super::schema::suggest(name, &known).map(str::to_owned));
                        format!("template error: unknown test '{name}'{hint}")
                    }
                    None => "template error: unknown test".to_owned(),
                }
            }
            // The detail may quote a value, and this render read secrets.
            _ if self.read.load(Ordering::Relaxed) => format!(
                "template error: {} (details hidden: the template reads secrets){}",
                e.kind(),
                undefined_nearby(self.text, span, missing)
            ),
            _ => format!(
                "template error: {}{}{}",
                e.kind(),
                e.detail().map(|d| format!(": {d}")).unwrap_or_default(),
                undefined_nearby(self.text, span, missing)
            ),
        }
    }
}

/// For an error that is not minijinja's "undefined" (a filter given an
/// undefined value fails on its own terms: `sort` says it "cannot convert
/// value to list"), the undefined names on the failing line, as a hint.
fn undefined_nearby(text: &str, span: Option<(usize, &str)>, missing: &[String]) -> String {
    let Some((start, _)) = span else {
        return String::new();
    };
    let names: Vec<String> = missing
        .iter()
        .filter(|m| line_of(text, start).contains(m.as_str()))
        .map(|m| format!("'{m}'"))
        .collect();
    match names.len() {
        0 => String::new(),
        1 => format!(" ({} is undefined here)", names[0]),
        _ => format!(" ({} are undefined here)", names.join(", ")),
    }
}

/// The line of `text` that holds byte `at`.
fn line_of(text: &str, at: usize) -> &str {
    let start = text
        .get(..at)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1);
    let line = text.get(start..).unwrap_or("");
    line.split('\n').next().unwrap_or(line)
}

/// minijinja's own tests, for "did you mean" (it cannot list them).
const BUILTIN_TESTS: &[&str] = &[
    "boolean",
    "defined",
    "divisibleby",
    "endingwith",
    "equalto",
    "escaped",
    "even",
    "false",
    "filter",
    "float",
    "greaterthan",
    "in",
    "integer",
    "iterable",
    "lessthan",
    "lower",
    "mapping",
    "none",
    "number",
    "odd",
    "safe",
    "sameas",
    "sequence",
    "startingwith",
    "string",
    "test",
    "true",
    "undefined",
    "upper",
];

/// The undefined name an error is about. minijinja's span is the
/// expression that failed, which may be a filter applied to the name
/// (`join(",")`): prefer an undefined name inside the span, then one on
/// the same line, then the span itself.
fn undefined_name(text: &str, start: usize, span: &str, missing: &[String]) -> String {
    let longest = |within: &str| {
        missing
            .iter()
            .filter(|m| within.contains(m.as_str()))
            .max_by_key(|m| m.len())
    };
    if let Some(name) = longest(span).or_else(|| longest(line_of(text, start))) {
        return name.clone();
    }
    // A subscript's span starts at its bracket (`['dl-hello'].version`):
    // name what it subscripts too (`facts.packages['dl-hello'].version`).
    match span.chars().next() {
        Some('[' | '.') => format!("{}{span}", chain_before(text, start)),
        _ => span.to_owned(),
    }
}

/// The dotted and subscripted name that ends at `end` in `text`
/// (`facts.packages` before `['dl-hello']`).
fn chain_before(text: &str, end: usize) -> &str {
    let before = text.get(..end).unwrap_or("");
    let mut at = before.len();
    while let Some(c) = before[..at].chars().next_back() {
        if c == ']' {
            match before[..at].rfind('[') {
                Some(open) => at = open,
                None => break,
            }
        } else if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            at -= 1;
        } else {
            break;
        }
    }
    &before[at..]
}

/// The test name in an expression that used an unknown one. minijinja's
/// span starts at the test's name after `is` / `is not`; a test named to
/// a filter (`select('nam', …)`) is that call's first quoted argument.
fn unknown_test<'a>(text: &str, start: usize, call: &'a str) -> Option<&'a str> {
    let before = text.get(..start).unwrap_or("").trim_end();
    let before = before.strip_suffix("not").unwrap_or(before).trim_end();
    if before.ends_with(" is") {
        let end = call
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(call.len());
        return Some(&call[..end]).filter(|name| !name.is_empty());
    }
    let at = call.find(['\'', '"'])?;
    let quote = &call[at..at + 1];
    let rest = &call[at + 1..];
    rest.find(quote).map(|end| &rest[..end])
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

    /// A template from an Ansible role: its `#jinja2:` header sets the
    /// whitespace, Python's methods and Ansible's filters work, and lines
    /// of errors count from the template's first line after the header.
    #[test]
    fn an_ansible_role_template_renders_as_under_ansible() {
        let vars: toml::Table = toml::from_str(
            "ntp_enabled = 'yes'\nntp_servers = ['0.pool', '1.pool']\nextra = { minpoll = 4 }",
        )
        .expect("toml");
        let scope = Scope::new(&vars, &Facts::default(), "h", None);
        let text = "#jinja2: lstrip_blocks: True\n\
            {{ 'managed by driftless' | comment }}\n\
            {% for s in vars.ntp_servers %}\n    \
            {% if s.startswith('0.') %}\n\
            server {{ s }} iburst{{ ' minpoll %d' | format(vars.extra.minpoll) if vars.ntp_enabled | bool else '' }}\n    \
            {% endif %}\n\
            {% endfor %}\n\
            {% for k, v in ({'a': 1} | combine({'b': 2})).items() %}{{ k }}={{ v }} {% endfor %}\n";
        let out = render(text, &scope, &AT, 1 << 20).expect("renders");
        assert_eq!(
            out.text,
            "#\n# managed by driftless\n#\nserver 0.pool iburst minpoll 4\na=1 b=2 "
        );
        let err = render(
            "#jinja2: trim_blocks: False\nok\n{{ vars.nope }}\n",
            &scope,
            &AT,
            1 << 20,
        )
        .expect_err("undefined");
        assert_eq!(err.line, Some(3), "{err:?}");
        let err = render("#jinja2: trim: False\n", &scope, &AT, 1 << 20).expect_err("bad header");
        assert_eq!((err.line, err.column), (Some(1), Some(1)));
        assert!(
            err.message.contains("'trim' is not a setting"),
            "{}",
            err.message
        );
    }

    /// An undefined name under a filter is named itself, not the filter
    /// call minijinja points at; and it is cut at its first missing part.
    #[test]
    fn an_undefined_name_under_a_filter_is_named() {
        for text in [
            "x\n{{ vars.nmes | join(',') }}\n",
            "x\n{{ vars.nmes.first | default('a') | upper }}\n",
        ] {
            let err = render(text, &scope(), &AT, 1 << 20).expect_err(text);
            assert_eq!(
                err.message, "undefined variable 'vars.nmes' (did you mean 'vars.names'?)",
                "{text}"
            );
            assert_eq!(err.line, Some(2), "{text}");
        }
        // A filter that fails on an undefined value fails on its own terms;
        // the undefined name on that line is named with it.
        let err = render(
            "{% for n in vars.nmes | sort %}{% endfor %}",
            &scope(),
            &AT,
            1 << 20,
        )
        .expect_err("undefined under sort");
        assert!(
            err.message.ends_with("('vars.nmes' is undefined here)"),
            "{}",
            err.message
        );
    }

    /// Regression: a missing key read by subscript was named from its
    /// bracket on (`'['dl-hello'].version'`), and a name that exists but
    /// is undefined deeper in got itself as "did you mean".
    #[test]
    fn a_subscripted_undefined_name_is_named_whole_without_a_false_suggestion() {
        let vars: toml::Table = toml::from_str("users = { alice = 1 }").expect("toml");
        let scope = Scope::new(&vars, &Facts::default(), "h", None);
        let err =
            render("{{ vars.users['bob-x'].uid }}", &scope, &AT, 1 << 20).expect_err("undefined");
        assert_eq!(err.message, "undefined variable 'vars.users['bob-x'].uid'");
        let err = render("{{ vars.users.bob.uid }}", &scope, &AT, 1 << 20).expect_err("undefined");
        assert_eq!(err.message, "undefined variable 'vars.users.bob'");
    }

    #[test]
    fn an_unknown_test_is_named_with_a_suggestion() {
        for (text, want) in [
            (
                "{{ vars.names | select('matchs', 'a') | list }}",
                "unknown test 'matchs' (did you mean 'match'?)",
            ),
            (
                "{% if vars.port is versoin('1', '>') %}{% endif %}",
                "unknown test 'versoin' (did you mean 'version'?)",
            ),
            (
                "{% if vars.port is not defind %}{% endif %}",
                "unknown test 'defind' (did you mean 'defined'?)",
            ),
        ] {
            let err = render(text, &scope(), &AT, 1 << 20).expect_err(text);
            assert!(err.message.ends_with(want), "{text}: {}", err.message);
        }
    }
}
