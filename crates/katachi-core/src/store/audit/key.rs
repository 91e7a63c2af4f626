//! The chain's key and MACs: the canonical encoding of a record, the record MAC that links it to the
//! previous one, and the MAC of the sealed head.
//!
//! The encoding is injective: a fixed label, then every field in a fixed order, integers as 8 bytes
//! big-endian, strings and blobs length-prefixed, optional values behind a 0/1 tag. So no two
//! different records (or a record and a head) feed the same bytes to the MAC.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::vault::{DerivedKey, MachineKey, Purpose};

type HmacSha256 = Hmac<Sha256>;

/// Length of a record or head MAC (HMAC-SHA256).
pub(crate) const MAC_LEN: usize = 32;

/// What the first record chains to.
pub(crate) const GENESIS: [u8; MAC_LEN] = [0; MAC_LEN];

/// Domain label of a record MAC.
const RECORD_LABEL: &[u8] = b"katachi audit record v1";

/// Domain label of the head MAC (differs from the record label: a head is never a record).
const HEAD_LABEL: &[u8] = b"katachi audit head v1";

/// The key of the audit chain: the machine key derived for [`Purpose::AUDIT_CHAIN`].
///
/// Appending and verifying take it, so no record that verifies can be written without it.
///
/// # Security
/// Holds a [`DerivedKey`] (zeroized on drop); no `Clone`, `Debug` prints no key material. Its
/// [`Self::key_id`] is public: records carry it so a record sealed on another machine is told apart
/// from an edited one.
pub struct AuditKey {
    /// The HMAC key.
    key: DerivedKey,
    /// Public identifier of `key`.
    id: [u8; 16],
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey(id {}, <redacted>)", hex::encode(self.id))
    }
}

impl AuditKey {
    /// The audit chain's key of this machine.
    pub fn derive(machine_key: &MachineKey) -> Self {
        let key = machine_key.key_for(Purpose::AUDIT_CHAIN);
        let id = key.key_id();
        Self { key, id }
    }

    /// The public identifier stored with each record.
    pub(crate) fn key_id(&self) -> [u8; 16] {
        self.id
    }

    /// A fresh HMAC keyed with the chain key.
    fn hmac(&self) -> HmacSha256 {
        // The chain key is the HMAC key here, and nowhere else.
        let Ok(mac) = HmacSha256::new_from_slice(self.key.expose()) else {
            unreachable!("HMAC accepts keys of any length")
        };
        mac
    }

    /// The MAC of a record at `seq` whose predecessor's MAC is `prev`.
    pub(crate) fn record_mac(
        &self,
        fields: &SealedFields<'_>,
        seq: i64,
        prev: &[u8],
    ) -> [u8; MAC_LEN] {
        let mut enc = Encoder(self.hmac());
        enc.raw(RECORD_LABEL);
        fields.encode(&mut enc, seq, prev);
        enc.finish()
    }

    /// Whether `mac` is the MAC of that record (constant-time compare).
    pub(crate) fn record_mac_matches(
        &self,
        fields: &SealedFields<'_>,
        seq: i64,
        prev: &[u8],
        mac: &[u8],
    ) -> bool {
        let mut enc = Encoder(self.hmac());
        enc.raw(RECORD_LABEL);
        fields.encode(&mut enc, seq, prev);
        // constant time: a timing side channel must not reveal how much of a forged MAC is right
        enc.0.verify_slice(mac).is_ok()
    }

    /// The MAC of a head at `seq` whose last record's MAC is `mac`.
    pub(crate) fn head_mac(&self, seq: i64, last_mac: &[u8]) -> [u8; MAC_LEN] {
        let mut enc = Encoder(self.hmac());
        enc.raw(HEAD_LABEL);
        enc.int(seq);
        enc.blob(last_mac);
        enc.finish()
    }

    /// Whether `seal` is the MAC of that head (constant-time compare).
    pub(crate) fn head_mac_matches(&self, seq: i64, last_mac: &[u8], seal: &[u8]) -> bool {
        let mut enc = Encoder(self.hmac());
        enc.raw(HEAD_LABEL);
        enc.int(seq);
        enc.blob(last_mac);
        enc.0.verify_slice(seal).is_ok()
    }
}

/// The stored fields of a record that its MAC covers (all columns but `seq`, `prev_mac` and `mac`,
/// which are MACed as arguments). Borrowed, so appending and verifying share one encoding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SealedFields<'a> {
    /// When (Unix seconds).
    pub(crate) at: i64,
    /// `cli`, `tray`, `browser`.
    pub(crate) actor: &'a str,
    /// The signed-in user, for browser calls.
    pub(crate) user: Option<&'a str>,
    /// The browser session, for browser calls.
    pub(crate) session: Option<&'a str>,
    /// What was done.
    pub(crate) action: &'a str,
    /// Which allowed workspace (id at the time).
    pub(crate) workspace_id: Option<i64>,
    /// Which allowed workspace (path at the time).
    pub(crate) workspace_path: Option<&'a str>,
    /// The paths touched, as the stored JSON array text.
    pub(crate) paths: &'a str,
    /// Arguments.
    pub(crate) detail: &'a str,
    /// `ok` or an error code.
    pub(crate) result: &'a str,
    /// Bytes that left the machine.
    pub(crate) bytes_out: i64,
    /// Identifier of the key that sealed the record, as stored.
    pub(crate) key_id: Option<&'a [u8]>,
}

impl SealedFields<'_> {
    fn encode(&self, enc: &mut Encoder, seq: i64, prev: &[u8]) {
        enc.int(seq);
        enc.int(self.at);
        enc.text(self.actor);
        enc.opt_text(self.user);
        enc.opt_text(self.session);
        enc.text(self.action);
        enc.opt_int(self.workspace_id);
        enc.opt_text(self.workspace_path);
        enc.text(self.paths);
        enc.text(self.detail);
        enc.text(self.result);
        enc.int(self.bytes_out);
        enc.opt_blob(self.key_id);
        enc.blob(prev);
    }
}

/// Feeds the canonical encoding straight into the HMAC (no buffer to zeroize or size).
struct Encoder(HmacSha256);

impl Encoder {
    fn raw(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn int(&mut self, v: i64) {
        self.0.update(&v.to_be_bytes());
    }

    fn blob(&mut self, bytes: &[u8]) {
        // usize → u64 is lossless on every supported target
        self.0.update(&(bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }

    fn text(&mut self, s: &str) {
        self.blob(s.as_bytes());
    }

    fn opt_int(&mut self, v: Option<i64>) {
        match v {
            Some(v) => {
                self.0.update(&[1]);
                self.int(v);
            }
            None => self.0.update(&[0]),
        }
    }

    fn opt_text(&mut self, s: Option<&str>) {
        self.opt_blob(s.map(str::as_bytes));
    }

    fn opt_blob(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => {
                self.0.update(&[1]);
                self.blob(b);
            }
            None => self.0.update(&[0]),
        }
    }

    fn finish(self) -> [u8; MAC_LEN] {
        self.0.finalize().into_bytes().into()
    }
}
