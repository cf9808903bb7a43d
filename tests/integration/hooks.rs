//! `[[hook]]`: commands run after a converge on the outcomes they name,
//! with the documented `DRIFTLESS_*` environment; a failing or hanging
//! hook never changes the outcome or the exit code.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::util::{Env, converge_args, hook_records, write_repo};

/// Each run of the recording hook: its `DRIFTLESS_*` variables.
fn recorded(log: &Path) -> Vec<BTreeMap<String, String>> {
    hook_records(&std::fs::read_to_string(log).unwrap_or_default())
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.lines().last().expect("a JSON line")).expect("JSON")
}

const APP_CONF: &str = "[[file]]\npath = '/etc/app.conf'\ncontent = \"v1\\n\"\n";

#[test]
fn hooks_run_on_their_outcomes_with_the_documented_environment() {
    let env = Env::new();
    let log = env.path().join("hook.log");
    let repo = env.path().join("repo");
    let root = env.path().join("root");
    // The recorder, then a failing hook and one that outlives its timeout:
    // neither may change what the converge reports.
    env.set_config(&format!(
        "[[hook]]\nname = 'record'\ncommand = ['/bin/sh', '-c', 'env | grep ^DRIFTLESS_ | sort >> {log}; echo --- >> {log}']\non = ['changed', 'rolled_back', 'held', 'quarantined']\n\
         [[hook]]\nname = 'fails'\ncommand = ['/bin/sh', '-c', 'echo mail server down >&2; exit 3']\non = ['changed', 'rolled_back']\n\
         [[hook]]\nname = 'hangs'\ncommand = ['/bin/sleep', '60']\non = ['changed']\ntimeout = '1s'\n",
        log = log.display()
    ));
    write_repo(&repo, &[("hosts/h.toml", APP_CONF)]);
    // What the agent itself recorded of the last converge.
    let status = || json(&env.run(&["status", "--json"]).expect_code(0).stdout)["status"].clone();
    let converge = || {
        let mut args = converge_args(&repo, &root, "h");
        args.push("--json".into());
        env.run(&args)
    };

    // Changed: every hook for `changed` ran; the slow one was killed at its
    // timeout, the failing one only logged.
    let started = Instant::now();
    let run = converge();
    run.expect_code(2);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the hanging hook was not killed at its timeout"
    );
    let doc = json(&run.stdout);
    assert_eq!(doc["result"], "changed");
    assert!(
        run.stderr.contains("hook failed") && run.stderr.contains("fails"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hangs"), "{}", run.stderr);
    let runs = recorded(&log);
    assert_eq!(runs.len(), 1, "{runs:?}");
    let first = &runs[0];
    let want =
        |k: &str, v: &str| assert_eq!(first.get(k).map(String::as_str), Some(v), "{k}: {first:?}");
    want("DRIFTLESS_OUTCOME", "changed");
    want("DRIFTLESS_QUARANTINED", "0");
    let changes = doc["changes"].as_array().expect("changes").len();
    assert_eq!(changes, 2, "/etc and /etc/app.conf");
    want("DRIFTLESS_CHANGES", &changes.to_string());
    want("DRIFTLESS_DRIFTED", "0");
    want("DRIFTLESS_HOST", "h");
    want("DRIFTLESS_ERROR", "");
    want("DRIFTLESS_GENERATION", &doc["generation"].to_string());
    let st = status();
    want(
        "DRIFTLESS_COMMIT",
        st["last_run"]["key"].as_str().expect("key"),
    );

    // In sync: not named by the recorder, so nothing ran.
    converge().expect_code(0);
    assert_eq!(recorded(&log).len(), 1);

    // A failing check: rolled back, the content quarantined, one run of the
    // recorder (for both reasons at once) with the error.
    write_repo(
        &repo,
        &[(
            "hosts/h.toml",
            &format!(
                "{}[[check]]\nname = 'broken'\ncommand = ['false']\nretries = 0\n",
                APP_CONF.replace("v1", "v2")
            ),
        )],
    );
    let run = converge();
    run.expect_code(4);
    let st = status();
    let runs = recorded(&log);
    assert_eq!(runs.len(), 2, "{runs:?}");
    let rb = &runs[1];
    assert_eq!(rb["DRIFTLESS_OUTCOME"], "rolled_back");
    assert_eq!(
        rb["DRIFTLESS_COMMIT"],
        st["last_run"]["key"].as_str().expect("key")
    );
    assert!(rb["DRIFTLESS_ERROR"].contains("broken"), "{rb:?}");
    assert_eq!(st["quarantine"]["key"], st["last_run"]["key"], "{st}");
    assert_eq!(rb["DRIFTLESS_QUARANTINED"], "1");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/app.conf")).expect("app.conf"),
        "v1\n"
    );

    // The same quarantined content again: held.
    converge().expect_code(3);
    let runs = recorded(&log);
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert_eq!(runs[2]["DRIFTLESS_OUTCOME"], "held");
    assert_eq!(runs[2]["DRIFTLESS_QUARANTINED"], "0");

    // A plan is no converge: no hook.
    let mut plan = converge_args(&repo, &root, "h");
    plan[0] = "plan".into();
    plan.retain(|a| a != "--now" && a != "--create-root");
    env.run(&plan);
    assert_eq!(recorded(&log).len(), 3);
}

/// Regression (issue 19, 6): a `[[command]]` printing 200 MB on stdout
/// drove driftless to a 393 MB peak (all of it buffered, then copied); the
/// same for a `[[hook]]`. Only a bounded tail is kept while streaming.
#[test]
fn a_command_or_hook_that_prints_200_mb_does_not_grow_driftless() {
    let env = Env::new();
    let repo = env.path().join("repo");
    let root = env.path().join("root");
    let chatty = "['/bin/sh', '-c', 'head -c 200000000 /dev/zero | tr \"\\\\000\" x']";
    env.set_config(&format!(
        "[[hook]]\nname = 'chatty'\ncommand = {chatty}\non = ['changed']\ntimeout = '60s'\n"
    ));
    write_repo(
        &repo,
        &[(
            "hosts/h.toml",
            &format!(
                "{APP_CONF}[[command]]\nname = 'chatty'\ncommand = {chatty}\nunless = ['/bin/false']\ntimeout = '60s'\n"
            ),
        )],
    );
    let (run, peak_kib) =
        crate::util::run_measured(&env.config(), &converge_args(&repo, &root, "h"));
    run.expect_code(2);
    eprintln!("peak RSS with 2 x 200 MB of output: {peak_kib} KiB");
    assert!(
        peak_kib < 64 * 1024,
        "driftless peaked at {} MB with 200 MB of output",
        peak_kib / 1024
    );
}

/// Regression (issue 19, 7 and 8): a failing command whose stderr was one
/// 300 KB line put all of it into the error, the history and the log, and
/// the `rolled_back` hook could not start ("Argument list too long": its
/// DRIFTLESS_ERROR was over the kernel's limit); for an invalid repo
/// DRIFTLESS_ERROR was empty, and for a plan that cannot be made it said
/// only "cannot plan: 1 problem".
#[test]
fn a_hook_hears_what_failed_bounded_and_with_its_causes() {
    let env = Env::new();
    let log = env.path().join("hook.log");
    let repo = env.path().join("repo");
    let root = env.path().join("root");
    env.set_config(&format!(
        "[[hook]]\nname = 'record'\ncommand = ['/bin/sh', '-c', 'env | grep ^DRIFTLESS_ | sort >> {log}; echo --- >> {log}']\non = ['rolled_back', 'invalid', 'error']\n",
        log = log.display()
    ));
    write_repo(
        &repo,
        &[(
            "hosts/h.toml",
            &format!(
                "{APP_CONF}[[command]]\nname = 'loud'\ncommand = ['/bin/sh', '-c', 'head -c 300000 /dev/zero | tr \"\\\\000\" e >&2; exit 3']\nunless = ['/bin/false']\n"
            ),
        )],
    );
    let mut args = converge_args(&repo, &root, "h");
    let run = env.run(&args);
    run.expect_code(4);
    assert!(
        run.stderr.len() < 64 * 1024,
        "{} bytes of stderr",
        run.stderr.len()
    );
    assert!(
        run.stdout.len() < 64 * 1024,
        "{} bytes of stdout",
        run.stdout.len()
    );
    let runs = recorded(&log);
    assert_eq!(
        runs.len(),
        1,
        "the rolled_back hook did not run: {}",
        run.stderr
    );
    let error = &runs[0]["DRIFTLESS_ERROR"];
    assert!(
        error.contains("command:loud") || error.contains("exit code 3"),
        "{error}"
    );
    assert!(error.len() <= 8 * 1024 + 4, "{} bytes", error.len());
    let history = env.run(&["history", "--json", "1"]);
    history.expect_code(0);
    assert!(
        history.stdout.len() < 64 * 1024,
        "{} bytes of history",
        history.stdout.len()
    );

    // An invalid repo: the hook hears which problem, where.
    write_repo(
        &repo,
        &[(
            "hosts/h.toml",
            "[[file]]\npath = '/etc/t'\ncontent = '{{ vars.nope }}'\ntemplate = true\n",
        )],
    );
    env.run(&args).expect_code(1);
    let runs = recorded(&log);
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[1]["DRIFTLESS_OUTCOME"], "invalid");
    let error = &runs[1]["DRIFTLESS_ERROR"];
    assert!(
        error.contains("the config repo is invalid (1 problem): hosts/h.toml:3:")
            && error.contains("vars.nope"),
        "{error}"
    );

    // A plan that cannot be made: the hook hears the problem.
    write_repo(
        &repo,
        &[(
            "hosts/h.toml",
            "[[file]]\npath = '/etc/t'\ncontent = 'x'\nowner = 'nosuchuser'\n",
        )],
    );
    args.push("--json".to_owned());
    let run = env.run(&args);
    run.expect_code(1);
    let runs = recorded(&log);
    assert_eq!(runs.len(), 3, "{runs:?}");
    let error = &runs[2]["DRIFTLESS_ERROR"];
    assert!(
        error.contains("cannot plan") && error.contains("owner `nosuchuser` does not exist"),
        "{error}"
    );
}

/// A hook runs as root: one that group or others could change (the file
/// or a directory above it) is refused, as sshd refuses an
/// `authorized_keys` others can write; the outcome stands.
#[test]
fn a_hook_others_could_change_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let repo = env.path().join("repo");
    let root = env.path().join("root");
    let dir = env.path().join("hooks");
    std::fs::create_dir(&dir).unwrap();
    let marker = env.path().join("ran");
    let hook = dir.join("hook.sh");
    std::fs::write(&hook, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    env.set_config(&format!(
        "[[hook]]\nname = 'loose'\ncommand = ['{}']\non = ['changed']\n",
        hook.display()
    ));
    write_repo(&repo, &[("hosts/h.toml", APP_CONF)]);
    let run = env.run(&converge_args(&repo, &root, "h"));
    run.expect_code(2);
    assert!(!marker.exists(), "a hook others could replace ran");
    assert!(
        run.stderr.contains("hook loose refused") && run.stderr.contains("0777"),
        "{}",
        run.stderr
    );
    // Tightened: it runs.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(root.join("etc/app.conf"), "drift\n").unwrap();
    env.run(&converge_args(&repo, &root, "h")).expect_code(2);
    assert!(marker.exists(), "the hook did not run once it was safe");
}

/// One request a stub HTTP server received: the request line, the headers
/// (lower-cased names) and the body.
struct Received {
    line: String,
    headers: BTreeMap<String, String>,
    body: String,
}

/// An HTTP server on 127.0.0.1 that answers every request `201 Created`
/// and hands each one over.
fn stub_server() -> (String, std::sync::mpsc::Receiver<Received>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut headers = BTreeMap::new();
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
            }
            let length: usize = headers
                .get("content-length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let _ = stream.write_all(
                b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            let _ = tx.send(Received {
                line: line.trim_end().to_owned(),
                headers,
                body: String::from_utf8(body).unwrap(),
            });
        }
    });
    (url, rx)
}

/// An example hook copied where driftless accepts it (a root-owned
/// directory no one else may write), with a root-only file beside it
/// holding `secret`.
fn installed_hook(env: &Env, name: &str, secret: &str) -> (String, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = env.path().join("libexec");
    std::fs::create_dir_all(&dir).unwrap();
    let hook = dir.join(name);
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/hooks")
            .join(name),
        &hook,
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret_file = dir.join(format!("{name}.secret"));
    std::fs::write(&secret_file, secret).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    (
        hook.display().to_string(),
        secret_file.display().to_string(),
    )
}

#[test]
fn the_example_chat_hook_posts_a_rollback_with_its_reason() {
    let env = Env::new();
    let (url, received) = stub_server();
    let (hook, url_file) = installed_hook(&env, "chat-webhook", &format!("{url}/hooks/abc\n"));
    env.set_config(&format!(
        "[[hook]]\nname = 'chat'\ncommand = ['{hook}', '{url_file}']\non = ['rolled_back']\n"
    ));
    let repo = env.path().join("repo");
    write_repo(
        &repo,
        &[(
            "hosts/h.toml",
            "[[file]]\npath = '/etc/app.conf'\ncontent = \"v1\\n\"\n\n[[check]]\nname = 'app \"answers\"'\ncommand = ['false']\nretries = 0\n",
        )],
    );
    let run = env.run(&converge_args(&repo, &env.path().join("root"), "h"));
    run.expect_code(4);
    assert!(!run.stderr.contains("hook failed"), "{}", run.stderr);
    let got = received
        .recv_timeout(Duration::from_secs(10))
        .expect("the hook posted nothing");
    assert_eq!(got.line, "POST /hooks/abc HTTP/1.1");
    assert_eq!(got.headers["content-type"], "application/json");
    let doc: serde_json::Value = serde_json::from_str(&got.body).expect("the body is JSON");
    let text = doc["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("driftless on h: rolled_back, commit quarantined\ncommit sha256:")
            && text.contains(", generation 1\n")
            && text.contains("app \"answers\""),
        "{text}"
    );
}

#[test]
fn the_example_forge_hook_posts_each_forges_commit_status() {
    let env = Env::new();
    let (url, received) = stub_server();
    let (hook, token_file) = installed_hook(&env, "forge-commit-status", "s3cret\n");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let post = |forge: &str, outcome: &str| {
        // GitLab names a project by its id (or its URL-encoded path).
        let repo = if forge == "gitlab" {
            "42"
        } else {
            "infra/config"
        };
        let out = std::process::Command::new(&hook)
            .args([forge, &url, repo, &token_file])
            .env("DRIFTLESS_COMMIT", commit)
            .env("DRIFTLESS_OUTCOME", outcome)
            .env("DRIFTLESS_HOST", "web1")
            .env("DRIFTLESS_GENERATION", "7")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = received
            .recv_timeout(Duration::from_secs(10))
            .expect("nothing posted");
        let doc: serde_json::Value = serde_json::from_str(&got.body).expect("JSON");
        (got, doc)
    };
    let (got, doc) = post("gitea", "changed");
    assert_eq!(
        got.line,
        format!("POST /api/v1/repos/infra/config/statuses/{commit} HTTP/1.1")
    );
    assert_eq!(got.headers["authorization"], "token s3cret");
    assert_eq!(
        doc,
        serde_json::json!({"state": "success", "context": "driftless/web1", "description": "changed on web1 (generation 7)"})
    );
    let (got, doc) = post("github", "rolled_back");
    assert_eq!(
        got.line,
        format!("POST /repos/infra/config/statuses/{commit} HTTP/1.1")
    );
    assert_eq!(got.headers["authorization"], "Bearer s3cret");
    assert_eq!(doc["state"], "failure");
    let (got, doc) = post("gitlab", "invalid");
    assert_eq!(
        got.line,
        format!("POST /api/v4/projects/42/statuses/{commit} HTTP/1.1")
    );
    assert_eq!(got.headers["private-token"], "s3cret");
    assert_eq!(
        (doc["state"].as_str(), doc["name"].as_str()),
        (Some("failed"), Some("driftless/web1"))
    );
    let (_, doc) = post("gitea", "held");
    assert_eq!(doc["state"], "pending");

    // A directory's content is no commit: nothing is posted.
    let out = std::process::Command::new(&hook)
        .args(["gitea", &url, "infra/config", &token_file])
        .env("DRIFTLESS_COMMIT", "sha256:00ff")
        .env("DRIFTLESS_OUTCOME", "changed")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(received.recv_timeout(Duration::from_millis(500)).is_err());
}
