//! Where the agent keeps its state: the data dir (store, sealed files, fingerprint record), the
//! config dir (`config.toml`), the runtime dir (the one-agent lock and the control socket) and the
//! state dir (the app's log files).
//!
//! Defaults follow the platform conventions (XDG on Linux) via the `directories` crate; setting
//! `KATACHI_HOME` puts all four under one folder (tests, portable installs). The runtime dir is
//! `$XDG_RUNTIME_DIR/katachi` where the platform has one (Linux), else `run` in the data dir. Folders are created `0700`;
//! files written by the agent are `0600`. Existing folders are never chmod-ed behind the user's back:
//! [`permission_problem`] reports when they are wider, and `katachi doctor` shows it.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Environment variable that moves all agent state under one folder.
pub const HOME_ENV: &str = "KATACHI_HOME";

/// The runtime folder's name inside a `KATACHI_HOME`, and inside the data dir where the platform
/// has no runtime dir.
const RUNTIME_FALLBACK: &str = "run";

/// Keychain service name used for the default agent home.
pub const DEFAULT_KEYCHAIN_SERVICE: &str = "katachi";

/// Errors finding or creating the agent's folders.
#[derive(Debug, thiserror::Error)]
pub enum DirsError {
    /// Neither `KATACHI_HOME` nor a home directory is known (e.g. `HOME` unset for a system user).
    #[error("cannot find a home directory for katachi's data: set HOME, or KATACHI_HOME to a folder of your choice")]
    NoHome,
    /// `KATACHI_HOME` is relative; a relative home would move with the current directory.
    #[error("KATACHI_HOME must be an absolute path, got {0:?}")]
    RelativeHome(PathBuf),
    /// A folder could not be created (permissions, read-only filesystem, a file in the way).
    #[error("cannot create folder {path}: {source}")]
    Create {
        /// The folder that could not be created.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// The agent's folders for one agent home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KatachiDirs {
    /// Holds the store, sealed files and the fingerprint record.
    data: PathBuf,
    /// Holds `config.toml`.
    config: PathBuf,
    /// Holds what lives only while an agent runs: its lock and its control socket.
    runtime: PathBuf,
    /// Holds what is worth keeping across runs but is not data: the app's rotating log files.
    state: PathBuf,
    /// Names this home's entries in the OS keychain, so two homes never share a secret.
    keychain_service: String,
}

impl KatachiDirs {
    /// The folders for this user: `KATACHI_HOME` (value passed in) when set, else the platform defaults.
    ///
    /// # Errors
    /// [`DirsError::RelativeHome`] for a relative `KATACHI_HOME`, [`DirsError::NoHome`] when no home is known.
    pub fn resolve(katachi_home: Option<PathBuf>) -> Result<Self, DirsError> {
        match katachi_home {
            Some(home) if !home.as_os_str().is_empty() => {
                if !home.is_absolute() {
                    return Err(DirsError::RelativeHome(home));
                }
                Ok(Self::under(&home))
            }
            _ => {
                let project = directories::ProjectDirs::from("dev", "katachi", "katachi")
                    .ok_or(DirsError::NoHome)?;
                // XDG_RUNTIME_DIR (Linux) is per user, private and cleared at logout; elsewhere
                // (macOS, Windows, a session without one) a folder in the private data dir
                let runtime = directories::BaseDirs::new()
                    .and_then(|b| b.runtime_dir().map(|r| r.join("katachi")))
                    .filter(|r| r.is_absolute())
                    .unwrap_or_else(|| project.data_dir().join(RUNTIME_FALLBACK));
                // Linux: `$XDG_STATE_HOME/katachi`, else `~/.local/state/katachi`. macOS and
                // Windows have no state folder: a `state` folder in the local data folder.
                let state = project
                    .state_dir()
                    .map_or_else(|| project.data_local_dir().join("state"), Path::to_path_buf);
                Ok(Self {
                    data: project.data_dir().to_path_buf(),
                    config: project.config_dir().to_path_buf(),
                    runtime,
                    state,
                    keychain_service: DEFAULT_KEYCHAIN_SERVICE.to_owned(),
                })
            }
        }
    }

    /// The folders from the process environment (`KATACHI_HOME`).
    ///
    /// # Errors
    /// As [`KatachiDirs::resolve`].
    pub fn from_env() -> Result<Self, DirsError> {
        Self::resolve(std::env::var_os(HOME_ENV).map(PathBuf::from))
    }

    /// All state under one folder: `HOME/data`, `HOME/config`, `HOME/run`, `HOME/state`, and a
    /// keychain service
    /// name unique to it.
    pub fn under(home: &Path) -> Self {
        // A separate keychain entry per home: tests and portable installs never share or clobber
        // the secret of the user's real agent.
        let digest = Sha256::digest(home.as_os_str().as_encoded_bytes());
        Self {
            data: home.join("data"),
            config: home.join("config"),
            runtime: home.join(RUNTIME_FALLBACK),
            state: home.join("state"),
            keychain_service: format!("{DEFAULT_KEYCHAIN_SERVICE}-{}", &hex::encode(digest)[..16]),
        }
    }

    /// The data folder.
    pub fn data(&self) -> &Path {
        &self.data
    }

    /// The config folder.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// The runtime folder: the one-agent lock and the control socket. Not created here:
    /// [`Self::ensure_runtime`] creates it when an agent starts.
    pub fn runtime_dir(&self) -> &Path {
        &self.runtime
    }

    /// Creates the runtime folder (`0700`) when missing and returns it.
    ///
    /// # Errors
    /// [`DirsError::Create`] naming the folder.
    pub fn ensure_runtime(&self) -> Result<&Path, DirsError> {
        create_private_dir(&self.runtime)?;
        Ok(&self.runtime)
    }

    /// The state folder: the app's log files. Like the data and config folders it is katachi's own,
    /// never shown through the API or inside the sandbox. Created on first use
    /// ([`create_private_dir`]), not by [`KatachiDirs::ensure`].
    pub fn state(&self) -> &Path {
        &self.state
    }

    /// The keychain service name for this home's entries.
    pub fn keychain_service(&self) -> &str {
        &self.keychain_service
    }

    /// The SQLCipher database file.
    pub fn store_path(&self) -> PathBuf {
        self.data.join("katachi.db")
    }

    /// The record of which fingerprint components an older katachi used (names + salted hashes);
    /// read only, to migrate and diagnose installations made before the hardware binding.
    pub fn fingerprint_record_path(&self) -> PathBuf {
        self.data.join("fingerprint.json")
    }

    /// The hardware binding record: the data key's wrapped shares (no component value).
    pub fn binding_path(&self) -> PathBuf {
        self.data.join("binding.json")
    }

    /// The opt-in file keystore (headless machines without a keychain).
    pub fn file_keystore_path(&self) -> PathBuf {
        self.data.join("keystore.sealed")
    }

    /// The folder of sealed credential files (agent token, tunnel credentials).
    pub fn credentials_dir(&self) -> PathBuf {
        self.data.join("credentials")
    }

    /// The config file.
    pub fn config_file(&self) -> PathBuf {
        self.config.join("config.toml")
    }

    /// The sealed file of the agent's relay credentials.
    pub fn agent_credentials_path(&self) -> PathBuf {
        self.credentials_dir().join("agent.sealed")
    }

    /// The sealed file of the tunnel credentials.
    pub fn tunnel_credentials_path(&self) -> PathBuf {
        self.credentials_dir().join("tunnel.sealed")
    }

    /// The running agent's status file (state, last heartbeat, clock offset; no secrets).
    pub fn agent_status_path(&self) -> PathBuf {
        self.data.join("agent-status.json")
    }

    /// Creates the data, credentials and config folders (`0700`) when missing.
    ///
    /// # Errors
    /// [`DirsError::Create`] naming the folder.
    pub fn ensure(&self) -> Result<(), DirsError> {
        for dir in [&self.data, &self.credentials_dir(), &self.config] {
            create_private_dir(dir)?;
        }
        Ok(())
    }
}

/// Creates `dir` and its missing parents; the folders this call creates get mode `0700`.
///
/// # Errors
/// [`DirsError::Create`] naming the folder.
pub fn create_private_dir(dir: &Path) -> Result<(), DirsError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| DirsError::Create {
        path: dir.to_path_buf(),
        source,
    })
}

/// Says what is wrong when `path` is readable or writable by others than its owner
/// (a folder wider than `0700`, a file wider than `0600`); `None` when private or missing.
pub fn permission_problem(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::symlink_metadata(path).ok()?;
        let mode = meta.permissions().mode() & 0o777;
        let (want, fix) = if meta.is_dir() {
            (0o700, "chmod 700")
        } else {
            (0o600, "chmod 600")
        };
        if mode & 0o077 != 0 {
            return Some(format!(
                "{} has mode {mode:o}, wider than {want:o}: other users may read it; run `{fix} {}`",
                path.display(),
                path.display()
            ));
        }
        None
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_katachi_home_is_rejected() {
        let err = KatachiDirs::resolve(Some(PathBuf::from("rel/home"))).err();
        assert!(matches!(err, Some(DirsError::RelativeHome(_))));
    }

    #[test]
    fn one_katachi_home_holds_the_state_folder_too() {
        let dirs = KatachiDirs::under(Path::new("/tmp/k"));
        assert_eq!(dirs.state(), Path::new("/tmp/k/state"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn default_state_folder_is_the_xdg_state_folder_on_linux() {
        // `directories` reads XDG_STATE_HOME itself; the test must not mutate the environment.
        let dirs = KatachiDirs::resolve(None).unwrap();
        let expected = match std::env::var_os("XDG_STATE_HOME").map(PathBuf::from) {
            Some(state) if state.is_absolute() => state.join("katachi"),
            _ => PathBuf::from(std::env::var_os("HOME").unwrap()).join(".local/state/katachi"),
        };
        assert_eq!(dirs.state(), expected);
    }

    #[test]
    fn two_homes_use_two_keychain_services() {
        let a = KatachiDirs::under(Path::new("/tmp/a"));
        let b = KatachiDirs::under(Path::new("/tmp/b"));
        assert_ne!(a.keychain_service(), b.keychain_service());
        assert!(a.keychain_service().starts_with("katachi-"));
    }

    #[test]
    fn a_katachi_home_keeps_its_runtime_dir_inside_it() {
        let dirs = KatachiDirs::under(Path::new("/tmp/k"));
        assert_eq!(dirs.runtime_dir(), Path::new("/tmp/k/run"));
        let default = KatachiDirs::resolve(None).unwrap();
        assert!(default.runtime_dir().is_absolute());
        assert!(
            default.runtime_dir().ends_with("katachi") || default.runtime_dir().ends_with("run")
        );
    }

    #[cfg(unix)]
    #[test]
    fn runtime_dir_is_created_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dirs = KatachiDirs::under(tmp.path());
        let run = dirs.ensure_runtime().unwrap();
        let mode = std::fs::metadata(run).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[cfg(unix)]
    #[test]
    fn created_folders_are_private_and_wide_ones_are_reported() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dirs = KatachiDirs::under(tmp.path());
        dirs.ensure().unwrap();
        for d in [
            dirs.data().to_path_buf(),
            dirs.credentials_dir(),
            dirs.config().to_path_buf(),
        ] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
            assert!(permission_problem(&d).is_none());
        }
        std::fs::set_permissions(dirs.data(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let problem = permission_problem(dirs.data()).unwrap();
        assert!(problem.contains("chmod 700"), "{problem}");
    }
}
