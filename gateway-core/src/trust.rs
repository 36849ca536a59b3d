//! Trusted proxies: which peers may tell the gateway who the client is.
//!
//! A request's `X-Forwarded-For`/`-Proto`/`-Host` and `Forwarded` are kept (and appended to)
//! only when the TCP peer is in `trusted_proxies`; from anyone else they are the client's own
//! claims and are dropped before the gateway writes its own. The client address used for rate
//! limits is the right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
//!
//! ```
//! use palisade_gateway::trust::{Cidr, TrustedProxies};
//! let t = TrustedProxies::new(vec!["10.0.0.0/8".parse::<Cidr>().unwrap()], false);
//! assert!(t.trusts("10.1.2.3".parse().unwrap()));
//! assert!(!t.trusts("192.0.2.1".parse().unwrap()));
//! assert!("10.0.0.0/33".parse::<Cidr>().is_err());
//! ```

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use http::HeaderMap;
use serde::Deserialize;
use serde::de::{Deserializer, Error as _};

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or one address (`192.0.2.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR block"))?;
        let net = net.to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("bad prefix length in `{s}` (0 to {max})"))?,
        };
        Ok(Cidr { net, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

/// The set of trusted proxy peers.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    blocks: Vec<Cidr>,
    all: bool,
}

impl TrustedProxies {
    /// `blocks`, or every peer when `all` (the `trust_forwarded: true` shorthand).
    pub fn new(blocks: Vec<Cidr>, all: bool) -> Self {
        TrustedProxies { blocks, all }
    }

    /// Whether forwarded headers from `peer` are believed.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.all || self.blocks.iter().any(|b| b.contains(peer))
    }

    /// The client's address: `peer` if it is not trusted; otherwise the right-most
    /// `X-Forwarded-For` entry that is not a trusted proxy (the left-most one when all are
    /// trusted; `peer` when the header is missing or unparsable).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut last = peer;
        let entries = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .filter_map(|v| v.to_str().ok());
        for line in entries {
            for item in line.rsplit(',') {
                let Some(ip) = parse_node(item.trim()) else {
                    return last;
                };
                if !self.trusts(ip) {
                    return ip;
                }
                last = ip;
            }
        }
        last
    }
}

/// An `X-Forwarded-For` node: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:80`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    s.rsplit_once(':')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks() {
        assert!(c("10.0.0.0/8").contains("10.255.0.1".parse().unwrap()));
        assert!(!c("10.0.0.0/8").contains("11.0.0.1".parse().unwrap()));
        assert!(c("0.0.0.0/0").contains("203.0.113.9".parse().unwrap()));
        assert!(c("127.0.0.1").contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!c("127.0.0.1").contains("127.0.0.2".parse().unwrap()));
        assert!(c("2001:db8::/32").contains("2001:db8:1::5".parse().unwrap()));
        assert!(!c("2001:db8::/32").contains("10.0.0.1".parse().unwrap()));
        assert!(c("::/0").contains("::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "::/129", "nope", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn client_ip_walks_from_the_right() {
        let t = TrustedProxies::new(vec![c("10.0.0.0/8")], false);
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.1.1.1, 203.0.113.5, 10.0.0.2"),
        );
        let peer = "10.0.0.1".parse().unwrap();
        // 1.1.1.1 may be spoofed by 203.0.113.5; the first untrusted hop from the right wins.
        assert_eq!(
            t.client_ip(peer, &h),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        let stranger = "198.51.100.1".parse().unwrap();
        assert_eq!(t.client_ip(stranger, &h), stranger);
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("[2001:db8::1]:443"),
        );
        assert_eq!(
            t.client_ip(peer, &h),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("garbage, 10.0.0.3"),
        );
        assert_eq!(t.client_ip(peer, &h), "10.0.0.3".parse::<IpAddr>().unwrap());
    }
}
