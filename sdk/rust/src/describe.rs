//! What a plugin declares about itself: [`Description`], [`ColumnDef`], [`ColumnType`].

use std::fmt;

use crate::wit;

/// The type of a column a plugin writes (or reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// Booleans.
    Boolean,
    /// 32-bit integers.
    Int32,
    /// 64-bit integers.
    Int64,
    /// 64-bit floats.
    Float64,
    /// UTF-8 text.
    Text,
    /// Raw bytes.
    Bytes,
    /// Exact decimals with this precision (total digits) and scale (fractional digits).
    Decimal {
        /// Total number of digits.
        precision: u8,
        /// Number of digits after the decimal point.
        scale: u8,
    },
    /// Days since 1970-01-01.
    Date,
    /// Microseconds since 1970-01-01T00:00:00, no time zone.
    Timestamp,
    /// Microseconds since 1970-01-01T00:00:00Z.
    TimestampTz,
    /// JSON documents.
    Json,
}

impl ColumnType {
    /// Converts to the WIT variant.
    pub fn to_wit(self) -> wit::ColumnType {
        match self {
            ColumnType::Boolean => wit::ColumnType::Boolean,
            ColumnType::Int32 => wit::ColumnType::Int32,
            ColumnType::Int64 => wit::ColumnType::Int64,
            ColumnType::Float64 => wit::ColumnType::Float64,
            ColumnType::Text => wit::ColumnType::Text,
            ColumnType::Bytes => wit::ColumnType::Bytes,
            ColumnType::Decimal { precision, scale } => {
                wit::ColumnType::Decimal(wit::DecimalType { precision, scale })
            }
            ColumnType::Date => wit::ColumnType::Date,
            ColumnType::Timestamp => wit::ColumnType::Timestamp,
            ColumnType::TimestampTz => wit::ColumnType::Timestamptz,
            ColumnType::Json => wit::ColumnType::Json,
        }
    }

    /// Converts from the WIT variant.
    pub fn from_wit(t: wit::ColumnType) -> Self {
        match t {
            wit::ColumnType::Boolean => ColumnType::Boolean,
            wit::ColumnType::Int32 => ColumnType::Int32,
            wit::ColumnType::Int64 => ColumnType::Int64,
            wit::ColumnType::Float64 => ColumnType::Float64,
            wit::ColumnType::Text => ColumnType::Text,
            wit::ColumnType::Bytes => ColumnType::Bytes,
            wit::ColumnType::Decimal(d) => ColumnType::Decimal { precision: d.precision, scale: d.scale },
            wit::ColumnType::Date => ColumnType::Date,
            wit::ColumnType::Timestamp => ColumnType::Timestamp,
            wit::ColumnType::Timestamptz => ColumnType::TimestampTz,
            wit::ColumnType::Json => ColumnType::Json,
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::Boolean => f.write_str("boolean"),
            ColumnType::Int32 => f.write_str("int32"),
            ColumnType::Int64 => f.write_str("int64"),
            ColumnType::Float64 => f.write_str("float64"),
            ColumnType::Text => f.write_str("text"),
            ColumnType::Bytes => f.write_str("bytes"),
            ColumnType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            ColumnType::Date => f.write_str("date"),
            ColumnType::Timestamp => f.write_str("timestamp"),
            ColumnType::TimestampTz => f.write_str("timestamptz"),
            ColumnType::Json => f.write_str("json"),
        }
    }
}

/// A column a plugin writes: name, type and optional documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    /// Column name.
    pub name: String,
    /// Column type.
    pub ty: ColumnType,
    /// Optional documentation, shown by the host.
    pub doc: Option<String>,
}

impl ColumnDef {
    /// A column of any type.
    pub fn new(name: impl Into<String>, ty: ColumnType) -> Self {
        ColumnDef { name: name.into(), ty, doc: None }
    }
    /// A text column.
    pub fn text(name: impl Into<String>) -> Self {
        Self::new(name, ColumnType::Text)
    }
    /// A boolean column.
    pub fn boolean(name: impl Into<String>) -> Self {
        Self::new(name, ColumnType::Boolean)
    }
    /// An int32 column.
    pub fn int32(name: impl Into<String>) -> Self {
        Self::new(name, ColumnType::Int32)
    }
    /// An int64 column.
    pub fn int64(name: impl Into<String>) -> Self {
        Self::new(name, ColumnType::Int64)
    }
    /// A float64 column.
    pub fn float64(name: impl Into<String>) -> Self {
        Self::new(name, ColumnType::Float64)
    }
    /// A bytes column.
    pub fn bytes(name: impl Into<String>) -> Self {
        Self::new(name, ColumnType::Bytes)
    }
    /// A `decimal(precision, scale)` column.
    pub fn decimal(name: impl Into<String>, precision: u8, scale: u8) -> Self {
        Self::new(name, ColumnType::Decimal { precision, scale })
    }
    /// A date column.
    pub fn date(name: impl Into<String>) -> Self {
        Self::new(name, ColumnType::Date)
    }
    /// A timestamp column (no time zone).
    pub fn timestamp(name: impl Into<String>) -> Self {
        Self::new(name, ColumnType::Timestamp)
    }
    /// A timestamp column with time zone (UTC).
    pub fn timestamptz(name: impl Into<String>) -> Self {
        Self::new(name, ColumnType::TimestampTz)
    }
    /// A JSON column.
    pub fn json(name: impl Into<String>) -> Self {
        Self::new(name, ColumnType::Json)
    }
    /// Adds documentation.
    pub fn doc(mut self, doc: impl Into<String>) -> Self {
        self.doc = Some(doc.into());
        self
    }

    /// The column definition as the WIT record.
    pub fn to_wit(&self) -> wit::ColumnDef {
        wit::ColumnDef { name: self.name.clone(), type_: self.ty.to_wit(), doc: self.doc.clone() }
    }
}

/// What a plugin is and which columns it touches. Built with a chain of calls:
///
/// ```
/// use cdc_sdk::prelude::*;
/// let d = Description::new("name-concat", "0.1.0")
///     .reads(["first_name", "last_name"])
///     .writes([ColumnDef::text("full_name")])
///     .removes(["first_name", "last_name"]);
/// assert_eq!(d.reads, ["first_name", "last_name"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// After-image columns read; `["*"]` means all.
    pub reads: Vec<String>,
    /// Whether before images (of the same columns) are read too.
    pub reads_before: bool,
    /// Columns written.
    pub writes: Vec<ColumnDef>,
    /// Columns removed from every event.
    pub removes: Vec<String>,
}

impl Description {
    /// A plugin that reads, writes and removes nothing (yet).
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Description {
            name: name.into(),
            version: version.into(),
            reads: Vec::new(),
            reads_before: false,
            writes: Vec::new(),
            removes: Vec::new(),
        }
    }

    /// Adds after-image columns to read.
    pub fn reads<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.reads.extend(columns.into_iter().map(Into::into));
        self
    }

    /// Reads every column (`*`).
    pub fn reads_all(mut self) -> Self {
        self.reads = vec!["*".to_owned()];
        self
    }

    /// Also reads the before images of the read columns.
    pub fn reads_before(mut self, yes: bool) -> Self {
        self.reads_before = yes;
        self
    }

    /// Adds columns to write.
    pub fn writes(mut self, columns: impl IntoIterator<Item = ColumnDef>) -> Self {
        self.writes.extend(columns);
        self
    }

    /// Adds columns to remove.
    pub fn removes<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.removes.extend(columns.into_iter().map(Into::into));
        self
    }

    /// Whether the plugin reads every column.
    pub fn reads_everything(&self) -> bool {
        self.reads.iter().any(|r| r == "*")
    }

    /// Checks the description for mistakes: empty or duplicate names, a column both written and removed.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("plugin name is empty".into());
        }
        let all = self.reads.iter().chain(self.writes.iter().map(|w| &w.name)).chain(&self.removes);
        if all.into_iter().any(|n| n.trim().is_empty()) {
            return Err("a column name is empty".into());
        }
        for (kind, names) in [
            ("reads", self.reads.iter().collect::<Vec<_>>()),
            ("writes", self.writes.iter().map(|w| &w.name).collect()),
            ("removes", self.removes.iter().collect()),
        ] {
            for (i, n) in names.iter().enumerate() {
                if names[..i].contains(n) {
                    return Err(format!("column `{n}` appears twice in {kind}"));
                }
            }
        }
        if let Some(w) = self.writes.iter().find(|w| self.removes.contains(&w.name)) {
            return Err(format!("column `{}` is both written and removed", w.name));
        }
        Ok(())
    }

    /// The description as the WIT record.
    pub fn to_wit(&self) -> wit::Description {
        wit::Description {
            name: self.name.clone(),
            version: self.version.clone(),
            reads: self.reads.clone(),
            reads_before: self.reads_before,
            writes: self.writes.iter().map(ColumnDef::to_wit).collect(),
            removes: self.removes.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_and_validate() {
        let d = Description::new("p", "1")
            .reads(["a", "b"])
            .reads_before(true)
            .writes([ColumnDef::decimal("c", 10, 2).doc("money")])
            .removes(["a"]);
        assert!(d.validate().is_ok());
        let w = d.to_wit();
        assert!(w.reads_before);
        assert!(matches!(
            w.writes[0].type_,
            wit::ColumnType::Decimal(wit::DecimalType { precision: 10, scale: 2 })
        ));
        assert_eq!(w.writes[0].doc.as_deref(), Some("money"));
        let dup = Description::new("p", "1").reads(["a", "a"]);
        assert!(dup.validate().unwrap_err().contains("`a`"));
        let both = Description::new("p", "1").writes([ColumnDef::text("x")]).removes(["x"]);
        assert!(both.validate().is_err());
        assert!(Description::new("p", "1").reads_all().reads_everything());
        assert_eq!(ColumnType::Decimal { precision: 38, scale: 2 }.to_string(), "decimal(38,2)");
    }
}
