//! Part `cluster` (issue 14): two relay processes on one PostgreSQL behind HAProxy, the agent's
//! tunnel on instance A. The same `GET /v1/status` open loop is sent through HAProxy to A (the
//! tunnel is there: the direct path) and through HAProxy to B (B forwards over the internal link:
//! the forwarded path), alternating halves. Target: the forwarded path adds ≤ 1 ms at p50.
//!
//! Needs PostgreSQL (`KATACHI_TEST_POSTGRES_URL`, as `scripts/with-postgres.sh` sets it) and
//! `/usr/sbin/haproxy`; without them the part says so and is skipped.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::load::{open_loop, Latencies};
use crate::relay_process::{seed_on, RelayProcess};
use crate::{agent, env_or};

/// HAProxy in TCP mode: `front_a` → `a`, `front_b` → `b`.
fn haproxy(dir: &Path, fronts: [(u16, &str); 2]) -> tokio::process::Child {
    let mut config = "global\n  maxconn 4000\ndefaults\n  mode tcp\n  timeout connect 1s\n  \
                      timeout client 1h\n  timeout server 1h\n"
        .to_owned();
    for (i, (front, backend)) in fronts.iter().enumerate() {
        config.push_str(&format!(
            "listen l{i}\n  bind 127.0.0.1:{front}\n  server s{i} {backend}\n"
        ));
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    tokio::process::Command::new("/usr/sbin/haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

pub use katachi_testkit::free_port;

/// Runs the part.
pub async fn run() {
    println!(
        "\n== two relay instances behind HAProxy: the forwarded path against the direct one =="
    );
    let Ok(base) = std::env::var("KATACHI_TEST_POSTGRES_URL") else {
        println!("skipped: no PostgreSQL (run under scripts/with-postgres.sh, as `make bench-cluster` does)");
        return;
    };
    if !Path::new("/usr/sbin/haproxy").is_file() {
        println!("skipped: /usr/sbin/haproxy is missing (scripts/install-deps.sh installs it)");
        return;
    }
    let database = fresh_database(&base).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir_a = tmp.path().join("a");
    let seeded = seed_on(&dir_a, 1, Some(&database)).await;
    let shared = |dir: &Path| {
        let mut args = vec![
            "--database-url".to_owned(),
            database.clone(),
            "--internal-listen".to_owned(),
            "127.0.0.1:0".to_owned(),
        ];
        if dir != dir_a {
            let tls = dir_a.join("tls");
            args.extend([
                "--tls-cert".to_owned(),
                tls.join("cert.pem").display().to_string(),
                "--tls-key".to_owned(),
                tls.join("key.pem").display().to_string(),
                "--master-key-file".to_owned(),
                dir_a.join("master.key").display().to_string(),
            ]);
        }
        args
    };
    let a = RelayProcess::start_with(&dir_a, &shared(&dir_a)).await;
    let dir_b = tmp.path().join("b");
    let b = RelayProcess::start_with(&dir_b, &shared(&dir_b)).await;
    let user = seeded.users[0].clone();
    let (_workspace, api) = agent::workspace();
    let dialer = agent::dialer(&a.url, &seeded.ca_pem, &user.agent);
    let store_dir = tempfile::tempdir().unwrap();
    let tunnelled = agent::audited(api.clone(), store_dir.path(), _workspace.path());
    let (_direct_addr, mut tunnel) = agent::start_agent_thread(api, dialer, tunnelled).await;
    tokio::select! {
        () = a.wait_for_tunnels(1, Duration::from_secs(30)) => {}
        ended = &mut tunnel => panic!("the tunnel ended before it opened: {ended:?}"),
    }
    let host_port = |url: &str| {
        url.trim_start_matches("https://")
            .replace("localhost", "127.0.0.1")
    };
    let (front_a, front_b) = (free_port(), free_port());
    let _lb = haproxy(
        tmp.path(),
        [(front_a, &host_port(&a.url)), (front_b, &host_port(&b.url))],
    );
    for port in [front_a, front_b] {
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    let browser = agent::browser_client(&seeded.ca_pem, Some(&user.session));
    let url = |front: u16| {
        format!(
            "https://localhost:{front}/agents/{}/api/v1/status",
            user.agent.id
        )
    };
    let (direct_url, forwarded_url) = (url(front_a), url(front_b));
    let a_says = browser.get(&direct_url).send().await.unwrap();
    assert_eq!(a_says.status(), 200, "direct path");
    let b_says = browser.get(&forwarded_url).send().await.unwrap();
    assert_eq!(
        b_says.status(),
        200,
        "forwarded path: {}",
        b_says.text().await.unwrap_or_default()
    );

    let rate: u32 = env_or("KATACHI_BENCH_RATE", 1000);
    let seconds: f64 = env_or("KATACHI_BENCH_SECONDS", 10.0);
    println!(
        "open loop at {rate} req/s, {seconds} s each, two alternating halves; both through HAProxy"
    );
    let warm = Duration::from_secs(1);
    let _ = open_loop(&browser, &direct_url, rate, warm).await;
    let _ = open_loop(&browser, &forwarded_url, rate, warm).await;
    let half = Duration::from_secs_f64(seconds / 2.0);
    let (mut d, mut f) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        d.push(open_loop(&browser, &direct_url, rate, half).await);
        f.push(open_loop(&browser, &forwarded_url, rate, half).await);
    }
    let (d, f) = (Latencies::merge(d), Latencies::merge(f));
    println!("{}", d.line("HAProxy → A (tunnel on A)"));
    println!("{}", f.line("HAProxy → B → A (forwarded)"));
    for (name, l) in [("direct", &d), ("forwarded", &f)] {
        if let Some(e) = &l.first_error {
            println!("{name}: {} errors, first: {e}", l.errors);
        }
    }
    let p50 = f.quantile_ms(0.5) - d.quantile_ms(0.5);
    let p99 = f.quantile_ms(0.99) - d.quantile_ms(0.99);
    println!(
        "forwarded − direct: p50 +{p50:.3} ms (target ≤ 1: {}), p99 +{p99:.3} ms",
        if p50 <= 1.0 { "met" } else { "NOT met" },
    );
    drop(tunnel);
    a.stop().await;
    b.stop().await;
}

/// A fresh database on the server at `base`.
pub async fn fresh_database(base: &str) -> String {
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(base)
        .await
        .unwrap();
    let name = format!("bench_cluster_{}", rand::random::<u32>());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let mut url = url::Url::parse(base).unwrap();
    url.set_path(&format!("/{name}"));
    url.to_string()
}
