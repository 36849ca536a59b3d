//! Server configuration, with the defaults of Java's `DefaultEurekaServerConfig`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::replication::PeerConfig;

/// How long after its last renewal a lease expires.
///
/// Java's `Lease.renew()` sets `lastUpdateTimestamp = now + duration` and `isExpired()` then adds
/// `duration` again, so a Java server expires a lease about **twice** the advertised
/// `durationInSecs` after the last heartbeat (a documented bug Netflix kept for compatibility).
/// Palisade defaults to the documented contract; [`LeaseExpiry::JavaDoubleDuration`] reproduces the
/// Java behaviour for estates that tuned their clients around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseExpiry {
    /// Expire `durationInSecs` after the last renewal (the documented contract).
    #[default]
    Duration,
    /// Expire `2 × durationInSecs` after the last renewal, like the Java server.
    JavaDoubleDuration,
}

/// Registry server settings. Build with `Default` and adjust the fields, then call
/// [`ServerConfig::validate`] (the server does it on start).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Self-preservation: stop evicting when renewals fall under the threshold (default true).
    pub enable_self_preservation: bool,
    /// Fraction of expected renewals under which self-preservation starts (default 0.85).
    pub renewal_percent_threshold: f64,
    /// The renewal interval clients are expected to use (default 30 s).
    #[serde(with = "humantime_serde")]
    pub expected_client_renewal_interval: Duration,
    /// How often the expected number of clients is recomputed (default 15 min).
    #[serde(with = "humantime_serde")]
    pub renewal_threshold_update_interval: Duration,
    /// Expected clients when the server opens for traffic with no peer (Spring's
    /// `defaultOpenForTrafficCount`, default 1).
    pub expected_clients_at_start: u64,
    /// How often expired leases are evicted (default 60 s).
    #[serde(with = "humantime_serde")]
    pub eviction_interval: Duration,
    /// How lease expiry is computed.
    pub lease_expiry: LeaseExpiry,
    /// Serve full/delta/application bodies from a cache refreshed at most every
    /// `response_cache_update_interval` (default true). When false, every write invalidates
    /// the cache at once.
    pub use_read_only_response_cache: bool,
    /// Age after which a cached body is rebuilt in read-only mode (default 30 s).
    #[serde(with = "humantime_serde")]
    pub response_cache_update_interval: Duration,
    /// How long changes stay in the delta queue (default 180 s).
    #[serde(with = "humantime_serde")]
    pub delta_retention: Duration,
    /// Serve 403 on `GET apps/delta` (default false).
    pub disable_delta: bool,
    /// How long an operator status override is kept after its last use (default 1 h).
    #[serde(with = "humantime_serde")]
    pub status_override_ttl: Duration,
    /// Request bodies larger than this are rejected with 400 (default 1 MiB).
    pub max_body_bytes: usize,
    /// Seed of the RNG that picks which expired leases to evict first.
    pub rng_seed: u64,
    /// The other servers of the cluster and how writes reach them. Credentials for peers that
    /// require basic auth go in their URLs (`http://user:pass@host:8761/eureka/`).
    pub peers: PeerConfig,
    /// Require HTTP basic auth on every resource (answer 401 otherwise), like a Spring Eureka
    /// server behind Spring Security. `None` (the default): open.
    pub basic_auth: Option<BasicAuth>,
}

/// Credentials every request must carry.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BasicAuth {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            enable_self_preservation: true,
            renewal_percent_threshold: 0.85,
            expected_client_renewal_interval: Duration::from_secs(30),
            renewal_threshold_update_interval: Duration::from_secs(15 * 60),
            expected_clients_at_start: 1,
            eviction_interval: Duration::from_secs(60),
            lease_expiry: LeaseExpiry::Duration,
            use_read_only_response_cache: true,
            response_cache_update_interval: Duration::from_secs(30),
            delta_retention: Duration::from_secs(180),
            disable_delta: false,
            status_override_ttl: Duration::from_secs(3600),
            max_body_bytes: 1024 * 1024,
            rng_seed: 0x5eed,
            peers: PeerConfig::default(),
            basic_auth: None,
        }
    }
}

/// A configuration value out of range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid registry server config: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

impl ServerConfig {
    /// Checks every value; the server refuses to start on an error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.renewal_percent_threshold > 0.0 && self.renewal_percent_threshold <= 1.0) {
            return Err(ConfigError(
                "renewal_percent_threshold must be in (0, 1]".into(),
            ));
        }
        for (name, d) in [
            (
                "expected_client_renewal_interval",
                self.expected_client_renewal_interval,
            ),
            (
                "renewal_threshold_update_interval",
                self.renewal_threshold_update_interval,
            ),
            ("eviction_interval", self.eviction_interval),
            (
                "response_cache_update_interval",
                self.response_cache_update_interval,
            ),
            ("delta_retention", self.delta_retention),
        ] {
            if d.is_zero() {
                return Err(ConfigError(format!("{name} must be positive")));
            }
        }
        if self.peers.batch_size == 0 || self.peers.request_timeout.is_zero() {
            return Err(ConfigError(
                "peers.batch_size and peers.request_timeout must be positive".into(),
            ));
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError("max_body_bytes must be positive".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserialises_with_humantime_durations_and_defaults() {
        let c: ServerConfig = serde_json::from_str(
            r#"{"eviction_interval":"30s","lease_expiry":"java_double_duration",
                "peers":{"peer_urls":["http://a:8761/eureka/"],"max_batch_delay":"250ms"}}"#,
        )
        .unwrap();
        assert_eq!(c.eviction_interval, Duration::from_secs(30));
        assert_eq!(c.lease_expiry, LeaseExpiry::JavaDoubleDuration);
        assert_eq!(c.peers.max_batch_delay, Duration::from_millis(250));
        assert_eq!(c.peers.batch_size, 250, "defaults fill the rest");
        assert_eq!(c.delta_retention, Duration::from_secs(180));
        c.validate().unwrap();
    }

    #[test]
    fn rejects_out_of_range_values() {
        assert!(ServerConfig::default().validate().is_ok());
        let bad = ServerConfig {
            renewal_percent_threshold: 1.5,
            ..Default::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("renewal_percent_threshold")
        );
        let bad = ServerConfig {
            eviction_interval: Duration::ZERO,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }
}
