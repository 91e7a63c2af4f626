//! In-memory cache of what never changes about an agent: its id and signing secret, by access-token
//! hash. It saves a database read and an AES-GCM open per signed call.
//!
//! # Security
//! Revocation and deletion are NOT cached: the nonce insert that ends every successful verification
//! only succeeds while the agent exists and is not revoked (checked in the database, in the same
//! statement), so a revoked agent is refused at once on every relay instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use zeroize::Zeroizing;

/// Entries kept before the cache starts over (a few MiB at most).
const MAX_ENTRIES: usize = 50_000;

/// An agent's immutable verification material.
pub struct CachedAgent {
    /// The agent id.
    pub id: String,
    /// The user owning the agent (an agent never changes owner).
    pub user_id: String,
    /// The decrypted signing secret.
    pub secret: Zeroizing<Vec<u8>>,
}

/// Token hash → agent.
#[derive(Default)]
pub struct AgentCache {
    /// The entries.
    map: Mutex<HashMap<String, Arc<CachedAgent>>>,
}

impl AgentCache {
    /// The cached agent for a token hash.
    pub fn get(&self, token_hash: &str) -> Option<Arc<CachedAgent>> {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token_hash)
            .cloned()
    }

    /// Caches an agent; starts over when full (entries are cheap to reload).
    pub fn insert(&self, token_hash: String, agent: Arc<CachedAgent>) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(token_hash, agent);
    }

    /// Forgets an agent (revoked, unregistered).
    pub fn evict_agent(&self, agent_id: &str) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, a| a.id != agent_id);
    }
}
