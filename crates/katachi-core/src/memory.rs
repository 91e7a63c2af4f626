//! Giving back the pages an idle agent no longer uses.
//!
//! At start-up the agent runs a lot of code once — argument parsing, the store's migrations,
//! SQLCipher's key derivation, the keychain over D-Bus, TLS handshakes — and the kernel maps up to
//! 64 KiB of the program around each page it first touches (fault-around). An idle agent then keeps
//! ~12 MB of its program's pages resident that it does not run again while idle. Clean file pages
//! are cheap for the system (the kernel can drop them under pressure), but they are the agent's
//! resident size, which is what a user sees in a task manager.
//!
//! # Contract
//! - [`release_idle_pages`] (Linux) drops this process's page-table entries for the clean,
//!   read-only pages of its program and its shared libraries (`madvise(MADV_DONTNEED)` on each such
//!   mapping) and hands the heap's free pages back (`malloc_trim(0)`, glibc). The pages stay in the
//!   page cache: code that runs again later faults back in without disk I/O.
//! - Nothing is lost: a mapping is released only if it is private, file-backed, not writable, of
//!   the program itself or a shared object (`*.so*`), and holds no page of its own — `Anonymous:
//!   0 kB` and `Private_Dirty: 0 kB` in `/proc/self/smaps`, i.e. no copied-on-write page such as
//!   relocated read-only data — so every released page is, by construction, the file's content. A
//!   mapping whose figures cannot be read is left alone.
//! - Elsewhere, and when `/proc/self/smaps` cannot be read, it releases nothing and says why.
//! - [`release_when_settled`] calls it once per connection, [`SETTLE`] after the agent came
//!   online (when start-up's work is done) and only if it is still online on that same connection;
//!   it ends when the agent's status channel closes. It adds no wake-up while the agent idles.

use std::time::Duration;

use tokio::sync::watch;

use crate::agent::Status;

/// How long after a connection comes up the agent's start-up pages are released.
pub const SETTLE: Duration = Duration::from_secs(20);

/// What one [`release_idle_pages`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Released {
    /// Mappings whose pages were released.
    pub mappings: usize,
    /// Resident pages of those mappings before (KiB).
    pub file_kib: u64,
    /// The process's resident size before and after (KiB; 0 when unknown).
    pub rss_before_kib: u64,
    /// See `rss_before_kib`.
    pub rss_after_kib: u64,
    /// Why nothing was released, when nothing could be.
    pub skipped: Option<String>,
}

/// Releases the clean pages of the program and its libraries, and the heap's free pages (see the
/// module's contract).
pub fn release_idle_pages() -> Released {
    imp::release_idle_pages()
}

/// Calls [`release_idle_pages`] [`SETTLE`] after each connection came up while it stays up; ends
/// when `status` closes (the agent ended).
pub async fn release_when_settled(status: watch::Receiver<Status>) {
    release_on_settle(status, release_idle_pages).await;
}

/// [`release_when_settled`] with the release as a parameter (tests count the calls).
async fn release_on_settle<F>(mut status: watch::Receiver<Status>, release: F)
where
    F: Fn() -> Released + Clone + Send + 'static,
{
    // the connection (its `since`) whose pages were released, and the pending release's deadline
    let mut released_for: Option<i64> = None;
    let mut pending: Option<(i64, tokio::time::Instant)> = None;
    loop {
        let since = match &*status.borrow_and_update() {
            Status::Connected { since, .. } => Some(*since),
            _ => None,
        };
        pending = match (since, pending) {
            (Some(s), Some((p, deadline))) if s == p => Some((p, deadline)),
            (Some(s), _) if released_for != Some(s) => {
                Some((s, tokio::time::Instant::now() + SETTLE))
            }
            _ => None,
        };
        let Some((connection, deadline)) = pending else {
            if status.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {
                released_for = Some(connection);
                pending = None;
                match tokio::task::spawn_blocking(release.clone()).await {
                    Ok(r) => tracing::debug!(
                        mappings = r.mappings,
                        file_kib = r.file_kib,
                        rss_before_kib = r.rss_before_kib,
                        rss_after_kib = r.rss_after_kib,
                        skipped = r.skipped.as_deref().unwrap_or(""),
                        "released the idle agent's start-up pages"
                    ),
                    Err(e) => tracing::debug!(error = %e, "the page release did not run"),
                }
            }
            changed = status.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// One mapping of `/proc/self/smaps` that may be released.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    rss_kib: u64,
}

/// The mappings of `smaps` that the contract allows releasing, `exe` being the program's path.
fn releasable(smaps: &str, exe: &str) -> Vec<Mapping> {
    let mut out = Vec::new();
    let mut current: Option<Candidate> = None;
    for line in smaps.lines() {
        if let Some(header) = parse_header(line) {
            if let Some(done) = current.take().and_then(Candidate::finish) {
                out.push(done);
            }
            current = header.eligible(exe).then_some(Candidate {
                start: header.start,
                end: header.end,
                rss_kib: None,
                anonymous_kib: None,
                private_dirty_kib: None,
            });
            continue;
        }
        let Some(candidate) = current.as_mut() else {
            continue;
        };
        let mut fields = line.split_whitespace();
        let (Some(name), Some(value)) = (fields.next(), fields.next()) else {
            continue;
        };
        let slot = match name {
            "Rss:" => &mut candidate.rss_kib,
            "Anonymous:" => &mut candidate.anonymous_kib,
            "Private_Dirty:" => &mut candidate.private_dirty_kib,
            _ => continue,
        };
        *slot = value.parse().ok();
    }
    if let Some(done) = current.and_then(Candidate::finish) {
        out.push(done);
    }
    out
}

/// A mapping's header line: `start-end perms offset dev inode [path]`.
struct Header<'a> {
    start: usize,
    end: usize,
    perms: &'a str,
    inode: &'a str,
    path: &'a str,
}

fn parse_header(line: &str) -> Option<Header<'_>> {
    let mut parts = line.splitn(6, ' ');
    let range = parts.next()?;
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = parts.next()?;
    let _offset = parts.next()?;
    let _dev = parts.next()?;
    let inode = parts.next()?;
    let path = parts.next().unwrap_or("").trim_start();
    (perms.len() == 4 && end > start).then_some(Header {
        start,
        end,
        perms,
        inode,
        path,
    })
}

impl Header<'_> {
    /// Private, file-backed, not writable, of the program or a shared object.
    fn eligible(&self, exe: &str) -> bool {
        let bytes = self.perms.as_bytes();
        let private_read_only = bytes.first() == Some(&b'r')
            && bytes.get(1) == Some(&b'-')
            && bytes.get(3) == Some(&b'p');
        let file_backed = self.inode != "0" && self.path.starts_with('/');
        let file_name = self.path.rsplit('/').next().unwrap_or("");
        let image = (!exe.is_empty() && self.path == exe)
            || file_name.ends_with(".so")
            || file_name.contains(".so.");
        private_read_only && file_backed && image && !self.path.ends_with(" (deleted)")
    }
}

/// An eligible mapping while its fields are read.
struct Candidate {
    start: usize,
    end: usize,
    rss_kib: Option<u64>,
    anonymous_kib: Option<u64>,
    private_dirty_kib: Option<u64>,
}

impl Candidate {
    /// Kept only when every figure was read, it holds no page of its own, and something is
    /// resident.
    fn finish(self) -> Option<Mapping> {
        let rss_kib = self.rss_kib?;
        (self.anonymous_kib? == 0 && self.private_dirty_kib? == 0 && rss_kib > 0).then_some(
            Mapping {
                start: self.start,
                end: self.end,
                rss_kib,
            },
        )
    }
}

// madvise and malloc_trim: the module's two system calls, each with its SAFETY argument
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod imp {
    use super::{releasable, Released};

    pub fn release_idle_pages() -> Released {
        let rss_before_kib = rss_kib();
        let smaps = match std::fs::read_to_string("/proc/self/smaps") {
            Ok(s) => s,
            Err(e) => {
                return Released {
                    rss_before_kib,
                    rss_after_kib: rss_before_kib,
                    skipped: Some(format!("cannot read /proc/self/smaps: {e}")),
                    ..Released::default()
                }
            }
        };
        let exe = std::fs::read_link("/proc/self/exe")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut released = Released {
            rss_before_kib,
            ..Released::default()
        };
        for mapping in releasable(&smaps, &exe) {
            // SAFETY: the range is one whole mapping of this process, read from smaps just now:
            // private, file-backed, not writable, with no anonymous (copied-on-write) or dirty
            // page. MADV_DONTNEED on such a mapping only drops page-table entries; the next access
            // maps the same file page again, so no content changes. A range that was unmapped in
            // between makes madvise fail (ENOMEM), which is ignored.
            let rc = unsafe {
                libc::madvise(
                    mapping.start as *mut libc::c_void,
                    mapping.end - mapping.start,
                    libc::MADV_DONTNEED,
                )
            };
            if rc == 0 {
                released.mappings += 1;
                released.file_kib += mapping.rss_kib;
            }
        }
        trim_heap();
        released.rss_after_kib = rss_kib();
        released
    }

    #[cfg(target_env = "gnu")]
    fn trim_heap() {
        // SAFETY: malloc_trim only returns free memory of glibc's arenas to the system.
        unsafe {
            libc::malloc_trim(0);
        }
    }

    #[cfg(not(target_env = "gnu"))]
    fn trim_heap() {}

    /// VmRSS of this process (KiB), 0 when unknown.
    pub(super) fn rss_kib() -> u64 {
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
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::Released;

    pub fn release_idle_pages() -> Released {
        // keeps the parser compiled (and tested) on every platform
        let _ = super::releasable;
        Released {
            skipped: Some("releasing idle pages is implemented on Linux only".to_owned()),
            ..Released::default()
        }
    }
}

#[cfg(test)]
#[allow(unsafe_code)] // the tests map files by hand to check what a release keeps
#[path = "memory_tests.rs"]
mod tests;
