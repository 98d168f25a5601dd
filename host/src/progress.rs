//! Progress on long work: a bar (records, rate, and for files bytes read and the time left) when
//! stderr is a terminal; otherwise a `progress` log line every few seconds. Log lines written while a
//! bar is shown go above it ([`LogWriter`]).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the log line is written when there is no bar.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// The bar on screen, if any: log lines are written around it.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// What the pipeline reports as it goes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub records: u64,
    pub events_per_second: u64,
    pub rows_pending: u64,
    pub rows_committed: u64,
    /// Bytes of input read, and the input's size when known (a file).
    pub bytes: Option<(u64, Option<u64>)>,
}

/// The progress of one run.
pub struct Progress {
    source: String,
    bar: Option<ProgressBar>,
    last_log: Instant,
}

impl Progress {
    /// Progress of reading `source`: a bar when stderr is a terminal (and `CDC_HOST_PROGRESS` is not
    /// `log`), log lines otherwise. `total_bytes` sizes the bar (the input file's length).
    pub fn new(source: &str, total_bytes: Option<u64>) -> Self {
        let wanted = std::io::stderr().is_terminal()
            && std::env::var("CDC_HOST_PROGRESS").map_or(true, |v| v != "log");
        let bar = wanted.then(|| {
            let (bar, template) = match total_bytes {
                Some(total) => (
                    ProgressBar::new(total),
                    "{spinner} {elapsed_precise} [{bar:30}] {bytes}/{total_bytes} · {msg} · ETA {eta}",
                ),
                None => (ProgressBar::no_length(), "{spinner} {elapsed_precise} {msg}"),
            };
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
            bar.enable_steady_tick(Duration::from_millis(250));
            *BAR.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
            bar
        });
        Self { source: source.to_string(), bar, last_log: Instant::now() }
    }

    /// Shows where the run is.
    pub fn update(&mut self, s: &Snapshot) {
        match &self.bar {
            Some(bar) => {
                if let Some((read, _)) = s.bytes {
                    bar.set_position(read);
                }
                bar.set_message(format!(
                    "{} records, {}/s, {} rows committed",
                    s.records, s.events_per_second, s.rows_committed
                ));
            }
            None if self.last_log.elapsed() >= LOG_EVERY => {
                self.last_log = Instant::now();
                tracing::info!(
                    source = %self.source,
                    records = s.records,
                    rows_pending = s.rows_pending,
                    rows_committed = s.rows_committed,
                    events_per_second = s.events_per_second,
                    "progress"
                );
            }
            None => {}
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            *BAR.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

/// The log writer: stderr, with the progress bar (when shown) cleared while a line is written.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = BAR.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf)).map(|()| buf.len()),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriterMaker {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> LogWriter {
        LogWriter
    }
}

/// Makes [`LogWriter`]s for `tracing_subscriber`.
pub struct LogWriterMaker;
