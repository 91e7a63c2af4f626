//! `katachi-relay rotate-master-key` (the real binary) on SQLite and PostgreSQL: every sealed value
//! re-sealed with the new key in one transaction, the old key opening none of them, a relay started
//! with the new key serving the agents sealed before; and a wrong current key, or no confirmation
//! that the instances are stopped, changing nothing at all.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::Aes256Gcm;
use base64::Engine;
use katachi_relay::crypto::{MasterKey, SealedRow};
use katachi_relay::store::{McpServer, NewAgent, Store};
use sha2::Digest;
use sqlx::Row;

use super::support::{fresh_postgres_database, heartbeat, Agent, Backend, TestRelay};

const OLD: [u8; 32] = [0x11; 32];
const NEW: [u8; 32] = [0x22; 32];
const WRONG: [u8; 32] = [0x33; 32];

fn now() -> i64 {
    super::support::now()
}

/// Writes a key file (64 hex characters), mode 0600.
fn write_key(path: &Path, key: &[u8; 32]) {
    std::fs::write(path, format!("{}\n", hex::encode(key))).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// True when this test runs as root (it may then give files to another user).
#[cfg(unix)]
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    let probe = tempfile::NamedTempFile::new().unwrap();
    probe.as_file().metadata().unwrap().uid() == 0
}

#[cfg(unix)]
fn owner_of(path: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    (m.uid(), m.gid())
}

fn key_in(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A value as the first, unbound format sealed it (purpose-only AAD), before row binding.
fn sealed_unbound(key: &[u8; 32], purpose: &str, plain: &[u8]) -> String {
    let cipher = Aes256Gcm::new_from_slice(key).unwrap();
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let ct = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plain,
                aad: purpose.as_bytes(),
            },
        )
        .unwrap();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    base64::engine::general_purpose::STANDARD.encode(out)
}

/// A relay's database and key files as a test arranges them.
struct Setup {
    _tmp: tempfile::TempDir,
    /// The data dir (SQLite database, and `master.key` unless `key_file_flag`).
    data_dir: PathBuf,
    /// `--database-url` for PostgreSQL.
    database_url: Option<String>,
    /// `--master-key-file`, when the key lives outside the data dir.
    key_file_flag: Option<PathBuf>,
    /// The new key's file.
    new_key: PathBuf,
    /// An agent sealed with the old key, as its credentials.
    agent: Agent,
}

impl Setup {
    /// A database sealed with `OLD`: an agent, an MCP server environment (in the unbound first
    /// format when `unbound_env`), and a pending sign-in; the current key file holds `current`.
    async fn new(
        backend: Backend,
        current: &[u8; 32],
        key_file_flag: bool,
        unbound_env: bool,
    ) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("relay");
        std::fs::create_dir(&data_dir).unwrap();
        let database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(fresh_postgres_database().await),
        };
        let key_file_flag = key_file_flag.then(|| tmp.path().join("current.key"));
        let current_path = key_file_flag
            .clone()
            .unwrap_or_else(|| data_dir.join("master.key"));
        write_key(&current_path, current);
        let new_key = tmp.path().join("new.key");
        write_key(&new_key, &NEW);

        let store = Store::connect(database_url.as_deref(), &data_dir)
            .await
            .unwrap();
        let old = MasterKey::from_bytes(&OLD);
        let user = store
            .create_user("rotate@example.com", None, now())
            .await
            .unwrap()
            .unwrap();
        let agent = Agent {
            id: "agt_rotation".into(),
            token: "token-of-the-rotation-test".into(),
            secret: "signing-secret-of-the-rotation-test".into(),
        };
        let token_hash = hex::encode(sha2::Sha256::digest(agent.token.as_bytes()));
        let sealed_secret = old.seal(
            &SealedRow::agent_signing_secret(&agent.id, &user.id),
            agent.secret.as_bytes(),
        );
        store
            .create_agent(
                &NewAgent {
                    id: &agent.id,
                    user_id: &user.id,
                    name: "laptop",
                    os: "linux",
                    token_hash: &token_hash,
                    signing_secret_enc: &sealed_secret,
                },
                now(),
            )
            .await
            .unwrap();
        let env = br#"{"TOKEN":"mcp-secret"}"#;
        let env_enc = if unbound_env {
            sealed_unbound(&OLD, "mcp-env", env)
        } else {
            old.seal(&SealedRow::mcp_env("mcp_rotation", &user.id), env)
        };
        let server = McpServer {
            id: "mcp_rotation".into(),
            name: "github".into(),
            command: String::new(),
            url: "https://mcp.example.com".into(),
            env_enc,
        };
        assert!(store
            .add_mcp_server(&user.id, &server, now())
            .await
            .unwrap());
        let verifier = old.seal(
            &SealedRow::oauth_pkce_verifier("state-hash"),
            b"pkce-verifier",
        );
        store
            .put_oauth_state("state-hash", "github", &verifier, "/", now() + 600)
            .await
            .unwrap();
        store.close().await;
        Self {
            _tmp: tmp,
            data_dir,
            database_url,
            key_file_flag,
            new_key,
            agent,
        }
    }

    /// The URL a plain pool reads the database with.
    fn db_url(&self) -> String {
        match &self.database_url {
            Some(u) => u.clone(),
            None => format!("sqlite://{}", self.data_dir.join("relay.db").display()),
        }
    }

    /// Every sealed value with its row binding, and the database's flags, in a stable order.
    async fn snapshot(&self) -> Vec<(String, String, String, String)> {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&self.db_url()).await.unwrap();
        let mut rows = Vec::new();
        for (table, sql) in [
            ("agents", "SELECT id, user_id, signing_secret_enc AS v FROM agents ORDER BY id"),
            ("mcp_servers", "SELECT id, user_id, env_enc AS v FROM mcp_servers ORDER BY id"),
            ("oauth_states", "SELECT state AS id, '' AS user_id, pkce_verifier AS v FROM oauth_states ORDER BY state"),
            ("relay_flags", "SELECT name AS id, '' AS user_id, '' AS v FROM relay_flags ORDER BY name"),
        ] {
            for r in sqlx::query(sql).fetch_all(&pool).await.unwrap() {
                rows.push((
                    table.to_owned(),
                    r.get::<String, _>("id"),
                    r.get::<String, _>("user_id"),
                    r.get::<String, _>("v"),
                ));
            }
        }
        pool.close().await;
        rows
    }

    /// Runs `katachi-relay rotate-master-key` on this setup, with `extra` flags.
    async fn rotate(&self, extra: &[&str]) -> Output {
        let mut args: Vec<OsString> = vec![
            "rotate-master-key".into(),
            "--data-dir".into(),
            self.data_dir.clone().into(),
            "--new-key-file".into(),
            self.new_key.clone().into(),
        ];
        if let Some(url) = &self.database_url {
            args.extend(["--database-url".into(), url.into()]);
        }
        if let Some(key) = &self.key_file_flag {
            args.extend(["--master-key-file".into(), key.clone().into()]);
        }
        args.extend(extra.iter().map(OsString::from));
        tokio::process::Command::new(env!("CARGO_BIN_EXE_katachi-relay"))
            .args(args)
            .env_remove("KATACHI_RELAY_DATABASE_URL")
            .env_remove("KATACHI_RELAY_MASTER_KEY_FILE")
            .env("KATACHI_LOG", "warn")
            .output()
            .await
            .unwrap()
    }

    /// Backup copies of the key in the data dir.
    fn backups(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.data_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                name.starts_with("master.key.") && name.ends_with(".bak")
            })
            .collect()
    }

    /// A relay on this database with the key where the operator put it after the rotation.
    async fn start_relay(&self, key_file: Option<PathBuf>) -> TestRelay {
        let (data_dir, database_url) = (self.data_dir.clone(), self.database_url.clone());
        TestRelay::start_with(Backend::Sqlite, move |c| {
            c.data_dir = data_dir;
            c.database_url = database_url;
            c.master_key_file = key_file;
        })
        .await
    }
}

fn binding<'a>(table: &str, id: &'a str, user: &'a str) -> Option<SealedRow<'a>> {
    match table {
        "agents" => Some(SealedRow::agent_signing_secret(id, user)),
        "mcp_servers" => Some(SealedRow::mcp_env(id, user)),
        "oauth_states" => Some(SealedRow::oauth_pkce_verifier(id)),
        _ => None,
    }
}

/// Every sealed value opens with `NEW`, to what was sealed, and none with `OLD`.
fn assert_sealed_with_the_new_key_only(rows: &[(String, String, String, String)], agent: &Agent) {
    let (old, new) = (MasterKey::from_bytes(&OLD), MasterKey::from_bytes(&NEW));
    let mut sealed = 0;
    for (table, id, user, value) in rows {
        let Some(row) = binding(table, id, user) else {
            continue;
        };
        sealed += 1;
        let plain = new
            .open(&row, value)
            .unwrap_or_else(|_| panic!("{table} {id} does not open with the new key"));
        let want: &[u8] = match table.as_str() {
            "agents" => agent.secret.as_bytes(),
            "mcp_servers" => br#"{"TOKEN":"mcp-secret"}"#,
            _ => b"pkce-verifier",
        };
        assert_eq!(plain.as_slice(), want, "{table} {id}");
        assert!(
            old.open(&row, value).is_err(),
            "{table} {id} still opens with the old key"
        );
    }
    assert_eq!(sealed, 3, "{rows:?}");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_master_key_reseals_every_secret_and_the_old_key_opens_none_on_sqlite() {
    // The key in the data dir, and an MCP environment still in the unbound first format.
    let setup = Setup::new(Backend::Sqlite, &OLD, false, true).await;
    let key_file = setup.data_dir.join("master.key");
    // Run by root for a service with its own user (systemd's DynamicUser): that user keeps owning
    // the key files.
    #[cfg(unix)]
    let service_user = running_as_root().then(|| {
        std::os::unix::fs::chown(&key_file, Some(65534), Some(65534)).unwrap();
        (65534, 65534)
    });
    let out = setup.rotate(&["--all-instances-stopped"]).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("re-sealed 3 secret(s)"), "{stdout}");

    assert_sealed_with_the_new_key_only(&setup.snapshot().await, &setup.agent);
    assert_eq!(
        key_in(&key_file),
        hex::encode(NEW),
        "the new key is installed"
    );
    let backups = setup.backups();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(key_in(&backups[0]), hex::encode(OLD), "the old key is kept");
    #[cfg(unix)]
    {
        assert_eq!((mode_of(&key_file), mode_of(&backups[0])), (0o600, 0o600));
        if let Some(owner) = service_user {
            assert_eq!(
                owner_of(&key_file),
                owner,
                "the service can no longer read its key"
            );
            assert_eq!(owner_of(&backups[0]), owner);
        } else {
            eprintln!("not root: the key files' owner was not checked");
        }
    }

    // A relay started on the data dir serves the agent sealed before, with the new key alone.
    let relay = setup.start_relay(None).await;
    let (status, body) = heartbeat(&relay, &relay.client(), &setup.agent).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_master_key_reseals_every_secret_and_the_old_key_opens_none_on_postgres() {
    // The key given with --master-key-file: no key file is touched, the operator is told what to do.
    let setup = Setup::new(Backend::Postgres, &OLD, true, false).await;
    let out = setup.rotate(&["--all-instances-stopped"]).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("point --master-key-file")
            && stdout.contains(&setup.new_key.display().to_string()),
        "{stdout}"
    );
    let current = setup.key_file_flag.clone().unwrap();
    assert_eq!(
        key_in(&current),
        hex::encode(OLD),
        "the old key file is left alone"
    );
    assert_eq!(key_in(&setup.new_key), hex::encode(NEW));
    assert!(setup.backups().is_empty());

    assert_sealed_with_the_new_key_only(&setup.snapshot().await, &setup.agent);
    let relay = setup.start_relay(Some(setup.new_key.clone())).await;
    let (status, body) = heartbeat(&relay, &relay.client(), &setup.agent).await;
    assert_eq!(status, 200, "{body}");
}

/// The rotation is refused, says which values do not open, and nothing changes.
async fn a_wrong_current_key_changes_nothing(backend: Backend, key_file_flag: bool) {
    let setup = Setup::new(backend, &WRONG, key_file_flag, true).await;
    let before = setup.snapshot().await;
    let out = setup.rotate(&["--all-instances-stopped"]).await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    for named in [
        "1 in agents.signing_secret_enc",
        "1 in mcp_servers.env_enc",
        "1 in oauth_states.pkce_verifier",
        "nothing was changed",
    ] {
        assert!(stderr.contains(named), "{named:?} missing from: {stderr}");
    }
    assert_eq!(setup.snapshot().await, before, "the database changed");
    let current = setup
        .key_file_flag
        .clone()
        .unwrap_or_else(|| setup.data_dir.join("master.key"));
    assert_eq!(key_in(&current), hex::encode(WRONG), "the key file changed");
    assert!(setup.backups().is_empty(), "a backup copy was left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_current_key_changes_nothing_and_names_what_does_not_open_on_sqlite() {
    a_wrong_current_key_changes_nothing(Backend::Sqlite, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_current_key_changes_nothing_and_names_what_does_not_open_on_postgres() {
    a_wrong_current_key_changes_nothing(Backend::Postgres, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_refuses_to_run_until_told_every_instance_is_stopped() {
    let setup = Setup::new(Backend::Sqlite, &OLD, false, false).await;
    let before = setup.snapshot().await;
    let out = setup.rotate(&[]).await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--all-instances-stopped"), "{stderr}");
    assert_eq!(setup.snapshot().await, before);
    assert_eq!(key_in(&setup.data_dir.join("master.key")), hex::encode(OLD));

    // The same key twice is refused too.
    write_key(&setup.new_key, &OLD);
    let out = setup.rotate(&["--all-instances-stopped"]).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("the new key is the current key"));
    assert_eq!(setup.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_refuses_while_a_routing_instance_is_alive_on_the_database() {
    let setup = Setup::new(Backend::Postgres, &OLD, false, false).await;
    let database_url = setup.database_url.clone();
    let key = setup.data_dir.join("master.key");
    let running = TestRelay::start_with(Backend::Sqlite, |c| {
        c.database_url = database_url;
        c.master_key_file = Some(key);
        c.internal = Some(katachi_relay::config::InternalConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            advertise: None,
        });
    })
    .await;
    let before = setup.snapshot().await;
    // Confirmed "all stopped", but the routing table says otherwise.
    let out = setup.rotate(&["--all-instances-stopped"]).await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("alive in the last 15 s"), "{stderr}");
    assert_eq!(setup.snapshot().await, before);
    assert_eq!(key_in(&setup.data_dir.join("master.key")), hex::encode(OLD));
    // Stopped cleanly, the instance leaves the table and the rotation runs.
    running.stop().await;
    let out = setup.rotate(&["--all-instances-stopped"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(key_in(&setup.data_dir.join("master.key")), hex::encode(NEW));
}
