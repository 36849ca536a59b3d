//! The value tree shared by every source: a `serde_json::Value` addressed with dotted keys
//! (`server.port`, `servers[1].host`), deep-merged layer over layer, and flattened to and from the
//! Spring Cloud Config form (one dotted key per leaf, `[i]` for list items).

use serde_json::{Map, Value};

/// One step of a dotted key: a map field or a list index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    /// A map field (`server` in `server.port`).
    Field(&'a str),
    /// A list index (`1` in `servers[1]`).
    Index(usize),
}

/// Splits a dotted key into segments. `a.b[2].c` gives `a`, `b`, `2`, `c`. Returns `None` for a
/// malformed key (an unclosed bracket or a non-numeric index); an empty key has no segments.
pub fn segments(key: &str) -> Option<Vec<Segment<'_>>> {
    let mut out = Vec::new();
    if key.is_empty() {
        return Some(out);
    }
    for part in key.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Segment::Field(name));
        } else if rest.is_empty() {
            return None;
        }
        while !rest.is_empty() {
            let close = rest.find(']')?;
            let index = rest[1..close].parse().ok()?;
            out.push(Segment::Index(index));
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return None;
            }
        }
    }
    Some(out)
}

/// Looks a dotted key up in a tree. The empty key gives the whole tree.
pub fn lookup<'v>(root: &'v Value, key: &str) -> Option<&'v Value> {
    let mut node = root;
    for seg in segments(key)? {
        node = match (seg, node) {
            (Segment::Field(f), Value::Object(m)) => m.get(f)?,
            (Segment::Index(i), Value::Array(a)) => a.get(i)?,
            _ => return None,
        };
    }
    Some(node)
}

/// Sets a dotted key in a tree, creating maps and lists on the way (list gaps are filled with
/// `null`). A scalar in the way is replaced. Returns `false` for a malformed key.
pub fn insert(root: &mut Value, key: &str, value: Value) -> bool {
    let Some(segs) = segments(key) else {
        return false;
    };
    let mut node = root;
    for seg in segs {
        node = match seg {
            Segment::Field(f) => {
                if !node.is_object() {
                    *node = Value::Object(Map::new());
                }
                node.as_object_mut()
                    .expect("made an object above")
                    .entry(f.to_owned())
                    .or_insert(Value::Null)
            }
            Segment::Index(i) => {
                if !node.is_array() {
                    *node = Value::Array(Vec::new());
                }
                let list = node.as_array_mut().expect("made an array above");
                if list.len() <= i {
                    list.resize(i + 1, Value::Null);
                }
                &mut list[i]
            }
        };
    }
    *node = value;
    true
}

/// Merges `over` into `base`: maps merge key by key, anything else (scalars, lists) replaces.
/// Lists replace whole, as Spring does: the most specific source's list wins.
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// Flattens a tree to Spring's form: one `(dotted key, scalar)` pair per leaf, in tree order.
/// An empty map or list becomes an empty string, as Spring writes it.
pub fn flatten(root: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    flatten_into(root, &mut String::new(), &mut out);
    out
}

fn flatten_into(node: &Value, prefix: &mut String, out: &mut Vec<(String, Value)>) {
    match node {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let len = prefix.len();
                if !prefix.is_empty() {
                    prefix.push('.');
                }
                prefix.push_str(k);
                flatten_into(v, prefix, out);
                prefix.truncate(len);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, v) in a.iter().enumerate() {
                let len = prefix.len();
                prefix.push_str(&format!("[{i}]"));
                flatten_into(v, prefix, out);
                prefix.truncate(len);
            }
        }
        Value::Object(_) | Value::Array(_) => {
            out.push((prefix.clone(), Value::String(String::new())))
        }
        leaf => out.push((prefix.clone(), leaf.clone())),
    }
}

/// Builds a tree from flat `(dotted key, value)` pairs; later pairs win. Malformed keys are kept as
/// literal top-level fields so nothing is lost.
pub fn unflatten<'a, I>(pairs: I) -> Value
where
    I: IntoIterator<Item = (&'a str, &'a Value)>,
{
    let mut root = Value::Object(Map::new());
    for (k, v) in pairs {
        if !insert(&mut root, k, v.clone())
            && let Value::Object(m) = &mut root
        {
            m.insert(k.to_owned(), v.clone());
        }
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn segments_parse_fields_and_indexes() {
        assert_eq!(
            segments("a.b[2].c").unwrap(),
            vec![
                Segment::Field("a"),
                Segment::Field("b"),
                Segment::Index(2),
                Segment::Field("c")
            ]
        );
        assert_eq!(segments("a[0][1]").unwrap().len(), 3);
        assert!(segments("a[x]").is_none());
        assert!(segments("a..b").is_none());
        assert!(segments("a[1").is_none());
    }

    #[test]
    fn lookup_insert_merge_roundtrip() {
        let mut t = json!({});
        assert!(insert(&mut t, "server.port", json!(8080)));
        assert!(insert(&mut t, "servers[1].host", json!("b")));
        assert_eq!(lookup(&t, "server.port"), Some(&json!(8080)));
        assert_eq!(lookup(&t, "servers[1].host"), Some(&json!("b")));
        assert_eq!(lookup(&t, "servers[0]"), Some(&Value::Null));
        assert_eq!(lookup(&t, "servers[5]"), None);
        let mut base = json!({"a": {"x": 1, "y": 2}, "l": [1, 2, 3]});
        merge(&mut base, &json!({"a": {"y": 3}, "l": [9]}));
        assert_eq!(base, json!({"a": {"x": 1, "y": 3}, "l": [9]}));
    }

    #[test]
    fn flatten_and_unflatten_are_inverse() {
        let t = json!({"a": {"b": 1, "c": [true, {"d": "x"}]}, "e": []});
        let flat = flatten(&t);
        let keys: Vec<&str> = flat.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a.b", "a.c[0]", "a.c[1].d", "e"]);
        let back = unflatten(flat.iter().map(|(k, v)| (k.as_str(), v)));
        assert_eq!(back["a"], t["a"]);
    }
}
