//! The only code that reads the config repo from outside the process: a
//! directory tree today, the git cache (with fetch and verification) next.

pub mod dir;
