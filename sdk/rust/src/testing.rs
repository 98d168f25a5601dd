//! Native unit testing of plugin logic, through the same batch loop the component runs.
//!
//! ```
//! use cdc_sdk::prelude::*;
//! use cdc_sdk::testing::{self, TestEvent};
//!
//! struct Greeter;
//! impl Transform for Greeter {
//!     fn describe() -> Description {
//!         Description::new("greeter", "1").reads(["name"]).writes([ColumnDef::text("greeting")])
//!     }
//!     fn configure(_: &Config) -> Result<Self, String> { Ok(Greeter) }
//!     fn apply(&self, e: &mut Event<'_>) -> Outcome {
//!         match e.text("name") {
//!             Some(n) => { e.set_fmt("greeting", format_args!("hello {n}")); Outcome::Keep }
//!             None => Outcome::reject("no name"),
//!         }
//!     }
//! }
//!
//! let plugin: Greeter = testing::configure(&[]).unwrap();
//! let results = testing::run(&plugin, [
//!     TestEvent::create().after("name", "Ada"),
//!     TestEvent::create().after("name", Value::Null),
//! ]);
//! assert_eq!(results[0].text("greeting"), Some("hello Ada"));
//! assert_eq!(results[1].reason(), Some("no name"));
//! ```
//!
//! The harness mimics the host: it sends only the columns the plugin declares in `reads` (before
//! images only with `reads_before`), checks the description and the output shape, and panics with a
//! clear message when one is wrong.

use crate::Transform;
use crate::batch::{BatchBuilder, DecodedEvent, EventSource, decode_output, validate_output};
use crate::config::Config;
use crate::event::{Op, Outcome};
use crate::run::Runner;
use crate::value::{Decimal, IntoValue, OwnedValue, Value};

/// An event to feed a plugin in a test, built with a chain of calls.
#[derive(Debug, Clone)]
pub struct TestEvent {
    op: Op,
    source: EventSource,
    after: Vec<(String, OwnedValue)>,
    before: Vec<(String, OwnedValue)>,
}

impl TestEvent {
    /// An event of kind `op` with empty images, from table `public.events`.
    pub fn new(op: Op) -> Self {
        TestEvent { op, source: EventSource::default(), after: Vec::new(), before: Vec::new() }
    }
    /// An insert.
    pub fn create() -> Self {
        Self::new(Op::Create)
    }
    /// An update.
    pub fn update() -> Self {
        Self::new(Op::Update)
    }
    /// A delete (give it a before image; like the host, leave the after image empty).
    pub fn delete() -> Self {
        Self::new(Op::Delete)
    }
    /// A snapshot read.
    pub fn read() -> Self {
        Self::new(Op::Read)
    }
    /// A truncate.
    pub fn truncate() -> Self {
        Self::new(Op::Truncate)
    }

    /// Sets an after-image column (`&str`, `String`, `i64`, [`Decimal`], [`Value::Null`], ...).
    pub fn after(mut self, name: &str, value: impl IntoValue) -> Self {
        let v = value.with_value(|v| OwnedValue::from(v));
        self.after.push((name.to_owned(), v));
        self
    }

    /// Sets a before-image column.
    pub fn before(mut self, name: &str, value: impl IntoValue) -> Self {
        let v = value.with_value(|v| OwnedValue::from(v));
        self.before.push((name.to_owned(), v));
        self
    }

    /// Sets an after-image decimal column from its text (`"-5.00"`); panics when it is not a decimal.
    pub fn after_decimal(self, name: &str, decimal: &str) -> Self {
        let d: Decimal = decimal.parse().unwrap_or_else(|e| panic!("after_decimal({name:?}): {e}"));
        self.after(name, d)
    }

    /// Sets the source table.
    pub fn table(mut self, schema: &str, table: &str) -> Self {
        self.source.schema = schema.to_owned();
        self.source.table = table.to_owned();
        self
    }
    /// Sets the log sequence number.
    pub fn lsn(mut self, lsn: i64) -> Self {
        self.source.lsn = Some(lsn);
        self
    }
    /// Sets the transaction id.
    pub fn txid(mut self, txid: i64) -> Self {
        self.source.txid = Some(txid);
        self
    }
    /// Sets the commit time (milliseconds since the epoch).
    pub fn ts_ms(mut self, ts_ms: i64) -> Self {
        self.source.ts_ms = ts_ms;
        self
    }
    /// Marks the event as read by a snapshot.
    pub fn snapshot(mut self, snapshot: bool) -> Self {
        self.source.snapshot = snapshot;
        self
    }
}

/// What a plugin did with one [`TestEvent`].
#[derive(Debug, Clone, PartialEq)]
pub struct TestResult {
    /// The event's outcome.
    pub outcome: Outcome,
    /// Every declared write column with its value for this event, in declared order.
    pub writes: Vec<(String, OwnedValue)>,
}

impl TestResult {
    /// The written value of `column`. Panics when `column` is not a declared write.
    pub fn get(&self, column: &str) -> Value<'_> {
        match self.writes.iter().find(|(n, _)| n == column) {
            Some((_, v)) => v.as_value(),
            None => panic!(
                "`{column}` is not a write column of this plugin (writes: {:?})",
                self.writes.iter().map(|(n, _)| n).collect::<Vec<_>>()
            ),
        }
    }

    /// The written text of `column` (`None` when null). Panics when it is not text.
    pub fn text(&self, column: &str) -> Option<&str> {
        match self.get(column) {
            Value::Null => None,
            Value::Text(s) | Value::Json(s) => Some(s),
            v => panic!("`{column}` holds {}, not text", v.type_name()),
        }
    }

    /// The written decimal of `column` (`None` when null).
    pub fn decimal(&self, column: &str) -> Option<Decimal> {
        self.get(column).as_decimal()
    }

    /// The written integer of `column` (`None` when null).
    pub fn int(&self, column: &str) -> Option<i64> {
        self.get(column).as_int()
    }

    /// Whether the event is kept.
    pub fn is_keep(&self) -> bool {
        self.outcome == Outcome::Keep
    }

    /// Whether the event is dropped.
    pub fn is_drop(&self) -> bool {
        self.outcome == Outcome::Drop
    }

    /// The reject reason, when rejected.
    pub fn reason(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Reject(r) => Some(r),
            _ => None,
        }
    }
}

impl From<DecodedEvent> for TestResult {
    fn from(d: DecodedEvent) -> Self {
        TestResult { outcome: d.outcome, writes: d.writes }
    }
}

/// Builds a plugin from `pairs`, as the host's `configure` does.
pub fn configure<T: Transform>(pairs: &[(&str, &str)]) -> Result<T, String> {
    T::configure(&Config::from_pairs(pairs.iter().copied()))
}

/// Packs `events` into one batch as the host would for `T` (declared columns only).
pub fn batch_for<T: Transform>(events: impl IntoIterator<Item = TestEvent>) -> crate::wit::Batch {
    let d = T::describe();
    let all = d.reads_everything();
    let declared = |(n, _): &(String, OwnedValue)| all || d.reads.contains(n);
    let mut b = BatchBuilder::new();
    for e in events {
        let after = e.after.into_iter().filter(declared).collect();
        let before =
            if d.reads_before { e.before.into_iter().filter(declared).collect() } else { Vec::new() };
        b.push_owned(e.op, &e.source, after, before);
    }
    b.build().unwrap_or_else(|e| panic!("test events do not form a batch: {e}"))
}

/// Runs `events` through `plugin` as one batch; one [`TestResult`] per event, in order.
///
/// Panics when the plugin's description is invalid or its output is malformed.
pub fn run<T: Transform>(plugin: &T, events: impl IntoIterator<Item = TestEvent>) -> Vec<TestResult> {
    let d = T::describe();
    if let Err(e) = d.validate() {
        panic!("invalid description of `{}`: {e}", d.name);
    }
    let batch = batch_for::<T>(events);
    let output = crate::run_batch(plugin, &batch);
    if let Err(e) = validate_output(&output, batch.ops.len(), &d.writes) {
        panic!("malformed output: {e}");
    }
    decode_output(&output)
        .unwrap_or_else(|e| panic!("malformed output: {e}"))
        .into_iter()
        .map(TestResult::from)
        .collect()
}

/// Runs a single event through `plugin`.
pub fn run_one<T: Transform>(plugin: &T, event: TestEvent) -> TestResult {
    run(plugin, [event]).remove(0)
}

/// Runs `events` through a plugin configured with `pairs`; panics when configuration fails.
pub fn run_with<T: Transform>(
    pairs: &[(&str, &str)],
    events: impl IntoIterator<Item = TestEvent>,
) -> Vec<TestResult> {
    let plugin: T = configure(pairs).unwrap_or_else(|e| panic!("configure failed: {e}"));
    run(&plugin, events)
}

/// A [`Runner`] configured with `pairs`; panics when configuration fails.
pub fn runner<T: Transform>(pairs: &[(&str, &str)]) -> Runner<T> {
    Runner::configure(&Config::from_pairs(pairs.iter().copied()))
        .unwrap_or_else(|e| panic!("configure failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    #[derive(Debug)]
    struct Probe;
    impl Transform for Probe {
        fn describe() -> Description {
            Description::new("probe", "1")
                .reads(["a", "n"])
                .reads_before(true)
                .writes([ColumnDef::text("out"), ColumnDef::int64("n2")])
        }
        fn configure(c: &Config) -> Result<Self, String> {
            c.parse_or::<i32>("x", 0).map(|_| Probe)
        }
        fn apply(&self, e: &mut Event<'_>) -> Outcome {
            let src = e.source();
            let before = e.before("a").as_text().unwrap_or("-");
            let after = e.text("a").unwrap_or("-");
            e.set_fmt(
                "out",
                format_args!("{}:{}.{}:{before}>{after}:{}", e.op(), src.schema, src.table, src.snapshot),
            );
            let n = e.int("n");
            e.set("n2", n.map(|n| n * 2));
            if after == "new" {
                // not declared in reads: a recorded mistake
                let _ = e.get("unsent");
            }
            Outcome::Keep
        }
    }

    #[test]
    fn harness_sends_declared_columns_only() {
        let r = run(
            &Probe,
            [
                TestEvent::update()
                    .table("crm", "people")
                    .before("a", "old")
                    .after("a", String::from("new"))
                    .after("n", 21i64)
                    .after("unsent", "ignored"),
                TestEvent::read().snapshot(true),
            ],
        );
        assert!(r[0].reason().unwrap_or_default().contains("`unsent`"), "{:?}", r[0]);
        assert_eq!(r[1].text("out"), Some("read:public.events:->-:true"));
        assert_eq!(r[1].get("n2"), Value::Null);
        let ok = run_one(&Probe, TestEvent::update().before("a", "o").after("a", "n").after("n", 2i32));
        assert_eq!(ok.text("out"), Some("update:public.events:o>n:false"));
        assert_eq!(ok.int("n2"), Some(4));
        assert!(ok.is_keep());
    }

    #[test]
    fn configure_errors_surface() {
        assert!(configure::<Probe>(&[("x", "nope")]).unwrap_err().contains("`x`"));
        assert_eq!(run_with::<Probe>(&[("x", "1")], [TestEvent::create()]).len(), 1);
        assert_eq!(runner::<Probe>(&[]).description().name, "probe");
    }

    #[test]
    #[should_panic(expected = "not a write column")]
    fn unknown_result_column_panics() {
        run_one(&Probe, TestEvent::create()).get("nope");
    }
}
