//! The config-repo model: what operators write, and what one host should be.
//!
//! Pure: nothing here touches the host, git or the network. The repo is read
//! through [`tree::ConfigTree`]; facts arrive as a value, and the versions
//! of installed packages through a lookup `system` gives (see
//! `package_facts`: only the names a template reads are asked).

pub(crate) mod checks;
mod content;
pub(crate) mod diag;
pub(crate) mod facts;
pub(crate) mod fleet;
pub(crate) mod kinds;
pub(crate) mod load;
mod merge;
pub(crate) mod model;
mod options;
mod package_facts;
pub(crate) mod parse;
mod parser;
pub(crate) mod schema;
pub(crate) mod secrets;
mod sshkey;
pub(crate) mod template;
pub(crate) mod textedit;
pub mod tree;
mod values;

pub use diag::Diagnostic;
pub use facts::{
    CustomFact, CustomFacts, DefaultRoute, Facts, FactsRead, InstalledPackage, Mount, PackageBuild,
    PackageFact, PackageLookup, Packages,
};
pub use load::{LoadError, LoadOptions, load};
pub use model::DesiredState;
pub(crate) use parser::VALIDATE_PLACEHOLDER;
pub use tree::{ConfigTree, EntryKind, MemTree};
