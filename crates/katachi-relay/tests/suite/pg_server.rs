//! A PostgreSQL server of the test's own (like `scripts/with-postgres.sh`, but one the test may stop
//! and restart): `initdb` into a temp dir, `pg_ctl start` on a free loopback port, as the `postgres`
//! user when the test runs as root (PostgreSQL refuses root). Stopped and removed on drop.

use std::path::PathBuf;
use std::process::Command;

/// How `pg_ctl` stops the server (`-m`).
#[derive(Debug, Clone, Copy)]
pub enum StopMode {
    /// Disconnects clients, shuts down cleanly.
    Fast,
    /// Aborts at once, like a crash: recovery runs at the next start.
    Immediate,
}

impl StopMode {
    fn flag(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Immediate => "immediate",
        }
    }
}

/// A running (or stopped) server.
pub struct PgServer {
    /// The server binaries (`/usr/lib/postgresql/N/bin`).
    bindir: PathBuf,
    /// Data dir, log and socket dir live here.
    dir: tempfile::TempDir,
    /// Its TCP port on 127.0.0.1.
    port: u16,
    /// Run the binaries as `postgres` (this process is root).
    as_postgres: bool,
}

impl PgServer {
    /// Creates and starts a server.
    pub fn start() -> Self {
        let bindir = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|dirs| {
                let mut versions: Vec<PathBuf> = dirs
                    .flatten()
                    .map(|d| d.path().join("bin"))
                    .filter(|b| b.join("pg_ctl").is_file())
                    .collect();
                versions.sort();
                versions.pop()
            })
            .expect("PostgreSQL server binaries not found: install postgresql (`make deps`)");
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        if as_postgres {
            let status = Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "cannot hand {:?} to postgres", dir.path());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = Self {
            bindir,
            dir,
            port,
            as_postgres,
        };
        let data = server.data_dir();
        server.run(
            "initdb",
            &["-D", &data, "-U", "katachi", "-A", "trust", "--no-sync"],
        );
        server.start_again();
        server
    }

    /// `postgres://katachi@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://katachi@127.0.0.1:{}/postgres", self.port)
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// A server binary, run as `postgres` when this process is root.
    fn command(&self, binary: &str) -> Command {
        let program = self.bindir.join(binary);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        }
    }

    /// The server's settings (`pg_ctl -o`) and its log file.
    fn options_and_log(&self) -> (String, String) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -k {} -c fsync=off -c max_connections=100",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        (options, log)
    }

    /// Runs a server binary to its end; panics with its output when it fails.
    fn run(&self, binary: &str, args: &[&str]) {
        let out = self.command(binary).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{binary} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `pg_ctl start` (waits until it accepts connections).
    pub fn start_again(&self) {
        let (options, log) = self.options_and_log();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir(),
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        );
    }

    /// `pg_ctl stop -m MODE` (waits until it is down).
    pub fn stop(&self, mode: StopMode) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir(),
                "-m",
                mode.flag(),
                "-w",
                "-t",
                "60",
                "stop",
            ],
        );
    }

    /// `pg_ctl restart -m MODE`: down and up again in one step.
    pub fn restart(&self, mode: StopMode) {
        let (options, log) = self.options_and_log();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir(),
                "-l",
                &log,
                "-m",
                mode.flag(),
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "restart",
            ],
        );
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
    }
}
