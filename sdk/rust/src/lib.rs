//! Write cdc-host transforms as plain Rust over typed, row-style change events.
//!
//! The host hands a plugin batches of change events column by column (see `wit/transform.wit`). This
//! crate hides that: implement [`Transform`] — a [`Description`] of the columns you read and write, a
//! constructor from [`Config`], and [`Transform::apply`] for one [`Event`] — and export it with
//! [`export_transform!`]. The SDK resolves columns once per batch, reads text straight from the packed
//! buffers and writes straight into packed output buffers.
//!
//! ```
//! use cdc_sdk::prelude::*;
//!
//! pub struct NameConcat {
//!     separator: String,
//! }
//!
//! impl Transform for NameConcat {
//!     fn describe() -> Description {
//!         Description::new("name-concat", "0.1.0")
//!             .reads(["first_name", "last_name"])
//!             .writes([ColumnDef::text("full_name")])
//!             .removes(["first_name", "last_name"])
//!     }
//!
//!     fn configure(config: &Config) -> Result<Self, String> {
//!         Ok(NameConcat { separator: config.get_or("separator", " ").to_owned() })
//!     }
//!
//!     fn apply(&self, event: &mut Event<'_>) -> Outcome {
//!         let parts = [event.text("first_name"), event.text("last_name")];
//!         let parts = parts.into_iter().flatten().map(str::trim).filter(|p| !p.is_empty());
//!         event.set_joined("full_name", parts, &self.separator);
//!         Outcome::Keep
//!     }
//! }
//!
//! cdc_sdk::export_transform!(NameConcat);
//! # fn main() {
//! # let r = cdc_sdk::testing::run_one(
//! #     &NameConcat { separator: " ".into() },
//! #     cdc_sdk::testing::TestEvent::create().after("first_name", " Ada ").after("last_name", "Lovelace"),
//! # );
//! # assert_eq!(r.text("full_name"), Some("Ada Lovelace"));
//! # }
//! ```
//!
//! # Running plugin code natively
//!
//! Plugin crates are `cdylib` + `rlib`; the export is only emitted on `wasm32`, so any number of
//! plugins link into one native binary. [`Runner`] (or [`run_batch`]) runs the same batch loop the
//! component runs, on a [`wit::Batch`] built with [`batch::BatchBuilder`]. [`testing`] wraps this for
//! unit tests.

#![deny(missing_docs)]

pub mod batch;
mod column;
mod config;
mod describe;
mod event;
pub mod log;
mod run;
pub mod testing;
mod value;

/// The bindings generated from `wit/transform.wit` (world `transform`).
///
/// Plugin authors do not need them; they are public for [`export_transform!`], for hand-written
/// exports (see the `hostile` test plugin) and for native callers of [`run_batch`].
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "transform",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "cdc_sdk::bindings",
    });
}

/// The WIT data types (`Batch`, `Output`, `Column`, ...) as generated Rust types.
pub use bindings::cdc::transform::types as wit;

pub use config::Config;
pub use describe::{ColumnDef, ColumnType, Description};
pub use event::{Event, Op, Outcome, Source};
pub use run::{Runner, Transform, run_batch};
pub use value::{Decimal, IntoValue, OwnedValue, ParseDecimalError, Value};

/// Everything a plugin usually needs: `use cdc_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::{
        ColumnDef, ColumnType, Config, Decimal, Description, Event, Op, Outcome, Source, Transform, Value,
    };
}

/// Support code for [`export_transform!`]; not a stable API.
#[doc(hidden)]
pub mod __private {
    use crate::{Config, Runner, Transform, wit};

    pub use std::cell::RefCell;

    /// `describe` export.
    pub fn describe<T: Transform>() -> wit::Description {
        T::describe().to_wit()
    }

    /// `configure` export: builds the runner to store.
    pub fn configure<T: Transform>(config: Vec<(String, String)>) -> Result<Runner<T>, String> {
        Runner::configure(&Config::from(config))
    }

    /// `process` export.
    pub fn process<T: Transform>(runner: Option<&Runner<T>>, batch: &wit::Batch) -> wit::Output {
        match runner {
            Some(r) => r.process(batch),
            None => crate::batch::reject_all(
                batch.ops.len(),
                &T::describe().writes,
                "plugin is not configured: configure did not succeed",
            ),
        }
    }
}

/// Exports a [`Transform`] as the component's `transformer` interface.
///
/// `describe` calls [`Transform::describe`]; `configure` calls [`Transform::configure`] and keeps the
/// plugin; `process` runs the batch loop ([`Runner::process`]). Before a successful `configure`, every
/// event is rejected with a reason. Expands to nothing unless the target is `wasm32`, so plugin crates
/// can also be linked natively, side by side, as rlibs.
#[macro_export]
macro_rules! export_transform {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::bindings::exports::cdc::transform::transformer as __transformer;

            ::std::thread_local! {
                static __CDC_SDK_RUNNER: $crate::__private::RefCell<::core::option::Option<$crate::Runner<$ty>>> =
                    const { $crate::__private::RefCell::new(::core::option::Option::None) };
            }

            struct __CdcSdkGuest;

            impl __transformer::Guest for __CdcSdkGuest {
                fn describe() -> __transformer::Description {
                    $crate::__private::describe::<$ty>()
                }

                fn configure(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    // A failed configure leaves the plugin unconfigured.
                    __CDC_SDK_RUNNER.with(|slot| slot.borrow_mut().take());
                    let runner = $crate::__private::configure::<$ty>(config)?;
                    __CDC_SDK_RUNNER.with(|slot| *slot.borrow_mut() = ::core::option::Option::Some(runner));
                    ::core::result::Result::Ok(())
                }

                fn process(batch: __transformer::Batch) -> __transformer::Output {
                    __CDC_SDK_RUNNER.with(|slot| $crate::__private::process::<$ty>(slot.borrow().as_ref(), &batch))
                }
            }

            $crate::bindings::export!(__CdcSdkGuest with_types_in $crate::bindings);
        };
    };
}
