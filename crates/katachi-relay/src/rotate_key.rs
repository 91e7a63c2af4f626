//! `katachi-relay rotate-master-key --new-key-file PATH --all-instances-stopped`: re-seals every
//! stored secret with a new master key, then installs the key.
//!
//! # Steps
//! 1. Refuses unless `--all-instances-stopped` says no relay instance runs on the database (a
//!    running instance would keep sealing new secrets with the old key, and could not open the
//!    re-sealed ones).
//! 2. Reads the current key (`--master-key-file`, or `master.key` in the data dir; never generated)
//!    and the new one; refuses the same key twice.
//! 3. When the key lives in the data dir, copies it first to `master.key.<UTC time>.bak` (mode
//!    `0600`, the key file's owner): database backups taken before the rotation open only with it.
//! 4. Re-seals every sealed value in one transaction ([`Store::rotate_master_key`]): all or
//!    nothing; a value the current key does not open refuses the whole rotation, naming the
//!    column and the count, and changes nothing (the backup copy is removed again).
//! 5. Installs the new key: written atomically (`0600`, the old file's owner) over `master.key` in
//!    the data dir; with
//!    `--master-key-file`, nothing is written and the operator is told to point the flag at the
//!    new file.
//!
//! # Security
//! Keys are read into zeroizing buffers and never printed. The new key file is read, not moved: the
//! operator removes it (or keeps it offline) once the relay runs with the new key.

use std::path::{Path, PathBuf};

use crate::crypto::{read_key_hex, CryptoError, MasterKey, MASTER_KEY_FILE};

/// How many backup names (`….bak`, `….2.bak`, …) are tried for one second's rotation.
const BACKUP_NAME_TRIES: u32 = 100;
use crate::store::{RotationError, RotationReport, Store, StoreError};

/// Flags of `katachi-relay rotate-master-key`.
#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    /// File holding the new 32-byte key as 64 hex characters, e.g. made with
    /// `(umask 077; openssl rand -hex 32 > new-master.key)`.
    #[arg(long)]
    pub new_key_file: PathBuf,
    /// The relay's data, as the instances use it (`--data-dir`, `--database-url`,
    /// `--master-key-file`: the current key file).
    #[command(flatten)]
    pub store: crate::config::StoreArgs,
    /// Confirms that every relay instance using this database is stopped.
    #[arg(long)]
    pub all_instances_stopped: bool,
}

/// Why a rotation did not happen, or did not finish installing the key.
#[derive(Debug, thiserror::Error)]
pub enum RotateKeyError {
    /// `--all-instances-stopped` was not given.
    #[error("stop every katachi-relay instance that uses this database, then run again with --all-instances-stopped (a running instance keeps sealing new secrets with the old key and cannot open the re-sealed ones); nothing was changed")]
    NotConfirmed,
    /// A key file is missing or malformed.
    #[error("{0}; nothing was changed")]
    Key(CryptoError),
    /// The new key file holds the current key.
    #[error("the new key is the current key; make a new one with `(umask 077; openssl rand -hex 32 > new-master.key)`; nothing was changed")]
    SameKey,
    /// Instances on this database said they were alive within the last seconds.
    #[error("{0} relay instance(s) on this database were alive in the last 15 s ({1}): stop them first; nothing was changed")]
    InstancesRunning(usize, String),
    /// No SQLite database in the data dir: a wrong `--data-dir`, or a PostgreSQL relay without
    /// `--database-url`.
    #[error("no relay database at {0} (wrong --data-dir, or is --database-url missing?); nothing was changed")]
    NoDatabase(PathBuf),
    /// The database could not be opened.
    #[error("{0}; nothing was changed")]
    Store(StoreError),
    /// The re-sealing was refused or failed (rolled back).
    #[error(transparent)]
    Rotation(#[from] RotationError),
    /// The copy of the current key could not be written.
    #[error("cannot keep a copy of the current key at {path}: {reason}; nothing was changed")]
    Backup {
        /// The backup file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The database is re-sealed but the new key could not be written in place: the relay will
    /// not open its secrets until the operator installs the new key by hand.
    #[error("the database is re-sealed with the new key, but writing it to {path} failed ({reason}): copy {new_key} over {path} (mode 0600) before starting the relay")]
    Install {
        /// The data dir's key file.
        path: PathBuf,
        /// The new key file.
        new_key: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Where the new key ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// Written over the data dir's `master.key`; the old key kept at `backup`.
    DataDir {
        /// The key file now holding the new key.
        key_file: PathBuf,
        /// The copy of the old key.
        backup: PathBuf,
    },
    /// The relay runs with `--master-key-file`: the operator points it at `new_key_file`.
    KeyFileFlag {
        /// The key file the relay used until now.
        old_key_file: PathBuf,
        /// The file to point `--master-key-file` at.
        new_key_file: PathBuf,
    },
}

/// What a finished rotation did.
#[derive(Debug, Clone)]
pub struct RotationOutcome {
    /// Values re-sealed per column.
    pub report: RotationReport,
    /// Where the new key is.
    pub installed: Installed,
}

/// Runs the subcommand and tells the operator what happened and what to do next.
///
/// # Errors
/// As [`rotate_master_key`].
pub async fn run(args: RotateArgs) -> anyhow::Result<()> {
    let outcome = rotate_master_key(&args).await?;
    println!(
        "katachi-relay: re-sealed {} secret(s) with the new master key",
        outcome.report.total()
    );
    for column in &outcome.report.resealed {
        println!("  {column}");
    }
    match &outcome.installed {
        Installed::DataDir { key_file, backup } => {
            println!(
                "katachi-relay: the new key is in {}; the old key is kept in {} (database backups taken before now open only with it: store it with them, offline)",
                key_file.display(),
                backup.display()
            );
            println!(
                "katachi-relay: start the relay instances again; then remove {} or keep it offline",
                args.new_key_file.display()
            );
        }
        Installed::KeyFileFlag {
            old_key_file,
            new_key_file,
        } => println!(
            "katachi-relay: now point --master-key-file (or KATACHI_RELAY_MASTER_KEY_FILE) of every relay instance at {} and start them again; {} opens none of the re-sealed secrets (keep it offline with the database backups taken before now)",
            new_key_file.display(),
            old_key_file.display()
        ),
    }
    Ok(())
}

/// Re-seals every stored secret with the key in `args.new_key_file` and installs it.
///
/// # Errors
/// [`RotateKeyError`]; every variant but [`RotateKeyError::Install`] leaves the database and the
/// key files as they were.
pub async fn rotate_master_key(args: &RotateArgs) -> Result<RotationOutcome, RotateKeyError> {
    if !args.all_instances_stopped {
        return Err(RotateKeyError::NotConfirmed);
    }
    let current_path = args
        .store
        .master_key_file
        .clone()
        .unwrap_or_else(|| args.store.data_dir.join(MASTER_KEY_FILE));
    let current = MasterKey::load(&current_path).map_err(RotateKeyError::Key)?;
    let new_hex = read_key_hex(&args.new_key_file).map_err(RotateKeyError::Key)?;
    let new = MasterKey::load(&args.new_key_file).map_err(RotateKeyError::Key)?;
    if new.is_same_key(&current) {
        return Err(RotateKeyError::SameKey);
    }
    if args.store.database_url.is_none() {
        // Store::connect would create an empty database here and "rotate" nothing.
        let db = args.store.data_dir.join("relay.db");
        if !db.is_file() {
            return Err(RotateKeyError::NoDatabase(db));
        }
    }
    let store = Store::connect(args.store.database_url.as_deref(), &args.store.data_dir)
        .await
        .map_err(RotateKeyError::Store)?;
    // The confirmation is checked against the routing table too: an instance with an internal
    // listener refreshes its row every few seconds while it runs.
    let alive = store
        .alive_instances(crate::now_unix())
        .await
        .map_err(RotateKeyError::Store)?;
    if !alive.is_empty() {
        store.close().await;
        return Err(RotateKeyError::InstancesRunning(
            alive.len(),
            alive.join(", "),
        ));
    }
    let backup = match &args.store.master_key_file {
        Some(_) => None,
        None => Some(back_up_key(&current_path)?),
    };
    let rotated = store.rotate_master_key(&current, &new).await;
    store.close().await;
    let report = match rotated {
        Ok(report) => report,
        Err(e) => {
            if let Some(b) = &backup {
                // Nothing changed: the copy of a key still in use is not kept lying around.
                let _ = std::fs::remove_file(b);
            }
            return Err(e.into());
        }
    };
    let installed = match backup {
        Some(backup) => {
            let text = zeroize::Zeroizing::new(format!("{}\n", new_hex.as_str()));
            replace_key_file(&current_path, text.as_bytes()).map_err(|e| {
                RotateKeyError::Install {
                    path: current_path.clone(),
                    new_key: args.new_key_file.clone(),
                    reason: e.to_string(),
                }
            })?;
            tracing::info!(backup = %backup.display(), "master key rotated in the data dir");
            Installed::DataDir {
                key_file: current_path,
                backup,
            }
        }
        None => Installed::KeyFileFlag {
            old_key_file: current_path,
            new_key_file: args.new_key_file.clone(),
        },
    };
    Ok(RotationOutcome { report, installed })
}

/// Copies the key file to `<name>.<UTC time>.bak` beside it (`….<n>.bak` when that exists), mode
/// `0600`, never over an existing file.
fn back_up_key(key_file: &Path) -> Result<PathBuf, RotateKeyError> {
    let now = time::OffsetDateTime::now_utc();
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let name = key_file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| MASTER_KEY_FILE.to_owned());
    let first = key_file.with_file_name(format!("{name}.{stamp}.bak"));
    let err = |path: &Path, reason: String| RotateKeyError::Backup {
        path: path.to_path_buf(),
        reason,
    };
    let text =
        zeroize::Zeroizing::new(std::fs::read(key_file).map_err(|e| err(&first, e.to_string()))?);
    for n in 1..=BACKUP_NAME_TRIES {
        let backup = match n {
            1 => first.clone(),
            _ => key_file.with_file_name(format!("{name}.{stamp}.{n}.bak")),
        };
        match write_new_private_file(&backup, &text, key_file) {
            Ok(()) => return Ok(backup),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(err(&backup, e.to_string())),
        }
    }
    Err(err(
        &first,
        format!("{BACKUP_NAME_TRIES} backups of this second exist"),
    ))
}

/// Creates `path` (failing if it exists) with mode `0600` and the owner of `like`, writes `bytes`
/// and syncs it. The owner matters when root rotates the key of a service running as its own user
/// (systemd's `DynamicUser`): the service must still read its key.
fn write_new_private_file(path: &Path, bytes: &[u8], like: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let written = (|| {
        let mut file = opts.open(path)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        give_owner_of(path, like)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}

/// Gives `path` the owner and group of `like` when they differ (needs root to change them).
fn give_owner_of(path: &Path, like: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let (want, have) = (std::fs::metadata(like)?, std::fs::metadata(path)?);
        if (want.uid(), want.gid()) != (have.uid(), have.gid()) {
            std::os::unix::fs::chown(path, Some(want.uid()), Some(want.gid()))?;
        }
    }
    #[cfg(not(unix))]
    let _ = (path, like);
    Ok(())
}

/// Replaces `path` atomically by a file holding `bytes`, mode `0600`, with `path`'s owner.
fn replace_key_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| MASTER_KEY_FILE.to_owned());
    let tmp = path.with_file_name(format!(".{name}.new-{}", crate::random_hex(8)));
    write_new_private_file(&tmp, bytes, path)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename is durable once the folder is synced (best effort: not every system allows it).
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
