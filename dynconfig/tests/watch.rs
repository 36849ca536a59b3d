//! File watching: files that appear, vanish or break, and the process environment.

use std::time::Duration;

use palisade_dynconfig::{Config, ConfigEvent, UpdateOutcome};

const WAIT: Duration = Duration::from_secs(10);

async fn next_event(rx: &mut tokio::sync::broadcast::Receiver<ConfigEvent>) -> ConfigEvent {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an update within 10 s")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_files_can_appear_and_required_files_cannot_vanish() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.toml");
    let local = dir.path().join("local.json");
    std::fs::write(&base, "[pool]\nsize = 4\n").unwrap();
    let config = Config::builder()
        .file(&base)
        .optional_file(&local)
        .build()
        .unwrap();
    let size = config.property::<u32>("pool.size", 0).unwrap();
    assert_eq!(size.get(), 4);
    let _watcher = config.watch_files(Duration::from_millis(30)).unwrap();
    let mut events = config.events();

    // The optional file appears later and wins over the earlier file.
    let tmp = dir.path().join("local.tmp");
    std::fs::write(&tmp, r#"{"pool": {"size": 8}}"#).unwrap();
    std::fs::rename(&tmp, &local).unwrap();
    let ev = next_event(&mut events).await;
    assert_eq!(ev.source, local.display().to_string());
    assert!(
        matches!(ev.outcome, UpdateOutcome::Applied { .. }),
        "{ev:?}"
    );
    assert_eq!(size.get(), 8);

    // The required file vanishes: rejected, the last good configuration stays.
    std::fs::remove_file(&base).unwrap();
    let ev = next_event(&mut events).await;
    let UpdateOutcome::Rejected(err) = ev.outcome else {
        panic!("{ev:?}")
    };
    assert!(err.is_io(), "{err}");
    assert_eq!(err.source_name(), Some(base.display().to_string().as_str()));
    assert_eq!(
        config.snapshot().get("pool.size"),
        Some(&serde_json::json!(8))
    );

    // The optional file goes: it counts as empty again; the base's last good value shows.
    std::fs::remove_file(&local).unwrap();
    let ev = next_event(&mut events).await;
    assert!(
        matches!(ev.outcome, UpdateOutcome::Applied { .. }),
        "{ev:?}"
    );
    assert_eq!(size.get(), 4);
}

#[test]
fn the_process_environment_is_read_with_its_prefix() {
    // Cargo sets CARGO_PKG_* for the test process: `CARGO_PKG_NAME` is `name` under `CARGO_PKG`.
    let config = Config::builder().env("CARGO_PKG").build().unwrap();
    let name = config.property::<String>("name", String::new()).unwrap();
    assert_eq!(name.get(), env!("CARGO_PKG_NAME"));
    assert_eq!(config.reload_env().unwrap(), UpdateOutcome::Unchanged);
}
