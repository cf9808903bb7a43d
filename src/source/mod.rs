//! The only code that reads the config repo from outside the process: a
//! directory tree (`--repo DIR`), or the git cache with fetch, signature
//! verification and rewind protection.

pub mod dir;
pub mod git;
pub mod verify;
