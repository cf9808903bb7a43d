//! Downloads of single files over http(s), for the package store: an RPM
//! the repositories still serve, kept so a rollback does not depend on them.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cancel::Cancel;

/// Bound on one download.
const TIMEOUT: Duration = Duration::from_secs(300);

/// Downloads `url` into the file `dest` (created or truncated). Follows
/// redirects; an HTTP error status is an error; a stop request aborts it.
pub(crate) fn to_file(url: &str, dest: &Path, cancel: &Cancel) -> Result<()> {
    let mut file = std::fs::File::create(dest)
        .with_context(|| format!("failed to create {}", dest.display()))?;
    let mut easy = curl::easy::Easy::new();
    easy.url(url)?;
    easy.follow_location(true)?;
    easy.fail_on_error(true)?;
    easy.timeout(TIMEOUT)?;
    easy.progress(true)?;
    let mut write_error = None;
    {
        let mut transfer = easy.transfer();
        transfer.write_function(|data| match file.write_all(data) {
            Ok(()) => Ok(data.len()),
            Err(e) => {
                write_error = Some(e);
                Ok(0)
            }
        })?;
        // Returning false from the progress callback aborts the transfer.
        transfer.progress_function(|_, _, _, _| !cancel.should_stop())?;
        transfer
            .perform()
            .with_context(|| format!("failed to download {url}"))?;
    }
    if let Some(e) = write_error {
        bail!("failed to write {}: {e}", dest.display());
    }
    Ok(())
}
