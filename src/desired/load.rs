//! From a config repo to one host's [`DesiredState`]: pick the host file,
//! pull in its roles, merge, read and render file contents, and cross-check
//! references. Every problem in every file is reported together.

use std::collections::{BTreeMap, HashMap};

use super::diag::{Diagnostic, Origin};
use super::facts::Facts;
use super::model::{Declared, DesiredState, Ensure, File, Resource, ResourceId};
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
            loader
                .parsed
                .get(&file)
                .cloned()
                .flatten()
                .map(|p| (file, p))
        })
        .collect();
    layers.push((host_file.to_owned(), host_parsed));

    // Schema errors make later cross-file checks noisy (a reference to a
    // declaration that failed to parse is not a second problem): stop here.
    if !loader.diags.is_empty() {
        return Err(LoadError::Invalid(sorted(loader.diags)));
    }
    let merged = loader.merge(&layers);
    let resources = loader.resolve(&merged, &layers, host, facts);
    let checks = loader.merge_checks(&layers);
    if !loader.diags.is_empty() {
        return Err(LoadError::Invalid(sorted(loader.diags)));
    }
    Ok(DesiredState {
        host: host.to_owned(),
        host_file: host_file.to_owned(),
        roles: order,
        resources,
        checks,
    })
}

/// Diagnostics in file, line, column order, so output is stable.
fn sorted(mut diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diags.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    diags
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
    /// Reads and parses a repo file once. `Ok(None)`: it is not a readable
    /// TOML file (reported).
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
                        // Kept even with errors, so the roles it names are
                        // still read and their problems reported too.
                        let parsed = parse_file(&cx, &text, &self.opts.state_dir);
                        self.diags.extend(cx.into_diagnostics());
                        Some(parsed)
                    }
                    Err(_) => {
                        self.diags.push(Diagnostic::file(
                            file,
                            "not valid UTF-8, so not a TOML file",
                        ));
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
                if is_host && prev.file != *file {
                    // The host file decides, even a conflict between roles,
                    // and even when it agrees with one of them.
                    conflicts.remove(&id);
                    winners[i] = Winner {
                        decl: decl.clone(),
                        file: file.clone(),
                    };
                } else if prev.decl.spec == decl.spec {
                    continue;
                } else if prev.file == *file {
                    self.diags.push(decl.origin.diag(format!(
                        "{id} is declared twice in this file, differently (first at line {})",
                        prev.decl.origin.line
                    )));
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
            let Some(path) = w.decl.spec.path() else {
                continue;
            };
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
            let Spec::Service(s) = &w.decl.spec else {
                continue;
            };
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
        let mut conflicts: BTreeMap<String, Diagnostic> = BTreeMap::new();
        for (file, parsed) in layers {
            let is_host = *file == host_file;
            for c in &parsed.checks {
                let name = &c.check.name;
                match out.iter_mut().find(|(_, o)| o.check.name == *name) {
                    None => out.push((file.clone(), c.clone())),
                    // As for resources, the host file decides.
                    Some((f, o)) if is_host && *f != host_file => {
                        conflicts.remove(name);
                        *f = file.clone();
                        *o = c.clone();
                    }
                    Some((_, o)) if o.check == c.check => {}
                    Some((_, o)) => {
                        conflicts.entry(name.clone()).or_insert_with(|| {
                            c.origin.diag(format!(
                                "check `{name}` is declared differently at {} and here (declare it in the host file to choose)",
                                o.origin
                            ))
                        });
                    }
                }
            }
        }
        self.diags.extend(conflicts.into_values());
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
                    self.diags
                        .push(decl.origin.diag(format!("source `{src}`: {e:#}")));
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
        self.diags
            .push(origin.diag(format!("source `{src}` is not a regular file")));
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::model::{Ensure, Resource};
    use crate::desired::tree::MemTree;

    fn load_mem(tree: &MemTree, host: &str) -> Result<DesiredState, Vec<String>> {
        load(
            tree,
            host,
            &Facts::default().for_host(host),
            &LoadOptions::default(),
        )
        .map_err(|e| match e {
            LoadError::Invalid(d) => d.iter().map(ToString::to_string).collect(),
            LoadError::Read(e) => vec![format!("read error: {e:#}")],
        })
    }

    fn errors(tree: &MemTree, host: &str) -> Vec<String> {
        load_mem(tree, host).expect_err("expected the repo to be invalid")
    }

    fn paths(d: &DesiredState) -> Vec<String> {
        d.resources
            .iter()
            .map(|r| r.resource.id().to_string())
            .collect()
    }

    #[test]
    fn host_lookup_falls_back_to_short_name_then_default() {
        let t = MemTree::new()
            .file("hosts/web1.toml", "")
            .file("hosts/default.toml", "");
        assert_eq!(
            load_mem(&t, "web1.example.com").expect("valid").host_file,
            "hosts/web1.toml"
        );
        assert_eq!(
            load_mem(&t, "db9.example.com").expect("valid").host_file,
            "hosts/default.toml"
        );
        let t = MemTree::new().file("hosts/web1.toml", "");
        let e = errors(&t, "db9.example.com");
        assert!(
            e[0].contains("hosts/db9.example.com.toml, hosts/db9.toml, hosts/default.toml"),
            "{e:?}"
        );
    }

    #[test]
    fn roles_apply_depth_first_once_and_host_wins() {
        let t = MemTree::new()
            .file("hosts/h.toml", "roles = ['web', 'base']\n[vars]\nx = 'host'\n[[file]]\npath = '/etc/motd'\ncontent = 'host'\n")
            .file("roles/base.toml", "[vars]\nx = 'base'\ny = 'base'\n[[file]]\npath = '/etc/motd'\ncontent = 'base'\n[[directory]]\npath = '/srv'\n")
            .file("roles/web.toml", "roles = ['base']\n[[directory]]\npath = '/srv'\n[[file]]\npath = '/srv/x'\ntemplate = true\ncontent = '{{ vars.x }} {{ vars.y }}'\n");
        let d = load_mem(&t, "h").expect("valid");
        assert_eq!(d.roles, ["base", "web"]);
        assert_eq!(
            paths(&d),
            ["directory:/srv", "file:/etc/motd", "file:/srv/x"]
        );
        let content = |p: &str| {
            d.resources.iter().find_map(|r| match &r.resource {
                Resource::File(f) if f.path == p => {
                    Some(String::from_utf8_lossy(&f.content).into_owned())
                }
                _ => None,
            })
        };
        assert_eq!(content("/etc/motd").as_deref(), Some("host"));
        // Vars: roles in order, the host file last.
        assert_eq!(content("/srv/x").as_deref(), Some("host base"));
    }

    #[test]
    fn conflicting_roles_name_both_files_unless_the_host_decides() {
        let roles = MemTree::new()
            .file(
                "roles/a.toml",
                "[[directory]]\npath = '/srv'\nmode = '0700'\n",
            )
            .file(
                "roles/b.toml",
                "[[directory]]\npath = '/srv'\nmode = '0755'\n",
            );
        let t = roles.clone().file("hosts/h.toml", "roles = ['a', 'b']\n");
        let e = errors(&t, "h");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("roles/a.toml:1") && e[0].contains("roles/b.toml:1"),
            "{e:?}"
        );
        let t = roles.clone().file(
            "hosts/h.toml",
            "roles = ['a', 'b']\n[[directory]]\npath = '/srv'\nmode = '0711'\n",
        );
        let d = load_mem(&t, "h").expect("the host decides");
        assert!(matches!(&d.resources[0].resource, Resource::Directory(x) if x.meta.mode == 0o711));
        // Also when the host agrees with the first role.
        let t = roles.clone().file(
            "hosts/h.toml",
            "roles = ['a', 'b']\n[[directory]]\npath = '/srv'\nmode = '0700'\n",
        );
        let d = load_mem(&t, "h").expect("the host decides");
        assert!(matches!(&d.resources[0].resource, Resource::Directory(x) if x.meta.mode == 0o700));
        // And for checks.
        let checks = roles
            .file(
                "roles/a.toml",
                "[[check]]\nname = 'c'\ncommand = ['true']\n",
            )
            .file(
                "roles/b.toml",
                "[[check]]\nname = 'c'\ncommand = ['false']\n",
            );
        let t = checks.clone().file("hosts/h.toml", "roles = ['a', 'b']\n");
        assert!(errors(&t, "h")[0].contains("check `c` is declared differently"));
        let t = checks.file(
            "hosts/h.toml",
            "roles = ['a', 'b']\n[[check]]\nname = 'c'\ncommand = ['true']\n",
        );
        assert_eq!(load_mem(&t, "h").expect("the host decides").checks.len(), 1);
    }

    #[test]
    fn identical_duplicates_are_fine() {
        let t = MemTree::new()
            .file("roles/a.toml", "[[directory]]\npath = '/srv'\n")
            .file("roles/b.toml", "\n\n[[directory]]\npath = '/srv'\n")
            .file("hosts/h.toml", "roles = ['a', 'b']\n");
        assert_eq!(
            paths(&load_mem(&t, "h").expect("valid")),
            ["directory:/srv"]
        );
    }

    #[test]
    fn role_cycles_and_unknown_roles() {
        let t = MemTree::new()
            .file("hosts/h.toml", "roles = ['a', 'ghost']\n")
            .file("roles/a.toml", "roles = ['b']\n")
            .file("roles/b.toml", "roles = ['a']\n");
        let e = errors(&t, "h");
        assert!(
            e.iter().any(|m| m.contains("role cycle: a -> b -> a")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("hosts/h.toml:1:") && m.contains("unknown role `ghost`")),
            "{e:?}"
        );
    }

    #[test]
    fn all_problems_in_all_files_are_reported() {
        let t = MemTree::new()
            .file("hosts/h.toml", "roles = ['r']\n[[file]]\npath = 'relative'\ncontent = ''\n[[package]]\nname = 'a b'\n")
            .file("roles/r.toml", "[[directory]]\npath = '/x'\nmode = '999'\n");
        let e = errors(&t, "h");
        assert_eq!(e.len(), 3, "{e:?}");
    }

    #[test]
    fn source_symlinks_must_stay_in_the_repo() {
        let base = MemTree::new()
            .file("files/real", "data")
            .symlink("files/inside", "real")
            .symlink("files/up", "../files/real")
            .symlink("files/abs", "/etc/shadow")
            .symlink("files/escape", "../../etc/shadow")
            .symlink("linkdir", "files");
        let host = |src: &str| {
            base.clone().file(
                "hosts/h.toml",
                format!("[[file]]\npath = '/x'\nsource = '{src}'\n"),
            )
        };
        for ok in ["files/real", "files/inside", "files/up", "linkdir/real"] {
            assert!(load_mem(&host(ok), "h").is_ok(), "{ok}");
        }
        for bad in ["files/abs", "files/escape"] {
            let e = errors(&host(bad), "h");
            assert!(e[0].contains("leaves the config repo"), "{bad}: {e:?}");
        }
        assert!(errors(&host("files/none"), "h")[0].contains("does not exist"));
        assert!(errors(&host("files"), "h")[0].contains("not a regular file"));
    }

    #[test]
    fn size_cap_applies_to_content() {
        let t = MemTree::new().file("files/big", vec![b'x'; 2048]).file(
            "hosts/h.toml",
            "[[file]]\npath = '/x'\nsource = 'files/big'\n",
        );
        let opts = LoadOptions {
            max_file_size: 1024,
            ..LoadOptions::default()
        };
        let e = load(&t, "h", &Facts::default(), &opts).expect_err("over cap");
        assert!(e.to_string().contains("invalid"));
        let LoadError::Invalid(d) = e else {
            panic!("wrong error")
        };
        assert!(d[0].message.contains("over the cap of 1024 bytes"), "{d:?}");
    }

    #[test]
    fn restart_on_must_reference_declared_resources() {
        let t = MemTree::new().file(
            "hosts/h.toml",
            "[[file]]\npath = '/etc/a'\ncontent = ''\n[[service]]\nname = 'nginx'\nrestart_on = ['file:/etc/a', 'file:/etc/b']\n",
        );
        let e = errors(&t, "h");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("hosts/h.toml:6:"), "{e:?}");
        assert!(e[0].contains("refers to file:/etc/b"), "{e:?}");
    }

    #[test]
    fn one_path_is_one_kind() {
        let t = MemTree::new().file(
            "hosts/h.toml",
            "[[file]]\npath = '/etc/yum.repos.d/x.repo'\ncontent = ''\n[[repo]]\nname = 'x'\nbaseurl = 'http://x/'\n[[directory]]\npath = '/etc/a'\n[[symlink]]\npath = '/etc/a'\ntarget = 'b'\n",
        );
        let e = errors(&t, "h");
        assert_eq!(e.len(), 2, "{e:?}");
    }

    #[test]
    fn empty_host_file_is_valid_and_absent_needs_no_content() {
        let t = MemTree::new().file("hosts/h.toml", "");
        assert!(load_mem(&t, "h").expect("valid").resources.is_empty());
        let t = MemTree::new().file("hosts/h.toml", "[[file]]\npath = '/x'\nstate = 'absent'\n");
        assert!(
            matches!(&load_mem(&t, "h").expect("valid").resources[0].resource, Resource::File(f) if f.ensure == Ensure::Absent)
        );
    }

    #[test]
    fn inline_template_errors_point_into_the_host_file() {
        let t = MemTree::new().file(
            "hosts/h.toml",
            "[[file]]\npath = '/x'\ntemplate = true\ncontent = \"\"\"\nline one\n{{ vars.missing }}\n\"\"\"\n",
        );
        let e = errors(&t, "h");
        assert!(e[0].starts_with("hosts/h.toml:6:"), "{e:?}");
    }
}

/// No input may panic the loader: every prefix of every example file, and
/// every single-byte corruption of one, must load or fail with diagnostics.
#[cfg(test)]
mod no_panic {
    use super::*;
    use crate::desired::tree::MemTree;

    const EXAMPLES: [(&str, &str); 4] = [
        (
            "roles/base.toml",
            include_str!("../../examples/config-repo/roles/base.toml"),
        ),
        (
            "roles/web.toml",
            include_str!("../../examples/config-repo/roles/web.toml"),
        ),
        (
            "hosts/web1.toml",
            include_str!("../../examples/config-repo/hosts/web1.toml"),
        ),
        (
            "files/motd.j2",
            include_str!("../../examples/config-repo/files/motd.j2"),
        ),
    ];

    fn tree() -> MemTree {
        EXAMPLES
            .iter()
            .fold(MemTree::new(), |t, (p, c)| t.file(p, *c))
    }

    #[test]
    fn truncated_and_corrupted_inputs_never_panic() {
        let facts = Facts::default().for_host("web1");
        let opts = LoadOptions::default();
        for (path, text) in EXAMPLES {
            let bytes = text.as_bytes();
            for cut in 0..bytes.len() {
                let t = tree().file(path, &bytes[..cut]);
                let _ = load(&t, "web1", &facts, &opts);
            }
            for i in (0..bytes.len()).step_by(3) {
                for b in [b'"', b'[', b'{', b'\n', b'=', 0xff, b'\'', b'%'] {
                    let mut m = bytes.to_vec();
                    m[i] = b;
                    let t = tree().file(path, m);
                    let _ = load(&t, "web1", &facts, &opts);
                }
            }
        }
    }
}
