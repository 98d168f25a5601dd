//! The batch loop: [`Transform`], [`Runner`] and [`run_batch`].

use std::cell::Cell;

use crate::column::ColumnWriter;
use crate::config::Config;
use crate::describe::{ColumnDef, Description};
use crate::event::{BatchView, Event, Outcome, ReadSpec, Writes};
use crate::wit;

/// A transform plugin: describe the columns, build from configuration, decide per event.
///
/// Implement it, then export it with [`export_transform!`](crate::export_transform).
pub trait Transform: Sized + 'static {
    /// What the plugin is and which columns it reads, writes and removes. Must not depend on
    /// configuration (the host calls it before `configure`).
    fn describe() -> Description;

    /// Builds the plugin from its configuration. The error is shown to the operator as it is: name the
    /// key and the bad value.
    fn configure(config: &Config) -> Result<Self, String>;

    /// Decides what happens to one event, setting declared write columns on the way.
    fn apply(&self, event: &mut Event<'_>) -> Outcome;
}

/// The parts of a [`Description`] the batch loop needs, resolved once.
#[derive(Debug, Clone)]
struct Plan {
    reads: ReadSpec,
    writes: Vec<ColumnDef>,
}

impl Plan {
    fn new(d: &Description) -> Self {
        Plan {
            reads: ReadSpec { all: d.reads_everything(), names: d.reads.clone(), before: d.reads_before },
            writes: d.writes.clone(),
        }
    }
}

/// A configured plugin, ready to process batches: it calls [`Transform::describe`] once, up front.
///
/// This is what the exported component runs, and what a native benchmark should run to execute the
/// very same code outside WebAssembly:
///
/// ```
/// # use cdc_sdk::prelude::*;
/// # struct Upper;
/// # impl Transform for Upper {
/// #     fn describe() -> Description { Description::new("upper", "1").reads(["a"]).writes([ColumnDef::text("b")]) }
/// #     fn configure(_: &Config) -> Result<Self, String> { Ok(Upper) }
/// #     fn apply(&self, e: &mut Event<'_>) -> Outcome {
/// #         let up = e.text("a").map(str::to_uppercase);
/// #         e.set("b", up);
/// #         Outcome::Keep
/// #     }
/// # }
/// use cdc_sdk::{Runner, batch::BatchBuilder};
/// let runner = Runner::<Upper>::configure(&Config::new()).unwrap();
/// let mut b = BatchBuilder::new();
/// b.push(Op::Create, &[("a", Value::Text("x"))]);
/// let output = runner.process(&b.build().unwrap());
/// assert_eq!(output.outcomes.len(), 1);
/// ```
pub struct Runner<T> {
    transform: T,
    description: Description,
    plan: Plan,
}

impl<T: Transform> Runner<T> {
    /// Wraps an already built plugin.
    pub fn new(transform: T) -> Self {
        let description = T::describe();
        let plan = Plan::new(&description);
        Runner { transform, description, plan }
    }

    /// Configures the plugin (see [`Transform::configure`]) and wraps it.
    pub fn configure(config: &Config) -> Result<Self, String> {
        T::configure(config).map(Self::new)
    }

    /// The plugin.
    pub fn transform(&self) -> &T {
        &self.transform
    }

    /// The plugin's description.
    pub fn description(&self) -> &Description {
        &self.description
    }

    /// Processes one batch: one outcome per event, one column per declared write.
    pub fn process(&self, batch: &wit::Batch) -> wit::Output {
        process(&self.transform, &self.plan, batch)
    }
}

/// Processes one batch natively with `transform`, exactly as the exported component does.
///
/// Calls [`Transform::describe`] on every call; to process many batches, build a [`Runner`] once.
pub fn run_batch<T: Transform>(transform: &T, batch: &wit::Batch) -> wit::Output {
    process(transform, &Plan::new(&T::describe()), batch)
}

fn process<T: Transform>(transform: &T, plan: &Plan, batch: &wit::Batch) -> wit::Output {
    let len = batch.ops.len();
    let view = match BatchView::new(batch, &plan.reads) {
        Ok(v) => v,
        Err(e) => return reject_all(len, &plan.writes, &format!("malformed batch: {e}")),
    };
    let mut writes = Writes::new(plan.writes.iter().map(|w| ColumnWriter::new(&w.name, w.ty, len)).collect());
    let mut outcomes = Vec::with_capacity(len);
    for row in 0..view.len() {
        let mut event = Event { view: &view, writes: &mut writes, row, error: Cell::new(None) };
        let outcome = transform.apply(&mut event);
        let error = event.error.into_inner();
        for c in &mut writes.columns {
            c.fill_null(row);
        }
        outcomes.push(match (error, outcome) {
            (None, o) => o.to_wit(),
            (Some(e), Outcome::Reject(r)) => wit::Outcome::Reject(format!("{e}; {r}")),
            (Some(e), _) => wit::Outcome::Reject(e),
        });
    }
    let output =
        wit::Output { outcomes, writes: writes.columns.into_iter().map(ColumnWriter::finish).collect() };
    match validate_output(&output, len, &plan.writes) {
        Ok(()) => output,
        Err(e) => reject_all(len, &plan.writes, &format!("internal error: {e}")),
    }
}

/// An output that rejects all `len` events with `reason` (write columns all null).
pub fn reject_all(len: usize, writes: &[ColumnDef], reason: &str) -> wit::Output {
    wit::Output {
        outcomes: vec![wit::Outcome::Reject(reason.to_owned()); len],
        writes: writes
            .iter()
            .map(|w| {
                let mut c = ColumnWriter::new(&w.name, w.ty, len);
                for row in 0..len {
                    c.fill_null(row);
                }
                c.finish()
            })
            .collect(),
    }
}

/// Checks an output's shape against its batch: one outcome per event, and one column per declared
/// write, in order, with the declared name and type and one value per event.
pub fn validate_output(output: &wit::Output, batch_len: usize, writes: &[ColumnDef]) -> Result<(), String> {
    if output.outcomes.len() != batch_len {
        return Err(format!("{} outcomes for {batch_len} events", output.outcomes.len()));
    }
    if output.writes.len() != writes.len() {
        return Err(format!("{} write columns, {} declared", output.writes.len(), writes.len()));
    }
    for (col, def) in output.writes.iter().zip(writes) {
        if col.name != def.name {
            return Err(format!("write column `{}` where `{}` is declared", col.name, def.name));
        }
        let reader = crate::column::ColumnReader::new(col, batch_len)
            .map_err(|e| format!("write column `{}`: {e}", col.name))?;
        if reader.column_type() != def.ty {
            return Err(format!(
                "write column `{}` is {}, declared {}",
                col.name,
                reader.column_type(),
                def.ty
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchBuilder;
    use crate::prelude::*;

    struct Echo;
    impl Transform for Echo {
        fn describe() -> Description {
            Description::new("copy", "1")
                .reads(["a", "n"])
                .writes([ColumnDef::text("b"), ColumnDef::decimal("d", 20, 2)])
        }
        fn configure(_: &Config) -> Result<Self, String> {
            Ok(Echo)
        }
        fn apply(&self, e: &mut Event<'_>) -> Outcome {
            match e.text("a") {
                Some("drop") => return Outcome::Drop,
                Some("undeclared") => e.set("zzz", "x"),
                Some("undeclared-read") => drop(e.get("qqq")),
                Some("wrong-type") => e.set("d", "text"),
                Some("reject") => return Outcome::reject("no"),
                _ => {}
            }
            let a = e.text("a");
            e.set("b", a);
            if let Some(n) = e.int("n") {
                e.set("d", n);
            }
            Outcome::Keep
        }
    }

    fn batch(rows: &[(&str, Option<i64>)]) -> wit::Batch {
        let mut b = BatchBuilder::new();
        b.column_type("n", ColumnType::Int64);
        for (a, n) in rows {
            b.push(Op::Create, &[("a", Value::Text(a)), ("n", Value::from(*n))]);
        }
        b.build().unwrap()
    }

    #[test]
    fn shape_and_values() {
        let out = Runner::new(Echo).process(&batch(&[("x", Some(5)), ("drop", None), ("y", None)]));
        assert!(validate_output(&out, 3, &Echo::describe().writes).is_ok());
        assert!(matches!(out.outcomes[..], [wit::Outcome::Keep, wit::Outcome::Drop, wit::Outcome::Keep]));
        let b = crate::batch::ColumnReader::new(&out.writes[0], 3).unwrap();
        assert_eq!(b.get(0), Ok(Value::Text("x")));
        assert_eq!(b.get(1), Ok(Value::Null));
        assert_eq!(b.get(2), Ok(Value::Text("y")));
        let d = crate::batch::ColumnReader::new(&out.writes[1], 3).unwrap();
        assert_eq!(d.get(0).unwrap().to_string(), "5.00");
        assert!(d.get(2).unwrap().is_null());
    }

    #[test]
    fn mistakes_reject_with_the_column_name() {
        let out = run_batch(
            &Echo,
            &batch(&[("undeclared", None), ("undeclared-read", None), ("wrong-type", None), ("ok", None)]),
        );
        let reasons: Vec<_> = out
            .outcomes
            .iter()
            .map(|o| match o {
                wit::Outcome::Reject(r) => r.clone(),
                _ => String::new(),
            })
            .collect();
        assert!(reasons[0].contains("`zzz`") && reasons[0].contains("writes"), "{}", reasons[0]);
        assert!(reasons[1].contains("`qqq`") && reasons[1].contains("reads"), "{}", reasons[1]);
        assert!(reasons[2].contains("`d`") && reasons[2].contains("text"), "{}", reasons[2]);
        assert_eq!(reasons[3], "");
        assert!(validate_output(&out, 4, &Echo::describe().writes).is_ok());
    }

    #[test]
    fn empty_and_malformed_batches() {
        let out = run_batch(&Echo, &batch(&[]));
        assert!(out.outcomes.is_empty());
        assert_eq!(out.writes.len(), 2);
        assert!(validate_output(&out, 0, &Echo::describe().writes).is_ok());

        let mut bad = batch(&[("x", None), ("y", None)]);
        bad.after[0].present.pop();
        let out = run_batch(&Echo, &bad);
        assert_eq!(out.outcomes.len(), 2);
        match &out.outcomes[0] {
            wit::Outcome::Reject(r) => assert!(r.contains("malformed") && r.contains("`a`"), "{r}"),
            o => panic!("{o:?}"),
        }
        assert!(validate_output(&out, 2, &Echo::describe().writes).is_ok());

        let mut bad = batch(&[("x", None)]);
        bad.sources[0].table = 9;
        assert!(
            matches!(&run_batch(&Echo, &bad).outcomes[0], wit::Outcome::Reject(r) if r.contains("table"))
        );
    }

    #[test]
    fn validate_output_catches_bad_shapes() {
        let writes = Echo::describe().writes;
        let good = run_batch(&Echo, &batch(&[("x", None)]));
        let mut short = good.clone();
        short.outcomes.clear();
        assert!(validate_output(&short, 1, &writes).unwrap_err().contains("outcomes"));
        let mut missing = good.clone();
        missing.writes.pop();
        assert!(validate_output(&missing, 1, &writes).is_err());
        let mut renamed = good.clone();
        renamed.writes[0].name = "other".into();
        assert!(validate_output(&renamed, 1, &writes).unwrap_err().contains("`other`"));
        let mut short_col = good.clone();
        short_col.writes[0].present.push(true);
        assert!(validate_output(&short_col, 1, &writes).is_err());
        let mut swapped = good;
        swapped.writes.swap(0, 1);
        assert!(validate_output(&swapped, 1, &writes).is_err());
    }
}
