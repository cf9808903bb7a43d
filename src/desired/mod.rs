//! The config-repo model: what operators write, and what one host should be.
//!
//! Pure: nothing here touches the host, git or the network. The repo is read
//! through [`tree::ConfigTree`]; facts arrive as a value.

pub mod checks;
mod content;
pub mod diag;
pub mod facts;
pub mod fleet;
pub mod kinds;
pub mod load;
mod merge;
pub mod model;
mod options;
pub(crate) mod parse;
mod parser;
pub mod schema;
pub mod secrets;
pub mod template;
pub mod tree;
mod values;

pub use diag::Diagnostic;
pub use facts::Facts;
pub use load::{LoadError, LoadOptions, load};
pub use model::DesiredState;
pub use tree::{ConfigTree, EntryKind, MemTree};
