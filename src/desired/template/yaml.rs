//! Ansible's `to_yaml` and `to_nice_yaml`, byte for byte as PyYAML's
//! emitter writes them (`yaml.dump(data, allow_unicode=True, ...)`; nice:
//! `indent=4, default_flow_style=False`), so a role's rendered config is
//! the same file it was under Ansible: keys sorted, strings plain when
//! YAML would read them back as the same string and quoted otherwise
//! (`'yes'`, `'123'`, `''`), long plain strings folded at the width (80),
//! sequences in a mapping not indented, `-   key:` under `indent=4`.
//!
//! The emitter is a transcription of the parts of PyYAML's `Emitter` that
//! `dump` of plain data reaches (no tags, anchors, or complex keys).

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};

/// Adds `to_yaml` and `to_nice_yaml` to `env`.
pub(super) fn add_to(env: &mut Environment<'_>) {
    env.add_filter("to_yaml", to_yaml);
    env.add_filter("to_nice_yaml", to_nice_yaml);
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

/// `to_yaml`: flow style for collections of scalars, indent 2.
fn to_yaml(v: Value, kw: Kwargs) -> Result<String, Error> {
    dump(&v, &kw, 2, None)
}

/// `to_nice_yaml`: block style, indent 4.
fn to_nice_yaml(v: Value, kw: Kwargs) -> Result<String, Error> {
    dump(&v, &kw, 4, Some(false))
}

fn dump(v: &Value, kw: &Kwargs, indent: usize, flow: Option<bool>) -> Result<String, Error> {
    let indent = kw.get::<Option<usize>>("indent")?.unwrap_or(indent);
    // PyYAML's own rule keeps an indent from 2 to 9; the width only folds.
    let width = kw.get::<Option<usize>>("width")?.unwrap_or(80);
    let flow = match kw.get::<Option<bool>>("default_flow_style")? {
        Some(f) => Some(f),
        None if kw.has("default_flow_style") => None,
        None => flow,
    };
    kw.assert_all_used()?;
    let node = Node::of(v, flow)?;
    let best_indent = if (2..10).contains(&indent) { indent } else { 2 };
    let mut e = Emitter {
        out: String::new(),
        column: 0,
        whitespace: true,
        indention: true,
        open_ended: false,
        indent: None,
        indents: Vec::new(),
        flow_level: 0,
        best_indent,
        best_width: if width > best_indent * 2 { width } else { 80 },
        root: true,
    };
    e.node(&node, Context::Root)?;
    e.write_indent();
    if e.open_ended {
        e.write_indicator("...", true, false, false);
        e.write_indent();
    }
    Ok(e.out)
}

/// A value as PyYAML's representer makes it: scalars with their text and
/// whether they may be plain, collections with their flow style.
enum Node {
    Scalar {
        text: String,
        implicit: bool,
    },
    Seq {
        items: Vec<Node>,
        flow: bool,
    },
    Map {
        pairs: Vec<(Node, Node)>,
        flow: bool,
    },
}

impl Node {
    fn of(v: &Value, default_flow: Option<bool>) -> Result<Node, Error> {
        // null, booleans and numbers read back as themselves written plain.
        let scalar = |text: String| Node::Scalar {
            text,
            implicit: true,
        };
        Ok(match v.kind() {
            ValueKind::Undefined => return Err(invalid("to_yaml: the value is undefined")),
            ValueKind::None => scalar("null".to_owned()),
            ValueKind::Bool => scalar(if v.is_true() { "true" } else { "false" }.to_owned()),
            ValueKind::Number => scalar(number(v)),
            ValueKind::String => {
                let text = v.as_str().unwrap_or_default().to_owned();
                let implicit = resolves_as_string(&text);
                Node::Scalar { text, implicit }
            }
            ValueKind::Seq | ValueKind::Iterable => {
                let items = v
                    .try_iter()?
                    .map(|x| Node::of(&x, default_flow))
                    .collect::<Result<Vec<_>, _>>()?;
                let flow = default_flow.unwrap_or_else(|| items.iter().all(Node::is_scalar));
                Node::Seq { items, flow }
            }
            ValueKind::Map => {
                let mut keys: Vec<Value> = v.try_iter()?.collect();
                sort_keys(&mut keys)?;
                let mut pairs = Vec::with_capacity(keys.len());
                for k in keys {
                    let value = v.get_item(&k)?;
                    pairs.push((Node::of(&k, default_flow)?, Node::of(&value, default_flow)?));
                }
                let flow = default_flow
                    .unwrap_or_else(|| pairs.iter().all(|(k, v)| k.is_scalar() && v.is_scalar()));
                Node::Map { pairs, flow }
            }
            other => return Err(invalid(format!("to_yaml: cannot write a {other}"))),
        })
    }

    fn is_scalar(&self) -> bool {
        matches!(self, Node::Scalar { .. })
    }

    /// PyYAML's `check_simple_key`: a short one-line scalar, or an empty
    /// collection.
    fn is_simple_key(&self) -> bool {
        match self {
            Node::Scalar { text, .. } => {
                !text.is_empty() && text.chars().count() < 128 && !text.chars().any(is_break)
            }
            Node::Seq { items, .. } => items.is_empty(),
            Node::Map { pairs, .. } => pairs.is_empty(),
        }
    }
}

/// Keys as Python sorts them: strings by code point, numbers by value;
/// a mix is an error, as in Python.
fn sort_keys(keys: &mut [Value]) -> Result<(), Error> {
    if keys.iter().all(|k| k.kind() == ValueKind::String) {
        keys.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    } else if keys.iter().all(|k| k.kind() == ValueKind::Number) {
        keys.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    } else {
        return Err(invalid(
            "to_yaml: a map whose keys are not all strings or all numbers",
        ));
    }
    Ok(())
}

/// A number as PyYAML writes it: an integer as is; a float as Python's
/// `repr`, lower case, with `.0` before an exponent; `.inf`, `.nan`.
fn number(v: &Value) -> String {
    if v.is_integer() {
        return v.to_string();
    }
    let Ok(f) = f64::try_from(v.clone()) else {
        return v.to_string();
    };
    if f.is_nan() {
        return ".nan".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.to_owned();
    }
    let repr = python_float_repr(f);
    if !repr.contains('.') && repr.contains('e') {
        repr.replacen('e', ".0e", 1)
    } else {
        repr
    }
}

/// Python's `repr(float)`: the shortest digits that read back, in
/// positional notation for exponents from -4 to 15, else scientific.
fn python_float_repr(f: f64) -> String {
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let s = format!("{f}");
        if s.contains('.') { s } else { format!("{s}.0") }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// Whether YAML reads `text`, written plain, back as a string (PyYAML's
/// implicit resolvers for bool, int, float, null, timestamp, merge and
/// value do not match it).
fn resolves_as_string(text: &str) -> bool {
    use std::sync::OnceLock;
    static OTHER: OnceLock<regex::Regex> = OnceLock::new();
    let other = OTHER.get_or_init(|| {
        regex::Regex::new(concat!(
            r"^(?:",
            r"yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF",
            r"|[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?",
            r"|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?",
            r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*",
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
            r"|[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+",
            r"|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+",
            r"|<<|~|null|Null|NULL|",
            r"|[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]",
            r"|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?",
            r"|=",
            r")$"
        ))
        .unwrap_or_else(|e| unreachable!("a fixed pattern: {e}"))
    });
    !other.is_match(text)
}

/// What PyYAML's `analyze_scalar` finds out about a string.
struct Analysis {
    empty: bool,
    multiline: bool,
    allow_flow_plain: bool,
    allow_block_plain: bool,
    allow_single_quoted: bool,
}

fn is_break(c: char) -> bool {
    matches!(c, '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_space_or_end(c: Option<char>) -> bool {
    matches!(
        c,
        None | Some('\0' | ' ' | '\t' | '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
    )
}

fn analyze(text: &str) -> Analysis {
    if text.is_empty() {
        return Analysis {
            empty: true,
            multiline: false,
            allow_flow_plain: false,
            allow_block_plain: true,
            allow_single_quoted: true,
        };
    }
    let chars: Vec<char> = text.chars().collect();
    let (mut block_ind, mut flow_ind) = (false, false);
    if text.starts_with("---") || text.starts_with("...") {
        (block_ind, flow_ind) = (true, true);
    }
    let (mut line_breaks, mut special) = (false, false);
    let (mut leading_space, mut leading_break) = (false, false);
    let (mut trailing_space, mut trailing_break) = (false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut prev_space, mut prev_break) = (false, false);
    let mut preceded_by_ws = true;
    let mut followed_by_ws = chars.len() == 1 || is_space_or_end(chars.get(1).copied());
    let last = chars.len() - 1;
    for (i, &c) in chars.iter().enumerate() {
        let (flow, block) = indicators(i == 0, c, preceded_by_ws, followed_by_ws);
        flow_ind |= flow;
        block_ind |= block;
        if is_break(c) {
            line_breaks = true;
        }
        if !(c == '\n' || (' '..='~').contains(&c)) {
            let printable = c == '\u{85}'
                || ('\u{A0}'..='\u{D7FF}').contains(&c)
                || ('\u{E000}'..='\u{FFFD}').contains(&c)
                || ('\u{10000}'..'\u{10FFFF}').contains(&c);
            if !printable || c == '\u{FEFF}' {
                special = true;
            }
        }
        if c == ' ' {
            leading_space |= i == 0;
            trailing_space |= i == last;
            break_space |= prev_break;
            (prev_space, prev_break) = (true, false);
        } else if is_break(c) {
            leading_break |= i == 0;
            trailing_break |= i == last;
            space_break |= prev_space;
            (prev_space, prev_break) = (false, true);
        } else {
            (prev_space, prev_break) = (false, false);
        }
        preceded_by_ws = is_space_or_end(Some(c));
        followed_by_ws = i + 2 >= chars.len() || is_space_or_end(chars.get(i + 2).copied());
    }
    let mut a = Analysis {
        empty: false,
        multiline: line_breaks,
        allow_flow_plain: true,
        allow_block_plain: true,
        allow_single_quoted: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        (a.allow_flow_plain, a.allow_block_plain) = (false, false);
    }
    if break_space {
        (
            a.allow_flow_plain,
            a.allow_block_plain,
            a.allow_single_quoted,
        ) = (false, false, false);
    }
    if space_break || special {
        (
            a.allow_flow_plain,
            a.allow_block_plain,
            a.allow_single_quoted,
        ) = (false, false, false);
    }
    if line_breaks {
        (a.allow_flow_plain, a.allow_block_plain) = (false, false);
    }
    if flow_ind {
        a.allow_flow_plain = false;
    }
    if block_ind {
        a.allow_block_plain = false;
    }
    a
}

/// Whether `c` makes a plain scalar impossible in flow and in block
/// context, at the start of the text or inside it.
fn indicators(first: bool, c: char, preceded_by_ws: bool, followed_by_ws: bool) -> (bool, bool) {
    if first {
        match c {
            _ if "#,[]{}&*!|>'\"%@`".contains(c) => (true, true),
            '?' | ':' => (true, followed_by_ws),
            '-' if followed_by_ws => (true, true),
            _ => (false, false),
        }
    } else {
        match c {
            ',' | '?' | '[' | ']' | '{' | '}' => (true, false),
            ':' => (true, followed_by_ws),
            '#' if preceded_by_ws => (true, true),
            _ => (false, false),
        }
    }
}

/// Where a node is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Root,
    Sequence,
    MappingKey,
    MappingValue,
}

/// PyYAML's emitter state, for the events `dump` of plain data makes.
struct Emitter {
    out: String,
    column: usize,
    whitespace: bool,
    indention: bool,
    open_ended: bool,
    indent: Option<usize>,
    indents: Vec<Option<usize>>,
    flow_level: usize,
    best_indent: usize,
    best_width: usize,
    root: bool,
}

impl Emitter {
    fn write(&mut self, data: &str) {
        self.column += data.chars().count();
        self.out.push_str(data);
    }

    fn increase_indent(&mut self, flow: bool, indentless: bool) {
        self.indents.push(self.indent);
        self.indent = match self.indent {
            None if flow => Some(self.best_indent),
            None => Some(0),
            Some(i) if !indentless => Some(i + self.best_indent),
            same => same,
        };
    }

    fn pop_indent(&mut self) {
        self.indent = self.indents.pop().flatten();
    }

    fn write_indicator(&mut self, ind: &str, need_ws: bool, ws: bool, indention: bool) {
        let data = if self.whitespace || !need_ws {
            ind.to_owned()
        } else {
            format!(" {ind}")
        };
        self.whitespace = ws;
        self.indention = self.indention && indention;
        self.open_ended = false;
        self.write(&data);
    }

    fn write_indent(&mut self) {
        let indent = self.indent.unwrap_or(0);
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.write_line_break();
        }
        if self.column < indent {
            self.whitespace = true;
            let pad = " ".repeat(indent - self.column);
            self.write(&pad);
        }
    }

    fn write_line_break(&mut self) {
        self.whitespace = true;
        self.indention = true;
        self.out.push('\n');
        self.column = 0;
    }

    fn node(&mut self, n: &Node, cx: Context) -> Result<(), Error> {
        let was_root = std::mem::replace(&mut self.root, cx == Context::Root);
        match n {
            Node::Scalar { text, implicit } => {
                self.increase_indent(true, false);
                self.scalar(text, *implicit, cx == Context::MappingKey);
                self.pop_indent();
            }
            Node::Seq { items, flow } => {
                if self.flow_level > 0 || *flow || items.is_empty() {
                    self.flow_sequence(items)?;
                } else {
                    self.block_sequence(items, cx)?;
                }
            }
            Node::Map { pairs, flow } => {
                if self.flow_level > 0 || *flow || pairs.is_empty() {
                    self.flow_mapping(pairs)?;
                } else {
                    self.block_mapping(pairs)?;
                }
            }
        }
        self.root = was_root;
        Ok(())
    }

    fn block_sequence(&mut self, items: &[Node], cx: Context) -> Result<(), Error> {
        let indentless = cx == Context::MappingValue && !self.indention;
        self.increase_indent(false, indentless);
        for item in items {
            self.write_indent();
            self.write_indicator("-", true, false, true);
            self.node(item, Context::Sequence)?;
        }
        self.pop_indent();
        Ok(())
    }

    fn block_mapping(&mut self, pairs: &[(Node, Node)]) -> Result<(), Error> {
        self.increase_indent(false, false);
        for (k, v) in pairs {
            self.write_indent();
            if k.is_simple_key() {
                self.node(k, Context::MappingKey)?;
                self.write_indicator(":", false, false, false);
            } else {
                // A complex key: `? key` then `: value`.
                self.write_indicator("?", true, false, true);
                self.node(k, Context::MappingValue)?;
                self.write_indent();
                self.write_indicator(":", true, false, true);
            }
            self.node(v, Context::MappingValue)?;
        }
        self.pop_indent();
        Ok(())
    }

    fn flow_sequence(&mut self, items: &[Node]) -> Result<(), Error> {
        self.write_indicator("[", true, true, false);
        self.flow_level += 1;
        self.increase_indent(true, false);
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.write_indicator(",", false, false, false);
            }
            if self.column > self.best_width {
                self.write_indent();
            }
            self.node(item, Context::Sequence)?;
        }
        self.pop_indent();
        self.flow_level -= 1;
        self.write_indicator("]", false, false, false);
        Ok(())
    }

    fn flow_mapping(&mut self, pairs: &[(Node, Node)]) -> Result<(), Error> {
        self.write_indicator("{", true, true, false);
        self.flow_level += 1;
        self.increase_indent(true, false);
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                self.write_indicator(",", false, false, false);
            }
            if self.column > self.best_width {
                self.write_indent();
            }
            if k.is_simple_key() {
                self.node(k, Context::MappingKey)?;
                self.write_indicator(":", false, false, false);
            } else {
                self.write_indicator("?", true, false, false);
                self.node(k, Context::MappingValue)?;
                if self.column > self.best_width {
                    self.write_indent();
                }
                self.write_indicator(":", true, false, false);
            }
            self.node(v, Context::MappingValue)?;
        }
        self.pop_indent();
        self.flow_level -= 1;
        self.write_indicator("}", false, false, false);
        Ok(())
    }

    /// PyYAML's `choose_scalar_style` and the writer it picks.
    fn scalar(&mut self, text: &str, implicit: bool, simple_key: bool) {
        let a = analyze(text);
        let plain_ok = if self.flow_level > 0 {
            a.allow_flow_plain
        } else {
            a.allow_block_plain
        };
        let split = !simple_key;
        if implicit && !(simple_key && (a.empty || a.multiline)) && plain_ok {
            self.write_plain(text, split);
        } else if a.allow_single_quoted && !(simple_key && a.multiline) {
            self.write_single_quoted(text, split);
        } else {
            self.write_double_quoted(text, split);
        }
    }

    fn write_plain(&mut self, text: &str, split: bool) {
        if self.root {
            self.open_ended = true;
        }
        if text.is_empty() {
            return;
        }
        if !self.whitespace {
            self.write(" ");
        }
        self.whitespace = false;
        self.indention = false;
        let chars: Vec<char> = text.chars().collect();
        let (mut spaces, mut start) = (false, 0);
        for end in 0..=chars.len() {
            let c = chars.get(end).copied();
            if spaces {
                if c != Some(' ') {
                    if start + 1 == end && self.column > self.best_width && split {
                        self.write_indent();
                        self.whitespace = false;
                        self.indention = false;
                    } else {
                        let data: String = chars[start..end].iter().collect();
                        self.write(&data);
                    }
                    start = end;
                }
            } else if c.is_none_or(|c| c == ' ') {
                let data: String = chars[start..end].iter().collect();
                self.write(&data);
                start = end;
            }
            spaces = c == Some(' ');
        }
    }

    fn write_single_quoted(&mut self, text: &str, split: bool) {
        self.write_indicator("'", true, false, false);
        let chars: Vec<char> = text.chars().collect();
        let (mut spaces, mut breaks, mut start) = (false, false, 0);
        for end in 0..=chars.len() {
            let c = chars.get(end).copied();
            if spaces {
                if c != Some(' ') {
                    if start + 1 == end
                        && self.column > self.best_width
                        && split
                        && start != 0
                        && end != chars.len()
                    {
                        self.write_indent();
                    } else {
                        let data: String = chars[start..end].iter().collect();
                        self.write(&data);
                    }
                    start = end;
                }
            } else if breaks {
                if c.is_none_or(|c| !is_break(c)) {
                    if chars[start] == '\n' {
                        self.write_line_break();
                    }
                    for &br in &chars[start..end] {
                        if br == '\n' {
                            self.write_line_break();
                        } else {
                            self.out.push(br);
                            self.column = 0;
                        }
                    }
                    self.write_indent();
                    start = end;
                }
            } else if c.is_none_or(|c| c == ' ' || is_break(c) || c == '\'') && start < end {
                let data: String = chars[start..end].iter().collect();
                self.write(&data);
                start = end;
            }
            if c == Some('\'') {
                self.write("''");
                start = end + 1;
            }
            if let Some(c) = c {
                spaces = c == ' ';
                breaks = is_break(c);
            }
        }
        self.write_indicator("'", false, false, false);
    }

    fn write_double_quoted(&mut self, text: &str, split: bool) {
        self.write_indicator("\"", true, false, false);
        let chars: Vec<char> = text.chars().collect();
        let mut start = 0;
        for end in 0..=chars.len() {
            let c = chars.get(end).copied();
            let plain_char = |c: char| {
                (' '..='~').contains(&c)
                    || ('\u{A0}'..='\u{D7FF}').contains(&c)
                    || ('\u{E000}'..='\u{FFFD}').contains(&c)
            };
            if c.is_none_or(|c| "\"\\\u{85}\u{2028}\u{2029}\u{FEFF}".contains(c) || !plain_char(c))
            {
                if start < end {
                    let data: String = chars[start..end].iter().collect();
                    self.write(&data);
                    start = end;
                }
                if let Some(c) = c {
                    let data = match escape(c) {
                        Some(e) => format!("\\{e}"),
                        None if (c as u32) <= 0xFF => format!("\\x{:02X}", c as u32),
                        None if (c as u32) <= 0xFFFF => format!("\\u{:04X}", c as u32),
                        None => format!("\\U{:08X}", c as u32),
                    };
                    self.write(&data);
                    start = end + 1;
                }
            }
            if 0 < end
                && end + 1 < chars.len()
                && (c == Some(' ') || start >= end)
                && (self.column + end) as isize - start as isize > self.best_width as isize
                && split
            {
                let mut data: String = chars[start.min(end)..end].iter().collect();
                data.push('\\');
                if start < end {
                    start = end;
                }
                self.write(&data);
                self.write_indent();
                self.whitespace = false;
                self.indention = false;
                if chars.get(start) == Some(&' ') {
                    self.write("\\");
                }
            }
        }
        self.write_indicator("\"", false, false, false);
    }
}

/// PyYAML's short escapes.
fn escape(c: char) -> Option<char> {
    Some(match c {
        '\0' => '0',
        '\x07' => 'a',
        '\x08' => 'b',
        '\t' => 't',
        '\n' => 'n',
        '\x0B' => 'v',
        '\x0C' => 'f',
        '\r' => 'r',
        '\x1B' => 'e',
        '"' => '"',
        '\\' => '\\',
        '\u{85}' => 'N',
        '\u{A0}' => '_',
        '\u{2028}' => 'L',
        '\u{2029}' => 'P',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    /// Every case PyYAML wrote (tests/fixtures/yaml/pyyaml.json, made by
    /// its gen.py): the same bytes, both filters.
    #[test]
    fn writes_what_pyyaml_writes() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/yaml/pyyaml.json"
        );
        let text = std::fs::read_to_string(path).expect("the recorded PyYAML output");
        let recorded: serde_json::Value = serde_json::from_str(&text).expect("json");
        let cases = recorded["cases"].as_array().expect("cases");
        assert!(cases.len() > 30);
        let mut env = minijinja::Environment::new();
        super::add_to(&mut env);
        let mut wrong = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            let v = minijinja::Value::from(minijinja::value::Serde(case["v"].clone()));
            for (key, filter) in [("nice", "to_nice_yaml"), ("plain", "to_yaml")] {
                let got = env
                    .render_str(
                        &format!("{{{{ v | {filter} }}}}"),
                        minijinja::context! { v => v.clone() },
                    )
                    .unwrap_or_else(|e| format!("error: {e}"));
                let want = case[key].as_str().expect("recorded text");
                if got != want {
                    wrong.push(format!("case {i}, {filter}:\nwant:\n{want}\ngot:\n{got}"));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn indent_and_width_are_as_ansible_passes_them() {
        let mut env = minijinja::Environment::new();
        super::add_to(&mut env);
        let ok = |t: &str| env.render_str(t, minijinja::context! {}).expect(t);
        assert_eq!(
            ok("{{ {'a': {'b': 1}} | to_nice_yaml(indent=2) }}"),
            "a:\n  b: 1\n"
        );
        let long = "{{ {'k': 'word ' * 30} | to_nice_yaml(width=1000) }}";
        assert_eq!(ok(long).lines().count(), 1);
        assert!(
            env.render_str("{{ x | to_yaml }}", minijinja::context! {})
                .is_err()
        );
    }
}
