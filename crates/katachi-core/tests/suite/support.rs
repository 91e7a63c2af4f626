//! Shared helpers: a fresh agent home on the real keychain, and fixed fingerprints.

use katachi_core::fingerprint::{Fingerprint, FixedFingerprint};
use katachi_core::vault::{Keystore, OsKeychain};
use katachi_core::{AgentHome, KatachiDirs};

/// A fingerprint standing for one machine.
pub fn machine(name: &str) -> FixedFingerprint {
    FixedFingerprint(
        Fingerprint::from_components([
            (
                "machine_id".to_owned(),
                format!("{name}-machine-id").into_bytes(),
            ),
            ("cpu".to_owned(), b"GenuineIntel\0Test CPU".to_vec()),
            ("nic:eth0".to_owned(), format!("{name}-mac").into_bytes()),
        ])
        .unwrap(),
    )
}

/// Fails with the fix when the test runs outside a D-Bus session (tests must not silently pass).
pub fn require_session_bus() {
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
        "no D-Bus session: run the tests with `make test` or `scripts/with-session.sh cargo test`"
    );
}

/// A temp agent home whose keychain entries are removed when dropped.
pub struct TestHome {
    pub tmp: tempfile::TempDir,
    pub dirs: KatachiDirs,
}

impl TestHome {
    pub fn new() -> Self {
        require_session_bus();
        let tmp = tempfile::tempdir().unwrap();
        let dirs = KatachiDirs::under(&tmp.path().join("home"));
        Self { tmp, dirs }
    }

    pub fn keychain(&self) -> OsKeychain {
        OsKeychain::new(self.dirs.keychain_service())
    }

    pub fn open(&self, machine_name: &str) -> AgentHome {
        AgentHome::open(self.dirs.clone(), &machine(machine_name)).unwrap()
    }
}

impl Drop for TestHome {
    fn drop(&mut self) {
        let k = self.keychain();
        for account in ["machine-secret", "api-key:openai", "api-key:anthropic"] {
            let _ = k.delete(account);
        }
    }
}
