//! Where the engine gets the bytes of a content known by its hash: the
//! object store, or, for a pinned download the store lacks, a fetch by
//! `source` (the one room that touches the network) into a partial file
//! of the state directory, checked, then moved into the store.
//!
//! Only contents the host lacks are asked for (`observe::hydrate`), so a
//! no-op never reaches this far and never touches the network. Used
//! before anything changes (planning) and by the plans a transaction
//! makes again mid-converge (a package may have replaced a downloaded file
//! that was in place, whose bytes were then never fetched).

use anyhow::Result;
use tracing::info;

use crate::cancel::Cancel;
use crate::source::pinned::{self, DownloadSettings};
use crate::store::Store;

/// The bytes of the content `sha256`: from the object store, or, for a
/// download (`url`) the store lacks, fetched into it first.
pub(crate) fn content(
    store: &Store,
    settings: &DownloadSettings,
    sha256: &[u8; 32],
    url: Option<&str>,
    cancel: &Cancel,
) -> Result<Vec<u8>> {
    if let Some(url) = url
        && !store.has_content(sha256)
    {
        let part = store.download_part(sha256)?;
        info!(url, sha256 = hex::encode(sha256), "downloading");
        pinned::fetch(url, sha256, &part, settings, cancel)?;
        store.adopt_download(&part, sha256)?;
    }
    store.content(sha256)
}
