//! TLS for the relay: rustls, TLS 1.3 only, HTTP/2 and HTTP/1.1 by ALPN.
//!
//! With `--tls-cert/--tls-key` the given files are used. Otherwise, on first run, a local CA and a
//! certificate for localhost / 127.0.0.1 / ::1 (and the public URL's host) are generated with rcgen
//! and kept in `<data-dir>/tls/` (keys `0600`); agents pin `tls/ca.pem` with `katachi start --ca`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Errors setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("cannot load {path}: {reason}")]
    Load {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Generating the local CA or certificate failed.
    #[error("cannot generate the local certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// Writing generated material failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// rustls refused the certificate or key.
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The TLS material in use.
pub struct TlsMaterial {
    /// The server config (TLS 1.3 only).
    pub config: Arc<ServerConfig>,
    /// The CA file agents should pin, when the relay made its own.
    pub ca_file: Option<PathBuf>,
}

/// The crypto provider used everywhere in the relay: aws-lc-rs. The relay decrypts and re-encrypts
/// every byte that passes through it; on this generation of x86 (VAES, AVX-512) aws-lc's AES-GCM runs
/// at about twice ring's speed, and the relay's CPU per GiB streamed dropped by about 10 %
/// (docs/PERFORMANCE.md, "Tunnel"). The agent keeps ring: no C crypto in what users install.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Loads or generates the certificate and builds a TLS 1.3-only server config.
///
/// # Errors
/// [`TlsError`] for unreadable files, invalid keys or failed generation.
pub fn load_or_generate(
    data_dir: &Path,
    files: Option<&(PathBuf, PathBuf)>,
    extra_host: Option<&str>,
) -> Result<TlsMaterial, TlsError> {
    let (cert_path, key_path, ca_file) = match files {
        Some((c, k)) => (c.clone(), k.clone(), None),
        None => {
            let dir = data_dir.join("tls");
            let (cert, key, ca) = (
                dir.join("cert.pem"),
                dir.join("key.pem"),
                dir.join("ca.pem"),
            );
            if !cert.exists() || !key.exists() || !ca.exists() {
                generate_local(&dir, extra_host)?;
            }
            (cert, key, Some(ca))
        }
    };
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Load {
            path: cert_path.clone(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Load {
            path: cert_path,
            reason: "no certificate in file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| TlsError::Load {
        path: key_path.clone(),
        reason: e.to_string(),
    })?;
    Ok(TlsMaterial {
        config: Arc::new(server_config(certs, key)?),
        ca_file,
    })
}

/// TLS 1.3 only: a TLS 1.2 (or older) ClientHello fails the handshake.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn generate_local(dir: &Path, extra_host: Option<&str>) -> Result<(), TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    create_dir(dir)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    let mut ca_name = DistinguishedName::new();
    ca_name.push(DnType::CommonName, "katachi relay local CA");
    ca_params.distinguished_name = ca_name;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;

    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Some(h) = extra_host {
        if !names.iter().any(|n| n == h) {
            names.push(h.to_owned());
        }
    }
    let mut leaf_params = CertificateParams::new(names)?;
    let mut leaf_name = DistinguishedName::new();
    leaf_name.push(DnType::CommonName, "katachi relay");
    leaf_params.distinguished_name = leaf_name;
    let leaf_key = KeyPair::generate()?;
    let leaf = leaf_params.signed_by(&leaf_key, &ca_cert, &ca_key)?;

    write_file(&dir.join("ca.pem"), ca_cert.pem().as_bytes(), false)?;
    write_file(
        &dir.join("ca-key.pem"),
        ca_key.serialize_pem().as_bytes(),
        true,
    )?;
    write_file(
        &dir.join("cert.pem"),
        format!("{}{}", leaf.pem(), ca_cert.pem()).as_bytes(),
        false,
    )?;
    write_file(
        &dir.join("key.pem"),
        leaf_key.serialize_pem().as_bytes(),
        true,
    )?;
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), TlsError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes a file atomically; private keys get `0600`.
pub(crate) fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<(), TlsError> {
    use std::io::Write;
    let wrap = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir).map_err(wrap)?;
    tmp.0.write_all(bytes).map_err(wrap)?;
    tmp.0.sync_all().map_err(wrap)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if private { 0o600 } else { 0o644 };
        std::fs::set_permissions(&tmp.1, std::fs::Permissions::from_mode(mode)).map_err(wrap)?;
    }
    #[cfg(not(unix))]
    let _ = private;
    std::fs::rename(&tmp.1, path).map_err(wrap)?;
    Ok(())
}

fn tempfile_in(dir: &Path) -> std::io::Result<(std::fs::File, PathBuf)> {
    let path = dir.join(format!(".tmp-{}", crate::random_hex(8)));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    Ok((opts.open(&path)?, path))
}
