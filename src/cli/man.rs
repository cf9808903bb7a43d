//! The man pages the RPM ships: one per command, from the command line's
//! own definitions (clap_mangen), with the sections an admin looks for
//! that clap does not know (FILES, EXIT STATUS, EXAMPLES, SEE ALSO), and
//! agent.toml(5) for the agent config.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// The agent config's page, kept as roff beside the default config.
const AGENT_TOML_5: &str = include_str!("../../packaging/agent.toml.5");

/// What each command's page says besides its options: its exit codes
/// (`code`, meaning) and examples (command, what it does).
struct Extra {
    exit: &'static [(&'static str, &'static str)],
    examples: &'static [(&'static str, &'static str)],
}

const DONE: &[(&str, &str)] = &[("0", "done"), ("1", "error: nothing was changed")];

/// What each command's page says besides its options, by page name past
/// `driftless-` (empty: the `driftless` page itself).
const EXTRAS: &[(&[&str], Extra)] = &[
    (
        &[""],
        Extra {
            exit: &[
                ("0", "done; in sync"),
                ("1", "error before any change (also a usage error)"),
                (
                    "2",
                    "changed (converge), changes pending (plan), drift found (audit)",
                ),
                (
                    "3",
                    "held: pinned, paused, head quarantined, or the fleet's rollout gate holds the commit",
                ),
                ("4", "the converge failed and was rolled back"),
                ("5", "the rollback failed: the host needs attention"),
            ],
            examples: &[
                (
                    "sudo driftless status",
                    "what the host runs, the last run, the daemon",
                ),
                (
                    "sudo driftless converge --now",
                    "a converge now, through the daemon",
                ),
                (
                    "journalctl -t driftless",
                    "every run, by the daemon or by hand",
                ),
            ],
        },
    ),
    (
        &["validate"],
        Extra {
            exit: &[
                ("0", "valid"),
                ("1", "invalid: each problem as FILE:LINE:COL"),
            ],
            examples: &[(
                "driftless validate --repo . --all-hosts",
                "the config repo's CI: every host file, no host key needed",
            )],
        },
    ),
    (
        &["plan"],
        Extra {
            exit: &[
                ("0", "in sync"),
                ("1", "error"),
                ("2", "changes pending"),
                (
                    "3",
                    "a converge would hold (pinned, paused, quarantined, rollout gate)",
                ),
            ],
            examples: &[
                (
                    "sudo driftless plan",
                    "what the next converge would change, with diffs",
                ),
                (
                    "sudo driftless plan --branch feature",
                    "what trying a branch would change",
                ),
            ],
        },
    ),
    (
        &["converge"],
        Extra {
            exit: &[
                ("0", "in sync"),
                (
                    "1",
                    "error before any change (also a failed fetch: nothing was changed)",
                ),
                (
                    "2",
                    "changed (with --dry-run or in audit mode: drift found, nothing changed)",
                ),
                (
                    "3",
                    "held: pinned, paused, head quarantined, or the rollout gate holds the commit",
                ),
                ("4", "failed and rolled back"),
                ("5", "the rollback failed: the host needs attention"),
            ],
            examples: &[
                (
                    "sudo driftless converge --now",
                    "fetch and converge now, through the daemon",
                ),
                (
                    "sudo driftless converge --now --dry-run",
                    "what it would do; nothing changes",
                ),
                (
                    "sudo driftless converge --now --branch feature",
                    "try a branch on this host; pinned until `driftless resume`",
                ),
            ],
        },
    ),
    (
        &["status"],
        Extra {
            exit: &[(
                "0",
                "always: a daemon that does not answer, or a broken agent config, is shown, not fatal",
            )],
            examples: &[("sudo driftless status --json", "the same, for a script")],
        },
    ),
    (
        &["history"],
        Extra {
            exit: &[("0", "done"), ("1", "no such generation")],
            examples: &[
                (
                    "sudo driftless history",
                    "every generation: outcome, who started it, drift healed",
                ),
                (
                    "sudo driftless history 7",
                    "generation 7 in full: changes, diffs, checks",
                ),
            ],
        },
    ),
    (
        &["rollback"],
        Extra {
            exit: &[
                ("0", "restored; the host is pinned"),
                ("1", "nothing to undo"),
                ("5", "the restore failed"),
            ],
            examples: &[
                (
                    "sudo driftless rollback",
                    "undo the last generation and pin the host",
                ),
                (
                    "sudo driftless resume",
                    "lift the pin: the next converge applies the head",
                ),
            ],
        },
    ),
    (
        &["pause"],
        Extra {
            exit: DONE,
            examples: &[(
                "sudo driftless pause --reason 'INC-42: database migration'",
                "every converge is refused until `driftless unpause`",
            )],
        },
    ),
    (
        &["recover"],
        Extra {
            exit: &[
                ("0", "nothing to do, or restored"),
                ("5", "the restore failed"),
            ],
            examples: &[(
                "sudo driftless recover",
                "roll back what a crash left unfinished",
            )],
        },
    ),
    (
        &["config-check"],
        Extra {
            exit: &[("0", "valid"), ("1", "invalid: FILE:LINE:COL")],
            examples: &[(
                "sudo driftless config check && sudo systemctl reload driftless",
                "what `systemctl reload` runs first",
            )],
        },
    ),
    (
        &["daemon"],
        Extra {
            exit: &[("0", "after a clean stop"), ("1", "cannot start")],
            examples: &[(
                "systemctl status driftless",
                "the daemon's live status line",
            )],
        },
    ),
    (
        &["fleet-wait"],
        Extra {
            exit: &[
                ("0", "landed: every live host (of the wave) runs the commit"),
                ("1", "etcd unreachable, or no [fleet]"),
                ("3", "the timeout passed: names who does not run it"),
                (
                    "4",
                    "the rollout halted: names the host that rolled it back, and why",
                ),
            ],
            examples: &[(
                "driftless fleet nudge --commit \"$SHA\" && driftless fleet wait \"$SHA\" --timeout 30m",
                "in CI after a push: every host runs it within seconds, then wait until it landed",
            )],
        },
    ),
    (
        &["fleet-serve"],
        Extra {
            exit: &[
                ("0", "stopped by Ctrl-C (SIGINT or SIGTERM)"),
                (
                    "1",
                    "cannot start: no [fleet], the address taken, or beyond loopback without TLS and a token or client CA",
                ),
            ],
            examples: &[
                (
                    "driftless fleet serve",
                    "the dashboard on http://127.0.0.1:8430/ (reach it with ssh -L 8430:127.0.0.1:8430)",
                ),
                (
                    "driftless fleet serve --listen 0.0.0.0:8430 --tls-cert dash.crt --tls-key dash.key --token-file dash.token",
                    "beyond loopback: TLS, and the token as Authorization: Bearer",
                ),
            ],
        },
    ),
    (
        &[
            "fleet-status",
            "fleet-halt",
            "fleet-resume",
            "fleet-nudge",
            "fleet",
        ],
        Extra {
            exit: &[("0", "done"), ("1", "etcd unreachable, or no [fleet]")],
            examples: &[
                (
                    "driftless fleet status",
                    "where the fetched head stands, wave by wave",
                ),
                (
                    "driftless fleet halt --reason 'INC-42'",
                    "no host applies a new commit",
                ),
            ],
        },
    ),
];

/// The extras of the command whose page name is `name` (`driftless`,
/// `driftless-converge`, `driftless-fleet-status`).
fn extra(name: &str) -> &'static Extra {
    let sub = name.strip_prefix("driftless-").unwrap_or("");
    EXTRAS
        .iter()
        .find(|(names, _)| names.contains(&sub))
        .map_or(&OTHER, |(_, extra)| extra)
}

/// The page of a command without extras of its own.
const OTHER: Extra = Extra {
    exit: DONE,
    examples: &[],
};

/// Roff-escapes `text` for a line of running text.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// The sections clap does not write.
fn sections(name: &str) -> String {
    let e = extra(name);
    let mut out = String::new();
    out.push_str(".SH EXIT STATUS\n");
    for (code, means) in e.exit {
        out.push_str(&format!(".TP\n\\fB{code}\\fR\n{}\n", roff(means)));
    }
    if !e.examples.is_empty() {
        out.push_str(".SH EXAMPLES\n");
        for (command, does) in e.examples {
            out.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", roff(command), roff(does)));
        }
    }
    out.push_str(concat!(
        ".SH FILES\n",
        ".TP\n\\fB/etc/driftless/agent.toml\\fR, \\fB/etc/driftless/agent.d/*.toml\\fR\n",
        "The agent config and its drop\\-ins, see \\fBagent.toml\\fR(5).\n",
        ".TP\n\\fB/var/lib/driftless\\fR\n",
        "The state directory: generations, snapshots, the git cache, the last good state (root only).\n",
        ".TP\n\\fB/run/driftless/control.sock\\fR\n",
        "The daemon's control socket (root only).\n",
        ".TP\n\\fB/usr/share/driftless/driftless\\-alerts.yml\\fR\n",
        "Prometheus alerting rules for the metrics textfile.\n",
        ".SH SEE ALSO\n",
        "\\fBdriftless\\fR(1), \\fBagent.toml\\fR(5), \\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1); ",
        "the guides in /usr/share/doc/driftless.\n",
    ));
    out
}

/// Writes one page per command that is not hidden (`driftless.1`,
/// `driftless-converge.1`, …) and `agent.toml.5` into `dir`.
pub(super) fn write_pages(cmd: clap::Command, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    page(&cmd, dir)?;
    std::fs::write(dir.join("agent.toml.5"), AGENT_TOML_5)
        .with_context(|| format!("failed to write {}", dir.join("agent.toml.5").display()))
}

fn page(cmd: &clap::Command, dir: &Path) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        page(sub, dir)?;
    }
    let man = clap_mangen::Man::new(cmd.clone());
    let path = dir.join(man.get_filename());
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("driftless")
        .to_owned();
    let mut text = Vec::new();
    man.render(&mut text)
        .with_context(|| format!("failed to render the page of {name}"))?;
    text.extend_from_slice(sections(&name).as_bytes());
    let mut file = std::fs::File::create(&path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    file.write_all(&text)
        .with_context(|| format!("failed to write {}", path.display()))
}

/// `cmd` without its hidden subcommands, for the shell completions (which
/// would offer them).
pub(super) fn without_hidden(cmd: &clap::Command) -> clap::Command {
    let subs: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(without_hidden)
        .collect();
    let mut out = clap::Command::new(cmd.get_name().to_owned())
        .args(cmd.get_arguments().cloned())
        .subcommands(subs);
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    if let Some(v) = cmd.get_version() {
        out = out.version(v.to_owned());
    }
    out
}
