//! `palisade-gateway ROUTES.yaml [--workers N]`: serves the routes file, reloads it when it changes (or on
//! SIGHUP), serves the admin API if configured, and drains in-flight requests on SIGTERM/Ctrl-C.
//!
//! Thread per core: `N` worker threads (default: the CPUs available), each a single-threaded
//! Tokio runtime with its own `SO_REUSEPORT` listener and its own upstream pool, so a request
//! never crosses threads. The main thread is worker 0 and also runs the admin listener, the
//! routes-file watcher and the signal handlers.
//!
//! gw2: with a `dynconfig: { files, key }` section the routes are the routes document held by
//! that dynconfig key, watched in those files (SIGHUP re-reads them); a bad document at start
//! stops the start, a bad one later is refused with its line and the routes in use stay.

use std::process::ExitCode;
use std::time::Duration;

use palisade_gateway::config::GatewayConfig;
use palisade_gateway::{Gateway, admin, reload};
use tokio::signal::unix::{SignalKind, signal};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args_os().skip(1);
    let Some(file) = args.next() else {
        eprintln!("usage: palisade-gateway ROUTES.yaml [--workers N]");
        return ExitCode::from(2);
    };
    let mut workers = None;
    while let Some(a) = args.next() {
        match (
            a.to_str(),
            args.next()
                .and_then(|v| v.to_str().and_then(|v| v.parse::<usize>().ok())),
        ) {
            (Some("--workers"), Some(n)) if n > 0 => workers = Some(n),
            _ => {
                eprintln!("usage: palisade-gateway ROUTES.yaml [--workers N]");
                return ExitCode::from(2);
            }
        }
    }
    let cfg = match GatewayConfig::from_file(&file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let workers = workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let rt = current_thread_runtime();
    rt.block_on(async move {
        let mut builder = Gateway::builder(cfg.clone()).file(&file);
        if let Some(url) = &cfg.redis {
            match palisade_gateway::ratelimit::RedisLimiter::connect(url).await {
                Ok(l) => builder = builder.redis(l),
                Err(e) => {
                    eprintln!("error: cannot connect to Redis at {url}: {e}");
                    return ExitCode::from(1);
                }
            }
        }
        // wip/gwlb: lb:// upstreams through the registry.
        if let Some(reg) = &cfg.registry {
            match palisade_gateway::lb::RegistryResolver::new(reg) {
                Ok(r) => builder = builder.resolver(std::sync::Arc::new(r)),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(1);
                }
            }
        }
        let gateway = match builder.build() {
            Ok(g) => g,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        };
        // gw2: routes from dynconfig; the file's own watcher is not started.
        let dynconfig = match &cfg.dynconfig {
            None => None,
            Some(d) => match follow_dynconfig(&gateway, d) {
                Ok(x) => Some(x),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(1);
                }
            },
        };
        // gwsec: TLS listener; a bad certificate or key stops the start with the file and reason.
        let tls = match cfg.tls.as_ref().map(palisade_gateway::tls::ServerTls::new) {
            None => None,
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                eprintln!("error: tls: {e}");
                return ExitCode::from(1);
            }
        };
        let mut listeners = Vec::with_capacity(workers);
        let mut addr = cfg.listen;
        for _ in 0..workers {
            match palisade_gateway::reuseport_listener(addr) {
                Ok(l) => {
                    // Port 0: the further workers join the port the first one got.
                    if let Ok(a) = l.local_addr() {
                        addr = a;
                    }
                    listeners.push(l);
                }
                Err(e) => {
                    eprintln!("error: cannot listen on {}: {e}", cfg.listen);
                    return ExitCode::from(1);
                }
            }
        }
        let listener = match tokio::net::TcpListener::from_std(listeners.remove(0)) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", cfg.listen);
                return ExitCode::from(1);
            }
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        if let Some(a) = &cfg.admin {
            let l = match tokio::net::TcpListener::bind(a.listen).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: cannot listen on {} (admin): {e}", a.listen);
                    return ExitCode::from(1);
                }
            };
            let mut rx = stop_rx.clone();
            tokio::spawn(admin::serve_admin(
                l,
                admin::Admin::new(gateway.clone(), a.token.clone()),
                async move {
                    let _ = rx.wait_for(|s| *s).await;
                },
            ));
        }
        let threads: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                let gateway = gateway.clone();
                let limits = cfg.limits;
                let drain = cfg.drain_timeout;
                let mut rx = stop_rx.clone();
                let tls = tls.clone();
                std::thread::Builder::new()
                    .name(format!("palisade-worker-{}", i + 1))
                    .spawn(move || {
                        current_thread_runtime().block_on(async move {
                            let listener = tokio::net::TcpListener::from_std(l)?;
                            let shutdown = async move {
                                let _ = rx.wait_for(|s| *s).await;
                            };
                            match tls {
                                Some(t) => {
                                    palisade_gateway::serve_tls(
                                        listener, gateway, limits, t, shutdown, drain,
                                    )
                                    .await
                                }
                                None => {
                                    palisade_gateway::serve(
                                        listener, gateway, limits, shutdown, drain,
                                    )
                                    .await
                                }
                            }
                        })
                    })
                    .expect("spawn a worker thread")
            })
            .collect();
        let _watcher = match &dynconfig {
            Some(_) => None,
            None => match reload::watch_routes_file(
                gateway.clone(),
                &file,
                Duration::from_millis(100),
            ) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the routes file; reload with SIGHUP");
                    None
                }
            },
        };
        let hup_dynconfig = dynconfig.as_ref().map(|d| d.config.clone());
        // gwsec: a rotated certificate is picked up without a signal too.
        let _cert_watcher = match tls
            .as_ref()
            .map(|t| t.watch_files(Duration::from_millis(200)))
        {
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cannot watch the TLS files; reload them with SIGHUP");
                None
            }
            Some(Ok(w)) => Some(w),
            None => None,
        };
        let hup_gateway = gateway.clone();
        let hup_file = file.clone();
        let hup_tls = tls.clone();
        tokio::spawn(async move {
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                match &hup_dynconfig {
                    // gw2: re-read the dynconfig files (the routes follow their key).
                    Some(c) => {
                        if let Err(e) = c.reload_files() {
                            tracing::warn!(error = %e, "dynconfig files refused; routes kept");
                        }
                    }
                    None => {
                        let _ = hup_gateway.reload_file(&hup_file);
                    }
                }
                // gwsec: SIGHUP also re-reads the certificate; a bad one is logged and the
                // one in use stays.
                if let Some(t) = &hup_tls
                    && let Err(e) = t.reload()
                {
                    tracing::warn!(error = %e, "TLS certificate refused; previous one kept");
                }
            }
        });
        tracing::info!(
            listen = %addr,
            routes = gateway.router().routes().len(),
            "gateway started"
        );
        let shutdown = async move {
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
            let _ = stop_tx.send(true);
        };
        let mut result = match tls {
            Some(t) => {
                palisade_gateway::serve_tls(
                    listener,
                    gateway,
                    cfg.limits,
                    t,
                    shutdown,
                    cfg.drain_timeout,
                )
                .await
            }
            None => {
                palisade_gateway::serve(listener, gateway, cfg.limits, shutdown, cfg.drain_timeout)
                    .await
            }
        };
        for t in threads {
            let r = t
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("a worker thread panicked")));
            result = match (result, r) {
                (Ok(a), Ok(b)) => Ok(a + b),
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
        }
        match result {
            Ok(0) => ExitCode::SUCCESS,
            Ok(n) => {
                tracing::warn!(open = n, "drain timeout passed with connections open");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        }
    })
}

/// gw2: the dynconfig layers, their watcher and the subscription of the routes.
struct Dynconfig {
    config: palisade_dynconfig::Config,
    _watcher: palisade_dynconfig::FileWatcher,
    _routes: palisade_gateway::source::DynconfigRoutes,
}

/// Builds the dynconfig configuration from the files, loads the routes from the key (a bad
/// document, or no document, stops the start) and keeps following it.
fn follow_dynconfig(
    gateway: &Gateway,
    d: &palisade_gateway::config::DynconfigSourceConfig,
) -> Result<Dynconfig, String> {
    let mut b = palisade_dynconfig::Config::builder();
    for f in &d.files {
        b = b.file(f);
    }
    let config = b.build().map_err(|e| format!("dynconfig: {e}"))?;
    let watcher = config
        .watch_files(d.debounce)
        .map_err(|e| format!("dynconfig: {e}"))?;
    let before = gateway.router().version();
    let routes = palisade_gateway::source::follow_dynconfig(gateway, &config, &d.key)
        .map_err(|e| format!("dynconfig: {e}"))?;
    if gateway.router().version() == before {
        let status = gateway.reload_status().borrow().clone();
        return Err(match status.last_error {
            Some(e) => e,
            None => format!("dynconfig:{}: no routes document under this key", d.key),
        });
    }
    Ok(Dynconfig {
        config,
        _watcher: watcher,
        _routes: routes,
    })
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}
