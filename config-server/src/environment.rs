//! Building a Spring `Environment`: which files make property sources, in which order, and how
//! they are flattened, decrypted and rendered.

use palisade_dynconfig::format::{Format, parse_properties};
use palisade_dynconfig::value;
use serde_json::{Map, Value};

use crate::backend::{Backend, BackendError, Request};
use crate::cipher::Cipher;

/// One property source: a file (or one document of a multi-document YAML file), flattened.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertySource {
    /// The source's name: the backend's origin and the file path.
    pub name: String,
    /// Flattened `(key, value)` pairs in file order.
    pub source: Vec<(String, Value)>,
    /// For each pair, the 1-based line and column of its value when they could be found.
    pub lines: Vec<Option<(usize, usize)>>,
}

/// A Spring Cloud Config `Environment`: property sources listed highest precedence first.
#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    /// The application name asked for.
    pub name: String,
    /// The profiles asked for.
    pub profiles: Vec<String>,
    /// The label asked for (`None` when the request named none, as Spring answers).
    pub label: Option<String>,
    /// The version (commit sha for git).
    pub version: Option<String>,
    /// The sources, `property_sources[0]` wins.
    pub property_sources: Vec<PropertySource>,
}

struct Candidate {
    path: String,
    format: Format,
}

fn join(dir: &str, file: &str) -> String {
    if dir.is_empty() {
        file.to_owned()
    } else {
        format!("{}/{file}", dir.trim_end_matches('/'))
    }
}

const EXTENSIONS: [(&str, Format); 3] = [
    ("properties", Format::Properties),
    ("yml", Format::Yaml),
    ("yaml", Format::Yaml),
];

/// The files to read for `app` and `profiles`, highest precedence first, as the real Spring Cloud
/// Config Server 5.0 orders them: for each profile (the last one first) `{app}-{profile}` then
/// `application-{profile}`; then `{app}` and `application`, whose YAML documents activated for a
/// requested profile (`spring.config.activate.on-profile`) rank above their plain documents.
/// Within a name `.properties` beats `.yml` beats `.yaml`; an earlier search path beats a later one.
fn candidates(app: &str, profiles: &[String], search_paths: &[String]) -> Vec<Candidate> {
    let mut names = vec![app.to_owned()];
    if app != "application" {
        names.push("application".to_owned());
    }
    let mut out = Vec::new();
    let mut add = |sp: &str, file: String| {
        for (ext, format) in EXTENSIONS {
            let path = join(sp, &format!("{file}.{ext}"));
            if !out.iter().any(|c: &Candidate| c.path == path) {
                out.push(Candidate { path, format });
            }
        }
    };
    for profile in profiles.iter().rev() {
        for name in &names {
            for sp in search_paths {
                let sp = sp
                    .replace("{application}", app)
                    .replace("{profile}", profile);
                add(&sp, format!("{name}-{profile}"));
            }
        }
    }
    for name in &names {
        for sp in search_paths {
            let sp = sp
                .replace("{application}", app)
                .replace("{profile}", "default");
            add(&sp, name.clone());
        }
    }
    out
}

/// The profiles a YAML document is activated for (`spring.config.activate.on-profile` or the
/// older `spring.profiles`), if any.
fn activation(doc: &Value) -> Option<Vec<String>> {
    // Nested (`spring: config: ...`) or written as one dotted key.
    let v = ["spring.config.activate.on-profile", "spring.profiles"]
        .iter()
        .find_map(|k| value::lookup(doc, k).or_else(|| doc.get(*k)))?;
    let list = match v {
        Value::String(s) => s.split(',').map(|p| p.trim().to_owned()).collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => return None,
    };
    Some(list)
}

/// Reads and assembles the environment of `app` with `profiles` at `label`.
///
/// # Errors
/// An unknown label, a rejected name, an unreadable repository, or a file that does not parse.
pub fn find(
    backend: &dyn Backend,
    cipher: Option<&Cipher>,
    app: &str,
    profiles: &[String],
    label: Option<&str>,
    search_paths: &[String],
) -> Result<Environment, BackendError> {
    let cands = candidates(app, profiles, search_paths);
    let paths: Vec<String> = cands.iter().map(|c| c.path.clone()).collect();
    let request = Request {
        application: app,
        profiles,
        label,
    };
    let files = backend.read(&request, &paths)?;
    let origin = backend.origin(&request);
    let mut sources = Vec::new();
    for (c, bytes) in cands.iter().zip(&files.contents) {
        let Some(bytes) = bytes else {
            continue;
        };
        let text = String::from_utf8_lossy(bytes);
        let name = format!("{origin}{}", c.path);
        if c.format == Format::Properties {
            let pairs = parse_properties(&text).map_err(|e| syntax(&c.path, &e))?;
            if pairs.is_empty() {
                continue;
            }
            let lines = pairs
                .iter()
                .map(|(k, _)| locate(c.format, &text, k))
                .collect();
            push(&mut sources, name, pairs, lines, cipher);
            continue;
        }
        let docs = c
            .format
            .parse_documents(&text)
            .map_err(|e| syntax(&c.path, &e))?;
        let many = docs.len() > 1;
        // Later documents override earlier ones, so they are listed first.
        for (i, doc) in docs.into_iter().enumerate().rev() {
            if let Some(list) = activation(&doc)
                && !list.iter().any(|p| profiles.contains(p))
            {
                continue;
            }
            if doc.as_object().is_some_and(Map::is_empty) {
                continue;
            }
            let pairs = value::flatten(&doc);
            let lines = pairs
                .iter()
                .map(|(k, _)| locate(c.format, &text, k))
                .collect();
            let name = if many {
                format!("{name} (document #{i})")
            } else {
                name.clone()
            };
            push(&mut sources, name, pairs, lines, cipher);
        }
    }
    Ok(Environment {
        name: app.to_owned(),
        profiles: profiles.to_vec(),
        label: label.map(str::to_owned),
        version: files.version,
        property_sources: sources,
    })
}

/// The `line:column` of a key's value, as Spring's v2 origins give it (best effort: the line
/// that defines the key, and the column where its value starts).
fn locate(format: Format, text: &str, key: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    // A scalar list item (`list[1]`): the n-th `- ` line under the list's key.
    if let Some((parent, index)) = key
        .strip_suffix(']')
        .and_then(|k| k.rfind('[').map(|i| (&k[..i], &k[i + 1..])))
    {
        let index: usize = index.parse().ok()?;
        if format != Format::Yaml || parent.ends_with(']') {
            return None;
        }
        let at = format.locate_key(text, parent)?;
        let key_indent = indent(lines.get(at - 1)?);
        let mut n = 0;
        for (i, l) in lines.iter().enumerate().skip(at) {
            let t = l.trim_start();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if indent(l) < key_indent || (indent(l) == key_indent && !t.starts_with("- ")) {
                return None;
            }
            if t.starts_with("- ") {
                if n == index {
                    return Some((i + 1, indent(l) + 3));
                }
                n += 1;
            }
        }
        return None;
    }
    let line = format.locate_key(text, key)?;
    let l = lines.get(line - 1)?;
    let sep = l.find([':', '='])?;
    let after = &l[sep + 1..];
    let col = sep + 1 + (after.len() - after.trim_start().len()) + 1;
    Some((line, col))
}

fn syntax(path: &str, e: &palisade_dynconfig::format::SyntaxError) -> BackendError {
    let line = e.line.map(|l| format!(" line {l}")).unwrap_or_default();
    BackendError::Unavailable(format!("{path}{line}: {}", e.message))
}

fn push(
    sources: &mut Vec<PropertySource>,
    name: String,
    pairs: Vec<(String, Value)>,
    lines: Vec<Option<(usize, usize)>>,
    cipher: Option<&Cipher>,
) {
    let mut source = Vec::with_capacity(pairs.len());
    let mut kept_lines = Vec::with_capacity(pairs.len());
    let mut invalid = Vec::new();
    for ((k, v), line) in pairs.into_iter().zip(lines) {
        match v.as_str().and_then(|s| s.strip_prefix("{cipher}")) {
            Some(ct) => match cipher.and_then(|c| c.decrypt(ct).ok()) {
                Some(plain) => {
                    source.push((k, Value::String(plain)));
                    kept_lines.push(line);
                }
                // Spring's convention for a value that cannot be decrypted, moved to the end of
                // the source as the real server does.
                None => invalid.push((format!("invalid.{k}"), Value::String("<n/a>".into()))),
            },
            None => {
                source.push((k, v));
                kept_lines.push(line);
            }
        }
    }
    kept_lines.extend(invalid.iter().map(|_| None));
    source.extend(invalid);
    let lines = kept_lines;
    sources.push(PropertySource {
        name,
        source,
        lines,
    });
}

impl Environment {
    /// The Spring JSON form; with `with_origin` (the v2 media type) each value is
    /// `{"value": ..., "origin": "line:column"}` (bare when the origin is unknown). As the real server does, `profiles` holds the
    /// profiles as asked (one comma-joined string) and `state` is empty.
    pub fn to_json(&self, with_origin: bool) -> Value {
        let sources: Vec<Value> = self
            .property_sources
            .iter()
            .map(|ps| {
                let mut m = Map::new();
                for (i, (k, v)) in ps.source.iter().enumerate() {
                    // Without a known origin (the `invalid.*` markers) the value stays bare,
                    // as the real server writes it.
                    let v = match ps.lines.get(i).copied().flatten() {
                        Some((l, c)) if with_origin => {
                            serde_json::json!({"value": v, "origin": format!("{l}:{c}")})
                        }
                        _ => v.clone(),
                    };
                    m.insert(k.clone(), v);
                }
                serde_json::json!({"name": ps.name, "source": m})
            })
            .collect();
        serde_json::json!({
            "name": self.name,
            "profiles": [self.profiles.join(",")],
            "label": self.label,
            "version": self.version,
            "state": "",
            "propertySources": sources,
        })
    }

    /// The merged flat map: sources applied lowest first, so `property_sources[0]` wins. As in
    /// the real server, a list (`list[0]`, `list[1]`...) from a source replaces the same list
    /// from the sources below whole, and goes after that source's other keys.
    pub fn merged(&self) -> Vec<(String, Value)> {
        let mut out: Vec<(String, Value)> = Vec::new();
        for ps in self.property_sources.iter().rev() {
            for (k, v) in ps.source.iter().filter(|(k, _)| !k.contains('[')) {
                match out.iter_mut().find(|(ok, _)| ok == k) {
                    Some(slot) => slot.1 = v.clone(),
                    None => out.push((k.clone(), v.clone())),
                }
            }
            let mut lists_done: Vec<&str> = Vec::new();
            for (k, _) in &ps.source {
                let Some(i) = k.find('[') else { continue };
                let base = &k[..i];
                if lists_done.contains(&base) {
                    continue;
                }
                lists_done.push(base);
                let is_item =
                    |key: &str| key.len() > i && key.starts_with(base) && key.as_bytes()[i] == b'[';
                out.retain(|(ok, _)| !is_item(ok));
                out.extend(
                    ps.source
                        .iter()
                        .filter(|(sk, _)| is_item(sk))
                        .map(|(sk, sv)| (sk.clone(), sv.clone())),
                );
            }
        }
        out
    }

    /// The merged configuration as a tree, with placeholders resolved when asked.
    ///
    /// # Errors
    /// An unresolvable placeholder (only when `resolve` is set).
    pub fn merged_tree(&self, resolve: bool) -> Result<Value, String> {
        let merged = self.merged();
        let tree = value::unflatten(merged.iter().map(|(k, v)| (k.as_str(), v)));
        if resolve {
            palisade_dynconfig::resolve_placeholders(&tree).map_err(|e| e.to_string())
        } else {
            Ok(tree)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::DirectoryBackend;

    #[test]
    fn precedence_follows_the_real_spring_server() {
        // The order the real Spring Cloud Config Server 5.0.6 gave for the same files.
        let dir = tempfile::tempdir().unwrap();
        let w = |n: &str, t: &str| std::fs::write(dir.path().join(n), t).unwrap();
        w(
            "application.yml",
            "a: app\nb: app\nc: app\nd: app\ne: app\n---\nspring:\n  config:\n    activate:\n      on-profile: prod\nappdoc: prod\n",
        );
        w(
            "orders.yml",
            "a: orders\nb: orders\nc: orders\nd: orders\n---\nspring:\n  config:\n    activate:\n      on-profile: eu\nd: orders-doc-eu\n---\nspring.config.activate.on-profile: us\nd: us\n",
        );
        w(
            "application-prod.yml",
            "a: application-prod\nb: application-prod\n",
        );
        w("orders-prod.properties", "a=orders-prod\n");
        w("orders-prod.yml", "y: 1\n");
        w("application-eu.yml", "z: application-eu\n");
        w("orders-eu.yml", "z: eu\n");
        w("other.yml", "a: other\n");
        let b = DirectoryBackend::new(dir.path()).unwrap();
        let env = find(
            &b,
            None,
            "orders",
            &["prod".into(), "eu".into()],
            None,
            &[String::new()],
        )
        .unwrap();
        let names: Vec<String> = env
            .property_sources
            .iter()
            .map(|p| p.name.rsplit('/').next().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "orders-eu.yml",
                "application-eu.yml",
                "orders-prod.properties",
                "orders-prod.yml",
                "application-prod.yml",
                "orders.yml (document #1)",
                "orders.yml (document #0)",
                "application.yml (document #1)",
                "application.yml (document #0)"
            ]
        );
        let merged: std::collections::BTreeMap<_, _> = env.merged().into_iter().collect();
        assert_eq!(merged["a"], "orders-prod");
        assert_eq!(merged["b"], "application-prod");
        assert_eq!(merged["c"], "orders");
        assert_eq!(merged["d"], "orders-doc-eu");
        assert_eq!(merged["e"], "app");
        assert_eq!(merged["z"], "eu");
        assert_eq!(
            merged["spring.config.activate.on-profile"], "eu",
            "kept, as Spring keeps it"
        );
        assert_eq!(
            env.property_sources[2].lines,
            vec![Some((1, 3))],
            "line:column of the value"
        );
        let l = "list:\n  - a\n  - b\nnext: 1\n";
        assert_eq!(locate(Format::Yaml, l, "list[1]"), Some((3, 5)));
        assert_eq!(locate(Format::Yaml, l, "list[2]"), None);
        assert_eq!(locate(Format::Yaml, "a:\n  b: 7\n", "a.b"), Some((2, 6)));
    }
}
