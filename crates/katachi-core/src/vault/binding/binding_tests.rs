use super::*;
use crate::vault::MachineKey;
use crate::vault::Purpose;

fn fp(items: &[(&str, &str)]) -> Fingerprint {
    Fingerprint::from_components(
        items
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())),
    )
    .unwrap()
}

fn machine() -> Fingerprint {
    fp(&[
        ("cpu", "GenuineIntel\0Test"),
        ("machine_id", "0123abcd"),
        ("nic:eth0", "02:00:00:00:00:01"),
        ("product_uuid", "uuid-1"),
    ])
}

fn secret(b: u8) -> SecretBytes {
    SecretBytes::new(vec![b; 32])
}

fn open(rec: &BindingRecord, s: &SecretBytes, f: &Fingerprint) -> Result<DataKey, BindingError> {
    rec.open(Path::new("/data"), Path::new("/data/binding.json"), s, f)
        .map(|(k, _)| k)
}

#[test]
fn threshold_tolerates_one_change_from_three_components_up() {
    assert_eq!(
        [1, 2, 3, 4, 6].map(threshold_for),
        [1, 2, 2, 3, 5],
        "one or two components: all must match"
    );
}

#[test]
fn the_same_machine_and_secret_open_the_bound_key() {
    let key = DataKey::random();
    let rec = BindingRecord::bind(&key, &secret(1), &machine()).unwrap();
    assert_eq!((rec.threshold, rec.shares.len()), (3, 4));
    assert_eq!(
        open(&rec, &secret(1), &machine()).unwrap().expose(),
        key.expose()
    );
}

#[test]
fn one_changed_component_still_opens_and_is_named() {
    let key = DataKey::random();
    let rec = BindingRecord::bind(&key, &secret(1), &machine()).unwrap();
    let swapped = fp(&[
        ("cpu", "GenuineIntel\0Test"),
        ("machine_id", "0123abcd"),
        ("nic:eth0", "02:00:00:00:00:99"),
        ("product_uuid", "uuid-1"),
    ]);
    let (opened, diff) = rec
        .open(Path::new("/d"), Path::new("/d/b"), &secret(1), &swapped)
        .unwrap();
    assert_eq!(opened.expose(), key.expose());
    assert_eq!(diff.changed, vec!["nic:eth0"]);
    let a = rec.assess(&secret(1), &swapped);
    assert!(a.holds() && a.matched == 3 && a.needed == 3);
}

#[test]
fn two_changed_components_fail_closed() {
    let rec = BindingRecord::bind(&DataKey::random(), &secret(1), &machine()).unwrap();
    let other = fp(&[
        ("cpu", "GenuineIntel\0Test"),
        ("machine_id", "ffff0000"),
        ("nic:eth0", "02:00:00:00:00:99"),
        ("product_uuid", "uuid-1"),
    ]);
    let err = open(&rec, &secret(1), &other).unwrap_err();
    assert!(
        matches!(
            err,
            BindingError::TooFewComponents {
                matched: 2,
                needed: 3,
                total: 4,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("machine_id") && err.to_string().contains("nic:eth0"));
}

#[test]
fn another_keychain_secret_fails_closed_as_such() {
    let rec = BindingRecord::bind(&DataKey::random(), &secret(1), &machine()).unwrap();
    let err = open(&rec, &secret(2), &machine()).unwrap_err();
    assert!(
        matches!(err, BindingError::WrongKeychainSecret { .. }),
        "{err}"
    );
}

#[test]
fn two_components_both_must_match() {
    let two = fp(&[("cpu", "c"), ("machine_id", "m")]);
    let rec = BindingRecord::bind(&DataKey::random(), &secret(1), &two).unwrap();
    assert!(open(&rec, &secret(1), &two).is_ok());
    let err = open(
        &rec,
        &secret(1),
        &fp(&[("cpu", "c"), ("machine_id", "other")]),
    )
    .unwrap_err();
    assert!(
        matches!(err, BindingError::TooFewComponents { .. }),
        "{err}"
    );
}

#[test]
fn a_share_moved_to_another_component_does_not_open() {
    let same = fp(&[("a", "v"), ("b", "v"), ("c", "v")]);
    let mut rec = BindingRecord::bind(&DataKey::random(), &secret(1), &same).unwrap();
    // Same value under every name: only the AAD (component name) tells the shares apart.
    let first = rec.shares[0].wrapped.clone();
    rec.shares[1].wrapped = first.clone();
    rec.shares[2].wrapped = first;
    let err = open(&rec, &secret(1), &same).unwrap_err();
    assert!(
        matches!(err, BindingError::TooFewComponents { matched: 1, .. }),
        "{err}"
    );
}

#[test]
fn the_record_holds_no_component_value() {
    let rec = BindingRecord::bind(&DataKey::random(), &secret(1), &machine()).unwrap();
    let json = serde_json::to_string(&rec).unwrap();
    for value in ["0123abcd", "02:00:00:00:00:01", "uuid-1", "GenuineIntel"] {
        assert!(!json.contains(value), "{value} leaked");
    }
}

#[test]
fn legacy_data_key_keeps_the_old_machine_keys() {
    let fp = machine();
    let old = MachineKey::derive(&secret(1), &fp);
    let rec = BindingRecord::bind(
        &crate::vault::legacy_data_key(&secret(1), &fp),
        &secret(1),
        &fp,
    )
    .unwrap();
    let migrated = MachineKey::from_data_key(&open(&rec, &secret(1), &fp).unwrap());
    for p in [
        Purpose::STORE,
        Purpose::AGENT_CREDENTIALS,
        Purpose::API_KEYS,
    ] {
        assert_eq!(migrated.key_for(p).expose(), old.key_for(p).expose());
    }
}

#[test]
fn damaged_record_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("binding.json");
    assert!(BindingRecord::load(&p).unwrap().is_none());
    let rec = BindingRecord::bind(&DataKey::random(), &secret(1), &machine()).unwrap();
    rec.save(&p).unwrap();
    assert_eq!(BindingRecord::load(&p).unwrap(), Some(rec.clone()));
    let mut bad = rec;
    bad.threshold = 9;
    std::fs::write(&p, serde_json::to_vec(&bad).unwrap()).unwrap();
    let err = BindingRecord::load(&p).unwrap_err();
    assert!(matches!(err, BindingError::Damaged { .. }), "{err}");
}
