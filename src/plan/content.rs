//! Comparing contents: the hash every observation and store uses, and the
//! text diff a plan shows.

/// Text diffs are shown for files up to this size.
const DIFF_MAX: usize = 256 * 1024;

/// The contents (by SHA-256) that were secret when driftless applied them,
/// as the state directory remembers them: a host file holding one is never
/// shown (no diff of a later generation, of pruning), whatever the desired
/// state says of that file now. Sensitivity follows the bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretContents {
    hashes: std::collections::BTreeSet<[u8; 32]>,
    /// The memory could not be read: every content counts as secret.
    unknown: bool,
}

impl SecretContents {
    /// The contents with these hashes were secret.
    pub fn new(hashes: impl IntoIterator<Item = [u8; 32]>) -> Self {
        Self {
            hashes: hashes.into_iter().collect(),
            unknown: false,
        }
    }

    /// Nothing is known: every content counts as secret (fail closed).
    pub fn unknown() -> Self {
        Self {
            hashes: std::collections::BTreeSet::new(),
            unknown: true,
        }
    }

    /// Whether a content with this hash was ever secret (or may have been).
    pub fn contains(&self, sha256: &[u8; 32]) -> bool {
        self.unknown || self.hashes.contains(sha256)
    }
}

/// SHA-256 of bytes.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// A unified diff of two texts, or a one-line note for binary or large
/// content; `None` when the old content is unknown.
pub(super) fn text_diff(path: &str, old: Option<&[u8]>, new: &[u8]) -> Option<String> {
    let old = old?;
    let is_text = |b: &[u8]| !b.contains(&0) && std::str::from_utf8(b).is_ok();
    if !is_text(old) || !is_text(new) {
        return Some(format!(
            "binary content differs ({} -> {} bytes)\n",
            old.len(),
            new.len()
        ));
    }
    if old.len() > DIFF_MAX || new.len() > DIFF_MAX {
        return Some(format!(
            "content differs ({} -> {} bytes; too large to show)\n",
            old.len(),
            new.len()
        ));
    }
    let (old, new) = (String::from_utf8_lossy(old), String::from_utf8_lossy(new));
    let diff = similar::TextDiff::from_lines(old.as_ref(), new.as_ref());
    Some(
        diff.unified_diff()
            .context_radius(3)
            .header(&format!("{path} (current)"), &format!("{path} (desired)"))
            .to_string(),
    )
}
