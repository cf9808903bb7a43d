//! `<state_dir>/secret-contents.json`: the SHA-256 of every content that
//! was secret in a desired state that converged. A file found holding one
//! of them later is never shown (the old side of a later generation's
//! diff, of a pruning's), whatever the desired state then says of it:
//! sensitivity follows the bytes, not the declaration.

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::json::{read_json, write_json};
use crate::plan::SecretContents;

const FILE: &str = "secret-contents.json";

/// Hashes kept, the newest: each secret's rotation adds one, and the
/// oldest are long replaced on the host.
const KEPT: usize = 10_000;

#[derive(Default, Serialize, Deserialize)]
struct Stored {
    /// Hex SHA-256, oldest first.
    sha256: Vec<String>,
}

/// What the state directory remembers; unknown (every content secret) when
/// the file cannot be read.
pub(super) fn load(state_dir: &Path) -> SecretContents {
    match read_json::<Stored>(&state_dir.join(FILE)) {
        Ok(stored) => {
            SecretContents::new(stored.unwrap_or_default().sha256.iter().filter_map(|h| {
                let mut sha = [0u8; 32];
                hex::decode_to_slice(h, &mut sha).ok().map(|()| sha)
            }))
        }
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "cannot read which contents were secret: no current content is shown in a diff"
            );
            SecretContents::unknown()
        }
    }
}

/// Adds `hashes` to what is remembered; writes only when one is new.
pub(super) fn remember(state_dir: &Path, hashes: &[[u8; 32]]) -> Result<()> {
    if hashes.is_empty() {
        return Ok(());
    }
    // A file that cannot be read is replaced: what it held is lost, but
    // from now on the new secrets are remembered.
    let mut stored = read_json::<Stored>(&state_dir.join(FILE))
        .ok()
        .flatten()
        .unwrap_or_default();
    let mut added = false;
    for sha in hashes {
        let h = hex::encode(sha);
        if !stored.sha256.contains(&h) {
            stored.sha256.push(h);
            added = true;
        }
    }
    if !added {
        return Ok(());
    }
    let over = stored.sha256.len().saturating_sub(KEPT);
    stored.sha256.drain(..over);
    write_json(state_dir, FILE, &stored)
}
