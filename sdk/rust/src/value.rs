//! Values of single cells: [`Value`] (borrowed from a batch), [`OwnedValue`] and [`Decimal`].

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// One cell of an event: a column value of any supported type, borrowing text and bytes from the batch.
///
/// `Value` is `Copy`; reading it never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Value<'a> {
    /// SQL NULL (also: the event has no such row image, or the column is absent).
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// A 32-bit integer.
    Int32(i32),
    /// A 64-bit integer.
    Int64(i64),
    /// A 64-bit float.
    Float64(f64),
    /// UTF-8 text.
    Text(&'a str),
    /// Raw bytes.
    Bytes(&'a [u8]),
    /// An exact decimal.
    Decimal(Decimal),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since 1970-01-01T00:00:00, no time zone.
    Timestamp(i64),
    /// Microseconds since 1970-01-01T00:00:00Z.
    TimestampTz(i64),
    /// A JSON document as UTF-8 text.
    Json(&'a str),
}

impl<'a> Value<'a> {
    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The name of this value's type, as used in error messages (`"text"`, `"int64"`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int32(_) => "int32",
            Value::Int64(_) => "int64",
            Value::Float64(_) => "float64",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
            Value::Decimal(_) => "decimal",
            Value::Date(_) => "date",
            Value::Timestamp(_) => "timestamp",
            Value::TimestampTz(_) => "timestamptz",
            Value::Json(_) => "json",
        }
    }

    /// The text of a [`Value::Text`] (not of JSON); `None` otherwise.
    pub fn as_text(&self) -> Option<&'a str> {
        match *self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The document of a [`Value::Json`]; `None` otherwise.
    pub fn as_json(&self) -> Option<&'a str> {
        match *self {
            Value::Json(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes of a [`Value::Bytes`]; `None` otherwise.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match *self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The value of a [`Value::Bool`]; `None` otherwise.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The value of a [`Value::Int32`] or [`Value::Int64`]; `None` otherwise.
    pub fn as_int(&self) -> Option<i64> {
        match *self {
            Value::Int32(v) => Some(i64::from(v)),
            Value::Int64(v) => Some(v),
            _ => None,
        }
    }

    /// The value of a [`Value::Float64`], or an integer converted to `f64`; `None` otherwise.
    pub fn as_float(&self) -> Option<f64> {
        match *self {
            Value::Float64(v) => Some(v),
            Value::Int32(v) => Some(f64::from(v)),
            Value::Int64(v) => Some(v as f64),
            _ => None,
        }
    }

    /// The value of a [`Value::Decimal`], or an integer as a decimal of scale 0; `None` otherwise.
    pub fn as_decimal(&self) -> Option<Decimal> {
        match *self {
            Value::Decimal(d) => Some(d),
            Value::Int32(v) => Some(Decimal::from(v)),
            Value::Int64(v) => Some(Decimal::from(v)),
            _ => None,
        }
    }

    /// The days of a [`Value::Date`]; `None` otherwise.
    pub fn as_date(&self) -> Option<i32> {
        match *self {
            Value::Date(d) => Some(d),
            _ => None,
        }
    }

    /// The microseconds of a [`Value::Timestamp`] or [`Value::TimestampTz`]; `None` otherwise.
    pub fn as_timestamp(&self) -> Option<i64> {
        match *self {
            Value::Timestamp(t) | Value::TimestampTz(t) => Some(t),
            _ => None,
        }
    }

    /// Copies this value into an [`OwnedValue`].
    pub fn to_owned_value(&self) -> OwnedValue {
        OwnedValue::from(*self)
    }
}

impl fmt::Display for Value<'_> {
    /// Formats the value for messages: text as is, NULL as `null`, bytes as hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Int32(v) => write!(f, "{v}"),
            Value::Int64(v) => write!(f, "{v}"),
            Value::Float64(v) => write!(f, "{v}"),
            Value::Text(v) | Value::Json(v) => f.write_str(v),
            Value::Bytes(v) => {
                f.write_str("0x")?;
                v.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
            Value::Decimal(v) => write!(f, "{v}"),
            Value::Date(v) => write!(f, "date({v})"),
            Value::Timestamp(v) => write!(f, "timestamp({v})"),
            Value::TimestampTz(v) => write!(f, "timestamptz({v})"),
        }
    }
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<i32> for Value<'_> {
    fn from(v: i32) -> Self {
        Value::Int32(v)
    }
}
impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int64(v)
    }
}
impl From<f64> for Value<'_> {
    fn from(v: f64) -> Self {
        Value::Float64(v)
    }
}
impl From<Decimal> for Value<'_> {
    fn from(v: Decimal) -> Self {
        Value::Decimal(v)
    }
}
impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(v)
    }
}
impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Text(v)
    }
}
impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(v: &'a [u8]) -> Self {
        Value::Bytes(v)
    }
}
impl<'a> From<&'a OwnedValue> for Value<'a> {
    fn from(v: &'a OwnedValue) -> Self {
        v.as_value()
    }
}
impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Anything [`Event::set`](crate::Event::set) and the test helpers accept as a value: everything that
/// converts into a [`Value`] (`&str`, `Option<&str>`, `i64`, [`Decimal`], ...) plus owned `String`s.
pub trait IntoValue {
    /// Calls `f` with this value as a [`Value`].
    fn with_value<R>(self, f: impl FnOnce(Value<'_>) -> R) -> R;
}

impl<'a, T: Into<Value<'a>>> IntoValue for T {
    fn with_value<R>(self, f: impl FnOnce(Value<'_>) -> R) -> R {
        f(self.into())
    }
}
impl IntoValue for String {
    fn with_value<R>(self, f: impl FnOnce(Value<'_>) -> R) -> R {
        f(Value::Text(&self))
    }
}
impl IntoValue for Option<String> {
    fn with_value<R>(self, f: impl FnOnce(Value<'_>) -> R) -> R {
        f(self.as_deref().map_or(Value::Null, Value::Text))
    }
}
impl IntoValue for OwnedValue {
    fn with_value<R>(self, f: impl FnOnce(Value<'_>) -> R) -> R {
        f(self.as_value())
    }
}

/// An owned copy of a [`Value`], for test events, builders and decoded outputs.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum OwnedValue {
    /// SQL NULL.
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// A 32-bit integer.
    Int32(i32),
    /// A 64-bit integer.
    Int64(i64),
    /// A 64-bit float.
    Float64(f64),
    /// UTF-8 text.
    Text(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// An exact decimal.
    Decimal(Decimal),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since 1970-01-01T00:00:00, no time zone.
    Timestamp(i64),
    /// Microseconds since 1970-01-01T00:00:00Z.
    TimestampTz(i64),
    /// A JSON document.
    Json(String),
}

impl OwnedValue {
    /// Borrows this value as a [`Value`].
    pub fn as_value(&self) -> Value<'_> {
        match self {
            OwnedValue::Null => Value::Null,
            OwnedValue::Bool(v) => Value::Bool(*v),
            OwnedValue::Int32(v) => Value::Int32(*v),
            OwnedValue::Int64(v) => Value::Int64(*v),
            OwnedValue::Float64(v) => Value::Float64(*v),
            OwnedValue::Text(v) => Value::Text(v),
            OwnedValue::Bytes(v) => Value::Bytes(v),
            OwnedValue::Decimal(v) => Value::Decimal(*v),
            OwnedValue::Date(v) => Value::Date(*v),
            OwnedValue::Timestamp(v) => Value::Timestamp(*v),
            OwnedValue::TimestampTz(v) => Value::TimestampTz(*v),
            OwnedValue::Json(v) => Value::Json(v),
        }
    }

    /// True for [`OwnedValue::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, OwnedValue::Null)
    }
}

impl From<Value<'_>> for OwnedValue {
    fn from(v: Value<'_>) -> Self {
        match v {
            Value::Null => OwnedValue::Null,
            Value::Bool(v) => OwnedValue::Bool(v),
            Value::Int32(v) => OwnedValue::Int32(v),
            Value::Int64(v) => OwnedValue::Int64(v),
            Value::Float64(v) => OwnedValue::Float64(v),
            Value::Text(v) => OwnedValue::Text(v.to_owned()),
            Value::Bytes(v) => OwnedValue::Bytes(v.to_owned()),
            Value::Decimal(v) => OwnedValue::Decimal(v),
            Value::Date(v) => OwnedValue::Date(v),
            Value::Timestamp(v) => OwnedValue::Timestamp(v),
            Value::TimestampTz(v) => OwnedValue::TimestampTz(v),
            Value::Json(v) => OwnedValue::Json(v.to_owned()),
        }
    }
}

/// Largest scale at which every `i128` digit position is representable (10^38 < i128::MAX).
const MAX_POW10: u32 = 38;

/// `10^0 ..= 10^38`.
const POW10: [i128; MAX_POW10 as usize + 1] = {
    let mut table = [1i128; MAX_POW10 as usize + 1];
    let mut i = 1;
    while i < table.len() {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

/// `10^exp` as an `i128`, or `None` when it does not fit.
#[inline]
fn pow10(exp: u32) -> Option<i128> {
    POW10.get(exp as usize).copied()
}

/// An exact decimal number: `unscaled × 10^-scale`.
///
/// Equality, ordering and hashing are numeric: `5.0 == 5.00`. [`Display`](fmt::Display) writes all
/// `scale` fractional digits (`Decimal::new(-500, 2)` is `-5.00`); [`FromStr`] keeps the scale as written.
#[derive(Debug, Clone, Copy)]
pub struct Decimal {
    /// The unscaled integer value.
    pub unscaled: i128,
    /// The number of digits after the decimal point.
    pub scale: u8,
}

impl Decimal {
    /// Zero, at scale 0.
    pub const ZERO: Decimal = Decimal { unscaled: 0, scale: 0 };

    /// `unscaled × 10^-scale`.
    pub const fn new(unscaled: i128, scale: u8) -> Self {
        Decimal { unscaled, scale }
    }

    /// True when the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.unscaled < 0
    }

    /// True when the value is above zero.
    pub fn is_positive(&self) -> bool {
        self.unscaled > 0
    }

    /// True when the value is zero (at any scale).
    pub fn is_zero(&self) -> bool {
        self.unscaled == 0
    }

    /// -1, 0 or 1.
    pub fn signum(&self) -> i32 {
        self.unscaled.signum() as i32
    }

    /// The same number at `scale`, or `None` when that would lose digits or overflow.
    pub fn rescale(&self, scale: u8) -> Option<Decimal> {
        match scale.cmp(&self.scale) {
            Ordering::Equal => Some(*self),
            Ordering::Greater => {
                let factor = pow10(u32::from(scale - self.scale));
                let unscaled = match factor {
                    Some(f) => self.unscaled.checked_mul(f)?,
                    None if self.unscaled == 0 => 0,
                    None => return None,
                };
                Some(Decimal { unscaled, scale })
            }
            Ordering::Less => {
                let unscaled = match pow10(u32::from(self.scale - scale)) {
                    Some(f) if self.unscaled % f == 0 => self.unscaled / f,
                    Some(_) => return None,
                    None if self.unscaled == 0 => 0,
                    None => return None,
                };
                Some(Decimal { unscaled, scale })
            }
        }
    }

    /// The number of significant digits of the unscaled value (0 has one digit).
    pub fn digits(&self) -> u32 {
        match self.unscaled.unsigned_abs().checked_ilog10() {
            Some(log) => log + 1,
            None => 1,
        }
    }

    /// Whether the value fits a `decimal(precision, scale)` column exactly.
    pub fn fits(&self, precision: u8, scale: u8) -> bool {
        match self.rescale(scale) {
            Some(d) => {
                u32::from(precision) > MAX_POW10 || d.unscaled == 0 || d.digits() <= u32::from(precision)
            }
            None => false,
        }
    }

    /// The nearest `f64`.
    pub fn to_f64(&self) -> f64 {
        self.unscaled as f64 / 10f64.powi(i32::from(self.scale))
    }

    /// The value with trailing fractional zeros removed (`5.00` → `5`).
    pub fn normalize(&self) -> Decimal {
        let mut d = *self;
        while d.scale > 0 && d.unscaled % 10 == 0 {
            d.unscaled /= 10;
            d.scale -= 1;
        }
        d
    }
}

impl Default for Decimal {
    fn default() -> Self {
        Decimal::ZERO
    }
}

impl From<i64> for Decimal {
    fn from(v: i64) -> Self {
        Decimal::new(i128::from(v), 0)
    }
}

impl From<i32> for Decimal {
    fn from(v: i32) -> Self {
        Decimal::new(i128::from(v), 0)
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Decimal {}

impl PartialOrd for Decimal {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        if self.scale == other.scale {
            return self.unscaled.cmp(&other.unscaled);
        }
        let (sa, sb) = (self.unscaled.signum(), other.unscaled.signum());
        if sa != sb || sa == 0 {
            return sa.cmp(&sb);
        }
        // Same sign, both non-zero: bring the smaller scale up. If that overflows, the scaled-up
        // value's magnitude exceeds every i128, so it is the larger magnitude.
        let (low, high, flipped) =
            if self.scale < other.scale { (self, other, false) } else { (other, self, true) };
        let scaled = pow10(u32::from(high.scale - low.scale)).and_then(|f| low.unscaled.checked_mul(f));
        let ord = match scaled {
            Some(v) => v.cmp(&high.unscaled),
            None if sa > 0 => Ordering::Greater,
            None => Ordering::Less,
        };
        if flipped { ord.reverse() } else { ord }
    }
}

impl Hash for Decimal {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let n = self.normalize();
        n.unscaled.hash(state);
        n.scale.hash(state);
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.unscaled.unsigned_abs().to_string();
        let scale = usize::from(self.scale);
        let mut out = String::with_capacity(digits.len() + scale + 3);
        if self.unscaled < 0 {
            out.push('-');
        }
        if scale == 0 {
            out.push_str(&digits);
        } else if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            out.push_str(int);
            out.push('.');
            out.push_str(frac);
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', scale - digits.len()));
            out.push_str(&digits);
        }
        f.pad(&out)
    }
}

/// Why a string is not a decimal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseDecimalError {
    input: String,
    reason: &'static str,
}

impl fmt::Display for ParseDecimalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not a decimal: {}", self.input, self.reason)
    }
}

impl std::error::Error for ParseDecimalError {}

impl FromStr for Decimal {
    type Err = ParseDecimalError;

    /// Parses `[+-]digits[.digits]` (surrounding whitespace allowed), keeping the written scale.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseDecimalError { input: s.to_owned(), reason };
        let t = s.trim();
        let (negative, body) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let (int, frac) = match body.split_once('.') {
            Some((i, f)) => (i, f),
            None => (body, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(err("no digits"));
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(err("only digits, one '.' and a leading sign are allowed"));
        }
        let scale = u8::try_from(frac.len()).map_err(|_| err("more than 255 fractional digits"))?;
        let mut unscaled: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            let d = i128::from(b - b'0');
            unscaled = unscaled
                .checked_mul(10)
                .and_then(|v| if negative { v.checked_sub(d) } else { v.checked_add(d) })
                .ok_or_else(|| err("too many digits"))?;
        }
        Ok(Decimal { unscaled, scale })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn display() {
        assert_eq!(Decimal::new(-500, 2).to_string(), "-5.00");
        assert_eq!(Decimal::new(5, 3).to_string(), "0.005");
        assert_eq!(Decimal::new(-5, 3).to_string(), "-0.005");
        assert_eq!(Decimal::new(0, 2).to_string(), "0.00");
        assert_eq!(Decimal::new(12345, 0).to_string(), "12345");
        assert_eq!(Decimal::new(i128::MIN, 0).to_string(), i128::MIN.to_string());
        assert_eq!(Decimal::new(i128::from(i64::MAX) * 1000 + 1, 3).to_string(), "9223372036854775807.001");
        assert_eq!(format!("{:>8}", Decimal::new(-5, 1)), "    -0.5");
    }

    #[test]
    fn parse() {
        assert_eq!(d("-5.00"), Decimal::new(-500, 2));
        assert_eq!(d("-5.00").scale, 2);
        assert_eq!(d(" 42 ").unscaled, 42);
        assert_eq!(d("+.5"), Decimal::new(5, 1));
        assert_eq!(d("7."), Decimal::new(7, 0));
        assert_eq!(d("-0.001").unscaled, -1);
        let big = "123456789012345678901234567890.12345678";
        assert_eq!(d(big).to_string(), big);
        assert_eq!(d(&i128::MIN.to_string()).unscaled, i128::MIN);
        for bad in ["", "-", ".", "1.2.3", "abc", "1e5", "--1", "1 000"] {
            assert!(bad.parse::<Decimal>().is_err(), "{bad:?}");
        }
        let e = "x1".parse::<Decimal>().unwrap_err().to_string();
        assert!(e.contains("`x1`"), "{e}");
        assert!("1".repeat(40).parse::<Decimal>().is_err());
    }

    #[test]
    fn compare() {
        assert_eq!(d("5.0"), d("5.00"));
        assert!(d("-5.00") < Decimal::ZERO);
        assert!(d("0.001") > Decimal::ZERO);
        assert!(d("1.5") < d("1.51"));
        assert!(d("-1.5") > d("-1.51"));
        assert!(d("100") > d("99.999"));
        assert!(d("-100") < d("-99.999"));
        assert_eq!(d("0.000"), Decimal::ZERO);
        // overflow while rescaling decides by magnitude
        let huge = Decimal::new(i128::MAX / 2, 0);
        let tiny_scale = Decimal::new(1, 30);
        assert!(huge > tiny_scale);
        assert!(Decimal::new(-(i128::MAX / 2), 0) < Decimal::new(-1, 30));
        assert!(Decimal::new(1, 0) > Decimal::new(1, 200));
        use std::collections::hash_map::DefaultHasher;
        let h = |x: Decimal| {
            let mut s = DefaultHasher::new();
            x.hash(&mut s);
            s.finish()
        };
        assert_eq!(h(d("5.0")), h(d("5.000")));
    }

    #[test]
    fn rescale_and_fit() {
        assert_eq!(d("5").rescale(2).unwrap().unscaled, 500);
        assert_eq!(d("5.10").rescale(1).unwrap().unscaled, 51);
        assert!(d("5.11").rescale(1).is_none());
        assert!(Decimal::new(i128::MAX, 0).rescale(1).is_none());
        assert!(d("123.45").fits(5, 2));
        assert!(!d("1234.5").fits(5, 2));
        assert!(d("0").fits(1, 0));
        assert!(d("-99.9").fits(3, 1));
        assert_eq!(d("-5.00").normalize(), Decimal::new(-5, 0));
        assert_eq!(d("-5.00").normalize().scale, 0);
        assert!((d("-2.50").to_f64() + 2.5).abs() < 1e-12);
    }

    #[test]
    fn value_accessors() {
        assert_eq!(Value::from(Some("a")).as_text(), Some("a"));
        assert_eq!(Value::from(None::<&str>), Value::Null);
        assert_eq!(Value::Int32(3).as_int(), Some(3));
        assert_eq!(Value::Int32(3).as_decimal(), Some(Decimal::new(3, 0)));
        assert_eq!(Value::Text("x").as_int(), None);
        assert_eq!(Value::TimestampTz(5).as_timestamp(), Some(5));
        assert_eq!(Value::Bytes(&[1, 0xab]).to_string(), "0x01ab");
        let owned = Value::Text("hi").to_owned_value();
        assert_eq!(owned.as_value(), Value::Text("hi"));
        assert_eq!(String::from("s").with_value(|v| v.to_owned_value()), OwnedValue::Text("s".into()));
        assert!(None::<String>.with_value(|v| v.is_null()));
    }
}
