//! The git source against real git: file:// and plain paths, real sshd and
//! nginx + git-http-backend over TLS on 127.0.0.1, signed commits made with
//! ssh-keygen and gpg.

mod cli;
pub(crate) mod common;
mod fetch;
mod servers;
mod tree;
mod verify;
