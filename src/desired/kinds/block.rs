//! `[[block]]`: lines of a file something else owns, kept between two
//! marker lines, as Ansible's `blockinfile`.

use serde::{Deserialize, Serialize};

use crate::desired::parser::Parser;
use crate::desired::schema::Fields;
use crate::desired::textedit::{self, BlockEdit, Edited, TextEdit};

/// The marker lines unless `marker` says otherwise; `{mark}` is `BEGIN`
/// or `END`, `{name}` the block's name.
const MARKER: &str = "# {mark} DRIFTLESS MANAGED BLOCK {name}";

/// A block of lines in a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Block(pub Edited);

/// The keys its tables take.
const KEYS: &[&str] = &[
    "name", "path", "block", "marker", "after", "before", "state", "create", "validate", "prune",
];

edit_kind!(Block, KEYS, block_edit);

/// The block's own keys, as the edit it makes; `None` when they had errors.
fn block_edit(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<TextEdit> {
    let present = textedit::present(p, f);
    let at = textedit::anchors(p, f);
    let block = match (f.string(p.cx, "block"), present) {
        (Some(b), _) => Some(b.into_inner()),
        (None, Some(false)) => Some(String::new()),
        (None, _) => {
            p.cx.error(&f.span(), "[[block]] is missing the required key `block`");
            None
        }
    };
    let name = f.string(p.cx, "name").map(|n| n.into_inner());
    let marker = match f.string(p.cx, "marker") {
        Some(m) if !m.get_ref().contains("{mark}") || m.get_ref().contains('\n') => {
            p.cx.error(
                &m.span(),
                "`marker` is one line with `{mark}` in it (BEGIN and END), as \"# {mark} managed by driftless\"",
            );
            None
        }
        Some(m) => Some(m.into_inner()),
        None => Some(MARKER.to_owned()),
    };
    (|| {
        let marker = marker?.replace("{name}", name.as_deref().unwrap_or_default());
        Some(TextEdit::Block(BlockEdit {
            begin: marker.replace("{mark}", "BEGIN"),
            end: marker.replace("{mark}", "END"),
            block: block?,
            at: at?,
            present: present?,
        }))
    })()
}
