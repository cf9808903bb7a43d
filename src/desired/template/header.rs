//! Ansible's `#jinja2:` first line, which sets the template's whitespace
//! handling (`#jinja2: trim_blocks: False, lstrip_blocks: True`).
//!
//! Roles carried over from Ansible rely on it: without it a template that
//! sets `lstrip_blocks` renders with stray indentation. As in Ansible, the
//! header line is not part of the output and its values are Python
//! literals (`True`, `False`, quoted strings).

use minijinja::syntax::{SyntaxConfig, SyntaxConfigBuilder};

/// What starts a header line.
const PREFIX: &str = "#jinja2:";

/// The settings a template's first line may override, with Ansible's
/// defaults for the template module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Header {
    /// Whether the text had a header line (lines then count from the next).
    pub present: bool,
    trim_blocks: bool,
    lstrip_blocks: bool,
    keep_trailing_newline: bool,
    delimiters: Delimiters,
}

/// Overridden delimiters: `(start, end)` pairs, `None` when left as is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Delimiters {
    variable: (Option<String>, Option<String>),
    block: (Option<String>, Option<String>),
    comment: (Option<String>, Option<String>),
}

impl Default for Header {
    fn default() -> Self {
        Self {
            present: false,
            trim_blocks: true,
            lstrip_blocks: false,
            keep_trailing_newline: true,
            delimiters: Delimiters::default(),
        }
    }
}

impl Header {
    /// Splits the header line (if any) from the template text.
    pub(super) fn read(text: &str) -> Result<(Self, &str), String> {
        let mut header = Self::default();
        let Some(rest) = text.strip_prefix(PREFIX) else {
            return Ok((header, text));
        };
        let (line, body) = rest.split_once('\n').unwrap_or((rest, ""));
        header.present = true;
        for pair in line.trim_end_matches('\r').split(',') {
            let Some((key, value)) = pair.split_once(':') else {
                return Err(format!(
                    "template header: '{}' is not 'setting: value'",
                    pair.trim()
                ));
            };
            header.set(key.trim(), value.trim())?;
        }
        Ok((header, body))
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let d = &mut self.delimiters;
        let slot = match key {
            "trim_blocks" => return flag(key, value).map(|v| self.trim_blocks = v),
            "lstrip_blocks" => return flag(key, value).map(|v| self.lstrip_blocks = v),
            "keep_trailing_newline" => {
                return flag(key, value).map(|v| self.keep_trailing_newline = v);
            }
            // Templates here are written with "\n"; a host's files are too.
            "newline_sequence" if string(key, value)? == "\n" => return Ok(()),
            "variable_start_string" => &mut d.variable.0,
            "variable_end_string" => &mut d.variable.1,
            "block_start_string" => &mut d.block.0,
            "block_end_string" => &mut d.block.1,
            "comment_start_string" => &mut d.comment.0,
            "comment_end_string" => &mut d.comment.1,
            _ => {
                return Err(format!(
                    "template header: '{key}' is not a setting a template can change here \
                     (trim_blocks, lstrip_blocks, keep_trailing_newline, \
                     variable_/block_/comment_start_string and _end_string)"
                ));
            }
        };
        *slot = Some(string(key, value)?);
        Ok(())
    }

    /// The syntax this header asks for.
    pub(super) fn syntax(&self) -> Result<SyntaxConfig, minijinja::Error> {
        let defaults = SyntaxConfig::default();
        let mut b: SyntaxConfigBuilder = SyntaxConfig::builder();
        b.trim_blocks(self.trim_blocks)
            .lstrip_blocks(self.lstrip_blocks)
            .keep_trailing_newline(self.keep_trailing_newline);
        let pick = |over: &(Option<String>, Option<String>), (s, e): (&str, &str)| {
            (
                over.0.clone().unwrap_or_else(|| s.to_owned()),
                over.1.clone().unwrap_or_else(|| e.to_owned()),
            )
        };
        let d = &self.delimiters;
        let (s, e) = pick(&d.variable, defaults.variable_delimiters());
        b.variable_delimiters(s, e);
        let (s, e) = pick(&d.block, defaults.block_delimiters());
        b.block_delimiters(s, e);
        let (s, e) = pick(&d.comment, defaults.comment_delimiters());
        b.comment_delimiters(s, e);
        b.build()
    }
}

/// A Python boolean literal (Ansible evaluates the value with
/// `ast.literal_eval`; lower case is accepted as people write it).
fn flag(key: &str, value: &str) -> Result<bool, String> {
    match value.trim_matches(|c| c == '"' || c == '\'') {
        "True" | "true" => Ok(true),
        "False" | "false" => Ok(false),
        _ => Err(format!(
            "template header: {key} must be True or False, not '{value}'"
        )),
    }
}

/// A quoted Python string literal, with `\n` the only escape a header
/// needs.
fn string(key: &str, value: &str) -> Result<String, String> {
    let inner = ['"', '\'']
        .iter()
        .find_map(|q| value.strip_prefix(*q)?.strip_suffix(*q))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("template header: {key} must be a quoted string, not '{value}'"))?;
    Ok(inner.replace("\\n", "\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_header_keeps_the_text_and_the_defaults() {
        let (h, body) = Header::read("a {{ b }}\n").expect("reads");
        assert_eq!(h, Header::default());
        assert_eq!(body, "a {{ b }}\n");
    }

    #[test]
    fn a_header_is_read_and_cut_from_the_text() {
        let (h, body) = Header::read("#jinja2: trim_blocks: False, lstrip_blocks: \"True\"\nx\n")
            .expect("reads");
        assert!(h.present);
        assert!(!h.trim_blocks);
        assert!(h.lstrip_blocks);
        assert!(h.keep_trailing_newline);
        assert_eq!(body, "x\n");
        let (h, _) = Header::read("#jinja2:variable_start_string:'[%', variable_end_string:'%]'\n")
            .expect("reads");
        let syntax = h.syntax().expect("builds");
        assert_eq!(syntax.variable_delimiters(), ("[%", "%]"));
        assert_eq!(syntax.block_delimiters(), ("{%", "%}"));
    }

    #[test]
    fn a_bad_header_says_what_is_wrong() {
        for (text, want) in [
            ("#jinja2: trim_blocks\n", "is not 'setting: value'"),
            ("#jinja2: trim_blocks: maybe\n", "must be True or False"),
            (
                "#jinja2: autoescape: True\n",
                "'autoescape' is not a setting",
            ),
            (
                "#jinja2: block_start_string: [\n",
                "must be a quoted string",
            ),
        ] {
            let err = Header::read(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
