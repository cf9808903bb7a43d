//! `<state_dir>/last-good.json`: the last desired state that converged and
//! passed its checks, kept so that a host whose newest commit is quarantined
//! keeps converging (healing drift) towards it, with or without git.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::json::{read_json, write_json};
use super::objects::Objects;
use crate::desired::DesiredState;
use crate::desired::model::Content;

const FILE: &str = "last-good.json";

#[derive(Serialize, Deserialize)]
struct Stored {
    key: String,
    source: String,
    desired: DesiredState,
    /// File contents by path, in the object store.
    contents: BTreeMap<String, String>,
}

/// [`Stored`] as written: borrowed, so that saving does not copy every
/// file's content.
#[derive(Serialize)]
struct StoredRef<'a> {
    key: &'a str,
    source: &'a str,
    desired: &'a DesiredState,
    contents: &'a BTreeMap<String, String>,
}

/// A stored last-good state.
pub struct LastGood {
    /// Its key.
    pub key: String,
    /// Where it came from.
    pub source: String,
    /// The desired state, with file contents.
    pub desired: DesiredState,
}

/// Stores `desired` as the last good state.
pub(super) fn save(
    state_dir: &Path,
    objects: &Objects,
    key: &str,
    source: &str,
    desired: &DesiredState,
) -> Result<()> {
    let contents = store_contents(objects, desired)?;
    let stored = StoredRef {
        key,
        source,
        desired,
        contents: &contents,
    };
    write_json(state_dir, FILE, &stored)
}

/// Loads the last good state, if any.
pub(super) fn load(state_dir: &Path) -> Result<Option<LastGood>> {
    let Some(mut stored) = read_json::<Stored>(&state_dir.join(FILE))? else {
        return Ok(None);
    };
    attach_contents(&mut stored.desired, &stored.contents)?;
    Ok(Some(LastGood {
        key: stored.key,
        source: stored.source,
        desired: stored.desired,
    }))
}

/// Puts the contents of `desired`'s files into the object store (batched;
/// what is there already is not written again); returns the object id of
/// each by path, as [`attach_contents`] reads them back.
pub(super) fn store_contents(
    objects: &Objects,
    desired: &DesiredState,
) -> Result<BTreeMap<String, String>> {
    let files: Vec<(String, &Content, bool)> = desired
        .resources
        .iter()
        .filter_map(|d| {
            let content = d.resource.stored_content()?;
            // A download the host already held was never fetched: it is
            // recorded by hash, and fetched again if it is ever needed.
            let elsewhere = d.resource.source_url().is_some() && content.bytes().is_none();
            Some((d.resource.path()?, content, elsewhere))
        })
        .collect();
    let ids = objects.put_all(
        files
            .iter()
            .filter(|(_, _, elsewhere)| !elsewhere)
            .map(|(_, c, _)| (c.sha256(), c.bytes())),
    )?;
    let mut ids = ids.into_iter();
    let mut out = BTreeMap::new();
    for (path, content, elsewhere) in files {
        let id = if elsewhere {
            hex::encode(content.sha256())
        } else {
            ids.next()
                .with_context(|| format!("failed to store the content of {path}"))?
        };
        out.insert(path, id);
    }
    Ok(out)
}

/// Gives each file of a desired state read back from the state directory
/// its content by hash (`contents`: object id by path); the bytes stay in
/// the object store until a plan needs them.
pub(super) fn attach_contents(
    desired: &mut DesiredState,
    contents: &BTreeMap<String, String>,
) -> Result<()> {
    for d in &mut desired.resources {
        let Some(path) = d.resource.path() else {
            continue;
        };
        if let Some(content) = d.resource.stored_content_mut() {
            let id = contents
                .get(&path)
                .with_context(|| format!("the stored state lacks the content of {path}"))?;
            *content = Content::stored(Objects::parse_id(id)?);
        }
    }
    Ok(())
}

/// Object ids the stored state needs (for garbage collection).
pub(super) fn objects(state_dir: &Path) -> Result<Vec<String>> {
    Ok(read_json::<Stored>(&state_dir.join(FILE))?
        .map(|s| s.contents.into_values().collect())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::model::Resource;
    use crate::desired::{Facts, LoadOptions, MemTree};

    fn desired(content: &str) -> DesiredState {
        let t = MemTree::new().file(
            "hosts/h.toml",
            format!("[[file]]\npath = '/etc/x'\ncontent = '{content}'\n"),
        );
        crate::desired::load(&t, "h", &Facts::default(), &LoadOptions::default()).expect("valid")
    }

    #[test]
    fn round_trips_with_contents_and_keys_follow_content() {
        let d = tempfile::tempdir().expect("tempdir");
        let store = crate::store::Store::new(d.path());
        let a = desired("one");
        store
            .save_last_good(&a.content_key(), "directory x", &a)
            .expect("save");
        let back = store.load_last_good().expect("load").expect("some");
        assert_eq!(back.key, a.content_key());
        // Read back by hash; the bytes come from the object store.
        let Resource::File(f) = &back.desired.resources[0].resource else {
            panic!("not a file: {:?}", back.desired.resources[0]);
        };
        assert_eq!(f.content.bytes(), None);
        assert_eq!(store.content(f.content.sha256()).expect("content"), b"one");
        assert_eq!(a.content_key(), desired("one").content_key());
        assert_ne!(a.content_key(), desired("two").content_key());
        assert_eq!(objects(d.path()).expect("objects").len(), 1);
    }
}
