//! The integration tests, in one binary so that the library and gix are
//! linked once (ripgrep's layout): the command line on fixture repos and
//! temporary roots (`cli`, `transactions`), the git source against real git
//! servers on loopback (`source`), the shipped alert rules under promtool
//! (`alerts`), and the system suites on disposable systemd hosts with the
//! real rpm, dnf and systemd (`system`, root only, skipped unless
//! `--include-ignored`, each with its reason).

// A panic is how a test fails: unwrapping is fine here, and so is telling
// the person running the tests what a slow step is doing.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod alerts;
mod archives;
mod cli;
mod commands;
mod conditions;
mod daemon;
mod dashboard;
mod downloads;
mod edits;
mod engine;
mod etcd;
mod facts;
mod files;
mod fleet;
mod gitserver;
mod hooks;
mod https;
mod json_schema;
mod kinds;
mod layers;
mod operator;
mod prune;
mod readme;
mod reliability;
mod secrets;
mod selinux;
mod source;
mod statcache;
mod system;
mod transactions;
mod upgrade;
mod util;
