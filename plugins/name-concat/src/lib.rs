//! `name-concat`: `full_name = first_name + separator + last_name`.
//!
//! Each part is trimmed; null or blank parts are skipped; when no part is left, `full_name` is null.
//! `first_name` and `last_name` are removed. Configuration: `separator` (default `" "`).

use cdc_sdk::prelude::*;

/// The `name-concat` transform.
#[derive(Debug, Clone)]
pub struct NameConcat {
    separator: String,
}

impl NameConcat {
    /// A plugin joining with `separator`.
    pub fn new(separator: impl Into<String>) -> Self {
        NameConcat { separator: separator.into() }
    }
}

impl Default for NameConcat {
    fn default() -> Self {
        NameConcat::new(" ")
    }
}

impl Transform for NameConcat {
    fn describe() -> Description {
        Description::new("name-concat", env!("CARGO_PKG_VERSION"))
            .reads(["first_name", "last_name"])
            .writes([ColumnDef::text("full_name").doc("first_name and last_name, trimmed and joined")])
            .removes(["first_name", "last_name"])
    }

    fn configure(config: &Config) -> Result<Self, String> {
        Ok(NameConcat::new(config.get_or("separator", " ")))
    }

    fn apply(&self, event: &mut Event<'_>) -> Outcome {
        let parts = [event.text("first_name"), event.text("last_name")];
        let parts = parts.into_iter().flatten().map(str::trim).filter(|p| !p.is_empty());
        event.set_joined("full_name", parts, &self.separator);
        Outcome::Keep
    }
}

cdc_sdk::export_transform!(NameConcat);

#[cfg(test)]
mod tests {
    use super::*;
    use cdc_sdk::testing::{self, TestEvent};

    fn full_name(plugin: &NameConcat, first: Value<'_>, last: Value<'_>) -> Option<String> {
        let r =
            testing::run_one(plugin, TestEvent::create().after("first_name", first).after("last_name", last));
        assert!(r.is_keep(), "{r:?}");
        r.text("full_name").map(str::to_owned)
    }

    #[test]
    fn joins_trimmed_parts() {
        let p = NameConcat::default();
        let name = full_name(&p, Value::Text("  Ada "), Value::Text("\tLovelace\n"));
        assert_eq!(name.as_deref(), Some("Ada Lovelace"));
    }

    #[test]
    fn skips_null_and_blank_parts() {
        let p = NameConcat::default();
        assert_eq!(full_name(&p, Value::Text("Ada"), Value::Null).as_deref(), Some("Ada"));
        assert_eq!(full_name(&p, Value::Null, Value::Text("Lovelace")).as_deref(), Some("Lovelace"));
        assert_eq!(full_name(&p, Value::Text("   "), Value::Text("Lovelace")).as_deref(), Some("Lovelace"));
        assert_eq!(full_name(&p, Value::Text(""), Value::Text(" x ")).as_deref(), Some("x"));
    }

    #[test]
    fn all_missing_is_null() {
        let p = NameConcat::default();
        assert_eq!(full_name(&p, Value::Null, Value::Null), None);
        assert_eq!(full_name(&p, Value::Text(" "), Value::Text("")), None);
        // columns absent from the event altogether
        let r = testing::run_one(&p, TestEvent::create());
        assert!(r.is_keep());
        assert_eq!(r.text("full_name"), None);
    }

    #[test]
    fn delete_has_no_after_image() {
        let r = testing::run_one(&NameConcat::default(), TestEvent::delete().before("first_name", "Ada"));
        assert!(r.is_keep());
        assert_eq!(r.text("full_name"), None);
    }

    #[test]
    fn configured_separator() {
        let p: NameConcat = testing::configure(&[("separator", ", ")]).unwrap();
        assert_eq!(
            full_name(&p, Value::Text("Lovelace"), Value::Text("Ada")).as_deref(),
            Some("Lovelace, Ada")
        );
        let default: NameConcat = testing::configure(&[]).unwrap();
        assert_eq!(default.separator, " ");
    }

    #[test]
    fn unicode_and_many_events() {
        let p = NameConcat::default();
        let results = testing::run(
            &p,
            (0..100).map(|i| {
                TestEvent::create()
                    .after("first_name", format!(" Zoë{i} "))
                    .after("last_name", if i % 2 == 0 { Some("Ñúñez") } else { None })
            }),
        );
        assert_eq!(results.len(), 100);
        assert_eq!(results[0].text("full_name"), Some("Zoë0 Ñúñez"));
        assert_eq!(results[1].text("full_name"), Some("Zoë1"));
        assert_eq!(results[98].text("full_name"), Some("Zoë98 Ñúñez"));
    }

    #[test]
    fn description() {
        let d = NameConcat::describe();
        assert_eq!(d.name, "name-concat");
        assert_eq!(d.reads, ["first_name", "last_name"]);
        assert_eq!(d.removes, ["first_name", "last_name"]);
        assert_eq!(d.writes[0].ty, ColumnType::Text);
        assert!(d.validate().is_ok());
    }
}
