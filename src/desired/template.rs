//! Rendering `template = true` files with minijinja.
//!
//! Undefined variables are errors, not empty strings: a typo in a variable
//! name must fail validation instead of writing a broken config to a host.

use minijinja::{Environment, UndefinedBehavior, Value};

/// Where a template's text starts, to turn a template line into a repo line.
pub struct TemplateOrigin<'a> {
    /// Repo file holding the template text.
    pub file: &'a str,
    /// Repo line of the template's first line.
    pub first_line: usize,
}

/// A template error placed in the repo: file, line and message.
#[derive(Debug, PartialEq, Eq)]
pub struct TemplateError {
    /// Repo file.
    pub file: String,
    /// Repo line, when minijinja knows it.
    pub line: Option<usize>,
    /// What went wrong.
    pub message: String,
}

/// The values in scope of every template: `vars`, `facts` and `host`.
pub struct Scope {
    ctx: Value,
}

impl Scope {
    /// Builds the scope from serialisable parts.
    pub fn new(vars: &toml::Table, facts: &super::facts::Facts, host: &str) -> Self {
        let ctx = minijinja::context! {
            vars => Value::from(minijinja::value::Serde(vars)),
            facts => Value::from(minijinja::value::Serde(facts)),
            host => host,
        };
        Self { ctx }
    }
}

/// Renders `text`; keeps the trailing newline that minijinja would drop, so
/// a template's bytes match what its author sees in the file.
pub fn render(
    text: &str,
    scope: &Scope,
    origin: &TemplateOrigin<'_>,
) -> Result<String, TemplateError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
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
                message: format!("template engine setup failed: {e}"),
            });
        }
    }
    let to_error = |e: minijinja::Error| {
        let mut message = e.kind().to_string();
        if let Some(detail) = e.detail() {
            message.push_str(": ");
            message.push_str(detail);
        }
        TemplateError {
            file: origin.file.to_owned(),
            line: e.line().map(|l| origin.first_line + l - 1),
            message: format!("template error: {message}"),
        }
    };
    let tmpl = env.template_from_str(text).map_err(to_error)?;
    tmpl.render(&scope.ctx).map_err(to_error)
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
        Scope::new(&vars, &facts, "web1.example.com")
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
        );
        assert_eq!(
            out.as_deref(),
            Ok("listen 8080;\nab web1 4 web1.example.com\n")
        );
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
        let err = render("{{ vars.prot }}", &scope(), &AT).expect_err("undefined");
        assert!(err.message.contains("undefined"), "{}", err.message);
        assert_eq!(err.line, Some(1));
    }
}
