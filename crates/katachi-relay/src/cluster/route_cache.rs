//! Where other instances hold agents' tunnels, remembered between browser requests so that a
//! forwarded request does not cost a database round trip each time.
//!
//! # Contract
//! - An entry is used for at most [`ROUTE_CACHE_TTL`] after it was read from the routing table,
//!   and only while notices from the other instances arrive (`LISTEN` up): a take-over
//!   ([`super::broadcast::Notice::TakenOver`]) or a revocation of the agent forgets it at once.
//! - An entry read from the database is stored only if nothing was forgotten while it was being
//!   read (an epoch counter), so a take-over that races the read never leaves the older route.
//! - Every entry goes when `LISTEN` goes down or comes back (notices may have been missed), and
//!   one goes when forwarding on it fails (the instance is unreachable or no longer has the
//!   tunnel).
//! - At most [`MAX_ENTRIES`] agents are remembered; past that, expired entries go, then all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::TunnelRoute;

/// Longest an entry is believed without a new read of the routing table (a backstop: notices
/// forget entries as soon as routes change).
pub const ROUTE_CACHE_TTL: Duration = Duration::from_secs(5);
/// Most agents remembered.
pub const MAX_ENTRIES: usize = 100_000;

/// Remembered remote routes, by agent id.
#[derive(Default)]
pub struct RouteCache {
    entries: Mutex<HashMap<String, (TunnelRoute, Instant)>>,
    /// Bumped by every forgetting; a read that saw another epoch is not stored.
    epoch: AtomicU64,
}

impl RouteCache {
    /// The remembered route of `agent_id`, if read less than [`ROUTE_CACHE_TTL`] before `now`.
    pub fn get(&self, agent_id: &str, now: Instant) -> Option<TunnelRoute> {
        let entries = self.entries.lock().ok()?;
        let (route, read_at) = entries.get(agent_id)?;
        (now.saturating_duration_since(*read_at) < ROUTE_CACHE_TTL).then(|| route.clone())
    }

    /// The epoch to hand to [`RouteCache::put`]: take it before reading the routing table.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Remembers `route` (read at `read_at`, after [`RouteCache::epoch`] returned `epoch`) unless
    /// something was forgotten since.
    pub fn put(&self, agent_id: &str, route: TunnelRoute, epoch: u64, read_at: Instant) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        // checked under the lock that `forget` bumps the epoch under: no forgetting slips between
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(agent_id) {
            entries.retain(|_, (_, at)| read_at.saturating_duration_since(*at) < ROUTE_CACHE_TTL);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(agent_id.to_owned(), (route, read_at));
    }

    /// Forgets `agent_id`'s route.
    pub fn forget(&self, agent_id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            self.epoch.fetch_add(1, Ordering::SeqCst);
            entries.remove(agent_id);
        }
    }

    /// Forgets every route.
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            self.epoch.fetch_add(1, Ordering::SeqCst);
            entries.clear();
        }
    }

    /// How many agents are remembered (expired entries included).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::InstanceRow;

    fn route(instance: &str) -> TunnelRoute {
        TunnelRoute {
            instance: InstanceRow {
                id: instance.to_owned(),
                internal_url: "127.0.0.1:1".to_owned(),
                cert_sha256: "00".to_owned(),
            },
            generation: 1,
        }
    }

    #[test]
    fn a_route_is_remembered_until_its_ttl_ends() {
        let cache = RouteCache::default();
        let t0 = Instant::now();
        cache.put("agt_1", route("a"), cache.epoch(), t0);
        assert_eq!(cache.get("agt_1", t0), Some(route("a")));
        assert_eq!(
            cache.get("agt_1", t0 + ROUTE_CACHE_TTL / 2),
            Some(route("a"))
        );
        assert_eq!(cache.get("agt_1", t0 + ROUTE_CACHE_TTL), None);
        assert_eq!(cache.get("agt_2", t0), None);
    }

    #[test]
    fn a_route_read_while_another_was_forgotten_is_not_stored() {
        let cache = RouteCache::default();
        let t0 = Instant::now();
        let before_read = cache.epoch();
        // a take-over notice arrives while the routing table is being read
        cache.forget("agt_1");
        cache.put("agt_1", route("a"), before_read, t0);
        assert_eq!(cache.get("agt_1", t0), None);
        // the next read stores
        cache.put("agt_1", route("b"), cache.epoch(), t0);
        assert_eq!(cache.get("agt_1", t0), Some(route("b")));
    }

    #[test]
    fn forgetting_one_agent_or_all_takes_effect_at_once() {
        let cache = RouteCache::default();
        let t0 = Instant::now();
        cache.put("agt_1", route("a"), cache.epoch(), t0);
        cache.put("agt_2", route("a"), cache.epoch(), t0);
        cache.forget("agt_1");
        assert_eq!(cache.get("agt_1", t0), None);
        assert_eq!(cache.get("agt_2", t0), Some(route("a")));
        cache.clear();
        assert_eq!(cache.get("agt_2", t0), None);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_full_cache_drops_expired_entries_first() {
        let cache = RouteCache::default();
        let t0 = Instant::now();
        let later = t0 + ROUTE_CACHE_TTL * 2;
        {
            let mut entries = cache.entries.lock().unwrap();
            for i in 0..MAX_ENTRIES - 1 {
                entries.insert(format!("old{i}"), (route("a"), t0));
            }
            entries.insert("fresh".to_owned(), (route("a"), later));
        }
        cache.put("new", route("b"), cache.epoch(), later);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("fresh", later), Some(route("a")));
        assert_eq!(cache.get("new", later), Some(route("b")));
    }
}
