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
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::change::{ChangeBatch, Column, Columns, DeadLetter, Op, RawBatch, SourceInfo, TableRef};
use crate::config::DecimalHandling;
use crate::schema::{ColType, MAX_DECIMAL_PRECISION, UTC};

/// Debezium's stand-in for a TOASTed value it did not receive.
pub const TOAST_PLACEHOLDER: &str = "__debezium_unavailable_value";

/// Counts of what one decode pass saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DecodeStats {
    pub records: u64,
    pub events: u64,
    pub tombstones: u64,
    pub truncates: u64,
    pub blank_lines: u64,
    pub dead_letters: u64,
    /// TOAST placeholders written as null.
    pub toast_placeholders: u64,
}

impl DecodeStats {
    /// Adds another pass's counts.
    pub fn add(&mut self, o: &DecodeStats) {
        self.records += o.records;
        self.events += o.events;
        self.tombstones += o.tombstones;
        self.truncates += o.truncates;
        self.blank_lines += o.blank_lines;
        self.dead_letters += o.dead_letters;
        self.toast_placeholders += o.toast_placeholders;
    }
}

/// The result of decoding one raw batch.
#[derive(Debug, Default)]
pub struct Decoded {
    pub batch: ChangeBatch,
    pub dead_letters: Vec<DeadLetter>,
    pub stats: DecodeStats,
}

/// How a value is carried on the wire, from the Connect schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Plain,
    /// `org.apache.kafka.connect.data.Decimal`: base64 big-endian two's complement unscaled bytes.
    Base64Decimal,
    /// A string in the schema (e.g. `decimal.handling.mode=string`).
    Text,
    Millis,
    Micros,
    Nanos,
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
            Some("io.debezium.time.Date") | Some("org.apache.kafka.connect.data.Date") => {
                plain(ColType::Date)
            }
            Some("io.debezium.time.Timestamp") | Some("org.apache.kafka.connect.data.Timestamp") => {
                FieldHint { ty: ColType::Timestamp, encoding: Encoding::Millis, scale: 0 }
            }
            Some("io.debezium.time.MicroTimestamp") => {
                FieldHint { ty: ColType::Timestamp, encoding: Encoding::Micros, scale: 0 }
            }
            Some("io.debezium.time.NanoTimestamp") => {
                FieldHint { ty: ColType::Timestamp, encoding: Encoding::Nanos, scale: 0 }
            }
            Some("io.debezium.time.ZonedTimestamp") => plain(ColType::TimestampTz),
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

/// The value envelope: with a schema (`schema` + `payload`) or bare (`before`, `after`, ...).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    schema: Option<&'a RawValue>,
    #[serde(borrow, default)]
    payload: Option<Body<'a>>,
    #[serde(borrow, default)]
    before: Option<&'a RawValue>,
    #[serde(borrow, default)]
    after: Option<&'a RawValue>,
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
    value: Option<Envelope<'a>>,
    #[serde(borrow, default)]
    schema: Option<&'a RawValue>,
    #[serde(borrow, default)]
    payload: Option<Body<'a>>,
    #[serde(borrow, default)]
    before: Option<&'a RawValue>,
    #[serde(borrow, default)]
    after: Option<&'a RawValue>,
    #[serde(borrow, default)]
    source: Option<SourceBody<'a>>,
    #[serde(borrow, default)]
    op: Option<Cow<'a, str>>,
}

/// The Debezium change body.
#[derive(Deserialize, Default)]
struct Body<'a> {
    #[serde(borrow, default)]
    before: Option<&'a RawValue>,
    #[serde(borrow, default)]
    after: Option<&'a RawValue>,
    #[serde(borrow, default)]
    source: Option<SourceBody<'a>>,
    #[serde(borrow, default)]
    op: Option<Cow<'a, str>>,
}

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
    snapshot: Option<&'a RawValue>,
}

/// Decodes Debezium JSON records into columnar batches.
pub struct Decoder {
    declared: HashMap<String, ColType>,
    decimal_handling: DecimalHandling,
    schemas: HashMap<Box<str>, Arc<RowSchema>>,
    last_schema: Option<(Box<str>, Arc<RowSchema>)>,
}

impl Decoder {
    /// A decoder whose column types follow `declared` (the table's columns) where they name a column.
    pub fn new(declared: HashMap<String, ColType>, decimal_handling: DecimalHandling) -> Self {
        Self { declared, decimal_handling, schemas: HashMap::new(), last_schema: None }
    }

    /// Decodes every record of `raw`.
    pub fn decode(&mut self, raw: &RawBatch) -> Decoded {
        let mut b = BatchBuilder::new(raw.len());
        let mut dead = Vec::new();
        let mut stats = DecodeStats { records: raw.len() as u64, ..Default::default() };
        let mut entries = Vec::with_capacity(32);
        for i in 0..raw.len() {
            let bytes = raw.record(i);
            let text = match std::str::from_utf8(bytes) {
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
            match self.decode_one(text, i as u32, &mut b, &mut entries, &mut stats) {
                Ok(()) => {}
                Err(reason) => {
                    b.reject_current(i as u32);
                    dead.push(dead_letter(i, reason));
                }
            }
        }
        stats.dead_letters = dead.len() as u64;
        let batch = b.finish();
        stats.events = batch.len() as u64;
        Decoded { batch, dead_letters: dead, stats }
    }

    fn decode_one<'a>(
        &mut self,
        text: &'a str,
        origin: u32,
        b: &mut BatchBuilder,
        entries: &mut Vec<(Cow<'a, str>, &'a RawValue)>,
        stats: &mut DecodeStats,
    ) -> Result<(), String> {
        let line: Line<'a> =
            serde_json::from_str(text).map_err(|e| format!("not a Debezium JSON record: {e}"))?;
        let (schema, body) = if line.topic.is_some() {
            match line.value {
                None => {
                    stats.tombstones += 1;
                    return Ok(());
                }
                Some(env) => {
                    let body = env.payload.unwrap_or(Body {
                        before: env.before,
                        after: env.after,
                        source: env.source,
                        op: env.op,
                    });
                    (env.schema, body)
                }
            }
        } else if line.payload.is_some() || line.schema.is_some() {
            match line.payload {
                None => {
                    stats.tombstones += 1;
                    return Ok(());
                }
                Some(p) => (line.schema, p),
            }
        } else {
            (None, Body { before: line.before, after: line.after, source: line.source, op: line.op })
        };
        let op_text =
            body.op.as_deref().ok_or("the record has no `op` field (not a Debezium change event)")?;
        let op = Op::from_debezium(op_text).ok_or_else(|| format!("unknown Debezium op `{op_text}`"))?;
        if op == Op::Truncate {
            stats.truncates += 1;
            return Ok(());
        }
        let row_schema = match schema {
            Some(s) => Some(self.row_schema(s)?),
            None => None,
        };
        let src = body.source.unwrap_or_default();
        let table = b.intern_table(src.schema.as_deref().unwrap_or(""), src.table.as_deref().unwrap_or(""));
        let snapshot = src.snapshot.is_some_and(|s| !matches!(s.get(), "false" | "\"false\"" | "null"));
        let info =
            SourceInfo { table, lsn: src.lsn, txid: src.tx_id, ts_ms: src.ts_ms.unwrap_or(0), snapshot };
        b.begin_row(op, info, origin);
        let ctx =
            Ctx { declared: &self.declared, hints: row_schema.as_deref(), decimal: self.decimal_handling };
        for (image, side) in [(body.after, Side::After), (body.before, Side::Before)] {
            let Some(image) = image else { continue };
            if image.get() == "null" {
                continue;
            }
            entries.clear();
            let mut de = serde_json::Deserializer::from_str(image.get());
            EntriesSeed(entries)
                .deserialize(&mut de)
                .map_err(|e| format!("{} image is not an object: {e}", side.name()))?;
            for (name, value) in entries.iter() {
                b.append(side, name, value, &ctx, stats)?;
            }
        }
        Ok(())
    }

    fn row_schema(&mut self, raw: &RawValue) -> Result<Arc<RowSchema>, String> {
        let text = raw.get();
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

fn dead_letter(i: usize, reason: String) -> DeadLetter {
    DeadLetter { origin: i as u32, stage: "decode", plugin: None, reason }
}

/// Collects the entries of a JSON object without parsing the values.
struct EntriesSeed<'v, 'a>(&'v mut Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de, 'v> DeserializeSeed<'de> for EntriesSeed<'v, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 'v> Visitor<'de> for EntriesSeed<'v, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            let v: &'de RawValue = map.next_value()?;
            self.0.push((k, v));
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Side {
    After,
    Before,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::After => "after",
            Side::Before => "before",
        }
    }
}

struct Ctx<'c> {
    declared: &'c HashMap<String, ColType>,
    hints: Option<&'c RowSchema>,
    decimal: DecimalHandling,
}

/// One JSON scalar, borrowed from the record where possible.
enum Json<'a> {
    Null,
    Bool(bool),
    Num(&'a str),
    Str(Cow<'a, str>),
    Nested(&'a str),
}

fn classify(raw: &RawValue) -> Result<Json<'_>, String> {
    let t = raw.get();
    Ok(match t.as_bytes().first() {
        Some(b'n') => Json::Null,
        Some(b't') => Json::Bool(true),
        Some(b'f') => Json::Bool(false),
        Some(b'"') => {
            let inner = &t[1..t.len() - 1];
            if inner.contains('\\') {
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
        v: Json<'_>,
        hint: Option<FieldHint>,
        decimal: DecimalHandling,
    ) -> Result<(), String> {
        let encoding = hint.map(|h| h.encoding);
        match (self, v) {
            (b, Json::Null) => b.append_null(),
            (Builder::Boolean(b), Json::Bool(x)) => b.append_value(x),
            (Builder::Boolean(b), Json::Str(s)) => {
                b.append_value(s.parse::<bool>().map_err(|_| format!("`{s}` is not a boolean"))?)
            }
            (Builder::Int32(b), Json::Num(n)) => {
                b.append_value(n.parse::<i32>().map_err(|_| format!("{n} is not a 32-bit integer"))?)
            }
            (Builder::Int64(b), Json::Num(n)) => {
                b.append_value(n.parse::<i64>().map_err(|_| format!("{n} is not a 64-bit integer"))?)
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
            (Builder::Text(b), Json::Str(s)) => b.append_value(&*s),
            (Builder::Text(b), Json::Num(n) | Json::Nested(n)) => b.append_value(n),
            (Builder::Text(b), Json::Bool(x)) => b.append_value(if x { "true" } else { "false" }),
            (Builder::Bytes(b), Json::Str(s)) => b.append_value(
                base64::engine::general_purpose::STANDARD
                    .decode(&*s)
                    .map_err(|e| format!("`{s}` is not base64: {e}"))?,
            ),
            (Builder::Decimal(b), v) => {
                let ColType::Decimal { precision, scale } = ty else {
                    unreachable!("decimal builder has decimal type")
                };
                b.append_value(decimal_value(v, precision, scale, hint, decimal)?)
            }
            (Builder::Date(b), Json::Num(n)) => {
                b.append_value(n.parse::<i32>().map_err(|_| format!("{n} is not a day number"))?)
            }
            (Builder::Date(b), Json::Str(s)) => b.append_value(parse_date(&s)?),
            (Builder::Timestamp(b), Json::Num(n)) => {
                let x: i64 = n.parse().map_err(|_| format!("{n} is not an integer timestamp"))?;
                b.append_value(match encoding {
                    Some(Encoding::Millis) => x.saturating_mul(1000),
                    Some(Encoding::Nanos) => x / 1000,
                    _ => x,
                })
            }
            (Builder::Timestamp(b), Json::Str(s)) => b.append_value(parse_timestamp_micros(&s)?),
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

fn decimal_value(
    v: Json<'_>,
    precision: u8,
    scale: u8,
    hint: Option<FieldHint>,
    handling: DecimalHandling,
) -> Result<i128, String> {
    let (unscaled, from_scale) = match v {
        Json::Num(n) => parse_decimal_text(n)?,
        Json::Str(s) => {
            let base64 = match hint.map(|h| h.encoding) {
                Some(Encoding::Base64Decimal) => true,
                Some(_) => false,
                None => handling == DecimalHandling::Precise,
            };
            if base64 {
                let bytes = base64::engine::general_purpose::STANDARD.decode(&*s).map_err(|_| {
                    format!("`{s}` is not a base64 decimal; if Debezium sends decimals as text, set decode.decimal_handling = \"string\"")
                })?;
                if bytes.is_empty() || bytes.len() > 16 {
                    return Err(format!("`{s}` decodes to {} bytes, not a decimal", bytes.len()));
                }
                let mut x: i128 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
                for byte in bytes {
                    x = (x << 8) | byte as i128;
                }
                (x, hint.map_or(scale, |h| h.scale))
            } else {
                parse_decimal_text(&s).map_err(|e| {
                    if hint.is_none() {
                        format!("{e}; if Debezium sends decimals as base64, set decode.decimal_handling = \"precise\"")
                    } else {
                        e
                    }
                })?
            }
        }
        _ => return Err("decimal column expects a string or a number".into()),
    };
    let value = rescale(unscaled, from_scale, scale)?;
    if value.unsigned_abs() >= 10u128.pow(precision as u32) {
        return Err(format!("{} does not fit decimal({precision},{scale})", format_decimal(value, scale)));
    }
    Ok(value)
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

    fn append(
        &mut self,
        side: Side,
        name: &str,
        raw: &RawValue,
        ctx: &Ctx<'_>,
        stats: &mut DecodeStats,
    ) -> Result<(), String> {
        let row = self.ops.len() - 1;
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
        }
        let hint = ctx.hints.and_then(|h| h.fields.get(name).copied());
        let idx = match sb.index.get(name) {
            Some(&i) => i,
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
        let col = &mut sb.cols[idx];
        let len = col.b.len();
        if len > row {
            return Ok(()); // a repeated key in one object: the first value wins
        }
        for _ in len..row {
            col.b.append_null();
        }
        col.b.append(col.ty, v, hint, ctx.decimal).map_err(|e| format!("column `{name}`: {e}"))
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
        let mut r = RawBatch { streams: vec![Arc::from("test")], ..Default::default() };
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
    fn string_mode_without_schema_explains_the_fix() {
        let line = r#"{"before":null,"after":{"lifetime_value":"12.50"},"source":{},"op":"c"}"#;
        let mut d = Decoder::new(declared(), DecimalHandling::Precise);
        let out = d.decode(&raw(&[line]));
        assert_eq!(out.dead_letters.len(), 1);
        assert!(out.dead_letters[0].reason.contains("decimal_handling"), "{}", out.dead_letters[0].reason);
        let mut d = Decoder::new(declared(), DecimalHandling::String);
        assert!(d.decode(&raw(&[line])).dead_letters.is_empty());
    }
}
