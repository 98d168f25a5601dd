//! cdc-host: Debezium change events → WebAssembly transforms → Apache Iceberg.
//!
//! The modules follow the data flow: [`source`] reads records, [`decode`] turns Debezium JSON into
//! columnar [`change::ChangeBatch`]es, [`transform`] runs the plugin chain, [`encode`] shapes Arrow
//! batches for the table, [`sink`] writes and commits them to Iceberg; [`pipeline`] drives the loop.

pub mod change;
pub mod config;
pub mod decode;
pub mod embed;
pub mod encode;
pub mod error;
pub mod fault;
pub mod metrics;
pub mod pipeline;
pub mod progress;
pub mod route;
pub mod schema;
pub mod sink;
pub mod source;
pub mod transform;
