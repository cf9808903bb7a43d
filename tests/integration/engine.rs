//! The converge engine driven as a library, in-process, as the daemon
//! drives it: the events a sink receives, and per-run cancellation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use driftless::app::{self, App, ConvergeRequest, Outcome, SourceRequest};
use driftless::cancel::Cancel;
use driftless::config::Settings;
use driftless::converge::{Event, Sink};

use crate::util::write_repo;

/// A temporary agent with a `--repo` config repo for host `h` and a root.
struct Agent {
    _dir: tempfile::TempDir,
    app: App,
    repo: PathBuf,
    root: PathBuf,
}

impl Agent {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = Settings {
            state_dir: dir.path().join("state"),
            ..Settings::default()
        };
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::fs::write(root.join("etc/app.conf"), "original\n").expect("write");
        Self {
            repo: dir.path().join("repo"),
            root,
            app: App::new(settings),
            _dir: dir,
        }
    }

    fn declare(&self, host_file: &str) {
        std::fs::remove_dir_all(&self.repo).ok();
        write_repo(&self.repo, &[("hosts/h.toml", host_file)]);
    }

    fn request(&self) -> ConvergeRequest {
        ConvergeRequest {
            source: SourceRequest {
                repo: Some(self.repo.clone()),
                host: Some("h".to_owned()),
                ..SourceRequest::default()
            },
            root: self.root.clone(),
            dry_run: false,
            create_root: true,
            ignore_rollout: false,
            force: false,
            started_by: "the engine test".to_owned(),
            check_in_sync: false,
        }
    }

    fn converge(&self, sink: &mut dyn Sink, cancel: &Cancel) -> app::ConvergeResult {
        app::converge(&self.app, &self.request(), sink, cancel)
    }

    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(path.trim_start_matches('/'))).ok()
    }
}

/// Events with their timings zeroed and the content key checked and
/// blanked, so sequences compare exactly.
fn timeless(events: Vec<Event>) -> Vec<Event> {
    events
        .into_iter()
        .map(|e| match e {
            Event::Finished {
                duration_ms: _,
                key,
                outcome,
                generation,
                changes,
                drifted,
                drifted_resources,
                started_by,
                quarantined,
                audit,
                error,
            } => {
                assert_eq!(started_by, "the engine test");
                assert!(
                    key.as_deref().is_some_and(|k| k.starts_with("sha256:")),
                    "{key:?}"
                );
                Event::Finished {
                    duration_ms: 0,
                    key: None,
                    outcome,
                    generation,
                    changes,
                    drifted,
                    drifted_resources,
                    started_by: String::new(),
                    quarantined,
                    audit,
                    error,
                }
            }
            e => e,
        })
        .collect()
}

fn started(a: &Agent) -> Event {
    Event::Started {
        root: a.root.display().to_string(),
        audit: false,
    }
}

fn finished(outcome: Outcome, changes: usize, quarantined: bool, error: Option<String>) -> Event {
    Event::Finished {
        outcome,
        generation: Some(1),
        changes,
        duration_ms: 0,
        key: None,
        drifted: 0,
        drifted_resources: Vec::new(),
        started_by: String::new(),
        quarantined,
        audit: false,
        error,
    }
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

fn step(started: bool, index: usize, total: usize, resource: &str) -> Event {
    let (resource, verb) = (resource.to_owned(), "write file".to_owned());
    if started {
        Event::StepStarted {
            index,
            total,
            resource,
            verb,
        }
    } else {
        Event::StepFinished {
            index,
            total,
            resource,
            verb,
        }
    }
}

const APP_CONF: &str = "[[file]]\npath = '/etc/app.conf'\ncontent = \"new\\n\"\nmode = '0644'\n";

#[test]
fn a_converge_with_one_file_change_reports_each_step() {
    let a = Agent::new();
    a.declare(APP_CONF);
    let mut events = Vec::new();
    let r = a.converge(&mut events, &Cancel::new());
    assert_eq!(r.run.outcome, Outcome::Changed, "{:?}", r.run.error);
    assert_eq!(
        timeless(events),
        [
            started(&a),
            Event::Loaded {
                host: "h".into(),
                host_file: "hosts/h.toml".into(),
                resources: counts(&[("file", 1)]),
            },
            Event::Planned {
                changes: counts(&[("file", 1)]),
            },
            Event::Began {
                generation: 1,
                changes: 1,
            },
            step(true, 1, 1, "file:/etc/app.conf"),
            step(false, 1, 1, "file:/etc/app.conf"),
            finished(Outcome::Changed, 1, false, None),
        ]
    );
    assert_eq!(a.read("/etc/app.conf").as_deref(), Some("new\n"));
}

#[test]
fn a_failing_check_is_reported_then_rolled_back() {
    let a = Agent::new();
    a.declare(&format!(
        "{APP_CONF}[[check]]\nname = 'broken'\ncommand = ['false']\nretries = 0\n"
    ));
    let mut events = Vec::new();
    let r = a.converge(&mut events, &Cancel::new());
    assert_eq!(r.run.outcome, Outcome::RolledBack);
    let events = timeless(events);
    let error = match &events[7] {
        Event::CheckResult {
            error: Some(error), ..
        } => error.clone(),
        other => panic!("expected the failed check, got {other:?}"),
    };
    assert!(error.contains("check `broken` failed 1 time"), "{error}");
    let reason = match &events[8] {
        Event::RollingBack { reason, .. } => reason.clone(),
        other => panic!("expected the rollback, got {other:?}"),
    };
    assert!(reason.starts_with("health check failed"), "{reason}");
    assert_eq!(
        events,
        [
            started(&a),
            Event::Loaded {
                host: "h".into(),
                host_file: "hosts/h.toml".into(),
                resources: counts(&[("file", 1)]),
            },
            Event::Planned {
                changes: counts(&[("file", 1)]),
            },
            Event::Began {
                generation: 1,
                changes: 1,
            },
            step(true, 1, 1, "file:/etc/app.conf"),
            step(false, 1, 1, "file:/etc/app.conf"),
            Event::CheckAttempt {
                check: "broken".into(),
                attempt: 1,
                attempts: 1,
            },
            Event::CheckResult {
                check: "broken".into(),
                passed: false,
                error: Some(error),
            },
            Event::RollingBack {
                generation: 1,
                reason,
                requested: false,
            },
            Event::Restored { generation: 1 },
            finished(Outcome::RolledBack, 0, true, r.run.error.clone()),
        ]
    );
    assert_eq!(a.read("/etc/app.conf").as_deref(), Some("original\n"));
}

/// Cancels its run's token when a given step starts, as a SIGTERM would.
struct CancelAt<'a> {
    cancel: &'a Cancel,
    index: usize,
    events: Vec<Event>,
}

impl Sink for CancelAt<'_> {
    fn event(&mut self, event: &Event) {
        if let Event::StepStarted { index, .. } = event
            && *index == self.index
        {
            self.cancel.cancel();
        }
        self.events.push(event.clone());
    }
}

#[test]
fn a_cancelled_converge_rolls_back_and_the_next_one_in_the_process_completes() {
    let a = Agent::new();
    a.declare(
        "[[file]]\npath = '/etc/app.conf'\ncontent = \"new\\n\"\n\
         [[file]]\npath = '/etc/b.conf'\ncontent = 'b'\n\
         [[file]]\npath = '/etc/c.conf'\ncontent = 'c'\n",
    );
    // The first run is cancelled while its second step runs.
    let first = Cancel::new();
    let mut sink = CancelAt {
        cancel: &first,
        index: 2,
        events: Vec::new(),
    };
    let r = a.converge(&mut sink, &first);
    assert_eq!(r.run.outcome, Outcome::RolledBack, "{:?}", r.run);
    assert!(
        r.run
            .error
            .as_deref()
            .is_some_and(|e| e.contains("asked to stop before file:/etc/c.conf")),
        "{:?}",
        r.run.error
    );
    assert!(
        sink.events
            .iter()
            .any(|e| matches!(e, Event::Restored { generation: 1 }))
    );
    assert!(
        !sink
            .events
            .iter()
            .any(|e| matches!(e, Event::StepStarted { index: 3, .. })),
        "forward work went on after the stop"
    );
    assert_eq!(a.read("/etc/app.conf").as_deref(), Some("original\n"));
    assert_eq!(a.read("/etc/b.conf"), None);
    // A stop says nothing about the desired state: nothing is quarantined.
    let state = a.app.store.load_state().expect("state");
    assert_eq!(state.quarantine, None);

    // The next run in the same process has a token of its own.
    let mut events = Vec::new();
    let r = a.converge(&mut events, &Cancel::new());
    assert_eq!(r.run.outcome, Outcome::Changed, "{:?}", r.run.error);
    assert_eq!(r.generation, Some(2));
    assert_eq!(r.run.changes.len(), 3);
    for (path, want) in [
        ("/etc/app.conf", "new\n"),
        ("/etc/b.conf", "b"),
        ("/etc/c.conf", "c"),
    ] {
        assert_eq!(a.read(path).as_deref(), Some(want), "{path}");
    }
    assert!(Path::new(&a.app.store.dir().join("last-good.json")).is_file());
}
