//! The relay server's per-IP rate limits, keyed by IP group (an IPv6 /64 by default; see
//! `Config::ipv6_prefix`) instead of libp2p's exact address: a host that holds a /64 would
//! otherwise get a fresh allowance from each of its addresses.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use libp2p::relay::RateLimiter;
use libp2p::{Multiaddr, PeerId};

use crate::connection_manager::{ip_group, ip_of};

/// Groups remembered at most: past it, those whose bucket has refilled are forgotten
/// (at most once an interval), and while all are still in use a new group is refused.
const MAX_GROUPS: usize = 4096;

/// A token bucket per IP group: `limit` at once, one more every `interval`.
struct GroupRate {
    limit: u32,
    interval: Duration,
    v6_prefix: u8,
    buckets: HashMap<IpNet, (u32, Instant)>,
    pruned: Option<Instant>,
}

impl GroupRate {
    fn try_next(&mut self, addr: &Multiaddr, now: Instant) -> bool {
        let Some(ip) = ip_of(addr) else {
            return true;
        };
        let (limit, interval) = (self.limit, self.interval);
        let group = ip_group(ip, self.v6_prefix);
        if self.buckets.len() >= MAX_GROUPS && !self.buckets.contains_key(&group) {
            // A pass over the map at most once an interval: a flood of new groups must
            // not make every call cost as much as the map is long.
            if self
                .pruned
                .is_none_or(|at| now.saturating_duration_since(at) >= interval)
            {
                self.pruned = Some(now);
                self.buckets.retain(|_, (tokens, since)| {
                    refill(tokens, since, now, limit, interval) < limit
                });
            }
            if self.buckets.len() >= MAX_GROUPS {
                return false;
            }
        }
        let (tokens, since) = self.buckets.entry(group).or_insert((limit, now));
        if refill(tokens, since, now, limit, interval) == 0 {
            return false;
        }
        *tokens -= 1;
        true
    }
}

/// Adds the tokens earned since `since`; returns how many there are.
fn refill(
    tokens: &mut u32,
    since: &mut Instant,
    now: Instant,
    limit: u32,
    interval: Duration,
) -> u32 {
    let earned = now.saturating_duration_since(*since).as_nanos() / interval.as_nanos().max(1);
    if earned > 0 {
        *tokens = (*tokens as u128 + earned).min(limit as u128) as u32;
        *since += interval * earned.min(u32::MAX as u128) as u32;
    }
    *tokens
}

/// A relay rate limiter of `limit` per `interval` for each IP group.
pub(super) fn per_ip_group(limit: u32, interval: Duration, v6_prefix: u8) -> Box<dyn RateLimiter> {
    let mut rate = GroupRate {
        limit,
        interval,
        v6_prefix,
        buckets: HashMap::new(),
        pruned: None,
    };
    Box::new(move |_peer: PeerId, addr: &Multiaddr, now: Instant| rate.try_next(addr, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slash_64_shares_one_allowance_and_earns_it_back() {
        let mut limiter = per_ip_group(2, Duration::from_secs(60), 64);
        let peer = PeerId::random();
        let at = |ip: &str| format!("/ip6/{ip}/tcp/1").parse::<Multiaddr>().unwrap();
        let t0 = Instant::now();
        assert!(limiter.try_next(peer, &at("2001:db8::1"), t0));
        assert!(limiter.try_next(peer, &at("2001:db8::2"), t0));
        assert!(!limiter.try_next(peer, &at("2001:db8::3"), t0), "same /64");
        assert!(
            limiter.try_next(peer, &at("2001:db8:0:1::1"), t0),
            "another /64"
        );
        let later = t0 + Duration::from_secs(61);
        assert!(limiter.try_next(peer, &at("2001:db8::4"), later));
        assert!(!limiter.try_next(peer, &at("2001:db8::5"), later));
    }

    #[test]
    fn groups_beyond_the_cap_are_refused_until_some_refill() {
        let mut limiter = per_ip_group(2, Duration::from_secs(60), 64);
        let peer = PeerId::random();
        let t0 = Instant::now();
        let at = |i: usize| format!("/ip6/2001:db8:{:x}:{:x}::1/tcp/1", i >> 16, i & 0xffff);
        for i in 0..MAX_GROUPS {
            assert!(limiter.try_next(peer, &at(i).parse().unwrap(), t0));
        }
        let new: Multiaddr = at(MAX_GROUPS).parse().unwrap();
        assert!(
            !limiter.try_next(peer, &new, t0),
            "every bucket still in use"
        );
        // Two intervals on, every bucket has refilled and is forgotten.
        let later = t0 + Duration::from_secs(121);
        assert!(limiter.try_next(peer, &new, later));
    }
}
