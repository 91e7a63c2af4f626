//! "The network changed": the seam that lets the reconnect loop retry at once when a link comes up
//! or an address changes, instead of sitting out a long backoff wait.
//!
//! - [`NetworkChanges`]: the trait the loop waits on.
//! - [`SystemNetworkChanges`]: the machine's own source. On Linux a netlink route socket subscribed
//!   to link and IPv4/IPv6 address events (`RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR`);
//!   any message counts as a change (the loop only needs a nudge, not the details). On other
//!   systems, and where the socket cannot be opened (a locked-down container), it never fires and
//!   says so in the log: reconnecting then relies on the backoff alone.
//! - [`ManualNetworkChanges`] and its [`NetworkChangeTrigger`]: for tests and for embedders that
//!   learn about network changes some other way (the tray app from the OS).
//!
//! Changes that happen while nobody waits are not lost: the next wait completes at once, and a
//! burst of changes counts as one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::Notify;

/// A boxed future returned by [`NetworkChanges::changed`].
pub type ChangeFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A source of "the network changed" notifications.
pub trait NetworkChanges: Send {
    /// Completes at the next network change (or at once if one happened since the last call);
    /// never completes when the source cannot report changes.
    fn changed(&mut self) -> ChangeFuture<'_>;
}

/// A source that never reports a change (backoff alone decides when to retry).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoNetworkChanges;

impl NetworkChanges for NoNetworkChanges {
    fn changed(&mut self) -> ChangeFuture<'_> {
        Box::pin(std::future::pending())
    }
}

/// Changes reported by hand through a [`NetworkChangeTrigger`].
#[derive(Debug, Default)]
pub struct ManualNetworkChanges {
    /// Holds one pending notification when a change came while nobody waited.
    notify: Arc<Notify>,
}

/// Reports a change to its [`ManualNetworkChanges`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct NetworkChangeTrigger {
    /// Shared with the source.
    notify: Arc<Notify>,
}

impl ManualNetworkChanges {
    /// A source and the trigger that feeds it.
    pub fn new() -> (Self, NetworkChangeTrigger) {
        let notify = Arc::new(Notify::new());
        let trigger = NetworkChangeTrigger {
            notify: notify.clone(),
        };
        (Self { notify }, trigger)
    }
}

impl NetworkChangeTrigger {
    /// Says the network changed.
    pub fn trigger(&self) {
        self.notify.notify_one();
    }
}

impl NetworkChanges for ManualNetworkChanges {
    fn changed(&mut self) -> ChangeFuture<'_> {
        Box::pin(self.notify.notified())
    }
}

/// The machine's network changes (see the module doc for what is watched where).
#[derive(Debug)]
pub struct SystemNetworkChanges {
    /// Notified by the watcher thread; `None` when changes cannot be watched here. The thread
    /// holds only a weak reference and ends within a second of this source being dropped.
    notify: Option<Arc<Notify>>,
}

impl SystemNetworkChanges {
    /// Starts watching. Never fails: where changes cannot be watched, the source never fires and
    /// the reason is logged once.
    pub fn new() -> Self {
        #[cfg(target_os = "linux")]
        {
            let notify = Arc::new(Notify::new());
            match linux::spawn_route_watcher(Arc::downgrade(&notify)) {
                Ok(()) => Self {
                    notify: Some(notify),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch network changes; reconnecting relies on backoff alone");
                    Self { notify: None }
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            tracing::info!("watching network changes is not supported on this OS; reconnecting relies on backoff alone");
            Self { notify: None }
        }
    }
}

impl Default for SystemNetworkChanges {
    fn default() -> Self {
        Self::new()
    }
}

impl NetworkChanges for SystemNetworkChanges {
    fn changed(&mut self) -> ChangeFuture<'_> {
        match &self.notify {
            Some(notify) => Box::pin(notify.notified()),
            None => Box::pin(std::future::pending()),
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    //! The netlink route socket behind [`super::SystemNetworkChanges`] on Linux, read by a small
    //! thread with blocking receives (no `unsafe` fd registration with the async reactor).

    use std::os::fd::OwnedFd;
    use std::sync::Weak;
    use std::time::Duration;

    use rustix::io::Errno;
    use rustix::net::netlink::SocketAddrNetlink;
    use rustix::net::sockopt::{set_socket_timeout, Timeout};
    use rustix::net::{AddressFamily, RecvFlags, SocketFlags, SocketType};
    use tokio::sync::Notify;

    /// `RTMGRP_LINK`: links up/down, added/removed.
    const RTMGRP_LINK: u32 = 0x1;
    /// `RTMGRP_IPV4_IFADDR`: IPv4 addresses added/removed.
    const RTMGRP_IPV4_IFADDR: u32 = 0x10;
    /// `RTMGRP_IPV6_IFADDR`: IPv6 addresses added/removed.
    const RTMGRP_IPV6_IFADDR: u32 = 0x100;
    /// How often the thread checks whether anyone still listens.
    const POLL_OWNER_EVERY: Duration = Duration::from_secs(1);

    /// Opens a `NETLINK_ROUTE` socket subscribed to link and address events and starts the
    /// thread that turns its messages into notifications of `notify`.
    pub(super) fn spawn_route_watcher(notify: Weak<Notify>) -> std::io::Result<()> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            None, // NETLINK_ROUTE
        )?;
        let groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, groups))?;
        set_socket_timeout(&fd, Timeout::Recv, Some(POLL_OWNER_EVERY))?;
        std::thread::Builder::new()
            .name("katachi-netwatch".to_owned())
            .stack_size(64 * 1024)
            .spawn(move || watch_route_events(&fd, &notify))?;
        Ok(())
    }

    /// Notifies on every message (a burst coalesces in the `Notify` permit) until the source is
    /// dropped or the socket fails.
    fn watch_route_events(fd: &OwnedFd, notify: &Weak<Notify>) {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let changed = match rustix::net::recv(fd, &mut buf[..], RecvFlags::empty()) {
                Ok(_) => true,
                // The kernel dropped events because we read too slowly: changes happened.
                Err(Errno::NOBUFS) => true,
                // The receive timeout: time to check whether anyone still listens.
                Err(Errno::AGAIN | Errno::INTR) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "the network change socket failed; reconnecting relies on backoff alone");
                    return;
                }
            };
            let Some(notify) = notify.upgrade() else {
                return;
            };
            if changed {
                notify.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_manual_change_before_the_wait_is_not_lost_and_bursts_count_once() {
        let (mut changes, trigger) = ManualNetworkChanges::new();
        trigger.trigger();
        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(1), changes.changed())
            .await
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), changes.changed())
                .await
                .is_err(),
            "the burst was reported twice"
        );
    }

    /// Moves the calling thread (only) into a fresh network namespace, so links added from it
    /// never touch the machine's network. Needs root (`CAP_SYS_ADMIN`); `false` when refused.
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    fn enter_private_network_namespace_on_this_thread() -> bool {
        // SAFETY: unshare(CLONE_NEWNET) takes no pointers and changes only the calling thread's
        // network namespace; threads and children it starts afterwards inherit it.
        unsafe { libc::unshare(libc::CLONE_NEWNET) == 0 }
    }

    /// A link added in a private network namespace is reported by the real netlink watcher. Runs
    /// where the tests run as root (CI does); elsewhere it says it was skipped.
    #[cfg(target_os = "linux")]
    #[test]
    fn netlink_reports_a_new_link() {
        let outcome = std::thread::spawn(|| {
            if !enter_private_network_namespace_on_this_thread() {
                return None;
            }
            // the watcher's socket and thread, and `ip`, all live in this thread's namespace
            let mut changes = SystemNetworkChanges::new();
            assert!(changes.notify.is_some(), "netlink socket did not open");
            let added = std::process::Command::new("ip")
                .args(["link", "add", "kt-test0", "type", "dummy"])
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
                || std::process::Command::new("ip")
                    .args(["link", "add", "kt-test0", "type", "bridge"])
                    .status()
                    .unwrap()
                    .success();
            assert!(added, "`ip link add` failed in the private namespace");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            Some(runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), changes.changed())
                    .await
                    .is_ok()
            }))
        })
        .join()
        .unwrap();
        match outcome {
            Some(seen) => assert!(seen, "no change reported for a new link"),
            None => eprintln!("skipped: creating a network namespace needs root"),
        }
    }

    #[tokio::test]
    async fn the_system_source_opens_without_failing() {
        // On Linux the route socket opens as any user; elsewhere (or when refused) it never fires.
        let mut changes = SystemNetworkChanges::new();
        let _ = tokio::time::timeout(Duration::from_millis(20), changes.changed()).await;
    }
}
