//! `${key}` and `${key:default}` placeholders in string values, resolved against the merged tree
//! when a snapshot is built (so a reference to a key in another layer works). Nested defaults
//! (`${a:${b:x}}`) and chains (a value that is itself a placeholder) resolve; loops are errors.

use serde_json::Value;

use crate::ConfigError;
use crate::value;

const MAX_DEPTH: usize = 16;

/// Resolves every placeholder in `tree`, returning a new tree. The error names the key whose
/// value holds the placeholder that could not be resolved.
pub(crate) fn resolve(tree: &Value) -> Result<Value, ConfigError> {
    let mut out = tree.clone();
    let mut path = String::new();
    resolve_node(tree, &mut out, &mut path)?;
    Ok(out)
}

fn resolve_node(root: &Value, node: &mut Value, path: &mut String) -> Result<(), ConfigError> {
    match node {
        Value::String(s) if s.contains("${") => {
            *s =
                expand(root, s, 0, false).map_err(|m| ConfigError::placeholder(path.clone(), m))?;
        }
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                resolve_node(root, v, path)?;
                path.truncate(len);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                resolve_node(root, v, path)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Expands the placeholders in one string.
pub(crate) fn expand(root: &Value, s: &str, depth: usize, keep: bool) -> Result<String, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "placeholders nest deeper than {MAX_DEPTH} levels (a loop?)"
        ));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let body_start = start + 2;
        let end = matching_brace(&rest[body_start..])
            .ok_or_else(|| format!("unclosed placeholder in {s:?}"))?
            + body_start;
        let body = &rest[body_start..end];
        let (name, default) = split_default(body);
        let name = expand(root, name, depth + 1, keep)?;
        let resolved = match value::lookup(root, name.trim()) {
            Some(Value::String(v)) => expand(root, v, depth + 1, keep)?,
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(Value::Null) | None => match default {
                Some(d) => expand(root, d, depth + 1, keep)?,
                None if keep => rest[start..=end].to_owned(),
                None => return Err(format!("`${{{name}}}` refers to a missing key")),
            },
            Some(_) => return Err(format!("`${{{name}}}` refers to a section, not a value")),
        };
        out.push_str(&resolved);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The offset of the `}` closing a placeholder body, counting nested `${`.
fn matching_brace(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'{') {
            depth += 1;
            i += 2;
            continue;
        }
        if bytes[i] == b'}' {
            if depth == 0 {
                return Some(i);
            }
            depth -= 1;
        }
        i += 1;
    }
    None
}

/// Splits `name:default` at the first `:` outside a nested placeholder.
fn split_default(body: &str) -> (&str, Option<&str>) {
    let bytes = body.as_bytes();
    let mut depth = 0usize;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'{' if i > 0 && bytes[i - 1] == b'$' => depth += 1,
            b'}' => depth = depth.saturating_sub(1),
            b':' if depth == 0 => return (&body[..i], Some(&body[i + 1..])),
            _ => {}
        }
    }
    (body, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resolves_references_defaults_and_chains() {
        let t = json!({
            "host": "db", "port": 5432,
            "url": "pg://${host}:${port}/${name:orders}",
            "alias": "${url}",
            "nested": "${missing:${host}}",
            "list": ["${host}"]
        });
        let r = resolve(&t).unwrap();
        assert_eq!(r["url"], "pg://db:5432/orders");
        assert_eq!(r["alias"], "pg://db:5432/orders");
        assert_eq!(r["nested"], "db");
        assert_eq!(r["list"][0], "db");
    }

    #[test]
    fn missing_keys_and_loops_are_errors_naming_the_key() {
        let e = resolve(&json!({"a": {"b": "${nope}"}})).unwrap_err();
        assert_eq!(e.key(), Some("a.b"));
        assert!(e.is_placeholder());
        let e = resolve(&json!({"x": "${y}", "y": "${x}"})).unwrap_err();
        assert!(e.message().contains("loop"), "{e}");
        let e = resolve(&json!({"x": "${y", "y": 1})).unwrap_err();
        assert!(e.message().contains("unclosed"), "{e}");
    }
}
