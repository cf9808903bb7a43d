//! `<state_dir>/desired-cache.json`: the desired state loaded last, under
//! the key of everything its load depended on (the commit, the host, the
//! facts its templates read, the loader's options and version).
//!
//! Every tick of the daemon converges, mostly the commit it converged
//! last. With this, an unchanged commit is not read at all (no tree, no
//! blob, no template): the cache gives the resources and each file's
//! content by hash, and only the files that are to change have their bytes
//! read back, from the object store. It is a cache: a miss or an unreadable
//! file means a load from the source, never an error.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::json::{read_json, write_json};
use super::lastgood::{attach_contents, store_contents};
use super::objects::Objects;
use crate::desired::DesiredState;

const FILE: &str = "desired-cache.json";

#[derive(Deserialize)]
struct Stored {
    key: String,
    desired: DesiredState,
    /// File contents by path, in the object store.
    contents: BTreeMap<String, String>,
    /// The source paths the load looked at, for a source that is not a
    /// commit (a directory): what its stamp is taken of again.
    #[serde(default)]
    paths: Vec<String>,
}

/// [`Stored`] as written, borrowed.
#[derive(Serialize)]
struct StoredRef<'a> {
    key: &'a str,
    desired: &'a DesiredState,
    contents: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    paths: &'a [String],
}

/// The desired state stored, its contents by hash, when `key_of` it (and
/// the source paths it was loaded from) is the key it was stored under.
/// The key depends on the stored state itself: on the facts its templates
/// read, which only its load knew. `key_of` says `None` when it cannot
/// tell (a miss).
pub(super) fn load(
    state_dir: &Path,
    key_of: impl FnOnce(&DesiredState, &[String]) -> Option<String>,
) -> Option<DesiredState> {
    let mut stored = read_json::<Stored>(&state_dir.join(FILE)).ok()??;
    if Some(stored.key) != key_of(&stored.desired, &stored.paths) {
        return None;
    }
    attach_contents(&mut stored.desired, &stored.contents).ok()?;
    Some(stored.desired)
}

/// Stores `desired` under `key`: its contents into the object store
/// (batched; what is there already is not written again), then the record.
pub(super) fn save(
    state_dir: &Path,
    objects: &Objects,
    key: &str,
    paths: &[String],
    desired: &DesiredState,
) -> Result<()> {
    let contents = store_contents(objects, desired)?;
    write_json(
        state_dir,
        FILE,
        &StoredRef {
            key,
            desired,
            contents: &contents,
            paths,
        },
    )
}

/// Object ids the cache needs (for garbage collection).
pub(super) fn objects(state_dir: &Path) -> Vec<String> {
    read_json::<Stored>(&state_dir.join(FILE))
        .ok()
        .flatten()
        .map(|s| s.contents.into_values().collect())
        .unwrap_or_default()
}
