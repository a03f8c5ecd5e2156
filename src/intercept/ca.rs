//! The interception CA: made by `gatehouse ca init`, loaded at start-up.
//! Its key signs a certificate for any name, so it is refused when anyone
//! but its owner can read it.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use crate::settings::SecretError;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::CertificateDer;

/// Why the CA could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file can be read by its group or by everyone.
    #[error("{}: the CA key is readable by group or others (mode {mode:o}); chmod 600 it", path.display())]
    KeyReadable {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The certificate or key does not parse, or they do not fit together.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The offending file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `ca init` would overwrite a file.
    #[error("{} exists: move it away first (a new CA must be trusted by every client again)", .0.display())]
    Exists(PathBuf),
}

/// A loaded CA: its certificate (sent after each leaf) and its signer.
pub struct Ca {
    /// The CA certificate, DER.
    pub cert: CertificateDer<'static>,
    /// Signs leaves.
    pub issuer: Issuer<'static, KeyPair>,
}

/// The files `ca init` writes in `dir`: `ca.pem` and `ca.key` (0600).
pub fn init(dir: &Path) -> Result<(PathBuf, PathBuf), CaError> {
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    for p in [&cert_path, &key_path] {
        if p.exists() {
            return Err(CaError::Exists(p.clone()));
        }
    }
    let invalid = |message: String| CaError::Invalid {
        path: cert_path.clone(),
        message,
    };
    let key = KeyPair::generate().map_err(|e| invalid(e.to_string()))?;
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| invalid(e.to_string()))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
        .distinguished_name
        .push(DnType::CommonName, "Gatehouse Interception CA");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Gatehouse");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    let cert = params
        .self_signed(&key)
        .map_err(|e| invalid(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|source| CaError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok((cert_path, key_path))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let io = |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Loads the CA; the key must be readable by its owner only.
pub fn load(cert_path: &Path, key_path: &Path) -> Result<Ca, CaError> {
    crate::settings::check_private(key_path).map_err(|e| match e {
        SecretError::Io { path, source } => CaError::Io { path, source },
        SecretError::Exposed { path, mode } => CaError::KeyReadable { path, mode },
    })?;
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|source| CaError::Io {
            path: p.to_path_buf(),
            source,
        })
    };
    let (cert_pem, key_pem) = (read(cert_path)?, read(key_path)?);
    let key = KeyPair::from_pem(&key_pem).map_err(|e| CaError::Invalid {
        path: key_path.to_path_buf(),
        message: format!("not a private key: {e}"),
    })?;
    let bad_cert = |message: String| CaError::Invalid {
        path: cert_path.to_path_buf(),
        message,
    };
    let der = pem_cert(&cert_pem).ok_or_else(|| bad_cert("no CERTIFICATE in it".into()))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| bad_cert(format!("not a certificate: {e}")))?;
    if *parsed.public_key().subject_public_key.data != *key.public_key_raw() {
        return Err(bad_cert(format!(
            "its public key is not the one of {}",
            key_path.display()
        )));
    }
    let issuer = Issuer::from_ca_cert_der(&der, key).map_err(|e| bad_cert(e.to_string()))?;
    Ok(Ca { cert: der, issuer })
}

fn pem_cert(pem: &str) -> Option<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes()).next()?.ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_then_load_and_the_key_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = init(dir.path()).unwrap();
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(load(&cert, &key).is_ok());
        assert!(matches!(init(dir.path()), Err(CaError::Exists(_))));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = load(&cert, &key).err().unwrap();
        assert!(matches!(e, CaError::KeyReadable { mode: 0o640, .. }), "{e}");
        // Another CA's key does not sign for this certificate.
        let other = tempfile::tempdir().unwrap();
        let (_, other_key) = init(other.path()).unwrap();
        assert!(matches!(
            load(&cert, &other_key),
            Err(CaError::Invalid { .. })
        ));
    }
}
