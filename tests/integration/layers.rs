//! The house rules of `src/`, checked from the code's own imports: which
//! room may import which (lib.rs's module docs say why), that only `main`
//! imports `cli`, and that no two files import each other.
//!
//! Every `use` tree and every inline `crate::…`/`super::…` path outside
//! comments and test modules is resolved to the file that defines it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Rooms (top-level modules of `src/`) and the rooms each must never
/// import.
const FORBIDDEN: &[(&str, &[&str])] = &[
    // The model and the planner are pure.
    (
        "desired",
        &[
            "store", "system", "source", "cli", "app", "converge", "config", "daemon", "report",
        ],
    ),
    (
        "plan",
        &[
            "store", "system", "source", "cli", "app", "converge", "config", "daemon", "report",
        ],
    ),
    // So are the agent's rules.
    (
        "agent",
        &[
            "store", "system", "source", "cli", "app", "converge", "config", "daemon", "report",
        ],
    ),
    // The edges know nothing of the engine, the use cases or each other's
    // rooms (the state directory and the host share only `durable`).
    (
        "store",
        &[
            "system", "source", "cli", "app", "converge", "daemon", "report", "config",
        ],
    ),
    (
        "system",
        &[
            "store", "source", "cli", "app", "converge", "daemon", "report", "config",
        ],
    ),
    (
        "source",
        &[
            "store", "cli", "app", "converge", "daemon", "report", "config",
        ],
    ),
    ("converge", &["cli", "app", "daemon", "report", "config"]),
    ("app", &["cli", "daemon", "report"]),
    // What the outside world sees is fed events and values; it decides
    // nothing and touches only its own files.
    (
        "report",
        &[
            "cli", "app", "daemon", "store", "system", "source", "config",
        ],
    ),
    ("daemon", &["cli"]),
    // The dashboard (`fleet serve`) is an operator's page over the use
    // cases: a room of its own because it serves HTTP, which no use case
    // does; it reads the fleet through `app` and `fleet` only, and is
    // never the daemon (hosts open no port).
    (
        "dashboard",
        &[
            "cli", "daemon", "store", "system", "source", "converge", "desired", "plan", "agent",
            "report",
        ],
    ),
];

/// Leaves that every room may use and that import no other room.
const LEAVES: &[&str] = &["cancel", "durable", "fault", "outcome", "random", "words"];

/// The kind a file of `desired/kinds/` is the home of (not the registry,
/// `mod.rs`, which every kind reads).
fn kind_module(rel: &str) -> Option<&str> {
    rel.strip_prefix("desired/kinds/")
        .filter(|name| *name != "mod.rs")
}

/// A file of `src/` and the files it imports.
#[derive(Debug, Default)]
struct Graph {
    /// File (relative to `src/`) -> files it imports.
    edges: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    fn of(src: &Path) -> Graph {
        let mut files = Vec::new();
        collect(src, &mut files);
        let mut g = Graph::default();
        for file in &files {
            let rel = file
                .strip_prefix(src)
                .expect("under src")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(file).expect("read source");
            let module = module_of(&rel);
            let mut targets = BTreeSet::new();
            for path in referenced_paths(&code_only(&text), &module, src) {
                if let Some(target) = resolve(src, &path)
                    && target != rel
                {
                    targets.insert(target);
                }
            }
            g.edges.insert(rel, targets);
        }
        g
    }

    /// Every rule broken, in words.
    fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (from, targets) in &self.edges {
            let room = room(from);
            for to in targets {
                let to_room = room_of(to);
                if let Some((_, forbidden)) = FORBIDDEN.iter().find(|(r, _)| *r == room)
                    && forbidden.contains(&to_room.as_str())
                {
                    out.push(format!(
                        "{from} imports {to}: {room} must not import {to_room}"
                    ));
                }
                if to_room == "cli" && room != "cli" && from != "main.rs" {
                    out.push(format!("{from} imports {to}: only main imports cli"));
                }
                if LEAVES.contains(&room.as_str()) && to_room != room {
                    out.push(format!("{from} imports {to}: {room} is a leaf"));
                }
                if kind_module(from)
                    .zip(kind_module(to))
                    .is_some_and(|(a, b)| a != b)
                {
                    out.push(format!(
                        "{from} imports {to}: a resource kind keeps to its own module"
                    ));
                }
                if from < to && self.edges.get(to).is_some_and(|t| t.contains(from)) {
                    out.push(format!("{from} and {to} import each other"));
                }
            }
        }
        out
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("list src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file: `a/b.rs` and `a/b/mod.rs` are `a::b`.
fn module_of(rel: &str) -> Vec<String> {
    let stem = rel.trim_end_matches(".rs");
    let mut parts: Vec<String> = stem.split('/').map(str::to_owned).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn room(rel: &str) -> String {
    if rel == "main.rs" || rel == "lib.rs" {
        return rel.trim_end_matches(".rs").to_owned();
    }
    room_of(rel)
}

fn room_of(rel: &str) -> String {
    rel.split('/')
        .next()
        .unwrap_or(rel)
        .trim_end_matches(".rs")
        .to_owned()
}

/// The text without comments and without the test modules (which sit at
/// the end of a file and may use anything).
fn code_only(text: &str) -> String {
    let end = text.find("#[cfg(test)]").unwrap_or(text.len());
    text[..end]
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Absolute module paths (`["store", "snapshot", "Prior"]`) referenced by
/// `code`, the text of module `module`.
fn referenced_paths(code: &str, module: &[String], src: &Path) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // `use` trees, braces expanded; what is left is searched for inline
    // paths.
    let mut rest = code;
    let mut inline = String::new();
    while let Some(at) = find_use(rest) {
        inline.push_str(&rest[..at]);
        let after = &rest[at..];
        let end = after.find(';').unwrap_or(after.len());
        for p in expand(after[..end].trim()) {
            out.extend(absolute(&p, module, src));
        }
        rest = &after[end..];
    }
    inline.push_str(rest);
    let code = inline.as_str();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            let prev = code[..at].chars().next_back();
            from = at + start.len();
            if prev.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: String = code[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let segs: Vec<String> = path
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            out.extend(absolute(&segs, module, src));
        }
    }
    out
}

/// Where the next `use` statement's tree starts.
fn find_use(code: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = code[from..].find("use ") {
        let at = from + i;
        let prev = code[..at].chars().next_back();
        if prev.is_none_or(|c| c.is_whitespace() || c == ';' || c == '{' || c == '}') {
            return Some(at + 4);
        }
        from = at + 4;
    }
    None
}

/// `a::{b, c::{d, e}}` -> `[a, b]`, `[a, c, d]`, `[a, c, e]`.
fn expand(tree: &str) -> Vec<Vec<String>> {
    // Renames (`x as y`) say nothing about where `x` is.
    let words: Vec<&str> = tree.split_whitespace().collect();
    let mut kept = String::new();
    let mut skip = 0;
    for w in &words {
        if skip > 0 {
            skip -= 1;
            continue;
        }
        if *w == "as" {
            skip = 1;
            continue;
        }
        kept.push_str(w);
    }
    let tree = kept;
    let mut out = Vec::new();
    expand_into(&tree, &mut Vec::new(), &mut out);
    out
}

fn expand_into(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let Some(open) = tree.find('{') else {
        let mut p = prefix.clone();
        p.extend(
            tree.split("::")
                .filter(|s| !s.is_empty() && *s != "*" && *s != "self")
                .map(str::to_owned),
        );
        out.push(p);
        return;
    };
    let head = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let added: Vec<String> = head
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let depth = prefix.len();
    prefix.extend(added);
    for part in split_top(inner) {
        expand_into(&part, prefix, out);
    }
    prefix.truncate(depth);
}

/// Splits at commas outside braces.
fn split_top(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for c in s.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Makes a path absolute from the crate root, or `None` for other crates.
fn absolute(path: &[String], module: &[String], src: &Path) -> Option<Vec<String>> {
    let (first, rest) = path.split_first()?;
    let mut base: Vec<String> = match first.as_str() {
        // The binary names the library by its crate name.
        "crate" | "driftless" => Vec::new(),
        "self" => module.to_vec(),
        "super" => {
            let mut m = module.to_vec();
            m.pop();
            let mut rest = rest;
            while rest.first().is_some_and(|s| s == "super") {
                m.pop();
                rest = &rest[1..];
            }
            m.extend(rest.iter().cloned());
            return Some(m);
        }
        // A child module of this one (`use render::Report`).
        child
            if resolve(src, &[module, &[child.to_owned()]].concat())
                .is_some_and(|f| module_of(&f).len() > module.len()) =>
        {
            let mut m = module.to_vec();
            m.push(child.to_owned());
            m
        }
        _ => return None,
    };
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The file that defines the longest module prefix of `path`.
fn resolve(src: &Path, path: &[String]) -> Option<String> {
    for n in (1..=path.len()).rev() {
        let p = path[..n].join("/");
        for candidate in [format!("{p}.rs"), format!("{p}/mod.rs")] {
            if src.join(&candidate).is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

#[test]
fn imports_keep_to_the_house_rules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = Graph::of(&src);
    // The reader sees the imports it must see, so an empty list of
    // violations means something.
    let edges: usize = g.edges.values().map(BTreeSet::len).sum();
    assert!(
        edges > 80,
        "only {edges} imports found: the reader is broken"
    );
    for (from, to) in [
        ("main.rs", "cli/mod.rs"),
        ("cli/mod.rs", "cli/render.rs"),
        ("app/converge.rs", "agent/policy.rs"),
        ("converge/transaction.rs", "store/mod.rs"),
        ("store/generations.rs", "store/json.rs"),
        ("system/fsroot.rs", "durable.rs"),
        ("daemon/runtime.rs", "app/mod.rs"),
        ("cli/client.rs", "daemon/protocol.rs"),
        ("desired/kinds/file.rs", "desired/kinds/mod.rs"),
    ] {
        assert!(
            g.edges.get(from).is_some_and(|t| t.contains(to)),
            "{from} -> {to} not seen: {:?}",
            g.edges.get(from)
        );
    }
    let v = g.violations();
    assert!(v.is_empty(), "house rules broken:\n{}", v.join("\n"));
}

#[test]
fn the_checker_catches_a_broken_rule() {
    let d = tempfile::tempdir().expect("tempdir");
    let src = d.path();
    let file = |p: &str, text: &str| {
        let path = src.join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    file(
        "lib.rs",
        "pub mod desired;\npub mod system;\npub mod cli;\n",
    );
    file("desired/mod.rs", "pub mod model;\n");
    file(
        "desired/model.rs",
        "use crate::system::{fsroot::FsRoot, other};\n// use crate::cli::x; is a comment\n",
    );
    file("system/mod.rs", "pub mod fsroot;\npub mod other;\n");
    file("system/fsroot.rs", "pub fn f() { super::other::g(); }\n");
    file(
        "system/other.rs",
        "pub fn g() { crate::system::fsroot::f(); crate::cli::run(); }\n",
    );
    file("cli/mod.rs", "pub fn run() {}\n");
    file("desired/kinds/mod.rs", "pub mod file;\npub mod repo;\n");
    file("desired/kinds/file.rs", "pub struct File;\n");
    file(
        "desired/kinds/repo.rs",
        "use super::file::File;\nuse super::Kind;\n",
    );
    let v = Graph::of(src).violations();
    for want in [
        "desired/model.rs imports system/fsroot.rs: desired must not import system",
        "desired/model.rs imports system/other.rs: desired must not import system",
        "system/other.rs imports cli/mod.rs: only main imports cli",
        "system/fsroot.rs and system/other.rs import each other",
        "desired/kinds/repo.rs imports desired/kinds/file.rs: a resource kind keeps to its own module",
    ] {
        assert!(v.iter().any(|x| x == want), "missing `{want}` in {v:#?}");
    }
    assert_eq!(v.len(), 6, "{v:#?}");
}
