//! `stamp`: a test plugin that writes its own version into `_plugin_version` of every event and keeps
//! it. Built twice by `scripts/build-plugins`: `tests/plugins/stamp-v1.wasm` (version `1.0.0`) and,
//! with the `v2` feature, `tests/plugins/stamp-v2.wasm` (version `2.0.0`): two distinct components of
//! one plugin, to swap between while the host runs and to tell afterwards which one wrote each row.
//!
//! Configuration: none, except `fail` (any value): `configure` fails, for the rejected-reload tests.

use cdc_sdk::prelude::*;

/// The column the version is written to.
pub const VERSION_COLUMN: &str = "_plugin_version";

/// The version this build stamps.
pub const VERSION: &str = if cfg!(feature = "v2") { "2.0.0" } else { "1.0.0" };

/// The `stamp` plugin.
pub struct Stamp;

impl Transform for Stamp {
    fn describe() -> Description {
        Description::new("stamp", VERSION).writes([
            ColumnDef::text(VERSION_COLUMN).doc("version of the stamp plugin that processed the row")
        ])
    }

    fn configure(config: &Config) -> Result<Self, String> {
        if config.get("fail").is_some() {
            return Err("configured to fail (`fail` is set)".to_owned());
        }
        Ok(Stamp)
    }

    fn apply(&self, event: &mut Event<'_>) -> Outcome {
        event.set(VERSION_COLUMN, VERSION);
        Outcome::Keep
    }
}

cdc_sdk::export_transform!(Stamp);

#[cfg(test)]
mod tests {
    use super::*;
    use cdc_sdk::testing::{self, TestEvent};

    #[test]
    fn stamps_its_version() {
        let r = testing::run_with::<Stamp>(&[], [TestEvent::create(), TestEvent::delete()]);
        assert!(r.iter().all(|r| r.is_keep() && r.text(VERSION_COLUMN) == Some(VERSION)));
        assert_eq!(Stamp::describe().version, VERSION);
    }

    #[test]
    fn fail_makes_configure_fail() {
        assert!(testing::configure::<Stamp>(&[("fail", "yes")]).is_err());
        assert!(testing::configure::<Stamp>(&[]).is_ok());
    }
}
