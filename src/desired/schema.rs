//! A small reader over spanned TOML that collects every error.
//!
//! serde with `deny_unknown_fields` stops at the first problem in a file and
//! cannot say "did you mean". Config repos are edited by people under
//! pressure, so the loader walks the spanned document itself: each accessor
//! reports a wrong type or a missing key as a [`Diagnostic`] and carries on,
//! and [`Fields::finish`] reports every key nobody asked for.

use std::cell::RefCell;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diag::{Diagnostic, Origin, SourceText};

/// A value with the byte span it came from.
pub(crate) type Sp<T> = Spanned<T>;

/// Parsing context of one file: its text and the diagnostics found so far.
pub(crate) struct Ctx<'a> {
    /// The file being read.
    pub src: SourceText<'a>,
    diags: RefCell<Vec<Diagnostic>>,
}

impl<'a> Ctx<'a> {
    /// A context for the repo file `name` with contents `text`.
    pub(crate) fn new(name: &'a str, text: &'a str) -> Self {
        Self {
            src: SourceText::new(name, text),
            diags: RefCell::new(Vec::new()),
        }
    }

    /// A context over the same file whose problems are dropped (what a
    /// table that does not apply gets wrong): it shares the line index,
    /// so one per table costs nothing in the file's size.
    pub(crate) fn quiet(&self) -> Self {
        Self {
            src: self.src.clone(),
            diags: RefCell::new(Vec::new()),
        }
    }

    /// The whole text it reads.
    pub(crate) fn text(&self) -> &str {
        self.src.text
    }

    /// Records a problem at `span`.
    pub(crate) fn error(&self, span: &Range<usize>, message: impl Into<String>) {
        self.diags.borrow_mut().push(self.src.diag(span, message));
    }

    /// The origin of `span`.
    pub(crate) fn origin(&self, span: &Range<usize>) -> Origin {
        self.src.origin(span.start)
    }

    /// The raw source text of `span` (used to locate template lines).
    pub(crate) fn text_at(&self, span: &Range<usize>) -> &str {
        self.src.text.get(span.clone()).unwrap_or("")
    }

    /// Consumes the context, returning its diagnostics.
    pub(crate) fn into_diagnostics(self) -> Vec<Diagnostic> {
        self.diags.into_inner()
    }
}

/// Parses `text` as a TOML document; syntax errors become diagnostics.
pub(crate) fn parse_document<'i>(cx: &Ctx<'_>, text: &'i str) -> Option<Sp<DeTable<'i>>> {
    match DeTable::parse(text) {
        Ok(table) => Some(table),
        Err(err) => {
            let span = err.span().unwrap_or(0..0);
            let hint = syntax_hint(text, span.start, err.message()).unwrap_or_default();
            cx.error(&span, format!("TOML syntax error: {}{hint}", err.message()));
            None
        }
    }
}

/// What to do about a syntax error people make all the time: an octal
/// mode written as in chmod (`mode = 0700`) is not a TOML number.
fn syntax_hint(text: &str, at: usize, message: &str) -> Option<String> {
    if !message.contains("leading zero") {
        return None;
    }
    let start = text.get(..at)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(start..)?.lines().next()?;
    let (key, value) = line.split_once('=')?;
    let value = value.split('#').next()?.trim();
    let key = key.trim();
    Some(format!(
        "; TOML numbers cannot start with 0: quote it, {key} = \"{value}\""
    ))
}

/// The TOML type name of a value, for "expected X, found Y" messages.
pub(crate) fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The keys of one table, read one by one; what is left over is unknown.
#[derive(Clone)]
pub(crate) struct Fields<'t, 'i> {
    table: &'t DeTable<'i>,
    span: Range<usize>,
    what: &'static str,
    allowed: &'static [&'static str],
    /// Keys every table of its kind takes besides `allowed` (`when`).
    also: &'static [&'static str],
    /// Renders `{{ … }}` in string values, where a file's values are
    /// computed ([`Fields::expanding`]).
    expand: Option<&'t Expand<'t>>,
}

/// What renders the `{{ … }}` of a string value (the error is a message).
pub(crate) type Expand<'a> = dyn Fn(&str) -> Result<String, String> + 'a;

/// Keys whose strings are never rendered as a value: content, rendered by
/// `template = true`, and the expressions themselves.
const NOT_RENDERED: &[&str] = &["content", "when", "for_each"];

impl<'t, 'i> Fields<'t, 'i> {
    /// Reads `table` (at `span`), described as `what` in messages
    /// (for example `[[file]]`), accepting only the keys in `allowed`.
    pub(crate) fn new(
        table: &'t DeTable<'i>,
        span: Range<usize>,
        what: &'static str,
        allowed: &'static [&'static str],
    ) -> Self {
        Self {
            table,
            span,
            what,
            allowed,
            also: &[],
            expand: None,
        }
    }

    /// The same table, also taking the keys `also`.
    pub(crate) fn also(self, also: &'static [&'static str]) -> Self {
        Self { also, ..self }
    }

    /// The same table, its string values rendered by `expand`.
    pub(crate) fn expanding(&self, expand: &'t Expand<'t>) -> Self {
        Self {
            expand: Some(expand),
            ..self.clone()
        }
    }

    /// `s`, the string value of `key` at `span`, rendered; `None` when
    /// that failed (reported).
    fn rendered(&self, cx: &Ctx<'_>, key: &str, span: Range<usize>, s: &str) -> Option<Sp<String>> {
        match self.expand {
            Some(expand) if !NOT_RENDERED.contains(&key) => match expand(s) {
                Ok(r) => Some(Spanned::new(span, r)),
                Err(e) => {
                    cx.error(&span, format!("`{key}` in {}: {e}", self.what));
                    None
                }
            },
            _ => Some(Spanned::new(span, s.to_owned())),
        }
    }

    /// Reads a value that must be a table.
    pub(crate) fn table_of(
        cx: &Ctx<'_>,
        value: &'t Sp<DeValue<'i>>,
        what: &'static str,
        allowed: &'static [&'static str],
    ) -> Option<Self> {
        match value.get_ref() {
            DeValue::Table(t) => Some(Self::new(t, value.span(), what, allowed)),
            other => {
                cx.error(
                    &value.span(),
                    format!("{what} must be a table, found {}", type_name(other)),
                );
                None
            }
        }
    }

    /// The span of the whole table.
    pub(crate) fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// The raw value of `key`, if present.
    pub(crate) fn raw(&self, key: &str) -> Option<&'t Sp<DeValue<'i>>> {
        debug_assert!(
            self.allowed.contains(&key) || self.also.contains(&key),
            "{key} is not in the allowed list"
        );
        self.table
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(_, v)| v)
    }

    /// A string value.
    pub(crate) fn string(&self, cx: &Ctx<'_>, key: &str) -> Option<Sp<String>> {
        let v = self.raw(key)?;
        match v.get_ref() {
            DeValue::String(s) => self.rendered(cx, key, v.span(), s),
            other => {
                self.wrong_type(cx, key, v, "a string", other);
                None
            }
        }
    }

    /// A string value that must be present.
    pub(crate) fn required_string(&self, cx: &Ctx<'_>, key: &str) -> Option<Sp<String>> {
        if self.raw(key).is_none() {
            cx.error(
                &self.span,
                format!("{} is missing the required key `{key}`", self.what),
            );
            return None;
        }
        self.string(cx, key)
    }

    /// A boolean value.
    pub(crate) fn bool(&self, cx: &Ctx<'_>, key: &str) -> Option<Sp<bool>> {
        let v = self.raw(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(Spanned::new(v.span(), *b)),
            other => {
                self.wrong_type(cx, key, v, "a boolean (true or false)", other);
                None
            }
        }
    }

    /// A non-negative integer value.
    pub(crate) fn unsigned(&self, cx: &Ctx<'_>, key: &str) -> Option<Sp<u32>> {
        let v = self.raw(key)?;
        match v.get_ref() {
            DeValue::Integer(i) => {
                match u32::from_str_radix(&i.as_str().replace('_', ""), i.radix()) {
                    Ok(n) => Some(Spanned::new(v.span(), n)),
                    Err(_) => {
                        cx.error(
                            &v.span(),
                            format!(
                                "`{key}` in {} must be a whole number from 0 to {}",
                                self.what,
                                u32::MAX
                            ),
                        );
                        None
                    }
                }
            }
            other => {
                self.wrong_type(cx, key, v, "an integer", other);
                None
            }
        }
    }

    /// A list of strings.
    pub(crate) fn string_list(&self, cx: &Ctx<'_>, key: &str) -> Option<Vec<Sp<String>>> {
        let v = self.raw(key)?;
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(cx, key, v, "an array of strings", v.get_ref());
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.extend(self.rendered(cx, key, item.span(), s)),
                other => cx.error(
                    &item.span(),
                    format!(
                        "`{key}` in {} must list strings, found {}",
                        self.what,
                        type_name(other)
                    ),
                ),
            }
        }
        Some(out)
    }

    /// Reports every key that is not in the allowed list, with a suggestion
    /// when one of the allowed keys is close.
    pub(crate) fn finish(self, cx: &Ctx<'_>) {
        for (key, _) in self.table.iter() {
            let name = key.get_ref();
            if self.allowed.contains(&name.as_ref()) || self.also.contains(&name.as_ref()) {
                continue;
            }
            let hint = suggest(name, self.allowed)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            let allowed = self.allowed.join(", ");
            cx.error(
                &key.span(),
                format!(
                    "unknown key `{name}` in {}{hint}; allowed keys: {allowed}",
                    self.what
                ),
            );
        }
    }

    fn wrong_type(
        &self,
        cx: &Ctx<'_>,
        key: &str,
        v: &Sp<DeValue<'_>>,
        expected: &str,
        found: &DeValue<'_>,
    ) {
        cx.error(
            &v.span(),
            format!(
                "`{key}` in {} must be {expected}, found {}",
                self.what,
                type_name(found)
            ),
        );
    }
}

pub(crate) use crate::words::suggest;

/// The states Ansible and Puppet write, and what they are called here.
const OTHER_TOOLS_STATES: &[(&str, &str)] = &[
    ("started", "running"),
    ("restarted", "running"),
    ("reloaded", "running"),
    ("installed", "present"),
    ("removed", "absent"),
    ("purged", "absent"),
];

/// The message for a `state` that is not one of `allowed`: names what an
/// Ansible or Puppet user meant (`started` is `running`), else a close
/// spelling, and says what enabling a unit is.
pub(crate) fn unknown_state(other: &str, allowed: &[&str]) -> String {
    let list: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
    let meant = OTHER_TOOLS_STATES
        .iter()
        .find(|(word, here)| *word == other && allowed.contains(here))
        .map(|(_, here)| *here)
        .or_else(|| suggest(other, allowed));
    let hint = match (meant, other) {
        (Some(m), _) => format!(" (did you mean \"{m}\"?)"),
        (None, "enabled" | "disabled") if allowed.contains(&"running") => {
            " (starting at boot is `enabled = true` or `false`)".to_owned()
        }
        _ => String::new(),
    };
    format!("state `{other}` is not one of {}{hint}", list.join(", "))
}

/// Iterates the tables of an array of tables (`[[file]]`); a value that is
/// not an array of tables is reported once.
pub(crate) fn array_of_tables<'t, 'i>(
    cx: &Ctx<'_>,
    value: &'t Sp<DeValue<'i>>,
    what: &'static str,
    allowed: &'static [&'static str],
) -> Vec<Fields<'t, 'i>> {
    match value.get_ref() {
        DeValue::Array(items) => items
            .iter()
            .filter_map(|item| Fields::table_of(cx, item, what, allowed))
            .collect(),
        other => {
            cx.error(
                &value.span(),
                format!(
                    "{what} must be an array of tables (write `{what}` sections), found {}",
                    type_name(other)
                ),
            );
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table that does not apply is read in a quiet context: it shares
    /// the file's line index (one per table made every load quadratic in
    /// the host file: 10000 files took 5 s instead of 0.3 s) and its
    /// problems are not the file's.
    #[test]
    fn a_quiet_context_shares_the_index_and_drops_its_problems() {
        let cx = Ctx::new("hosts/h.toml", "[[file]]\npath = 1\n");
        let quiet = cx.quiet();
        assert!(quiet.src.shares_index(&cx.src));
        quiet.error(&(9..13), "not reported");
        assert_eq!(quiet.origin(&(9..13)).to_string(), "hosts/h.toml:2:1");
        assert!(cx.diags.borrow().is_empty());
    }

    #[test]
    fn a_state_from_another_tool_is_named_in_this_ones_words() {
        let service = ["running", "stopped"];
        assert_eq!(
            unknown_state("started", &service),
            "state `started` is not one of \"running\", \"stopped\" (did you mean \"running\"?)"
        );
        assert!(unknown_state("enabled", &service).ends_with("is `enabled = true` or `false`)"));
        assert!(unknown_state("stoped", &service).ends_with("(did you mean \"stopped\"?)"));
        let package = ["present", "absent", "latest"];
        assert!(unknown_state("installed", &package).ends_with("(did you mean \"present\"?)"));
        assert!(unknown_state("started", &package).ends_with("\"latest\""));
    }

    #[test]
    fn suggests_close_keys_only() {
        assert_eq!(suggest("sorce", &["source", "content"]), Some("source"));
        assert_eq!(suggest("mdoe", &["mode", "owner"]), Some("mode"));
        assert_eq!(suggest("zzzzz", &["source", "content"]), None);
    }

    #[test]
    fn collects_all_errors_in_a_table() {
        let text = "name = 3\nstate = true\ncolour = 'x'\n";
        let cx = Ctx::new("t.toml", text);
        let doc = parse_document(&cx, text).expect("valid toml");
        let f = Fields::new(doc.get_ref(), doc.span(), "[[package]]", &["name", "state"]);
        assert!(f.string(&cx, "name").is_none());
        assert!(f.string(&cx, "state").is_none());
        f.finish(&cx);
        let msgs: Vec<String> = cx
            .into_diagnostics()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(msgs[0].starts_with("t.toml:1:8: `name` in [[package]] must be a string"));
        assert!(msgs[2].contains("unknown key `colour`"));
    }

    #[test]
    fn syntax_errors_have_a_location() {
        let text = "a = 1\nb = [\n";
        let cx = Ctx::new("bad.toml", text);
        assert!(parse_document(&cx, text).is_none());
        let d = &cx.into_diagnostics()[0];
        assert_eq!(d.file, "bad.toml");
        assert!(d.line.is_some());
        assert!(d.message.starts_with("TOML syntax error"));
    }

    #[test]
    fn an_octal_mode_as_in_chmod_gets_a_hint() {
        let text = "[[file]]\npath = \"/x\"\nmode = 0700 # rwx\n";
        let cx = Ctx::new("h.toml", text);
        assert!(parse_document(&cx, text).is_none());
        let d = &cx.into_diagnostics()[0];
        assert_eq!(d.line, Some(3));
        assert!(
            d.message.ends_with("quote it, mode = \"0700\""),
            "{}",
            d.message
        );
    }
}
