//! Active health checks: a task probes each endpoint on an interval and flips a [`HealthFlag`]
//! that the balancer reads before it picks ([`Metadata::health`](crate::Metadata::health)).
//!
//! [`HealthChecker`] runs any check (a closure returning a future of `bool`) with Envoy-style
//! thresholds: `unhealthy_threshold` failed checks in a row mark the endpoint unhealthy,
//! `healthy_threshold` passed checks in a row mark it healthy again. With the `http-health`
//! feature, [`HttpCheck`] is a ready-made HTTP/1.1 `GET` probe (2xx passes).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Whether an endpoint passed its active health checks. Cloneable; starts healthy.
#[derive(Debug, Clone)]
pub struct HealthFlag(Arc<AtomicBool>);

impl Default for HealthFlag {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthFlag {
    /// A healthy flag.
    pub fn new() -> Self {
        HealthFlag(Arc::new(AtomicBool::new(true)))
    }

    /// The current verdict.
    pub fn is_healthy(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Sets the verdict (what a checker does).
    pub fn set(&self, healthy: bool) {
        self.0.store(healthy, Ordering::Release);
    }
}

/// How often and how strictly to check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// Time between checks (default 5 s).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A check that takes longer fails (default 1 s).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Failed checks in a row before the endpoint is marked unhealthy (default 2).
    pub unhealthy_threshold: u32,
    /// Passed checks in a row before it is healthy again (default 2).
    pub healthy_threshold: u32,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            unhealthy_threshold: 2,
            healthy_threshold: 2,
        }
    }
}

/// Runs one endpoint's checks and keeps its [`HealthFlag`] up to date.
#[derive(Debug, Clone)]
pub struct HealthChecker {
    config: HealthCheckConfig,
    flag: HealthFlag,
}

impl HealthChecker {
    /// A checker that writes its verdicts to `flag`.
    pub fn new(config: HealthCheckConfig, flag: HealthFlag) -> Self {
        Self { config, flag }
    }

    /// The flag this checker drives (give it to the endpoint's
    /// [`Metadata::health`](crate::Metadata::health)).
    pub fn flag(&self) -> HealthFlag {
        self.flag.clone()
    }

    /// Checks forever, every `interval`, with `check` (a timeout counts as a failure). Spawn it
    /// and abort the task when the endpoint leaves.
    ///
    /// ```
    /// use palisade_balancer::health::{HealthCheckConfig, HealthChecker, HealthFlag};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let flag = HealthFlag::new();
    /// let checker = HealthChecker::new(HealthCheckConfig::default(), flag.clone());
    /// let task = tokio::spawn(checker.run(|| async { false }));
    /// tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    /// assert!(!flag.is_healthy());
    /// task.abort();
    /// # }
    /// ```
    pub async fn run<F, Fut>(self, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let mut passed_in_row = 0u32;
        let mut failed_in_row = 0u32;
        let mut ticks = tokio::time::interval(self.config.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let ok = tokio::time::timeout(self.config.timeout, check())
                .await
                .unwrap_or(false);
            if ok {
                passed_in_row += 1;
                failed_in_row = 0;
                if !self.flag.is_healthy() && passed_in_row >= self.config.healthy_threshold {
                    tracing::info!("endpoint passed its health checks: healthy");
                    self.flag.set(true);
                }
            } else {
                failed_in_row += 1;
                passed_in_row = 0;
                if self.flag.is_healthy() && failed_in_row >= self.config.unhealthy_threshold {
                    tracing::info!("endpoint failed its health checks: unhealthy");
                    self.flag.set(false);
                }
            }
        }
    }
}

#[cfg(feature = "http-health")]
pub use self::http::HttpCheck;

#[cfg(feature = "http-health")]
mod http {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// An HTTP/1.1 `GET` probe: passes on a 2xx status line. Minimal on purpose (no TLS, no
    /// body check), like Envoy's default HTTP health check.
    #[derive(Debug, Clone)]
    pub struct HttpCheck {
        addr: SocketAddr,
        host: String,
        path: String,
    }

    impl HttpCheck {
        /// Probes `http://{addr}{path}` with `Host: {addr}`.
        pub fn new(addr: SocketAddr, path: impl Into<String>) -> Self {
            Self {
                addr,
                host: addr.to_string(),
                path: path.into(),
            }
        }

        /// Sets the `Host` header.
        #[must_use]
        pub fn host(mut self, host: impl Into<String>) -> Self {
            self.host = host.into();
            self
        }

        /// One check: connect, `GET`, read the status line. Any error fails it.
        pub async fn check(&self) -> bool {
            self.status().await.is_some_and(|s| (200..300).contains(&s))
        }

        /// The status code of one `GET`, if the server answered with a status line.
        pub async fn status(&self) -> Option<u16> {
            let mut stream = TcpStream::connect(self.addr).await.ok()?;
            let req = format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: palisade-health-check\r\nConnection: close\r\n\r\n",
                self.path, self.host
            );
            stream.write_all(req.as_bytes()).await.ok()?;
            let mut buf = [0u8; 64];
            let mut len = 0;
            // "HTTP/1.1 200" is 12 bytes.
            while len < 12 {
                let n = stream.read(&mut buf[len..]).await.ok()?;
                if n == 0 {
                    break;
                }
                len += n;
            }
            let line = std::str::from_utf8(&buf[..len]).ok()?;
            let mut parts = line.split(' ');
            let version = parts.next()?;
            if !version.starts_with("HTTP/1.") {
                return None;
            }
            parts.next()?.get(..3)?.parse().ok()
        }
    }
}
