//! The tunnel's "redial now" source: the system's network changes, plus
//! [`super::Agent::reconnect_now`]; it lives as long as the supervisor, across pauses.

use std::sync::Arc;

use tokio::sync::{Mutex, Notify};

use crate::tunnel::{ChangeFuture, NetworkChanges};

/// Completes on a network change or a "reconnect now" command.
#[derive(Clone)]
pub(crate) struct RedialSignal {
    /// The system's (or a test's) network change source.
    system: Arc<Mutex<Box<dyn NetworkChanges>>>,
    /// Fired by "reconnect now"; keeps one permit when nobody waits.
    now: Arc<Notify>,
}

impl RedialSignal {
    /// Listens to `system` and to [`Self::redial_now`].
    pub(crate) fn new(system: Box<dyn NetworkChanges>) -> Self {
        Self {
            system: Arc::new(Mutex::new(system)),
            now: Arc::new(Notify::new()),
        }
    }

    /// Makes the tunnel redial at once (or at its next wait).
    pub(crate) fn redial_now(&self) {
        self.now.notify_one();
    }
}

impl NetworkChanges for RedialSignal {
    fn changed(&mut self) -> ChangeFuture<'_> {
        let system = Arc::clone(&self.system);
        let now = Arc::clone(&self.now);
        Box::pin(async move {
            let mut system = system.lock().await;
            tokio::select! {
                () = system.changed() => {}
                () = now.notified() => {}
            }
        })
    }
}
