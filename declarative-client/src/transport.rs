//! The default transport: the hyper-util client, pooled, HTTP/1.1 and HTTP/2.

use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::Body;

/// The default transport.
pub type HttpTransport = Client<HttpConnector, Body>;

/// Options of the default transport.
#[derive(Debug, Clone)]
#[must_use]
pub struct TransportConfig {
    http2_only: bool,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
    connect_timeout: Option<Duration>,
    nodelay: bool,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            http2_only: false,
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: usize::MAX,
            connect_timeout: Some(Duration::from_secs(5)),
            nodelay: true,
        }
    }
}

impl TransportConfig {
    /// HTTP/2 only, with prior knowledge (`h2c`); the default speaks HTTP/1.1.
    pub fn http2_only(mut self, yes: bool) -> Self {
        self.http2_only = yes;
        self
    }

    /// How long an idle pooled connection is kept.
    pub fn pool_idle_timeout(mut self, d: Duration) -> Self {
        self.pool_idle_timeout = d;
        self
    }

    /// At most this many idle connections per host.
    pub fn pool_max_idle_per_host(mut self, n: usize) -> Self {
        self.pool_max_idle_per_host = n;
        self
    }

    /// The connect timeout (`None`: none).
    pub fn connect_timeout(mut self, d: Option<Duration>) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Builds the client. Needs a Tokio runtime when it is used.
    pub fn build(&self) -> HttpTransport {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(self.nodelay);
        connector.set_connect_timeout(self.connect_timeout);
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .http2_only(self.http2_only)
            .build(connector)
    }
}
