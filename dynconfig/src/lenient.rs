//! A deserializer over a `serde_json::Value` that accepts the string forms every text source
//! produces: `"42"` for a number, `"true"` for a bool, and a number or bool where a string is
//! wanted. Environment variables, `.properties` files and Spring's flattened sources carry only
//! strings, so typed reads must coerce them.

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, Unexpected, Visitor};
use serde_json::{Error, Map, Value};

/// A lenient view of a value, see the module docs.
#[derive(Clone, Copy)]
pub(crate) struct Lenient<'a>(pub(crate) &'a Value);

macro_rules! number {
    ($method:ident, $ty:ty, $visit:ident) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.0 {
                Value::String(s) => match s.trim().parse::<$ty>() {
                    Ok(n) => visitor.$visit(n),
                    Err(_) => Err(de::Error::invalid_type(Unexpected::Str(s), &visitor)),
                },
                other => other.$method(visitor),
            }
        }
    };
}

impl<'de> Deserializer<'de> for Lenient<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(a) => visitor.visit_seq(Seq(a.iter())),
            Value::Object(m) => visitor.visit_map(MapAccess::new(m)),
            other => other.deserialize_any(visitor),
        }
    }

    number!(deserialize_i8, i8, visit_i8);
    number!(deserialize_i16, i16, visit_i16);
    number!(deserialize_i32, i32, visit_i32);
    number!(deserialize_i64, i64, visit_i64);
    number!(deserialize_i128, i128, visit_i128);
    number!(deserialize_u8, u8, visit_u8);
    number!(deserialize_u16, u16, visit_u16);
    number!(deserialize_u32, u32, visit_u32);
    number!(deserialize_u64, u64, visit_u64);
    number!(deserialize_u128, u128, visit_u128);
    number!(deserialize_f32, f32, visit_f32);
    number!(deserialize_f64, f64, visit_f64);

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::String(s) => match s.trim() {
                t if t.eq_ignore_ascii_case("true") => visitor.visit_bool(true),
                t if t.eq_ignore_ascii_case("false") => visitor.visit_bool(false),
                _ => Err(de::Error::invalid_type(Unexpected::Str(s), &visitor)),
            },
            other => other.deserialize_bool(visitor),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Number(n) => visitor.visit_string(n.to_string()),
            Value::Bool(b) => visitor.visit_string(b.to_string()),
            other => other.deserialize_str(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(a) => visitor.visit_seq(Seq(a.iter())),
            // A comma list in one string ("a,b,c"), as env vars and properties write lists.
            Value::String(s) if !s.is_empty() => {
                let items: Vec<Value> = s
                    .split(',')
                    .map(|p| Value::String(p.trim().to_owned()))
                    .collect();
                let seq = de::value::SeqDeserializer::new(items.into_iter().map(Owned));
                visitor.visit_seq(seq)
            }
            Value::String(_) | Value::Null => visitor.visit_seq(Seq([].iter())),
            other => other.deserialize_seq(visitor),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(m) => visitor.visit_map(MapAccess::new(m)),
            // An empty section ("breaker:" with nothing under it) reads as an empty map.
            Value::Null => visitor.visit_map(MapAccess::new(&EMPTY)),
            other => other.deserialize_map(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        char bytes byte_buf unit unit_struct tuple tuple_struct identifier
    }
}

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

/// An owned value made on the fly (the items of a comma list), deserialized leniently.
struct Owned(Value);

impl<'de> IntoDeserializer<'de, Error> for Owned {
    type Deserializer = OwnedDeserializer;
    fn into_deserializer(self) -> OwnedDeserializer {
        OwnedDeserializer(self.0)
    }
}

struct OwnedDeserializer(Value);

impl<'de> Deserializer<'de> for OwnedDeserializer {
    type Error = Error;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // The item is a short string: parse it through a lenient borrow of a local copy.
        let value = self.0;
        let result = Lenient(&value).deserialize_any(Collect)?;
        result.replay(visitor)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let v = Lenient(&self.0).deserialize_u64(Collect)?;
        v.replay(visitor)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let v = Lenient(&self.0).deserialize_i64(Collect)?;
        v.replay(visitor)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let v = Lenient(&self.0).deserialize_f64(Collect)?;
        v.replay(visitor)
    }
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let v = Lenient(&self.0).deserialize_bool(Collect)?;
        v.replay(visitor)
    }
    serde::forward_to_deserialize_any! {
        i8 i16 i128 u8 u128 f32 char str string bytes byte_buf option unit unit_struct
        newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// A scalar captured from a lenient parse, replayed into the real visitor.
enum Collected {
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(String),
}

impl Collected {
    fn replay<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Collected::Bool(b) => visitor.visit_bool(b),
            Collected::I64(n) => visitor.visit_i64(n),
            Collected::U64(n) => visitor.visit_u64(n),
            Collected::F64(n) => visitor.visit_f64(n),
            Collected::Str(s) => visitor.visit_string(s),
        }
    }
}

struct Collect;

impl Visitor<'_> for Collect {
    type Value = Collected;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a scalar")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Collected, E> {
        Ok(Collected::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Collected, E> {
        Ok(Collected::I64(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Collected, E> {
        Ok(Collected::U64(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Collected, E> {
        Ok(Collected::F64(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Collected, E> {
        Ok(Collected::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Collected, E> {
        Ok(Collected::Str(v))
    }
}

struct Seq<'a>(std::slice::Iter<'a, Value>);

impl<'de> de::SeqAccess<'de> for Seq<'de> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0
            .next()
            .map(|v| seed.deserialize(Lenient(v)))
            .transpose()
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct MapAccess<'a> {
    iter: serde_json::map::Iter<'a>,
    value: Option<&'a Value>,
}

impl<'a> MapAccess<'a> {
    fn new(m: &'a Map<String, Value>) -> Self {
        MapAccess {
            iter: m.iter(),
            value: None,
        }
    }
}

impl<'de> de::MapAccess<'de> for MapAccess<'de> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(BorrowedStrDeserializer::new(k)).map(Some)
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let v = self
            .value
            .take()
            .ok_or_else(|| <Error as de::Error>::custom("value asked before key"))?;
        seed.deserialize(Lenient(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Cfg {
        threshold: u32,
        name: String,
        enabled: bool,
        ratio: f64,
        hosts: Vec<String>,
        ports: Vec<u16>,
        opt: Option<u8>,
    }

    #[test]
    fn strings_coerce_to_the_wanted_type() {
        let v = json!({"threshold": "5", "name": 42, "enabled": "TRUE", "ratio": "0.5",
            "hosts": "a, b", "ports": "80,443", "opt": "7"});
        let c = Cfg::deserialize(Lenient(&v)).unwrap();
        assert_eq!(
            c,
            Cfg {
                threshold: 5,
                name: "42".into(),
                enabled: true,
                ratio: 0.5,
                hosts: vec!["a".into(), "b".into()],
                ports: vec![80, 443],
                opt: Some(7)
            }
        );
    }

    #[test]
    fn bad_strings_are_still_errors() {
        let v = json!({"threshold": "five", "name": "x", "enabled": true, "ratio": 1, "hosts": [],
            "ports": [], "opt": null});
        let err = Cfg::deserialize(Lenient(&v)).unwrap_err().to_string();
        assert!(err.contains("five"), "{err}");
    }
}
