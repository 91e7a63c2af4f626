//! One agent home opened as a whole: folders, config, keystore, fingerprint, machine key, and from
//! them the store, sealed files and API keys. The CLI, the tray and tests all start here.
//!
//! # Layout
//! - `unlock`: the machine key from the keychain secret and the hardware binding, re-binding after
//!   a hardware change, migrating older data, and failing closed (writing nothing) on data that is
//!   not this keychain's and machine's.

mod unlock;

pub(crate) use unlock::katachi_data_found;
pub use unlock::REBIND_ACTION;

use std::path::PathBuf;

use crate::config::{Config, ConfigError, KeystoreBackend};
use crate::dirs::{DirsError, KatachiDirs};
use crate::fingerprint::{Fingerprint, FingerprintError, FingerprintSource, RecordError};
use crate::store::{Store, StoreError};
use crate::vault::{
    ApiKeys, BindingError, FileKeystore, Keystore, KeystoreError, MachineKey, OsKeychain, Purpose,
    SealedFile,
};

/// Why the agent home could not be opened; each variant names the layer that failed.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// The folders could not be found or created.
    #[error(transparent)]
    Dirs(#[from] DirsError),
    /// The config file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The machine's identity could not be read.
    #[error(transparent)]
    Fingerprint(#[from] FingerprintError),
    /// The keystore is unreachable, locked or holds a corrupted secret.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// The fingerprint record could not be read or written.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The hardware binding does not open here (another machine or keychain, a lost keychain
    /// secret, a damaged record) or could not be written. Nothing was changed when it failed.
    #[error(transparent)]
    Binding(#[from] BindingError),
}

/// An opened agent home.
pub struct AgentHome {
    /// Where everything lives.
    dirs: KatachiDirs,
    /// The parsed config.
    config: Config,
    /// Where the machine secret and API keys live.
    keystore: Box<dyn Keystore>,
    /// The machine's identity now.
    fingerprint: Fingerprint,
    /// Unlocked from the keystore secret and the hardware binding.
    machine_key: MachineKey,
}

impl std::fmt::Debug for AgentHome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHome")
            .field("dirs", &self.dirs)
            .field("keystore", &self.keystore.kind())
            .finish_non_exhaustive()
    }
}

/// The keystore the config asks for.
pub fn keystore_for(
    config: &Config,
    dirs: &KatachiDirs,
    fingerprint: &Fingerprint,
) -> Box<dyn Keystore> {
    match config.keystore.backend {
        KeystoreBackend::Keychain => Box::new(OsKeychain::new(dirs.keychain_service())),
        KeystoreBackend::File => {
            Box::new(FileKeystore::new(dirs.file_keystore_path(), fingerprint))
        }
    }
}

impl AgentHome {
    /// Opens the home with the keystore its config names, creating folders, the machine secret and
    /// the binding record on first run; re-binds after a one-component hardware change.
    ///
    /// # Errors
    /// [`HomeError`] naming the layer that failed.
    pub fn open(dirs: KatachiDirs, source: &dyn FingerprintSource) -> Result<Self, HomeError> {
        dirs.ensure()?;
        let config = Config::load(&dirs.config_file())?;
        let fingerprint = source.read()?;
        let keystore = keystore_for(&config, &dirs, &fingerprint);
        Self::assemble(dirs, config, fingerprint, keystore)
    }

    /// Opens the home with an explicit keystore (other crates' tests use [`crate::vault::MemoryKeystore`]).
    ///
    /// # Errors
    /// [`HomeError`] naming the layer that failed.
    pub fn open_with_keystore(
        dirs: KatachiDirs,
        source: &dyn FingerprintSource,
        keystore: Box<dyn Keystore>,
    ) -> Result<Self, HomeError> {
        dirs.ensure()?;
        let config = Config::load(&dirs.config_file())?;
        let fingerprint = source.read()?;
        Self::assemble(dirs, config, fingerprint, keystore)
    }

    fn assemble(
        dirs: KatachiDirs,
        config: Config,
        fingerprint: Fingerprint,
        keystore: Box<dyn Keystore>,
    ) -> Result<Self, HomeError> {
        // what a write killed before its rename left (kill -9, power loss)
        let now = std::time::SystemTime::now();
        for dir in [
            dirs.data().to_path_buf(),
            dirs.credentials_dir(),
            dirs.config().to_path_buf(),
        ] {
            crate::atomic_file::remove_stale_temps(&dir, now);
        }
        let machine_key = unlock::unlock_machine_key(&dirs, keystore.as_ref(), &fingerprint)?;
        Ok(Self {
            dirs,
            config,
            keystore,
            fingerprint,
            machine_key,
        })
    }

    /// The folders.
    pub fn dirs(&self) -> &KatachiDirs {
        &self.dirs
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The keystore in use.
    pub fn keystore(&self) -> &dyn Keystore {
        self.keystore.as_ref()
    }

    /// The machine's identity.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// The machine key.
    pub fn machine_key(&self) -> &MachineKey {
        &self.machine_key
    }

    /// Opens the store (one connection; call again for another thread).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn store(&self) -> Result<Store, StoreError> {
        Store::open(
            &self.dirs.store_path(),
            &self.machine_key.key_for(Purpose::STORE),
        )
    }

    /// API keys of AI providers.
    pub fn api_keys(&self) -> ApiKeys<'_> {
        ApiKeys::new(self.keystore.as_ref(), &self.machine_key)
    }

    /// The sealed file holding the agent's relay credentials.
    pub fn agent_credentials(&self) -> SealedFile {
        SealedFile::new(
            self.dirs.agent_credentials_path(),
            Purpose::AGENT_CREDENTIALS,
        )
    }

    /// The sealed file holding the tunnel credentials.
    pub fn tunnel_credentials(&self) -> SealedFile {
        SealedFile::new(
            self.dirs.tunnel_credentials_path(),
            Purpose::TUNNEL_CREDENTIALS,
        )
    }

    /// Folders that must never become workspaces, and that the API and the sandbox never expose:
    /// katachi's own data, config, runtime (the control socket) and state (the app's logs) folders.
    pub fn protected_dirs(&self) -> Vec<PathBuf> {
        vec![
            self.dirs.data().to_path_buf(),
            self.dirs.config().to_path_buf(),
            self.dirs.runtime_dir().to_path_buf(),
            self.dirs.state().to_path_buf(),
        ]
    }
}
