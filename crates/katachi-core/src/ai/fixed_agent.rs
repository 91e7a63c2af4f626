//! An agent's API and chat without the agent runtime: the structured API over fixed workspaces and
//! the chat routes, under one audit layer, with one fixed model ([`FixedBackends`]) — for
//! embedders that serve the router themselves, the benchmarks and the tests.
//!
//! The store is opened through `open_store` whenever one is needed (the audit writer keeps its
//! own connection, the chat store opens lazily), exactly as the agent does with its home.

use std::sync::Arc;

use axum::Router;

use super::approvals::Approvals;
use super::backends::FixedBackends;
use super::chat::routes::routes;
use super::chat::{ChatService, ChatStore};
use crate::api::{router, ApiState, AuditLayer, AuditOptions, FixedWorkspaces};
use crate::store::{AuditKey, Store, StoreError};

/// The routes to serve and the chat service behind them.
pub struct FixedAgent {
    /// The API and the chat routes under the audit layer (what the agent serves over its tunnel).
    pub router: Router,
    /// The chat service (sessions, turns, approvals) the chat routes use.
    pub chat: ChatService,
}

impl FixedAgent {
    /// Starts the audit writer and builds the routes. `backends` gets the audited API router the
    /// model's tools call through. Must run inside a tokio runtime.
    pub fn start(
        open_store: impl Fn() -> Result<Store, StoreError> + Clone + Send + Sync + 'static,
        audit_key: &dyn Fn() -> AuditKey,
        workspaces: Arc<FixedWorkspaces>,
        approvals: Approvals,
        backends: impl FnOnce(Router) -> FixedBackends,
    ) -> Self {
        let audit = AuditLayer::start_with(
            open_store.clone(),
            audit_key(),
            Some(workspaces.clone()),
            AuditOptions::default(),
        );
        let api = ApiState::new(workspaces);
        let chat = ChatService::new(
            ChatStore::new(open_store, audit_key()),
            approvals,
            Arc::new(backends(router(api.clone()).layer(audit.clone()))),
        );
        let router = router(api).merge(routes(chat.clone())).layer(audit);
        Self { router, chat }
    }
}
