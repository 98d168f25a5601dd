//! The one place the host generates bindings for `wit/transform.wit`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "transform",
});

pub use cdc::transform::log::Level;
pub use cdc::transform::types as wit_types;
