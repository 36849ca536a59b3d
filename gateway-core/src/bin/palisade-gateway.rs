//! `palisade-gateway ROUTES.yaml [--workers N]`: serves the routes file, reloads it when it changes (or on
//! SIGHUP), serves the admin API if configured, and drains in-flight requests on SIGTERM/Ctrl-C.

use std::process::ExitCode;
use std::time::Duration;

use palisade_gateway::config::GatewayConfig;
use palisade_gateway::{Gateway, admin, reload};
use tokio::signal::unix::{SignalKind, signal};

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
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        rt.worker_threads(n);
    }
    let rt = rt.enable_all().build().expect("tokio runtime");
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
        // gwsec: TLS listener; a bad certificate or key stops the start with the file and reason.
        let tls = match cfg.tls.as_ref().map(palisade_gateway::tls::ServerTls::new) {
            None => None,
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                eprintln!("error: tls: {e}");
                return ExitCode::from(1);
            }
        };
        let listener = match tokio::net::TcpListener::bind(cfg.listen).await {
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
        let _watcher =
            match reload::watch_routes_file(gateway.clone(), &file, Duration::from_millis(100)) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the routes file; reload with SIGHUP");
                    None
                }
            };
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
                let _ = hup_gateway.reload_file(&hup_file);
                // gwsec: SIGHUP also re-reads the certificate; a bad one is logged and the
                // one in use stays.
                if let Some(t) = &hup_tls
                    && let Err(e) = t.reload()
                {
                    tracing::warn!(error = %e, "TLS certificate refused; previous one kept");
                }
            }
        });
        tracing::info!(listen = %cfg.listen, routes = cfg.routes.len(), "gateway started");
        let shutdown = async move {
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
            let _ = stop_tx.send(true);
        };
        let served = match tls {
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
        match served {
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
