//! Typed views over packed WIT columns ([`ColumnReader`]) and the packed column builder used for writes.

use std::cell::Cell;
use std::fmt;

use crate::describe::ColumnType;
use crate::value::{Decimal, Value};
use crate::wit;

/// A column name reduced to its length and first and last 8 bytes, so that finding a column by name
/// is a few integer comparisons: for names of up to 16 bytes, equal keys mean equal names.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct NameKey {
    len: usize,
    head: u64,
    tail: u64,
}

impl NameKey {
    #[inline]
    pub(crate) fn of(name: &str) -> Self {
        let b = name.as_bytes();
        let len = b.len();
        let (head, tail) = if len >= 8 {
            let mut head = [0u8; 8];
            let mut tail = [0u8; 8];
            head.copy_from_slice(&b[..8]);
            tail.copy_from_slice(&b[len - 8..]);
            (u64::from_le_bytes(head), u64::from_le_bytes(tail))
        } else {
            let mut head = 0u64;
            for (i, &x) in b.iter().enumerate() {
                head |= u64::from(x) << (8 * i);
            }
            (head, 0)
        };
        NameKey { len, head, tail }
    }

    /// Whether `name` (whose key is `self`) equals `other` (whose key is `other_key`).
    #[inline]
    pub(crate) fn matches(&self, name: &str, other_key: &NameKey, other: &str) -> bool {
        self == other_key && (self.len <= 16 || name == other)
    }
}

/// What is known about the UTF-8 validity of a text or JSON column.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Utf8 {
    /// Not checked yet: checked on the first read of a value.
    Unknown,
    /// The whole buffer is UTF-8 and every offset is a character boundary, so every value is UTF-8.
    Valid,
    /// Some value is not UTF-8: check each value as it is read.
    PerValue,
}

/// Variable-length values (text, bytes, JSON) of one column.
#[derive(Clone)]
struct Var<'a> {
    offsets: &'a [u32],
    data: &'a [u8],
    utf8: Cell<Utf8>,
}

impl<'a> Var<'a> {
    fn new(arr: &'a wit::VarArray, len: usize, text: bool) -> Result<Self, String> {
        let offsets = arr.offsets.as_slice();
        let data = arr.data.as_slice();
        if offsets.len() != len + 1 {
            return Err(format!("{} offsets for {len} events (expected {})", offsets.len(), len + 1));
        }
        let mut prev = 0u32;
        for (i, &o) in offsets.iter().enumerate() {
            if o < prev {
                return Err(format!("offsets are not increasing at {i}"));
            }
            prev = o;
        }
        if prev as usize > data.len() {
            return Err(format!("offsets end at {prev}, past the {} data bytes", data.len()));
        }
        Ok(Var { offsets, data, utf8: Cell::new(if text { Utf8::Unknown } else { Utf8::PerValue }) })
    }

    /// Checks the whole column once (done lazily: columns never read are never checked).
    #[cold]
    fn check_utf8(&self) -> Utf8 {
        let state = match std::str::from_utf8(self.data) {
            Ok(s) if self.offsets.iter().all(|&o| s.is_char_boundary(o as usize)) => Utf8::Valid,
            _ => Utf8::PerValue,
        };
        self.utf8.set(state);
        state
    }

    #[inline]
    fn bytes(&self, row: usize) -> &'a [u8] {
        let start = self.offsets[row] as usize;
        let end = self.offsets[row + 1] as usize;
        &self.data[start..end]
    }

    #[inline]
    fn text(&self, row: usize) -> Result<&'a str, InvalidUtf8> {
        let bytes = self.bytes(row);
        let state = match self.utf8.get() {
            Utf8::Unknown => self.check_utf8(),
            known => known,
        };
        if state == Utf8::Valid {
            // SAFETY: `Valid` means `data` is valid UTF-8 and every offset lies on a character
            // boundary, so every `data[offsets[i]..offsets[i + 1]]` is valid UTF-8.
            Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
        } else {
            std::str::from_utf8(bytes).map_err(|_| InvalidUtf8)
        }
    }
}

/// A text or JSON value that is not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

impl fmt::Display for InvalidUtf8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid UTF-8")
    }
}

impl std::error::Error for InvalidUtf8 {}

#[derive(Clone)]
enum Data<'a> {
    Bool(&'a [bool]),
    Int32(&'a [i32]),
    Int64(&'a [i64]),
    Float64(&'a [f64]),
    Text(Var<'a>),
    Bytes(Var<'a>),
    Json(Var<'a>),
    Decimal(wit::DecimalType, &'a [u8]),
    Date(&'a [i32]),
    Timestamp(&'a [i64]),
    TimestampTz(&'a [i64]),
}

/// A validated, typed, zero-copy view of one [`wit::Column`]: reading a value never allocates.
///
/// ```
/// use cdc_sdk::batch::{BatchBuilder, ColumnReader};
/// use cdc_sdk::{Op, Value};
/// let mut b = BatchBuilder::new();
/// b.push(Op::Create, &[("name", Value::Text("Ada"))]);
/// b.push(Op::Create, &[("name", Value::Null)]);
/// let batch = b.build().unwrap();
/// let col = ColumnReader::new(&batch.after[0], batch.ops.len()).unwrap();
/// assert_eq!(col.get(0), Ok(Value::Text("Ada")));
/// assert_eq!(col.get(1), Ok(Value::Null));
/// ```
///
/// The shape (lengths, offsets) is checked up front; UTF-8 validity of a text or JSON column is
/// checked once, on the first read of one of its values.
#[derive(Clone)]
pub struct ColumnReader<'a> {
    name: &'a str,
    present: &'a [bool],
    data: Data<'a>,
}

impl fmt::Debug for ColumnReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ColumnReader")
            .field("name", &self.name)
            .field("type", &self.column_type())
            .field("len", &self.present.len())
            .finish()
    }
}

fn check_len(what: &str, got: usize, len: usize) -> Result<(), String> {
    if got == len { Ok(()) } else { Err(format!("{got} {what} for {len} events")) }
}

impl<'a> ColumnReader<'a> {
    /// Checks that `column` holds exactly `len` values (and that its packed buffers are consistent)
    /// and wraps it. The error describes the first problem found, without the column name.
    pub fn new(column: &'a wit::Column, len: usize) -> Result<Self, String> {
        use wit::ColumnValues as V;
        check_len("presence flags", column.present.len(), len)?;
        let data = match &column.values {
            V::Boolean(v) => check_len("values", v.len(), len).map(|_| Data::Bool(v))?,
            V::Int32(v) => check_len("values", v.len(), len).map(|_| Data::Int32(v))?,
            V::Int64(v) => check_len("values", v.len(), len).map(|_| Data::Int64(v))?,
            V::Float64(v) => check_len("values", v.len(), len).map(|_| Data::Float64(v))?,
            V::Date(v) => check_len("values", v.len(), len).map(|_| Data::Date(v))?,
            V::Timestamp(v) => check_len("values", v.len(), len).map(|_| Data::Timestamp(v))?,
            V::Timestamptz(v) => check_len("values", v.len(), len).map(|_| Data::TimestampTz(v))?,
            V::Text(v) => Data::Text(Var::new(v, len, true)?),
            V::Json(v) => Data::Json(Var::new(v, len, true)?),
            V::Bytes(v) => Data::Bytes(Var::new(v, len, false)?),
            V::Decimal(d) => {
                check_len("decimal bytes", d.unscaled.len(), len * 16)?;
                Data::Decimal(d.type_, &d.unscaled)
            }
        };
        Ok(ColumnReader { name: &column.name, present: &column.present, data })
    }

    /// The column name.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The number of values (events).
    pub fn len(&self) -> usize {
        self.present.len()
    }

    /// Whether the column holds no values.
    pub fn is_empty(&self) -> bool {
        self.present.is_empty()
    }

    /// The column's type.
    pub fn column_type(&self) -> ColumnType {
        match &self.data {
            Data::Bool(_) => ColumnType::Boolean,
            Data::Int32(_) => ColumnType::Int32,
            Data::Int64(_) => ColumnType::Int64,
            Data::Float64(_) => ColumnType::Float64,
            Data::Text(_) => ColumnType::Text,
            Data::Bytes(_) => ColumnType::Bytes,
            Data::Json(_) => ColumnType::Json,
            Data::Decimal(t, _) => ColumnType::Decimal { precision: t.precision, scale: t.scale },
            Data::Date(_) => ColumnType::Date,
            Data::Timestamp(_) => ColumnType::Timestamp,
            Data::TimestampTz(_) => ColumnType::TimestampTz,
        }
    }

    /// Whether the value at `row` is null. Panics when `row >= len()`.
    #[inline]
    pub fn is_null(&self, row: usize) -> bool {
        !self.present[row]
    }

    /// The value at `row`; an error only for text or JSON that is not UTF-8. Panics when `row >= len()`.
    #[inline]
    pub fn get(&self, row: usize) -> Result<Value<'a>, InvalidUtf8> {
        if !self.present[row] {
            return Ok(Value::Null);
        }
        Ok(match &self.data {
            Data::Bool(v) => Value::Bool(v[row]),
            Data::Int32(v) => Value::Int32(v[row]),
            Data::Int64(v) => Value::Int64(v[row]),
            Data::Float64(v) => Value::Float64(v[row]),
            Data::Text(v) => Value::Text(v.text(row)?),
            Data::Json(v) => Value::Json(v.text(row)?),
            Data::Bytes(v) => Value::Bytes(v.bytes(row)),
            Data::Decimal(t, bytes) => {
                let bytes: &[u8] = bytes;
                let mut le = [0u8; 16];
                le.copy_from_slice(&bytes[row * 16..row * 16 + 16]);
                Value::Decimal(Decimal::new(i128::from_le_bytes(le), t.scale))
            }
            Data::Date(v) => Value::Date(v[row]),
            Data::Timestamp(v) => Value::Timestamp(v[row]),
            Data::TimestampTz(v) => Value::TimestampTz(v[row]),
        })
    }
}

enum Buf {
    Bool(Vec<bool>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Float64(Vec<f64>),
    Var { offsets: Vec<u32>, data: Vec<u8> },
    Decimal { precision: u8, scale: u8, bytes: Vec<u8> },
    Date(Vec<i32>),
    Timestamp(Vec<i64>),
    TimestampTz(Vec<i64>),
}

/// Builds one packed output column event by event. Each event gets exactly one value: [`put`]
/// replaces a value already put for the same (last) event, [`fill_null`] completes an event that got none.
///
/// [`put`]: ColumnWriter::put
/// [`fill_null`]: ColumnWriter::fill_null
pub(crate) struct ColumnWriter {
    name: String,
    ty: ColumnType,
    present: Vec<bool>,
    buf: Buf,
}

impl ColumnWriter {
    pub(crate) fn new(name: &str, ty: ColumnType, capacity: usize) -> Self {
        let buf = match ty {
            ColumnType::Boolean => Buf::Bool(Vec::with_capacity(capacity)),
            ColumnType::Int32 => Buf::Int32(Vec::with_capacity(capacity)),
            ColumnType::Int64 => Buf::Int64(Vec::with_capacity(capacity)),
            ColumnType::Float64 => Buf::Float64(Vec::with_capacity(capacity)),
            ColumnType::Text | ColumnType::Bytes | ColumnType::Json => {
                let mut offsets = Vec::with_capacity(capacity + 1);
                offsets.push(0);
                Buf::Var { offsets, data: Vec::with_capacity(capacity * 16) }
            }
            ColumnType::Decimal { precision, scale } => {
                Buf::Decimal { precision, scale, bytes: Vec::with_capacity(capacity * 16) }
            }
            ColumnType::Date => Buf::Date(Vec::with_capacity(capacity)),
            ColumnType::Timestamp => Buf::Timestamp(Vec::with_capacity(capacity)),
            ColumnType::TimestampTz => Buf::TimestampTz(Vec::with_capacity(capacity)),
        };
        ColumnWriter { name: name.to_owned(), ty, present: Vec::with_capacity(capacity), buf }
    }

    #[inline]
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Makes room for the value of event `row`: removes the value already put for it, if any.
    #[inline]
    fn start(&mut self, row: usize) {
        if self.present.len() > row {
            debug_assert_eq!(self.present.len(), row + 1);
            self.present.pop();
            match &mut self.buf {
                Buf::Bool(v) => drop(v.pop()),
                Buf::Int32(v) | Buf::Date(v) => drop(v.pop()),
                Buf::Int64(v) | Buf::Timestamp(v) | Buf::TimestampTz(v) => drop(v.pop()),
                Buf::Float64(v) => drop(v.pop()),
                Buf::Var { offsets, data } => {
                    offsets.pop();
                    data.truncate(*offsets.last().unwrap_or(&0) as usize);
                }
                Buf::Decimal { bytes, .. } => bytes.truncate(bytes.len() - 16),
            }
        }
        debug_assert_eq!(self.present.len(), row);
    }

    #[inline]
    fn push_null(&mut self) {
        self.present.push(false);
        match &mut self.buf {
            Buf::Bool(v) => v.push(false),
            Buf::Int32(v) | Buf::Date(v) => v.push(0),
            Buf::Int64(v) | Buf::Timestamp(v) | Buf::TimestampTz(v) => v.push(0),
            Buf::Float64(v) => v.push(0.0),
            Buf::Var { offsets, data } => offsets.push(data.len() as u32),
            Buf::Decimal { bytes, .. } => bytes.extend_from_slice(&[0; 16]),
        }
    }

    /// Gives event `row` a null value unless it already has one.
    #[inline]
    pub(crate) fn fill_null(&mut self, row: usize) {
        if self.present.len() == row {
            self.push_null();
        }
    }

    /// Ends a variable-length value whose bytes were appended to `data` since `start`.
    #[inline]
    fn end_var(offsets: &mut Vec<u32>, data: &mut Vec<u8>, start: usize) -> Result<(), String> {
        match u32::try_from(data.len()) {
            Ok(end) => {
                offsets.push(end);
                Ok(())
            }
            Err(_) => {
                data.truncate(start);
                offsets.push(start as u32);
                Err("column data exceeds 4 GiB".to_owned())
            }
        }
    }

    /// Sets the value of event `row` (`row` is the current event: equal to `len()`, or `len() - 1` to
    /// replace). On a type mismatch the value becomes null and the error says why.
    #[inline]
    pub(crate) fn put(&mut self, row: usize, value: Value<'_>) -> Result<(), String> {
        self.start(row);
        if value.is_null() {
            self.push_null();
            return Ok(());
        }
        let result = match (&mut self.buf, value) {
            (Buf::Bool(v), Value::Bool(x)) => {
                v.push(x);
                Ok(())
            }
            (Buf::Int32(v), Value::Int32(x)) | (Buf::Date(v), Value::Date(x)) => {
                v.push(x);
                Ok(())
            }
            (Buf::Int64(v), Value::Int64(x))
            | (Buf::Timestamp(v), Value::Timestamp(x))
            | (Buf::TimestampTz(v), Value::TimestampTz(x)) => {
                v.push(x);
                Ok(())
            }
            (Buf::Int64(v), Value::Int32(x)) => {
                v.push(i64::from(x));
                Ok(())
            }
            (Buf::Float64(v), Value::Float64(x)) => {
                v.push(x);
                Ok(())
            }
            (Buf::Float64(v), Value::Int32(x)) => {
                v.push(f64::from(x));
                Ok(())
            }
            (Buf::Float64(v), Value::Int64(x)) => {
                v.push(x as f64);
                Ok(())
            }
            (Buf::Var { offsets, data }, Value::Text(s))
                if matches!(self.ty, ColumnType::Text | ColumnType::Json) =>
            {
                let start = data.len();
                data.extend_from_slice(s.as_bytes());
                Self::end_var(offsets, data, start)
            }
            (Buf::Var { offsets, data }, Value::Json(s)) if self.ty == ColumnType::Json => {
                let start = data.len();
                data.extend_from_slice(s.as_bytes());
                Self::end_var(offsets, data, start)
            }
            (Buf::Var { offsets, data }, Value::Bytes(b)) if self.ty == ColumnType::Bytes => {
                let start = data.len();
                data.extend_from_slice(b);
                Self::end_var(offsets, data, start)
            }
            (
                Buf::Decimal { precision, scale, bytes },
                Value::Decimal(_) | Value::Int32(_) | Value::Int64(_),
            ) => {
                let d = value.as_decimal().unwrap_or_default();
                match d.rescale(*scale) {
                    Some(r) if r.fits(*precision, *scale) => {
                        bytes.extend_from_slice(&r.unscaled.to_le_bytes());
                        Ok(())
                    }
                    _ => Err(format!("value {d} does not fit column `{}` of type {}", self.name, self.ty)),
                }
            }
            _ => Err(format!(
                "cannot write a {} value to column `{}` of type {}",
                value.type_name(),
                self.name,
                self.ty
            )),
        };
        match result {
            Ok(()) => {
                self.present.push(true);
                Ok(())
            }
            Err(e) => {
                // The failed arms pushed nothing (or restored the buffer): keep the shape.
                if let Buf::Var { offsets, .. } = &self.buf
                    && offsets.len() == self.present.len() + 2
                {
                    self.present.push(false);
                    return Err(e);
                }
                self.push_null();
                Err(e)
            }
        }
    }

    /// Sets the value of event `row` to the `parts` joined with `separator`, or null when there are
    /// no parts. Text and JSON columns only.
    #[inline]
    pub(crate) fn put_joined<'p>(
        &mut self,
        row: usize,
        parts: impl IntoIterator<Item = &'p str>,
        separator: &str,
    ) -> Result<(), String> {
        self.start(row);
        let (Buf::Var { offsets, data }, ColumnType::Text | ColumnType::Json) = (&mut self.buf, self.ty)
        else {
            self.push_null();
            return Err(format!("cannot write text to column `{}` of type {}", self.name, self.ty));
        };
        let start = data.len();
        let mut any = false;
        for part in parts {
            if any {
                data.extend_from_slice(separator.as_bytes());
            }
            data.extend_from_slice(part.as_bytes());
            any = true;
        }
        let result = Self::end_var(offsets, data, start);
        self.present.push(any && result.is_ok());
        result
    }

    /// Sets the value of event `row` to formatted text. Text and JSON columns only.
    pub(crate) fn put_fmt(&mut self, row: usize, args: fmt::Arguments<'_>) -> Result<(), String> {
        struct Sink<'v>(&'v mut Vec<u8>);
        impl fmt::Write for Sink<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0.extend_from_slice(s.as_bytes());
                Ok(())
            }
        }
        self.start(row);
        match &mut self.buf {
            Buf::Var { offsets, data } if self.ty != ColumnType::Bytes => {
                let start = data.len();
                let written = fmt::write(&mut Sink(data), args);
                let result = match written {
                    Ok(()) => Self::end_var(offsets, data, start),
                    Err(_) => {
                        data.truncate(start);
                        offsets.push(start as u32);
                        Err(format!("formatting the value of column `{}` failed", self.name))
                    }
                };
                self.present.push(result.is_ok());
                result
            }
            _ => {
                self.push_null();
                Err(format!("cannot write text to column `{}` of type {}", self.name, self.ty))
            }
        }
    }

    /// The finished column.
    pub(crate) fn finish(self) -> wit::Column {
        use wit::ColumnValues as V;
        let values = match (self.buf, self.ty) {
            (Buf::Bool(v), _) => V::Boolean(v),
            (Buf::Int32(v), _) => V::Int32(v),
            (Buf::Int64(v), _) => V::Int64(v),
            (Buf::Float64(v), _) => V::Float64(v),
            (Buf::Date(v), _) => V::Date(v),
            (Buf::Timestamp(v), _) => V::Timestamp(v),
            (Buf::TimestampTz(v), _) => V::Timestamptz(v),
            (Buf::Var { offsets, data }, ColumnType::Json) => V::Json(wit::VarArray { offsets, data }),
            (Buf::Var { offsets, data }, ColumnType::Bytes) => V::Bytes(wit::VarArray { offsets, data }),
            (Buf::Var { offsets, data }, _) => V::Text(wit::VarArray { offsets, data }),
            (Buf::Decimal { precision, scale, bytes }, _) => V::Decimal(wit::DecimalArray {
                type_: wit::DecimalType { precision, scale },
                unscaled: bytes,
            }),
        };
        wit::Column { name: self.name, present: self.present, values }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_col(values: &[Option<&str>]) -> wit::Column {
        let mut w = ColumnWriter::new("t", ColumnType::Text, 0);
        for (i, v) in values.iter().enumerate() {
            w.put(i, Value::from(*v)).unwrap();
        }
        w.finish()
    }

    #[test]
    fn name_keys_match_exactly() {
        let names = [
            "",
            "a",
            "b",
            "email",
            "state",
            "abcdefg",
            "abcdefgh",
            "abcdefgi",
            "first_name",
            "first_nbme",
            "0123456789abcdef",
            "0123456789abcdeg",
            "0123456789Xbcdef",
            "0123456789abcdef0",
            "0123456789bbcdef0",
            "lifetime_value_with_a_long_name",
            "lifetime_value_with_b_long_name",
            "é",
        ];
        for a in names {
            for b in names {
                let (ka, kb) = (NameKey::of(a), NameKey::of(b));
                assert_eq!(ka.matches(a, &kb, b), a == b, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn text_roundtrip_and_nulls() {
        let col = text_col(&[Some("Ada"), None, Some(""), Some("Łódź ✓")]);
        let wit::ColumnValues::Text(arr) = &col.values else { panic!() };
        assert_eq!(arr.offsets, [0, 3, 3, 3, 3 + "Łódź ✓".len() as u32]);
        assert_eq!(col.present, [true, false, true, true]);
        let r = ColumnReader::new(&col, 4).unwrap();
        assert_eq!(r.get(0), Ok(Value::Text("Ada")));
        assert_eq!(r.get(1), Ok(Value::Null));
        assert_eq!(r.get(2), Ok(Value::Text("")));
        assert_eq!(r.get(3), Ok(Value::Text("Łódź ✓")));
        assert!(ColumnReader::new(&col, 3).is_err());
    }

    #[test]
    fn invalid_utf8_is_reported_per_value() {
        let col = wit::Column {
            name: "t".into(),
            present: vec![true, true],
            values: wit::ColumnValues::Text(wit::VarArray {
                offsets: vec![0, 2, 4],
                data: vec![b'o', b'k', 0xff, 0xfe],
            }),
        };
        let r = ColumnReader::new(&col, 2).unwrap();
        assert_eq!(r.get(0), Ok(Value::Text("ok")));
        assert_eq!(r.get(1), Err(InvalidUtf8));
        // a split inside a multi-byte character is caught too
        let split = wit::Column {
            name: "t".into(),
            present: vec![true, true],
            values: wit::ColumnValues::Text(wit::VarArray {
                offsets: vec![0, 1, 2],
                data: "é".as_bytes().to_vec(),
            }),
        };
        let r = ColumnReader::new(&split, 2).unwrap();
        assert_eq!(r.get(0), Err(InvalidUtf8));
    }

    #[test]
    fn malformed_shapes_are_rejected() {
        let bad_offsets = wit::Column {
            name: "t".into(),
            present: vec![true, true],
            values: wit::ColumnValues::Text(wit::VarArray { offsets: vec![0, 3, 2], data: b"abc".to_vec() }),
        };
        assert!(ColumnReader::new(&bad_offsets, 2).is_err());
        let past_end = wit::Column {
            name: "t".into(),
            present: vec![true],
            values: wit::ColumnValues::Bytes(wit::VarArray { offsets: vec![0, 9], data: b"abc".to_vec() }),
        };
        assert!(ColumnReader::new(&past_end, 1).is_err());
        let short_dec = wit::Column {
            name: "d".into(),
            present: vec![true, true],
            values: wit::ColumnValues::Decimal(wit::DecimalArray {
                type_: wit::DecimalType { precision: 10, scale: 2 },
                unscaled: vec![0; 16],
            }),
        };
        assert!(ColumnReader::new(&short_dec, 2).is_err());
        let short_present = wit::Column {
            name: "i".into(),
            present: vec![true],
            values: wit::ColumnValues::Int64(vec![1, 2]),
        };
        assert!(ColumnReader::new(&short_present, 2).is_err());
    }

    #[test]
    fn decimals_pack_as_16_byte_le() {
        let big = i128::from(i64::MAX) * 1000 + 7; // beyond i64
        let values = [
            Value::Decimal(Decimal::new(-500, 2)),
            Value::Null,
            Value::Decimal(Decimal::new(big, 2)),
            Value::Int64(3),
            Value::Decimal(Decimal::new(-15, 1)),
        ];
        let mut w = ColumnWriter::new("d", ColumnType::Decimal { precision: 38, scale: 2 }, 5);
        for (i, v) in values.iter().enumerate() {
            w.put(i, *v).unwrap();
        }
        let col = w.finish();
        let wit::ColumnValues::Decimal(arr) = &col.values else { panic!() };
        assert_eq!(arr.unscaled.len(), 80);
        assert_eq!(&arr.unscaled[..16], &(-500i128).to_le_bytes());
        assert_eq!(arr.unscaled[15], 0xff, "negative values are two's complement");
        let r = ColumnReader::new(&col, 5).unwrap();
        assert_eq!(r.get(0).unwrap().as_decimal().unwrap().to_string(), "-5.00");
        assert_eq!(r.get(1), Ok(Value::Null));
        assert_eq!(r.get(2).unwrap().as_decimal().unwrap().unscaled, big);
        assert_eq!(r.get(2).unwrap().to_string(), "92233720368547758070.07");
        assert_eq!(r.get(3).unwrap().to_string(), "3.00");
        assert_eq!(r.get(4).unwrap().to_string(), "-1.50");
    }

    #[test]
    fn decimal_that_does_not_fit_becomes_null_with_error() {
        let mut w = ColumnWriter::new("d", ColumnType::Decimal { precision: 4, scale: 2 }, 2);
        let e = w.put(0, Value::Decimal(Decimal::new(12345, 3))).unwrap_err();
        assert!(e.contains("12.345") && e.contains("`d`"), "{e}");
        let e = w.put(1, Value::Decimal(Decimal::new(1000, 0))).unwrap_err();
        assert!(e.contains("decimal(4,2)"), "{e}");
        let col = w.finish();
        assert_eq!(col.present, [false, false]);
        assert!(ColumnReader::new(&col, 2).is_ok());
    }

    #[test]
    fn replace_and_type_errors_keep_shape() {
        let mut w = ColumnWriter::new("t", ColumnType::Text, 3);
        w.put(0, Value::Text("first")).unwrap();
        w.put(0, Value::Text("second")).unwrap();
        assert!(w.put(1, Value::Int64(5)).unwrap_err().contains("int64"));
        w.put_joined(2, ["a", "b"], "-").unwrap();
        w.put_joined(2, ["c"], "-").unwrap();
        let col = w.finish();
        let r = ColumnReader::new(&col, 3).unwrap();
        assert_eq!(r.get(0), Ok(Value::Text("second")));
        assert_eq!(r.get(1), Ok(Value::Null));
        assert_eq!(r.get(2), Ok(Value::Text("c")));

        let mut w = ColumnWriter::new("n", ColumnType::Int64, 3);
        w.put(0, Value::Int32(1)).unwrap();
        assert!(w.put(1, Value::Text("x")).is_err());
        w.fill_null(2);
        w.fill_null(2);
        let col = w.finish();
        let r = ColumnReader::new(&col, 3).unwrap();
        assert_eq!(r.get(0), Ok(Value::Int64(1)));
        assert_eq!(r.get(1), Ok(Value::Null));
        assert_eq!(r.get(2), Ok(Value::Null));
    }

    #[test]
    fn joined_and_formatted() {
        let mut w = ColumnWriter::new("t", ColumnType::Text, 3);
        w.put_joined(0, ["a", "b", "c"], ", ").unwrap();
        w.put_joined(1, std::iter::empty(), ", ").unwrap();
        w.put_fmt(2, format_args!("{}-{}", 1, "x")).unwrap();
        let col = w.finish();
        let r = ColumnReader::new(&col, 3).unwrap();
        assert_eq!(r.get(0), Ok(Value::Text("a, b, c")));
        assert_eq!(r.get(1), Ok(Value::Null));
        assert_eq!(r.get(2), Ok(Value::Text("1-x")));
        let mut b = ColumnWriter::new("b", ColumnType::Bytes, 1);
        assert!(b.put_joined(0, ["a"], "").is_err());
        assert!(ColumnReader::new(&b.finish(), 1).is_ok());
    }

    #[test]
    fn all_scalar_types() {
        let cases: Vec<(ColumnType, Value<'static>)> = vec![
            (ColumnType::Boolean, Value::Bool(true)),
            (ColumnType::Int32, Value::Int32(-3)),
            (ColumnType::Int64, Value::Int64(i64::MIN)),
            (ColumnType::Float64, Value::Float64(1.5)),
            (ColumnType::Bytes, Value::Bytes(&[0, 1, 2])),
            (ColumnType::Json, Value::Json("{\"a\":1}")),
            (ColumnType::Date, Value::Date(19000)),
            (ColumnType::Timestamp, Value::Timestamp(5)),
            (ColumnType::TimestampTz, Value::TimestampTz(-5)),
        ];
        for (ty, v) in cases {
            let mut w = ColumnWriter::new("c", ty, 2);
            w.put(0, v).unwrap();
            w.fill_null(1);
            let col = w.finish();
            let r = ColumnReader::new(&col, 2).unwrap();
            assert_eq!(r.column_type(), ty);
            assert_eq!(r.get(0), Ok(v), "{ty}");
            assert_eq!(r.get(1), Ok(Value::Null));
        }
    }
}
