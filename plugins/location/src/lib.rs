//! `location`: `location = "city, state, country"`.
//!
//! Each part is trimmed; null or blank parts are skipped; when no part is left, `location` is null.
//! `city`, `state` and `country` are removed. Configuration: `separator` (default `", "`).

use cdc_sdk::prelude::*;

/// The `location` transform.
#[derive(Debug, Clone)]
pub struct Location {
    separator: String,
}

impl Location {
    /// A plugin joining with `separator`.
    pub fn new(separator: impl Into<String>) -> Self {
        Location { separator: separator.into() }
    }
}

impl Default for Location {
    fn default() -> Self {
        Location::new(", ")
    }
}

impl Transform for Location {
    fn describe() -> Description {
        Description::new("location", env!("CARGO_PKG_VERSION"))
            .reads(["city", "state", "country"])
            .writes([ColumnDef::text("location").doc("city, state and country, trimmed and joined")])
            .removes(["city", "state", "country"])
    }

    fn configure(config: &Config) -> Result<Self, String> {
        Ok(Location::new(config.get_or("separator", ", ")))
    }

    fn apply(&self, event: &mut Event<'_>) -> Outcome {
        let parts = [event.text("city"), event.text("state"), event.text("country")];
        let parts = parts.into_iter().flatten().map(str::trim).filter(|p| !p.is_empty());
        event.set_joined("location", parts, &self.separator);
        Outcome::Keep
    }
}

cdc_sdk::export_transform!(Location);

#[cfg(test)]
mod tests {
    use super::*;
    use cdc_sdk::testing::{self, TestEvent};

    fn location(plugin: &Location, city: Value<'_>, state: Value<'_>, country: Value<'_>) -> Option<String> {
        let r = testing::run_one(
            plugin,
            TestEvent::update().after("city", city).after("state", state).after("country", country),
        );
        assert!(r.is_keep(), "{r:?}");
        r.text("location").map(str::to_owned)
    }

    use Value::{Null, Text};

    #[test]
    fn joins_all_parts() {
        let p = Location::default();
        assert_eq!(
            location(&p, Text("Portland"), Text("OR"), Text("USA")).as_deref(),
            Some("Portland, OR, USA")
        );
    }

    #[test]
    fn trims_and_skips_missing_parts() {
        let p = Location::default();
        assert_eq!(location(&p, Text(" Lyon "), Null, Text(" France")).as_deref(), Some("Lyon, France"));
        assert_eq!(location(&p, Text("  "), Text("Bavaria"), Text("")).as_deref(), Some("Bavaria"));
        assert_eq!(location(&p, Null, Null, Text("Japan ")).as_deref(), Some("Japan"));
        assert_eq!(location(&p, Text("Oslo"), Null, Null).as_deref(), Some("Oslo"));
    }

    #[test]
    fn all_missing_is_null() {
        let p = Location::default();
        assert_eq!(location(&p, Null, Null, Null), None);
        assert_eq!(location(&p, Text(""), Text(" "), Text("\t")), None);
        assert_eq!(testing::run_one(&p, TestEvent::read()).text("location"), None);
    }

    #[test]
    fn configured_separator() {
        let p: Location = testing::configure(&[("separator", " / ")]).unwrap();
        assert_eq!(location(&p, Text("a"), Null, Text("c")).as_deref(), Some("a / c"));
        let d: Location = testing::configure(&[]).unwrap();
        assert_eq!(d.separator, ", ");
    }

    #[test]
    fn description() {
        let d = Location::describe();
        assert_eq!(d.name, "location");
        assert_eq!(d.reads, ["city", "state", "country"]);
        assert_eq!(d.removes, ["city", "state", "country"]);
        assert_eq!(d.writes.len(), 1);
        assert_eq!(d.writes[0].name, "location");
        assert!(d.validate().is_ok());
    }
}
