//! `[[line]]`: one line of a file something else owns, present (replacing
//! the last line its `match` finds, else inserted after `after` or before
//! `before`) or absent, as Ansible's `lineinfile` and Puppet's `file_line`.

use serde::{Deserialize, Serialize};

use crate::desired::parser::Parser;
use crate::desired::schema::Fields;
use crate::desired::textedit::{self, Edited, LineEdit, TextEdit};

/// A line of a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Line(pub Edited);

/// The keys its tables take.
const KEYS: &[&str] = &[
    "name", "path", "line", "match", "after", "before", "state", "create", "validate", "prune",
];

edit_kind!(Line, KEYS, line_edit);

/// The line's own keys, as the edit it makes; `None` when they had errors.
fn line_edit(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<TextEdit> {
    let present = textedit::present(p, f);
    let pattern = textedit::pattern(p, f, "match");
    let at = textedit::anchors(p, f);
    let line = f.string(p.cx, "line");
    if let Some(l) = &line
        && l.get_ref().contains('\n')
    {
        p.cx.error(
            &l.span(),
            "`line` is one line: for several, use a [[block]]",
        );
    }
    let line = match (line, present, &pattern) {
        (Some(l), ..) => Some(l.into_inner()),
        // Absent by its pattern: the lines it matches go.
        (None, Some(false), Some(Some(_))) => Some(String::new()),
        (None, Some(false), _) => {
            p.cx.error(
                &f.span(),
                "[[line]] with `state = \"absent\"` needs `line` or `match`",
            );
            None
        }
        (None, ..) => {
            p.cx.error(&f.span(), "[[line]] is missing the required key `line`");
            None
        }
    };
    (|| {
        Some(TextEdit::Line(LineEdit {
            line: line?,
            pattern: pattern?,
            at: at?,
            present: present?,
        }))
    })()
}
