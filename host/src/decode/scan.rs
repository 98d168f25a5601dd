//! The fast path of decoding: a validating JSON scanner that reads one Debezium record into the
//! parts the serde path reads ([`Parts`]), every value borrowed from the record.
//!
//! It reads what Debezium writes (fields in any order, any whitespace, values of every JSON type) in
//! one pass, and finds the end of a string eight bytes at a time. When it meets something it does not
//! cover — a field name or an envelope string with escapes, a duplicate envelope field, a value of the
//! wrong kind, or input that is not JSON — it gives up ([`Fallback`]), and `serde_json` reads the record
//! instead. So a record it accepts is one `serde_json` accepts with the same result, and errors keep
//! `serde_json`'s messages.

use std::borrow::Cow;

use super::{Body, Flat, Image, Parts, Raw, SourceBody};

/// The record needs the serde path.
#[derive(Debug)]
pub(super) struct Fallback;

type Scan<T> = Result<T, Fallback>;

/// Nesting deeper than this is left to the serde path (`serde_json` stops at 128).
const MAX_DEPTH: usize = 100;

/// Reads `text` (one record, trimmed). `value_last`: the record is a Kafka record the source wrapped
/// (see [`crate::source::kafka::push_wrapped`]), so nothing may follow its `value`.
pub(super) fn record(text: &str, value_last: bool) -> Scan<Parts<'_>> {
    let mut s = Scanner::new(text);
    let mut parts = Parts::default();
    let mut seen = Seen::default();
    s.object(|s, key| {
        match key {
            "topic" => parts.topic = s.once(&mut seen, 0, Scanner::opt_str)?.is_some(),
            "key" => parts.key = s.once(&mut seen, 1, Scanner::opt_raw)?,
            "value" => {
                parts.value = s.once(&mut seen, 2, |s| {
                    s.opt_fields(|s, key, env, seen| s.flat_field(key, env, seen, 0))
                })?;
                if value_last && s.peek()? != b'}' {
                    return Err(Fallback);
                }
            }
            _ => {
                if !s.flat_field(key, &mut parts.top, &mut seen, 3)? {
                    s.skip(0)?;
                }
            }
        }
        Ok(())
    })?;
    s.end()?;
    Ok(parts)
}

/// Whether `bytes` are one JSON value (whitespace around it allowed), as `serde_json` would say.
pub fn is_json(bytes: &[u8]) -> bool {
    let Ok(text) = simdutf8::basic::from_utf8(bytes) else { return false };
    let mut s = Scanner::new(text);
    match s.skip(0).and_then(|_| s.end()) {
        Ok(()) => true,
        Err(Fallback) => serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok(),
    }
}

/// The value of a record [`crate::source::kafka::push_wrapped`] wrapped: what follows `"value":`, up to
/// the closing brace. `None` if `text` is not such a record.
pub(super) fn wrapped_value(text: &str) -> Option<&str> {
    let mut s = Scanner::new(text);
    s.eat(b'{').ok()?;
    for field in ["topic", "key"] {
        (s.key().ok()? == field).then_some(())?;
        s.skip(0).ok()?;
        s.eat(b',').ok()?;
    }
    (s.key().ok()? == "value").then_some(())?;
    text[s.i..].strip_suffix('}')
}

/// Which fields of one object were read already (`serde` refuses a duplicate field).
#[derive(Default)]
struct Seen(u32);

impl Seen {
    fn first(&mut self, bit: u32) -> Scan<()> {
        if self.0 & (1 << bit) != 0 {
            return Err(Fallback);
        }
        self.0 |= 1 << bit;
        Ok(())
    }
}

struct Scanner<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner { text, b: text.as_bytes(), i: 0 }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Scan<u8> {
        self.ws();
        self.b.get(self.i).copied().ok_or(Fallback)
    }

    fn eat(&mut self, c: u8) -> Scan<()> {
        if self.peek()? != c {
            return Err(Fallback);
        }
        self.i += 1;
        Ok(())
    }

    fn end(&mut self) -> Scan<()> {
        self.ws();
        if self.i == self.b.len() { Ok(()) } else { Err(Fallback) }
    }

    /// `null` (consumed) or not (nothing consumed).
    fn null(&mut self) -> Scan<bool> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Ok(true);
        }
        Ok(false)
    }

    fn literal(&mut self, word: &[u8]) -> Scan<()> {
        if !self.b[self.i..].starts_with(word) {
            return Err(Fallback);
        }
        self.i += word.len();
        Ok(())
    }

    /// An object; `field` reads each value (and must consume it). `null` is refused.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Scan<()>) -> Scan<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Ok(());
        }
        loop {
            let key = self.key()?;
            field(self, key)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(Fallback),
            }
        }
    }

    /// A field name (without escapes) and its colon.
    fn key(&mut self) -> Scan<&'a str> {
        if self.peek()? != b'"' {
            return Err(Fallback);
        }
        let key = self.plain_str()?;
        self.eat(b':')?;
        Ok(key)
    }

    /// Reads field `bit` of an object with `read`, unless it was read already (`serde` refuses a
    /// duplicate field).
    fn once<T>(&mut self, seen: &mut Seen, bit: u32, read: impl FnOnce(&mut Self) -> Scan<T>) -> Scan<T> {
        seen.first(bit)?;
        read(self)
    }

    /// A string at the cursor: its contents (between the quotes) and whether it has escapes.
    fn string(&mut self) -> Scan<(&'a str, bool)> {
        let start = self.i + 1;
        let (end, escaped) = string_end(self.b, start)?;
        self.i = end + 1;
        // Both ends are ASCII quotes, so they are character boundaries.
        Ok((&self.text[start..end], escaped))
    }

    /// A string without escapes (escapes are left to the serde path).
    fn plain_str(&mut self) -> Scan<&'a str> {
        match self.string()? {
            (s, false) => Ok(s),
            (_, true) => Err(Fallback),
        }
    }

    fn opt_str(&mut self) -> Scan<Option<Cow<'a, str>>> {
        match self.peek()? {
            b'"' => Ok(Some(Cow::Borrowed(self.plain_str()?))),
            b'n' => self.literal(b"null").map(|()| None),
            _ => Err(Fallback),
        }
    }

    fn opt_i64(&mut self) -> Scan<Option<i64>> {
        if self.null()? {
            return Ok(None);
        }
        let start = self.i;
        let (end, integer) = number_end(self.b, start)?;
        self.i = end;
        if !integer {
            return Err(Fallback);
        }
        self.text[start..end].parse().map(Some).map_err(|_| Fallback)
    }

    fn opt_raw(&mut self) -> Scan<Option<Raw<'a>>> {
        if self.null()? {
            return Ok(None);
        }
        self.raw().map(Some)
    }

    /// Any value: its text, validated.
    fn raw(&mut self) -> Scan<Raw<'a>> {
        let first = self.peek()?;
        let start = self.i;
        let plain = if first == b'"' { !self.string()?.1 } else { self.skip(0)? };
        Ok(Raw { text: &self.text[start..self.i], plain })
    }

    /// Skips any value, validating it. True when it was not a string with escapes.
    fn skip(&mut self, depth: usize) -> Scan<bool> {
        match self.peek()? {
            b'"' => return Ok(!self.string()?.1),
            b'{' | b'[' if depth >= MAX_DEPTH => return Err(Fallback),
            b'{' => self.object(|s, _| s.skip(depth + 1).map(drop))?,
            b'[' => {
                self.i += 1;
                if self.peek()? == b']' {
                    self.i += 1;
                } else {
                    loop {
                        self.skip(depth + 1)?;
                        match self.peek()? {
                            b',' => self.i += 1,
                            b']' => {
                                self.i += 1;
                                break;
                            }
                            _ => return Err(Fallback),
                        }
                    }
                }
            }
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            _ => self.i = number_end(self.b, self.i)?.0,
        }
        Ok(true)
    }

    /// `null`, or an object read into a `T`: `field` reads the fields it knows (it says true), the
    /// others are skipped.
    fn opt_fields<T: Default>(
        &mut self,
        field: fn(&mut Self, &str, &mut T, &mut Seen) -> Scan<bool>,
    ) -> Scan<Option<T>> {
        if self.null()? {
            return Ok(None);
        }
        let mut out = T::default();
        let mut seen = Seen::default();
        self.object(|s, key| {
            if !field(s, key, &mut out, &mut seen)? {
                s.skip(0)?;
            }
            Ok(())
        })?;
        Ok(Some(out))
    }

    /// Reads `key` into `env` if it is an envelope field (`seen` bits from `bit` on); false if not.
    fn flat_field(&mut self, key: &str, env: &mut Flat<'a>, seen: &mut Seen, bit: u32) -> Scan<bool> {
        match key {
            "schema" => env.schema = self.once(seen, bit, Self::opt_raw)?,
            "payload" => {
                env.payload = self.once(seen, bit + 1, |s| {
                    s.opt_fields(|s, key, body, seen| s.body_field(key, body, seen, 0))
                })?
            }
            _ => return self.body_field(key, &mut env.body, seen, bit + 2),
        }
        Ok(true)
    }

    fn body_field(&mut self, key: &str, body: &mut Body<'a>, seen: &mut Seen, bit: u32) -> Scan<bool> {
        match key {
            "before" => body.before = self.once(seen, bit, Self::opt_image)?,
            "after" => body.after = self.once(seen, bit + 1, Self::opt_image)?,
            "source" => body.source = self.once(seen, bit + 2, |s| s.opt_fields(Self::source_field))?,
            "op" => body.op = self.once(seen, bit + 3, Self::opt_str)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn opt_image(&mut self) -> Scan<Option<Image<'a>>> {
        if self.null()? {
            return Ok(None);
        }
        let mut entries = Vec::with_capacity(16);
        self.object(|s, name| {
            entries.push((Cow::Borrowed(name), s.raw()?));
            Ok(())
        })?;
        Ok(Some(Image(entries)))
    }

    fn source_field(&mut self, key: &str, src: &mut SourceBody<'a>, seen: &mut Seen) -> Scan<bool> {
        match key {
            "schema" => src.schema = self.once(seen, 0, Self::opt_str)?,
            "table" => src.table = self.once(seen, 1, Self::opt_str)?,
            "lsn" => src.lsn = self.once(seen, 2, Self::opt_i64)?,
            "txId" => src.tx_id = self.once(seen, 3, Self::opt_i64)?,
            "ts_ms" => src.ts_ms = self.once(seen, 4, Self::opt_i64)?,
            "snapshot" => src.snapshot = self.once(seen, 5, Self::opt_raw)?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Where the string whose contents start at `i` ends (the index of its closing quote), and whether it
/// has escapes. Control characters must be escaped; escapes must be JSON's.
fn string_end(b: &[u8], mut i: usize) -> Scan<(usize, bool)> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let mut escaped = false;
    loop {
        // Eight bytes at a time until one is a quote, a backslash or a control character. The lowest
        // flagged byte is always a real one (a borrow only flags bytes above it).
        while let Some(chunk) = b.get(i..i + 8) {
            let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            let hits = zero_byte(x ^ (ONES * u64::from(b'"')))
                | zero_byte(x ^ (ONES * u64::from(b'\\')))
                | (x.wrapping_sub(ONES * 0x20) & !x & HIGH);
            if hits != 0 {
                i += (hits.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        match b.get(i).ok_or(Fallback)? {
            b'"' => return Ok((i, escaped)),
            b'\\' => {
                escaped = true;
                match b.get(i + 1).ok_or(Fallback)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => {
                        let hex = b.get(i + 2..i + 6).ok_or(Fallback)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return Err(Fallback);
                        }
                        i += 6;
                    }
                    _ => return Err(Fallback),
                }
            }
            0..0x20 => return Err(Fallback),
            _ => i += 1,
        }
    }
}

/// Where the number starting at `i` ends, and whether it is an integer (no fraction, no exponent).
/// JSON's grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn number_end(b: &[u8], mut i: usize) -> Scan<(usize, bool)> {
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return Err(Fallback),
    }
    let mut integer = true;
    if b.get(i) == Some(&b'.') {
        i += 1;
        integer = false;
        if digits(&mut i) == 0 {
            return Err(Fallback);
        }
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        integer = false;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return Err(Fallback);
        }
    }
    Ok((i, integer))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `string_end` byte by byte.
    fn reference(b: &[u8], mut i: usize) -> Scan<(usize, bool)> {
        let mut escaped = false;
        loop {
            match *b.get(i).ok_or(Fallback)? {
                b'"' => return Ok((i, escaped)),
                b'\\' => {
                    escaped = true;
                    match *b.get(i + 1).ok_or(Fallback)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                        b'u' if b.get(i + 2..i + 6).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) => {
                            i += 6
                        }
                        _ => return Err(Fallback),
                    }
                }
                0..0x20 => return Err(Fallback),
                _ => i += 1,
            }
        }
    }

    #[test]
    fn string_ends_are_found_at_every_position_and_length() {
        let specials: [&[u8]; 7] = [b"\"", b"\\\"", b"\\u00e9", b"\n", b"\x01", b"\x7f", "ë".as_bytes()];
        for len in 0..48 {
            for at in 0..=len {
                for special in specials {
                    let mut text = vec![b'a'; len];
                    text.splice(at..at, special.iter().copied());
                    text.push(b'"');
                    text.extend_from_slice(b"tail");
                    let got = string_end(&text, 0).map_err(|_| ());
                    let want = reference(&text, 0).map_err(|_| ());
                    assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&text));
                }
            }
        }
        assert!(string_end(&[b'a'; 40], 0).is_err(), "no closing quote");
    }
}
