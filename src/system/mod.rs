//! The only code that touches the host: filesystem, accounts, facts (and,
//! with later work, packages and services).

pub mod accounts;
pub mod facts;
pub mod fsroot;
