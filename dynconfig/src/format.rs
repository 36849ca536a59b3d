//! File formats: TOML, YAML (one or several documents), JSON and Java `.properties`, parsed to the
//! shared value tree with the line of any syntax error, and a best-effort search for the line that
//! defines a key (so a bad value can be reported as file, line and key).

use std::path::Path;

use serde_json::{Map, Value};

use crate::value;

/// A configuration file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// TOML (`.toml`).
    Toml,
    /// YAML (`.yaml`, `.yml`).
    Yaml,
    /// JSON (`.json`).
    Json,
    /// Java properties (`.properties`): flat `key=value` lines, every value a string.
    Properties,
}

/// A syntax error in a file: the message and the 1-based line when the parser knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// What the parser said.
    pub message: String,
    /// The 1-based line of the error, when known.
    pub line: Option<usize>,
}

impl Format {
    /// The format for a file name's extension, if it is one of ours.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "toml" => Some(Format::Toml),
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            "properties" => Some(Format::Properties),
            _ => None,
        }
    }

    /// Parses a whole file to one tree. An empty file is an empty map; for YAML with several
    /// documents the documents are merged in order (use [`Format::parse_documents`] to keep them).
    pub fn parse(self, text: &str) -> Result<Value, SyntaxError> {
        let mut docs = self.parse_documents(text)?;
        let mut root = if docs.is_empty() {
            Value::Object(Map::new())
        } else {
            docs.remove(0)
        };
        for d in docs {
            value::merge(&mut root, &d);
        }
        Ok(root)
    }

    /// Parses a file to its documents (several only for multi-document YAML). Each document is a
    /// map; an empty document is an empty map.
    pub fn parse_documents(self, text: &str) -> Result<Vec<Value>, SyntaxError> {
        let docs = match self {
            Format::Json => vec![
                serde_json::from_str::<Value>(text).map_err(|e| SyntaxError {
                    message: e.to_string(),
                    line: Some(e.line()),
                })?,
            ],
            Format::Toml => vec![toml::from_str::<Value>(text).map_err(|e| SyntaxError {
                message: e.message().to_owned(),
                line: e.span().map(|s| line_of_offset(text, s.start)),
            })?],
            Format::Yaml => {
                let mut out = Vec::new();
                for doc in serde_yaml::Deserializer::from_str(text) {
                    let v =
                        serde::Deserialize::deserialize(doc).map_err(|e: serde_yaml::Error| {
                            SyntaxError {
                                line: e.location().map(|l| l.line()),
                                message: e.to_string(),
                            }
                        })?;
                    out.push(v);
                }
                out
            }
            Format::Properties => {
                let pairs = parse_properties(text)?;
                vec![value::unflatten(pairs.iter().map(|(k, v)| (k.as_str(), v)))]
            }
        };
        docs.into_iter()
            .map(|d| match d {
                Value::Null => Ok(Value::Object(Map::new())),
                Value::Object(m) => Ok(Value::Object(m)),
                other => Err(SyntaxError {
                    message: format!("the top level must be a map, found {}", kind(&other)),
                    line: Some(1),
                }),
            })
            .collect()
    }

    /// The 1-based line that defines `key` in `text`, found by matching the key's segments in
    /// order (nested YAML keys, TOML tables and dotted keys, JSON fields, flat properties keys).
    /// Best effort: `None` when the key cannot be found.
    pub fn locate_key(self, text: &str, key: &str) -> Option<usize> {
        let segs: Vec<&str> = value::segments(key)?
            .into_iter()
            .filter_map(|s| match s {
                value::Segment::Field(f) => Some(f),
                value::Segment::Index(_) => None,
            })
            .collect();
        if segs.is_empty() {
            return None;
        }
        if self == Format::Properties {
            return text
                .lines()
                .position(|l| {
                    let l = l.trim_start();
                    l.strip_prefix(key).is_some_and(|r| {
                        r.trim_start().starts_with(['=', ':']) || r.starts_with(' ')
                    })
                })
                .map(|i| i + 1);
        }
        let mut matched = 0;
        let mut found = None;
        for (i, line) in text.lines().enumerate() {
            let t = line.trim_start().trim_start_matches("- ");
            if self == Format::Toml && t.starts_with('[') {
                let header = t.trim_start_matches('[').split(']').next().unwrap_or("");
                let parts: Vec<&str> = header
                    .split('.')
                    .map(|p| p.trim().trim_matches('"'))
                    .collect();
                if parts.len() <= segs.len() && parts == segs[..parts.len()] {
                    matched = parts.len();
                    found = Some(i + 1);
                }
                continue;
            }
            let mut rest = t;
            let mut progressed = false;
            // A TOML dotted key (`a.b = 1`) can match several segments on one line.
            while matched < segs.len() {
                let seg = segs[matched];
                let after = rest
                    .strip_prefix('"')
                    .and_then(|r| r.strip_prefix(seg))
                    .and_then(|r| r.strip_prefix('"'))
                    .or_else(|| rest.strip_prefix(seg));
                let Some(after) = after else { break };
                let after_ws = after.trim_start();
                if after_ws.starts_with(':') || after_ws.starts_with('=') {
                    matched += 1;
                    progressed = true;
                    break;
                } else if self == Format::Toml && after.starts_with('.') {
                    matched += 1;
                    progressed = true;
                    rest = &after[1..];
                } else {
                    break;
                }
            }
            if progressed {
                found = Some(i + 1);
                if matched == segs.len() {
                    return found;
                }
            }
        }
        found
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Parses Java `.properties` text into `(key, string value)` pairs in file order: `=`, `:` or
/// whitespace separators, `#`/`!` comments, backslash line continuations and the usual escapes.
pub fn parse_properties(text: &str) -> Result<Vec<(String, Value)>, SyntaxError> {
    let mut out = Vec::new();
    let mut logical = String::new();
    let mut start_line = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = if logical.is_empty() {
            let l = raw.trim_start();
            if l.is_empty() || l.starts_with('#') || l.starts_with('!') {
                continue;
            }
            start_line = i + 1;
            l
        } else {
            raw.trim_start()
        };
        let trailing = line.len() - line.trim_end_matches('\\').len();
        if trailing % 2 == 1 {
            logical.push_str(&line[..line.len() - 1]);
            continue;
        }
        logical.push_str(line);
        let (k, v) = split_property(&logical);
        let key = unescape(k, start_line)?;
        let val = unescape(v, start_line)?;
        out.push((key, Value::String(val)));
        logical.clear();
    }
    if !logical.is_empty() {
        let (k, v) = split_property(&logical);
        out.push((
            unescape(k, start_line)?,
            Value::String(unescape(v, start_line)?),
        ));
    }
    Ok(out)
}

fn split_property(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' | b':' => return (line[..i].trim_end(), line[i + 1..].trim_start()),
            b' ' | b'\t' => {
                let rest = line[i..].trim_start();
                let rest = rest
                    .strip_prefix(['=', ':'])
                    .map(str::trim_start)
                    .unwrap_or(rest);
                return (&line[..i], rest);
            }
            _ => i += 1,
        }
    }
    (line, "")
}

fn unescape(s: &str, line: usize) -> Result<String, SyntaxError> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let c = u32::from_str_radix(&hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| SyntaxError {
                        message: format!("bad unicode escape \\u{hex}"),
                        line: Some(line),
                    })?;
                out.push(c);
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_format_parses_to_the_same_tree() {
        let want = json!({"server": {"port": 8080, "name": "a"}});
        assert_eq!(
            Format::Toml
                .parse("[server]\nport = 8080\nname = \"a\"\n")
                .unwrap(),
            want
        );
        assert_eq!(
            Format::Yaml
                .parse("server:\n  port: 8080\n  name: a\n")
                .unwrap(),
            want
        );
        assert_eq!(
            Format::Json
                .parse(r#"{"server":{"port":8080,"name":"a"}}"#)
                .unwrap(),
            want
        );
        assert_eq!(
            Format::Properties
                .parse("# c\nserver.port=8080\nserver.name : a\n")
                .unwrap(),
            json!({"server": {"port": "8080", "name": "a"}})
        );
        assert_eq!(Format::Yaml.parse("").unwrap(), json!({}));
    }

    #[test]
    fn syntax_errors_carry_the_line() {
        let e = Format::Yaml.parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(e.line.is_some_and(|l| l >= 2), "{e:?}");
        let e = Format::Toml.parse("a = 1\nb = = 2\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e:?}");
        let e = Format::Json.parse("{\n\"a\": 1,\n}").unwrap_err();
        assert_eq!(e.line, Some(3), "{e:?}");
        let e = Format::Yaml.parse("- 1\n- 2\n").unwrap_err();
        assert!(e.message.contains("top level"), "{e:?}");
    }

    #[test]
    fn properties_continuations_and_escapes() {
        let p = parse_properties("a = x\\\n   y\nb\\ c=1\\t2\nd\n").unwrap();
        assert_eq!(
            p,
            vec![
                ("a".into(), json!("xy")),
                ("b c".into(), json!("1\t2")),
                ("d".into(), json!(""))
            ]
        );
    }

    #[test]
    fn keys_are_located_in_each_format() {
        let yaml = "other:\n  threshold: 1\nbreaker:\n  orders:\n    threshold: 5\n";
        assert_eq!(
            Format::Yaml.locate_key(yaml, "breaker.orders.threshold"),
            Some(5)
        );
        let toml = "[other]\nthreshold = 1\n[breaker.orders]\nname = \"x\"\nthreshold = 5\n";
        assert_eq!(
            Format::Toml.locate_key(toml, "breaker.orders.threshold"),
            Some(5)
        );
        let toml2 = "breaker.orders.threshold = 5\n";
        assert_eq!(
            Format::Toml.locate_key(toml2, "breaker.orders.threshold"),
            Some(1)
        );
        let json = "{\n \"breaker\": {\n  \"threshold\": 5\n }\n}";
        assert_eq!(Format::Json.locate_key(json, "breaker.threshold"), Some(3));
        let props = "a=1\nbreaker.threshold = 5\n";
        assert_eq!(
            Format::Properties.locate_key(props, "breaker.threshold"),
            Some(2)
        );
    }
}
