//! The real Secret Service (gnome-keyring) as the keystore.

use katachi_core::secret::SecretBytes;
use katachi_core::vault::{Keystore, KeystoreKind, Purpose, MACHINE_SECRET_ACCOUNT};

use super::support::TestHome;

#[test]
fn machine_secret_is_created_in_the_os_keychain_once_and_reused() {
    let home = TestHome::new();
    assert!(home
        .keychain()
        .get(MACHINE_SECRET_ACCOUNT)
        .unwrap()
        .is_none());
    let first = home.open("a");
    assert_eq!(first.keystore().kind(), KeystoreKind::OsKeychain);
    let stored = home
        .keychain()
        .get(MACHINE_SECRET_ACCOUNT)
        .unwrap()
        .unwrap();
    assert_eq!(stored.len(), 64, "32 bytes, hex");
    let again = home.open("a");
    assert_eq!(
        first.machine_key().key_for(Purpose::STORE).expose(),
        again.machine_key().key_for(Purpose::STORE).expose()
    );
    assert_eq!(
        home.keychain()
            .get(MACHINE_SECRET_ACCOUNT)
            .unwrap()
            .unwrap(),
        stored
    );
}

#[test]
fn keychain_entries_round_trip_and_delete() {
    let home = TestHome::new();
    let k = home.keychain();
    k.set("api-key:openai", "value-1").unwrap();
    k.set("api-key:openai", "value-2").unwrap();
    assert_eq!(k.get("api-key:openai").unwrap().as_deref(), Some("value-2"));
    assert!(k.delete("api-key:openai").unwrap());
    assert!(!k.delete("api-key:openai").unwrap());
    assert_eq!(k.get("api-key:openai").unwrap(), None);
}

#[test]
fn api_keys_live_sealed_in_the_os_keychain() {
    let home = TestHome::new();
    let agent = home.open("a");
    agent
        .api_keys()
        .set("anthropic", &SecretBytes::new(b"sk-ant-REALKEY".to_vec()))
        .unwrap();
    let raw = home.keychain().get("api-key:anthropic").unwrap().unwrap();
    assert!(
        !raw.contains("sk-ant"),
        "the keychain holds the sealed value only"
    );
    assert_eq!(
        agent.api_keys().get("anthropic").unwrap().unwrap().expose(),
        b"sk-ant-REALKEY"
    );
    assert!(agent.api_keys().delete("anthropic").unwrap());
    assert!(agent.api_keys().get("anthropic").unwrap().is_none());
}

#[test]
fn corrupted_keychain_secret_is_reported_and_left_alone() {
    let home = TestHome::new();
    home.keychain()
        .set(MACHINE_SECRET_ACCOUNT, "edited-by-hand")
        .unwrap();
    let err = katachi_core::AgentHome::open(home.dirs.clone(), &super::support::machine("a"))
        .unwrap_err();
    assert!(err.to_string().contains("corrupted"), "{err}");
    assert_eq!(
        home.keychain()
            .get(MACHINE_SECRET_ACCOUNT)
            .unwrap()
            .as_deref(),
        Some("edited-by-hand")
    );
}
