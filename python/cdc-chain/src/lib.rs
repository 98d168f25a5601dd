//! `cdc_chain`: the cdc-host transform chain for Python, over Arrow record batches.
//!
//! The decoding, the WebAssembly plugin chain and the row encoding are the host's own
//! ([`cdc_host::embed`]); this module only moves Arrow batches across the C data interface.
//!
//! ```python
//! import cdc_chain
//! pkg = cdc_chain.package("plugins", "config/cdc-host.toml")  # bytes: ship them to the workers
//! chain = cdc_chain.Chain(pkg)                                 # on a worker: no compiling
//! rows, dead_letters = chain.process(kafka_batch)              # value, topic, partition, offset
//! ```

use std::path::Path;
use std::sync::{Arc, Mutex};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_pyarrow::{FromPyArrow, ToPyArrow};
use arrow_schema::DataType;
use cdc_host::change::RawBatch;
use cdc_host::embed::{self, EmbeddedChain};
use cdc_host::source::kafka::stream_index;
use cdc_host::transform::ChainPackage;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

pyo3::create_exception!(
    cdc_chain,
    ChainError,
    pyo3::exceptions::PyException,
    "The chain could not be loaded or run."
);

fn chain_err(e: impl std::fmt::Display) -> PyErr {
    ChainError::new_err(e.to_string())
}

/// Packs the chain `config` names (the host's TOML; the shipped default when None), with the
/// components of `plugins`, precompiled. Returns bytes to build `Chain`s from, on any worker with
/// this same `cdc_chain` build.
#[pyfunction]
#[pyo3(signature = (plugins, config=None))]
fn package<'py>(py: Python<'py>, plugins: &str, config: Option<&str>) -> PyResult<Bound<'py, PyBytes>> {
    let bytes = py
        .detach(|| -> Result<Vec<u8>, String> {
            let cfg = embed::config(config.map(Path::new), Path::new(plugins)).map_err(|e| e.to_string())?;
            Ok(ChainPackage::build(&cfg).map_err(|e| e.to_string())?.to_bytes())
        })
        .map_err(chain_err)?;
    Ok(PyBytes::new(py, &bytes))
}

/// A loaded chain. Not picklable: ship the package bytes and build one per worker process.
#[pyclass(module = "cdc_chain")]
struct Chain {
    inner: Arc<Mutex<EmbeddedChain>>,
}

#[pymethods]
impl Chain {
    /// Loads the chain of a `package(...)`.
    #[new]
    fn new(py: Python<'_>, package: &[u8]) -> PyResult<Self> {
        let chain = py
            .detach(|| -> Result<EmbeddedChain, String> {
                let pkg = ChainPackage::from_bytes(package).map_err(|e| e.to_string())?;
                EmbeddedChain::new(&pkg).map_err(|e| e.to_string())
            })
            .map_err(chain_err)?;
        Ok(Self { inner: Arc::new(Mutex::new(chain)) })
    }

    /// Plugins, versions, content hashes and configuration, as the host records them.
    #[getter]
    fn identity(&self) -> String {
        self.lock().identity()
    }

    /// The rows' schema (pyarrow.Schema): declared columns, plugin columns, metadata columns.
    #[getter]
    fn schema<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.lock().schema().as_ref().to_pyarrow(py)
    }

    /// The dead letters' schema (pyarrow.Schema).
    #[getter]
    fn dead_letter_schema<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.lock().dead_letter_schema().as_ref().to_pyarrow(py)
    }

    /// The table the configuration names: namespace, name, dead_letter_table, partition
    /// ([column, transform] pairs), sort, pipeline_id.
    #[getter]
    fn table<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let chain = self.lock();
        let l = chain.layout();
        let d = PyDict::new(py);
        d.set_item("namespace", &l.namespace)?;
        d.set_item("name", &l.name)?;
        d.set_item("dead_letter_table", &l.dead_letter_table)?;
        d.set_item(
            "partition",
            l.partition.iter().map(|(c, t)| vec![c.clone(), t.clone()]).collect::<Vec<_>>(),
        )?;
        d.set_item("sort", &l.sort)?;
        d.set_item("pipeline_id", &l.pipeline_id)?;
        Ok(d)
    }

    /// Decodes, transforms and encodes one batch of Kafka records (a pyarrow.RecordBatch with
    /// `value` (binary, null for a tombstone), `topic` (string), `partition` (int32) and `offset`
    /// (int64); other columns, such as `key`, are not read: an append table takes nothing from the
    /// Kafka key). Returns `(rows, dead_letters)` as pyarrow.RecordBatches of `schema` and
    /// `dead_letter_schema`.
    fn process<'py>(
        &self,
        py: Python<'py>,
        batch: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let input = RecordBatch::from_pyarrow_bound(batch)?;
        let raw = raw_batch(&input).map_err(PyValueError::new_err)?;
        let inner = self.inner.clone();
        let (rows, dead) = py
            .detach(move || {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros() as i64)
                    .unwrap_or(0);
                inner.lock().unwrap_or_else(|e| e.into_inner()).process(&raw, now)
            })
            .map_err(chain_err)?;
        Ok((rows.to_pyarrow(py)?, dead.to_pyarrow(py)?))
    }
}

impl Chain {
    fn lock(&self) -> std::sync::MutexGuard<'_, EmbeddedChain> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The Kafka records of `batch` as the host's raw batch (record positions `topic/partition:offset`).
fn raw_batch(batch: &RecordBatch) -> Result<RawBatch, String> {
    let column = |name: &str| {
        batch.column_by_name(name).ok_or_else(|| {
            format!("the batch has no `{name}` column (expected value, topic, partition, offset from the Kafka source)")
        })
    };
    let (value, topic, partition, offset) =
        (column("value")?, column("topic")?, column("partition")?, column("offset")?);
    let as_type = |array: &Arc<dyn Array>, ty: DataType, name: &str| {
        arrow_cast::cast(array, &ty).map_err(|e| format!("`{name}` cannot be read as {ty}: {e}"))
    };
    let (value, topic) =
        (as_type(value, DataType::Binary, "value")?, as_type(topic, DataType::Utf8, "topic")?);
    let (value, topic) = (value.as_binary::<i32>(), topic.as_string::<i32>());
    let partition = partition.as_primitive_opt::<Int32Type>().ok_or("`partition` must be int32")?;
    let offset = offset.as_primitive_opt::<Int64Type>().ok_or("`offset` must be int64")?;
    let mut raw = RawBatch::default();
    let mut streams: Vec<(String, i32, u16)> = Vec::new();
    for i in 0..batch.num_rows() {
        let (t, p) = (if topic.is_valid(i) { topic.value(i) } else { "" }, partition.value(i));
        let stream = stream_index(&mut streams, &mut raw, t, p);
        // As the host's Kafka source hands records over to append tables: the value, `null` for a
        // tombstone (only a mirror table without a configured key needs the Kafka key).
        raw.push(stream, offset.value(i), if value.is_valid(i) { value.value(i) } else { b"null" });
    }
    Ok(raw)
}

#[pymodule]
fn cdc_chain(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Plugin logs and warnings go to stderr (the Spark executor's log); CDC_CHAIN_LOG filters them.
    let filter = tracing_subscriber::EnvFilter::try_from_env("CDC_CHAIN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    m.add_function(wrap_pyfunction!(package, m)?)?;
    m.add_class::<Chain>()?;
    m.add("ChainError", m.py().get_type::<ChainError>())?;
    Ok(())
}
