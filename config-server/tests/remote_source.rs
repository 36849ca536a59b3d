//! The dynconfig remote source against our config server over a real git repository: polling
//! for a new commit, the webhook trigger, validation of fetched values, last known good on disk.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::*;
use palisade_dynconfig::remote::{RemoteOptions, Startup};
use palisade_dynconfig::{Config, UpdateOutcome};
use serde::Deserialize;

const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize, PartialEq)]
struct Server {
    port: u16,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remote_layer_follows_new_commits_by_polling() {
    let repo = repo();
    let (server, clone) = git_server(&repo);
    let s = start(server.prefix("config"), clone).await;
    let config = Config::builder()
        .default_value("server.port", 1)
        .default_value("local", "kept")
        .env_vars("APP", [("APP_REGION", "from-env")])
        .build()
        .unwrap();
    let opts = RemoteOptions::new(format!("http://{}/config", s.addr), "orders")
        .profiles(["prod", "eu"])
        .label("main")
        .poll_interval(Duration::from_millis(50));
    let (_remote, startup) = config.attach_remote(opts).await.unwrap();
    assert_eq!(
        startup,
        Startup::Fetched {
            version: Some(repo.main_sha.clone())
        }
    );

    let port = config.property::<u16>("server.port", 0).unwrap();
    assert_eq!(port.get(), 9090, "remote beats defaults");
    let snap = config.snapshot();
    assert_eq!(snap.get("local"), Some(&serde_json::json!("kept")));
    assert_eq!(
        snap.get("region"),
        Some(&serde_json::json!("eu")),
        "remote beats env"
    );
    assert_eq!(
        snap.get("list"),
        Some(&serde_json::json!(["c"])),
        "the most specific list wins whole"
    );
    assert_eq!(
        snap.get("secret"),
        None,
        "no key on this server: the {{cipher}} value is withheld"
    );
    assert_eq!(
        snap.get("db.url"),
        Some(&serde_json::json!("jdbc://db-prod/orders"))
    );

    let mut rx = port.watch();
    repo.write("orders-prod.yml", "server:\n  port: 9191\n");
    repo.commit("new port");
    tokio::time::timeout(WAIT, rx.changed())
        .await
        .expect("the poll sees the commit")
        .unwrap();
    assert_eq!(port.get(), 9191);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_refreshes_and_bad_values_are_rejected_with_their_key() {
    let repo = repo();
    let (server, clone) = git_server(&repo);
    let s = start(server.basic_auth(USER, PASSWORD), clone).await;
    let config = Config::builder().build().unwrap();
    let opts = RemoteOptions::new(format!("http://{}", s.addr), "orders")
        .profiles(["prod"])
        .basic_auth(USER, PASSWORD)
        .poll_interval(Duration::from_secs(3600));
    let (mut remote, _) = config.attach_remote(opts).await.unwrap();
    let seen = Arc::new(AtomicU32::new(0));
    let seen2 = seen.clone();
    let bound = config
        .bind("server", move |s: &Server| {
            seen2.store(u32::from(s.port), Ordering::SeqCst)
        })
        .unwrap();
    assert_eq!(bound.load().port, 9090);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = listener.local_addr().unwrap();
    remote.serve_webhook(listener);

    // Nothing changed yet.
    let r = request(hook, "POST", "/monitor", &[], "{}").await;
    assert_eq!(
        (r.status, r.json()["outcome"].as_str()),
        (200, Some("unchanged"))
    );

    repo.write("orders-prod.yml", "server:\n  port: 9292\n");
    repo.commit("via webhook");
    let r = request(hook, "POST", "/monitor", &[], "{}").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["outcome"], "applied");
    assert_eq!(seen.load(Ordering::SeqCst), 9292);

    // A value the binding cannot decode: rejected, last good kept, the error names the key.
    let mut events = config.events();
    repo.write("orders-prod.yml", "server:\n  port: not-a-port\n");
    repo.commit("bad");
    let err = remote.refresh().await.unwrap_err();
    assert_eq!(err.key(), Some("server.port"));
    assert!(
        err.source_name().unwrap().ends_with("/orders/prod"),
        "{err}"
    );
    let ev = tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(ev.outcome, UpdateOutcome::Rejected(_)));
    assert_eq!(bound.load().port, 9292);
    assert_eq!(
        get(hook, "/monitor").await.status,
        404,
        "only POST triggers"
    );

    // `trigger()` wakes the poller without waiting for it (the poll interval is an hour here).
    let port = config.property::<u16>("server.port", 0).unwrap();
    let mut rx = port.watch();
    repo.write("orders-prod.yml", "server:\n  port: 9393\n");
    repo.commit("via trigger");
    remote.trigger();
    tokio::time::timeout(WAIT, rx.changed())
        .await
        .expect("the trigger fetches")
        .unwrap();
    assert_eq!(port.get(), 9393);
    assert_eq!(seen.load(Ordering::SeqCst), 9393);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_an_outage_starts_from_the_last_known_good() {
    let repo = repo();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = cache_dir.path().join("remote.json");
    let (server, clone) = git_server(&repo);
    let s = start(server, clone).await;
    let url = format!("http://{}", s.addr);
    let opts = RemoteOptions::new(&url, "orders")
        .profiles(["prod"])
        .cache_file(&cache)
        .timeout(Duration::from_secs(2));
    {
        let config = Config::builder().build().unwrap();
        let (_remote, startup) = config.attach_remote(opts.clone()).await.unwrap();
        assert!(matches!(startup, Startup::Fetched { .. }));
        assert!(cache.exists(), "persisted after the fetch");
    }
    drop(s); // the config server goes away

    let config = Config::builder().build().unwrap();
    let (_remote, startup) = config.attach_remote(opts.clone()).await.unwrap();
    let Startup::FromCache { error, version } = startup else {
        panic!("expected the cache")
    };
    assert!(error.is_remote(), "{error}");
    assert_eq!(version.as_deref(), Some(repo.main_sha.as_str()));
    assert_eq!(
        config.property::<u16>("server.port", 0).unwrap().get(),
        9090
    );

    // Back up, but serving a value the application's properties reject: the cache wins again.
    repo.write("orders-prod.yml", "server:\n  port: not-a-port\n");
    repo.commit("bad port");
    let (server, clone) = git_server(&repo);
    let s2 = start(server, clone).await;
    let opts2 = RemoteOptions::new(format!("http://{}", s2.addr), "orders")
        .profiles(["prod"])
        .cache_file(&cache);
    let config = Config::builder().build().unwrap();
    let port = config.property::<u16>("server.port", 0).unwrap();
    let (_remote, startup) = config.attach_remote(opts2).await.unwrap();
    let Startup::FromCache { error, .. } = startup else {
        panic!("expected the cache")
    };
    assert_eq!(error.key(), Some("server.port"), "{error}");
    assert_eq!(port.get(), 9090);
    drop(s2);

    // Without a cache, an unreachable server is an error.
    let fresh = Config::builder().build().unwrap();
    let err = fresh
        .attach_remote(RemoteOptions::new(&url, "orders").timeout(Duration::from_secs(2)))
        .await
        .unwrap_err();
    assert!(err.is_remote(), "{err}");
}
