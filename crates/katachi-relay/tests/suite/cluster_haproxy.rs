//! Three `katachi-relay` processes on one PostgreSQL behind Debian's HAProxy (TCP mode, TLS passed
//! through), all on loopback, as a production deployment runs them (issue 14):
//! - the agent dials the load balancer and lands on instance A; a browser talking to instance B
//!   reads a file through A (the internal link);
//! - A is killed (SIGKILL): the agent is back through the load balancer on B, and a browser on C
//!   reads through B; the time from the kill to that read is printed (the issue asks for 2 s);
//! - revoking the agent on C closes its tunnel on B (the agent is refused for good and stops).
//!
//! Needs `/usr/sbin/haproxy` (`scripts/install-deps.sh` installs it) and PostgreSQL
//! (`scripts/with-postgres.sh`). Without them the test fails, saying so.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use katachi_core::api::{router, ApiState, FixedWorkspaces};
use katachi_core::tunnel::{status_channel, NoNetworkChanges, ReconnectOptions};
use reqwest::Client;

use super::relay_child::{free_port, relay_command, Child};
use super::support::{csrf_of, fresh_postgres_database, page_text, registered_agent, TestRelay};
use super::tunnel::dialer;

/// Where the test fails if the agent is not back (slack for a loaded CI machine); the measured
/// time is printed.
const FAIL_AFTER: Duration = Duration::from_secs(10);
/// For a process to start answering.
const STARTUP: Duration = Duration::from_secs(60);

/// One relay instance: its process, public port and data dir.
struct Instance {
    process: Child,
    port: u16,
}

impl Instance {
    /// Starts `katachi-relay` on `port`, sharing `database`, the public URL of the load balancer
    /// and, when given, the first instance's TLS files and master key.
    fn spawn(
        port: u16,
        data_dir: &Path,
        database: &str,
        public_url: &str,
        shared: Option<&Path>,
    ) -> Self {
        let mut command = relay_command(&format!("127.0.0.1:{port}"), data_dir);
        command
            .args(["--database-url", database, "--public-url", public_url])
            .args(["--internal-listen", "127.0.0.1:0", "--drain-timeout", "2"]);
        if let Some(first) = shared {
            let tls = first.join("tls");
            command
                .arg("--tls-cert")
                .arg(tls.join("cert.pem"))
                .arg("--tls-key")
                .arg(tls.join("key.pem"))
                .arg("--master-key-file")
                .arg(first.join("master.key"));
        }
        Self {
            process: Child::spawn(&mut command),
            port,
        }
    }

    fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }
}

/// Waits until `instance` answers `/healthz` over TLS with the shared CA `ca` (it binds its port
/// before it has made or loaded its TLS material and opened the database, so an open port is not
/// yet a relay); fails at once if the process exited.
async fn wait_until_serving(instance: &mut Instance, ca: &Path, what: &str) {
    let deadline = Instant::now() + STARTUP;
    let url = format!("{}/healthz", instance.url());
    loop {
        if let Ok(Some(status)) = instance.process.0.try_wait() {
            panic!("{what} exited before serving: {status}");
        }
        if let Ok(pem) = std::fs::read(ca) {
            let client = Client::builder()
                .use_rustls_tls()
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            if client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{what} never served {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until something accepts on `port`.
async fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + STARTUP;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} never listened on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// HAProxy in TCP mode in front of `backends`: the first one that is up takes every connection
/// (`balance first`), a refused connection is retried on the next (`option redispatch`).
fn haproxy(dir: &Path, front: u16, backends: &[u16]) -> Child {
    let binary = Path::new("/usr/sbin/haproxy");
    assert!(
        binary.is_file(),
        "HAProxy is missing: run scripts/install-deps.sh (Debian's haproxy package)"
    );
    let mut config = format!(
        "global\n  maxconn 2000\n\
         defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 1h\n  timeout server 1h\n  \
         retries 3\n  option redispatch 1\n\
         frontend relay\n  bind 127.0.0.1:{front}\n  default_backend relays\n\
         backend relays\n  balance first\n"
    );
    for (i, port) in backends.iter().enumerate() {
        config.push_str(&format!(
            "  server r{i} 127.0.0.1:{port} check inter 300ms fall 1 rise 1 maxconn 1000\n"
        ));
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let child = Command::new(binary)
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Child(child)
}

/// Polls `url` until it answers `200` with `body`; when it did.
async fn wait_for_body(client: &Client, url: &str, body: &str, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let answer = tokio::time::timeout(Duration::from_secs(2), client.get(url).send()).await;
        if let Ok(Ok(r)) = answer {
            if r.status() == 200 && r.text().await.is_ok_and(|t| t == body) {
                return Some(Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_behind_haproxy_forward_fail_over_and_revoke_across() {
    let tmp = tempfile::tempdir().unwrap();
    let database = fresh_postgres_database().await;
    let front = free_port();
    let public_url = format!("https://localhost:{front}");
    let dirs: Vec<PathBuf> = (0..3).map(|i| tmp.path().join(format!("r{i}"))).collect();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    // The first instance makes the TLS material and master key the others share.
    let mut instances = vec![Instance::spawn(
        ports[0],
        &dirs[0],
        &database,
        &public_url,
        None,
    )];
    let ca = dirs[0].join("tls").join("ca.pem");
    wait_until_serving(&mut instances[0], &ca, "the first relay").await;
    for i in 1..3 {
        instances.push(Instance::spawn(
            ports[i],
            &dirs[i],
            &database,
            &public_url,
            Some(&dirs[0]),
        ));
    }
    for (i, instance) in instances.iter_mut().enumerate() {
        wait_until_serving(instance, &ca, &format!("relay {i}")).await;
    }
    let _balancer = haproxy(tmp.path(), front, &ports);
    wait_for_port(front, "HAProxy").await;

    let mut through_lb = TestRelay::external(public_url.clone(), ca.clone(), dirs[0].clone());
    through_lb.database_url = Some(database.clone());
    let (browser, agent) = registered_agent(&through_lb, "cluster@example.com").await;
    let urls: Vec<String> = instances.iter().map(Instance::url).collect();
    let direct = |i: usize| {
        let mut r = TestRelay::external(urls[i].clone(), ca.clone(), dirs[i].clone());
        r.database_url = Some(database.clone());
        r
    };

    let workspace = tempfile::tempdir().unwrap();
    std::fs::write(workspace.path().join("hello.txt"), b"hello from the agent").unwrap();
    let api = router(ApiState::new(Arc::new(
        FixedWorkspaces::new([workspace.path()]).unwrap(),
    )));
    let dialer = dialer(&through_lb, &agent);
    let (status, _updates) = status_channel();
    let agent_loop = tokio::spawn(async move {
        let options = ReconnectOptions {
            status,
            network: Box::new(NoNetworkChanges),
        };
        dialer.serve_with_reconnect(api, options).await
    });
    let file_on = |i: usize| {
        direct(i).at(&format!(
            "/agents/{}/api/v1/workspaces/1/file?path=hello.txt",
            agent.id
        ))
    };
    // `balance first`: the agent's tunnel is on instance 0; the browser asks instance 1.
    assert!(
        wait_for_body(&browser, &file_on(1), "hello from the agent", STARTUP)
            .await
            .is_some(),
        "a browser on instance 1 never reached the agent on instance 0"
    );

    // Instance 0 dies without a word; the agent comes back through HAProxy on instance 1, and a
    // browser on instance 2 reaches it there.
    let killed_at = Instant::now();
    instances[0].process.kill();
    let back = wait_for_body(&browser, &file_on(2), "hello from the agent", FAIL_AFTER)
        .await
        .expect("the agent was not back through another instance after its instance died");
    eprintln!(
        "agent back through another instance {:.0} ms after SIGKILL of its instance",
        back.duration_since(killed_at).as_secs_f64() * 1e3
    );

    // Revoked on instance 2: instance 1 closes the agent's tunnel, and the agent stops redialing.
    let page = page_text(&browser, direct(2).at("/agents")).await;
    let r = browser
        .post(direct(2).at(&format!("/agents/{}/revoke", agent.id)))
        .form(&[("csrf", csrf_of(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    // The agent's reconnect loop ends: its tunnel was closed and it is refused for good.
    tokio::time::timeout(FAIL_AFTER, agent_loop)
        .await
        .expect("the revoked agent's tunnel stayed open on the instance holding it")
        .unwrap();
}
