//! Debian's nginx as a child process in front of a test relay: the site config of
//! `docs/deploy/nginx-katachi-relay.conf` (the one DEPLOY.md gives) with its values filled in, a
//! certificate of nginx's own (its own CA, not the relay's), everything in a temp dir, loopback only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The site config, as DEPLOY.md shows it.
pub const TEMPLATE: &str = include_str!("../../../../docs/deploy/nginx-katachi-relay.conf");

/// The first map of [`TEMPLATE`]: which upgrades reach the relay (all of them).
const PASS_EVERY_UPGRADE: &str =
    "map $http_upgrade $katachi_upgrade {\n    default $http_upgrade;\n}";
/// What Cloudflare does instead: WebSocket upgrades pass, any other `Upgrade` is stripped.
const PASS_WEBSOCKET_ONLY: &str =
    "map $http_upgrade $katachi_upgrade {\n    ~*^websocket$ websocket;\n    default '';\n}";

/// What nginx is put in front of.
pub struct Site {
    /// The loopback port nginx listens on (TLS).
    pub listen_port: u16,
    /// The relay's own address.
    pub relay: SocketAddr,
    /// The relay's CA, which nginx verifies the relay's certificate against.
    pub relay_ca: PathBuf,
    /// Pass only WebSocket upgrades, as Cloudflare does.
    pub websocket_only: bool,
}

/// A running nginx; killed on drop.
pub struct Nginx {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    /// The CA of nginx's certificate (what clients trust).
    pub ca: PathBuf,
    dir: tempfile::TempDir,
}

/// `template` with each `{{NAME}}` replaced; panics on a name left over.
pub fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("{{{{{name}}}}}"), value);
    }
    assert!(!out.contains("{{"), "a value was not filled in:\n{out}");
    out
}

fn nginx_binary() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

impl Nginx {
    /// Starts nginx for `site` and waits (at most 10 s) until it accepts connections.
    pub async fn start(site: Site) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // nginx's certificate for `localhost`, from a CA of its own: generated as the relay
        // generates its local one, in `<root>/tls/`.
        katachi_relay::tls::load_or_generate(root, None, Some("localhost")).unwrap();
        let tls = root.join("tls");
        let mut site_conf = render(
            TEMPLATE,
            &[
                ("LISTEN", &format!("127.0.0.1:{}", site.listen_port)),
                ("SERVER_NAME", "localhost"),
                ("CERTIFICATE", &tls.join("cert.pem").display().to_string()),
                (
                    "CERTIFICATE_KEY",
                    &tls.join("key.pem").display().to_string(),
                ),
                ("RELAY_ADDRESS", &site.relay.to_string()),
                ("RELAY_TLS_NAME", "localhost"),
                ("RELAY_CA", &site.relay_ca.display().to_string()),
            ],
        );
        if site.websocket_only {
            assert!(site_conf.contains(PASS_EVERY_UPGRADE));
            site_conf = site_conf.replace(PASS_EVERY_UPGRADE, PASS_WEBSOCKET_ONLY);
        }
        std::fs::write(root.join("katachi-relay.conf"), site_conf).unwrap();
        let r = root.display();
        // Single process in the foreground; every path nginx writes to inside the temp dir.
        let main_conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {r}/nginx.pid;\n\
             error_log {r}/error.log info;\nevents {{ worker_connections 1024; }}\n\
             http {{\n    access_log {r}/access.log;\n    client_body_temp_path {r}/client_body;\n\
             \x20   proxy_temp_path {r}/proxy;\n    fastcgi_temp_path {r}/fastcgi;\n\
             \x20   uwsgi_temp_path {r}/uwsgi;\n    scgi_temp_path {r}/scgi;\n\
             \x20   include {r}/katachi-relay.conf;\n}}\n"
        );
        std::fs::write(root.join("nginx.conf"), main_conf).unwrap();
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(format!("{r}/"))
            .arg("-c")
            .arg(root.join("nginx.conf"))
            .arg("-e")
            .arg(root.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run nginx ({e}): install it (scripts/install-deps.sh does)")
            });
        let mut nginx = Nginx {
            child,
            port: site.listen_port,
            ca: tls.join("ca.pem"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", nginx.port))
                .await
                .is_ok()
            {
                return nginx;
            }
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited ({status}):\n{}", nginx.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen within 10 s:\n{}",
                nginx.error_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// nginx's access log so far.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
