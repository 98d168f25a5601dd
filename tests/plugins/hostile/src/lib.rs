//! `hostile`: a test plugin that misbehaves on purpose, to test the host's sandboxing.
//!
//! Configuration:
//! - `mode` (default `pass`) chooses what `process` does:
//!   - `pass`: keeps every event, writes nothing but the optional stamp;
//!   - `trap`: panics (a trap in the component);
//!   - `unreachable`: executes `unreachable`;
//!   - `loop`: spins forever;
//!   - `alloc`: allocates and touches memory without bound;
//!   - `huge`: rejects every event with a reason of `huge_bytes` bytes (default 64 MiB), so the
//!     output is `events × huge_bytes` (more than the plugin's memory limit allows, it runs out of
//!     memory before returning);
//!   - `wrong-length`: returns half as many outcomes as there are events (rounded down);
//!   - `bad-config`: `configure` fails with `mode bad-config always fails`.
//! - `stamp` (optional): text written to `_plugin_stamp` on every kept event, to tell which plugin
//!   version processed a row. `_plugin_stamp` is always declared (the description cannot depend on
//!   configuration); without `stamp` it is null.
//! - `huge_bytes` (optional): reason size for `huge`.
//! - `after` (optional, default 0): the first `after` batches of an instance are passed (as in
//!   `pass`); the mode acts from the next one on. A fresh instance (the host makes one after a trap)
//!   counts from zero again.
//!
//! The misbehaving modes act at the start of `process`, even for an empty batch.

use cdc_sdk::prelude::*;
use cdc_sdk::{Runner, wit};

/// The stamp column.
pub const STAMP_COLUMN: &str = "_plugin_stamp";

/// Default reason size of mode `huge`: 64 MiB.
pub const DEFAULT_HUGE_BYTES: usize = 64 << 20;

/// What the plugin does in `process`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Behave.
    Pass,
    /// Panic.
    Trap,
    /// Execute `unreachable`.
    Unreachable,
    /// Spin forever.
    Loop,
    /// Allocate without bound.
    Alloc,
    /// Return enormous reject reasons.
    Huge,
    /// Return too few outcomes.
    WrongLength,
    /// Fail in `configure`.
    BadConfig,
}

impl Mode {
    const ALL: [(&'static str, Mode); 8] = [
        ("pass", Mode::Pass),
        ("trap", Mode::Trap),
        ("unreachable", Mode::Unreachable),
        ("loop", Mode::Loop),
        ("alloc", Mode::Alloc),
        ("huge", Mode::Huge),
        ("wrong-length", Mode::WrongLength),
        ("bad-config", Mode::BadConfig),
    ];
}

/// The `hostile` plugin.
#[derive(Debug, Clone)]
pub struct Hostile {
    mode: Mode,
    stamp: Option<String>,
    huge_bytes: usize,
    after: u64,
    /// Batches processed by this instance.
    calls: std::cell::Cell<u64>,
}

impl Hostile {
    /// The configured mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether the mode acts on the current batch (the first `after` batches are passed).
    fn misbehaving(&self) -> bool {
        self.calls.get() > self.after
    }
}

impl Transform for Hostile {
    fn describe() -> Description {
        Description::new("hostile", env!("CARGO_PKG_VERSION")).writes([ColumnDef::text(STAMP_COLUMN)
            .doc("the `stamp` configuration value, to tell which plugin version processed a row")])
    }

    fn configure(config: &Config) -> Result<Self, String> {
        let raw = config.get_or("mode", "pass");
        let mode =
            Mode::ALL.iter().find(|(name, _)| *name == raw.trim()).map(|(_, m)| *m).ok_or_else(|| {
                let known: Vec<_> = Mode::ALL.iter().map(|(n, _)| *n).collect();
                format!("config key `mode`: invalid value `{raw}`: expected one of {}", known.join(", "))
            })?;
        if mode == Mode::BadConfig {
            return Err("mode bad-config always fails".to_owned());
        }
        let hostile = Hostile {
            mode,
            stamp: config.get("stamp").map(str::to_owned),
            huge_bytes: config.parse_or("huge_bytes", DEFAULT_HUGE_BYTES)?,
            after: config.parse_or("after", 0)?,
            calls: std::cell::Cell::new(0),
        };
        // Exercises the host's `log` import.
        cdc_sdk::log::info(&format!(
            "configured: mode {raw}, stamp {:?}",
            hostile.stamp.as_deref().unwrap_or("(none)")
        ));
        Ok(hostile)
    }

    fn apply(&self, event: &mut Event<'_>) -> Outcome {
        match self.mode {
            Mode::Huge if self.misbehaving() => Outcome::Reject("x".repeat(self.huge_bytes)),
            _ => {
                if let Some(stamp) = &self.stamp {
                    event.set(STAMP_COLUMN, stamp.as_str());
                }
                Outcome::Keep
            }
        }
    }
}

/// Spins forever in a way the optimizer cannot remove.
fn spin() -> ! {
    let mut i: u64 = 0;
    loop {
        i = std::hint::black_box(i.wrapping_add(1));
    }
}

/// Allocates 1 MiB chunks forever, touching every page, until allocation fails (an abort).
fn exhaust_memory() -> ! {
    const CHUNK: usize = 1 << 20;
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; CHUNK];
        for i in (0..CHUNK).step_by(4096) {
            chunk[i] = 1;
        }
        hoard.push(std::hint::black_box(chunk));
    }
}

fn unreachable_instruction() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}

/// The component's `process`, callable natively: misbehaves as configured, or runs the batch loop.
///
/// Natively, `trap` panics, `unreachable` aborts the process, and `loop`/`alloc` never return.
pub fn process(runner: &Runner<Hostile>, batch: &wit::Batch) -> wit::Output {
    let hostile = runner.transform();
    hostile.calls.set(hostile.calls.get() + 1);
    if !hostile.misbehaving() {
        return runner.process(batch);
    }
    match hostile.mode {
        Mode::Trap => panic!("hostile plugin: mode trap"),
        Mode::Unreachable => unreachable_instruction(),
        Mode::Loop => spin(),
        Mode::Alloc => exhaust_memory(),
        Mode::WrongLength => {
            let mut output = runner.process(batch);
            output.outcomes.truncate(batch.ops.len() / 2);
            output
        }
        Mode::Pass | Mode::Huge | Mode::BadConfig => runner.process(batch),
    }
}

/// Hand-written export: the SDK's `export_transform!` would validate the output shape away.
#[cfg(target_arch = "wasm32")]
mod component {
    use std::cell::RefCell;

    use cdc_sdk::bindings::exports::cdc::transform::transformer::{Batch, Description, Guest, Output};
    use cdc_sdk::{Config, Runner, Transform};

    use super::Hostile;

    thread_local! {
        static RUNNER: RefCell<Option<Runner<Hostile>>> = const { RefCell::new(None) };
    }

    struct Component;

    impl Guest for Component {
        fn describe() -> Description {
            Hostile::describe().to_wit()
        }

        fn configure(config: Vec<(String, String)>) -> Result<(), String> {
            RUNNER.with(|r| r.borrow_mut().take());
            let runner = Runner::configure(&Config::from(config))?;
            RUNNER.with(|r| *r.borrow_mut() = Some(runner));
            Ok(())
        }

        fn process(batch: Batch) -> Output {
            RUNNER.with(|r| match r.borrow().as_ref() {
                Some(runner) => super::process(runner, &batch),
                None => cdc_sdk::batch::reject_all(
                    batch.ops.len(),
                    &Hostile::describe().writes,
                    "plugin is not configured",
                ),
            })
        }
    }

    cdc_sdk::bindings::export!(Component with_types_in cdc_sdk::bindings);
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdc_sdk::batch::{BatchBuilder, decode_output};
    use cdc_sdk::testing::{self, TestEvent};

    fn runner(pairs: &[(&str, &str)]) -> Runner<Hostile> {
        testing::runner(pairs)
    }

    fn batch(n: usize) -> wit::Batch {
        let mut b = BatchBuilder::new();
        for i in 0..n {
            b.push(Op::Create, &[("id", Value::Int64(i as i64))]);
        }
        b.build().unwrap()
    }

    #[test]
    fn pass_keeps_everything() {
        let out = process(&runner(&[("mode", "pass")]), &batch(3));
        let decoded = decode_output(&out).unwrap();
        assert_eq!(decoded.len(), 3);
        assert!(decoded.iter().all(|d| d.outcome == Outcome::Keep));
        assert!(decoded.iter().all(|d| d.writes[0].1.is_null()));
        // default mode is pass
        assert_eq!(runner(&[]).transform().mode(), Mode::Pass);
    }

    #[test]
    fn stamp_is_written_on_kept_events() {
        let r = testing::run_with::<Hostile>(&[("stamp", "v2")], [TestEvent::create(), TestEvent::update()]);
        assert!(r.iter().all(|r| r.is_keep() && r.text(STAMP_COLUMN) == Some("v2")));
    }

    #[test]
    fn after_passes_the_first_batches() {
        let r = runner(&[("mode", "wrong-length"), ("after", "2")]);
        assert_eq!(process(&r, &batch(4)).outcomes.len(), 4);
        assert_eq!(process(&r, &batch(4)).outcomes.len(), 4);
        assert_eq!(process(&r, &batch(4)).outcomes.len(), 2);
        assert_eq!(process(&r, &batch(4)).outcomes.len(), 2);
        let e = testing::configure::<Hostile>(&[("after", "soon")]).unwrap_err();
        assert!(e.contains("`after`"), "{e}");
    }

    #[test]
    fn wrong_length_returns_fewer_outcomes() {
        let out = process(&runner(&[("mode", "wrong-length"), ("stamp", "s")]), &batch(5));
        assert_eq!(out.outcomes.len(), 2);
        assert_eq!(out.writes[0].present.len(), 5);
        let out = process(&runner(&[("mode", "wrong-length")]), &batch(1));
        assert!(out.outcomes.is_empty());
    }

    #[test]
    fn huge_rejects_with_enormous_reasons() {
        let out = process(&runner(&[("mode", "huge"), ("huge_bytes", "1000")]), &batch(2));
        for o in &out.outcomes {
            match o {
                wit::Outcome::Reject(r) => assert_eq!(r.len(), 1000),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(runner(&[("mode", "huge")]).transform().huge_bytes, 64 << 20);
    }

    #[test]
    #[should_panic(expected = "mode trap")]
    fn trap_panics() {
        process(&runner(&[("mode", "trap")]), &batch(1));
    }

    #[test]
    fn config_errors() {
        let e = testing::configure::<Hostile>(&[("mode", "bad-config")]).unwrap_err();
        assert_eq!(e, "mode bad-config always fails");
        let e = testing::configure::<Hostile>(&[("mode", "explode")]).unwrap_err();
        assert!(e.contains("`mode`") && e.contains("explode"), "{e}");
        let e = testing::configure::<Hostile>(&[("huge_bytes", "big")]).unwrap_err();
        assert!(e.contains("`huge_bytes`") && e.contains("big"), "{e}");
        for (name, mode) in Mode::ALL {
            if mode != Mode::BadConfig {
                assert_eq!(testing::configure::<Hostile>(&[("mode", name)]).unwrap().mode(), mode);
            }
        }
    }

    #[test]
    fn description() {
        let d = Hostile::describe();
        assert_eq!(d.name, "hostile");
        assert!(d.reads.is_empty());
        assert_eq!(d.writes[0].name, STAMP_COLUMN);
        assert_eq!(d.writes[0].ty, ColumnType::Text);
    }
}
