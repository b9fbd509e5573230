//! A leaf `state`, `plan` and `apply` share: a JSON document kept as its compact text
//! ([`RawJson`]) rather than as a parsed [`serde_json::Value`].
//!
//! A state and a plan hold one OCI resource JSON per address — the attributes last read, and the
//! live read — and a parsed value costs about five times its text in small allocations (10,000
//! instances: ~120 MB per copy, where the text is ~30 MB). Most of them are only carried (loaded,
//! compared on a few paths, saved), so they stay text: parsed when someone reads them
//! ([`RawJson::parse`]), and top-level string fields read without building a value
//! ([`RawJson::top_str`]). Clones share the text. Written back, the text is copied as it is.
//! BENCHMARKS.md, scenario 1.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

/// A JSON document as compact text (shared by clones).
#[derive(Clone)]
pub struct RawJson(Arc<str>);

impl RawJson {
    /// `null`.
    pub fn null() -> RawJson {
        RawJson(Arc::from("null"))
    }

    /// The compact text of `v`.
    pub fn from_value(v: &Value) -> RawJson {
        RawJson(Arc::from(
            serde_json::to_string(v).expect("a JSON value serialises"),
        ))
    }

    /// The compact text of anything serialisable (a typed OCI model).
    pub fn of(v: &impl Serialize) -> RawJson {
        RawJson(Arc::from(
            serde_json::to_string(v).expect("an OCI model serialises"),
        ))
    }

    /// The document as a value.
    pub fn parse(&self) -> Value {
        serde_json::from_str(&self.0).expect("RawJson holds valid JSON")
    }

    /// The document as a value with only the top-level fields `keys` (the rest skipped unparsed);
    /// a document that is not an object is parsed whole.
    pub fn parse_keys(&self, keys: &[&str]) -> Value {
        struct Keys<'k>(&'k [&'k str]);
        impl<'de> Visitor<'de> for Keys<'_> {
            type Value = Option<serde_json::Map<String, Value>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out = serde_json::Map::new();
                while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                    if self.0.contains(&k.as_ref()) {
                        let v = m.next_value::<Value>()?;
                        out.insert(k.into_owned(), v);
                    } else {
                        m.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Some(out))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(None)
            }
        }
        let mut d = serde_json::Deserializer::from_str(&self.0);
        match d.deserialize_any(Keys(keys)) {
            Ok(Some(m)) => Value::Object(m),
            _ => self.parse(),
        }
    }

    /// Change the document through its value (parsed, edited, written back as text).
    pub fn edit<R>(&mut self, f: impl FnOnce(&mut Value) -> R) -> R {
        let mut v = self.parse();
        let r = f(&mut v);
        *self = RawJson::from_value(&v);
        r
    }

    pub fn is_null(&self) -> bool {
        &*self.0 == "null"
    }

    pub fn text(&self) -> &str {
        &self.0
    }

    /// The top-level string field `key` (`None`: not an object, no such key, or not a string),
    /// read without building a value.
    pub fn top_str(&self, key: &str) -> Option<String> {
        self.str_at(&[key])
    }

    /// The string at `path` (object keys, outermost first), read without building a value.
    pub fn str_at(&self, path: &[&str]) -> Option<String> {
        let mut d = serde_json::Deserializer::from_str(&self.0);
        At(path).deserialize(&mut d).ok().flatten()
    }
}

/// Finds the string at a path of object keys, skipping everything else.
struct At<'p>(&'p [&'p str]);

impl<'de> DeserializeSeed<'de> for At<'_> {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for At<'_> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
            match self.0.split_first() {
                Some((first, rest)) if k == *first && found.is_none() => {
                    found = m.next_value_seed(At(rest))?;
                }
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
        while s.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.is_empty().then(|| v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
}

impl Default for RawJson {
    fn default() -> Self {
        RawJson::null()
    }
}

impl From<Value> for RawJson {
    fn from(v: Value) -> RawJson {
        RawJson::from_value(&v)
    }
}

/// Equal documents: the same text, or (text differing in key order or number spelling) the same
/// value.
impl PartialEq for RawJson {
    fn eq(&self, other: &RawJson) -> bool {
        self.0 == other.0 || self.parse() == other.parse()
    }
}

impl PartialEq<Value> for RawJson {
    fn eq(&self, other: &Value) -> bool {
        self.parse() == *other
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // A borrowed raw value: serde_json writes the text as it is.
        let raw: &RawValue = serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

/// Read from JSON text (`serde_json::from_str`/`from_slice`); any other deserializer is refused.
impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawJson, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Ok(RawJson(Arc::from(raw.get())))
    }
}

/// `#[serde(with = "crate::raw_json::option_as_value")]`: an `Option<RawJson>` field written and
/// read as the value it holds, with any serializer (a pretty printer indents it as it would a
/// value; a value deserializer is accepted).
pub mod option_as_value {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<RawJson>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref().map(RawJson::parse).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RawJson>, D::Error> {
        Ok(Option::<Value>::deserialize(d)?.map(RawJson::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_round_trips_and_fields_read_without_a_value() {
        let v = json!({"id": "a", "lifecycleState": "RUNNING", "n": {"x": [1, 2.5, null]}, "s": 3});
        let r = RawJson::from_value(&v);
        assert_eq!(r.parse(), v);
        assert_eq!(r.top_str("lifecycleState").as_deref(), Some("RUNNING"));
        assert_eq!(r.top_str("n"), None);
        assert_eq!(r.top_str("s"), None);
        assert_eq!(r.top_str("missing"), None);
        assert_eq!(
            r.parse_keys(&["s", "id", "nope"]),
            json!({"id": "a", "s": 3})
        );
        assert_eq!(RawJson::null().parse_keys(&["a"]), Value::Null);
        let nested =
            RawJson::from_value(&json!({"a": [1], "sourceDetails": {"x": {}, "imageId": "i"}}));
        assert_eq!(
            nested.str_at(&["sourceDetails", "imageId"]).as_deref(),
            Some("i")
        );
        assert_eq!(nested.str_at(&["sourceDetails", "x"]), None);
        assert_eq!(nested.str_at(&["a", "b"]), None);
        assert_eq!(RawJson::null().top_str("x"), None);
        assert!(RawJson::null().is_null() && !r.is_null());
        let text = serde_json::to_string(&json!({"a": r.clone()})).unwrap();
        assert_eq!(text, format!("{{\"a\":{}}}", r.text()));
        #[derive(serde::Deserialize)]
        struct Holder {
            a: RawJson,
        }
        let back: Holder = serde_json::from_str(&text).unwrap();
        assert_eq!(back.a, r);
        // Equal values in another key order are equal documents.
        let reordered: RawJson = serde_json::from_str::<Holder>(
            r#"{"a":{"s":3,"n":{"x":[1,2.5,null]},"lifecycleState":"RUNNING","id":"a"}}"#,
        )
        .unwrap()
        .a;
        assert_eq!(reordered, r);
        assert_ne!(RawJson::null(), r);
    }
}
