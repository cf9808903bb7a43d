//! The use case's side of pinned downloads: a content known by its hash
//! is read from the object store, and only when the store lacks it is it
//! fetched (by `source`, the one room that touches the network) into a
//! partial file of the state directory, checked, and moved into the store.
//! The engine asks only for contents the host lacks, so a no-op never
//! reaches this far and never touches the network.

use anyhow::Result;
use tracing::info;

use super::context::App;
use crate::cancel::Cancel;
use crate::source::pinned;

/// The bytes of the content `sha256`: from the object store, or, for a
/// download (`url`) the store lacks, fetched into it first.
pub(super) fn content(
    app: &App,
    sha256: &[u8; 32],
    url: Option<&str>,
    cancel: &Cancel,
) -> Result<Vec<u8>> {
    if let Some(url) = url
        && !app.store.has_content(sha256)
    {
        let part = app.store.download_part(sha256)?;
        info!(url, sha256 = hex::encode(sha256), "downloading");
        pinned::fetch(url, sha256, &part, &app.settings.download, cancel)?;
        app.store.adopt_download(&part, sha256)?;
    }
    app.store.content(sha256)
}
