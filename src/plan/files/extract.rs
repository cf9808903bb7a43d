//! Planning an `[[archive]]`: its directory is compared by the marker
//! driftless wrote into it (what was extracted), never by its contents;
//! an extraction is planned only when the marker is missing or says
//! another archive, and the archive is then read whole and checked
//! before anything changes.

use super::{Planner, change, describe};
use crate::desired::model::ResourceId;
use crate::desired::model::{Archive, Ensure};
use crate::plan::archive::{self, LIMITS, MARKER};
use crate::plan::change::{Change, Op};
use crate::plan::observed::Observed;

impl Planner<'_> {
    /// Plans the archive `a`, whose directory is observed as `observed`
    /// with the marker text `marker` (when it holds one).
    pub(in crate::plan) fn archive(
        &mut self,
        a: &Archive,
        id: &ResourceId,
        observed: &Observed,
        marker: Option<&str>,
    ) -> Result<(), String> {
        let path = a.path.as_str();
        if a.ensure == Ensure::Absent {
            return self.archive_absent(id, path, observed, marker);
        }
        let want = archive::marker_text(&hex::encode(a.content.sha256()), a.strip_components);
        let (reason, label) = match (observed, marker) {
            (Observed::Missing { .. }, _) => {
                self.parents(path, observed, false)?;
                ("does not exist".to_owned(), None)
            }
            (Observed::Dir { meta, label, .. }, Some(m)) if m == want => {
                // Extracted as declared: only the directory's own owner,
                // group and mode are compared (the tree is not read).
                let wanted = self.meta(&a.meta, path, label.as_deref())?;
                let reasons = self.meta_reasons(*meta, label.as_deref(), &wanted);
                if !reasons.is_empty() {
                    let op = Op::SetMeta {
                        path: path.to_owned(),
                        meta: wanted,
                    };
                    self.dirs.push(change(id, op, reasons));
                }
                return Ok(());
            }
            (Observed::Dir { label, .. }, Some(m)) => {
                (archive::marker_difference(m, &want), label.as_deref())
            }
            (Observed::Dir { entries, label, .. }, None) if entries.is_empty() => {
                ("is an empty directory".to_owned(), label.as_deref())
            }
            // Someone else's directory (or one whose marker was removed):
            // driftless never deletes what it cannot tell it extracted.
            (Observed::Dir { .. }, None) => {
                return Err(format!(
                    "{path} holds files but no {MARKER}: driftless replaces only a tree it \
                     extracted; point `path` at a new or empty directory (or empty this one)"
                ));
            }
            (other, _) => {
                return Err(format!(
                    "{path} exists as {}; driftless will not replace it with a directory",
                    describe(other)
                ));
            }
        };
        let bytes = a
            .content
            .bytes()
            .ok_or_else(|| format!("the archive of {path} was not loaded (internal error)"))?;
        // Read whole before anything changes: a hostile or broken archive
        // is refused here, with nothing written.
        let listing = archive::walk(bytes, a.format, a.strip_components, LIMITS, &mut |_, _| {
            Ok(())
        })
        .map_err(|e| format!("archive `{}`: {e}; nothing was extracted", a.source))?;
        let meta = self.meta(&a.meta, path, label)?;
        let op = Op::Extract {
            path: path.to_owned(),
            source: a.source.clone(),
            sha256: hex::encode(a.content.sha256()),
            format: a.format,
            strip_components: a.strip_components,
            meta,
            archive: std::sync::Arc::new(bytes.to_vec()),
        };
        let what = format!(
            "extract {} (sha256 {}) into {path}: {} entries, {} bytes",
            a.source,
            hex::encode(a.content.sha256()),
            listing.entries,
            listing.bytes
        );
        let extract = change(id, op, vec![what, reason]);
        self.files
            .push(if matches!(observed, Observed::Missing { .. }) {
                extract.creating()
            } else {
                extract
            });
        Ok(())
    }

    /// An archive that must not be there: a tree with the marker is
    /// removed whole; anything else at its path is not driftless's.
    fn archive_absent(
        &mut self,
        id: &ResourceId,
        path: &str,
        observed: &Observed,
        marker: Option<&str>,
    ) -> Result<(), String> {
        match (observed, marker) {
            (Observed::Missing { .. }, _) => Ok(()),
            (Observed::Dir { .. }, Some(_)) => {
                let op = Op::RemoveTree {
                    path: path.to_owned(),
                };
                self.removals.push(Change::new(
                    id,
                    op,
                    vec!["extracted, should be absent".into()],
                ));
                Ok(())
            }
            (other, _) => Err(format!(
                "{path} is {} without {MARKER}, not a tree driftless extracted; it is left alone: remove it by hand",
                describe(other)
            )),
        }
    }
}
