//! Handing the heap's free pages back to the system while the relay runs.
//!
//! glibc's malloc keeps what its arenas once held. Under load the relay allocates a download's
//! tunnel frames (up to 256 KiB) and TLS buffers on one thread and frees them on another; after 100
//! browsers had streamed through 1,000 agents' tunnels it stayed at 340–430 MiB with every agent and
//! browser gone (docs/PERFORMANCE.md "Load (issue 14)", with the figures with and without this).
//!
//! # Contract
//! - [`trim`] returns the free pages of every arena to the system (`malloc_trim(0)`, glibc) and
//!   reports the resident size before and after; elsewhere it does nothing and reports zeros.
//! - [`trim_every`] calls it on a blocking thread once per period, for as long as it is polled; the
//!   first call is one period after the start. It frees only memory no allocation holds: nothing
//!   the relay uses changes.

use std::time::Duration;

/// Returns the heap's free pages to the system; the process's resident size before and after
/// (KiB; 0 when unknown).
pub fn trim() -> (u64, u64) {
    let before = rss_kib();
    imp::malloc_trim();
    (before, rss_kib())
}

/// Calls [`trim`] every `every` (on a blocking thread), logging what it gave back.
pub async fn trim_every(every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match tokio::task::spawn_blocking(trim).await {
            Ok((before, after)) if before > after.saturating_add(4096) => {
                tracing::debug!(
                    before_kib = before,
                    after_kib = after,
                    "free heap pages handed back"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "trimming the heap failed"),
        }
    }
}

/// VmRSS of this process (KiB), 0 when unknown.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod imp {
    pub fn malloc_trim() {
        // SAFETY: malloc_trim takes no pointer; it only returns free memory of glibc's arenas to
        // the system, under the arenas' own locks.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn malloc_trim() {}
}

#[cfg(test)]
mod tests {
    use std::hint::black_box;

    #[test]
    fn trimming_after_a_burst_of_freed_buffers_gives_pages_back() {
        // A burst of 64 MiB in 32 KiB buffers (below malloc's mmap threshold, so they come from an
        // arena), each touched; then all but every 64th are freed. The ones kept stand between
        // the freed runs, so free() cannot give them back by shrinking the arena's top: only a
        // trim can. Other tests run in this process at the same time, so the figure asked for is
        // half the burst, far above what they move.
        const BLOCK: usize = 32 * 1024;
        const BLOCKS: usize = 2048;
        let burst: Vec<Vec<u8>> = (0..BLOCKS)
            .map(|i| vec![1 + (i % 250) as u8; BLOCK])
            .collect();
        let (kept, freed): (Vec<_>, Vec<_>) = black_box(burst)
            .into_iter()
            .enumerate()
            .partition(|(i, _)| i % 64 == 63);
        drop(freed);
        let (before, after) = super::trim();
        drop(black_box(kept));
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(before > 0 && after > 0, "VmRSS is readable on Linux");
            let burst_kib = (BLOCK * BLOCKS / 1024) as u64;
            assert!(
                before.saturating_sub(after) >= burst_kib / 2,
                "a trim gives back at least half of a freed {burst_kib} KiB burst: {before} → {after} KiB"
            );
        } else {
            assert_eq!((before, after), (0, 0));
        }
    }
}
