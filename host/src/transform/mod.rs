//! The WebAssembly transform chain: plugin loading and sandboxing ([`plugin`]), the batch-level
//! calls ([`chain`]) and the Arrow ↔ WIT column conversions ([`columns`]).

pub mod chain;
pub mod columns;
pub mod plugin;
pub mod wit;

pub use chain::{Chain, ChainStats, Stage};
pub use plugin::{CallError, Description, Plugin, Runtime};
