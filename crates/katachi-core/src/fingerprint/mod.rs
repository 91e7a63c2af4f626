//! The machine's hardware identity: a SHA-256 over a canonical, sorted list of stable components.
//!
//! Components (Linux): permanent MACs of built-in NICs (`nic:<interface>`), CPU vendor and brand
//! (`cpu`), the board serial and product UUID where readable (`board_serial`, `product_uuid`) and
//! `/etc/machine-id` (`machine_id`). NICs on a USB or Thunderbolt bus (docks, adapters) are never
//! components: they are kept apart as *removable*, and count only in [`Fingerprint::digest`], the
//! all-in digest that katachi versions before the threshold binding derived the machine key from. macOS uses IOPlatformUUID, Windows MachineGuid (see the platform
//! modules). The fingerprint binds the machine key to this machine; the keychain secret makes it
//! unguessable. Values never leave this module except hashed: the [`FingerprintRecord`] keeps only
//! component names and salted hashes so `katachi doctor` can name a component that changed.
//!
//! The source is a seam ([`FingerprintSource`]): [`SystemFingerprint`] reads the machine,
//! [`RootedFingerprint`] reads a Linux tree under another root (tests build fake sysfs/DMI trees),
//! [`FixedFingerprint`] injects a component set (tests simulate "another machine" with it).

#[cfg(target_os = "macos")]
mod macos;
mod record;
mod sysfs;
#[cfg(target_os = "windows")]
mod windows;

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

pub use record::{FingerprintDiff, FingerprintRecord, RecordError};

/// Domain separation for the canonical encoding; bump when the encoding changes.
const ENCODING_TAG: &[u8] = b"katachi-fingerprint-v1\0";

/// Errors reading the machine's identity.
#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    /// Not a single stable component could be read (a container without machine-id, NICs or CPU info).
    #[error("no stable hardware component could be read ({tried}); on Linux make /etc/machine-id exist (systemd-machine-id-setup)")]
    NoComponents {
        /// What was tried and why each was unusable.
        tried: String,
    },
    /// This operating system has no fingerprint implementation.
    #[error("hardware fingerprint is not supported on this operating system")]
    Unsupported,
}

/// The machine's identity: component name → value (values are sensitive, never logged).
#[derive(Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Sorted by name so the encoding is canonical.
    components: BTreeMap<String, Vec<u8>>,
    /// NICs on a removable bus: never bound, counted only in the legacy [`Fingerprint::digest`].
    removable: BTreeMap<String, Vec<u8>>,
    /// Components that were looked for but not usable, with the reason (shown by `doctor`).
    unavailable: Vec<String>,
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fingerprint")
            .field("components", &self.component_names())
            .finish_non_exhaustive()
    }
}

impl Fingerprint {
    /// Builds a fingerprint from components; empty values are dropped.
    ///
    /// # Errors
    /// [`FingerprintError::NoComponents`] when nothing usable remains.
    pub fn from_components<I, N, V>(components: I) -> Result<Self, FingerprintError>
    where
        I: IntoIterator<Item = (N, V)>,
        N: Into<String>,
        V: Into<Vec<u8>>,
    {
        Self::with_unavailable(components, Vec::new())
    }

    fn with_unavailable<I, N, V>(
        components: I,
        unavailable: Vec<String>,
    ) -> Result<Self, FingerprintError>
    where
        I: IntoIterator<Item = (N, V)>,
        N: Into<String>,
        V: Into<Vec<u8>>,
    {
        let components: BTreeMap<String, Vec<u8>> = components
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        if components.is_empty() {
            return Err(FingerprintError::NoComponents {
                tried: if unavailable.is_empty() {
                    "none given".to_owned()
                } else {
                    unavailable.join("; ")
                },
            });
        }
        Ok(Self {
            components,
            removable: BTreeMap::new(),
            unavailable,
        })
    }

    /// Adds NICs on a removable bus: never bound components, but part of the legacy
    /// [`Fingerprint::digest`] (katachi versions before the threshold binding counted them).
    #[must_use]
    pub fn with_removable<I, N, V>(mut self, removable: I) -> Self
    where
        I: IntoIterator<Item = (N, V)>,
        N: Into<String>,
        V: Into<Vec<u8>>,
    {
        self.removable.extend(
            removable
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .filter(|(n, v)| !v.is_empty() && !self.components.contains_key(n)),
        );
        self
    }

    /// SHA-256 over the canonical encoding of *every* component read, removable NICs included: tag,
    /// then each component as `len(name) ‖ name ‖ len(value) ‖ value` (u32 big-endian lengths),
    /// sorted by name.
    ///
    /// This is the v1 digest: what the machine key of katachi versions before the threshold binding
    /// was derived from (kept to migrate their data) and what the opt-in file keystore is keyed by.
    /// The machine key itself is bound per component, see `vault::binding`.
    pub fn digest(&self) -> [u8; 32] {
        let mut all: BTreeMap<&str, &[u8]> = self
            .removable
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        all.extend(
            self.components
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_slice())),
        );
        let mut h = Sha256::new();
        h.update(ENCODING_TAG);
        for (name, value) in all {
            h.update(len_prefix(name.len()));
            h.update(name.as_bytes());
            h.update(len_prefix(value.len()));
            h.update(value);
        }
        h.finalize().into()
    }

    /// The names of the bound components (removable NICs excluded), sorted.
    pub fn component_names(&self) -> Vec<&str> {
        self.components.keys().map(String::as_str).collect()
    }

    /// Components looked for but not usable on this machine, each with its reason.
    pub fn unavailable(&self) -> &[String] {
        &self.unavailable
    }

    /// The bound components (name → value; values are sensitive).
    pub(crate) fn components(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.components
    }

    /// Every component the v1 digest counted: bound ones and removable NICs.
    pub(crate) fn all_components(&self) -> BTreeMap<String, Vec<u8>> {
        let mut all = self.removable.clone();
        all.extend(self.components.clone());
        all
    }
}

fn len_prefix(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

/// Where the fingerprint comes from: the real machine, or an injected set in tests.
pub trait FingerprintSource: Send + Sync {
    /// Reads the current fingerprint.
    ///
    /// # Errors
    /// [`FingerprintError`] when no stable component can be read.
    fn read(&self) -> Result<Fingerprint, FingerprintError>;
}

/// Reads the real machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemFingerprint;

impl FingerprintSource for SystemFingerprint {
    fn read(&self) -> Result<Fingerprint, FingerprintError> {
        let mut out = sysfs::Collected::default();
        #[cfg(target_os = "linux")]
        sysfs::collect(std::path::Path::new("/"), &mut out);
        #[cfg(target_os = "macos")]
        macos::collect(&mut out.found, &mut out.unavailable);
        #[cfg(target_os = "windows")]
        windows::collect(&mut out.found, &mut out.unavailable);
        #[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
        return Err(FingerprintError::Unsupported);
        collect_cpu(&mut out.found, &mut out.unavailable);
        Ok(
            Fingerprint::with_unavailable(out.found, out.unavailable)?
                .with_removable(out.removable),
        )
    }
}

/// A Linux machine's components read under another filesystem root: `ROOT/sys/class/net`,
/// `ROOT/sys/class/dmi/id`, `ROOT/etc/machine-id`, and the CPU from `ROOT/proc/cpuinfo`. The test
/// seam for docks, NIC swaps and other machines built as fake sysfs/DMI trees; compiles everywhere.
#[derive(Debug, Clone)]
pub struct RootedFingerprint {
    /// Stands for `/`.
    root: std::path::PathBuf,
}

impl RootedFingerprint {
    /// Reads the Linux layout under `root`.
    pub fn new(root: impl Into<std::path::PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

impl FingerprintSource for RootedFingerprint {
    fn read(&self) -> Result<Fingerprint, FingerprintError> {
        let mut out = sysfs::Collected::default();
        sysfs::collect(&self.root, &mut out);
        sysfs::collect_cpuinfo(&self.root, &mut out);
        Ok(
            Fingerprint::with_unavailable(out.found, out.unavailable)?
                .with_removable(out.removable),
        )
    }
}

/// A fixed component set: the test seam for "another machine".
#[derive(Debug, Clone)]
pub struct FixedFingerprint(pub Fingerprint);

impl FingerprintSource for FixedFingerprint {
    fn read(&self) -> Result<Fingerprint, FingerprintError> {
        Ok(self.0.clone())
    }
}

/// CPU vendor and brand of the first CPU (all platforms, via sysinfo).
fn collect_cpu(found: &mut Vec<(String, Vec<u8>)>, unavailable: &mut Vec<String>) {
    use sysinfo::{CpuRefreshKind, RefreshKind, System};
    let sys =
        System::new_with_specifics(RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing()));
    match sys.cpus().first() {
        Some(cpu) if !cpu.brand().trim().is_empty() || !cpu.vendor_id().trim().is_empty() => {
            let value = format!("{}\0{}", cpu.vendor_id().trim(), cpu.brand().trim());
            found.push(("cpu".to_owned(), value.into_bytes()));
        }
        _ => unavailable.push("cpu (no CPU information)".to_owned()),
    }
}

/// Values that firmware ships unfilled; they identify nothing.
pub(crate) fn is_placeholder(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    v.is_empty()
        || v.chars()
            .all(|c| c == '0' || c == '-' || c == 'f' || c == ':')
        || [
            "none",
            "default string",
            "to be filled by o.e.m.",
            "not specified",
            "not applicable",
            "system serial number",
            "0123456789",
            "03000200-0400-0500-0006-000700080009",
        ]
        .contains(&v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(items: &[(&str, &str)]) -> Fingerprint {
        Fingerprint::from_components(
            items
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())),
        )
        .unwrap()
    }

    #[test]
    fn digest_is_independent_of_discovery_order() {
        let a = fp(&[("cpu", "x"), ("machine_id", "y")]);
        let b = fp(&[("machine_id", "y"), ("cpu", "x")]);
        assert_eq!(a.digest(), b.digest());
    }

    #[test]
    fn digest_changes_when_any_component_changes() {
        let a = fp(&[("cpu", "x"), ("machine_id", "y")]);
        assert_ne!(
            a.digest(),
            fp(&[("cpu", "x"), ("machine_id", "z")]).digest()
        );
        assert_ne!(a.digest(), fp(&[("cpu", "x")]).digest());
    }

    #[test]
    fn removable_nics_count_in_the_legacy_digest_only() {
        let fixed = fp(&[("cpu", "x"), ("machine_id", "y")]);
        let docked = fixed
            .clone()
            .with_removable([("nic:enx1", b"02:00".to_vec())]);
        assert_eq!(docked.component_names(), vec!["cpu", "machine_id"]);
        assert_ne!(docked.digest(), fixed.digest());
        assert_eq!(
            docked.digest(),
            fp(&[("cpu", "x"), ("machine_id", "y"), ("nic:enx1", "02:00")]).digest(),
            "the legacy digest is the one older versions computed with the adapter plugged in"
        );
    }

    #[test]
    fn encoding_is_unambiguous_across_name_value_boundaries() {
        assert_ne!(fp(&[("ab", "c")]).digest(), fp(&[("a", "bc")]).digest());
    }

    #[test]
    fn no_components_is_an_error_that_says_what_was_tried() {
        let err = Fingerprint::with_unavailable(
            Vec::<(String, Vec<u8>)>::new(),
            vec!["machine_id (missing)".into()],
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("machine_id (missing)"));
    }

    #[test]
    fn this_machine_has_a_stable_fingerprint() {
        let a = SystemFingerprint.read().unwrap();
        let b = SystemFingerprint.read().unwrap();
        assert_eq!(a.digest(), b.digest());
        assert!(!a.component_names().is_empty());
    }

    #[test]
    fn debug_output_shows_names_not_values() {
        let shown = format!("{:?}", fp(&[("machine_id", "secretvalue123")]));
        assert!(shown.contains("machine_id") && !shown.contains("secretvalue123"));
    }

    #[test]
    fn firmware_placeholders_are_ignored() {
        for v in [
            "",
            "None",
            "To be filled by O.E.M.",
            "00000000-0000-0000-0000-000000000000",
            "ff:ff:ff:ff:ff:ff",
        ] {
            assert!(is_placeholder(v), "{v}");
        }
        assert!(!is_placeholder("3d1219c7c4c5404aaa1f6d2a48adfda4"));
    }
}
