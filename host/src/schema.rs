//! Column types shared by every stage, and their Arrow and Iceberg forms.

use std::sync::Arc;

use arrow_schema::{DataType, TimeUnit};
use iceberg::spec::{PrimitiveType, Transform, Type};

/// The type of a column inside the host. Mirrors the WIT `column-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColType {
    Boolean,
    Int32,
    Int64,
    Float64,
    Text,
    Bytes,
    Decimal { precision: u8, scale: u8 },
    Date,
    Timestamp,
    TimestampTz,
    Json,
}

/// Largest decimal precision Iceberg (and Arrow's Decimal128) holds.
pub const MAX_DECIMAL_PRECISION: u8 = 38;

/// Time zone used for `timestamptz` Arrow arrays (Iceberg's convention).
pub const UTC: &str = "+00:00";

impl ColType {
    /// The Arrow type of arrays holding this column.
    pub fn arrow_type(self) -> DataType {
        match self {
            ColType::Boolean => DataType::Boolean,
            ColType::Int32 => DataType::Int32,
            ColType::Int64 => DataType::Int64,
            ColType::Float64 => DataType::Float64,
            ColType::Text | ColType::Json => DataType::Utf8,
            ColType::Bytes => DataType::LargeBinary,
            ColType::Decimal { precision, scale } => DataType::Decimal128(precision, scale as i8),
            ColType::Date => DataType::Date32,
            ColType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC))),
        }
    }

    /// The Iceberg type a table column of this type gets.
    pub fn iceberg_type(self) -> Type {
        Type::Primitive(match self {
            ColType::Boolean => PrimitiveType::Boolean,
            ColType::Int32 => PrimitiveType::Int,
            ColType::Int64 => PrimitiveType::Long,
            ColType::Float64 => PrimitiveType::Double,
            ColType::Text | ColType::Json => PrimitiveType::String,
            ColType::Bytes => PrimitiveType::Binary,
            ColType::Decimal { precision, scale } => {
                PrimitiveType::Decimal { precision: precision as u32, scale: scale as u32 }
            }
            ColType::Date => PrimitiveType::Date,
            ColType::Timestamp => PrimitiveType::Timestamp,
            ColType::TimestampTz => PrimitiveType::Timestamptz,
        })
    }

    /// The host type for an Iceberg column, if the host can produce it.
    pub fn from_iceberg(ty: &Type) -> Option<ColType> {
        let Type::Primitive(p) = ty else { return None };
        Some(match p {
            PrimitiveType::Boolean => ColType::Boolean,
            PrimitiveType::Int => ColType::Int32,
            PrimitiveType::Long => ColType::Int64,
            PrimitiveType::Float | PrimitiveType::Double => ColType::Float64,
            PrimitiveType::String => ColType::Text,
            PrimitiveType::Binary | PrimitiveType::Fixed(_) => ColType::Bytes,
            PrimitiveType::Decimal { precision, scale } => {
                ColType::Decimal { precision: *precision as u8, scale: *scale as u8 }
            }
            PrimitiveType::Date => ColType::Date,
            PrimitiveType::Timestamp | PrimitiveType::TimestampNs => ColType::Timestamp,
            PrimitiveType::Timestamptz | PrimitiveType::TimestamptzNs => ColType::TimestampTz,
            _ => return None,
        })
    }
}

/// Parses a type name from the config (`long`, `decimal(12,2)`, ...).
pub fn parse_type(s: &str) -> Result<ColType, String> {
    let t = s.trim().to_ascii_lowercase();
    Ok(match t.as_str() {
        "boolean" | "bool" => ColType::Boolean,
        "int" | "integer" | "int32" => ColType::Int32,
        "long" | "bigint" | "int64" => ColType::Int64,
        "double" | "float64" | "float" => ColType::Float64,
        "string" | "text" => ColType::Text,
        "binary" | "bytes" => ColType::Bytes,
        "date" => ColType::Date,
        "timestamp" => ColType::Timestamp,
        "timestamptz" => ColType::TimestampTz,
        "json" => ColType::Json,
        _ => {
            let inner = t
                .strip_prefix("decimal(")
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("unknown type `{s}` (expected boolean, int, long, double, string, binary, date, timestamp, timestamptz, json or decimal(P,S))"))?;
            let (p, sc) = inner.split_once(',').ok_or_else(|| format!("`{s}`: write decimal(P,S)"))?;
            let precision: u8 = p.trim().parse().map_err(|_| format!("`{s}`: bad precision"))?;
            let scale: u8 = sc.trim().parse().map_err(|_| format!("`{s}`: bad scale"))?;
            if precision == 0 || precision > MAX_DECIMAL_PRECISION || scale > precision {
                return Err(format!("`{s}`: precision must be 1..=38 and scale at most the precision"));
            }
            ColType::Decimal { precision, scale }
        }
    })
}

/// Parses a partition transform name from the config.
pub fn parse_transform(s: &str) -> Result<Transform, String> {
    s.trim().parse::<Transform>().map_err(|e| format!("unknown partition transform `{s}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_types() {
        assert_eq!(parse_type("decimal(12, 2)").unwrap(), ColType::Decimal { precision: 12, scale: 2 });
        assert_eq!(parse_type("LONG").unwrap(), ColType::Int64);
        assert!(parse_type("decimal(40,2)").is_err());
        assert!(parse_type("varchar").unwrap_err().contains("unknown type"));
        assert!(parse_transform("month").is_ok());
        assert!(parse_transform("bucket[16]").is_ok());
        assert!(parse_transform("fortnight").is_err());
    }

    #[test]
    fn round_trips_iceberg_types() {
        for t in [
            ColType::Boolean,
            ColType::Int32,
            ColType::Int64,
            ColType::Float64,
            ColType::Text,
            ColType::Bytes,
            ColType::Decimal { precision: 12, scale: 2 },
            ColType::Date,
            ColType::Timestamp,
            ColType::TimestampTz,
        ] {
            assert_eq!(ColType::from_iceberg(&t.iceberg_type()), Some(t));
        }
    }
}
