//! Per-client rate limits on each endpoint class (GCRA, `governor`), with larger
//! quotas for the monitoring nodes' own addresses. Over quota: `429` with
//! `Retry-After`, counted in `livenessd_http_rate_limited_total{class}`.
//!
//! A client is an IPv4 address, or an IPv6 /64 (one host usually holds a whole
//! /64, so counting its addresses apart would hand it billions of quotas).
//!
//! The state per client address is bounded: addresses whose quota has fully
//! refilled are forgotten every minute, and beyond [`MAX_TRACKED`] addresses the
//! oldest state is dropped wholesale (a flood of spoofed sources costs memory
//! once, not forever).

use std::collections::HashSet;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::{RateLimitConfig, RateQuota};

/// Client addresses tracked per class before the table is cleared.
pub const MAX_TRACKED: usize = 100_000;

/// The endpoint classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `/state`: every call probes a target.
    Probe,
    /// `/aggregate_downtime`, and gathering endpoints: every call fans out to all peers.
    Aggregate,
    /// `/downtime` and other signed answers: a signature each.
    Signed,
    /// `/v1/…`, the status page and badges: replica reads.
    Query,
    /// `/health`, `/ready`, `/metrics`.
    Ops,
}

impl Class {
    pub fn of(path: &str) -> Class {
        match path {
            "/state" => Class::Probe,
            "/aggregate_downtime" => Class::Aggregate,
            "/downtime" => Class::Signed,
            "/health" | "/ready" | "/metrics" => Class::Ops,
            p if p.ends_with("/sign") || p.ends_with("/signature") || p.starts_with("/v1/sign") => {
                Class::Signed
            }
            _ => Class::Query,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Class::Probe => "probe",
            Class::Aggregate => "aggregate",
            Class::Signed => "signed",
            Class::Query => "query",
            Class::Ops => "ops",
        }
    }
}

struct Limiter {
    others: DefaultKeyedRateLimiter<IpAddr>,
    peers: DefaultKeyedRateLimiter<IpAddr>,
}

fn quota(q: &RateQuota, factor: u32) -> Quota {
    let per_s = NonZeroU32::new(q.per_second.saturating_mul(factor).max(1)).expect("≥ 1");
    let burst = NonZeroU32::new(q.burst.saturating_mul(factor).max(1)).expect("≥ 1");
    Quota::per_second(per_s).allow_burst(burst)
}

impl Limiter {
    fn new(q: &RateQuota, peer_factor: u32) -> Self {
        Limiter {
            others: DefaultKeyedRateLimiter::keyed(quota(q, 1)),
            peers: DefaultKeyedRateLimiter::keyed(quota(q, peer_factor)),
        }
    }
}

const CLASSES: [Class; 5] = [
    Class::Probe,
    Class::Aggregate,
    Class::Signed,
    Class::Query,
    Class::Ops,
];

/// The limits of every class, and the monitoring nodes' addresses. Cheap to clone.
#[derive(Clone)]
pub struct RateLimits {
    cfg: Arc<RateLimitConfig>,
    /// One limiter per class, in [`CLASSES`] order; replaced wholesale when it
    /// tracks too many addresses.
    limiters: Arc<[RwLock<Arc<Limiter>>; 5]>,
    peers: Arc<RwLock<HashSet<IpAddr>>>,
}

impl RateLimits {
    pub fn new(cfg: &RateLimitConfig) -> Self {
        let cfg = Arc::new(cfg.clone());
        let limiters = CLASSES.map(|c| RwLock::new(Arc::new(Self::build(&cfg, c))));
        RateLimits {
            cfg,
            limiters: Arc::new(limiters),
            peers: Arc::new(RwLock::new(HashSet::new())),
        }
    }

    fn build(cfg: &RateLimitConfig, class: Class) -> Limiter {
        let q = match class {
            Class::Probe => &cfg.probe,
            Class::Aggregate => &cfg.aggregate,
            Class::Signed => &cfg.signed,
            Class::Query => &cfg.query,
            Class::Ops => &cfg.ops,
        };
        Limiter::new(q, cfg.peer_factor.max(1))
    }

    /// The addresses that get the monitoring nodes' quotas.
    pub fn set_peers(&self, addrs: HashSet<IpAddr>) {
        *self.peers.write().expect("peers lock") = addrs;
    }

    fn limiter(&self, class: Class) -> Arc<Limiter> {
        let i = CLASSES.iter().position(|c| *c == class).expect("a class");
        self.limiters[i].read().expect("limiter lock").clone()
    }

    /// `Ok` if `client` may make a `class` request now, else how long to wait.
    pub fn check(&self, class: Class, client: IpAddr) -> Result<(), Duration> {
        if !self.cfg.enabled {
            return Ok(());
        }
        let client = client_key(client);
        let peer = self.peers.read().expect("peers lock").contains(&client);
        let l = self.limiter(class);
        let limiter = if peer { &l.peers } else { &l.others };
        limiter
            .check_key(&client)
            .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }

    /// Whether `client` is one of the monitoring nodes' addresses.
    pub fn is_peer(&self, client: IpAddr) -> bool {
        self.peers
            .read()
            .expect("peers lock")
            .contains(&client_key(client))
    }

    /// Forgets clients whose quota has refilled; clears a class's table if it
    /// still tracks more than [`MAX_TRACKED`] addresses.
    pub fn housekeeping(&self) {
        for (i, class) in CLASSES.iter().enumerate() {
            let l = self.limiter(*class);
            l.others.retain_recent();
            l.peers.retain_recent();
            if l.others.len() + l.peers.len() > MAX_TRACKED {
                // Dropping state only ever grants fresh bursts: safe, and bounded.
                *self.limiters[i].write().expect("limiter lock") =
                    Arc::new(Self::build(&self.cfg, *class));
            } else {
                l.others.shrink_to_fit();
                l.peers.shrink_to_fit();
            }
        }
    }

    /// Number of client addresses tracked (all classes).
    pub fn tracked(&self) -> usize {
        CLASSES
            .iter()
            .map(|c| {
                let l = self.limiter(*c);
                l.others.len() + l.peers.len()
            })
            .sum()
    }
}

/// The client an address belongs to: an IPv4 address (an IPv4-mapped IPv6 address
/// counts as its IPv4 address), or an IPv6 /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from_bits(
                v6.to_bits() & !((1u128 << 64) - 1),
            )),
        },
        v4 => v4,
    }
}

/// Resolves the monitoring nodes' URLs to addresses (for their quotas).
pub async fn resolve_peers(urls: &[String]) -> HashSet<IpAddr> {
    let mut out = HashSet::new();
    for u in urls {
        let Ok(url) = reqwest::Url::parse(u) else {
            continue;
        };
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            continue;
        };
        let target = format!("{host}:{port}");
        let found = tokio::net::lookup_host(target).await;
        if let Ok(addrs) = found {
            out.extend(addrs.map(|a| client_key(a.ip())));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RateLimitConfig {
        RateLimitConfig {
            probe: RateQuota {
                per_second: 1,
                burst: 3,
            },
            peer_factor: 10,
            ..Default::default()
        }
    }

    #[test]
    fn a_client_over_quota_is_told_when_to_come_back_and_peers_get_more() {
        let l = RateLimits::new(&cfg());
        let other: IpAddr = "10.0.0.9".parse().unwrap();
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        l.set_peers([peer].into());
        for _ in 0..3 {
            assert!(l.check(Class::Probe, other).is_ok());
        }
        let wait = l.check(Class::Probe, other).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Other classes and other clients are not affected.
        assert!(l.check(Class::Query, other).is_ok());
        assert!(l.check(Class::Probe, "10.0.0.10".parse().unwrap()).is_ok());
        // A monitoring node has 10 × the burst.
        for _ in 0..30 {
            assert!(l.check(Class::Probe, peer).is_ok());
        }
        assert!(l.check(Class::Probe, peer).is_err());
        // An IPv4-mapped IPv6 address is the same client.
        let mapped: IpAddr = "::ffff:10.0.0.9".parse().unwrap();
        assert!(l.check(Class::Probe, mapped).is_err());
        // The addresses of one IPv6 /64 are one client; the next /64 is another.
        for i in 0..3u16 {
            let ip = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, i, 0, 0, i));
            assert!(l.check(Class::Probe, ip).is_ok());
        }
        assert!(l
            .check(Class::Probe, "2001:db8:0:1:ffff::9".parse().unwrap())
            .is_err());
        assert!(l
            .check(Class::Probe, "2001:db8:0:2::1".parse().unwrap())
            .is_ok());
        assert!(l.tracked() >= 3);
        l.housekeeping();
    }

    #[test]
    fn disabled_limits_never_refuse() {
        let mut c = cfg();
        c.enabled = false;
        let l = RateLimits::new(&c);
        for _ in 0..100 {
            assert!(l.check(Class::Probe, "10.0.0.9".parse().unwrap()).is_ok());
        }
    }

    #[test]
    fn classes_by_path() {
        assert_eq!(Class::of("/state"), Class::Probe);
        assert_eq!(Class::of("/aggregate_downtime"), Class::Aggregate);
        assert_eq!(Class::of("/downtime"), Class::Signed);
        assert_eq!(
            Class::of("/v1/certificates/epochs/{epoch}/signature"),
            Class::Signed
        );
        assert_eq!(Class::of("/ready"), Class::Ops);
        assert_eq!(Class::of("/v1/events"), Class::Query);
    }
}
