//! A fake Linux machine: a sysfs/DMI/etc tree under a temp root, read by `RootedFingerprint`.
//! Built-in NICs hang off the PCI bus; adapters off USB or Thunderbolt, as in real sysfs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use katachi_core::fingerprint::RootedFingerprint;
use sha2::{Digest, Sha256};

/// The root of one fake machine.
pub struct FakeMachine {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl FakeMachine {
    /// A machine with machine-id, product UUID, board serial, a CPU and one built-in NIC `eth0`.
    pub fn new(name: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        for bus in ["pci", "usb", "thunderbolt"] {
            std::fs::create_dir_all(root.join("sys/bus").join(bus)).unwrap();
        }
        std::fs::create_dir_all(root.join("sys/class/net")).unwrap();
        let m = Self { _tmp: tmp, root };
        m.set_machine_id(&format!("{:0>32}", hex(name)));
        m.set_dmi("product_uuid", &format!("{name}-product-uuid"));
        m.set_dmi("board_serial", &format!("{name}-board-serial"));
        m.write(
            "proc/cpuinfo",
            "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Test CPU @ 2.00GHz\n",
        );
        m.add_builtin_nic("eth0", &format!("02:00:00:00:{:02x}:01", name.len()));
        m
    }

    /// What katachi reads on this machine.
    pub fn source(&self) -> RootedFingerprint {
        RootedFingerprint::new(&self.root)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Replaces `/etc/machine-id` (32 hex digits).
    pub fn set_machine_id(&self, id: &str) {
        self.write("etc/machine-id", &format!("{id}\n"));
    }

    /// Replaces a DMI value (`product_uuid`, `board_serial`).
    pub fn set_dmi(&self, name: &str, value: &str) {
        self.write(&format!("sys/class/dmi/id/{name}"), &format!("{value}\n"));
    }

    fn add_nic(&self, ifname: &str, mac: &str, device_rel: &str, bus: &str) {
        let dev = self.root.join("sys/devices").join(device_rel);
        std::fs::create_dir_all(&dev).unwrap();
        let subsystem = dev.parent().unwrap().join("subsystem");
        if !subsystem.exists() {
            std::os::unix::fs::symlink(self.root.join("sys/bus").join(bus), &subsystem).unwrap();
        }
        let net = self.root.join("sys/class/net").join(ifname);
        std::fs::create_dir_all(&net).unwrap();
        std::fs::write(net.join("address"), format!("{mac}\n")).unwrap();
        std::fs::write(net.join("addr_assign_type"), "0\n").unwrap();
        std::os::unix::fs::symlink(&dev, net.join("device")).unwrap();
    }

    /// A NIC on the PCI bus (built in, or a replaceable Wi-Fi card).
    pub fn add_builtin_nic(&self, ifname: &str, mac: &str) {
        self.add_nic(
            ifname,
            mac,
            &format!("pci0000:00/0000:00:1c.0/{ifname}/net-dev"),
            "pci",
        );
    }

    /// A USB Ethernet adapter (a dock).
    pub fn plug_usb_nic(&self, ifname: &str, mac: &str) {
        self.add_nic(
            ifname,
            mac,
            &format!("pci0000:00/0000:00:14.0/usb1/1-{ifname}/1-1:1.0"),
            "usb",
        );
    }

    /// Takes a NIC out (unplugged adapter, removed card).
    pub fn remove_nic(&self, ifname: &str) {
        std::fs::remove_dir_all(self.root.join("sys/class/net").join(ifname)).unwrap();
    }
}

fn hex(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Every file under `dir` with a hash of its content and its modification time.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else {
                let hash = Sha256::digest(std::fs::read(&p).unwrap()).to_vec();
                out.insert(p, (hash, meta.modified().unwrap()));
            }
        }
    }
    out
}
