//! The browsers of the `fleet` part: signed-in users, each on a browser-like HTTP/2 connection of
//! its own to the relay (`browser.rs`), downloading a file from their own agent through its tunnel
//! again and again for a phase's duration. They run on one thread with a single-threaded runtime
//! ("browsers"), as a browser's network service is one process; their connections are kept from
//! one phase to the next, as a page that stays open keeps its connection.

use std::time::{Duration, Instant};

use crate::agent;
use crate::browser::{Fetched, H2Browser};
use crate::load::{Latencies, RuntimeThread};
use crate::relay_process::SeededUser;

/// Longest one download may take before it counts as failed (and its connection is dropped).
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Most downloads one browser makes in a phase (a bound on every loop).
const MAX_FETCHES: usize = 1_000_000;

/// One download as the browser saw it.
pub struct Download {
    /// Its timings, or what went wrong.
    pub result: Result<Fetched, String>,
}

/// A browser and the file it downloads.
struct Browser {
    h2: H2Browser,
    url: String,
}

/// The browsers of the run.
pub struct Browsers {
    thread: RuntimeThread,
    /// The browsers between phases.
    idle: Vec<Browser>,
}

impl Browsers {
    /// One browser per user in `users`, signed in as that user, downloading `path` (an agent API
    /// path) from the user's agent through the relay at `relay_url` (trusting `ca_pem`).
    pub fn new(relay_url: &str, ca_pem: &str, users: &[SeededUser], path: &str) -> Self {
        let idle = users
            .iter()
            .map(|user| Browser {
                h2: H2Browser::new(relay_url, ca_pem, agent::session_cookie(&user.session)),
                url: format!("{relay_url}/agents/{}/api{path}", user.agent.id),
            })
            .collect();
        Self {
            thread: RuntimeThread::start("browsers"),
            idle,
        }
    }

    /// How many browsers there are.
    pub fn len(&self) -> usize {
        self.idle.len()
    }

    /// Every browser downloads its file back to back until `until`, each reading at most `pace`
    /// bytes a second when given; all their downloads.
    pub async fn stream_until(&mut self, until: Instant, pace: Option<f64>) -> Vec<Download> {
        let mut tasks = Vec::with_capacity(self.idle.len());
        for mut browser in self.idle.drain(..) {
            tasks.push(self.thread.handle().spawn(async move {
                let mut downloads = Vec::new();
                for _ in 0..MAX_FETCHES {
                    if Instant::now() >= until {
                        break;
                    }
                    let result = match tokio::time::timeout(
                        FETCH_TIMEOUT,
                        browser.h2.fetch(&browser.url, pace),
                    )
                    .await
                    {
                        Ok(result) => result,
                        Err(_) => {
                            browser.h2.disconnect();
                            Err(format!("no end within {FETCH_TIMEOUT:?}"))
                        }
                    };
                    downloads.push(Download { result });
                }
                (browser, downloads)
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            let (browser, downloads) = task.await.unwrap();
            self.idle.push(browser);
            all.extend(downloads);
        }
        all
    }
}

/// Downloads of one phase, summed up.
pub struct Streamed {
    /// Time from sending each to its response's headers.
    pub headers: Latencies,
    /// Time from sending each to its body's first byte.
    pub first_byte: Latencies,
    /// Time from sending each to its body's end.
    pub total: Latencies,
    /// Body bytes of the successful downloads.
    pub bytes: u64,
}

impl Streamed {
    /// Sums up `downloads` of `size` bytes each, made over `elapsed` (a shorter body is a failure).
    pub fn of(downloads: &[Download], size: u64, elapsed: Duration) -> Self {
        let (mut headers, mut first, mut total, mut bytes) =
            (Vec::new(), Vec::new(), Vec::new(), 0);
        let (mut errors, mut first_error) = (0, None);
        for d in downloads {
            match &d.result {
                Ok(f) if f.bytes != size => {
                    errors += 1;
                    first_error.get_or_insert_with(|| format!("{} of {size} bytes", f.bytes));
                }
                Ok(f) => {
                    headers.push(f.headers);
                    first.push(f.first_byte);
                    total.push(f.total);
                    bytes += f.bytes;
                }
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert_with(|| e.clone());
                }
            }
        }
        let latencies = |mut samples: Vec<Duration>| {
            samples.sort();
            Latencies {
                sent: downloads.len(),
                errors,
                first_error: first_error.clone(),
                elapsed,
                samples,
            }
        };
        Self {
            headers: latencies(headers),
            first_byte: latencies(first),
            total: latencies(total),
            bytes,
        }
    }

    /// MiB per second over the phase.
    pub fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / f64::from(1u32 << 20) / self.total.elapsed.as_secs_f64().max(1e-9)
    }
}
