//! The content of the host's files: read from the repo (following
//! symlinks only while they stay inside it), rendered when a template, and
//! held to the size cap.

use std::collections::BTreeMap;

use super::diag::{Diagnostic, Origin};
use super::kinds::{Decl, ReadContent, ResourceId};
use super::merge::Winner;
use super::model::Declared;
use super::options::LoadOptions;
use super::parse::ParsedFile;
use super::secrets::{AGE_SUFFIX, Opened};
use super::template::{Scope, TemplateOrigin, render};
use super::tree::{ConfigTree, EntryKind};
use super::values::{Content, ContentSpec};

/// Symlinks followed inside the repo before giving up (as the kernel does).
const MAX_SYMLINK_HOPS: usize = 40;

/// Reads and renders contents, collecting every problem.
pub(super) struct Contents<'a> {
    /// The config repo.
    pub(super) tree: &'a dyn ConfigTree,
    /// The agent's limits.
    pub(super) opts: &'a LoadOptions,
    /// Problems found.
    pub(super) diags: &'a mut Vec<Diagnostic>,
}

/// [`Contents`] with the template scope of one host.
struct WithScope<'c, 'a, 's> {
    contents: &'c mut Contents<'a>,
    scope: &'s Scope,
}

impl ReadContent for WithScope<'_, '_, '_> {
    fn read(
        &mut self,
        content: &ContentSpec,
        template: bool,
        present: bool,
        what: &ResourceId,
        decl: &Decl,
    ) -> Option<(Content, bool)> {
        self.contents
            .content(content, template, present, what, decl, self.scope)
    }

    fn problem(&mut self, decl: &Decl, message: String) {
        self.contents.diags.push(decl.origin.diag(message));
    }
}

/// The `vars` templates see: every layer's, later layers (roles in order,
/// then the host file) overriding earlier ones key by key.
pub(super) fn merged_vars(
    layers: &[(String, ParsedFile)],
) -> (toml::Table, BTreeMap<String, Origin>) {
    let mut vars = toml::Table::new();
    let mut origins = BTreeMap::new();
    for (_, p) in layers {
        for (k, v) in &p.vars {
            vars.insert(k.clone(), v.clone());
            if let Some(o) = p.var_origins.get(k) {
                origins.insert(k.clone(), o.clone());
            }
        }
    }
    (vars, origins)
}

impl Contents<'_> {
    /// Reads sources and renders templates; returns resources in apply
    /// order, and the facts the templates read.
    pub(super) fn resolve(&mut self, winners: &[Winner], scope: &Scope) -> Vec<Declared> {
        let mut out = Vec::with_capacity(winners.iter().filter(|w| w.decl.applies).count());
        // A declaration whose `when` does not hold is not managed here.
        for w in winners.iter().filter(|w| w.decl.applies) {
            if self.opts.cancel.should_stop() {
                break;
            }
            // A `for_each` item is in scope of its resource's content.
            let with_item = w.decl.item.as_ref().map(|i| scope.with_item(i));
            let mut reader = WithScope {
                contents: self,
                scope: with_item.as_ref().unwrap_or(scope),
            };
            let resource = w.decl.spec.resolve(&mut reader, &w.decl);
            if let Some(resource) = resource {
                out.push(Declared {
                    resource,
                    prune: w.decl.prune,
                    origin: w.decl.origin.clone(),
                });
            }
        }
        out.sort_by_key(|d| d.resource.id().kind);
        out
    }

    /// See [`ReadContent::read`].
    fn content(
        &mut self,
        spec: &ContentSpec,
        template: bool,
        present: bool,
        what: &ResourceId,
        decl: &Decl,
        scope: &Scope,
    ) -> Option<(Content, bool)> {
        // A secret's content, and what a template makes of secrets, never
        // shows in a diff, a log or JSON, whatever the file says.
        let mut sensitive = false;
        let (bytes, tmpl_file, first_line) = match spec {
            // Known by its pinned hash: the bytes are fetched, held to the
            // agent's download cap, only when the host lacks them.
            ContentSpec::Download { sha256, .. } => return Some((Content::stored(*sha256), false)),
            ContentSpec::Nothing => (Vec::new(), String::new(), 0),
            ContentSpec::Inline(text) => (
                text.clone().into_bytes(),
                decl.origin.file.clone(),
                decl.content_line,
            ),
            ContentSpec::Source(src) => match self.read_source(src, &decl.origin) {
                Ok(Some(b)) if src.ends_with(AGE_SUFFIX) => {
                    sensitive = true;
                    match self.opts.secrets.open(src, &b) {
                        Ok(Opened::Plain(plain)) => (plain, src.clone(), 1),
                        // Checked only: nothing to render or compare.
                        Ok(Opened::Checked) => (Vec::new(), String::new(), 0),
                        Err(e) => {
                            self.diags
                                .push(decl.origin.diag(format!("source {e} (for {what})")));
                            return None;
                        }
                    }
                }
                Ok(Some(b)) => (b, src.clone(), 1),
                Ok(None) => return None,
                Err(e) => {
                    self.diags
                        .push(decl.origin.diag(format!("source `{src}`: {e:#}")));
                    return None;
                }
            },
        };
        let content = if template && present {
            let Ok(text) = String::from_utf8(bytes) else {
                self.diags.push(Diagnostic::file(
                    tmpl_file,
                    "template = true, but the content is not valid UTF-8 text",
                ));
                return None;
            };
            let origin = TemplateOrigin {
                file: &tmpl_file,
                first_line,
            };
            match render(&text, scope, &origin, self.opts.max_file_size) {
                Ok(r) => {
                    sensitive |= r.reads_secrets;
                    r.text.into_bytes()
                }
                Err(e) => {
                    self.diags.push(Diagnostic {
                        file: e.file,
                        line: e.line,
                        column: e.column,
                        message: format!("{} (for {what})", e.message),
                    });
                    return None;
                }
            }
        } else {
            bytes
        };
        if content.len() as u64 > self.opts.max_file_size {
            self.diags.push(decl.origin.diag(format!(
                "content of {} is {} bytes, over the cap of {} bytes",
                what.key,
                content.len(),
                self.opts.max_file_size
            )));
            return None;
        }
        Some((Content::new(content), sensitive))
    }

    /// Reads a `source` file, following symlinks only while they stay inside
    /// the repo. `Ok(None)`: a problem was reported.
    fn read_source(&mut self, src: &str, origin: &Origin) -> anyhow::Result<Option<Vec<u8>>> {
        let mut pending: Vec<String> = src.split('/').rev().map(str::to_owned).collect();
        let mut resolved: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(comp) = pending.pop() {
            match comp.as_str() {
                "" | "." => continue,
                ".." => {
                    if resolved.pop().is_none() {
                        self.diags.push(origin.diag(format!(
                            "source `{src}` is a symlink that leaves the config repo"
                        )));
                        return Ok(None);
                    }
                    continue;
                }
                _ => {}
            }
            resolved.push(comp);
            let here = resolved.join("/");
            match self.tree.kind(&here)? {
                None => {
                    self.diags.push(origin.diag(format!(
                        "source `{src}` does not exist in {}",
                        self.tree.describe()
                    )));
                    return Ok(None);
                }
                Some(EntryKind::Symlink { target }) => {
                    hops += 1;
                    if target.starts_with('/') || hops > MAX_SYMLINK_HOPS {
                        self.diags.push(origin.diag(format!(
                            "source `{src}` is a symlink that leaves the config repo (`{here}` -> `{target}`)"
                        )));
                        return Ok(None);
                    }
                    resolved.pop();
                    pending.extend(target.split('/').rev().map(str::to_owned));
                }
                Some(EntryKind::File { size }) if pending.is_empty() => {
                    if size > self.opts.max_file_size {
                        self.diags.push(origin.diag(format!(
                            "source `{src}` is {size} bytes, over the cap of {} bytes",
                            self.opts.max_file_size
                        )));
                        return Ok(None);
                    }
                    return Ok(Some(self.tree.read(&here)?));
                }
                Some(EntryKind::Dir) if !pending.is_empty() => {}
                Some(_) => {
                    self.diags.push(origin.diag(format!(
                        "source `{src}` is not a regular file (`{here}` is a directory or special file)"
                    )));
                    return Ok(None);
                }
            }
        }
        self.diags
            .push(origin.diag(format!("source `{src}` is not a regular file")));
        Ok(None)
    }
}
