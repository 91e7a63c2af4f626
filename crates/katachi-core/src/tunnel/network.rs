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
    /// holds only a weak reference.
    notify: Option<Arc<Notify>>,
    /// The write end of the watcher thread's stop pipe: dropping this source closes it, which
    /// ends the thread at once (it sleeps in `poll` otherwise: no periodic wake-ups).
    #[cfg(target_os = "linux")]
    _stop: Option<std::os::fd::OwnedFd>,
}

impl SystemNetworkChanges {
    /// Starts watching. Never fails: where changes cannot be watched, the source never fires and
    /// the reason is logged once.
    pub fn new() -> Self {
        #[cfg(target_os = "linux")]
        {
            let notify = Arc::new(Notify::new());
            match linux::spawn_route_watcher(Arc::downgrade(&notify)) {
                Ok((stop, _thread)) => Self {
                    notify: Some(notify),
                    _stop: Some(stop),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch network changes; reconnecting relies on backoff alone");
                    Self {
                        notify: None,
                        _stop: None,
                    }
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
    //! thread that sleeps in `poll` on it and on a stop pipe (no `unsafe` fd registration with the
    //! async reactor, and no wake-up unless the network changed or the source was dropped).

    use std::os::fd::OwnedFd;
    use std::sync::Weak;

    use rustix::event::{poll, PollFd, PollFlags};
    use rustix::io::Errno;
    use rustix::net::netlink::SocketAddrNetlink;
    use rustix::net::{AddressFamily, RecvFlags, SocketFlags, SocketType};
    use tokio::sync::Notify;

    /// `RTMGRP_LINK`: links up/down, added/removed.
    const RTMGRP_LINK: u32 = 0x1;
    /// `RTMGRP_IPV4_IFADDR`: IPv4 addresses added/removed.
    const RTMGRP_IPV4_IFADDR: u32 = 0x10;
    /// `RTMGRP_IPV6_IFADDR`: IPv6 addresses added/removed.
    const RTMGRP_IPV6_IFADDR: u32 = 0x100;

    /// Opens a `NETLINK_ROUTE` socket subscribed to link and address events and starts the
    /// thread that turns its messages into notifications of `notify`. Returns the write end of
    /// the thread's stop pipe (closing it ends the thread) and the thread.
    pub(super) fn spawn_route_watcher(
        notify: Weak<Notify>,
    ) -> std::io::Result<(OwnedFd, std::thread::JoinHandle<()>)> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None, // NETLINK_ROUTE
        )?;
        let groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, groups))?;
        let (stop_read, stop_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let thread = std::thread::Builder::new()
            .name("katachi-netwatch".to_owned())
            .stack_size(64 * 1024)
            .spawn(move || watch_route_events(&fd, &stop_read, &notify))?;
        Ok((stop_write, thread))
    }

    /// Notifies on every burst of messages (coalesced in the `Notify` permit) until the stop
    /// pipe closes, the source is dropped or the socket fails.
    fn watch_route_events(fd: &OwnedFd, stop: &OwnedFd, notify: &Weak<Notify>) {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let mut fds = [
                PollFd::new(fd, PollFlags::IN),
                PollFd::new(stop, PollFlags::IN),
            ];
            match poll(&mut fds, None) {
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot wait for network changes; reconnecting relies on backoff alone");
                    return;
                }
            }
            if !fds[1].revents().is_empty() {
                return; // the source was dropped: its end of the pipe closed
            }
            let mut changed = false;
            // Drain what is there (non-blocking): one notification per burst.
            loop {
                match rustix::net::recv(fd, &mut buf[..], RecvFlags::empty()) {
                    Ok(_) => changed = true,
                    // The kernel dropped events because we read too slowly: changes happened.
                    Err(Errno::NOBUFS) => changed = true,
                    Err(Errno::AGAIN) => break,
                    Err(Errno::INTR) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "the network change socket failed; reconnecting relies on backoff alone");
                        return;
                    }
                }
            }
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

    /// The watcher sleeps in `poll` with no timeout, so it must end when its source is dropped:
    /// closing the stop pipe ends the thread at once.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_watcher_thread_ends_when_its_source_is_dropped() {
        let notify = Arc::new(Notify::new());
        let (stop, thread) = linux::spawn_route_watcher(Arc::downgrade(&notify)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!thread.is_finished(), "the watcher ended by itself");
        drop(stop);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !thread.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "the watcher outlived its source"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        thread.join().unwrap();
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
