//! Layering, formats, typed reads, derived properties and placeholders.

use std::time::Duration;

use palisade_dynconfig::{Config, SourceKind, UpdateOutcome};
use serde_json::json;

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn layers_apply_in_priority_order() {
    let dir = tempfile::tempdir().unwrap();
    let toml = write(
        dir.path(),
        "base.toml",
        "[server]\nport = 1\nhost = \"toml\"\ntimeout = \"1s\"\n",
    );
    let yaml = write(dir.path(), "app.yaml", "server:\n  port: 2\n  name: yaml\n");
    let json = write(
        dir.path(),
        "extra.json",
        r#"{"server": {"name": "json", "zone": "z1"}}"#,
    );
    let props = write(dir.path(), "last.properties", "server.zone=z2\nlist=a,b\n");
    let config = Config::builder()
        .defaults(json!({"server": {"port": 0, "host": "default", "debug": false}}))
        .file(&toml)
        .file(&yaml)
        .file(&json)
        .file(&props)
        .env_vars(
            "APP",
            [("APP_SERVER__PORT", "3"), ("OTHER_SERVER__PORT", "99")],
        )
        .build()
        .unwrap();
    let snap = config.snapshot();
    assert_eq!(snap.version(), 0);
    assert_eq!(snap.get("server.host"), Some(&json!("toml")));
    assert_eq!(snap.get("server.name"), Some(&json!("json")));
    assert_eq!(snap.get("server.zone"), Some(&json!("z2")));
    assert_eq!(snap.get("server.debug"), Some(&json!(false)));
    let port = config.property::<u16>("server.port", 80).unwrap();
    assert_eq!(port.get(), 3, "env beats files");
    let list = config.property::<Vec<String>>("list", vec![]).unwrap();
    assert_eq!(list.get(), ["a", "b"]);

    assert_eq!(
        config.set_override("server.port", 4).unwrap(),
        UpdateOutcome::Applied { version: 1 }
    );
    assert_eq!(port.get(), 4, "overrides beat env");
    assert_eq!(
        config.clear_override("server.port").unwrap(),
        UpdateOutcome::Applied { version: 2 }
    );
    assert_eq!(port.get(), 3);
    assert_eq!(
        config.clear_override("server.port").unwrap(),
        UpdateOutcome::Unchanged
    );

    // A remote layer sits between env and overrides.
    config
        .apply_source(
            SourceKind::Remote,
            "http://cfg",
            json!({"server": {"port": 5, "host": "remote"}}),
        )
        .unwrap();
    assert_eq!(port.get(), 5);
    assert_eq!(config.snapshot().get("server.host"), Some(&json!("remote")));
}

#[test]
fn typed_reads_defaults_fallbacks_and_derived() {
    let config = Config::builder()
        .defaults(json!({"old": {"timeout_ms": "250"}, "flag": "true", "ratio": 0.25}))
        .build()
        .unwrap();
    let missing = config.property::<u32>("nope", 7).unwrap();
    assert_eq!(missing.get(), 7);
    let flag = config.property::<bool>("flag", false).unwrap();
    assert!(flag.get());
    let timeout = config
        .key::<u64>("new.timeout_ms")
        .or_key("old.timeout_ms")
        .default_value(1000)
        .build()
        .unwrap();
    assert_eq!(timeout.get(), 250, "falls back to the old key");
    let as_duration = timeout.map(|ms| Duration::from_millis(*ms)).unwrap();
    assert_eq!(as_duration.get(), Duration::from_millis(250));

    config.set_override("new.timeout_ms", 400).unwrap();
    assert_eq!(timeout.get(), 400, "the first key wins once present");
    assert_eq!(
        as_duration.get(),
        Duration::from_millis(400),
        "derived follows"
    );

    let required = config.key::<u32>("absent").build().unwrap_err();
    assert_eq!(required.key(), Some("absent"));
    let bad = config.property::<u32>("flag", 0).unwrap_err();
    assert!(bad.is_invalid());
    assert_eq!(bad.key(), Some("flag"));
    assert_eq!(bad.source_name(), Some("defaults"));
}

#[test]
fn placeholders_resolve_across_layers_and_follow_changes() {
    let config = Config::builder()
        .defaults(json!({"db": {"url": "pg://${db.host}:${db.port:5432}/orders"}}))
        .env_vars("APP", [("APP_DB__HOST", "db1")])
        .build()
        .unwrap();
    let url = config.property::<String>("db.url", String::new()).unwrap();
    assert_eq!(url.get(), "pg://db1:5432/orders");
    config.set_override("db.port", 6432).unwrap();
    assert_eq!(url.get(), "pg://db1:6432/orders");
    let err = config.set_override("db.url", "${nowhere}").unwrap_err();
    assert!(err.is_placeholder());
    assert_eq!(err.key(), Some("db.url"));
    assert_eq!(url.get(), "pg://db1:6432/orders", "last good kept");
}

#[test]
fn unresolvable_placeholder_at_build_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "app.yaml", "a: 1\nb:\n  c: ${missing}\n");
    let err = Config::builder().file(&f).build().unwrap_err();
    assert!(err.is_placeholder());
    assert_eq!(err.key(), Some("b.c"));
    assert_eq!(err.line(), Some(3));
    assert_eq!(err.source_name(), Some(f.display().to_string().as_str()));
}

#[test]
fn broken_or_unknown_files_fail_the_build_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "app.toml", "a = 1\nb = [1,\n");
    let err = Config::builder().file(&f).build().unwrap_err();
    assert!(err.is_syntax(), "{err}");
    assert!(err.line().is_some(), "{err}");
    let err = Config::builder()
        .file(dir.path().join("x.ini"))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("extension"), "{err}");
    let err = Config::builder()
        .file(dir.path().join("none.yaml"))
        .build()
        .unwrap_err();
    assert!(err.is_io(), "{err}");
    let ok = Config::builder()
        .optional_file(dir.path().join("none.yaml"))
        .build();
    assert!(ok.is_ok());
}

#[tokio::test]
async fn watch_and_subscribe_see_only_real_changes() {
    let config = Config::builder()
        .defaults(json!({"a": 1, "b": 1}))
        .build()
        .unwrap();
    let a = config.property::<u32>("a", 0).unwrap();
    let mut rx = a.watch();
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let c2 = calls.clone();
    a.subscribe(move |v| c2.lock().unwrap().push(*v));
    config.set_override("b", 2).unwrap();
    assert!(!rx.has_changed().unwrap(), "a did not change");
    config.set_override("a", 5).unwrap();
    assert!(rx.has_changed().unwrap());
    assert_eq!(**rx.borrow_and_update(), 5);
    assert_eq!(*calls.lock().unwrap(), [5]);
    let mut changes = config.changes();
    config.set_override("a", 6).unwrap();
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(*changes.borrow(), 3);
    assert_eq!(a.load().as_ref(), &6);
}
