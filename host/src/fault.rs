//! Crash testing at chosen points: `CDC_HOST_CRASH_AT=<point>:<n>` makes the `n`-th arrival at
//! `<point>` fail the way a crash would. Unset (always, outside tests), [`point`] does nothing.
//!
//! Points: `before-swap` (a commit's files and metadata are written, not yet published) and
//! `after-swap` (published, not yet acknowledged) abort the process like `kill -9`; `worker` (after a
//! batch is decoded) panics the transform worker thread.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Fails here if `CDC_HOST_CRASH_AT` names this point and this is its `n`-th arrival.
pub fn point(name: &str) {
    static AT: OnceLock<Option<(String, u32)>> = OnceLock::new();
    static HITS: AtomicU32 = AtomicU32::new(0);
    let at = AT.get_or_init(|| {
        let v = std::env::var("CDC_HOST_CRASH_AT").ok()?;
        let (p, n) = v.split_once(':').unwrap_or((&v, "1"));
        Some((p.to_string(), n.parse().unwrap_or(1)))
    });
    let Some((p, n)) = at else { return };
    if p != name || HITS.fetch_add(1, Ordering::SeqCst) + 1 != *n {
        return;
    }
    if name == "worker" {
        panic!("CDC_HOST_CRASH_AT={p}:{n}");
    }
    eprintln!("CDC_HOST_CRASH_AT={p}:{n}: aborting at {name}");
    std::process::abort();
}
