//! Load shapes: an open-loop request stream at a fixed rate (latency percentiles), and one large
//! streamed download (throughput).

use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

/// Latencies of one open-loop run.
#[derive(Clone)]
pub struct Latencies {
    /// Requests scheduled.
    pub sent: usize,
    /// Requests that failed (transport error or a non-2xx status).
    pub errors: usize,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Wall time from the first send to the last answer.
    pub elapsed: Duration,
    /// Each successful request, from its send to the end of its body.
    pub samples: Vec<Duration>,
}

impl Latencies {
    /// Runs made in several parts, as one.
    pub fn merge(parts: Vec<Latencies>) -> Latencies {
        let mut all = Latencies {
            sent: 0,
            errors: 0,
            first_error: None,
            elapsed: Duration::ZERO,
            samples: Vec::new(),
        };
        for p in parts {
            all.sent += p.sent;
            all.errors += p.errors;
            all.first_error = all.first_error.or(p.first_error);
            all.elapsed += p.elapsed;
            all.samples.extend(p.samples);
        }
        all.samples.sort();
        all
    }

    /// The `p` quantile (0–1) in milliseconds.
    pub fn quantile_ms(&self, p: f64) -> f64 {
        if self.samples.is_empty() {
            return f64::NAN;
        }
        let i = ((self.samples.len() as f64 * p) as usize).min(self.samples.len() - 1);
        self.samples[i].as_secs_f64() * 1e3
    }

    /// Completed requests per second.
    pub fn rate(&self) -> f64 {
        self.samples.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// One line: count, achieved rate, p50/p90/p99/p99.9/max.
    pub fn line(&self, name: &str) -> String {
        format!(
            "{name:<28} {:>6} ok {:>4} err {:>7.0} req/s   p50 {:>6.3} ms  p90 {:>6.3} ms  p99 {:>6.3} ms  p99.9 {:>6.3} ms  max {:>7.3} ms",
            self.samples.len(),
            self.errors,
            self.rate(),
            self.quantile_ms(0.50),
            self.quantile_ms(0.90),
            self.quantile_ms(0.99),
            self.quantile_ms(0.999),
            self.quantile_ms(1.0),
        )
    }
}

/// Sends `GET url` at `rate` per second for `duration`, whether or not earlier requests have been
/// answered (open loop: a slow answer does not slow the schedule down), then waits for the
/// stragglers (at most 30 s).
pub async fn open_loop(
    client: &reqwest::Client,
    url: &str,
    rate: u32,
    duration: Duration,
) -> Latencies {
    let total = (f64::from(rate) * duration.as_secs_f64()).round() as usize;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    // Behind schedule (a busy core): send the missed requests at once, keeping the average rate.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut tasks = JoinSet::new();
    let mut samples = Vec::with_capacity(total);
    let mut errors = Vec::new();
    let mut record = |r: Result<Result<Duration, String>, tokio::task::JoinError>| match r {
        Ok(Ok(d)) => samples.push(d),
        Ok(Err(e)) => errors.push(e),
        Err(e) => errors.push(e.to_string()),
    };
    let start = Instant::now();
    for _ in 0..total {
        ticks.tick().await;
        let (client, url) = (client.clone(), url.to_owned());
        tasks.spawn(async move {
            let t = Instant::now();
            let response = client.get(&url).send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response.bytes().await.map_err(|e| e.to_string())?;
            if !status.is_success() {
                return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
            }
            Ok(t.elapsed())
        });
        while let Some(done) = tasks.try_join_next() {
            record(done);
        }
    }
    let drain = async {
        while let Some(done) = tasks.join_next().await {
            record(done);
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), drain)
        .await
        .is_err()
    {
        errors.push("requests still unanswered 30 s after the run".to_owned());
    }
    let elapsed = start.elapsed();
    samples.sort();
    Latencies {
        sent: total,
        errors: errors.len(),
        first_error: errors.into_iter().next(),
        elapsed,
        samples,
    }
}

/// Downloads `url` (expecting exactly `size` bytes), consuming the body as it streams; MiB/s.
pub async fn download(client: &reqwest::Client, url: &str, size: u64) -> f64 {
    let start = Instant::now();
    let mut response = client.get(url).send().await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "{}",
        response.text().await.unwrap_or_default()
    );
    let mut got = 0u64;
    while let Some(chunk) = response.chunk().await.unwrap() {
        got += chunk.len() as u64;
    }
    assert_eq!(got, size, "the download was cut short");
    size as f64 / (1024.0 * 1024.0) / start.elapsed().as_secs_f64()
}

/// The downloading clients on a thread and single-threaded runtime of their own, as a browser's
/// network service is a process of its own: their connection tasks and the body reader wake each
/// other on that thread, not across the agent's runtime (which this process also hosts).
pub struct ClientThread {
    jobs: std::sync::mpsc::Sender<(bool, String, u64, std::sync::mpsc::Sender<f64>)>,
}

/// Starts a thread named `name` that runs `body` with a single-threaded tokio runtime of its own.
pub fn runtime_thread(name: &str, body: impl FnOnce(tokio::runtime::Runtime) + Send + 'static) {
    let name = name.to_owned();
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                // its blocking pool (file reads) is told apart from other threads in CPU figures
                .thread_name(format!("{name}-blk"))
                .enable_all()
                .build()
                .unwrap();
            body(rt);
        })
        .unwrap();
}

/// A thread running a single-threaded runtime of its own until this is dropped; tasks are spawned
/// on it through [`RuntimeThread::handle`].
pub struct RuntimeThread {
    handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl RuntimeThread {
    /// Starts the thread, named `name`.
    pub fn start(name: &str) -> Self {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        runtime_thread(name, move |rt| {
            let _ = handle_tx.send(rt.handle().clone());
            rt.block_on(async {
                let _ = stopped.await;
            });
        });
        Self {
            handle: handle_rx.recv().unwrap(),
            _stop: stop,
        }
    }

    /// Where to spawn tasks that run on this thread.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl ClientThread {
    /// Starts the thread with the direct path's client and the browser of the tunnel path.
    pub fn start(direct: reqwest::Client, mut browser: crate::browser::H2Browser) -> Self {
        let (jobs, rx) =
            std::sync::mpsc::channel::<(bool, String, u64, std::sync::mpsc::Sender<f64>)>();
        runtime_thread("client", move |rt| {
            while let Ok((via_browser, url, size, done)) = rx.recv() {
                let speed = if via_browser {
                    rt.block_on(browser.download(&url, size))
                } else {
                    rt.block_on(download(&direct, &url, size))
                };
                let _ = done.send(speed);
            }
        });
        Self { jobs }
    }

    /// Downloads `url` on the client thread (`via_browser`: the tunnel path's browser); MiB/s.
    pub async fn download(&self, via_browser: bool, url: &str, size: u64) -> f64 {
        let (tx, rx) = std::sync::mpsc::channel();
        self.jobs
            .send((via_browser, url.to_owned(), size, tx))
            .unwrap();
        tokio::task::spawn_blocking(move || rx.recv().unwrap())
            .await
            .unwrap()
    }
}

/// Writes a `mib` MiB file of non-repeating bytes (nothing on the path compresses, but be honest).
pub fn write_big_file(path: &std::path::Path, mib: usize) {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..mib {
        for b in block.iter_mut() {
            // xorshift: cheap bytes that do not repeat within the file
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        file.write_all(&block).unwrap();
    }
    file.flush().unwrap();
}

/// The median of `v` (sorted in place).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
