//! The dev agent's certificate authority: one self-signed root per trust domain, kept in the
//! state directory (or only in memory), issuing X509-SVIDs that satisfy the X509-SVID spec.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject as _;
use spiffe::{SpiffeId, TrustDomain};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::error::DevAgentError;

/// File name of the CA certificate in the state directory.
pub(super) const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key in the state directory (mode 0600).
pub(super) const CA_KEY_FILE: &str = "ca_key.pem";

/// How long a freshly made dev CA is valid.
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// SVIDs are backdated a little so that small clock differences between processes do not
/// make a brand-new SVID "not yet valid".
const BACKDATE: Duration = Duration::from_secs(10);

pub(super) struct Ca {
    trust_domain: TrustDomain,
    issuer: Issuer<'static, KeyPair>,
    cert_der: Vec<u8>,
    cert_pem: String,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("trust_domain", &self.trust_domain.to_string())
            .finish_non_exhaustive()
    }
}

/// One X509-SVID as issued: leaf certificate, PKCS#8 key and when it stops being valid.
pub(super) struct Issued {
    pub(super) spiffe_id: SpiffeId,
    pub(super) cert_der: Vec<u8>,
    pub(super) cert_pem: String,
    pub(super) key_der: Zeroizing<Vec<u8>>,
    pub(super) key_pem: Zeroizing<String>,
    pub(super) not_after: SystemTime,
}

impl fmt::Debug for Issued {
    // The key is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("spiffe_id", &self.spiffe_id.to_string())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn issue_err(subject: impl fmt::Display) -> impl Fn(rcgen::Error) -> DevAgentError {
    let subject = subject.to_string();
    move |e| DevAgentError::Issue { subject: subject.clone(), reason: e.to_string() }
}

fn offset(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}

impl Ca {
    /// Loads the CA of `trust_domain` from `state_dir`, or makes one (and saves it there).
    pub(super) fn load_or_create(
        trust_domain: &TrustDomain,
        state_dir: Option<&Path>,
    ) -> Result<Self, DevAgentError> {
        let Some(dir) = state_dir else { return Self::generate(trust_domain) };
        let (cert_path, key_path) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
        if cert_path.exists() || key_path.exists() {
            return Self::load(trust_domain, dir, &cert_path, &key_path);
        }
        let ca = Self::generate(trust_domain)?;
        create_private_dir(dir)?;
        write_file(&cert_path, ca.cert_pem.as_bytes(), false)?;
        write_file(&key_path, ca.issuer.key().serialize_pem().as_bytes(), true)?;
        tracing::info!(dir = %dir.display(), trust_domain = %trust_domain, "created a new dev CA");
        Ok(ca)
    }

    fn generate(trust_domain: &TrustDomain) -> Result<Self, DevAgentError> {
        let key = KeyPair::generate().map_err(issue_err("the dev CA"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "SPIKE dev agent");
        dn.push(DnType::CommonName, format!("spike-dev-agent CA for {trust_domain}"));
        params.distinguished_name = dn;
        // X509-SVID §3: a signing certificate SHOULD carry its trust domain's SPIFFE ID.
        params.subject_alt_names = vec![uri_san(&trust_domain.id_string(), "the dev CA")?];
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = SystemTime::now();
        params.not_before = offset(now - BACKDATE);
        params.not_after = offset(now + CA_LIFETIME);
        let cert = params.self_signed(&key).map_err(issue_err("the dev CA"))?;
        Ok(Self {
            trust_domain: trust_domain.clone(),
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    fn load(
        trust_domain: &TrustDomain,
        dir: &Path,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<Self, DevAgentError> {
        let bad = |reason: String| DevAgentError::Ca { dir: dir.to_path_buf(), reason };
        let fix = format!(
            "delete {CA_CERT_FILE} and {CA_KEY_FILE} there to make a new CA, or pick another \
             --state-dir"
        );
        let cert_pem = read_string(cert_path)?;
        let key_pem = Zeroizing::new(read_string(key_path)?);
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| bad(format!("{CA_KEY_FILE} is not a usable key ({e}); {fix}")))?;
        let cert_der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| bad(format!("{CA_CERT_FILE} holds no certificate ({e}); {fix}")))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| bad(format!("{CA_CERT_FILE} is not a certificate ({e}); {fix}")))?;
        let expected = trust_domain.id_string();
        let uris: Vec<String> = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        x509_parser::extensions::GeneralName::URI(u) => Some((*u).to_owned()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        if uris != [expected.clone()] {
            return Err(bad(format!("it is the CA of {uris:?}, not of {expected}; {fix}")));
        }
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(bad(format!("{CA_KEY_FILE} does not belong to {CA_CERT_FILE}; {fix}")));
        }
        let not_after = cert.validity().not_after.timestamp();
        if not_after <= OffsetDateTime::now_utc().unix_timestamp() {
            return Err(bad(format!("it expired at unix time {not_after}; {fix}")));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| bad(format!("{CA_CERT_FILE} cannot sign ({e}); {fix}")))?;
        Ok(Self {
            trust_domain: trust_domain.clone(),
            issuer,
            cert_der: cert_der.to_vec(),
            cert_pem,
        })
    }

    /// The CA certificate, DER: the trust bundle of the trust domain.
    pub(super) fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA certificate, PEM (what `bundle.pem` holds).
    pub(super) fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a fresh X509-SVID for `id`, valid for `ttl` from now.
    pub(super) fn issue(&self, id: &SpiffeId, ttl: Duration) -> Result<Issued, DevAgentError> {
        let key = KeyPair::generate().map_err(issue_err(id))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "SPIKE dev agent");
        params.distinguished_name = dn;
        // X509-SVID §2: exactly one URI SAN, the SPIFFE ID.
        params.subject_alt_names = vec![uri_san(&id.to_string(), id)?];
        // X509-SVID §4.1: leaf basicConstraints cA=false, present explicitly.
        params.is_ca = IsCa::ExplicitNoCa;
        // X509-SVID §4.3: digitalSignature required; keyCertSign and cRLSign forbidden.
        params.key_usages =
            vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        // X509-SVID §4.4: usable as both TLS server and client.
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let now = SystemTime::now();
        let not_after = now + ttl;
        params.not_before = offset(now - BACKDATE);
        params.not_after = offset(not_after);
        let cert = params.signed_by(&key, &self.issuer).map_err(issue_err(id))?;
        Ok(Issued {
            spiffe_id: id.clone(),
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_der: Zeroizing::new(key.serialize_der()),
            key_pem: Zeroizing::new(key.serialize_pem()),
            not_after,
        })
    }
}

fn uri_san(uri: &str, subject: impl fmt::Display) -> Result<SanType, DevAgentError> {
    let ia5 = rcgen::string::Ia5String::try_from(uri).map_err(|e| DevAgentError::Issue {
        subject: subject.to_string(),
        reason: e.to_string(),
    })?;
    Ok(SanType::URI(ia5))
}

fn read_string(path: &Path) -> Result<String, DevAgentError> {
    std::fs::read_to_string(path).map_err(|source| DevAgentError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })
}

/// Creates `dir` (and parents); a new leaf directory is private to the owner.
pub(super) fn create_private_dir(dir: &Path) -> Result<(), DevAgentError> {
    let io =
        |source| DevAgentError::Io { action: "create directory", path: dir.to_path_buf(), source };
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    set_mode(dir, 0o700)
}

#[cfg(unix)]
pub(super) fn set_mode(path: &Path, mode: u32) -> Result<(), DevAgentError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        DevAgentError::Io { action: "set permissions of", path: path.to_path_buf(), source }
    })
}

#[cfg(not(unix))]
pub(super) fn set_mode(_path: &Path, _mode: u32) -> Result<(), DevAgentError> {
    Ok(())
}

/// Writes `contents` to `path` atomically (temp file + rename), so readers polling the file
/// never see half of it; `private` files are created with mode 0600.
pub(super) fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), DevAgentError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp: PathBuf = path.with_file_name(format!(".{name}.tmp"));
    let io = |action, source| DevAgentError::Io { action, path: path.to_path_buf(), source };
    // A stale temp file could carry looser permissions; start from nothing.
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut file = options.open(&tmp).map_err(|e| io("create", e))?;
    file.write_all(contents).map_err(|e| io("write", e))?;
    file.sync_all().map_err(|e| io("sync", e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| io("replace", e))
}
