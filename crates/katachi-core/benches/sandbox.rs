//! Figures of the sandbox (issue 5, "Figures"), every comparison measured in the same run:
//! - spawn + wait of `/bin/true`: bare `std::process::Command` vs the sandbox (target: + ≤ 2 ms),
//!   with `tokio::process` (the sandbox's own spawn path, no layers) and `bwrap` (when installed)
//!   as reference points;
//! - throughput of `cat` of a 1 GiB file, its output read to the end, two comparisons
//!   (target ≥ 0.95×):
//!   - (a) product path: the sandboxed run, its output read by the sandbox's pump (1 MiB pipe,
//!     reads of up to 256 KiB, a channel of 16 chunks) vs the same `cat` run bare, its pipe read
//!     by a plain blocking loop: with the pipe the kernel gives (what a plain program gets) and,
//!     the stricter baseline, with the same 1 MiB pipe;
//!   - (b) sandbox-only effect: the same pump on both sides (outside: a copy of the pump's
//!     settings on a bare `cat`), so only the kernel layers differ.
//!
//!   The file holds real data (not sparse), written once into a temp workspace and deleted at
//!   the end.
//!
//! The interleaved lines print the load average before and after, since the machine is shared.
//!
//! Linux only (the other backends cannot run here). `make bench-sandbox`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[cfg(target_os = "linux")]
mod linux {
    use std::io::{Read, Write};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use criterion::{black_box, Criterion, Throughput};
    use katachi_core::sandbox::{Limits, RunRequest, Sandbox, SandboxPolicy};

    const BIG_FILE_BYTES: u64 = 1 << 30;

    fn policy(ws: &Path, command: &str) -> SandboxPolicy {
        let limits = Limits {
            output_bytes: 2 << 30,
            ..Limits::default()
        };
        SandboxPolicy::builder()
            .workspace(ws, false)
            .allow_command(command)
            .limits(limits)
            .build()
            .unwrap()
    }

    /// A workspace outside `/tmp` itself (which the policy refuses), under the target folder so a
    /// 1 GiB file does not land on a small tmpfs.
    /// `KATACHI_BENCH_DIR` overrides the base (e.g. to run the bench as another user).
    fn workspace() -> tempfile::TempDir {
        let base = std::env::var_os("KATACHI_BENCH_DIR").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/tmp"),
            PathBuf::from,
        );
        std::fs::create_dir_all(&base).unwrap();
        tempfile::Builder::new()
            .prefix("bench-sandbox-")
            .tempdir_in(base)
            .unwrap()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    pub fn spawn(c: &mut Criterion) {
        let ws = workspace();
        let sandbox = Sandbox::probe();
        let policy = policy(ws.path(), "true");
        let request = RunRequest {
            command: "true".to_owned(),
            args: Vec::new(),
            cwd: ws.path().to_owned(),
        };
        let rt = runtime();
        let mut g = c.benchmark_group("spawn_true");
        g.measurement_time(Duration::from_secs(8));
        g.bench_function("bare_std", |b| {
            b.iter(|| {
                let s = Command::new("/bin/true").status().unwrap();
                assert!(s.success());
            })
        });
        g.bench_function("bare_tokio_piped", |b| {
            b.iter(|| {
                rt.block_on(async {
                    let out = tokio::process::Command::new("/bin/true")
                        .stdin(Stdio::null())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .output()
                        .await
                        .unwrap();
                    assert!(out.status.success());
                })
            })
        });
        g.bench_function("sandboxed", |b| {
            b.iter(|| {
                rt.block_on(async {
                    let outcome = sandbox.spawn(&policy, &request).unwrap().wait().await;
                    assert_eq!(outcome.exit.shell_code(), 0, "{outcome:?}");
                })
            })
        });
        if Path::new("/usr/bin/bwrap").exists() {
            let ws_path = ws.path().to_owned();
            g.bench_function("bwrap", |b| {
                b.iter(|| {
                    let s = bwrap(&ws_path).arg("/bin/true").status().unwrap();
                    assert!(s.success());
                })
            });
        }
        g.finish();

        // Same run, interleaved (the machine is shared: load moves between criterion's groups):
        // median of each, alternating one bare, one sandboxed, one bwrap spawn.
        let has_bwrap = Path::new("/usr/bin/bwrap").exists();
        let load_before = load_average();
        let spawn_bare = || assert!(Command::new("/bin/true").status().unwrap().success());
        let spawn_boxed = || {
            rt.block_on(async {
                let outcome = sandbox.spawn(&policy, &request).unwrap().wait().await;
                assert_eq!(outcome.exit.shell_code(), 0);
            })
        };
        let (mut bare, mut boxed, mut bw) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS_SPAWN {
            bare.push(timed(spawn_bare));
            boxed.push(timed(spawn_boxed));
            if has_bwrap {
                bw.push(timed(|| {
                    assert!(bwrap(ws.path())
                        .arg("/bin/true")
                        .status()
                        .unwrap()
                        .success())
                }));
            }
        }
        let (bare, boxed) = (median(&mut bare), median(&mut boxed));
        // SAFETY: getuid cannot fail and touches no memory.
        #[allow(unsafe_code)]
        let uid = unsafe { libc::getuid() };
        println!(
            "spawn_true interleaved ({ROUNDS_SPAWN} rounds, medians, uid {uid}, load {load_before} -> {}): \
             bare {bare:?}, sandboxed {boxed:?} (+{:?}){}",
            load_average(),
            boxed.saturating_sub(bare),
            if has_bwrap {
                let bw = median(&mut bw);
                format!(", bwrap {bw:?} (+{:?})", bw.saturating_sub(bare))
            } else {
                String::new()
            }
        );

        // The agent is a bigger process than this bench (the tray's toolkit, caches): with a
        // 256 MiB heap, a spawn that copied the agent's page tables (fork) would cost many times
        // more; the sandbox's clones share them, so this must stay close to the line above.
        let mut ballast = vec![0u8; HEAP_BALLAST_BYTES];
        for page in ballast.chunks_mut(4096) {
            page[0] = 1;
        }
        let (mut bare, mut boxed) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS_SPAWN_BALLAST {
            bare.push(timed(spawn_bare));
            boxed.push(timed(spawn_boxed));
        }
        let (bare, boxed) = (median(&mut bare), median(&mut boxed));
        println!(
            "spawn_true with a {} MiB heap ({ROUNDS_SPAWN_BALLAST} rounds, medians, load {}): bare {bare:?}, sandboxed {boxed:?} (+{:?})",
            HEAP_BALLAST_BYTES >> 20,
            load_average(),
            boxed.saturating_sub(bare),
        );
        black_box(&ballast);
    }

    const ROUNDS_SPAWN: usize = 300;
    const ROUNDS_SPAWN_BALLAST: usize = 100;
    /// Heap of the "bigger agent" comparison.
    const HEAP_BALLAST_BYTES: usize = 256 << 20;
    /// The pump's settings (`OUTPUT_PIPE_BYTES` in `sandbox/linux/spawn.rs`, `MAX_CHUNK_BYTES` in
    /// `sandbox/child.rs`), mirrored for the bare side of comparison (b).
    const PUMP_PIPE_BYTES: libc::c_int = 1 << 20;
    const PUMP_CHUNK_BYTES: usize = 256 * 1024;

    /// The 1-minute load average, to note how busy the shared machine was.
    fn load_average() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_owned))
            .unwrap_or_default()
    }
    const ROUNDS_CAT: usize = 9;

    fn timed(f: impl FnOnce()) -> Duration {
        let start = std::time::Instant::now();
        f();
        start.elapsed()
    }

    fn median(v: &mut [Duration]) -> Duration {
        v.sort();
        v[v.len() / 2]
    }

    /// A bubblewrap run with comparable isolation: user, PID, network, mount, IPC, UTS namespaces,
    /// system folders read-only, the workspace read-write, a fresh /proc, /dev and /tmp.
    fn bwrap(ws: &Path) -> Command {
        let mut cmd = Command::new("/usr/bin/bwrap");
        cmd.args(["--unshare-all", "--die-with-parent", "--new-session"])
            .args(["--ro-bind", "/usr", "/usr"])
            .args(["--symlink", "usr/bin", "/bin"])
            .args(["--symlink", "usr/lib", "/lib"])
            .args(["--symlink", "usr/lib64", "/lib64"])
            .args(["--ro-bind", "/etc", "/etc"])
            .args(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"])
            .arg("--bind")
            .arg(ws)
            .arg(ws)
            .arg("--chdir")
            .arg(ws)
            .env_clear();
        cmd
    }

    /// Writes `BIG_FILE_BYTES` of incompressible-looking data (real blocks, not a sparse file).
    fn write_big_file(path: &Path) {
        let mut f =
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
        let mut block = vec![0u8; 1 << 20];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        for i in 0..(BIG_FILE_BYTES >> 20) {
            block[0..8].copy_from_slice(&i.to_le_bytes());
            f.write_all(&block).unwrap();
        }
        f.flush().unwrap();
        f.get_ref().sync_all().unwrap();
    }

    /// `cat FILE` in a plain process, its pipe read by this thread in a blocking loop of
    /// 256 KiB reads; the pipe as the kernel makes it (64 KiB) or grown to `pipe_bytes`.
    fn cat_outside(file: &Path, pipe_bytes: Option<libc::c_int>) {
        use std::os::fd::AsRawFd;
        let mut child = Command::new("/bin/cat")
            .arg(file)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        if let Some(bytes) = pipe_bytes {
            grow_pipe(out.as_raw_fd(), bytes);
        }
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = out.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        assert!(child.wait().unwrap().success());
        assert_eq!(black_box(total), BIG_FILE_BYTES);
    }

    /// Grows the pipe `fd` (owned by this process) to `bytes`, as the sandbox's backend does.
    fn grow_pipe(fd: std::os::fd::RawFd, bytes: libc::c_int) {
        // SAFETY: fcntl on a pipe descriptor this process owns, integer argument.
        #[allow(unsafe_code)]
        let r = unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, bytes) };
        assert!(r >= bytes, "F_SETPIPE_SZ failed");
    }

    /// `cat FILE` in the sandbox, its output streamed by `SandboxChild` and counted.
    async fn cat_inside(sandbox: &Sandbox, policy: &SandboxPolicy, request: &RunRequest) {
        let mut child = sandbox.spawn(policy, request).unwrap();
        let mut total = 0u64;
        while let Some(ev) = child.next_output().await {
            total += ev.data.len() as u64;
        }
        let outcome = child.wait().await;
        assert_eq!(outcome.exit.shell_code(), 0, "{outcome:?}");
        assert_eq!(black_box(total), BIG_FILE_BYTES);
    }

    /// `cat FILE` run bare, read the way the sandbox's pump reads (`sandbox/child.rs`): pipe
    /// grown to `pipe_bytes` (the backend asks 1 MiB), a fresh buffer of up to `chunk` bytes per
    /// read handed over without a copy, a channel of 16 chunks, a consumer that counts.
    async fn stream_cat(file: &Path, pipe_bytes: Option<libc::c_int>, chunk: usize) {
        use std::os::fd::AsRawFd;
        use tokio::io::AsyncReadExt;
        let mut child = tokio::process::Command::new("/bin/cat")
            .arg(file)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        if let Some(bytes) = pipe_bytes {
            grow_pipe(out.as_raw_fd(), bytes);
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
        let pump = tokio::spawn(async move {
            loop {
                let mut buf = Vec::with_capacity(chunk);
                let n = out.read_buf(&mut buf).await.unwrap();
                if buf.len() < chunk / 4 {
                    buf.shrink_to_fit();
                }
                if n == 0 || tx.send(buf).await.is_err() {
                    break;
                }
            }
        });
        let mut total = 0u64;
        while let Some(chunk) = rx.recv().await {
            total += chunk.len() as u64;
        }
        pump.await.unwrap();
        assert!(child.wait().await.unwrap().success());
        assert_eq!(black_box(total), BIG_FILE_BYTES);
    }

    pub fn cat_throughput(c: &mut Criterion) {
        let ws = workspace();
        let file = ws.path().join("big.bin");
        write_big_file(&file);
        let sandbox = Sandbox::probe();
        let policy = policy(ws.path(), "cat");
        let request = RunRequest {
            command: "cat".to_owned(),
            args: vec![file.clone().into_os_string()],
            cwd: ws.path().to_owned(),
        };
        let rt = runtime();
        let mut g = c.benchmark_group("cat_1gib");
        g.sample_size(10)
            .measurement_time(Duration::from_secs(20))
            .throughput(Throughput::Bytes(BIG_FILE_BYTES));
        g.bench_function("outside_blocking_loop", |b| {
            b.iter(|| cat_outside(&file, None))
        });
        g.bench_function("outside_blocking_loop_1mib_pipe", |b| {
            b.iter(|| cat_outside(&file, Some(PUMP_PIPE_BYTES)))
        });
        // the product's pump on a bare `cat`; and the pump as it was before (default 64 KiB pipe,
        // 64 KiB reads), for reference
        for (name, pipe_bytes, chunk) in [
            ("outside_same_pump", Some(PUMP_PIPE_BYTES), PUMP_CHUNK_BYTES),
            ("outside_old_pump_64k", None, 64 * 1024),
        ] {
            g.bench_function(name, |b| {
                b.iter(|| rt.block_on(stream_cat(&file, pipe_bytes, chunk)))
            });
        }
        g.bench_function("inside", |b| {
            b.iter(|| rt.block_on(cat_inside(&sandbox, &policy, &request)))
        });
        g.finish();

        // Same run, interleaved rounds: outside (blocking loop, default and 1 MiB pipe), outside
        // (same pump), inside
        let load_before = load_average();
        let (mut outside, mut outside_big, mut streamed, mut inside) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS_CAT {
            outside.push(timed(|| cat_outside(&file, None)));
            outside_big.push(timed(|| cat_outside(&file, Some(PUMP_PIPE_BYTES))));
            streamed.push(timed(|| {
                rt.block_on(stream_cat(&file, Some(PUMP_PIPE_BYTES), PUMP_CHUNK_BYTES))
            }));
            inside.push(timed(|| {
                rt.block_on(cat_inside(&sandbox, &policy, &request))
            }));
        }
        let (o, ob, s, i) = (
            median(&mut outside),
            median(&mut outside_big),
            median(&mut streamed),
            median(&mut inside),
        );
        let gibps = |d: Duration| BIG_FILE_BYTES as f64 / d.as_secs_f64() / f64::from(1u32 << 30);
        println!(
            "cat_1gib interleaved ({ROUNDS_CAT} rounds, medians, load {load_before} -> {}): \
             inside {i:?} ({:.2} GiB/s), outside blocking loop {o:?} ({:.2} GiB/s), \
             same with a 1 MiB pipe {ob:?} ({:.2} GiB/s), outside same pump {s:?} ({:.2} GiB/s)\n  \
             (a) product path, inside/outside blocking loop = {:.2}x (default pipe), \
             {:.2}x (1 MiB pipe)\n  \
             (b) sandbox only, inside/outside same pump = {:.2}x",
            load_average(),
            gibps(i),
            gibps(o),
            gibps(ob),
            gibps(s),
            o.as_secs_f64() / i.as_secs_f64(),
            ob.as_secs_f64() / i.as_secs_f64(),
            s.as_secs_f64() / i.as_secs_f64(),
        );
        // free the disk at once (the TempDir would too, at the end of the process)
        std::fs::remove_file(&file).unwrap();
    }
}

#[cfg(target_os = "linux")]
criterion::criterion_group!(benches, linux::spawn, linux::cat_throughput);

#[cfg(not(target_os = "linux"))]
fn benches() {}

criterion::criterion_main!(benches);
