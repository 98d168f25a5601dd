//! The WebAssembly transform chain: plugin loading and sandboxing ([`plugin`]), the batch-level
//! calls and quarantine ([`chain`]), hot reload ([`reload`]), packing a chain to ship
//! it to other processes ([`package`]) and the Arrow ↔ WIT column conversions
//! ([`columns`]).

pub mod chain;
pub mod columns;
pub mod package;
pub mod plugin;
pub mod reload;
pub mod tooling;
pub mod wit;

pub use chain::{Chain, ChainStats, Halt, Stage, Supervision};
pub use package::ChainPackage;
pub use plugin::{CallError, Description, Plugin, Runtime};
pub use reload::{Loader, ReloadOptions, Reloader};
