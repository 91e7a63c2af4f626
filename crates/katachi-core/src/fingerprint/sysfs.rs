//! Linux components, read under a filesystem root (`/` on the machine, a fake tree in tests):
//! physical NICs' permanent MACs (`ROOT/sys/class/net`), DMI board serial and product UUID
//! (`ROOT/sys/class/dmi/id`), `ROOT/etc/machine-id`, and — for a fake root only — the CPU from
//! `ROOT/proc/cpuinfo` (the machine's own CPU is read by sysinfo, as it always was).
//!
//! # Guarantees
//! - A NIC whose device sits on a USB or Thunderbolt bus (any ancestor device in sysfs has the
//!   `usb` or `thunderbolt` subsystem, or says it is `removable`) is never a bound component: a
//!   dock or an adapter comes and goes. It is kept apart as *removable*, only so that the digest of
//!   katachi versions that did count it can still be computed once, to migrate their data.
//! - Virtual, bridged, randomised and user-set MACs are never read.
//!
//! Plain `std::fs`, so it compiles everywhere; only Linux calls it for the real machine.

use std::path::{Path, PathBuf};

use super::is_placeholder;

/// `addr_assign_type` value for a permanent (burned-in) address (`NET_ADDR_PERM`).
const NET_ADDR_PERM: &str = "0";

/// Buses whose devices are plugged and unplugged: a NIC on them is never a bound component.
const REMOVABLE_SUBSYSTEMS: [&str; 2] = ["usb", "thunderbolt"];

/// What was read under one root.
#[derive(Debug, Default)]
pub(super) struct Collected {
    /// Bound components: name → value.
    pub found: Vec<(String, Vec<u8>)>,
    /// NICs on a removable bus: name → value (never bound; legacy digest only).
    pub removable: Vec<(String, Vec<u8>)>,
    /// Looked for but unusable, or ignored, each with its reason.
    pub unavailable: Vec<String>,
}

/// Reads every Linux component under `root`.
pub(super) fn collect(root: &Path, out: &mut Collected) {
    collect_nics(&root.join("sys"), out);
    let dmi = root.join("sys/class/dmi/id");
    for name in ["board_serial", "product_uuid"] {
        read_value(name, &dmi.join(name), out, |_| true);
    }
    read_value("machine_id", &root.join("etc/machine-id"), out, |v| {
        v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit())
    });
}

/// The CPU vendor and brand from `ROOT/proc/cpuinfo`, in the same shape as the sysinfo reading.
pub(super) fn collect_cpuinfo(root: &Path, out: &mut Collected) {
    let path = root.join("proc/cpuinfo");
    let Ok(text) = std::fs::read_to_string(&path) else {
        out.unavailable
            .push(format!("cpu ({} not readable)", path.display()));
        return;
    };
    let field = |key: &str| {
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let (vendor, brand) = (field("vendor_id"), field("model name"));
    if vendor.is_empty() && brand.is_empty() {
        out.unavailable.push("cpu (no CPU information)".to_owned());
    } else {
        out.found
            .push(("cpu".to_owned(), format!("{vendor}\0{brand}").into_bytes()));
    }
}

fn read_value(name: &str, path: &Path, out: &mut Collected, valid: impl Fn(&str) -> bool) {
    match std::fs::read_to_string(path) {
        Ok(raw) => {
            let value = raw.trim();
            if is_placeholder(value) || !valid(value) {
                out.unavailable
                    .push(format!("{name} (placeholder or malformed value)"));
            } else {
                out.found.push((name.to_owned(), value.as_bytes().to_vec()));
            }
        }
        Err(e) => out
            .unavailable
            .push(format!("{name} ({}: {})", path.display(), e.kind())),
    }
}

/// Physical NICs only (a `device` link in sysfs), and only burned-in addresses: virtual, bridged,
/// randomised (Wi-Fi privacy) and user-set MACs would change the fingerprint for no reason.
fn collect_nics(sys: &Path, out: &mut Collected) {
    let net = sys.join("class/net");
    let Ok(entries) = std::fs::read_dir(&net) else {
        out.unavailable
            .push(format!("nic ({} not readable)", net.display()));
        return;
    };
    let mut fixed = 0;
    let mut names: Vec<_> = entries.flatten().collect();
    names.sort_by_key(std::fs::DirEntry::file_name);
    for entry in names {
        let dir = entry.path();
        let Some(ifname) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let device = dir.join("device");
        if !device.exists() {
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
        let name = format!("nic:{ifname}");
        if let Some(bus) = removable_bus(sys, &device) {
            out.unavailable
                .push(format!("{name} (on a removable {bus} bus: never bound)"));
            out.removable.push((name, mac.into_bytes()));
        } else {
            fixed += 1;
            out.found.push((name, mac.into_bytes()));
        }
    }
    if fixed == 0 {
        out.unavailable
            .push("nic (no built-in NIC with a permanent address)".to_owned());
    }
}

/// The removable bus (`usb`, `thunderbolt`, or `removable` for a device that says so) the NIC's
/// device hangs off, walking from the device up to `SYS/devices`; `None` for a built-in device.
fn removable_bus(sys: &Path, device: &Path) -> Option<String> {
    let device = std::fs::canonicalize(device).ok()?;
    let boundary: PathBuf = std::fs::canonicalize(sys.join("devices")).unwrap_or_default();
    for dir in device.ancestors() {
        if dir == boundary || (!boundary.as_os_str().is_empty() && !dir.starts_with(&boundary)) {
            break;
        }
        if let Ok(target) = std::fs::read_link(dir.join("subsystem")) {
            if let Some(bus) = target.file_name().and_then(|n| n.to_str()) {
                if REMOVABLE_SUBSYSTEMS.contains(&bus) {
                    return Some(bus.to_owned());
                }
            }
        }
        // PCI devices behind an external-facing (Thunderbolt/USB4) port say so themselves.
        if std::fs::read_to_string(dir.join("removable")).is_ok_and(|v| v.trim() == "removable") {
            return Some("removable".to_owned());
        }
    }
    None
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use super::*;

    fn fake_nic(sys: &Path, name: &str, assign: &str, mac: &str, physical: bool) {
        let d = sys.join("class/net").join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("addr_assign_type"), assign).unwrap();
        std::fs::write(d.join("address"), mac).unwrap();
        if physical {
            let dev = sys.join("devices/pci0000:00").join(name);
            std::fs::create_dir_all(&dev).unwrap();
            std::os::unix::fs::symlink(&dev, d.join("device")).unwrap();
        }
    }

    #[test]
    fn only_physical_nics_with_permanent_macs_count() {
        let tmp = tempfile::tempdir().unwrap();
        let sys = tmp.path().join("sys");
        fake_nic(&sys, "eth0", "0\n", "02:FC:00:00:00:01\n", true);
        fake_nic(&sys, "wlan0", "1\n", "ae:27:e1:b2:cf:65\n", true); // randomised
        fake_nic(&sys, "veth1", "0\n", "e2:0b:c5:2b:a9:cf\n", false); // virtual
        fake_nic(&sys, "lo", "0\n", "00:00:00:00:00:00\n", false);
        let mut out = Collected::default();
        collect_nics(&sys, &mut out);
        assert_eq!(
            out.found,
            vec![("nic:eth0".to_owned(), b"02:fc:00:00:00:01".to_vec())]
        );
        assert!(out.unavailable.is_empty() && out.removable.is_empty());
    }

    #[test]
    fn usb_and_thunderbolt_nics_are_removable_not_bound() {
        let tmp = tempfile::tempdir().unwrap();
        let sys = tmp.path().join("sys");
        for bus in ["usb", "thunderbolt", "pci"] {
            std::fs::create_dir_all(sys.join("bus").join(bus)).unwrap();
        }
        let plug = |ifname: &str, dev_rel: &str, bus_of_parent: &str| {
            let dev = sys.join("devices").join(dev_rel);
            std::fs::create_dir_all(&dev).unwrap();
            let parent = dev.parent().unwrap();
            std::os::unix::fs::symlink(
                sys.join("bus").join(bus_of_parent),
                parent.join("subsystem"),
            )
            .unwrap();
            let d = sys.join("class/net").join(ifname);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("addr_assign_type"), "0\n").unwrap();
            std::fs::write(
                d.join("address"),
                format!("02:00:00:00:00:{}\n", ifname.len()),
            )
            .unwrap();
            std::os::unix::fs::symlink(&dev, d.join("device")).unwrap();
        };
        plug("enx1", "pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0", "usb");
        plug(
            "tb0",
            "pci0000:00/0000:00:0d.2/domain0/0-0/0-1/tbnet",
            "thunderbolt",
        );
        plug("enp3s0", "pci0000:00/0000:00:1c.0/0000:03:00.0/net", "pci");
        let mut out = Collected::default();
        collect_nics(&sys, &mut out);
        let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&out.found), vec!["nic:enp3s0"]);
        assert_eq!(names(&out.removable), vec!["nic:enx1", "nic:tb0"]);
        assert!(out
            .unavailable
            .iter()
            .any(|u| u.contains("nic:enx1") && u.contains("usb")));
    }

    #[test]
    fn malformed_machine_id_is_not_used() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("machine-id");
        std::fs::write(&p, "not-a-machine-id\n").unwrap();
        let mut out = Collected::default();
        read_value("machine_id", &p, &mut out, |v| v.len() == 32);
        assert!(out.found.is_empty());
        assert_eq!(out.unavailable.len(), 1);
    }
}
