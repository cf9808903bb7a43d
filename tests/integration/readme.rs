//! The README's quick start is a test: its shell block runs as written
//! (with the demo's paths moved into a temporary directory and the binary
//! under test for `target/release/driftless`), and every line that says
//! `# exit N` must exit N. Every other line must succeed.

use std::path::Path;
use std::process::Command;

/// The first ```sh block after `## Quick start`.
fn quick_start(readme: &str) -> String {
    let section = readme
        .split("\n## Quick start")
        .nth(1)
        .expect("README has a Quick start section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a ```sh block in the Quick start");
    block.to_owned()
}

/// The block as a bash script that checks each line's exit code.
fn checked_script(block: &str, bin: &str, demo: &str, config: &str) -> String {
    let mut script = String::from("set -u\n");
    for (n, line) in block.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The test builds the binary itself.
        if line.starts_with("cargo build") {
            continue;
        }
        let line = line
            .replace("./target/release/driftless", bin)
            .replace("examples/agent-demo.toml", config)
            .replace("/tmp/driftless-demo", demo);
        let (command, expected) = match line.split_once("# exit ") {
            Some((c, code)) => (c.trim().to_owned(), code.trim().parse::<i32>().ok()),
            None => (line.clone(), None),
        };
        let want = expected.unwrap_or(0);
        script.push_str(&format!(
            "{command}\nrc=$?\nif [ $rc -ne {want} ]; then echo \"README line {}: exit $rc, it says {want}: {}\" >&2; exit 99; fi\n",
            n + 1,
            command.replace('"', "'")
        ));
    }
    script
}

#[test]
fn every_command_of_the_quick_start_exits_as_the_readme_says() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(manifest.join("README.md")).unwrap();
    let block = quick_start(&readme);
    assert!(
        block.matches("# exit").count() >= 10,
        "the quick start lost its exit codes:\n{block}"
    );
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("driftless-demo");
    let config = dir.path().join("agent-demo.toml");
    // The demo's agent config, with its state directory moved alongside.
    let text = std::fs::read_to_string(manifest.join("examples/agent-demo.toml")).unwrap();
    std::fs::write(
        &config,
        text.replace("/tmp/driftless-demo", demo.to_str().unwrap()),
    )
    .unwrap();
    let script = checked_script(
        &block,
        env!("CARGO_BIN_EXE_driftless"),
        demo.to_str().unwrap(),
        config.to_str().unwrap(),
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(manifest)
        .env("NO_COLOR", "1")
        .env_remove("DRIFTLESS_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the quick start does not run as the README says:\n{}\n--- stdout\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    // What the README promises the runs show.
    let stdout = String::from_utf8_lossy(&out.stdout);
    for promised in [
        "changes applied (generation 1)",
        "in sync: nothing to change",
        "-edited by hand",
        "vars.admin_contact",
    ] {
        assert!(
            stdout.contains(promised),
            "the quick start did not show {promised:?}:\n{stdout}"
        );
    }
}

#[test]
fn the_help_texts_do_not_promise_what_is_not_there() {
    let help = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_driftless"))
            .args(args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let plan = help(&["plan"]);
    assert!(
        !plan.contains("Apply this commit"),
        "plan --help says it applies:\n{plan}"
    );
    assert!(plan.contains("--commit <REV>"), "{plan}");
    let converge = help(&["converge"]);
    for flag in ["--create-root", "--diff", "--dry-run", "--now"] {
        assert!(converge.contains(flag), "converge --help lacks {flag}");
    }
    let history = help(&["history"]);
    assert!(history.contains("[GENERATION]"), "{history}");
    // Every command the README's table lists exists.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(manifest.join("README.md")).unwrap();
    let top = help(&[]);
    for command in [
        "validate", "plan", "converge", "status", "history", "facts", "rollback", "resume",
        "retry", "recover", "source", "daemon",
    ] {
        assert!(
            readme.contains(&format!("`driftless {command}")),
            "README's table lacks {command}"
        );
        assert!(
            top.contains(&format!("  {command} ")),
            "--help lacks {command}:\n{top}"
        );
    }
}

/// Every test `docs/threat-model.md` points to as proof exists: a claim
/// must not outlive its test.
#[test]
fn the_threat_model_points_only_to_tests_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/threat-model.md")).unwrap();
    let mut sources = String::new();
    let mut stack = vec![root.join("src"), root.join("tests")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                sources.push_str(&std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let named: Vec<&str> = doc
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.contains("::")
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c == ':' || c.is_ascii_digit())
        })
        .collect();
    assert!(named.len() > 20, "only {} tests named", named.len());
    for t in named {
        let name = t.rsplit("::").next().unwrap();
        if name == "tests" {
            continue;
        }
        assert!(
            sources.contains(&format!("fn {name}(")),
            "docs/threat-model.md names `{t}`, which is no test"
        );
    }
}
