//! Compare-and-swap on an Iceberg REST catalog: a standard commit request whose requirements pin the
//! base (`assert-ref-snapshot-id` on `main`, table uuid, schema and spec): 409 means another writer
//! committed first.
//!
//! The server writes the new metadata file; this host writes data files, manifests and manifest
//! lists itself under the table's location, so that location must be on the local file system.
//! Tables this host creates are placed under its warehouse (`file://<warehouse>/<namespace>/<table>`,
//! as with the SQL catalog), whatever default the server would pick.
//!
//! Outcomes of a commit request: 200 = committed (the response carries the new metadata); 409 = lost
//! the race; any other 4xx = rejected; a 5xx or a connection lost after the request was sent may or
//! may not have landed, so the table is read back: the snapshot the request adds is either in it
//! (committed) or not (nothing landed, rebuild), and if the read fails too the outcome is unknown.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use iceberg::spec::{MAIN_BRANCH, TableMetadata};
use iceberg::table::Table;
use iceberg::{
    Catalog, CatalogBuilder, Error, ErrorKind, Namespace, NamespaceIdent, Runtime, TableCommit,
    TableCreation, TableIdent, TableRequirement, TableUpdate,
};
use iceberg_catalog_rest::{REST_CATALOG_PROP_URI, RestCatalog, RestCatalogBuilder};
use serde::Deserialize;

use super::cas::SwapOutcome;
use crate::error::SinkError;
use crate::sink::storage::WarehouseFsFactory;

/// How long a request may take to connect, and in all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Reads of the table after a commit whose response was lost, and the waits between them.
const RESOLVE_WAITS_MS: [u64; 3] = [0, 500, 2000];

/// The REST catalog's commit endpoint.
pub struct RestCas {
    http: reqwest::Client,
    /// `{uri}/v1` or `{uri}/v1/{prefix}`.
    base_url: String,
    /// Joins the levels of a namespace in a URL path (already URL-encoded; `%1F` by default).
    separator: String,
    /// The same server through iceberg-rust, to read tables back.
    catalog: Arc<dyn Catalog>,
    uri: String,
}

/// `GET /v1/config`.
#[derive(Debug, Default, Deserialize)]
struct ConfigResponse {
    #[serde(default)]
    defaults: HashMap<String, String>,
    #[serde(default)]
    overrides: HashMap<String, String>,
}

/// The body of a 200 answer to a commit request.
#[derive(Debug, Deserialize)]
struct CommitResponse {
    #[serde(rename = "metadata-location")]
    metadata_location: String,
    metadata: TableMetadata,
}

/// The body of an error answer (`{"error": {"message", "type", "code"}}`).
#[derive(Debug, Deserialize)]
struct ErrorResponse {
    error: ErrorModel,
}

#[derive(Debug, Deserialize)]
struct ErrorModel {
    message: String,
    #[serde(rename = "type", default)]
    kind: String,
}

impl RestCas {
    /// The commit endpoint of `ident`.
    fn table_url(&self, ident: &TableIdent) -> String {
        let ns: Vec<String> = ident.namespace().iter().map(|p| encode(p)).collect();
        format!("{}/namespaces/{}/tables/{}", self.base_url, ns.join(&self.separator), encode(ident.name()))
    }

    /// The metadata location the catalog holds now.
    pub async fn current_location(&self, ident: &TableIdent) -> Result<Option<String>, SinkError> {
        match self.catalog.load_table(ident).await {
            Ok(table) => Ok(table.metadata_location().map(str::to_string)),
            Err(e) if e.kind() == ErrorKind::TableNotFound => Ok(None),
            Err(source) => Err(SinkError::Catalog {
                context: format!("reading the metadata location of {ident} from {}", self.uri),
                source: Box::new(source),
            }),
        }
    }

    /// Posts `updates` with requirements that pin `base`.
    ///
    /// An `Err` means nothing was sent (the request could not be built or the server not reached);
    /// every outcome after the request went out is a [`SwapOutcome`].
    pub async fn swap(&self, base: &Table, updates: Vec<TableUpdate>) -> Result<SwapOutcome, SinkError> {
        let ident = base.identifier();
        let name = ident.to_string();
        let added: Vec<i64> = updates
            .iter()
            .filter_map(|u| match u {
                TableUpdate::AddSnapshot { snapshot } => Some(snapshot.snapshot_id()),
                _ => None,
            })
            .collect();
        let body = commit_body(base, &updates).map_err(|e| SinkError::Rest {
            context: format!("encoding the commit request of {name}"),
            message: e.to_string(),
        })?;
        // Everything the snapshot names is on disk before the catalog points at it.
        crate::sink::storage::sync_written().await?;
        let url = self.table_url(ident);
        let sent = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() || e.is_builder() => {
                return Err(SinkError::Rest {
                    context: format!("sending the commit of {name} to {}", self.uri),
                    message: error_chain(&e),
                });
            }
            Err(e) => {
                let why =
                    format!("the commit request to {url} failed after it was sent ({})", error_chain(&e));
                tracing::warn!(table = %name, error = %why, "commit outcome unknown; reading the table back");
                return Ok(self.resolve(base, &added, &why).await);
            }
        };
        let status = response.status();
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) if status.is_success() => {
                let why =
                    format!("the catalog accepted the commit but its answer was lost ({})", error_chain(&e));
                return Ok(self.resolve(base, &added, &why).await);
            }
            Err(e) => format!("(no readable body: {})", error_chain(&e)),
        };
        match status.as_u16() {
            200 => match serde_json::from_str::<CommitResponse>(&text) {
                Ok(r) => {
                    let opened = Runtime::try_current().and_then(|runtime| {
                        Table::builder()
                            .identifier(ident.clone())
                            .file_io(base.file_io().clone())
                            .metadata(Arc::new(r.metadata))
                            .metadata_location(r.metadata_location)
                            .runtime(runtime)
                            .build()
                    });
                    match opened {
                        Ok(table) => Ok(SwapOutcome::Committed(table)),
                        // It landed: the table read back serves as well.
                        Err(e) => {
                            let why = format!(
                                "the commit landed but its answer could not be opened as a table ({e})"
                            );
                            Ok(self.resolve(base, &added, &why).await)
                        }
                    }
                }
                Err(e) => {
                    let why =
                        format!("the catalog accepted the commit but its answer is not table metadata ({e})");
                    Ok(self.resolve(base, &added, &why).await)
                }
            },
            409 => Ok(SwapOutcome::Conflict(format!("{name}: {}", server_message(&text)))),
            code if (500..600).contains(&code) => {
                let why = format!("the catalog answered HTTP {code}: {}", server_message(&text));
                tracing::warn!(table = %name, error = %why, "commit outcome unknown; reading the table back");
                Ok(self.resolve(base, &added, &why).await)
            }
            code => Ok(SwapOutcome::Rejected(format!("HTTP {code} from {url}: {}", server_message(&text)))),
        }
    }

    /// Decides whether a commit whose answer was lost landed, by reading the table back: the
    /// snapshots it adds are there (committed), or the table is still at the base / lacks them
    /// (nothing landed: rebuild), or the table cannot be read (unknown).
    async fn resolve(&self, base: &Table, added: &[i64], why: &str) -> SwapOutcome {
        let ident = base.identifier();
        let base_location = base.metadata_location().unwrap_or_default();
        let mut last_error = String::new();
        for wait in RESOLVE_WAITS_MS {
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let table = match self.catalog.load_table(ident).await {
                Ok(t) => t,
                Err(e) => {
                    last_error = e.to_string();
                    continue;
                }
            };
            let present = |id: &i64| table.metadata().snapshot_by_id(*id).is_some();
            if !added.is_empty() && added.iter().all(present) {
                tracing::info!(table = %ident, "the commit had landed (its snapshot is in the table)");
                return SwapOutcome::Committed(table);
            }
            if !added.is_empty() && !added.iter().any(present) {
                return SwapOutcome::Conflict(format!("{why}; the table read back does not hold the commit"));
            }
            if added.is_empty() && table.metadata_location() == Some(base_location) {
                return SwapOutcome::Conflict(format!("{why}; the table read back is unchanged"));
            }
            return SwapOutcome::Unknown(format!(
                "{why}; the table read back ({}) does not tell whether the commit landed",
                table.metadata_location().unwrap_or("?")
            ));
        }
        SwapOutcome::Unknown(format!(
            "{why}; reading {ident} back from {} failed too ({last_error})",
            self.uri
        ))
    }
}

/// The commit request: the base's identity, the requirements that pin it, and the updates.
fn commit_body(base: &Table, updates: &[TableUpdate]) -> Result<String, serde_json::Error> {
    let ident = base.identifier();
    let metadata = base.metadata();
    let requirements = [
        TableRequirement::UuidMatch { uuid: metadata.uuid() },
        TableRequirement::RefSnapshotIdMatch {
            r#ref: MAIN_BRANCH.to_string(),
            snapshot_id: metadata.snapshot_for_ref(MAIN_BRANCH).map(|s| s.snapshot_id()),
        },
        TableRequirement::CurrentSchemaIdMatch { current_schema_id: metadata.current_schema_id() },
        TableRequirement::DefaultSpecIdMatch { default_spec_id: metadata.default_partition_spec_id() },
    ];
    serde_json::to_string(&serde_json::json!({
        "identifier": { "namespace": ident.namespace().as_ref(), "name": ident.name() },
        "requirements": requirements,
        "updates": updates,
    }))
}

/// The server's message from an error body (or the body itself, shortened).
fn server_message(text: &str) -> String {
    match serde_json::from_str::<ErrorResponse>(text) {
        Ok(e) if e.error.kind.is_empty() => e.error.message,
        Ok(e) => format!("{}: {}", e.error.kind, e.error.message),
        Err(_) => {
            let t = text.trim();
            if t.len() > 500 {
                let mut end = 500;
                while !t.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{}...", &t[..end])
            } else {
                t.to_string()
            }
        }
    }
}

/// An error with its sources, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

/// Percent-encodes one URL path segment.
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Opens the REST catalog at `uri` (tables on the local warehouse `warehouse`) and its
/// compare-and-swap.
pub async fn open(uri: &str, warehouse: &Path, name: &str) -> Result<(Arc<dyn Catalog>, RestCas), SinkError> {
    let uri = uri.trim_end_matches('/').to_string();
    let rest_err = |context: String| move |message: String| SinkError::Rest { context, message };
    let http = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| rest_err(format!("creating an HTTP client for {uri}"))(error_chain(&e)))?;

    // The prefix and namespace separator of the commit endpoint (iceberg-rust reads the same).
    let config_url = format!("{uri}/v1/config");
    let reach = format!(
        "reading {config_url} (is the Iceberg REST catalog running? `scripts/stack up` starts one, `scripts/stack env` prints its URI)"
    );
    let response =
        http.get(&config_url).send().await.map_err(|e| rest_err(reach.clone())(error_chain(&e)))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| rest_err(reach.clone())(error_chain(&e)))?;
    if !status.is_success() {
        return Err(rest_err(reach)(format!("HTTP {status}: {}", server_message(&text))));
    }
    let config: ConfigResponse = serde_json::from_str(&text).map_err(|e| {
        rest_err(reach)(format!("not a catalog configuration ({e}): {}", server_message(&text)))
    })?;
    let setting = |key: &str| config.overrides.get(key).or_else(|| config.defaults.get(key)).cloned();
    let base_url = match setting("prefix").filter(|p| !p.is_empty()) {
        Some(prefix) => format!("{uri}/v1/{}", prefix.trim_matches('/')),
        None => format!("{uri}/v1"),
    };
    let separator = setting("namespace-separator").unwrap_or_else(|| "%1F".to_string());

    let inner = RestCatalogBuilder::default()
        .with_client(http.clone())
        .with_storage_factory(Arc::new(WarehouseFsFactory))
        .load(name, HashMap::from([(REST_CATALOG_PROP_URI.to_string(), uri.clone())]))
        .await
        .map_err(|source| SinkError::Catalog {
            context: format!("opening the Iceberg REST catalog at {uri}"),
            source: Box::new(source),
        })?;
    let catalog: Arc<dyn Catalog> = Arc::new(LocalTables {
        inner,
        warehouse: format!("file://{}", warehouse.display()),
        uri: uri.clone(),
    });
    tracing::debug!(uri = %uri, endpoint = %base_url, "opened the Iceberg REST catalog");
    let cas = RestCas { http, base_url, separator, catalog: catalog.clone(), uri };
    Ok((catalog, cas))
}

/// The REST catalog as this host uses it: tables it creates go under its local warehouse, and a
/// table it loads must live on the local file system (the host writes its files there).
#[derive(Debug)]
struct LocalTables {
    inner: RestCatalog,
    /// `file:///abs/warehouse`.
    warehouse: String,
    uri: String,
}

impl LocalTables {
    fn check_local(&self, table: Table) -> iceberg::Result<Table> {
        let location = table.metadata().location();
        if location.starts_with("file:") || location.starts_with('/') {
            return Ok(table);
        }
        Err(Error::new(
            ErrorKind::FeatureUnsupported,
            format!(
                "table {} of the REST catalog {} is stored at {location}; this host writes data files through the local file system only (file: locations): let the host create the table (it places it under its --warehouse)",
                table.identifier(),
                self.uri
            ),
        ))
    }
}

#[async_trait]
impl Catalog for LocalTables {
    async fn list_namespaces(&self, parent: Option<&NamespaceIdent>) -> iceberg::Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<Namespace> {
        self.inner.create_namespace(namespace, properties).await
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<Namespace> {
        self.inner.get_namespace(namespace).await
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> iceberg::Result<bool> {
        self.inner.namespace_exists(namespace).await
    }

    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<()> {
        self.inner.update_namespace(namespace, properties).await
    }

    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<()> {
        self.inner.drop_namespace(namespace).await
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> iceberg::Result<Vec<TableIdent>> {
        self.inner.list_tables(namespace).await
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        mut creation: TableCreation,
    ) -> iceberg::Result<Table> {
        if creation.location.is_none() {
            let ns = namespace.iter().map(String::as_str).collect::<Vec<_>>().join("/");
            creation.location = Some(format!("{}/{ns}/{}", self.warehouse, creation.name));
        }
        let table = self.inner.create_table(namespace, creation).await?;
        self.check_local(table)
    }

    async fn load_table(&self, table: &TableIdent) -> iceberg::Result<Table> {
        let table = self.inner.load_table(table).await?;
        self.check_local(table)
    }

    async fn drop_table(&self, table: &TableIdent) -> iceberg::Result<()> {
        self.inner.drop_table(table).await
    }

    async fn purge_table(&self, table: &TableIdent) -> iceberg::Result<()> {
        self.inner.purge_table(table).await
    }

    async fn table_exists(&self, table: &TableIdent) -> iceberg::Result<bool> {
        self.inner.table_exists(table).await
    }

    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> iceberg::Result<()> {
        self.inner.rename_table(src, dest).await
    }

    async fn register_table(&self, table: &TableIdent, metadata_location: String) -> iceberg::Result<Table> {
        let table = self.inner.register_table(table, metadata_location).await?;
        self.check_local(table)
    }

    async fn update_table(&self, commit: TableCommit) -> iceberg::Result<Table> {
        self.inner.update_table(commit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_path_segments() {
        assert_eq!(encode("customers_analytics"), "customers_analytics");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn reads_server_messages() {
        let body = r#"{"error":{"message":"branch main has changed: expected id 1 != 2","type":"CommitFailedException","code":409}}"#;
        assert_eq!(
            server_message(body),
            "CommitFailedException: branch main has changed: expected id 1 != 2"
        );
        assert_eq!(server_message("  plain text "), "plain text");
        let long = "x".repeat(600);
        assert_eq!(server_message(&long).len(), 503);
    }

    #[tokio::test]
    async fn requirements_pin_the_base() {
        use iceberg::io::FileIOBuilder;
        use iceberg::spec::{NestedField, PrimitiveType, Schema, TableMetadataBuilder, Type};

        let schema = Schema::builder()
            .with_fields(vec![NestedField::optional(1, "id", Type::Primitive(PrimitiveType::Long)).into()])
            .build()
            .unwrap();
        let metadata = TableMetadataBuilder::new(
            schema,
            iceberg::spec::PartitionSpec::unpartition_spec(),
            iceberg::spec::SortOrder::unsorted_order(),
            "file:///tmp/wh/ns/t".to_string(),
            iceberg::spec::FormatVersion::V2,
            HashMap::new(),
        )
        .unwrap()
        .build()
        .unwrap()
        .metadata;
        let uuid = metadata.uuid();
        let table = Table::builder()
            .identifier(TableIdent::from_strs(["ns", "t"]).unwrap())
            .file_io(FileIOBuilder::new(Arc::new(WarehouseFsFactory)).build())
            .metadata(Arc::new(metadata))
            .metadata_location("file:/tmp/wh/ns/t/metadata/00000-x.metadata.json")
            .runtime(Runtime::current())
            .build()
            .unwrap();
        let updates = vec![TableUpdate::SetProperties { updates: HashMap::from([("k".into(), "v".into())]) }];
        let body: serde_json::Value = serde_json::from_str(&commit_body(&table, &updates).unwrap()).unwrap();
        assert_eq!(body["identifier"], serde_json::json!({"namespace": ["ns"], "name": "t"}));
        assert_eq!(
            body["requirements"],
            serde_json::json!([
                {"type": "assert-table-uuid", "uuid": uuid.to_string()},
                {"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": null},
                {"type": "assert-current-schema-id", "current-schema-id": 0},
                {"type": "assert-default-spec-id", "default-spec-id": 0},
            ])
        );
        assert_eq!(body["updates"], serde_json::json!([{"action": "set-properties", "updates": {"k": "v"}}]));
    }

    #[tokio::test]
    async fn local_file_io_reads_one_slash_file_uris() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        std::fs::write(&path, b"{}").unwrap();
        let io = iceberg::io::FileIOBuilder::new(Arc::new(WarehouseFsFactory)).build();
        for uri in [format!("file:{}", path.display()), format!("file://{}", path.display())] {
            let bytes = io.new_input(&uri).unwrap().read().await.unwrap();
            assert_eq!(&bytes[..], b"{}", "{uri}");
        }
    }
}
