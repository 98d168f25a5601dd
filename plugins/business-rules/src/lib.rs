//! `business-rules`: filters and validates customer events.
//!
//! - DELETE events are dropped (config `drop_deletes`, default `true`).
//! - Events without an email (null or blank) are rejected: `missing email` (config `require_email`,
//!   default `true`).
//! - Events whose `lifetime_value` is below `min_lifetime_value` (a decimal, default `0`) are rejected,
//!   e.g. `lifetime_value -5.00 is negative`. A null `lifetime_value` passes. Decimal, integer, float
//!   and decimal-as-text columns are accepted.
//!
//! Reads `email` and `lifetime_value`; writes and removes nothing.

use cdc_sdk::prelude::*;

/// The `business-rules` transform.
#[derive(Debug, Clone)]
pub struct BusinessRules {
    drop_deletes: bool,
    require_email: bool,
    min_lifetime_value: Decimal,
}

impl Default for BusinessRules {
    fn default() -> Self {
        BusinessRules { drop_deletes: true, require_email: true, min_lifetime_value: Decimal::ZERO }
    }
}

impl Transform for BusinessRules {
    fn describe() -> Description {
        Description::new("business-rules", env!("CARGO_PKG_VERSION")).reads(["email", "lifetime_value"])
    }

    fn configure(config: &Config) -> Result<Self, String> {
        Ok(BusinessRules {
            drop_deletes: config.flag("drop_deletes", true)?,
            require_email: config.flag("require_email", true)?,
            min_lifetime_value: config.parse_or("min_lifetime_value", Decimal::ZERO)?,
        })
    }

    fn apply(&self, event: &mut Event<'_>) -> Outcome {
        if event.op() == Op::Delete {
            if self.drop_deletes {
                return Outcome::Drop;
            }
            // A kept delete has no after image to validate.
            return Outcome::Keep;
        }
        if self.require_email && event.text("email").is_none_or(|e| e.trim().is_empty()) {
            return Outcome::reject("missing email");
        }
        let below = match event.get("lifetime_value") {
            Value::Null => false,
            Value::Float64(f) => f < self.min_lifetime_value.to_f64(),
            // Decimals as text (e.g. Debezium's `decimal.handling.mode=string`).
            Value::Text(s) => match s.parse::<Decimal>() {
                Ok(d) => d < self.min_lifetime_value,
                Err(_) => return Outcome::Reject(format!("lifetime_value `{s}` is not a number")),
            },
            v => match v.as_decimal() {
                Some(d) => d < self.min_lifetime_value,
                None => {
                    return Outcome::Reject(format!("lifetime_value has unsupported type {}", v.type_name()));
                }
            },
        };
        if below {
            let ltv = event.get("lifetime_value");
            return Outcome::Reject(if self.min_lifetime_value.is_zero() {
                format!("lifetime_value {ltv} is negative")
            } else {
                format!("lifetime_value {ltv} is below {}", self.min_lifetime_value)
            });
        }
        Outcome::Keep
    }
}

cdc_sdk::export_transform!(BusinessRules);

#[cfg(test)]
mod tests {
    use super::*;
    use cdc_sdk::testing::{self, TestEvent};

    fn customer(email: Value<'_>, ltv: Option<&str>) -> TestEvent {
        let e = TestEvent::create().after("email", email);
        match ltv {
            Some(d) => e.after_decimal("lifetime_value", d),
            None => e.after("lifetime_value", Value::Null),
        }
    }

    fn outcome(plugin: &BusinessRules, event: TestEvent) -> Outcome {
        testing::run_one(plugin, event).outcome
    }

    #[test]
    fn valid_customers_are_kept() {
        let p = BusinessRules::default();
        assert_eq!(outcome(&p, customer(Value::Text("a@b.c"), Some("10.50"))), Outcome::Keep);
        assert_eq!(outcome(&p, customer(Value::Text("a@b.c"), Some("0.00"))), Outcome::Keep);
        assert_eq!(outcome(&p, customer(Value::Text("a@b.c"), Some("0"))), Outcome::Keep);
        assert_eq!(outcome(&p, customer(Value::Text("a@b.c"), None)), Outcome::Keep);
        let update = TestEvent::update().after("email", "x@y.z");
        assert_eq!(outcome(&p, update), Outcome::Keep);
    }

    #[test]
    fn missing_email_is_rejected() {
        let p = BusinessRules::default();
        for email in [Value::Null, Value::Text(""), Value::Text("   \t")] {
            let o = outcome(&p, customer(email, Some("1")));
            assert_eq!(o, Outcome::reject("missing email"), "{email:?}");
        }
        assert_eq!(outcome(&p, TestEvent::create()), Outcome::reject("missing email"));
    }

    #[test]
    fn negative_lifetime_value_is_rejected() {
        let p = BusinessRules::default();
        let o = outcome(&p, customer(Value::Text("a@b.c"), Some("-5.00")));
        assert_eq!(o, Outcome::reject("lifetime_value -5.00 is negative"));
        let o = outcome(&p, customer(Value::Text("a@b.c"), Some("-0.01")));
        assert_eq!(o, Outcome::reject("lifetime_value -0.01 is negative"));
        // beyond i64
        let o = outcome(&p, customer(Value::Text("a@b.c"), Some("-123456789012345678901234.5")));
        assert_eq!(o, Outcome::reject("lifetime_value -123456789012345678901234.5 is negative"));
        let o = outcome(&p, customer(Value::Text("a@b.c"), Some("123456789012345678901234.5")));
        assert_eq!(o, Outcome::Keep);
    }

    #[test]
    fn integer_lifetime_values_are_accepted() {
        let p = BusinessRules::default();
        let e = TestEvent::create().after("email", "a@b.c").after("lifetime_value", -3i64);
        assert_eq!(outcome(&p, e), Outcome::reject("lifetime_value -3 is negative"));
        let e = TestEvent::create().after("email", "a@b.c").after("lifetime_value", 3i32);
        assert_eq!(outcome(&p, e), Outcome::Keep);
    }

    #[test]
    fn float_and_text_lifetime_values() {
        let p = BusinessRules::default();
        let e = TestEvent::create().after("email", "a@b.c").after("lifetime_value", -2.5f64);
        assert_eq!(outcome(&p, e), Outcome::reject("lifetime_value -2.5 is negative"));
        let e = TestEvent::create().after("email", "a@b.c").after("lifetime_value", "-5.00");
        assert_eq!(outcome(&p, e), Outcome::reject("lifetime_value -5.00 is negative"));
        let e = TestEvent::create().after("email", "a@b.c").after("lifetime_value", "7");
        assert_eq!(outcome(&p, e), Outcome::Keep);
        let e = TestEvent::create().after("email", "a@b.c").after("lifetime_value", "n/a");
        assert_eq!(outcome(&p, e), Outcome::reject("lifetime_value `n/a` is not a number"));
        let e = TestEvent::create().after("email", "a@b.c").after("lifetime_value", true);
        assert_eq!(outcome(&p, e), Outcome::reject("lifetime_value has unsupported type boolean"));
    }

    #[test]
    fn missing_email_wins_over_negative_value() {
        let p = BusinessRules::default();
        assert_eq!(outcome(&p, customer(Value::Null, Some("-1"))), Outcome::reject("missing email"));
    }

    #[test]
    fn deletes_are_dropped_by_default() {
        let p = BusinessRules::default();
        let delete = || TestEvent::delete().before("email", "a@b.c");
        assert_eq!(outcome(&p, delete()), Outcome::Drop);
        let keep: BusinessRules = testing::configure(&[("drop_deletes", "false")]).unwrap();
        assert_eq!(outcome(&keep, delete()), Outcome::Keep);
    }

    #[test]
    fn require_email_can_be_disabled() {
        let p: BusinessRules = testing::configure(&[("require_email", "false")]).unwrap();
        assert_eq!(outcome(&p, customer(Value::Null, Some("1"))), Outcome::Keep);
        assert_eq!(
            outcome(&p, customer(Value::Null, Some("-1"))),
            Outcome::reject("lifetime_value -1 is negative")
        );
    }

    #[test]
    fn configured_minimum() {
        let p: BusinessRules = testing::configure(&[("min_lifetime_value", "100.00")]).unwrap();
        assert_eq!(
            outcome(&p, customer(Value::Text("a@b.c"), Some("99.99"))),
            Outcome::reject("lifetime_value 99.99 is below 100.00")
        );
        assert_eq!(outcome(&p, customer(Value::Text("a@b.c"), Some("100"))), Outcome::Keep);
        let p: BusinessRules = testing::configure(&[("min_lifetime_value", "-10")]).unwrap();
        assert_eq!(outcome(&p, customer(Value::Text("a@b.c"), Some("-5.00"))), Outcome::Keep);
        assert_eq!(
            outcome(&p, customer(Value::Text("a@b.c"), Some("-10.01"))),
            Outcome::reject("lifetime_value -10.01 is below -10")
        );
    }

    #[test]
    fn config_errors_name_key_and_value() {
        let e = testing::configure::<BusinessRules>(&[("min_lifetime_value", "lots")]).unwrap_err();
        assert!(e.contains("min_lifetime_value") && e.contains("lots"), "{e}");
        let e = testing::configure::<BusinessRules>(&[("drop_deletes", "sometimes")]).unwrap_err();
        assert!(e.contains("drop_deletes") && e.contains("sometimes"), "{e}");
        let e = testing::configure::<BusinessRules>(&[("require_email", "2")]).unwrap_err();
        assert!(e.contains("require_email") && e.contains("`2`"), "{e}");
        let p: BusinessRules = testing::configure(&[]).unwrap();
        assert!(p.drop_deletes && p.require_email && p.min_lifetime_value.is_zero());
    }

    #[test]
    fn mixed_batch() {
        let results = testing::run(
            &BusinessRules::default(),
            [
                customer(Value::Text("a@b.c"), Some("1")),
                TestEvent::delete(),
                customer(Value::Text(" "), None),
                customer(Value::Text("a@b.c"), Some("-5.00")),
            ],
        );
        assert!(results[0].is_keep());
        assert!(results[1].is_drop());
        assert_eq!(results[2].reason(), Some("missing email"));
        assert_eq!(results[3].reason(), Some("lifetime_value -5.00 is negative"));
        assert!(results.iter().all(|r| r.writes.is_empty()));
    }

    #[test]
    fn description() {
        let d = BusinessRules::describe();
        assert_eq!(d.name, "business-rules");
        assert_eq!(d.reads, ["email", "lifetime_value"]);
        assert!(d.writes.is_empty() && d.removes.is_empty() && !d.reads_before);
    }
}
