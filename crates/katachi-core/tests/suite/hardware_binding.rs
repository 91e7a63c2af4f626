//! The machine key's hardware binding on fake sysfs/DMI trees, with the real keychain: a dock or
//! one replaced part keeps the data open (and re-binds), another machine or keychain opens nothing
//! and changes nothing, and data of the older whole-fingerprint key migrates without loss.

use katachi_core::agent_home::{HomeError, REBIND_ACTION};
use katachi_core::doctor::{diagnose, CheckStatus, DoctorReport};
use katachi_core::fingerprint::{FingerprintRecord, FingerprintSource};
use katachi_core::store::{Role, Store};
use katachi_core::vault::{
    BindingError, BindingRecord, Keystore, MachineKey, Purpose, SealedFile, MACHINE_SECRET_ACCOUNT,
};
use katachi_core::{AgentHome, SecretBytes};

use super::fake_machine::{snapshot, FakeMachine};
use super::support::TestHome;

fn open(home: &TestHome, m: &FakeMachine) -> Result<AgentHome, HomeError> {
    AgentHome::open(home.dirs.clone(), &m.source())
}

/// A home with one chat message and a sealed credential file, opened on `m`.
fn home_with_data(m: &FakeMachine) -> TestHome {
    let home = TestHome::new();
    let agent = open(&home, m).unwrap();
    let store = agent.store().unwrap();
    let s = store.chat().create_session(None, "t").unwrap();
    store
        .chat()
        .append(s.id, Role::User, "private question")
        .unwrap();
    agent
        .agent_credentials()
        .write(agent.machine_key(), b"token")
        .unwrap();
    home
}

fn assert_data_opens(agent: &AgentHome) {
    assert_eq!(agent.store().unwrap().chat().message_count().unwrap(), 1);
    let token = agent.agent_credentials().read(agent.machine_key()).unwrap();
    assert_eq!(token.unwrap().expose(), b"token");
}

fn binding(home: &TestHome) -> BindingRecord {
    BindingRecord::load(&home.dirs.binding_path())
        .unwrap()
        .unwrap()
}

fn bound_names(home: &TestHome) -> Vec<String> {
    binding(home)
        .shares
        .into_iter()
        .map(|s| s.component)
        .collect()
}

fn check<'a>(report: &'a DoctorReport, layer: &str) -> &'a katachi_core::doctor::Check {
    report.checks.iter().find(|c| c.layer == layer).unwrap()
}

#[test]
fn plugging_in_a_usb_nic_changes_nothing_and_the_data_opens() {
    let m = FakeMachine::new("laptop");
    let home = home_with_data(&m);
    let before = std::fs::read(home.dirs.binding_path()).unwrap();
    m.plug_usb_nic("enx0", "02:aa:bb:cc:dd:ee");
    let agent = open(&home, &m).unwrap();
    assert_data_opens(&agent);
    assert!(!bound_names(&home).iter().any(|n| n.contains("enx0")));
    assert_eq!(
        std::fs::read(home.dirs.binding_path()).unwrap(),
        before,
        "a removable NIC is not a component: no re-bind"
    );
}

#[test]
fn removing_a_nic_still_opens_and_rebinds_to_the_rest() {
    let m = FakeMachine::new("laptop");
    m.add_builtin_nic("wlan0", "02:00:00:00:77:01");
    let home = home_with_data(&m);
    assert!(bound_names(&home).contains(&"nic:wlan0".to_owned()));
    m.remove_nic("wlan0");
    let agent = open(&home, &m).unwrap();
    assert_data_opens(&agent);
    let rec = binding(&home);
    assert!(!rec.shares.iter().any(|s| s.component == "nic:wlan0"));
    assert_eq!((rec.threshold, rec.shares.len()), (4, 5));
    assert!(rec.last_change.unwrap().what.contains("missing: nic:wlan0"));
}

#[test]
fn one_changed_component_opens_rebinds_and_is_audited_then_another_may_change() {
    let m = FakeMachine::new("laptop");
    let home = home_with_data(&m);
    let before = binding(&home);
    m.set_dmi("board_serial", "replaced-mainboard-serial");
    let agent = open(&home, &m).unwrap();
    assert_data_opens(&agent);
    let after = binding(&home);
    assert_ne!(after.salt, before.salt, "re-wrapped under a fresh salt");
    assert_eq!(after.last_change.unwrap().what, "changed: board_serial");
    let store = agent.store().unwrap();
    let key = katachi_core::store::AuditKey::derive(agent.machine_key());
    let records = store.audit(&key).recent(10).unwrap();
    let rebind = records.iter().find(|r| r.action == REBIND_ACTION).unwrap();
    assert_eq!(rebind.actor, "agent");
    assert_eq!(rebind.detail, "changed: board_serial");
    store.audit(&key).verify().unwrap();
    drop(store);
    // Re-bound to the new set: one more part may change later.
    m.add_builtin_nic("eth0-new", "02:00:00:00:99:01");
    m.remove_nic("eth0");
    assert_data_opens(&open(&home, &m).unwrap());
}

#[test]
fn most_components_changed_fails_closed_and_touches_no_file() {
    let m = FakeMachine::new("laptop");
    let home = home_with_data(&m);
    let before = snapshot(home.dirs.data());
    m.set_machine_id(&"ab".repeat(16));
    m.set_dmi("product_uuid", "another-uuid");
    m.set_dmi("board_serial", "another-serial");
    let err = open(&home, &m).unwrap_err();
    assert!(
        matches!(
            err,
            HomeError::Binding(BindingError::TooFewComponents {
                matched: 2,
                needed: 4,
                total: 5,
                ..
            })
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("machine_id") && text.contains("product_uuid"),
        "{text}"
    );
    assert_eq!(snapshot(home.dirs.data()), before, "no file was rewritten");
    let report = diagnose(&home.dirs, &m.source());
    assert_eq!(check(&report, "binding").status, CheckStatus::Fail);
    assert!(check(&report, "binding").summary.contains("2 of 5"));
    assert_eq!(snapshot(home.dirs.data()), before, "doctor writes nothing");
}

#[test]
fn another_keychain_fails_closed_and_no_secret_is_created() {
    let m = FakeMachine::new("laptop");
    let original = home_with_data(&m);
    // The same data folder under another home: another keychain service, with no secret.
    let other = TestHome::new();
    copy_dir(original.dirs.data(), other.dirs.data());
    let before = snapshot(other.dirs.data());
    let err = open(&other, &m).unwrap_err();
    assert!(
        matches!(
            err,
            HomeError::Binding(BindingError::KeychainSecretLost { .. })
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("cannot be recovered") && text.contains("no new secret was created"),
        "{text}"
    );
    assert_eq!(other.keychain().get(MACHINE_SECRET_ACCOUNT).unwrap(), None);
    assert_eq!(snapshot(other.dirs.data()), before);
    let report = diagnose(&other.dirs, &m.source());
    assert_eq!(check(&report, "binding").status, CheckStatus::Fail);
    assert_eq!(other.keychain().get(MACHINE_SECRET_ACCOUNT).unwrap(), None);

    // A keychain holding another secret.
    other
        .keychain()
        .set(MACHINE_SECRET_ACCOUNT, &"7f".repeat(32))
        .unwrap();
    let err = open(&other, &m).unwrap_err();
    assert!(
        matches!(
            err,
            HomeError::Binding(BindingError::WrongKeychainSecret { .. })
        ),
        "{err}"
    );
    assert_eq!(snapshot(other.dirs.data()), before);
}

#[test]
fn doctor_names_the_changed_component_and_says_the_binding_holds() {
    let m = FakeMachine::new("laptop");
    let home = home_with_data(&m);
    assert_eq!(
        check(&diagnose(&home.dirs, &m.source()), "binding").status,
        CheckStatus::Ok
    );
    m.set_machine_id(&"cd".repeat(16));
    let report = diagnose(&home.dirs, &m.source());
    let fp = check(&report, "fingerprint");
    assert_eq!(fp.status, CheckStatus::Warn);
    assert!(fp.summary.contains("changed: machine_id"), "{}", fp.summary);
    let b = check(&report, "binding");
    assert_eq!(b.status, CheckStatus::Warn);
    assert!(b.summary.starts_with("holds: 4 of 5"), "{}", b.summary);
    assert_eq!(check(&report, "store").status, CheckStatus::Ok);
    assert!(report.healthy());
}

#[test]
fn store_and_sealed_file_of_the_old_derivation_open_after_upgrade() {
    // What katachi wrote before the binding: the key of secret ‖ the whole fingerprint, with a
    // USB adapter plugged in at the time (it counted then), and a fingerprint record.
    let m = FakeMachine::new("laptop");
    m.plug_usb_nic("enx0", "02:aa:bb:cc:dd:ee");
    let home = TestHome::new();
    home.dirs.ensure().unwrap();
    let secret = SecretBytes::random(32);
    home.keychain()
        .set(MACHINE_SECRET_ACCOUNT, &hex::encode(secret.expose()))
        .unwrap();
    let fp = m.source().read().unwrap();
    let old_key = MachineKey::derive(&secret, &fp);
    FingerprintRecord::of(&fp)
        .save(&home.dirs.fingerprint_record_path())
        .unwrap();
    {
        let store = Store::open(&home.dirs.store_path(), &old_key.key_for(Purpose::STORE)).unwrap();
        let s = store.chat().create_session(None, "t").unwrap();
        store
            .chat()
            .append(s.id, Role::User, "private question")
            .unwrap();
    }
    SealedFile::new(
        home.dirs.agent_credentials_path(),
        Purpose::AGENT_CREDENTIALS,
    )
    .write(&old_key, b"token")
    .unwrap();

    let agent = open(&home, &m).unwrap();
    assert_data_opens(&agent);
    assert_eq!(
        agent.machine_key().key_for(Purpose::STORE).expose(),
        old_key.key_for(Purpose::STORE).expose(),
        "the same keys: nothing was re-encrypted"
    );
    assert!(binding(&home)
        .last_change
        .unwrap()
        .what
        .contains("migrated"));
    drop(agent);
    // Bound now: the adapter may go.
    m.remove_nic("enx0");
    assert_data_opens(&open(&home, &m).unwrap());
}

#[test]
fn old_data_that_the_derived_key_does_not_open_is_not_migrated_and_not_touched() {
    let m = FakeMachine::new("laptop");
    let home = TestHome::new();
    home.dirs.ensure().unwrap();
    let secret = SecretBytes::random(32);
    home.keychain()
        .set(MACHINE_SECRET_ACCOUNT, &hex::encode(secret.expose()))
        .unwrap();
    let old_key = MachineKey::derive(&secret, &m.source().read().unwrap());
    SealedFile::new(
        home.dirs.agent_credentials_path(),
        Purpose::AGENT_CREDENTIALS,
    )
    .write(&old_key, b"token")
    .unwrap();
    m.set_machine_id(&"ef".repeat(16)); // changed before the upgrade
    let before = snapshot(home.dirs.data());
    let err = open(&home, &m).unwrap_err();
    assert!(
        matches!(
            err,
            HomeError::Binding(BindingError::LegacyKeyDoesNotOpen { .. })
        ),
        "{err}"
    );
    assert_eq!(snapshot(home.dirs.data()), before);
    assert!(!home.dirs.binding_path().exists());
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.metadata().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
