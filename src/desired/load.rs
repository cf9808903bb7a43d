//! From a config repo to one host's [`DesiredState`]: pick the host file,
//! pull in its roles, merge, read and render file contents, and cross-check
//! references. Every problem in every file is reported together.

use std::collections::{HashMap, HashSet};

use super::content::{Contents, merged_vars};
use super::diag::{Diagnostic, Origin, SourceText};
use super::facts::Facts;
use super::fleet::{FLEET_FILE, FleetPolicy};
use super::kinds::Decl;
use super::merge::{merge, merge_checks};
use super::model::DesiredState;
pub use super::options::{LoadError, LoadOptions};
use super::parse::{CheckDecl, ParsedFile, Stage, parse_file};
use super::schema::Ctx;
use super::secrets::{AGE_SUFFIX, Opened};
use super::template::{Scope, SecretVars};
use super::tree::{ConfigTree, EntryKind};

/// The host files tried for host name `host`, in order.
pub(crate) fn host_file_candidates(host: &str) -> Vec<String> {
    let mut out = vec![format!("hosts/{host}.toml")];
    if let Some((short, _)) = host.split_once('.') {
        out.push(format!("hosts/{short}.toml"));
    }
    out.push("hosts/default.toml".to_owned());
    out
}

/// The host file for `host`: the first candidate that exists.
pub(crate) fn find_host_file(tree: &dyn ConfigTree, host: &str) -> Result<String, LoadError> {
    let candidates = host_file_candidates(host);
    for c in &candidates {
        if tree.kind(c)?.is_some() {
            return Ok(c.clone());
        }
    }
    // Named after the file an admin would create for this host.
    let own = candidates
        .first()
        .cloned()
        .unwrap_or_else(|| "hosts/".to_owned());
    Err(LoadError::Invalid(vec![Diagnostic::file(
        own,
        format!(
            "no host file for host `{host}` in {}: looked for {}",
            tree.describe(),
            candidates.join(", ")
        ),
    )]))
}

/// The host names that have their own file (`hosts/*.toml`), including
/// `default`.
pub(crate) fn list_host_files(tree: &dyn ConfigTree) -> anyhow::Result<Vec<String>> {
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
pub(crate) fn load_host_file(
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
    let order = loader.visit_roles(&host_parsed.roles)?;
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
    let (vars, var_origins) = merged_vars(&layers);
    let secrets = loader.secret_vars(host_file)?;
    let scope = Scope::new(&vars, facts, host, secrets.as_ref());
    // Vars computed from vars, each placed where it is set.
    let vars = match scope.expand_vars(&vars) {
        Ok(v) => v,
        Err(errors) => {
            for (k, message) in errors {
                let at = var_origins.get(&k).cloned().unwrap_or_else(|| Origin {
                    file: host_file.to_owned(),
                    line: 1,
                    column: 1,
                });
                loader.diags.push(at.diag(format!("vars.{k}: {message}")));
            }
            return Err(LoadError::Invalid(sorted(loader.diags)));
        }
    };
    let scope = scope.with_vars(&vars);
    // The resources, once what their values are computed from is known;
    // as before, their schema errors stop here (a secrets file's problem
    // is reported with what reading contents finds).
    let before = loader.diags.len();
    for (file, parsed) in &mut layers {
        let (decls, checks) = loader.resources(file, &scope)?;
        parsed.decls = decls;
        parsed.checks = checks;
    }
    if loader.diags.len() > before {
        return Err(LoadError::Invalid(sorted(loader.diags)));
    }
    let merged = merge(&mut layers, opts.host_groups.as_ref(), &mut loader.diags);
    let resources = Contents {
        tree,
        opts,
        diags: &mut loader.diags,
    }
    .resolve(&merged, &scope);
    drop(merged);
    let facts_read = scope.facts_read();
    // Rendering stops early when asked to; what it left out is no state.
    opts.check_stop()?;
    let checks = merge_checks(&layers, &mut loader.diags);
    let fleet = loader.fleet_policy()?;
    if !loader.diags.is_empty() {
        return Err(LoadError::Invalid(sorted(loader.diags)));
    }
    Ok(DesiredState {
        host: host.to_owned(),
        host_file: host_file.to_owned(),
        roles: order,
        resources,
        checks,
        vars,
        fleet,
        facts_read,
        warnings: layers
            .iter()
            .flat_map(|(_, p)| p.warnings.clone())
            .collect(),
    })
}

/// Diagnostics in file, line, column order, so output is stable; each
/// once (a `for_each` table's problem is not repeated for each item).
fn sorted(mut diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diags.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    diags.dedup();
    diags
}

/// `hosts/web1.toml` -> `hosts/web1.secrets.toml.age`.
pub(crate) fn secret_vars_file(host_file: &str) -> String {
    let stem = host_file.strip_suffix(".toml").unwrap_or(host_file);
    format!("{stem}.secrets.toml{AGE_SUFFIX}")
}

fn role_file(role: &str) -> String {
    format!("roles/{role}.toml")
}

/// A role being visited: its own roles, and how far through them.
struct Frame {
    role: String,
    subs: Vec<(String, Origin)>,
    next: usize,
}

struct Loader<'a> {
    tree: &'a dyn ConfigTree,
    opts: &'a LoadOptions,
    diags: Vec<Diagnostic>,
    /// Parsed files by repo path; `None` when the file failed to parse.
    parsed: HashMap<String, Option<ParsedFile>>,
}
impl Loader<'_> {
    /// The rollout policy, from `fleet.toml` at the repo's root.
    fn fleet_policy(&mut self) -> Result<Option<FleetPolicy>, LoadError> {
        if self.tree.kind(FLEET_FILE)?.is_none() {
            return Ok(None);
        }
        let text = match String::from_utf8(self.tree.read(FLEET_FILE)?) {
            Ok(t) => t,
            Err(_) => {
                self.diags.push(Diagnostic::file(
                    FLEET_FILE,
                    "not valid UTF-8, so not a TOML file",
                ));
                return Ok(None);
            }
        };
        match super::fleet::parse(&text) {
            Ok(p) => Ok(Some(p)),
            Err(d) => {
                self.diags.extend(d);
                Ok(None)
            }
        }
    }

    /// The host's secret variables, from `hosts/<host>.secrets.toml.age`
    /// beside its host file, when there is one. Its values never reach the
    /// desired state's `vars` (which is stored and shown).
    fn secret_vars(&mut self, host_file: &str) -> Result<Option<SecretVars>, LoadError> {
        let file = secret_vars_file(host_file);
        match self.tree.kind(&file)? {
            None => return Ok(None),
            Some(EntryKind::File { .. }) => {}
            Some(_) => {
                self.diags
                    .push(Diagnostic::file(&file, "is not a regular file"));
                return Ok(None);
            }
        }
        let sealed = self.tree.read(&file)?;
        let plain = match self.opts.secrets.open(&file, &sealed) {
            Ok(Opened::Plain(p)) => p,
            Ok(Opened::Checked) => return Ok(Some(SecretVars::Placeholders)),
            Err(e) => {
                self.diags.push(Diagnostic::file(&file, e));
                // Its variables are not reported undefined a second time.
                return Ok(Some(SecretVars::Placeholders));
            }
        };
        // Parse errors name the place, never the text around it: that is
        // the secret.
        let table = String::from_utf8(plain)
            .map_err(|_| "the decrypted content is not UTF-8 text".to_owned())
            .and_then(|text| {
                text.parse::<toml::Table>().map_err(|e| {
                    let at = e.span().map_or(0, |r| r.start);
                    let line = SourceText::new(&file, &text).origin(at).line;
                    format!(
                        "the decrypted content is not TOML (line {line}: {})",
                        e.message().trim_end()
                    )
                })
            });
        match table {
            Ok(t) => Ok(Some(SecretVars::Table(t))),
            Err(e) => {
                self.diags.push(Diagnostic::file(&file, e));
                Ok(Some(SecretVars::Placeholders))
            }
        }
    }

    /// Reads and parses a repo file once. `Ok(None)`: it is not a readable
    /// TOML file (reported).
    fn parse(&mut self, file: &str) -> Result<Option<ParsedFile>, LoadError> {
        if let Some(p) = self.parsed.get(file) {
            return Ok(p.clone());
        }
        self.opts.check_stop()?;
        let result = match self.tree.kind(file)? {
            Some(EntryKind::File { .. }) => {
                let bytes = self.tree.read(file)?;
                match String::from_utf8(bytes) {
                    Ok(text) => {
                        let cx = Ctx::new(file, &text);
                        // Kept even with errors, so the roles it names are
                        // still read and their problems reported too.
                        let parsed = parse_file(&cx, &text, &self.opts.state_dir, Stage::Top);
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

    /// The resources and checks of `file` (read whole before, its top
    /// level valid), their values computed in `scope`.
    fn resources(
        &mut self,
        file: &str,
        scope: &Scope,
    ) -> Result<(Vec<Decl>, Vec<CheckDecl>), LoadError> {
        self.opts.check_stop()?;
        let bytes = self.tree.read(file)?;
        let Ok(text) = String::from_utf8(bytes) else {
            return Ok((Vec::new(), Vec::new()));
        };
        let cx = Ctx::new(file, &text);
        let parsed = parse_file(&cx, &text, &self.opts.state_dir, Stage::Resources(scope));
        self.diags.extend(cx.into_diagnostics());
        Ok((parsed.decls, parsed.checks))
    }

    /// Depth first: a role's own roles come before it; each role once.
    /// Iterative, with its own stack: a chain of roles as deep as a repo
    /// likes cannot overflow the process's stack.
    fn visit_roles(&mut self, roots: &[(String, Origin)]) -> Result<Vec<String>, LoadError> {
        let mut order = Vec::new();
        let mut done: HashSet<String> = HashSet::new();
        let mut frames: Vec<Frame> = Vec::new();
        let mut on_stack: HashMap<String, usize> = HashMap::new();
        for (role, origin) in roots {
            self.enter_role(role, origin, &mut frames, &mut on_stack, &done)?;
            while let Some(top) = frames.last_mut() {
                if let Some((sub, origin)) = top.subs.get(top.next).cloned() {
                    top.next += 1;
                    self.enter_role(&sub, &origin, &mut frames, &mut on_stack, &done)?;
                } else if let Some(f) = frames.pop() {
                    on_stack.remove(&f.role);
                    done.insert(f.role.clone());
                    order.push(f.role);
                }
            }
        }
        Ok(order)
    }

    /// Starts visiting `role` (referenced at `referenced_at`) unless it is
    /// done already, or reports why it cannot be.
    fn enter_role(
        &mut self,
        role: &str,
        referenced_at: &Origin,
        frames: &mut Vec<Frame>,
        on_stack: &mut HashMap<String, usize>,
        done: &HashSet<String>,
    ) -> Result<(), LoadError> {
        if done.contains(role) {
            return Ok(());
        }
        if let Some(&pos) = on_stack.get(role) {
            let mut cycle: Vec<&str> = frames[pos..].iter().map(|f| f.role.as_str()).collect();
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
        on_stack.insert(role.to_owned(), frames.len());
        frames.push(Frame {
            role: role.to_owned(),
            subs: parsed.roles,
            next: 0,
        });
        Ok(())
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
    fn a_cancelled_run_stops_loading() {
        let t = MemTree::new().file("hosts/h.toml", "[[file]]\npath = '/x'\ncontent = ''\n");
        let opts = LoadOptions::default();
        opts.cancel.cancel();
        let err = load(&t, "h", &Facts::default(), &opts).expect_err("stopped");
        assert!(
            matches!(&err, LoadError::Read(e) if e.to_string().contains("asked to stop")),
            "{err}"
        );
    }

    /// Regression: a chain of 20,000 roles, each including the next,
    /// overflowed the stack (the process aborted with SIGSEGV).
    #[test]
    fn a_very_deep_chain_of_roles_loads() {
        const DEPTH: usize = 20_000;
        let mut t = MemTree::new().file("hosts/h.toml", "roles = ['r0']\n");
        for i in 0..DEPTH {
            let next = if i + 1 < DEPTH {
                format!("roles = ['r{}']\n", i + 1)
            } else {
                "[[directory]]\npath = '/deep'\n".to_owned()
            };
            t = t.file(&format!("roles/r{i}.toml"), next);
        }
        let d = load_mem(&t, "h").expect("valid");
        assert_eq!(d.roles.len(), DEPTH);
        assert_eq!(d.roles[0], format!("r{}", DEPTH - 1), "deepest first");
        assert_eq!(paths(&d), ["directory:/deep"]);
        // A cycle at the bottom of a deep chain is still named.
        let t = t.file(&format!("roles/r{}.toml", DEPTH - 1), "roles = ['r0']\n");
        let e = errors(&t, "h");
        assert!(
            e[0].contains("role cycle: r0 -> r1 -> "),
            "{}",
            &e[0][..200.min(e[0].len())]
        );
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
                Resource::File(f) if f.path == p => Some(
                    String::from_utf8_lossy(f.content.bytes().unwrap_or_default()).into_owned(),
                ),
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
