//! Linux components: physical NICs' permanent MACs, DMI board serial and product UUID, machine-id.

use std::path::Path;

use super::is_placeholder;

/// `addr_assign_type` value for a permanent (burned-in) address (`NET_ADDR_PERM`).
const NET_ADDR_PERM: &str = "0";

pub(super) fn collect(found: &mut Vec<(String, Vec<u8>)>, unavailable: &mut Vec<String>) {
    collect_nics(Path::new("/sys/class/net"), found, unavailable);
    for (name, path) in [
        ("board_serial", "/sys/class/dmi/id/board_serial"),
        ("product_uuid", "/sys/class/dmi/id/product_uuid"),
    ] {
        read_value(name, Path::new(path), found, unavailable, |_| true);
    }
    read_value(
        "machine_id",
        Path::new("/etc/machine-id"),
        found,
        unavailable,
        |v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()),
    );
}

fn read_value(
    name: &str,
    path: &Path,
    found: &mut Vec<(String, Vec<u8>)>,
    unavailable: &mut Vec<String>,
    valid: impl Fn(&str) -> bool,
) {
    match std::fs::read_to_string(path) {
        Ok(raw) => {
            let value = raw.trim();
            if is_placeholder(value) || !valid(value) {
                unavailable.push(format!("{name} (placeholder or malformed value)"));
            } else {
                found.push((name.to_owned(), value.as_bytes().to_vec()));
            }
        }
        Err(e) => unavailable.push(format!("{name} ({}: {})", path.display(), e.kind())),
    }
}

/// Physical NICs only (a `device` link in sysfs), and only burned-in addresses: virtual, bridged,
/// randomised (Wi-Fi privacy) and user-set MACs would change the fingerprint for no reason.
fn collect_nics(root: &Path, found: &mut Vec<(String, Vec<u8>)>, unavailable: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(root) else {
        unavailable.push(format!("nic ({} not readable)", root.display()));
        return;
    };
    let mut any = false;
    for entry in entries.flatten() {
        let dir = entry.path();
        let Some(ifname) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !dir.join("device").exists() {
            continue;
        }
        let assign = std::fs::read_to_string(dir.join("addr_assign_type")).unwrap_or_default();
        if assign.trim() != NET_ADDR_PERM {
            continue;
        }
        let Ok(mac) = std::fs::read_to_string(dir.join("address")) else {
            continue;
        };
        let mac = mac.trim().to_ascii_lowercase();
        if is_placeholder(&mac) {
            continue;
        }
        any = true;
        found.push((format!("nic:{ifname}"), mac.into_bytes()));
    }
    if !any {
        unavailable.push("nic (no physical NIC with a permanent address)".to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_nic(root: &Path, name: &str, assign: &str, mac: &str, physical: bool) {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("addr_assign_type"), assign).unwrap();
        std::fs::write(d.join("address"), mac).unwrap();
        if physical {
            std::fs::create_dir(d.join("device")).unwrap();
        }
    }

    #[test]
    fn only_physical_nics_with_permanent_macs_count() {
        let tmp = tempfile::tempdir().unwrap();
        fake_nic(tmp.path(), "eth0", "0\n", "02:FC:00:00:00:01\n", true);
        fake_nic(tmp.path(), "wlan0", "1\n", "ae:27:e1:b2:cf:65\n", true); // randomised
        fake_nic(tmp.path(), "veth1", "0\n", "e2:0b:c5:2b:a9:cf\n", false); // virtual
        fake_nic(tmp.path(), "lo", "0\n", "00:00:00:00:00:00\n", false);
        let (mut found, mut unavailable) = (Vec::new(), Vec::new());
        collect_nics(tmp.path(), &mut found, &mut unavailable);
        assert_eq!(
            found,
            vec![("nic:eth0".to_owned(), b"02:fc:00:00:00:01".to_vec())]
        );
        assert!(unavailable.is_empty());
    }

    #[test]
    fn malformed_machine_id_is_not_used() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("machine-id");
        std::fs::write(&p, "not-a-machine-id\n").unwrap();
        let (mut found, mut unavailable) = (Vec::new(), Vec::new());
        read_value("machine_id", &p, &mut found, &mut unavailable, |v| {
            v.len() == 32
        });
        assert!(found.is_empty());
        assert_eq!(unavailable.len(), 1);
    }
}
