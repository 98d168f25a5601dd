//! Debezium JSON → [`ChangeBatch`].
//!
//! Accepts each record as `{"topic", "key", "value"}` (the shared fixture format, one per line) or as a
//! bare Debezium value, with or without JsonConverter's embedded schema. Column types come, in order of
//! precedence, from the table definition, from the embedded Connect schema, and from the JSON value.
//! Values are appended straight into Arrow builders; nothing is logged per event.

use std::borrow::Cow;
use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int32Builder, Int64Builder,
    LargeBinaryBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use base64::Engine;
use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use serde_json::value::RawValue;

mod scan;

pub use scan::is_json;

use crate::change::{ChangeBatch, Column, Columns, DeadLetter, Op, RawBatch, SourceInfo, TableRef};
use crate::config::DecimalHandling;
use crate::schema::{ColType, MAX_DECIMAL_PRECISION, UTC};
use arrow_array::cast::AsArray;

/// Debezium's stand-in for a TOASTed value it did not receive.
pub const TOAST_PLACEHOLDER: &str = "__debezium_unavailable_value";

/// Debezium's `op` of a logical decoding message (`pg_logical_emit_message`); it changes no row.
pub const MESSAGE_OP: &str = "m";

/// Counts of what one decode pass saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DecodeStats {
    pub records: u64,
    pub events: u64,
    /// Records without a value (Kafka null values, `null` lines, envelopes without a payload): the
    /// log-compaction markers Debezium writes after a delete.
    pub tombstones: u64,
    pub truncates: u64,
    /// Logical decoding messages (`op = "m"`, from `pg_logical_emit_message`): not row changes, skipped.
    pub messages: u64,
    pub blank_lines: u64,
    pub dead_letters: u64,
    /// TOAST placeholders written as null.
    pub toast_placeholders: u64,
    /// Change events by operation (indexed by [`Op::index`]).
    pub by_op: [u64; 5],
}

impl DecodeStats {
    /// Adds another pass's counts.
    pub fn add(&mut self, o: &DecodeStats) {
        self.records += o.records;
        self.events += o.events;
        self.tombstones += o.tombstones;
        self.truncates += o.truncates;
        self.messages += o.messages;
        self.blank_lines += o.blank_lines;
        self.dead_letters += o.dead_letters;
        self.toast_placeholders += o.toast_placeholders;
        for (a, b) in self.by_op.iter_mut().zip(o.by_op) {
            *a += b;
        }
    }
}

/// The result of decoding one raw batch.
#[derive(Debug, Default)]
pub struct Decoded {
    pub batch: ChangeBatch,
    /// Truncate events: origin and source table (a mirror table empties itself there).
    pub truncates: Vec<(u32, TableRef)>,
    /// The field names of the Debezium record key, from the last record that had one.
    pub key_fields: Option<Vec<String>>,
    pub dead_letters: Vec<DeadLetter>,
    pub stats: DecodeStats,
}

/// How a value is carried on the wire, from the Connect schema (its logical type name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Plain,
    /// `org.apache.kafka.connect.data.Decimal`: base64 big-endian two's complement unscaled bytes.
    Base64Decimal,
    /// A string in the schema (e.g. `decimal.handling.mode=string`).
    Text,
    /// Days since 1970-01-01 (`io.debezium.time.Date`).
    Days,
    /// Milliseconds since the epoch (`io.debezium.time.Timestamp`).
    Millis,
    /// Microseconds since the epoch (`io.debezium.time.MicroTimestamp`).
    Micros,
    /// Nanoseconds since the epoch (`io.debezium.time.NanoTimestamp`).
    Nanos,
    /// Milliseconds since midnight (`io.debezium.time.Time`).
    TimeMillis,
    /// Microseconds since midnight (`io.debezium.time.MicroTime`).
    TimeMicros,
    /// Nanoseconds since midnight (`io.debezium.time.NanoTime`).
    TimeNanos,
}

impl Encoding {
    /// Whether the value is a time of day.
    fn is_time_of_day(self) -> bool {
        matches!(self, Encoding::TimeMillis | Encoding::TimeMicros | Encoding::TimeNanos)
    }

    /// Whether the value is an integer date, timestamp or time of day.
    fn is_temporal(self) -> bool {
        matches!(self, Encoding::Days | Encoding::Millis | Encoding::Micros | Encoding::Nanos)
            || self.is_time_of_day()
    }
}

/// What the Connect schema says about one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FieldHint {
    ty: ColType,
    encoding: Encoding,
    /// Scale of the wire value, for decimals.
    scale: u8,
}

/// The fields of the row struct of one Connect schema.
#[derive(Debug, Default)]
struct RowSchema {
    fields: FxHashMap<String, FieldHint>,
}

#[derive(Deserialize)]
struct ConnectSchema {
    #[serde(rename = "type", default)]
    ty: String,
    #[serde(default)]
    fields: Vec<ConnectSchema>,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    parameters: HashMap<String, String>,
}

impl ConnectSchema {
    fn hint(&self) -> FieldHint {
        let plain = |ty| FieldHint { ty, encoding: Encoding::Plain, scale: 0 };
        if let Some((ty, encoding)) = self.name.as_deref().and_then(temporal) {
            return FieldHint { ty, encoding, scale: 0 };
        }
        match self.name.as_deref() {
            Some("org.apache.kafka.connect.data.Decimal") => {
                let scale = self.parameters.get("scale").and_then(|s| s.parse().ok()).unwrap_or(0);
                let precision = self
                    .parameters
                    .get("connect.decimal.precision")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(MAX_DECIMAL_PRECISION)
                    .clamp(1, MAX_DECIMAL_PRECISION);
                FieldHint {
                    ty: ColType::Decimal { precision, scale: scale.min(precision) },
                    encoding: Encoding::Base64Decimal,
                    scale,
                }
            }
            Some("io.debezium.data.Json") => plain(ColType::Json),
            _ => match self.ty.as_str() {
                "boolean" => plain(ColType::Boolean),
                "int8" | "int16" | "int32" => plain(ColType::Int32),
                "int64" => plain(ColType::Int64),
                "float32" | "float64" | "double" | "float" => plain(ColType::Float64),
                "string" => FieldHint { ty: ColType::Text, encoding: Encoding::Text, scale: 0 },
                "bytes" => plain(ColType::Bytes),
                _ => plain(ColType::Json),
            },
        }
    }
}

/// The column type and wire encoding of a Connect/Debezium temporal logical type, by schema name.
///
/// Times of day become `long` microseconds since midnight (Iceberg's `time` unit) whatever precision
/// Debezium sends, so a column keeps one meaning across `time.precision.mode` settings.
fn temporal(name: &str) -> Option<(ColType, Encoding)> {
    Some(match name {
        "io.debezium.time.Date" | "org.apache.kafka.connect.data.Date" => (ColType::Date, Encoding::Days),
        "io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp" => {
            (ColType::Timestamp, Encoding::Millis)
        }
        "io.debezium.time.MicroTimestamp" => (ColType::Timestamp, Encoding::Micros),
        "io.debezium.time.NanoTimestamp" => (ColType::Timestamp, Encoding::Nanos),
        "io.debezium.time.ZonedTimestamp" => (ColType::TimestampTz, Encoding::Plain),
        "io.debezium.time.IsoDate" => (ColType::Date, Encoding::Plain),
        "io.debezium.time.IsoTimestamp" => (ColType::Timestamp, Encoding::Plain),
        "io.debezium.time.Time" | "org.apache.kafka.connect.data.Time" => {
            (ColType::Int64, Encoding::TimeMillis)
        }
        "io.debezium.time.MicroTime" => (ColType::Int64, Encoding::TimeMicros),
        "io.debezium.time.NanoTime" => (ColType::Int64, Encoding::TimeNanos),
        _ => return None,
    })
}

/// The value envelope: with a schema (`schema` + `payload`) or bare (`before`, `after`, ...).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    schema: Option<Raw<'a>>,
    #[serde(borrow, default)]
    payload: Option<Body<'a>>,
    #[serde(borrow, default)]
    before: Option<Image<'a>>,
    #[serde(borrow, default)]
    after: Option<Image<'a>>,
    #[serde(borrow, default)]
    source: Option<SourceBody<'a>>,
    #[serde(borrow, default)]
    op: Option<Cow<'a, str>>,
}

/// A record line: the fixture form `{"topic","key","value"}` or a bare envelope.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow, default)]
    topic: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    key: Option<Raw<'a>>,
    #[serde(borrow, default)]
    value: Option<Envelope<'a>>,
    #[serde(borrow, default)]
    schema: Option<Raw<'a>>,
    #[serde(borrow, default)]
    payload: Option<Body<'a>>,
    #[serde(borrow, default)]
    before: Option<Image<'a>>,
    #[serde(borrow, default)]
    after: Option<Image<'a>>,
    #[serde(borrow, default)]
    source: Option<SourceBody<'a>>,
    #[serde(borrow, default)]
    op: Option<Cow<'a, str>>,
}

/// The Debezium change body.
#[derive(Deserialize, Default)]
struct Body<'a> {
    #[serde(borrow, default)]
    before: Option<Image<'a>>,
    #[serde(borrow, default)]
    after: Option<Image<'a>>,
    #[serde(borrow, default)]
    source: Option<SourceBody<'a>>,
    #[serde(borrow, default)]
    op: Option<Cow<'a, str>>,
}

/// The source block of a record that has none.
const NO_SOURCE: SourceBody<'static> =
    SourceBody { schema: None, table: None, lsn: None, tx_id: None, ts_ms: None, snapshot: None };

#[derive(Deserialize, Default)]
struct SourceBody<'a> {
    #[serde(borrow, default)]
    schema: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    table: Option<Cow<'a, str>>,
    #[serde(default)]
    lsn: Option<i64>,
    #[serde(rename = "txId", default)]
    tx_id: Option<i64>,
    #[serde(default)]
    ts_ms: Option<i64>,
    #[serde(borrow, default)]
    snapshot: Option<Raw<'a>>,
}

/// A JSON value's text, read as is.
#[derive(Clone, Copy)]
struct Raw<'a> {
    text: &'a str,
    /// Known to be no string with escapes (the serde path does not know: false).
    plain: bool,
}

impl<'de: 'a, 'a> Deserialize<'de> for Raw<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: &'de RawValue = Deserialize::deserialize(d)?;
        Ok(Raw { text: raw.get(), plain: false })
    }
}

/// The parts of a record the decoder uses, however it was read ([`scan`] or serde).
#[derive(Default)]
struct Parts<'a> {
    /// The fixture form, `{"topic", "key", "value"}`.
    topic: bool,
    key: Option<Raw<'a>>,
    /// The Kafka value of the fixture form (`None`: a tombstone).
    value: Option<Flat<'a>>,
    /// The envelope fields at the top (a bare Debezium value).
    top: Flat<'a>,
}

/// An envelope's fields: with a schema (`schema` + `payload`) or bare (the [`Body`] fields).
#[derive(Default)]
struct Flat<'a> {
    schema: Option<Raw<'a>>,
    payload: Option<Body<'a>>,
    body: Body<'a>,
}

impl<'a> From<Line<'a>> for Parts<'a> {
    fn from(l: Line<'a>) -> Self {
        Parts {
            topic: l.topic.is_some(),
            key: l.key,
            value: l.value.map(|e| Flat {
                schema: e.schema,
                payload: e.payload,
                body: Body { before: e.before, after: e.after, source: e.source, op: e.op },
            }),
            top: Flat {
                schema: l.schema,
                payload: l.payload,
                body: Body { before: l.before, after: l.after, source: l.source, op: l.op },
            },
        }
    }
}

/// Decodes Debezium JSON records into columnar batches.
pub struct Decoder {
    declared: HashMap<String, ColType>,
    decimal_handling: DecimalHandling,
    /// Values too wide for a declared int or decimal column widen the column (int → long, a larger
    /// decimal precision) instead of failing their record.
    widen: bool,
    schemas: HashMap<Box<str>, Arc<RowSchema>>,
    last_schema: Option<(Box<str>, Arc<RowSchema>)>,
    key_fields: Option<Vec<String>>,
}

impl Decoder {
    /// A decoder whose column types follow `declared` (the table's columns) where they name a column.
    pub fn new(declared: HashMap<String, ColType>, decimal_handling: DecimalHandling) -> Self {
        Self {
            declared,
            decimal_handling,
            widen: false,
            schemas: HashMap::new(),
            last_schema: None,
            key_fields: None,
        }
    }

    /// Lets values too wide for a declared `int` or decimal column widen the column in the batch
    /// (`int` → `long`, decimal precision up to 38 at the same scale), as the source's own column did;
    /// the table follows ([`crate::sink::schema_change`]). Without it such a record is a dead letter.
    pub fn widening(mut self, widen: bool) -> Self {
        self.widen = widen;
        self
    }

    /// Decodes every record of `raw`.
    pub fn decode(&mut self, raw: &RawBatch) -> Decoded {
        let mut b = BatchBuilder::new(raw.len());
        let mut dead = Vec::new();
        let mut stats = DecodeStats { records: raw.len() as u64, ..Default::default() };
        for i in 0..raw.len() {
            let bytes = raw.record(i);
            // A vectorised check (most records are valid); the standard one says where it fails.
            let text = match simdutf8::basic::from_utf8(bytes).or_else(|_| std::str::from_utf8(bytes)) {
                Ok(t) => t.trim(),
                Err(e) => {
                    dead.push(dead_letter(i, format!("record is not UTF-8: {e}")));
                    continue;
                }
            };
            if text.is_empty() {
                stats.blank_lines += 1;
                continue;
            }
            if text == "null" {
                // A Kafka record with a null value (the Kafka source hands it over as `null`), or a
                // `null` line: Debezium's tombstone after a delete.
                stats.tombstones += 1;
                continue;
            }
            match self.decode_one(text, raw.unchecked_values, i as u32, &mut b, &mut stats) {
                Ok(()) => {}
                Err(reason) => {
                    b.reject_current(i as u32);
                    dead.push(dead_letter(i, reason));
                }
            }
        }
        stats.dead_letters = dead.len() as u64;
        let truncates = std::mem::take(&mut b.truncates);
        let batch = b.finish();
        stats.events = batch.len() as u64;
        Decoded { batch, truncates, key_fields: self.key_fields.clone(), dead_letters: dead, stats }
    }

    /// Decodes one record; `unchecked`: a Kafka record wrapped by the source, its value not checked yet.
    fn decode_one<'a>(
        &mut self,
        text: &'a str,
        unchecked: bool,
        origin: u32,
        b: &mut BatchBuilder,
        stats: &mut DecodeStats,
    ) -> Result<(), String> {
        // The scanner reads what Debezium writes; serde reads the rest (and words the errors).
        // Read in place, by reference from here on: the parts are several hundred bytes, and
        // moving them (and their body) per record showed as `memmove` in decoding's profile.
        let scanned = scan::record(text, unchecked);
        let read_by_serde: Parts<'a>;
        let parts = match &scanned {
            Ok(parts) => parts,
            Err(scan::Fallback) => {
                if unchecked {
                    // Serde would read a value with trailing text as more fields of the wrapper.
                    let value = scan::wrapped_value(text).unwrap_or(text);
                    if let Err(e) = serde_json::from_str::<de::IgnoredAny>(value) {
                        return Err(format!("the Kafka record's value is not JSON: {e}"));
                    }
                }
                read_by_serde = serde_json::from_str::<Line<'a>>(text)
                    .map_err(|e| format!("not a Debezium JSON record: {e}"))?
                    .into();
                &read_by_serde
            }
        };
        if self.key_fields.is_none()
            && let Some(key) = parts.key
        {
            self.key_fields = key_field_names(key.text);
        }
        let (schema, body) = if parts.topic {
            match &parts.value {
                None => {
                    stats.tombstones += 1;
                    return Ok(());
                }
                Some(env) => (env.schema, env.payload.as_ref().unwrap_or(&env.body)),
            }
        } else if parts.top.payload.is_some() || parts.top.schema.is_some() {
            match &parts.top.payload {
                None => {
                    stats.tombstones += 1;
                    return Ok(());
                }
                Some(p) => (parts.top.schema, p),
            }
        } else {
            (None, &parts.top.body)
        };
        let op_text =
            body.op.as_deref().ok_or("the record has no `op` field (not a Debezium change event)")?;
        if op_text == MESSAGE_OP {
            stats.messages += 1;
            return Ok(());
        }
        let op = Op::from_debezium(op_text)
            .ok_or_else(|| format!("unknown Debezium op `{op_text}` (expected c, u, d, r, t or m)"))?;
        stats.by_op[op.index()] += 1;
        if op == Op::Truncate {
            stats.truncates += 1;
            let src = body.source.as_ref().unwrap_or(&NO_SOURCE);
            let table = TableRef {
                schema: src.schema.as_deref().unwrap_or("").to_string(),
                table: src.table.as_deref().unwrap_or("").to_string(),
            };
            b.truncates.push((origin, table));
            return Ok(());
        }
        let row_schema = match schema {
            Some(s) => Some(self.row_schema(s.text)?),
            None => None,
        };
        let src = body.source.as_ref().unwrap_or(&NO_SOURCE);
        let table = b.intern_table(src.schema.as_deref().unwrap_or(""), src.table.as_deref().unwrap_or(""));
        let snapshot = src.snapshot.is_some_and(|s| !matches!(s.text, "false" | "\"false\"" | "null"));
        let info =
            SourceInfo { table, lsn: src.lsn, txid: src.tx_id, ts_ms: src.ts_ms.unwrap_or(0), snapshot };
        b.begin_row(op, info, origin);
        let ctx = Ctx {
            declared: &self.declared,
            hints: row_schema.as_deref(),
            decimal: self.decimal_handling,
            widen: self.widen,
        };
        for (image, side) in [(&body.after, Side::After), (&body.before, Side::Before)] {
            let Some(Image(entries)) = image else { continue };
            for (at, (name, value)) in entries.iter().enumerate() {
                b.append(side, at, name, *value, &ctx, stats)?;
            }
        }
        Ok(())
    }

    fn row_schema(&mut self, text: &str) -> Result<Arc<RowSchema>, String> {
        if let Some((t, s)) = &self.last_schema
            && **t == *text
        {
            return Ok(s.clone());
        }
        let parsed = match self.schemas.get(text) {
            Some(s) => s.clone(),
            None => {
                let s: ConnectSchema = serde_json::from_str(text)
                    .map_err(|e| format!("embedded schema is not a Connect schema: {e}"))?;
                let mut row = RowSchema::default();
                for image in
                    s.fields.iter().filter(|f| matches!(f.field.as_deref(), Some("after" | "before")))
                {
                    for f in &image.fields {
                        if let Some(name) = &f.field {
                            row.fields.insert(name.clone(), f.hint());
                        }
                    }
                }
                let row = Arc::new(row);
                if self.schemas.len() > 1024 {
                    self.schemas.clear();
                }
                self.schemas.insert(text.into(), row.clone());
                row
            }
        };
        self.last_schema = Some((text.into(), parsed.clone()));
        Ok(parsed)
    }
}

/// The field names of a Debezium record key (`{"schema","payload"}` or a bare object), in order.
fn key_field_names(key: &str) -> Option<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(key).ok()?;
    let obj = match v.get("payload") {
        Some(p) if v.get("schema").is_some() => p.as_object()?.clone(),
        _ => v.as_object()?.clone(),
    };
    let names: Vec<String> = obj.keys().cloned().collect();
    (!names.is_empty()).then_some(names)
}

fn dead_letter(i: usize, reason: String) -> DeadLetter {
    DeadLetter { origin: i as u32, stage: "decode", plugin: None, reason }
}

/// A row image (`after` or `before`): its entries in order, values left unparsed (read in the same
/// pass as the record).
struct Image<'a>(Vec<(Cow<'a, str>, Raw<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Image<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ImageVisitor(std::marker::PhantomData))
    }
}

struct ImageVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ImageVisitor<'a> {
    type Value = Image<'a>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a row image (a JSON object of columns)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Image<'a>, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(Name(k)) = map.next_key::<Name<'de>>()? {
            let v: Raw<'de> = map.next_value()?;
            entries.push((k, v));
        }
        Ok(Image(entries))
    }
}

/// A column name, borrowed from the record unless it has escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Name<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NameVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for NameVisitor<'a> {
            type Value = Name<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a column name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Name<'a>, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Name<'a>, E> {
                Ok(Name(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(NameVisitor(std::marker::PhantomData))
    }
}

#[derive(Clone, Copy)]
enum Side {
    After,
    Before,
}

struct Ctx<'c> {
    declared: &'c HashMap<String, ColType>,
    hints: Option<&'c RowSchema>,
    decimal: DecimalHandling,
    widen: bool,
}

/// One JSON scalar, borrowed from the record where possible.
enum Json<'a> {
    Null,
    Bool(bool),
    Num(&'a str),
    Str(Cow<'a, str>),
    Nested(&'a str),
}

fn classify<'a>(raw: Raw<'a>) -> Result<Json<'a>, String> {
    let t = raw.text;
    Ok(match t.as_bytes().first() {
        Some(b'n') => Json::Null,
        Some(b't') => Json::Bool(true),
        Some(b'f') => Json::Bool(false),
        Some(b'"') => {
            let inner = &t[1..t.len() - 1];
            if !raw.plain && inner.contains('\\') {
                Json::Str(Cow::Owned(serde_json::from_str::<String>(t).map_err(|e| e.to_string())?))
            } else {
                Json::Str(Cow::Borrowed(inner))
            }
        }
        Some(b'{') | Some(b'[') => Json::Nested(t),
        _ => Json::Num(t),
    })
}

/// Typed Arrow builder for one column.
enum Builder {
    Boolean(BooleanBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Text(StringBuilder),
    Bytes(LargeBinaryBuilder),
    Decimal(Decimal128Builder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl Builder {
    fn new(ty: ColType, cap: usize) -> Builder {
        match ty {
            ColType::Boolean => Builder::Boolean(BooleanBuilder::with_capacity(cap)),
            ColType::Int32 => Builder::Int32(Int32Builder::with_capacity(cap)),
            ColType::Int64 => Builder::Int64(Int64Builder::with_capacity(cap)),
            ColType::Float64 => Builder::Float64(Float64Builder::with_capacity(cap)),
            ColType::Text | ColType::Json => Builder::Text(StringBuilder::with_capacity(cap, cap * 16)),
            ColType::Bytes => Builder::Bytes(LargeBinaryBuilder::with_capacity(cap, cap * 16)),
            ColType::Decimal { precision, scale } => Builder::Decimal(
                Decimal128Builder::with_capacity(cap)
                    .with_precision_and_scale(precision, scale as i8)
                    .expect("validated decimal type"),
            ),
            ColType::Date => Builder::Date(Date32Builder::with_capacity(cap)),
            ColType::Timestamp => Builder::Timestamp(TimestampMicrosecondBuilder::with_capacity(cap)),
            ColType::TimestampTz => {
                Builder::Timestamp(TimestampMicrosecondBuilder::with_capacity(cap).with_timezone(UTC))
            }
        }
    }

    fn len(&self) -> usize {
        use arrow_array::builder::ArrayBuilder;
        match self {
            Builder::Boolean(b) => b.len(),
            Builder::Int32(b) => b.len(),
            Builder::Int64(b) => b.len(),
            Builder::Float64(b) => b.len(),
            Builder::Text(b) => b.len(),
            Builder::Bytes(b) => b.len(),
            Builder::Decimal(b) => b.len(),
            Builder::Date(b) => b.len(),
            Builder::Timestamp(b) => b.len(),
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Boolean(b) => b.append_null(),
            Builder::Int32(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Text(b) => b.append_null(),
            Builder::Bytes(b) => b.append_null(),
            Builder::Decimal(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
        }
    }

    /// This builder's values in a builder of the wider type `ty` (int → long, decimal precision up).
    fn widened(&mut self, ty: ColType) -> Builder {
        let values = self.finish();
        let cast = arrow_cast::cast(&values, &ty.arrow_type()).expect("a widening cast");
        let mut wide = Builder::new(ty, values.len().max(1));
        match &mut wide {
            Builder::Int64(b) => b.extend(cast.as_primitive::<arrow_array::types::Int64Type>().iter()),
            Builder::Decimal(b) => b.extend(cast.as_primitive::<arrow_array::types::Decimal128Type>().iter()),
            _ => unreachable!("only int and decimal columns widen"),
        }
        wide
    }

    fn finish(&mut self) -> ArrayRef {
        use arrow_array::builder::ArrayBuilder;
        match self {
            Builder::Boolean(b) => ArrayBuilder::finish(b),
            Builder::Int32(b) => ArrayBuilder::finish(b),
            Builder::Int64(b) => ArrayBuilder::finish(b),
            Builder::Float64(b) => ArrayBuilder::finish(b),
            Builder::Text(b) => ArrayBuilder::finish(b),
            Builder::Bytes(b) => ArrayBuilder::finish(b),
            Builder::Decimal(b) => ArrayBuilder::finish(b),
            Builder::Date(b) => ArrayBuilder::finish(b),
            Builder::Timestamp(b) => ArrayBuilder::finish(b),
        }
    }

    /// Appends a JSON value converted to the column's type.
    fn append(
        &mut self,
        ty: ColType,
        v: &Json<'_>,
        hint: Option<FieldHint>,
        decimal: DecimalHandling,
    ) -> Result<(), String> {
        let encoding = hint.map(|h| h.encoding);
        match (self, v) {
            (b, Json::Null) => b.append_null(),
            (Builder::Boolean(b), Json::Bool(x)) => b.append_value(*x),
            (Builder::Boolean(b), Json::Str(s)) => {
                b.append_value(s.parse::<bool>().map_err(|_| format!("`{s}` is not a boolean"))?)
            }
            (Builder::Int32(b), Json::Num(n)) => {
                b.append_value(n.parse::<i32>().map_err(|_| format!("{n} is not a 32-bit integer"))?)
            }
            (Builder::Int64(b), Json::Num(n)) => {
                let x = n.parse::<i64>().map_err(|_| format!("{n} is not a 64-bit integer"))?;
                b.append_value(match encoding {
                    Some(e) if e.is_time_of_day() => time_of_day_micros(x, e)?,
                    _ => x,
                })
            }
            (Builder::Int64(b), Json::Str(s)) => {
                b.append_value(s.parse::<i64>().map_err(|_| format!("`{s}` is not a 64-bit integer"))?)
            }
            (Builder::Float64(b), Json::Num(n)) => {
                b.append_value(n.parse::<f64>().map_err(|_| format!("{n} is not a number"))?)
            }
            (Builder::Float64(b), Json::Str(s)) => {
                b.append_value(s.parse::<f64>().map_err(|_| format!("`{s}` is not a number"))?)
            }
            (Builder::Text(b), Json::Str(s)) => b.append_value(&**s),
            (Builder::Text(b), Json::Num(n)) => match encoding {
                Some(e) if e.is_temporal() => b.append_value(temporal_text(n, e)?),
                _ => b.append_value(n),
            },
            (Builder::Text(b), Json::Nested(n)) => b.append_value(n),
            (Builder::Text(b), Json::Bool(x)) => b.append_value(if *x { "true" } else { "false" }),
            (Builder::Bytes(b), Json::Str(s)) => b.append_value(
                base64::engine::general_purpose::STANDARD
                    .decode(s.as_bytes())
                    .map_err(|e| format!("`{s}` is not base64: {e}"))?,
            ),
            (Builder::Decimal(b), v) => {
                let ColType::Decimal { precision, scale } = ty else {
                    unreachable!("decimal builder has decimal type")
                };
                b.append_value(decimal_value(v, precision, scale, hint, decimal)?)
            }
            (Builder::Date(b), Json::Num(n)) => {
                let x: i64 = n.parse().map_err(|_| format!("{n} is not a day number"))?;
                let days = match encoding {
                    Some(Encoding::Millis) => x.div_euclid(MICROS_PER_DAY / 1000),
                    Some(Encoding::Micros) => x.div_euclid(MICROS_PER_DAY),
                    Some(Encoding::Nanos) => x.div_euclid(MICROS_PER_DAY * 1000),
                    Some(e) if e.is_time_of_day() => {
                        return Err(format!("{n} is a time of day, not a date"));
                    }
                    _ => x,
                };
                b.append_value(i32::try_from(days).map_err(|_| format!("{n} is not a day number"))?)
            }
            (Builder::Date(b), Json::Str(s)) => b.append_value(parse_date(s)?),
            (Builder::Timestamp(b), Json::Num(n)) => {
                let x: i64 = n.parse().map_err(|_| format!("{n} is not an integer timestamp"))?;
                b.append_value(epoch_micros(x, encoding)?)
            }
            (Builder::Timestamp(b), Json::Str(s)) => b.append_value(parse_timestamp_micros(s)?),
            (_, other) => {
                let what = match other {
                    Json::Null => "null",
                    Json::Bool(_) => "a boolean",
                    Json::Num(_) => "a number",
                    Json::Str(_) => "a string",
                    Json::Nested(_) => "an object or array",
                };
                return Err(format!("{what} does not fit a {ty:?} column"));
            }
        }
        Ok(())
    }
}

/// `{"scale": 3, "value": "MDk="}` (Debezium's `VariableScaleDecimal`): the unscaled value (base64,
/// big-endian two's complement) and its scale.
fn variable_scale_decimal(obj: &str) -> Result<(i128, u8), String> {
    #[derive(serde::Deserialize)]
    struct Vsd<'a> {
        scale: u8,
        #[serde(borrow)]
        value: Cow<'a, str>,
    }
    let v: Vsd = serde_json::from_str(obj)
        .map_err(|_| format!("`{obj}` is not a decimal (expected {{\"scale\": .., \"value\": base64}})"))?;
    Ok((base64_unscaled(&v.value)?, v.scale))
}

/// A decimal's unscaled value from its base64 big-endian two's-complement bytes.
fn base64_unscaled(s: &str) -> Result<i128, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .map_err(|e| format!("`{s}` is not a base64 decimal: {e}"))?;
    if bytes.is_empty() || bytes.len() > 16 {
        return Err(format!("`{s}` decodes to {} bytes, not a decimal", bytes.len()));
    }
    let mut x: i128 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
    for byte in bytes {
        x = (x << 8) | byte as i128;
    }
    Ok(x)
}

fn decimal_value(
    v: &Json<'_>,
    precision: u8,
    scale: u8,
    hint: Option<FieldHint>,
    handling: DecimalHandling,
) -> Result<i128, String> {
    let (unscaled, from_scale) = match v {
        Json::Num(n) => parse_decimal_text(n)?,
        Json::Str(s) => {
            let wire = match hint.map(|h| h.encoding) {
                Some(Encoding::Base64Decimal) => DecimalWire::Base64,
                Some(_) => DecimalWire::Text,
                None => schemaless_decimal_wire(s, handling),
            };
            match wire {
                DecimalWire::Base64 => {
                    (base64_unscaled(s)?, hint.map_or(scale, |h| h.scale))
                }
                DecimalWire::Text => parse_decimal_text(s).map_err(|e| {
                    if hint.is_none() {
                        format!("{e}, nor a base64 decimal (Debezium's decimal.handling.mode `precise` or `string`)")
                    } else {
                        e
                    }
                })?,
            }
        }
        // `io.debezium.data.VariableScaleDecimal` (a numeric without scale, `precise` mode).
        Json::Nested(obj) => variable_scale_decimal(obj)?,
        _ => return Err("decimal column expects a string or a number".into()),
    };
    let value = rescale(unscaled, from_scale, scale)?;
    if value.unsigned_abs() >= 10u128.pow(precision as u32) {
        return Err(format!("{} does not fit decimal({precision},{scale})", format_decimal(value, scale)));
    }
    Ok(value)
}

/// The type a value too wide for a column of type `ty` needs: `long` for an `int` column, the
/// digits the value has for a decimal column (same scale, at most 38). `None`: widening would not help.
fn wider_type(
    ty: ColType,
    v: &Json<'_>,
    hint: Option<FieldHint>,
    handling: DecimalHandling,
) -> Option<ColType> {
    match (ty, v) {
        (ColType::Int32, Json::Num(n)) => n.parse::<i64>().ok().map(|_| ColType::Int64),
        (ColType::Decimal { precision, scale }, _) => {
            let value = decimal_value(v, MAX_DECIMAL_PRECISION, scale, hint, handling).ok()?;
            let digits = value.unsigned_abs().checked_ilog10().map_or(1, |d| d as u8 + 1);
            (digits > precision).then_some(ColType::Decimal { precision: digits.max(scale), scale })
        }
        _ => None,
    }
}

/// How a decimal string is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecimalWire {
    /// Debezium's `decimal.handling.mode=precise` without a schema: base64 unscaled bytes.
    Base64,
    /// `decimal.handling.mode=string`: the number as text (`1234.56`).
    Text,
}

/// Tells a schemaless decimal string's encoding from the string itself wherever only one reading is
/// possible, so the shipped configuration reads every converter setting:
///
/// - Base64 (padded, as Kafka's JsonConverter writes it) has a length that is a multiple of 4 and
///   no `.` or `-`: `1234.56`, `-5`, `0.01` or `12345` can only be text.
/// - Text is digits with an optional sign and point: `AeJA`, `/w==` or `BNI=` can only be base64.
/// - A string that reads both ways (digits only, length a multiple of 4, e.g. `1234`) is decided
///   by `decode.decimal_handling`. Debezium's string mode writes the column's scale, so for a
///   column with scale > 0 it always writes a point and such a string comes from precise mode —
///   which is what the default setting reads; `string` is needed only for scale-0 (or
///   unconstrained `numeric`) sources sent as text.
fn schemaless_decimal_wire(s: &str, handling: DecimalHandling) -> DecimalWire {
    match (is_padded_base64(s), parse_decimal_text(s).is_ok()) {
        (true, false) => DecimalWire::Base64,
        (false, _) => DecimalWire::Text,
        (true, true) => match handling {
            DecimalHandling::String => DecimalWire::Text,
            DecimalHandling::Precise => DecimalWire::Base64,
        },
    }
}

/// Whether `s` is padded standard base64 (the alphabet `A-Z a-z 0-9 + /`, `=` padding only at the
/// end, length a multiple of 4).
fn is_padded_base64(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || !b.len().is_multiple_of(4) {
        return false;
    }
    let body = s.trim_end_matches('=');
    b.len() - body.len() <= 2 && body.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
}

fn rescale(x: i128, from: u8, to: u8) -> Result<i128, String> {
    if from == to {
        Ok(x)
    } else if from < to {
        x.checked_mul(10i128.pow((to - from) as u32)).ok_or_else(|| "decimal overflows".to_string())
    } else {
        let f = 10i128.pow((from - to) as u32);
        if x % f != 0 {
            return Err(format!("{} has more than {to} decimal places", format_decimal(x, from)));
        }
        Ok(x / f)
    }
}

/// Parses `-123.45`, `1e3` style decimal text exactly: (unscaled, scale).
fn parse_decimal_text(s: &str) -> Result<(i128, u8), String> {
    let bad = || format!("`{s}` is not a decimal number");
    let t = s.trim();
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i32>().map_err(|_| bad())?),
        None => (t, 0),
    };
    let (neg, digits) = match mantissa.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let mut x: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        x = x.checked_mul(10).and_then(|x| x.checked_add((b - b'0') as i128)).ok_or_else(bad)?;
    }
    let mut scale = frac.len() as i32 - exp;
    while scale < 0 {
        x = x.checked_mul(10).ok_or_else(bad)?;
        scale += 1;
    }
    if scale > MAX_DECIMAL_PRECISION as i32 {
        return Err(bad());
    }
    Ok((if neg { -x } else { x }, scale as u8))
}

/// Formats an unscaled decimal for messages.
pub fn format_decimal(x: i128, scale: u8) -> String {
    let s = x.unsigned_abs().to_string();
    let sign = if x < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{s}");
    }
    let scale = scale as usize;
    let padded = format!("{s:0>width$}", width = scale + 1);
    let (i, f) = padded.split_at(padded.len() - scale);
    format!("{sign}{i}.{f}")
}

fn parse_date(s: &str) -> Result<i32, String> {
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("`{s}` is not a date (YYYY-MM-DD)"))?;
    Ok((d - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32)
}

fn parse_timestamp_micros(s: &str) -> Result<i64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_micros());
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Ok(t.and_utc().timestamp_micros());
        }
    }
    Err(format!("`{s}` is not an ISO-8601 timestamp"))
}

/// Microseconds in a day.
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Microseconds since the epoch of an integer whose unit the schema names (no name: microseconds).
fn epoch_micros(x: i64, encoding: Option<Encoding>) -> Result<i64, String> {
    let out_of_range = || format!("{x} is out of the timestamp range");
    match encoding {
        Some(Encoding::Days) => x.checked_mul(MICROS_PER_DAY).ok_or_else(out_of_range),
        Some(Encoding::Millis) => x.checked_mul(1000).ok_or_else(out_of_range),
        Some(Encoding::Nanos) => Ok(x.div_euclid(1000)),
        Some(e) if e.is_time_of_day() => Err(format!("{x} is a time of day, not a timestamp")),
        _ => Ok(x),
    }
}

/// Microseconds since midnight of a time of day in the unit the schema names. PostgreSQL's
/// `24:00:00` is allowed.
fn time_of_day_micros(x: i64, encoding: Encoding) -> Result<i64, String> {
    let micros = match encoding {
        Encoding::TimeMillis => x.checked_mul(1000),
        Encoding::TimeNanos => Some(x.div_euclid(1000)),
        _ => Some(x),
    };
    micros.filter(|m| (0..=MICROS_PER_DAY).contains(m)).ok_or_else(|| format!("{x} is not a time of day"))
}

/// A temporal integer as ISO-8601 text, for a column declared as a string: `2024-03-01`,
/// `2024-03-01T10:15:30.123456` (Debezium's timestamps carry no zone), `10:15:30.5`.
fn temporal_text(n: &str, encoding: Encoding) -> Result<String, String> {
    let x: i64 = n.parse().map_err(|_| format!("{n} is not an integer"))?;
    let bad = || format!("{n} is out of range for {encoding:?}");
    if encoding.is_time_of_day() {
        let micros = time_of_day_micros(x, encoding)?;
        let nanos = match encoding {
            Encoding::TimeNanos => x,
            _ => micros * 1000,
        };
        if micros == MICROS_PER_DAY {
            return Ok("24:00:00".into());
        }
        let t = chrono::NaiveTime::from_num_seconds_from_midnight_opt(
            (nanos / 1_000_000_000) as u32,
            (nanos % 1_000_000_000) as u32,
        )
        .ok_or_else(bad)?;
        return Ok(t.format("%H:%M:%S%.f").to_string());
    }
    if encoding == Encoding::Days {
        let d = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
            .and_then(|e| e.checked_add_signed(chrono::TimeDelta::try_days(x)?))
            .ok_or_else(bad)?;
        return Ok(d.format("%Y-%m-%d").to_string());
    }
    let (secs, nanos) = match encoding {
        Encoding::Millis => (x.div_euclid(1000), x.rem_euclid(1000) * 1_000_000),
        Encoding::Nanos => (x.div_euclid(1_000_000_000), x.rem_euclid(1_000_000_000)),
        _ => (x.div_euclid(1_000_000), x.rem_euclid(1_000_000) * 1000),
    };
    let t = chrono::DateTime::from_timestamp(secs, nanos as u32).ok_or_else(bad)?;
    Ok(t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.f").to_string())
}

fn infer(v: &Json<'_>) -> ColType {
    match v {
        Json::Bool(_) => ColType::Boolean,
        Json::Num(n) if n.parse::<i64>().is_ok() => ColType::Int64,
        Json::Num(_) => ColType::Float64,
        Json::Nested(_) => ColType::Json,
        Json::Null | Json::Str(_) => ColType::Text,
    }
}

struct ColBuilder {
    name: String,
    ty: ColType,
    b: Builder,
}

#[derive(Default)]
struct SideBuilder {
    cols: Vec<ColBuilder>,
    index: FxHashMap<String, usize>,
    /// Per place in a row image: the column found there in the last row.
    by_place: Vec<usize>,
    /// Columns seen only with null values so far (their type is not known yet).
    null_only: Vec<String>,
}

impl SideBuilder {
    fn finish(mut self, rows: usize, keep: Option<&arrow_array::BooleanArray>) -> Columns {
        for name in std::mem::take(&mut self.null_only) {
            if !self.index.contains_key(&name) {
                self.cols.push(ColBuilder { b: Builder::new(ColType::Text, rows), name, ty: ColType::Text });
            }
        }
        Columns(
            self.cols
                .into_iter()
                .map(|mut c| {
                    while c.b.len() < rows {
                        c.b.append_null();
                    }
                    let mut array = c.b.finish();
                    if let Some(mask) = keep {
                        array =
                            arrow_select::filter::filter(&array, mask).expect("mask matches batch length");
                    }
                    Column { name: c.name, ty: c.ty, array }
                })
                .collect(),
        )
    }
}

struct BatchBuilder {
    cap: usize,
    ops: Vec<Op>,
    sources: Vec<SourceInfo>,
    origins: Vec<u32>,
    tables: Vec<TableRef>,
    after: SideBuilder,
    before: SideBuilder,
    /// Rows whose decoding failed half-way: dropped at the end.
    rejected: Vec<usize>,
    toast: Vec<(u32, Arc<str>)>,
    truncates: Vec<(u32, TableRef)>,
}

impl BatchBuilder {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            ops: Vec::with_capacity(cap),
            sources: Vec::with_capacity(cap),
            origins: Vec::with_capacity(cap),
            tables: Vec::new(),
            after: SideBuilder::default(),
            before: SideBuilder::default(),
            rejected: Vec::new(),
            toast: Vec::new(),
            truncates: Vec::new(),
        }
    }

    fn intern_table(&mut self, schema: &str, table: &str) -> u32 {
        if let Some(i) = self.tables.iter().position(|t| t.schema == schema && t.table == table) {
            return i as u32;
        }
        self.tables.push(TableRef { schema: schema.into(), table: table.into() });
        (self.tables.len() - 1) as u32
    }

    fn begin_row(&mut self, op: Op, source: SourceInfo, origin: u32) {
        self.ops.push(op);
        self.sources.push(source);
        self.origins.push(origin);
    }

    /// Marks the row of `origin` (if one was begun) as failed.
    fn reject_current(&mut self, origin: u32) {
        if self.origins.last() == Some(&origin) {
            self.rejected.push(self.origins.len() - 1);
        }
    }

    /// Appends the value of column `name`, the `at`-th entry of its row image.
    fn append(
        &mut self,
        side: Side,
        at: usize,
        name: &str,
        raw: Raw<'_>,
        ctx: &Ctx<'_>,
        stats: &mut DecodeStats,
    ) -> Result<(), String> {
        let row = self.ops.len() - 1;
        let origin = self.origins[row];
        let sb = match side {
            Side::After => &mut self.after,
            Side::Before => &mut self.before,
        };
        let mut v = classify(raw).map_err(|e| format!("column `{name}`: {e}"))?;
        if let Json::Str(s) = &v
            && s == TOAST_PLACEHOLDER
        {
            stats.toast_placeholders += 1;
            v = Json::Null;
            if matches!(side, Side::After) {
                self.toast.push((origin, Arc::from(name)));
            }
        }
        let hint = ctx.hints.and_then(|h| h.fields.get(name).copied());
        // Records of one table list their columns in one order: the column at this place in the
        // last record is the likely one.
        let cached = sb.by_place.get(at).copied().filter(|&i| sb.cols.get(i).is_some_and(|c| c.name == name));
        let idx = match cached.or_else(|| sb.index.get(name).copied()) {
            Some(i) => i,
            None => {
                let ty = match (ctx.declared.get(name), hint) {
                    (Some(t), _) => *t,
                    (None, Some(h)) => h.ty,
                    (None, None) if matches!(v, Json::Null) => {
                        if !sb.null_only.iter().any(|n| n == name) {
                            sb.null_only.push(name.to_string());
                        }
                        return Ok(());
                    }
                    (None, None) => infer(&v),
                };
                sb.cols.push(ColBuilder { name: name.to_string(), ty, b: Builder::new(ty, self.cap) });
                sb.index.insert(name.to_string(), sb.cols.len() - 1);
                sb.cols.len() - 1
            }
        };
        if sb.by_place.len() <= at {
            sb.by_place.resize(at + 1, usize::MAX);
        }
        sb.by_place[at] = idx;
        let col = &mut sb.cols[idx];
        let len = col.b.len();
        if len > row {
            return Ok(()); // a repeated key in one object: the first value wins
        }
        for _ in len..row {
            col.b.append_null();
        }
        let err = match col.b.append(col.ty, &v, hint, ctx.decimal) {
            Ok(()) => return Ok(()),
            Err(e) => format!("column `{name}`: {e}"),
        };
        // A value wider than the column: the source column was widened.
        match ctx.widen.then(|| wider_type(col.ty, &v, hint, ctx.decimal)).flatten() {
            Some(ty) => {
                col.b = col.b.widened(ty);
                col.ty = ty;
                col.b.append(ty, &v, hint, ctx.decimal).map_err(|e| format!("column `{name}`: {e}"))
            }
            None => Err(err),
        }
    }

    fn finish(self) -> ChangeBatch {
        let rows = self.ops.len();
        let keep = if self.rejected.is_empty() {
            None
        } else {
            let mut k = vec![true; rows];
            for r in &self.rejected {
                k[*r] = false;
            }
            Some(k)
        };
        let mask = keep.as_ref().map(|k| arrow_array::BooleanArray::from(k.clone()));
        fn pick<T>(v: Vec<T>, keep: &Option<Vec<bool>>) -> Vec<T> {
            match keep {
                None => v,
                Some(k) => v.into_iter().zip(k).filter(|(_, k)| **k).map(|(x, _)| x).collect(),
            }
        }
        ChangeBatch {
            after: self.after.finish(rows, mask.as_ref()),
            before: self.before.finish(rows, mask.as_ref()),
            ops: pick(self.ops, &keep),
            sources: pick(self.sources, &keep),
            origins: pick(self.origins, &keep),
            tables: self.tables,
            toast: self.toast,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{
        Array, Date32Array, Decimal128Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };

    fn raw(lines: &[&str]) -> RawBatch {
        let mut r = RawBatch::new(vec![Arc::from("test")]);
        for (i, l) in lines.iter().enumerate() {
            r.push(0, i as i64 + 1, l.as_bytes());
        }
        r
    }

    fn declared() -> HashMap<String, ColType> {
        HashMap::from([
            ("customer_id".to_string(), ColType::Int64),
            ("lifetime_value".to_string(), ColType::Decimal { precision: 12, scale: 2 }),
            ("registration_date".to_string(), ColType::Date),
            ("created_at".to_string(), ColType::TimestampTz),
        ])
    }

    fn text<'a>(b: &'a ChangeBatch, name: &str) -> &'a StringArray {
        b.after.get(name).unwrap().array.as_any().downcast_ref::<StringArray>().unwrap()
    }

    #[test]
    fn schemaless_record_uses_declared_types() {
        let line = r#"{"topic":"t","key":{"customer_id":1},"value":{"before":null,"after":{"customer_id":1,"email":"a@x","lifetime_value":"AeJA","registration_date":19372,"created_at":"2024-03-01T10:15:30.123456Z","notes":"__debezium_unavailable_value"},"source":{"schema":"public","table":"customers","lsn":5,"txId":7,"ts_ms":99,"snapshot":"first"},"op":"r"}}"#;
        let mut d = Decoder::new(declared(), DecimalHandling::Precise);
        let out = d.decode(&raw(&[line]));
        assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
        let b = out.batch;
        assert_eq!(b.ops, vec![Op::Read]);
        assert_eq!(
            b.sources[0],
            SourceInfo { table: 0, lsn: Some(5), txid: Some(7), ts_ms: 99, snapshot: true }
        );
        assert_eq!(b.tables[0], TableRef { schema: "public".into(), table: "customers".into() });
        let ids = b.after.get("customer_id").unwrap().array.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ids.value(0), 1);
        let lv =
            b.after.get("lifetime_value").unwrap().array.as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!(lv.value(0), 123456); // 0x01E240 = 123456 -> 1234.56
        let d32 =
            b.after.get("registration_date").unwrap().array.as_any().downcast_ref::<Date32Array>().unwrap();
        assert_eq!(d32.value(0), 19372);
        let ts = b
            .after
            .get("created_at")
            .unwrap()
            .array
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(ts.value(0), 1_709_288_130_123_456);
        assert!(text(&b, "notes").is_null(0));
        assert_eq!(out.stats.toast_placeholders, 1);
    }

    #[test]
    fn tombstones_truncates_and_garbage_are_explicit() {
        let lines = [
            r#"{"topic":"t","key":{"customer_id":1},"value":null}"#,
            r#"{"topic":"t","key":null,"value":{"before":null,"after":null,"source":{},"op":"t"}}"#,
            "not json",
            "",
            r#"{"before":null,"after":{"customer_id":"x"},"source":{},"op":"c"}"#,
            r#"{"before":null,"after":{"customer_id":2,"email":"b@x"},"source":{},"op":"c"}"#,
        ];
        let mut d = Decoder::new(declared(), DecimalHandling::Precise);
        let out = d.decode(&raw(&lines));
        assert_eq!(out.stats.tombstones, 1);
        assert_eq!(out.stats.truncates, 1);
        assert_eq!(out.stats.blank_lines, 1);
        assert_eq!(out.dead_letters.len(), 2);
        assert_eq!(out.dead_letters[0].origin, 2);
        assert_eq!(out.dead_letters[1].origin, 4);
        assert!(out.dead_letters[1].reason.contains("customer_id"), "{}", out.dead_letters[1].reason);
        assert_eq!(out.batch.len(), 1);
        assert_eq!(out.batch.origins, vec![5]);
        assert_eq!(text(&out.batch, "email").value(0), "b@x");
    }

    #[test]
    fn embedded_schema_decides_decimal_encoding() {
        let schema = r#"{"type":"struct","fields":[{"type":"struct","field":"after","fields":[{"type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2","connect.decimal.precision":"12"},"field":"amount"},{"type":"string","field":"price"},{"type":"int64","name":"io.debezium.time.MicroTimestamp","field":"at"}]}]}"#;
        let line = format!(
            r#"{{"schema":{schema},"payload":{{"before":null,"after":{{"amount":"/w==","price":"-12.5","at":1000}},"source":{{}},"op":"c"}}}}"#
        );
        let decl = HashMap::from([("price".to_string(), ColType::Decimal { precision: 12, scale: 2 })]);
        let mut d = Decoder::new(decl, DecimalHandling::Precise);
        let out = d.decode(&raw(&[&line]));
        assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
        let b = out.batch;
        let amount = b.after.get("amount").unwrap();
        assert_eq!(amount.ty, ColType::Decimal { precision: 12, scale: 2 });
        assert_eq!(amount.array.as_any().downcast_ref::<Decimal128Array>().unwrap().value(0), -1);
        let price = b.after.get("price").unwrap().array.as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!(price.value(0), -1250);
        assert_eq!(b.after.get("at").unwrap().ty, ColType::Timestamp);
    }

    #[test]
    fn decimal_text_parsing() {
        assert_eq!(parse_decimal_text("-12.50").unwrap(), (-1250, 2));
        assert_eq!(parse_decimal_text("1e2").unwrap(), (100, 0));
        assert_eq!(parse_decimal_text("1.5E-1").unwrap(), (15, 2));
        assert!(parse_decimal_text("AeJA").is_err());
        assert_eq!(rescale(15, 1, 2).unwrap(), 150);
        assert!(rescale(1234, 3, 2).is_err());
        assert_eq!(format_decimal(-5, 2), "-0.05");
        assert_eq!(format_decimal(123456, 2), "1234.56");
    }

    #[test]
    fn null_records_are_tombstones() {
        let lines = [
            "null", // a Kafka record with a null value, as the Kafka source hands it over
            "  null ",
            r#"{"topic":"t","key":{"customer_id":1},"value":null}"#,
            r#"{"schema":{"type":"struct"},"payload":null}"#,
            "",
        ];
        let mut d = Decoder::new(declared(), DecimalHandling::Precise);
        let out = d.decode(&raw(&lines));
        assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
        assert_eq!(out.stats.tombstones, 4);
        assert_eq!(out.stats.blank_lines, 1);
        assert_eq!((out.stats.records, out.stats.events, out.stats.dead_letters), (5, 0, 0));
    }

    #[test]
    fn logical_decoding_messages_are_counted_not_dead_lettered() {
        let message = r#"{"op":"m","ts_ms":1700000000000,"source":{"schema":"","table":"","lsn":42,"txId":7},"message":{"prefix":"audit","content":"aGVsbG8="}}"#;
        let with_schema = format!(
            r#"{{"schema":{{"type":"struct","fields":[{{"type":"string","field":"op"}}]}},"payload":{message}}}"#
        );
        let in_fixture_form = format!(r#"{{"topic":"postgres.message","key":null,"value":{message}}}"#);
        let change = r#"{"before":null,"after":{"customer_id":3},"source":{},"op":"c"}"#;
        let unknown = r#"{"before":null,"after":null,"source":{},"op":"x"}"#;
        let mut d = Decoder::new(declared(), DecimalHandling::Precise);
        let out = d.decode(&raw(&[message, &with_schema, &in_fixture_form, change, unknown]));
        assert_eq!(out.stats.messages, 3);
        assert_eq!(out.stats.events, 1);
        assert_eq!(out.batch.origins, vec![3]);
        assert_eq!(out.dead_letters.len(), 1, "{:?}", out.dead_letters);
        assert_eq!(out.dead_letters[0].origin, 4);
        assert!(out.dead_letters[0].reason.contains("`x` (expected c, u, d, r, t or m)"));
        let mut total = DecodeStats::default();
        total.add(&out.stats);
        total.add(&out.stats);
        assert_eq!(total.messages, 6);
    }

    /// One event whose row carries `fields` (Connect schema JSON) with `after` (JSON object text).
    fn with_schema(fields: &str, after: &str) -> String {
        format!(
            r#"{{"schema":{{"type":"struct","fields":[{{"type":"struct","field":"after","fields":[{fields}]}}]}},"payload":{{"before":null,"after":{after},"source":{{}},"op":"c"}}}}"#
        )
    }

    fn i64s(b: &ChangeBatch, name: &str) -> Vec<Option<i64>> {
        let c = b.after.get(name).unwrap_or_else(|| panic!("no column {name}"));
        match c.ty {
            ColType::Int64 => c.array.as_any().downcast_ref::<Int64Array>().unwrap().iter().collect(),
            ColType::Timestamp | ColType::TimestampTz => {
                c.array.as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap().iter().collect()
            }
            ColType::Date => c
                .array
                .as_any()
                .downcast_ref::<Date32Array>()
                .unwrap()
                .iter()
                .map(|d| d.map(i64::from))
                .collect(),
            other => panic!("{name} is {other:?}"),
        }
    }

    const TIME_FIELDS: &str = r#"{"type":"int64","name":"io.debezium.time.Timestamp","field":"ts"},
        {"type":"int64","name":"io.debezium.time.MicroTimestamp","field":"mts"},
        {"type":"int64","name":"io.debezium.time.NanoTimestamp","field":"nts"},
        {"type":"int32","name":"io.debezium.time.Time","field":"t"},
        {"type":"int64","name":"io.debezium.time.MicroTime","field":"mt"},
        {"type":"int64","name":"io.debezium.time.NanoTime","field":"nt"},
        {"type":"int32","name":"io.debezium.time.Date","field":"d"},
        {"type":"string","name":"io.debezium.time.ZonedTimestamp","field":"zts"},
        {"type":"int64","name":"org.apache.kafka.connect.data.Timestamp","field":"cts"},
        {"type":"int32","name":"org.apache.kafka.connect.data.Time","field":"ct"},
        {"type":"int32","name":"org.apache.kafka.connect.data.Date","field":"cd"}"#;

    #[test]
    fn schema_named_times_are_decoded_by_name() {
        // 2024-03-01T10:15:30.123456789 and 10:20:30.123456789 in every unit Debezium uses.
        let rows = [
            with_schema(
                TIME_FIELDS,
                r#"{"ts":1709288130123,"mts":1709288130123456,"nts":1709288130123456789,"t":37230123,"mt":37230123456,"nt":37230123456789,"d":19783,"zts":"2024-03-01T10:15:30.123456Z","cts":1709288130123,"ct":37230123,"cd":19783}"#,
            ),
            // Before the epoch, a zone offset, midnight, PostgreSQL's 24:00:00 and nulls.
            with_schema(
                TIME_FIELDS,
                r#"{"ts":-1,"mts":-1,"nts":-1500,"t":0,"mt":86400000000,"nt":null,"d":-1,"zts":"2024-03-01T11:15:30.5+01:00","cts":null,"ct":null,"cd":null}"#,
            ),
        ];
        let mut d = Decoder::new(HashMap::new(), DecimalHandling::Precise);
        let out = d.decode(&raw(&[&rows[0], &rows[1]]));
        assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
        let b = &out.batch;
        let ty = |n: &str| b.after.get(n).unwrap().ty;
        for (name, t) in [
            ("ts", ColType::Timestamp),
            ("mts", ColType::Timestamp),
            ("nts", ColType::Timestamp),
            ("cts", ColType::Timestamp),
            ("zts", ColType::TimestampTz),
            ("t", ColType::Int64),
            ("mt", ColType::Int64),
            ("nt", ColType::Int64),
            ("ct", ColType::Int64),
            ("d", ColType::Date),
            ("cd", ColType::Date),
        ] {
            assert_eq!(ty(name), t, "{name}");
        }
        assert_eq!(i64s(b, "ts"), vec![Some(1_709_288_130_123_000), Some(-1000)]);
        assert_eq!(i64s(b, "mts"), vec![Some(1_709_288_130_123_456), Some(-1)]);
        assert_eq!(i64s(b, "nts"), vec![Some(1_709_288_130_123_456), Some(-2)], "nanos round down");
        assert_eq!(i64s(b, "cts"), vec![Some(1_709_288_130_123_000), None]);
        assert_eq!(i64s(b, "zts"), vec![Some(1_709_288_130_123_456), Some(1_709_288_130_500_000)]);
        // Times of day: microseconds since midnight, whatever unit the schema names.
        assert_eq!(i64s(b, "t"), vec![Some(37_230_123_000), Some(0)]);
        assert_eq!(i64s(b, "mt"), vec![Some(37_230_123_456), Some(86_400_000_000)]);
        assert_eq!(i64s(b, "nt"), vec![Some(37_230_123_456), None]);
        assert_eq!(i64s(b, "ct"), vec![Some(37_230_123_000), None]);
        assert_eq!(i64s(b, "d"), vec![Some(19_783), Some(-1)]);
        assert_eq!(i64s(b, "cd"), vec![Some(19_783), None]);
    }

    #[test]
    fn declared_types_take_named_times_in_their_unit() {
        let decl = HashMap::from([
            ("ts_text".to_string(), ColType::Text),
            ("nts_text".to_string(), ColType::Text),
            ("t_text".to_string(), ColType::Text),
            ("nt_text".to_string(), ColType::Text),
            ("d_text".to_string(), ColType::Text),
            ("ts_date".to_string(), ColType::Date),
            ("d_ts".to_string(), ColType::TimestampTz),
        ]);
        let fields = r#"{"type":"int64","name":"io.debezium.time.Timestamp","field":"ts_text"},
            {"type":"int64","name":"io.debezium.time.NanoTimestamp","field":"nts_text"},
            {"type":"int32","name":"io.debezium.time.Time","field":"t_text"},
            {"type":"int64","name":"io.debezium.time.NanoTime","field":"nt_text"},
            {"type":"int32","name":"io.debezium.time.Date","field":"d_text"},
            {"type":"int64","name":"io.debezium.time.Timestamp","field":"ts_date"},
            {"type":"int32","name":"io.debezium.time.Date","field":"d_ts"}"#;
        let line = with_schema(
            fields,
            r#"{"ts_text":1709288130123,"nts_text":1709288130123456789,"t_text":37230000,"nt_text":37230123456789,"d_text":19783,"ts_date":-1,"d_ts":19783}"#,
        );
        let mut d = Decoder::new(decl, DecimalHandling::Precise);
        let out = d.decode(&raw(&[&line]));
        assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
        let b = &out.batch;
        assert_eq!(text(b, "ts_text").value(0), "2024-03-01T10:15:30.123");
        assert_eq!(text(b, "nts_text").value(0), "2024-03-01T10:15:30.123456789");
        assert_eq!(text(b, "t_text").value(0), "10:20:30");
        assert_eq!(text(b, "nt_text").value(0), "10:20:30.123456789");
        assert_eq!(text(b, "d_text").value(0), "2024-03-01");
        assert_eq!(i64s(b, "ts_date"), vec![Some(-1)], "1969-12-31T23:59:59.999 is on 1969-12-31");
        assert_eq!(i64s(b, "d_ts"), vec![Some(19_783 * 86_400_000_000)]);

        // A time of day cannot become a timestamp or a date.
        let decl = HashMap::from([("t".to_string(), ColType::Timestamp)]);
        let line =
            with_schema(r#"{"type":"int64","name":"io.debezium.time.MicroTime","field":"t"}"#, r#"{"t":5}"#);
        let out = Decoder::new(decl, DecimalHandling::Precise).decode(&raw(&[&line]));
        assert_eq!(out.dead_letters.len(), 1);
        assert!(out.dead_letters[0].reason.contains("time of day"), "{}", out.dead_letters[0].reason);
        assert_eq!(
            time_of_day_micros(86_400_001, Encoding::TimeMillis).unwrap_err(),
            "86400001 is not a time of day"
        );
        assert_eq!(temporal_text("86400000000", Encoding::TimeMicros).unwrap(), "24:00:00");
    }

    #[test]
    fn schemaless_decimal_strings_tell_their_encoding() {
        use DecimalHandling::{Precise, String as Str};
        use DecimalWire::{Base64, Text};
        for (s, precise, string) in [
            ("1234.56", Text, Text), // a point: never base64
            ("-42.50", Text, Text),  // a sign
            ("0.01", Text, Text),
            ("12345", Text, Text),    // not a multiple of 4 long
            ("AeJA", Base64, Base64), // letters: never a number
            ("/w==", Base64, Base64),
            ("BNI=", Base64, Base64),
            ("1234", Base64, Text), // reads both ways: the setting decides
            ("00000000", Base64, Text),
            ("abc!", Text, Text), // neither: the text parser says why
        ] {
            assert_eq!(schemaless_decimal_wire(s, Precise), precise, "{s} with precise");
            assert_eq!(schemaless_decimal_wire(s, Str), string, "{s} with string");
        }
        assert!(is_padded_base64("AA==") && is_padded_base64("AeJA") && is_padded_base64("+/+/"));
        assert!(!is_padded_base64("A===") && !is_padded_base64("AA=A") && !is_padded_base64(""));
    }

    fn decimals(out: &Decoded, name: &str) -> Vec<Option<i128>> {
        let c = out.batch.after.get(name).unwrap();
        c.array.as_any().downcast_ref::<Decimal128Array>().unwrap().iter().collect()
    }

    #[test]
    fn numerics_without_scale_arrive_as_variable_scale_structs() {
        // PostgreSQL `numeric` (no scale) in `precise` mode: {"scale", "value": base64 unscaled}.
        let decl = HashMap::from([("n".to_string(), ColType::Decimal { precision: 38, scale: 4 })]);
        let lines = [
            r#"{"before":null,"after":{"n":{"scale":3,"value":"MDk="}},"source":{},"op":"c"}"#,
            r#"{"before":null,"after":{"n":{"scale":0,"value":"/w=="}},"source":{},"op":"c"}"#,
            r#"{"before":null,"after":{"n":{"scale":1}},"source":{},"op":"c"}"#,
        ];
        let out = Decoder::new(decl, DecimalHandling::Precise).decode(&raw(&lines));
        assert_eq!(decimals(&out, "n"), vec![Some(123_450), Some(-10_000)]);
        assert_eq!(out.dead_letters.len(), 1);
        assert!(out.dead_letters[0].reason.contains("is not a decimal"), "{}", out.dead_letters[0].reason);
    }

    #[test]
    fn schemaless_decimals_need_no_setting_where_unambiguous() {
        let line = |v: &str| {
            format!(
                r#"{{"before":null,"after":{{"customer_id":1,"lifetime_value":{v}}},"source":{{}},"op":"c"}}"#
            )
        };
        let values =
            [r#""1234.56""#, r#""-42.50""#, r#""0.01""#, r#""9999999999.99""#, r#""AeJA""#, r#""/w==""#];
        let lines: Vec<String> = values.iter().map(|v| line(v)).collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let expected =
            vec![Some(123_456), Some(-4_250), Some(1), Some(999_999_999_999), Some(123_456), Some(-1)];
        for handling in [DecimalHandling::Precise, DecimalHandling::String] {
            let out = Decoder::new(declared(), handling).decode(&raw(&lines));
            assert!(out.dead_letters.is_empty(), "{handling:?}: {:?}", out.dead_letters);
            assert_eq!(decimals(&out, "lifetime_value"), expected, "{handling:?}");
        }

        // The ambiguous case, for a scale-0 column: the setting decides.
        let decl = HashMap::from([("n".to_string(), ColType::Decimal { precision: 10, scale: 0 })]);
        let l = r#"{"before":null,"after":{"n":"1234"},"source":{},"op":"c"}"#;
        let out = Decoder::new(decl.clone(), DecimalHandling::Precise).decode(&raw(&[l]));
        assert_eq!(decimals(&out, "n"), vec![Some(-2_658_824)], "base64 d7 6d f8");
        let out = Decoder::new(decl, DecimalHandling::String).decode(&raw(&[l]));
        assert_eq!(decimals(&out, "n"), vec![Some(1234)]);

        // Neither reading works: the reason names both.
        let out = Decoder::new(declared(), DecimalHandling::Precise).decode(&raw(&[&line(r#""12,50""#)]));
        assert_eq!(out.dead_letters.len(), 1);
        let reason = &out.dead_letters[0].reason;
        assert!(
            reason.contains("`12,50` is not a decimal number") && reason.contains("nor a base64"),
            "{reason}"
        );
    }

    /// The declared columns of the shipped configuration.
    fn shipped_declared() -> HashMap<String, ColType> {
        crate::config::Config::shipped_default()
            .table
            .columns
            .iter()
            .map(|c| (c.name.clone(), crate::schema::parse_type(&c.ty).unwrap()))
            .collect()
    }

    /// Every scenario of one converter setting of the shared fixtures, one record per line.
    fn fixture_lines(setting: &str) -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/debezium");
        let mut out = Vec::new();
        for s in [
            "snapshot",
            "insert",
            "update",
            "update_lifetime_value_only",
            "delete",
            "update_primary_key",
            "add_column",
            "toast_default_identity",
            "replica_identity_full",
            "truncate",
        ] {
            let f = dir.join(setting).join(format!("{s}.ndjson"));
            let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            out.extend(text.lines().filter(|l| !l.trim().is_empty()).map(str::to_string));
        }
        out
    }

    /// `{"schema","payload"}` → `payload`, as JsonConverter writes with `schemas.enable=false`.
    fn strip_schema(v: &serde_json::Value) -> serde_json::Value {
        match v.get("payload") {
            Some(p) if v.get("schema").is_some() => p.clone(),
            _ => v.clone(),
        }
    }

    /// Rewrites every base64 `lifetime_value` of a schemaless precise record as Debezium's string
    /// mode writes it (scale 2).
    fn base64_decimals_to_text(line: &str) -> String {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        for image in ["before", "after"] {
            if let Some(lv) = v.pointer_mut(&format!("/value/{image}/lifetime_value"))
                && let Some(b64) = lv.as_str()
            {
                let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
                let mut x: i128 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
                for b in bytes {
                    x = (x << 8) | b as i128;
                }
                *lv = serde_json::Value::String(format_decimal(x, 2));
            }
        }
        v.to_string()
    }

    #[test]
    fn every_converter_setting_decodes_with_the_shipped_config() {
        let strings_stripped: Vec<String> = fixture_lines("schemas_true__decimal_string")
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                serde_json::json!({"topic": v["topic"], "key": strip_schema(&v["key"]), "value": strip_schema(&v["value"])})
                    .to_string()
            })
            .collect();
        let strings_converted: Vec<String> = fixture_lines("schemas_false__decimal_precise")
            .iter()
            .map(|l| base64_decimals_to_text(l))
            .collect();
        assert!(strings_stripped.iter().any(|l| l.contains(r#""lifetime_value":"1234.56""#)));
        assert!(strings_converted.iter().any(|l| l.contains(r#""lifetime_value":"1234.56""#)));
        let streams = [
            ("schemas_false__decimal_precise", fixture_lines("schemas_false__decimal_precise")),
            ("schemas_true__decimal_precise", fixture_lines("schemas_true__decimal_precise")),
            ("schemas_true__decimal_string", fixture_lines("schemas_true__decimal_string")),
            ("schemas_false__decimal_string (schemas stripped)", strings_stripped),
            ("schemas_false__decimal_string (base64 converted)", strings_converted),
        ];
        let mut reference: Option<Vec<Option<i128>>> = None;
        for (name, lines) in &streams {
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            let out = Decoder::new(shipped_declared(), DecimalHandling::Precise).decode(&raw(&lines));
            assert!(out.dead_letters.is_empty(), "{name}: {:?}", out.dead_letters);
            assert_eq!(
                (out.stats.records, out.stats.events, out.stats.tombstones, out.stats.truncates),
                (24, 20, 3, 1),
                "{name}"
            );
            let values = decimals(&out, "lifetime_value");
            // Alice's snapshot row, then her update to 1500.00; Eve's -42.50; Dave's largest value.
            assert_eq!(values[0], Some(123_456), "{name}");
            assert!(values.contains(&Some(150_000)), "{name}: {values:?}");
            assert!(values.contains(&Some(-4_250)), "{name}: {values:?}");
            assert!(values.contains(&Some(999_999_999_999)), "{name}: {values:?}");
            match &reference {
                None => reference = Some(values),
                Some(r) => assert_eq!(&values, r, "{name} decodes other decimals than the first setting"),
            }
        }
    }

    /// Everything the decoder reads from a record's parts, to compare the scanner with serde.
    fn describe(p: &Parts<'_>) -> String {
        fn body(b: &Body<'_>) -> String {
            let image = |i: &Option<Image<'_>>| {
                i.as_ref()
                    .map(|Image(e)| e.iter().map(|(k, v)| format!("{k}={}", v.text)).collect::<Vec<_>>())
            };
            let src = b.source.as_ref().map(|s| {
                (s.schema.clone(), s.table.clone(), s.lsn, s.tx_id, s.ts_ms, s.snapshot.map(|r| r.text))
            });
            format!("{:?} {:?} {src:?} {:?}", image(&b.before), image(&b.after), b.op)
        }
        let flat = |f: &Flat<'_>| {
            format!("{:?} {:?} {}", f.schema.map(|r| r.text), f.payload.as_ref().map(body), body(&f.body))
        };
        format!("{} {:?} {:?} {}", p.topic, p.key.map(|r| r.text), p.value.as_ref().map(flat), flat(&p.top))
    }

    #[test]
    fn the_scanner_reads_every_fixture_and_accepts_only_what_serde_reads_alike() {
        let mut lines: Vec<String> = [
            "schemas_false__decimal_precise",
            "schemas_true__decimal_precise",
            "schemas_true__decimal_string",
        ]
        .iter()
        .flat_map(|s| fixture_lines(s))
        .collect();
        let fixtures = lines.len();
        lines.extend(
            [
                " { \"before\" : null ,\n\t\"after\" : { \"id\" : -1.5e+3 , \"doc\" : {\"a\": [1, {\"b\": []}, \"\"]}, \"t\": true, \"f\": false, \"n\": null, \"s\": \"q\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\" } , \"source\" : { \"schema\" : \"public\" , \"table\" : \"t\" , \"lsn\" : 0, \"snapshot\": \"last\", \"extra\": [ ] } , \"op\" : \"c\" } ",
                r#"{"topic":"t","key":null,"value":null}"#,
                r#"{"topic":null,"schema":null,"payload":null}"#,
                r#"{"schema":{"type":"struct"},"payload":{"after":{"a":1,"a":2},"op":"u","source":{"txId":-9223372036854775808,"ts_ms":0}}}"#,
                r#"{"after":{},"before":{"x":0.0,"y":-0,"z":1E9},"op":"d","ts_ms":1}"#,
            ]
            .map(String::from),
        );
        let mut accepted = 0;
        let mut check = |text: &str| {
            let text = text.trim();
            let Ok(fast) = scan::record(text, false) else { return false };
            let slow: Line = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("the scanner accepted what serde refuses ({e}): {text}"));
            assert_eq!(describe(&fast), describe(&slow.into()), "{text}");
            accepted += 1;
            true
        };
        for (n, line) in lines.iter().enumerate() {
            assert!(check(line) || n >= fixtures, "the scanner leaves a fixture to serde: {line}");
            // Records one byte away (a byte deleted, inserted or replaced at ~150 places); records with
            // embedded schemas only as they are (their schemas are JSON like the rest, only longer).
            let bytes = line.as_bytes();
            if bytes.len() > 2000 {
                continue;
            }
            for i in (0..bytes.len()).step_by(bytes.len() / 150 + 1) {
                let mut variants = vec![[&bytes[..i], &bytes[i + 1..]].concat()];
                for c in [b'"', b'\\', b',', b'}', b']', b':', b'0', b'.', b'e', 0x01] {
                    variants.push([&bytes[..i], &[c], &bytes[i..]].concat());
                    variants.push([&bytes[..i], &[c], &bytes[i + 1..]].concat());
                }
                for v in variants {
                    if let Ok(t) = std::str::from_utf8(&v) {
                        check(t);
                    }
                }
            }
        }
        assert!(accepted > 10 * lines.len(), "only {accepted} variants were read by the scanner");
    }

    #[test]
    fn is_json_agrees_with_serde() {
        let deep = format!("{}{}", "[".repeat(120), "]".repeat(120));
        let deeper = format!("{}{}", "[".repeat(200), "]".repeat(200));
        for text in [
            " {\"a\": [1, -2.5e3, true, false, null, \"\\u00e9\\n\"], \"b\": {}} ",
            "\"plain\"",
            "0",
            "null",
            &deep,
            &deeper,
            "",
            "nul",
            "{",
            "[1,]",
            "1 2",
            "01",
            "\"\\x\"",
            "\"tab\there\"",
            "{\"a\" 1}",
            "[\"unterminated]",
        ] {
            let serde = serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
            assert_eq!(is_json(text.as_bytes()), serde, "{text}");
        }
        assert!(!is_json(b"\"\xff\""));
        for line in fixture_lines("schemas_true__decimal_precise") {
            assert!(is_json(line.as_bytes()));
        }
    }

    #[test]
    fn kafka_values_wrapped_unchecked_are_checked_here() {
        use crate::source::kafka::push_wrapped;
        let mut r = RawBatch::new(vec![Arc::from("t-0")]);
        let values: [&[u8]; 5] = [
            br#"{"op":"c","after":{"customer_id":1},"source":{"schema":"public","table":"customers"}}"#,
            // Text after the value would read as more fields of the wrapper.
            br#"{"op":"c","after":{"customer_id":2}},"zzz":1"#,
            b"garbage",
            b"",
            // An escaped field name: read by serde, the value checked first.
            br#"{"op":"c","after":{"customer_\u0069d":3}}"#,
        ];
        for (i, v) in values.iter().enumerate() {
            push_wrapped(&mut r, 0, i as i64, "t", Some(br#"{"customer_id":1}"#), Some(v));
        }
        push_wrapped(&mut r, 0, 9, "t", None, None);
        assert!(r.unchecked_values);
        let out = Decoder::new(declared(), DecimalHandling::Precise).decode(&r);
        let ids = out
            .batch
            .after
            .get("customer_id")
            .map(|c| c.array.as_primitive::<arrow_array::types::Int64Type>().values().to_vec());
        assert_eq!(ids, Some(vec![1, 3]));
        assert_eq!(out.stats.tombstones, 1);
        let dead: Vec<(u32, &str)> = out.dead_letters.iter().map(|d| (d.origin, &*d.reason)).collect();
        assert_eq!(dead.len(), 3, "{dead:?}");
        for (d, origin) in dead.iter().zip([1, 2, 3]) {
            assert_eq!(d.0, origin);
            assert!(d.1.starts_with("the Kafka record's value is not JSON"), "{d:?}");
        }
    }
}
