//! From a config repo to one host's [`DesiredState`]: pick the host file,
//! pull in its roles, merge, read and render file contents, and cross-check
//! references. Every problem in every file is reported together.

use std::collections::{BTreeMap, HashMap};

use super::diag::{Diagnostic, Origin};
use super::facts::Facts;
use super::model::{Declared, DesiredState, Ensure, File, Kind, Resource, ResourceId};
use super::parse::{CheckDecl, ContentSpec, Decl, FileSpec, ParsedFile, Spec, parse_file};
use super::schema::Ctx;
use super::template::{Scope, TemplateOrigin, render};
use super::tree::{ConfigTree, EntryKind};

/// Largest file a config repo may hand to a host, unless configured.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 16 * 1024 * 1024;
/// Symlinks followed inside the repo before giving up (as the kernel does).
const MAX_SYMLINK_HOPS: usize = 40;

/// Settings of the loader that come from the agent, not the repo.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// The agent's state directory, which no resource may touch.
    pub state_dir: String,
    /// Size cap of one managed file's content.
    pub max_file_size: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            state_dir: "/var/lib/driftless".to_owned(),
            max_file_size: DEFAULT_MAX_FILE_SIZE,
        }
    }
}

/// Why a desired state could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The repo is invalid; all problems found are listed.
    #[error("the config repo is invalid ({} problem{})", .0.len(), if .0.len() == 1 { "" } else { "s" })]
    Invalid(Vec<Diagnostic>),
    /// The repo could not be read at all.
    #[error(transparent)]
    Read(#[from] anyhow::Error),
}

/// The host files tried for host name `host`, in order.
pub fn host_file_candidates(host: &str) -> Vec<String> {
    let mut out = vec![format!("hosts/{host}.toml")];
    if let Some((short, _)) = host.split_once('.') {
        out.push(format!("hosts/{short}.toml"));
    }
    out.push("hosts/default.toml".to_owned());
    out
}

/// The host file for `host`: the first candidate that exists.
pub fn find_host_file(tree: &dyn ConfigTree, host: &str) -> Result<String, LoadError> {
    let candidates = host_file_candidates(host);
    for c in &candidates {
        if tree.kind(c)?.is_some() {
            return Ok(c.clone());
        }
    }
    Err(LoadError::Invalid(vec![Diagnostic::file(
        "hosts/",
        format!(
            "no host file for host `{host}` in {}: looked for {}",
            tree.describe(),
            candidates.join(", ")
        ),
    )]))
}

/// The host names that have their own file (`hosts/*.toml`), including
/// `default`.
pub fn list_host_files(tree: &dyn ConfigTree) -> anyhow::Result<Vec<String>> {
    Ok(tree
        .list("hosts")?
        .into_iter()
        .filter(|n| n.ends_with(".toml"))
        .map(|n| format!("hosts/{n}"))
        .collect())
}

/// Computes the desired state of `host`.
pub fn load(
    tree: &dyn ConfigTree,
    host: &str,
    facts: &Facts,
    opts: &LoadOptions,
) -> Result<DesiredState, LoadError> {
    let host_file = find_host_file(tree, host)?;
    load_host_file(tree, &host_file, host, facts, opts)
}

/// Computes the desired state from a given host file.
pub fn load_host_file(
    tree: &dyn ConfigTree,
    host_file: &str,
    host: &str,
    facts: &Facts,
    opts: &LoadOptions,
) -> Result<DesiredState, LoadError> {
    let mut loader = Loader {
        tree,
        opts,
        diags: Vec::new(),
        parsed: HashMap::new(),
    };
    let host_parsed = loader.parse(host_file)?.unwrap_or_default();
    let mut order = Vec::new();
    let mut stack = Vec::new();
    for (role, origin) in &host_parsed.roles {
        loader.visit_role(role, origin, &mut stack, &mut order)?;
    }
    let mut layers: Vec<(String, ParsedFile)> = order
        .iter()
        .filter_map(|r| {
            let file = role_file(r);
            loader.parsed.get(&file).cloned().flatten().map(|p| (file, p))
        })
        .collect();
    layers.push((host_file.to_owned(), host_parsed));

    let merged = loader.merge(&layers);
    let resources = loader.resolve(&merged, &layers, host, facts);
    let checks = loader.merge_checks(&layers);
    if !loader.diags.is_empty() {
        return Err(LoadError::Invalid(loader.diags));
    }
    Ok(DesiredState {
        host: host.to_owned(),
        host_file: host_file.to_owned(),
        roles: order,
        resources,
        checks,
    })
}

fn role_file(role: &str) -> String {
    format!("roles/{role}.toml")
}

struct Loader<'a> {
    tree: &'a dyn ConfigTree,
    opts: &'a LoadOptions,
    diags: Vec<Diagnostic>,
    /// Parsed files by repo path; `None` when the file failed to parse.
    parsed: HashMap<String, Option<ParsedFile>>,
}

/// One merged resource: the winning declaration and the file it came from.
struct Winner {
    decl: Decl,
    file: String,
}

impl Loader<'_> {
    /// Reads and parses a repo file once. `Ok(None)`: it was reported invalid.
    fn parse(&mut self, file: &str) -> Result<Option<ParsedFile>, LoadError> {
        if let Some(p) = self.parsed.get(file) {
            return Ok(p.clone());
        }
        let result = match self.tree.kind(file)? {
            Some(EntryKind::File { .. }) => {
                let bytes = self.tree.read(file)?;
                match String::from_utf8(bytes) {
                    Ok(text) => {
                        let cx = Ctx::new(file, &text);
                        let parsed = parse_file(&cx, &text, &self.opts.state_dir);
                        let ok = !cx.has_errors();
                        self.diags.extend(cx.into_diagnostics());
                        ok.then_some(parsed)
                    }
                    Err(_) => {
                        self.diags
                            .push(Diagnostic::file(file, "not valid UTF-8, so not a TOML file"));
                        None
                    }
                }
            }
            Some(_) => {
                self.diags
                    .push(Diagnostic::file(file, "is not a regular file"));
                None
            }
            None => None,
        };
        self.parsed.insert(file.to_owned(), result.clone());
        Ok(result)
    }

    /// Depth first: a role's own roles come before it; each role once.
    fn visit_role(
        &mut self,
        role: &str,
        referenced_at: &Origin,
        stack: &mut Vec<String>,
        order: &mut Vec<String>,
    ) -> Result<(), LoadError> {
        if order.iter().any(|r| r == role) {
            return Ok(());
        }
        if let Some(pos) = stack.iter().position(|r| r == role) {
            let mut cycle: Vec<&str> = stack[pos..].iter().map(String::as_str).collect();
            cycle.push(role);
            self.diags.push(referenced_at.diag(format!(
                "role cycle: {} (roles/{role}.toml pulls itself in)",
                cycle.join(" -> ")
            )));
            return Ok(());
        }
        let file = role_file(role);
        if self.tree.kind(&file)?.is_none() {
            self.diags.push(referenced_at.diag(format!(
                "unknown role `{role}`: there is no {file} in {}",
                self.tree.describe()
            )));
            return Ok(());
        }
        let Some(parsed) = self.parse(&file)? else {
            return Ok(());
        };
        stack.push(role.to_owned());
        for (sub, origin) in &parsed.roles {
            self.visit_role(sub, origin, stack, order)?;
        }
        stack.pop();
        order.push(role.to_owned());
        Ok(())
    }

    /// Merges declarations: later roles may not contradict earlier ones, the
    /// host file overrides any role. Returns the winners in first-declared
    /// order.
    fn merge(&mut self, layers: &[(String, ParsedFile)]) -> Vec<Winner> {
        let host_file = layers.last().map(|(f, _)| f.clone()).unwrap_or_default();
        let mut index: HashMap<ResourceId, usize> = HashMap::new();
        let mut winners: Vec<Winner> = Vec::new();
        let mut conflicts: BTreeMap<ResourceId, Diagnostic> = BTreeMap::new();
        for (file, parsed) in layers {
            let is_host = *file == host_file;
            for decl in &parsed.decls {
                let id = decl.spec.id();
                let Some(&i) = index.get(&id) else {
                    index.insert(id, winners.len());
                    winners.push(Winner {
                        decl: decl.clone(),
                        file: file.clone(),
                    });
                    continue;
                };
                let prev = &winners[i];
                if prev.decl.spec == decl.spec {
                    continue;
                }
                if prev.file == *file {
                    self.diags.push(decl.origin.diag(format!(
                        "{id} is declared twice in this file, differently (first at line {})",
                        prev.decl.origin.line
                    )));
                } else if is_host {
                    conflicts.remove(&id);
                    winners[i] = Winner {
                        decl: decl.clone(),
                        file: file.clone(),
                    };
                } else {
                    conflicts.entry(id.clone()).or_insert_with(|| {
                        decl.origin.diag(format!(
                            "{id} is declared differently by {} and {} (declare it in the host file to choose)",
                            prev.decl.origin, decl.origin
                        ))
                    });
                }
            }
        }
        self.diags.extend(conflicts.into_values());
        self.check_paths(&winners);
        self.check_references(&winners);
        winners
    }

    /// One path is one kind: a file and a directory cannot share a path,
    /// nor a `[[file]]` and a `[[repo]]`'s repo file.
    fn check_paths(&mut self, winners: &[Winner]) {
        let mut by_path: HashMap<String, &Winner> = HashMap::new();
        for w in winners {
            let Some(path) = w.decl.spec.path() else { continue };
            if let Some(other) = by_path.get(&path) {
                self.diags.push(w.decl.origin.diag(format!(
                    "{} and {} ({}) both manage the path {path}",
                    w.decl.spec.id(),
                    other.decl.spec.id(),
                    other.decl.origin
                )));
            } else {
                by_path.insert(path, w);
            }
        }
    }

    fn check_references(&mut self, winners: &[Winner]) {
        let declared: HashMap<ResourceId, ()> =
            winners.iter().map(|w| (w.decl.spec.id(), ())).collect();
        for w in winners {
            let Spec::Service(s) = &w.decl.spec else { continue };
            let refs = s.restart_on.iter().map(|r| ("restart_on", r));
            let refs = refs.chain(s.reload_on.iter().map(|r| ("reload_on", r)));
            for ((key, r), origin) in refs.zip(&w.decl.ref_origins) {
                if !declared.contains_key(r) {
                    self.diags.push(origin.diag(format!(
                        "`{key}` of {} refers to {r}, which is not declared for this host",
                        s.unit
                    )));
                }
            }
        }
    }

    fn merge_checks(&mut self, layers: &[(String, ParsedFile)]) -> Vec<super::model::Check> {
        let host_file = layers.last().map(|(f, _)| f.clone()).unwrap_or_default();
        let mut out: Vec<(String, CheckDecl)> = Vec::new();
        for (file, parsed) in layers {
            for c in &parsed.checks {
                match out.iter_mut().find(|(_, o)| o.check.name == c.check.name) {
                    None => out.push((file.clone(), c.clone())),
                    Some((_, o)) if o.check == c.check => {}
                    Some((f, o)) if *file == host_file && *f != host_file => {
                        *f = file.clone();
                        *o = c.clone();
                    }
                    Some((_, o)) => self.diags.push(c.origin.diag(format!(
                        "check `{}` is declared differently at {} and here",
                        c.check.name, o.origin
                    ))),
                }
            }
        }
        out.into_iter().map(|(_, c)| c.check).collect()
    }

    /// Reads sources and renders templates; returns resources in apply order.
    fn resolve(
        &mut self,
        winners: &[Winner],
        layers: &[(String, ParsedFile)],
        host: &str,
        facts: &Facts,
    ) -> Vec<Declared> {
        let mut vars = toml::Table::new();
        for (_, p) in layers {
            for (k, v) in &p.vars {
                vars.insert(k.clone(), v.clone());
            }
        }
        let scope = Scope::new(&vars, facts, host);
        let mut out = Vec::new();
        for w in winners {
            let resource = match &w.decl.spec {
                Spec::Repo(r) => Some(Resource::Repo(r.clone())),
                Spec::Package(p) => Some(Resource::Package(p.clone())),
                Spec::Directory(d) => Some(Resource::Directory(d.clone())),
                Spec::Symlink(s) => Some(Resource::Symlink(s.clone())),
                Spec::Service(s) => Some(Resource::Service(s.clone())),
                Spec::File(f) => self.file_content(f, &w.decl, &scope).map(Resource::File),
            };
            if let Some(resource) = resource {
                out.push(Declared {
                    resource,
                    origin: w.decl.origin.clone(),
                });
            }
        }
        out.sort_by_key(|d| d.resource.id().kind);
        out
    }

    fn file_content(&mut self, f: &FileSpec, decl: &Decl, scope: &Scope) -> Option<File> {
        let (bytes, tmpl_file, first_line) = match &f.content {
            ContentSpec::Nothing => (Vec::new(), String::new(), 0),
            ContentSpec::Inline(text) => (
                text.clone().into_bytes(),
                decl.origin.file.clone(),
                decl.content_line,
            ),
            ContentSpec::Source(src) => match self.read_source(src, &decl.origin) {
                Ok(Some(b)) => (b, src.clone(), 1),
                Ok(None) => return None,
                Err(e) => {
                    self.diags.push(decl.origin.diag(format!("source `{src}`: {e:#}")));
                    return None;
                }
            },
        };
        let content = if f.template && f.ensure == Ensure::Present {
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
            match render(&text, scope, &origin) {
                Ok(s) => s.into_bytes(),
                Err(e) => {
                    self.diags.push(Diagnostic {
                        file: e.file,
                        line: e.line,
                        column: None,
                        message: format!("{} (for file:{})", e.message, f.path),
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
                f.path,
                content.len(),
                self.opts.max_file_size
            )));
            return None;
        }
        Some(File {
            path: f.path.clone(),
            ensure: f.ensure,
            content,
            meta: f.meta.clone(),
            sensitive: f.sensitive,
        })
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
        self.diags.push(origin.diag(format!("source `{src}` is not a regular file")));
        Ok(None)
    }
}

impl Kind {
    /// Whether a resource of this kind lives on the filesystem.
    pub fn is_path(self) -> bool {
        matches!(self, Kind::Repo | Kind::Directory | Kind::File | Kind::Symlink)
    }
}
