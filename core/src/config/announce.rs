//! `[announce]`: the frontends' addresses announced to the routers through
//! BIRD while this node is healthy. Read by the control process only; the
//! engine accepts and ignores the table (one file for both processes).
//!
//! Plain data and its validation: no I/O here.

use serde::Deserialize;
use std::net::IpAddr;

/// `[announce]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnnounceConfig {
    /// BIRD's control socket (`bird -s`).
    pub bird_socket: String,
    /// The file ctl writes with the VIP routes; BIRD's configuration
    /// `include`s it.
    pub include_file: String,
    /// Name of the static protocols in that file: `<protocol>4` holds the
    /// IPv4 routes and `<protocol>6` the IPv6 ones. BIRD's BGP export
    /// filters select them by this name.
    pub protocol: String,
    /// The addresses announced, each a /32 or /128. Default: the address of
    /// every frontend that has a routable one (not a wildcard, loopback or
    /// multicast address: BIRD ignores such routes as bogus).
    pub addresses: Vec<String>,
    /// The node is healthy only while each announced frontend's pool has at
    /// least this many usable backends.
    pub min_backends: usize,
    /// How often ctl checks the node's health (and BIRD's state).
    pub interval_ms: u64,
    /// Healthy checks in a row before a node that was unhealthy announces
    /// again. An unhealthy check withdraws at once.
    pub rise: u32,
    /// A drain is complete when no frontend query arrived for this long and
    /// nothing is in flight.
    pub drain_quiet_ms: u64,
}

impl Default for AnnounceConfig {
    fn default() -> Self {
        AnnounceConfig {
            bird_socket: "/run/bird/bird.ctl".into(),
            include_file: "/run/dnsrail/bird-vips.conf".into(),
            protocol: "dnsrail".into(),
            addresses: Vec::new(),
            min_backends: 1,
            interval_ms: 200,
            rise: 3,
            drain_quiet_ms: 2000,
        }
    }
}

/// An address a router can be told about: BIRD drops routes to wildcard,
/// loopback and multicast prefixes as bogus.
fn routable(ip: IpAddr) -> bool {
    !(ip.is_unspecified() || ip.is_loopback() || ip.is_multicast())
}

impl AnnounceConfig {
    /// Checks the table against the frontends' addresses. `Err((key,
    /// message))` for the first problem.
    pub fn validate(&self, frontends: &[IpAddr]) -> Result<(), (String, String)> {
        let bad = |k: &str, m: String| Err((format!("announce.{k}"), m));
        if self.bird_socket.is_empty() {
            return bad("bird_socket", "must not be empty".into());
        }
        if !self.include_file.starts_with('/') {
            return bad(
                "include_file",
                "must be an absolute path (BIRD's include and ctl must agree on it)".into(),
            );
        }
        let p = self.protocol.as_bytes();
        if p.is_empty()
            || p.len() > 30
            || !p[0].is_ascii_alphabetic()
            || !p.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            return bad(
                "protocol",
                "a BIRD symbol: a letter, then letters, digits or _ (at most 30)".into(),
            );
        }
        for a in &self.addresses {
            let Ok(ip) = a.parse::<IpAddr>() else {
                return bad("addresses", format!("{a:?} is not an IP address"));
            };
            if !routable(ip) {
                return bad(
                    "addresses",
                    format!("{ip} cannot be announced (wildcard, loopback or multicast)"),
                );
            }
            if !frontends.contains(&ip) {
                return bad(
                    "addresses",
                    format!("{ip} is not the address of any [[frontend]]"),
                );
            }
        }
        if self.vips(frontends).is_empty() {
            return bad(
                "addresses",
                "nothing to announce: no frontend has a routable address (wildcard, loopback and multicast addresses are not announced)".into(),
            );
        }
        if self.min_backends > 100_000 {
            return bad("min_backends", "must be 0 to 100000".into());
        }
        if !(20..=60_000).contains(&self.interval_ms) {
            return bad("interval_ms", "must be 20 to 60000".into());
        }
        if !(1..=1000).contains(&self.rise) {
            return bad("rise", "must be 1 to 1000".into());
        }
        if !(100..=3_600_000).contains(&self.drain_quiet_ms) {
            return bad("drain_quiet_ms", "must be 100 to 3600000".into());
        }
        Ok(())
    }

    /// The addresses to announce, sorted and without duplicates.
    pub fn vips(&self, frontends: &[IpAddr]) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = if self.addresses.is_empty() {
            frontends
                .iter()
                .copied()
                .filter(|ip| routable(*ip))
                .collect()
        } else {
            self.addresses
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect()
        };
        v.sort();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(v: &[&str]) -> Vec<IpAddr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn default_announces_every_specific_frontend_address_once() {
        let a = AnnounceConfig::default();
        let f = ips(&[
            "192.0.2.53",
            "0.0.0.0",
            "2001:db8::53",
            "192.0.2.53",
            "127.0.0.1",
        ]);
        assert_eq!(a.validate(&f), Ok(()));
        assert_eq!(a.vips(&f), ips(&["192.0.2.53", "2001:db8::53"]));
    }

    #[test]
    fn bad_values_name_their_key() {
        let f = ips(&["192.0.2.53"]);
        let key = |a: AnnounceConfig| a.validate(&f).unwrap_err().0;
        let d = AnnounceConfig::default;
        assert_eq!(
            key(AnnounceConfig {
                addresses: vec!["192.0.2.54".into()],
                ..d()
            }),
            "announce.addresses"
        );
        assert_eq!(
            key(AnnounceConfig {
                addresses: vec!["vip".into()],
                ..d()
            }),
            "announce.addresses"
        );
        assert_eq!(
            key(AnnounceConfig {
                protocol: "9x".into(),
                ..d()
            }),
            "announce.protocol"
        );
        assert_eq!(
            key(AnnounceConfig {
                protocol: "a b".into(),
                ..d()
            }),
            "announce.protocol"
        );
        assert_eq!(
            key(AnnounceConfig {
                include_file: "vips.conf".into(),
                ..d()
            }),
            "announce.include_file"
        );
        assert_eq!(
            key(AnnounceConfig {
                interval_ms: 5,
                ..d()
            }),
            "announce.interval_ms"
        );
        assert_eq!(key(AnnounceConfig { rise: 0, ..d() }), "announce.rise");
        assert_eq!(
            key(AnnounceConfig {
                drain_quiet_ms: 0,
                ..d()
            }),
            "announce.drain_quiet_ms"
        );
        assert_eq!(
            AnnounceConfig {
                addresses: vec!["127.0.0.1".into()],
                ..d()
            }
            .validate(&ips(&["127.0.0.1", "192.0.2.53"]))
            .unwrap_err()
            .0,
            "announce.addresses"
        );
        let wild = ips(&["0.0.0.0", "::", "::1"]);
        assert_eq!(
            d().validate(&wild).unwrap_err().0,
            "announce.addresses",
            "wildcards only: nothing to announce"
        );
    }
}
