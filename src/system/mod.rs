//! The only code that touches the host: filesystem, accounts, facts (and,
//! with later work, packages and services).

pub mod accounts;
pub mod command;
pub mod dnf;
pub mod facts;
pub mod fsroot;
pub mod package_store;
pub mod rpm;
pub mod systemctl;
