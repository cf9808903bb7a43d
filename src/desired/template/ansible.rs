//! The filters and tests Ansible roles use most, with Ansible's meaning, so
//! that a role's templates carry over unchanged: `bool` with Ansible's
//! truth table (`"no"` is false), `ternary`, `combine`, the set filters,
//! `comment`, the `regex_*` filters and tests, `to_json`/`to_nice_json`,
//! `version`, `mandatory`, `quote`, paths and base64. Python's string,
//! list and dict methods (`.items()`, `.startswith()`) come from
//! `minijinja-contrib`'s pycompat.
//!
//! Where Ansible would quietly turn a wrong value into something (a `bool`
//! of `"maybe"` is false there), these refuse it: a template error at
//! validate time is better than a wrong config on a host.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use minijinja::value::{Kwargs, Rest, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};

/// How many times a filter repeats what a template asks (an indent, a
/// comment's decoration lines) at most: more is no config file's need,
/// and fuel does not count a filter's own loop.
const MAX_REPEAT: usize = 64;

/// The filter and test names this module adds (for "did you mean").
pub(super) const TESTS: &[&str] = &["match", "search", "regex", "version", "version_compare"];

/// Adds the filters, tests and Python methods to `env`.
pub(super) fn add_to(env: &mut Environment<'_>) {
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_filter("bool", to_bool);
    env.add_filter("ternary", ternary);
    env.add_filter("combine", combine);
    env.add_filter("difference", |a: Value, b: Value| {
        sets(a, b, Set::Difference)
    });
    env.add_filter("intersect", |a: Value, b: Value| sets(a, b, Set::Intersect));
    env.add_filter("union", |a: Value, b: Value| sets(a, b, Set::Union));
    env.add_filter("symmetric_difference", |a: Value, b: Value| {
        sets(a, b, Set::Symmetric)
    });
    env.add_filter("comment", comment);
    env.add_filter("regex_replace", regex_replace);
    env.add_filter("regex_search", regex_search);
    env.add_filter("regex_findall", regex_findall);
    env.add_filter("to_json", |v: Value| json(&v, None));
    env.add_filter("to_nice_json", |v: Value, kw: Kwargs| {
        // Bounded: an indent is repeated on every line of the output.
        let indent = kw
            .get::<Option<usize>>("indent")?
            .unwrap_or(4)
            .min(MAX_REPEAT);
        kw.assert_all_used()?;
        json(&v, Some(indent))
    });
    env.add_filter("mandatory", mandatory);
    env.add_filter("quote", |s: &str| shell_quote(s));
    env.add_filter("basename", |s: &str| {
        s.rsplit_once('/').map_or(s, |(_, b)| b).to_owned()
    });
    env.add_filter("dirname", dirname);
    env.add_filter("b64encode", |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    });
    env.add_filter("b64decode", b64decode);
    env.add_filter("dict2items", dict2items);
    env.add_filter("items2dict", items2dict);
    env.add_filter("flatten", flatten);
    env.add_filter("d", minijinja::filters::default);
    env.add_test("match", |s: &str, p: &str, kw: Kwargs| {
        regex_test(s, p, &kw, true)
    });
    env.add_test("search", |s: &str, p: &str, kw: Kwargs| {
        regex_test(s, p, &kw, false)
    });
    env.add_test("regex", |s: &str, p: &str, kw: Kwargs| {
        let anchored = match kw.get::<Option<&str>>("match_type")? {
            None | Some("search") => false,
            Some("match") => true,
            Some(other) => {
                return Err(invalid(format!(
                    "regex: match_type must be \"search\" or \"match\", not {other:?}"
                )));
            }
        };
        regex_test(s, p, &kw, anchored)
    });
    env.add_test("version", version_test);
    env.add_test("version_compare", version_test);
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

/// Ansible's `bool`: `yes`, `on`, `true`, `y`, `t`, `1` (any case) are
/// true; `no`, `off`, `false`, `n`, `f`, `0` and the empty string false;
/// anything else is refused rather than guessed.
fn to_bool(v: Value) -> Result<bool, Error> {
    match v.kind() {
        ValueKind::Bool => Ok(v.is_true()),
        ValueKind::None | ValueKind::Undefined => Ok(false),
        ValueKind::Number => match v.as_i64() {
            Some(1) => Ok(true),
            Some(0) => Ok(false),
            _ => Err(invalid(format!("bool: {v} is not a boolean (1 or 0)"))),
        },
        ValueKind::String => {
            let s = v.as_str().unwrap_or_default().trim().to_ascii_lowercase();
            match s.as_str() {
                "yes" | "on" | "true" | "y" | "t" | "1" => Ok(true),
                "no" | "off" | "false" | "n" | "f" | "0" | "" => Ok(false),
                _ => Err(invalid(format!(
                    "bool: {s:?} is not a boolean (yes/no, on/off, true/false, 1/0)"
                ))),
            }
        }
        _ => Err(invalid(format!("bool: a {} is not a boolean", v.kind()))),
    }
}

/// `cond | ternary(a, b[, if_none])`.
fn ternary(v: Value, yes: Value, no: Value, none: Option<Value>) -> Value {
    match none {
        Some(n) if v.is_none() || v.is_undefined() => n,
        _ if v.is_true() => yes,
        _ => no,
    }
}

/// `a | combine(b, c, recursive=true, list_merge='append')`: later maps
/// win; with `recursive`, maps inside are combined too.
fn combine(base: Value, others: Rest<Value>, kw: Kwargs) -> Result<Value, Error> {
    let recursive = kw.get::<Option<bool>>("recursive")?.unwrap_or(false);
    let list_merge = match kw.get::<Option<&str>>("list_merge")?.unwrap_or("replace") {
        "replace" => ListMerge::Replace,
        "keep" => ListMerge::Keep,
        "append" => ListMerge::Append,
        "prepend" => ListMerge::Prepend,
        other => {
            return Err(invalid(format!(
                "combine: list_merge must be replace, keep, append or prepend, not {other:?}"
            )));
        }
    };
    kw.assert_all_used()?;
    let mut out = map_of(&base, "combine")?;
    for other in others.iter() {
        merge_into(&mut out, map_of(other, "combine")?, recursive, list_merge)?;
    }
    Ok(Value::from(out))
}

#[derive(Clone, Copy)]
enum ListMerge {
    Replace,
    Keep,
    Append,
    Prepend,
}

fn merge_into(
    into: &mut BTreeMap<Value, Value>,
    from: BTreeMap<Value, Value>,
    recursive: bool,
    lists: ListMerge,
) -> Result<(), Error> {
    for (k, v) in from {
        let merged = match into.remove(&k) {
            Some(old)
                if recursive && old.kind() == ValueKind::Map && v.kind() == ValueKind::Map =>
            {
                let mut inner = map_of(&old, "combine")?;
                merge_into(&mut inner, map_of(&v, "combine")?, recursive, lists)?;
                Value::from(inner)
            }
            Some(old) if old.kind() == ValueKind::Seq && v.kind() == ValueKind::Seq => {
                let (a, b) = (seq_of(&old)?, seq_of(&v)?);
                match lists {
                    ListMerge::Replace => v,
                    ListMerge::Keep => old,
                    ListMerge::Append => Value::from([a, b].concat()),
                    ListMerge::Prepend => Value::from([b, a].concat()),
                }
            }
            _ => v,
        };
        into.insert(k, merged);
    }
    Ok(())
}

fn map_of(v: &Value, filter: &str) -> Result<BTreeMap<Value, Value>, Error> {
    if v.kind() != ValueKind::Map {
        return Err(invalid(format!("{filter}: a {} is not a map", v.kind())));
    }
    v.try_iter()?
        .map(|k| Ok((k.clone(), v.get_item(&k)?)))
        .collect()
}

fn seq_of(v: &Value) -> Result<Vec<Value>, Error> {
    match v.kind() {
        ValueKind::Seq | ValueKind::Iterable => Ok(v.try_iter()?.collect()),
        _ => Err(invalid(format!("a {} is not a list", v.kind()))),
    }
}

enum Set {
    Difference,
    Intersect,
    Union,
    Symmetric,
}

/// The set filters, in the order of the first list, each element once.
fn sets(a: Value, b: Value, op: Set) -> Result<Value, Error> {
    let (a, b) = (seq_of(&a)?, seq_of(&b)?);
    let mut out: Vec<Value> = Vec::new();
    let mut push = |v: &Value| {
        if !out.contains(v) {
            out.push(v.clone());
        }
    };
    match op {
        Set::Difference => a.iter().filter(|v| !b.contains(v)).for_each(&mut push),
        Set::Intersect => a.iter().filter(|v| b.contains(v)).for_each(&mut push),
        Set::Union => a.iter().chain(&b).for_each(&mut push),
        Set::Symmetric => a
            .iter()
            .filter(|v| !b.contains(v))
            .chain(b.iter().filter(|v| !a.contains(v)))
            .for_each(&mut push),
    }
    Ok(Value::from(out))
}

/// Ansible's `comment`: `"text" | comment` is `#\n# text\n#`; styles
/// `plain`, `erlang`, `c`, `cblock`, `xml`; the parts (`decoration`,
/// `prefix`, `postfix`, their counts, `beginning`, `end`, `newline`) can
/// be given as keywords.
fn comment(text: &str, style: Option<&str>, kw: Kwargs) -> Result<String, Error> {
    let (beginning, decoration, end) = match style.unwrap_or("plain") {
        "plain" => ("", "# ", ""),
        "erlang" => ("", "% ", ""),
        "c" => ("", "// ", ""),
        "cblock" => ("/*", " * ", " */"),
        "xml" => ("<!--", " - ", "-->"),
        other => {
            return Err(invalid(format!(
                "comment: unknown style {other:?} (plain, erlang, c, cblock, xml)"
            )));
        }
    };
    let text_kw = |key: &str, default: &str| -> Result<String, Error> {
        Ok(kw
            .get::<Option<String>>(key)?
            .unwrap_or_else(|| default.to_owned()))
    };
    let decoration = text_kw("decoration", decoration)?;
    let newline = text_kw("newline", "\n")?;
    let beginning = text_kw("beginning", beginning)?;
    let end = text_kw("end", end)?;
    let prefix = text_kw("prefix", decoration.trim_end())?;
    let postfix = text_kw("postfix", decoration.trim_end())?;
    let prefix_count = kw
        .get::<Option<usize>>("prefix_count")?
        .unwrap_or(1)
        .min(MAX_REPEAT);
    let postfix_count = kw
        .get::<Option<usize>>("postfix_count")?
        .unwrap_or(1)
        .min(MAX_REPEAT);
    kw.assert_all_used()?;
    let mut out = String::new();
    if !beginning.is_empty() {
        out.push_str(&beginning);
        out.push_str(&newline);
    }
    if !prefix.is_empty() {
        for _ in 0..prefix_count {
            if prefix != newline {
                out.push_str(&prefix);
            }
            out.push_str(&newline);
        }
    }
    let body = format!(
        "{decoration}{}",
        text.replace(&newline, &format!("{newline}{decoration}"))
    );
    // A decorated empty line has no trailing blank.
    out.push_str(&body.replace(
        &format!("{decoration}{newline}"),
        &format!("{}{newline}", decoration.trim_end()),
    ));
    for _ in 0..postfix_count {
        out.push_str(&newline);
        out.push_str(&postfix);
    }
    if !end.is_empty() {
        out.push_str(&newline);
        out.push_str(&end);
    }
    Ok(out)
}

fn regex(pattern: &str, kw: &Kwargs) -> Result<regex::Regex, Error> {
    let ignorecase = kw.get::<Option<bool>>("ignorecase")?.unwrap_or(false);
    let multiline = kw.get::<Option<bool>>("multiline")?.unwrap_or(false);
    crate::desired::checks::regex_builder(pattern)
        .case_insensitive(ignorecase)
        .multi_line(multiline)
        .build()
        .map_err(|e| invalid(format!("the regex {pattern:?} is not valid: {e}")))
}

/// Python's replacement syntax (`\1`, `\g<1>`, `\g<name>`) in the regex
/// crate's (`${1}`, `${name}`); a `$` is literal, as in Python.
fn python_replacement(repl: &str) -> String {
    let mut out = String::new();
    let mut chars = repl.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.peek().copied() {
                Some(d) if d.is_ascii_digit() => {
                    let mut n = String::new();
                    while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                        n.push(d);
                        chars.next();
                    }
                    let _ = write!(out, "${{{n}}}");
                }
                Some('g') => {
                    chars.next();
                    if chars.peek() == Some(&'<') {
                        chars.next();
                        let name: String = chars.by_ref().take_while(|c| *c != '>').collect();
                        let _ = write!(out, "${{{name}}}");
                    } else {
                        out.push_str("\\g");
                    }
                }
                Some('n') => {
                    chars.next();
                    out.push('\n');
                }
                Some('t') => {
                    chars.next();
                    out.push('\t');
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

/// `s | regex_replace(pattern, replacement, ignorecase=, multiline=)`.
fn regex_replace(
    s: &str,
    pattern: &str,
    replacement: Option<&str>,
    kw: Kwargs,
) -> Result<String, Error> {
    let re = regex(pattern, &kw)?;
    kw.assert_all_used()?;
    let repl = python_replacement(replacement.unwrap_or(""));
    Ok(re.replace_all(s, repl.as_str()).into_owned())
}

/// `s | regex_search(pattern)`: the first match, or none.
fn regex_search(s: &str, pattern: &str, kw: Kwargs) -> Result<Value, Error> {
    let re = regex(pattern, &kw)?;
    kw.assert_all_used()?;
    Ok(re
        .find(s)
        .map_or(Value::from(()), |m| Value::from(m.as_str())))
}

/// `s | regex_findall(pattern)`: every match (the groups' texts when the
/// pattern has one group, as Python's `re.findall`).
fn regex_findall(s: &str, pattern: &str, kw: Kwargs) -> Result<Value, Error> {
    let re = regex(pattern, &kw)?;
    kw.assert_all_used()?;
    let found: Vec<Value> = match re.captures_len() {
        1 => re.find_iter(s).map(|m| Value::from(m.as_str())).collect(),
        2 => re
            .captures_iter(s)
            .map(|c| Value::from(c.get(1).map_or("", |m| m.as_str())))
            .collect(),
        _ => re
            .captures_iter(s)
            .map(|c| {
                Value::from(
                    c.iter()
                        .skip(1)
                        .map(|m| Value::from(m.map_or("", |m| m.as_str())))
                        .collect::<Vec<_>>(),
                )
            })
            .collect(),
    };
    Ok(Value::from(found))
}

fn regex_test(s: &str, pattern: &str, kw: &Kwargs, anchored: bool) -> Result<bool, Error> {
    let re = regex(pattern, kw)?;
    kw.assert_all_used()?;
    Ok(match re.find(s) {
        Some(m) => !anchored || m.start() == 0,
        None => false,
    })
}

/// Python's `json.dumps` as Ansible calls it: `to_json` with `", "` and
/// `": "`, keys in their order; `to_nice_json` indented, keys sorted. Non-
/// ASCII is escaped, as Python does by default.
fn json(v: &Value, indent: Option<usize>) -> Result<String, Error> {
    let mut out = String::new();
    write_json(v, indent, 0, &mut out)?;
    Ok(out)
}

fn write_json(
    v: &Value,
    indent: Option<usize>,
    depth: usize,
    out: &mut String,
) -> Result<(), Error> {
    let (open_sep, item_sep, close_sep) = match indent {
        Some(n) => (
            format!("\n{}", " ".repeat(n * (depth + 1))),
            format!(",\n{}", " ".repeat(n * (depth + 1))),
            format!("\n{}", " ".repeat(n * depth)),
        ),
        None => (String::new(), ", ".to_owned(), String::new()),
    };
    match v.kind() {
        ValueKind::Undefined => return Err(invalid("to_json: the value is undefined")),
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&v.to_string()),
        ValueKind::String => json_string(v.as_str().unwrap_or_default(), out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items = seq_of(v)?;
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            out.push_str(&open_sep);
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&item_sep);
                }
                write_json(item, indent, depth + 1, out)?;
            }
            out.push_str(&close_sep);
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if indent.is_some() {
                keys.sort_by_key(ToString::to_string);
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            out.push_str(&open_sep);
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(&item_sep);
                }
                json_string(&k.to_string(), out);
                out.push_str(": ");
                write_json(&v.get_item(k)?, indent, depth + 1, out)?;
            }
            out.push_str(&close_sep);
            out.push('}');
        }
        other => {
            return Err(invalid(format!(
                "to_json: a {other} cannot be written as JSON"
            )));
        }
    }
    Ok(())
}

fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || !c.is_ascii() => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn mandatory(v: Value, msg: Option<&str>) -> Result<Value, Error> {
    if v.is_undefined() {
        return Err(Error::new(
            ErrorKind::UndefinedError,
            msg.unwrap_or("mandatory variable not defined").to_owned(),
        ));
    }
    Ok(v)
}

/// Python's `shlex.quote`.
fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r#"'"'"'"#))
}

/// Python's `os.path.dirname`.
fn dirname(s: &str) -> String {
    match s.rfind('/') {
        None => String::new(),
        Some(i) => {
            let head = &s[..=i];
            let trimmed = head.trim_end_matches('/');
            if trimmed.is_empty() {
                head.to_owned()
            } else {
                trimmed.to_owned()
            }
        }
    }
}

fn b64decode(s: &str) -> Result<String, Error> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| invalid(format!("b64decode: {e}")))?;
    String::from_utf8(bytes).map_err(|_| invalid("b64decode: the bytes are not UTF-8 text"))
}

fn dict2items(v: Value, kw: Kwargs) -> Result<Value, Error> {
    let key = kw.get::<Option<&str>>("key_name")?.unwrap_or("key");
    let value = kw.get::<Option<&str>>("value_name")?.unwrap_or("value");
    kw.assert_all_used()?;
    let items = map_of(&v, "dict2items")?
        .into_iter()
        .map(|(k, v)| {
            Value::from(BTreeMap::from([
                (Value::from(key), k),
                (Value::from(value), v),
            ]))
        })
        .collect::<Vec<_>>();
    Ok(Value::from(items))
}

fn items2dict(v: Value, kw: Kwargs) -> Result<Value, Error> {
    let key = kw.get::<Option<&str>>("key_name")?.unwrap_or("key");
    let value = kw.get::<Option<&str>>("value_name")?.unwrap_or("value");
    kw.assert_all_used()?;
    let mut out = BTreeMap::new();
    for item in seq_of(&v)? {
        out.insert(item.get_attr(key)?, item.get_attr(value)?);
    }
    Ok(Value::from(out))
}

fn flatten(v: Value, levels: Option<usize>) -> Result<Value, Error> {
    fn walk(items: Vec<Value>, levels: Option<usize>, out: &mut Vec<Value>) -> Result<(), Error> {
        for item in items {
            if item.kind() == ValueKind::Seq && levels != Some(0) {
                walk(seq_of(&item)?, levels.map(|l| l - 1), out)?;
            } else {
                out.push(item);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(seq_of(&v)?, levels, &mut out)?;
    Ok(Value::from(out))
}

/// `v is version(other, op, strict=, version_type=)`, with Ansible's loose
/// versions by default (`1.10 > 1.9`, `2.0rc1`).
fn version_test(v: Value, other: Value, op: Option<&str>, kw: Kwargs) -> Result<bool, Error> {
    let strict = kw.get::<Option<bool>>("strict")?.unwrap_or(false);
    let kind = kw.get::<Option<&str>>("version_type")?;
    kw.assert_all_used()?;
    let strict = match kind {
        None | Some("loose") => strict,
        Some("strict") => true,
        Some(other) => {
            return Err(invalid(format!(
                "version: version_type {other:?} is not supported (loose, strict)"
            )));
        }
    };
    let (a, b) = (v.to_string(), other.to_string());
    if strict {
        for s in [&a, &b] {
            if !is_strict_version(s) {
                return Err(invalid(format!(
                    "version: {s:?} is not a strict version (N.N[.N][aN|bN])"
                )));
            }
        }
    }
    let ord = loose_cmp(&a, &b);
    use std::cmp::Ordering::{Equal, Greater, Less};
    Ok(match op.unwrap_or("eq") {
        "<" | "lt" => ord == Less,
        "<=" | "le" => ord != Greater,
        ">" | "gt" => ord == Greater,
        ">=" | "ge" => ord != Less,
        "==" | "=" | "eq" => ord == Equal,
        "!=" | "<>" | "ne" => ord != Equal,
        other => {
            return Err(invalid(format!(
                "version: unknown operator {other:?} (lt, le, gt, ge, eq, ne or <, <=, >, >=, ==, !=)"
            )));
        }
    })
}

fn is_strict_version(s: &str) -> bool {
    let (main, pre) = match s.find(['a', 'b']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let parts: Vec<&str> = main.split('.').collect();
    let number = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    (2..=3).contains(&parts.len()) && parts.iter().all(|p| number(p)) && pre.is_none_or(number)
}

/// Python's `LooseVersion` order: runs of digits compare as numbers, runs
/// of letters as text, a number before a word.
fn loose_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    enum Part {
        Num(u128),
        Word(String),
    }
    fn parts(s: &str) -> Vec<Part> {
        let mut out = Vec::new();
        let mut chars = s.chars().peekable();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_digit() {
                let mut n = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    n.push(d);
                    chars.next();
                }
                out.push(Part::Num(n.parse().unwrap_or(u128::MAX)));
            } else if c.is_alphabetic() {
                let mut w = String::new();
                while let Some(l) = chars.peek().copied().filter(|c| c.is_alphabetic()) {
                    w.push(l);
                    chars.next();
                }
                out.push(Part::Word(w));
            } else {
                chars.next();
            }
        }
        out
    }
    parts(a).cmp(&parts(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(text: &str) -> Result<String, Error> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        add_to(&mut env);
        env.render_str(
            text,
            minijinja::context! {
                m => minijinja::context! { a => 1, b => minijinja::context! { x => 1 } },
                l => vec![1, 2, 3],
            },
        )
    }

    fn ok(text: &str) -> String {
        render(text).unwrap_or_else(|e| panic!("{text}: {e:#}"))
    }

    #[test]
    fn bool_follows_ansibles_truth_table_and_refuses_the_rest() {
        for t in ["yes", "Yes", "on", "true", "True", "y", "t", "1"] {
            assert_eq!(ok(&format!("{{{{ {t:?}|bool }}}}")), "True", "{t}");
        }
        for f in ["no", "NO", "off", "false", "n", "f", "0", ""] {
            assert_eq!(ok(&format!("{{{{ {f:?}|bool }}}}")), "False", "{f}");
        }
        assert_eq!(
            ok("{{ 1|bool }} {{ 0|bool }} {{ true|bool }} {{ none|bool }}"),
            "True False True False"
        );
        let err = render("{{ 'maybe'|bool }}").expect_err("not a boolean");
        assert!(
            err.to_string().contains("\"maybe\" is not a boolean"),
            "{err}"
        );
    }

    #[test]
    fn ternary_combine_and_sets() {
        assert_eq!(
            ok(
                "{{ true|ternary('a', 'b') }}{{ false|ternary('a', 'b') }}{{ none|ternary('a', 'b', 'n') }}"
            ),
            "abn"
        );
        assert_eq!(
            ok("{{ m|combine({'a': 2, 'b': {'y': 2}}) }}"),
            "{'a': 2, 'b': {'y': 2}}"
        );
        assert_eq!(
            ok("{{ m|combine({'b': {'y': 2}}, recursive=true) }}"),
            "{'a': 1, 'b': {'x': 1, 'y': 2}}"
        );
        assert_eq!(
            ok("{{ {'l': [1]}|combine({'l': [2]}, list_merge='append') }}"),
            "{'l': [1, 2]}"
        );
        assert_eq!(ok("{{ l|difference([2]) }}"), "[1, 3]");
        assert_eq!(ok("{{ l|intersect([3, 2, 9]) }}"), "[2, 3]");
        assert_eq!(ok("{{ l|union([3, 4]) }}"), "[1, 2, 3, 4]");
        assert_eq!(ok("{{ l|symmetric_difference([3, 4]) }}"), "[1, 2, 4]");
        assert!(render("{{ 1|combine({}) }}").is_err());
    }

    #[test]
    fn comment_matches_ansibles_output() {
        assert_eq!(ok("{{ 'managed'|comment }}"), "#\n# managed\n#");
        assert_eq!(ok("{{ 'a\nb'|comment('c') }}"), "//\n// a\n// b\n//");
        assert_eq!(ok("{{ 'x'|comment('cblock') }}"), "/*\n *\n * x\n *\n */");
        assert_eq!(ok("{{ 'x'|comment('xml') }}"), "<!--\n -\n - x\n -\n-->");
        assert_eq!(ok("{{ 'a\n\nb'|comment }}"), "#\n# a\n#\n# b\n#");
        assert_eq!(
            ok("{{ 'x'|comment(decoration='; ', prefix='', postfix='') }}"),
            "; x\n"
        );
        assert!(render("{{ 'x'|comment('lisp') }}").is_err());
    }

    #[test]
    fn regex_filters_and_tests_speak_python() {
        assert_eq!(
            ok(r#"{{ 'port=80'|regex_replace('port=(\\d+)', 'listen \\1') }}"#),
            "listen 80"
        );
        assert_eq!(
            ok(r#"{{ 'a-b'|regex_replace('(?P<x>a)', '\\g<x>\\g<x>$') }}"#),
            "aa$-b"
        );
        assert_eq!(
            ok("{{ 'ABC'|regex_replace('b', 'x', ignorecase=true) }}"),
            "AxC"
        );
        assert_eq!(ok("{{ 'v1.2 v3.4'|regex_search('v[0-9.]+') }}"), "v1.2");
        assert_eq!(ok("{{ 'none'|regex_search('x') is none }}"), "True");
        assert_eq!(
            ok(r#"{{ 'a=1 b=2'|regex_findall('(\\w)=\\d') }}"#),
            "['a', 'b']"
        );
        assert_eq!(ok("{{ ['ab', 'ba']|select('match', 'a')|list }}"), "['ab']");
        assert_eq!(
            ok("{{ ['ab', 'ba']|select('search', 'a$')|list }}"),
            "['ba']"
        );
        assert_eq!(ok("{{ 'ab' is regex('b', match_type='match') }}"), "False");
        let err = render("{{ 'x'|regex_replace('(', '') }}").expect_err("bad regex");
        assert!(err.to_string().contains("is not valid"), "{err}");
    }

    #[test]
    fn json_is_pythons() {
        assert_eq!(
            ok("{{ {'b': [1, 'é'], 'a': none}|to_json }}"),
            r#"{"a": null, "b": [1, "\u00e9"]}"#
        );
        assert_eq!(
            ok("{{ {'b': [1, 2], 'a': {}}|to_nice_json }}"),
            "{\n    \"a\": {},\n    \"b\": [\n        1,\n        2\n    ]\n}"
        );
        assert_eq!(ok("{{ [true]|to_nice_json(indent=2) }}"), "[\n  true\n]");
    }

    #[test]
    fn versions_compare_loosely_by_default() {
        assert_eq!(ok("{{ '1.10' is version('1.9', '>') }}"), "True");
        assert_eq!(ok("{{ '9.4' is version('9.4', 'eq') }}"), "True");
        assert_eq!(ok("{{ '2.0rc1' is version('2.0', 'gt') }}"), "True");
        assert_eq!(ok("{{ '8' is version_compare('9', '<') }}"), "True");
        assert!(render("{{ '1.x' is version('1.0', 'gt', strict=true) }}").is_err());
        assert!(render("{{ '1' is version('1', 'about') }}").is_err());
    }

    #[test]
    fn paths_quotes_base64_items_and_methods() {
        assert_eq!(
            ok(
                "{{ '/etc/ssh/sshd_config'|basename }} {{ '/etc/ssh/sshd_config'|dirname }} {{ '/x'|dirname }}"
            ),
            "sshd_config /etc/ssh /"
        );
        assert_eq!(
            ok("{{ \"it's\"|quote }} {{ 'plain'|quote }}"),
            r#"'it'"'"'s' plain"#
        );
        assert_eq!(ok("{{ 'hi'|b64encode }} {{ 'aGk='|b64decode }}"), "aGk= hi");
        assert_eq!(
            ok("{{ {'a': 1}|dict2items }}"),
            "[{'key': 'a', 'value': 1}]"
        );
        assert_eq!(
            ok("{{ [{'key': 'a', 'value': 1}]|items2dict }}"),
            "{'a': 1}"
        );
        assert_eq!(
            ok("{{ [1, [2, [3]]]|flatten }} {{ [1, [2, [3]]]|flatten(1) }}"),
            "[1, 2, 3] [1, 2, [3]]"
        );
        assert_eq!(ok("{% for k, v in m.items() %}{{ k }}{% endfor %}"), "ab");
        assert_eq!(
            ok("{{ 'abc'.startswith('a') }} {{ 'a,b'.split(',') }}"),
            "True ['a', 'b']"
        );
        assert_eq!(ok("{{ nothing|d('x') }}"), "x");
        assert!(render("{{ nothing|mandatory }}").is_err());
    }
}
