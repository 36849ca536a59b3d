//! Building a Spring `Environment`: which files make property sources, in which order, and how
//! they are flattened, decrypted and rendered.

use palisade_dynconfig::format::{Format, parse_properties};
use palisade_dynconfig::value;
use serde_json::{Map, Value};

use crate::backend::{Backend, BackendError};
use crate::cipher::Cipher;

/// One property source: a file (or one document of a multi-document YAML file), flattened.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertySource {
    /// The source's name: the backend's origin and the file path.
    pub name: String,
    /// Flattened `(key, value)` pairs in file order.
    pub source: Vec<(String, Value)>,
    /// For each pair, the 1-based line that defines it when it could be found.
    pub lines: Vec<Option<usize>>,
}

/// A Spring Cloud Config `Environment`: property sources listed highest precedence first.
#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    /// The application name asked for.
    pub name: String,
    /// The profiles asked for.
    pub profiles: Vec<String>,
    /// The label used.
    pub label: Option<String>,
    /// The version (commit sha for git).
    pub version: Option<String>,
    /// The sources, `property_sources[0]` wins.
    pub property_sources: Vec<PropertySource>,
}

struct Candidate {
    path: String,
    format: Format,
    /// `Some(p)`: a `{name}-{p}` file, or documents of a `{name}` file activated for `p`.
    profile: Option<String>,
    /// Whether this candidate takes the profile-specific documents of a plain file.
    activated_docs: bool,
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

/// The files to read for `app` and `profiles`, highest precedence first: for each profile (the
/// last one first), `{app}-{profile}` then `application-{profile}` (and the documents of `{app}`
/// and `application` activated for that profile); then `{app}` and `application`. Within a name,
/// `.properties` beats `.yml` beats `.yaml`; an earlier search path beats a later one.
fn candidates(app: &str, profiles: &[String], search_paths: &[String]) -> Vec<Candidate> {
    let mut names = vec![app.to_owned()];
    if app != "application" {
        names.push("application".to_owned());
    }
    let mut out = Vec::new();
    for profile in profiles.iter().rev() {
        for name in &names {
            for sp in search_paths {
                let sp = sp
                    .replace("{application}", app)
                    .replace("{profile}", profile);
                for (ext, format) in EXTENSIONS {
                    out.push(Candidate {
                        path: join(&sp, &format!("{name}-{profile}.{ext}")),
                        format,
                        profile: Some(profile.clone()),
                        activated_docs: false,
                    });
                }
                for (ext, format) in &EXTENSIONS[1..] {
                    out.push(Candidate {
                        path: join(&sp, &format!("{name}.{ext}")),
                        format: *format,
                        profile: Some(profile.clone()),
                        activated_docs: true,
                    });
                }
            }
        }
    }
    for name in &names {
        for sp in search_paths {
            let sp = sp
                .replace("{application}", app)
                .replace("{profile}", "default");
            for (ext, format) in EXTENSIONS {
                out.push(Candidate {
                    path: join(&sp, &format!("{name}.{ext}")),
                    format,
                    profile: None,
                    activated_docs: false,
                });
            }
        }
    }
    out
}

/// The profiles a YAML document is activated for (`spring.config.activate.on-profile` or the
/// older `spring.profiles`), if any.
fn activation(doc: &Value) -> Option<Vec<String>> {
    let v = value::lookup(doc, "spring.config.activate.on-profile")
        .or_else(|| value::lookup(doc, "spring.profiles"))?;
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

fn strip_activation(doc: &mut Value) {
    if let Some(spring) = doc.get_mut("spring").and_then(Value::as_object_mut) {
        spring.remove("profiles");
        if let Some(config) = spring.get_mut("config").and_then(Value::as_object_mut) {
            if let Some(activate) = config.get_mut("activate").and_then(Value::as_object_mut) {
                activate.remove("on-profile");
                if activate.is_empty() {
                    config.remove("activate");
                }
            }
            if config.is_empty() {
                spring.remove("config");
            }
        }
        if spring.is_empty() {
            doc.as_object_mut()
                .expect("has a spring key")
                .remove("spring");
        }
    }
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
    // Each file is read once even if several candidates name it.
    let mut unique: Vec<String> = Vec::new();
    for c in &cands {
        if !unique.contains(&c.path) {
            unique.push(c.path.clone());
        }
    }
    let files = backend.read(label, &unique)?;
    let origin = backend.origin();
    let mut sources = Vec::new();
    for c in &cands {
        let idx = unique
            .iter()
            .position(|p| *p == c.path)
            .expect("listed above");
        let Some(bytes) = &files.contents[idx] else {
            continue;
        };
        let text = String::from_utf8_lossy(bytes);
        let name = format!("{origin}{}", c.path);
        if c.format == Format::Properties {
            let pairs = parse_properties(&text).map_err(|e| syntax(&c.path, &e))?;
            let lines = pairs
                .iter()
                .map(|(k, _)| c.format.locate_key(&text, k))
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
        for (i, mut doc) in docs.into_iter().enumerate().rev() {
            let act = activation(&doc);
            let take = match (&c.profile, c.activated_docs, &act) {
                (None, _, None) => true,
                (Some(_), false, _) => act.is_none(),
                (Some(p), true, Some(list)) => list.iter().any(|x| x == p),
                _ => false,
            };
            if !take {
                continue;
            }
            strip_activation(&mut doc);
            let pairs = value::flatten(&doc);
            if doc.as_object().is_some_and(Map::is_empty) {
                continue;
            }
            let lines = pairs
                .iter()
                .map(|(k, _)| c.format.locate_key(&text, k))
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
        label: files.label,
        version: files.version,
        property_sources: sources,
    })
}

fn syntax(path: &str, e: &palisade_dynconfig::format::SyntaxError) -> BackendError {
    let line = e.line.map(|l| format!(" line {l}")).unwrap_or_default();
    BackendError::Unavailable(format!("{path}{line}: {}", e.message))
}

fn push(
    sources: &mut Vec<PropertySource>,
    name: String,
    pairs: Vec<(String, Value)>,
    lines: Vec<Option<usize>>,
    cipher: Option<&Cipher>,
) {
    let mut source = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        match v.as_str().and_then(|s| s.strip_prefix("{cipher}")) {
            Some(ct) => match cipher.and_then(|c| c.decrypt(ct).ok()) {
                Some(plain) => source.push((k, Value::String(plain))),
                // Spring's convention for a value that cannot be decrypted.
                None => source.push((format!("invalid.{k}"), Value::String("<n/a>".into()))),
            },
            None => source.push((k, v)),
        }
    }
    sources.push(PropertySource {
        name,
        source,
        lines,
    });
}

impl Environment {
    /// The Spring JSON form; with `with_origin` (the v2 media type) each value is
    /// `{"value": ..., "origin": "name:line"}`.
    pub fn to_json(&self, with_origin: bool) -> Value {
        let sources: Vec<Value> = self
            .property_sources
            .iter()
            .map(|ps| {
                let mut m = Map::new();
                for (i, (k, v)) in ps.source.iter().enumerate() {
                    let v = if with_origin {
                        let origin = match ps.lines.get(i).copied().flatten() {
                            Some(l) => format!("{}:{l}", ps.name),
                            None => ps.name.clone(),
                        };
                        serde_json::json!({"value": v, "origin": origin})
                    } else {
                        v.clone()
                    };
                    m.insert(k.clone(), v);
                }
                serde_json::json!({"name": ps.name, "source": m})
            })
            .collect();
        serde_json::json!({
            "name": self.name,
            "profiles": self.profiles,
            "label": self.label,
            "version": self.version,
            "state": null,
            "propertySources": sources,
        })
    }

    /// The merged flat map: sources applied lowest first, so `property_sources[0]` wins.
    pub fn merged(&self) -> Vec<(String, Value)> {
        let mut out: Vec<(String, Value)> = Vec::new();
        for ps in self.property_sources.iter().rev() {
            for (k, v) in &ps.source {
                match out.iter_mut().find(|(ok, _)| ok == k) {
                    Some(slot) => slot.1 = v.clone(),
                    None => out.push((k.clone(), v.clone())),
                }
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
    fn precedence_follows_spring_boot() {
        let dir = tempfile::tempdir().unwrap();
        let w = |n: &str, t: &str| std::fs::write(dir.path().join(n), t).unwrap();
        w(
            "application.yml",
            "a: app\nb: app\nc: app\nd: app\ne: app\n",
        );
        w(
            "orders.yml",
            "a: orders\nb: orders\nc: orders\nd: orders\n---\nspring:\n  config:\n    activate:\n      on-profile: eu\nd: orders-doc-eu\n",
        );
        w(
            "application-prod.yml",
            "a: application-prod\nb: application-prod\n",
        );
        w("orders-prod.properties", "a=orders-prod\n");
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
                "orders.yml (document #1)",
                "orders-prod.properties",
                "application-prod.yml",
                "orders.yml (document #0)",
                "application.yml"
            ]
        );
        let merged: std::collections::BTreeMap<_, _> = env.merged().into_iter().collect();
        assert_eq!(merged["a"], "orders-prod");
        assert_eq!(merged["b"], "application-prod");
        assert_eq!(merged["c"], "orders");
        assert_eq!(merged["d"], "orders-doc-eu");
        assert_eq!(merged["e"], "app");
        assert!(!merged.contains_key("spring.config.activate.on-profile"));
    }
}
