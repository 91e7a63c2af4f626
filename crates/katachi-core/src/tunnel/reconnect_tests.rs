//! The reconnect loop against a scripted link, in paused tokio time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::tunnel::backoff::{FAST_WINDOW, NETWORK_SETTLE};
use crate::tunnel::network::{ManualNetworkChanges, NoNetworkChanges};
use crate::tunnel::status_channel;

/// What one dial does.
enum Step {
    /// The tunnel opens and stays up this long, then the relay closes it.
    Up(Duration),
    /// The dial fails like this.
    Fail(TunnelError),
}

/// A link that follows a script (then: relay unreachable forever) and records when it dialled.
#[derive(Default)]
struct Scripted {
    script: Mutex<VecDeque<Step>>,
    attempts: Mutex<Vec<Instant>>,
}

impl Scripted {
    fn new(steps: impl IntoIterator<Item = Step>) -> Arc<Self> {
        Arc::new(Self {
            script: Mutex::new(steps.into_iter().collect()),
            attempts: Mutex::default(),
        })
    }

    fn attempts(&self) -> Vec<Instant> {
        self.attempts.lock().unwrap().clone()
    }
}

fn unreachable() -> TunnelError {
    TunnelError::Unreachable {
        url: "https://relay.test".into(),
        reason: "connection refused".into(),
    }
}

impl Link for Scripted {
    type Open = Duration;

    fn dial(&self) -> impl Future<Output = Result<Duration, TunnelError>> + Send {
        self.attempts.lock().unwrap().push(Instant::now());
        let step = self.script.lock().unwrap().pop_front();
        std::future::ready(match step {
            Some(Step::Up(d)) => Ok(d),
            Some(Step::Fail(e)) => Err(e),
            None => Err(unreachable()),
        })
    }

    async fn serve(&self, open: Duration) -> Result<(), TunnelError> {
        tokio::time::sleep(open).await;
        Ok(())
    }
}

fn spawn_loop(
    link: Arc<Scripted>,
    network: Box<dyn NetworkChanges>,
) -> (
    tokio::task::JoinHandle<TunnelError>,
    watch::Receiver<TunnelStatus>,
) {
    let (status, rx) = status_channel();
    let handle =
        tokio::spawn(async move { keep_up(&*link, ReconnectOptions { status, network }).await });
    (handle, rx)
}

#[tokio::test(start_paused = true)]
async fn a_network_change_cuts_a_long_backoff_wait_short_and_resets_the_failures() {
    let link = Scripted::new([]);
    let (changes, trigger) = ManualNetworkChanges::new();
    let (task, status) = spawn_loop(link.clone(), Box::new(changes));

    // Long past the fast phase: attempts are 30-60 s apart now.
    tokio::time::sleep(FAST_WINDOW + Duration::from_secs(300)).await;
    let TunnelStatus::Reconnecting {
        in_secs, reason, ..
    } = status.borrow().clone()
    else {
        panic!("{:?}", status.borrow());
    };
    assert!(in_secs >= 30, "{in_secs}");
    assert!(reason.contains("connection refused"), "{reason}");
    let before = link.attempts().len();

    let changed_at = Instant::now();
    trigger.trigger();
    tokio::time::sleep(NETWORK_SETTLE - Duration::from_millis(1)).await;
    assert_eq!(
        link.attempts().len(),
        before,
        "an attempt before the network settled"
    );
    tokio::time::sleep(Duration::from_millis(2)).await;
    let attempts = link.attempts();
    assert!(attempts.len() > before, "no attempt right after the change");
    assert_eq!(
        attempts[before] - changed_at,
        NETWORK_SETTLE,
        "the attempt waits only for the settle time"
    );
    // The failure count was reset: the next redial is the short first one (0-0.5 s), not 30-60 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attempts = link.attempts();
    assert!(attempts.len() > before + 1, "no redial after the change");
    assert!(
        attempts[before + 1] - attempts[before] <= Duration::from_millis(500),
        "{:?}",
        attempts[before + 1] - attempts[before]
    );
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_dropped_stable_tunnel_is_redialled_within_a_second_and_a_half() {
    // Up for an hour, then the relay is gone for 20 s, then back.
    let down_for = Duration::from_secs(20);
    let mut steps = vec![Step::Up(Duration::from_secs(3600))];
    steps.extend((0..100).map(|_| Step::Fail(unreachable())));
    let link = Scripted::new(steps);
    let (task, mut status) = spawn_loop(link.clone(), Box::new(NoNetworkChanges));

    tokio::time::sleep(Duration::from_secs(3600) + Duration::from_millis(1)).await;
    let dropped_at = Instant::now();
    tokio::time::sleep(down_for + Duration::from_secs(5)).await;
    let attempts: Vec<_> = link
        .attempts()
        .into_iter()
        .filter(|a| *a >= dropped_at)
        .collect();
    assert!(attempts[0] - dropped_at <= Duration::from_millis(500));
    for pair in attempts.windows(2) {
        assert!(pair[1] - pair[0] <= Duration::from_millis(1500), "{pair:?}");
    }
    assert!(matches!(
        *status.borrow_and_update(),
        TunnelStatus::Reconnecting { .. }
    ));
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_revoked_agent_stops_the_loop_with_needs_sign_in() {
    let link = Scripted::new([
        Step::Fail(unreachable()),
        Step::Up(Duration::from_secs(60)),
        Step::Fail(TunnelError::Refused {
            status: 401,
            code: Some(katachi_proto::relay_error::RelayErrorCode::AgentRevoked),
        }),
    ]);
    let (task, mut status) = spawn_loop(link.clone(), Box::new(NoNetworkChanges));
    let mut seen = Vec::new();
    loop {
        seen.push(status.borrow_and_update().state_word());
        if status.changed().await.is_err() {
            break;
        }
    }
    let err = task.await.unwrap();
    assert!(err.needs_sign_in(), "{err:?}");
    assert!(matches!(
        &*status.borrow(),
        TunnelStatus::NeedsSignIn { reason } if reason.contains("agent.revoked")
    ));
    assert!(
        seen.contains(&"connected") && seen.contains(&"reconnecting"),
        "{seen:?}"
    );
    assert_eq!(link.attempts().len(), 3, "no redial after the refusal");
}

#[tokio::test(start_paused = true)]
async fn an_unusable_setup_stops_the_loop_with_an_error() {
    let link = Scripted::new([Step::Fail(TunnelError::InvalidCa("empty".into()))]);
    let (task, status) = spawn_loop(link, Box::new(NoNetworkChanges));
    let err = task.await.unwrap();
    assert!(matches!(err, TunnelError::InvalidCa(_)));
    assert!(matches!(&*status.borrow(), TunnelStatus::Error { .. }));
}
