//! Plugin configuration: the key/value pairs the host passes to `configure`.

use std::fmt::Display;
use std::str::FromStr;

/// A plugin's configuration: string keys and values, in the order the host gave them.
///
/// Errors from the typed accessors name the key and the offending value, so they can be returned from
/// [`Transform::configure`](crate::Transform::configure) as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pairs: Vec<(String, String)>,
}

impl Config {
    /// An empty configuration.
    pub fn new() -> Self {
        Config::default()
    }

    /// A configuration from key/value pairs. When a key repeats, the last value wins.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Config { pairs: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    /// Adds a pair (builder style, handy in tests).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.pairs.push((key.into(), value.into()));
        self
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or `default` when it is not set.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// The value of `key`, or an error naming the key when it is not set.
    pub fn require(&self, key: &str) -> Result<&str, String> {
        self.get(key).ok_or_else(|| format!("config key `{key}` is required"))
    }

    /// Parses the value of `key` with [`FromStr`]: `Ok(None)` when not set, an error naming the key
    /// and the value when it does not parse.
    pub fn parse<T>(&self, key: &str) -> Result<Option<T>, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.get(key) {
            None => Ok(None),
            Some(raw) => raw
                .trim()
                .parse::<T>()
                .map(Some)
                .map_err(|e| format!("config key `{key}`: invalid value `{raw}`: {e}")),
        }
    }

    /// Like [`Config::parse`], with a default for an unset key.
    pub fn parse_or<T>(&self, key: &str, default: T) -> Result<T, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.parse(key)?.unwrap_or(default))
    }

    /// A boolean flag: `true/false`, `yes/no`, `on/off`, `1/0` (any case); `default` when unset.
    pub fn flag(&self, key: &str, default: bool) -> Result<bool, String> {
        let Some(raw) = self.get(key) else {
            return Ok(default);
        };
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err(format!("config key `{key}`: invalid value `{raw}`: expected true or false")),
        }
    }

    /// Fails, naming the key, when a key outside `known` is set (catches misspelt keys).
    pub fn expect_only(&self, known: &[&str]) -> Result<(), String> {
        match self.pairs.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            Some((k, _)) => Err(format!("unknown config key `{k}` (known keys: {})", known.join(", "))),
            None => Ok(()),
        }
    }

    /// All pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

impl From<Vec<(String, String)>> for Config {
    fn from(pairs: Vec<(String, String)>) -> Self {
        Config { pairs }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Decimal;

    #[test]
    fn accessors() {
        let c = Config::new().with("a", "1").with("b", " x ").with("a", "2");
        assert_eq!(c.get("a"), Some("2"));
        assert_eq!(c.get_or("zz", "d"), "d");
        assert_eq!(c.parse::<i32>("a").unwrap(), Some(2));
        assert_eq!(c.parse::<i32>("missing").unwrap(), None);
        assert_eq!(c.parse_or::<i32>("missing", 7).unwrap(), 7);
        let e = c.parse::<i32>("b").unwrap_err();
        assert!(e.contains("`b`") && e.contains("` x `"), "{e}");
        let e = Config::new().with("m", "abc").parse::<Decimal>("m").unwrap_err();
        assert!(e.contains("`m`") && e.contains("abc"), "{e}");
        assert!(c.require("zz").unwrap_err().contains("`zz`"));
    }

    #[test]
    fn flags_and_known_keys() {
        let c = Config::from_pairs([("x", "Yes"), ("y", "0"), ("z", "maybe")]);
        assert!(c.flag("x", false).unwrap());
        assert!(!c.flag("y", true).unwrap());
        assert!(c.flag("none", true).unwrap());
        let e = c.flag("z", true).unwrap_err();
        assert!(e.contains("`z`") && e.contains("maybe"), "{e}");
        assert!(c.expect_only(&["x", "y", "z"]).is_ok());
        assert!(c.expect_only(&["x", "y"]).unwrap_err().contains("`z`"));
    }
}
