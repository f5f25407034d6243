//! TLS to PostgreSQL with `verify-full`: the server's certificate must chain to a root in the
//! CA file, be valid for server authentication now, and name the host Nexus dialled, as with
//! libpq's `sslmode=verify-full`.
//!
//! rustls's stock verifier does all that but for one gap (issue 13): webpki does not enforce a
//! root's own basicConstraints pathLenConstraint, so a CA file whose root says pathlen:0 would
//! still admit root → intermediate CA → server. Go and OpenSSL (so libpq) refuse that chain;
//! [`PgServerVerifier`] refuses it too, with the check the SPIFFE verifier uses
//! ([`spike_client::tls::path_len`]). Everything else is rustls's: its chain errors, its name
//! check, its signature checks with the ring provider.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, OtherError, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use spike_client::tls::crypto_provider;
use spike_client::tls::path_len::{PathLenExceeded, PathLenLimit, RootPathLenCheck};

use super::PgError;

/// The rustls client config for `verify-full` against the CA certificates in `ca_file` (PEM).
pub(super) fn client_tls(ca_file: &Path) -> Result<rustls::ClientConfig, PgError> {
    let verifier = PgServerVerifier::from_ca_file(ca_file)?;
    Ok(rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// The message for a failed connection: the driver's own, except when [`PgServerVerifier`]
/// refused the server's chain for a CA's path length, which the driver would print as a debug
/// dump of the error.
pub(super) fn connect_failure(e: &tokio_postgres::Error) -> String {
    match path_len_rejection(e) {
        Some(exceeded) => format!(
            "error performing TLS handshake: the server's certificate chain is refused: \
             {exceeded}; re-issue the server's certificate from a CA whose path length allows \
             its intermediates, or trust a root that allows them in \
             SPIKE_NEXUS_POSTGRES_CA_FILE"
        ),
        None => e.to_string(),
    }
}

/// Our path length rejection inside a driver error: tokio_postgres::Error → io::Error (from
/// tokio-rustls) → rustls::Error → [`PathLenExceeded`].
fn path_len_rejection(e: &tokio_postgres::Error) -> Option<&PathLenExceeded> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(mut err) = next {
        // io::Error::source skips the error it wraps, so look inside explicitly.
        if let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            err = inner;
        }
        if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) =
            err.downcast_ref::<rustls::Error>()
        {
            return other.0.downcast_ref::<PathLenExceeded>();
        }
        next = err.source();
    }
    None
}

/// A rustls server-certificate verifier for Nexus's PostgreSQL connections: rustls's
/// `WebPkiServerVerifier`, plus the roots' pathLenConstraint (see the module docs).
#[derive(Debug)]
pub(crate) struct PgServerVerifier {
    roots: RootCertStore,
    /// `limits[i]` is the pathLenConstraint of the root `roots.roots[i]` was made from.
    limits: Vec<Option<PathLenLimit>>,
    provider: Arc<CryptoProvider>,
}

impl PgServerVerifier {
    /// Trusts the CA certificates in the PEM file `ca_file` (SPIKE_NEXUS_POSTGRES_CA_FILE).
    pub(crate) fn from_ca_file(ca_file: &Path) -> Result<Self, PgError> {
        let certs = CertificateDer::pem_file_iter(ca_file).map_err(|e| {
            PgError::Config(format!(
                "cannot read SPIKE_NEXUS_POSTGRES_CA_FILE {}: {e}",
                ca_file.display()
            ))
        })?;
        let unusable = |reason: String| {
            PgError::Config(format!("{} holds an unusable CA: {reason}", ca_file.display()))
        };
        let (mut anchors, mut limits) = (Vec::new(), Vec::new());
        for cert in certs {
            let cert = cert.map_err(|e| {
                PgError::Config(format!("{} holds a bad PEM certificate: {e}", ca_file.display()))
            })?;
            let anchor =
                webpki::anchor_from_trusted_cert(&cert).map_err(|e| unusable(e.to_string()))?;
            anchors.push(anchor.to_owned());
            limits.push(PathLenLimit::from_root(&cert).map_err(|e| unusable(e.to_string()))?);
        }
        if anchors.is_empty() {
            return Err(PgError::Config(format!(
                "{} holds no certificate; it must be the PEM CA bundle that signed the server's \
                 certificate",
                ca_file.display()
            )));
        }
        Ok(Self { roots: RootCertStore { roots: anchors }, limits, provider: crypto_provider() })
    }
}

impl ServerCertVerifier for PgServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        let ee = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::from(CertificateError::BadEncoding))?;
        let algorithms = self.provider.signature_verification_algorithms.all;
        let root_path_len = RootPathLenCheck::new(&self.roots.roots, &self.limits);
        let verified = ee.verify_for_usage(
            algorithms,
            &self.roots.roots,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            Some(&|path: &webpki::VerifiedPath<'_>| root_path_len.verify_path(path)),
        );
        if let Err(e) = verified {
            if let Some(exceeded) = root_path_len.violation(&e, end_entity, intermediates) {
                tracing::debug!(error = %exceeded, "refused the PostgreSQL server's chain");
                return Err(CertificateError::Other(OtherError(Arc::new(exceeded))).into());
            }
            // Any other failure is the stock verifier's too: let rustls report it, so the
            // message is exactly the one it always gave (wrong CA, expired, ...).
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &parsed,
                &self.roots,
                intermediates,
                now,
                algorithms,
            )?;
            // Only if a refused root and another failure competed: still refuse.
            return Err(CertificateError::Other(OtherError(Arc::new(e))).into());
        }
        rustls::client::verify_server_name(&parsed, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    spike_client::impl_signature_checks!();
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rcgen::{
        BasicConstraints, Certificate, CertificateParams, DnType, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    use rustls::client::WebPkiServerVerifier;

    use super::*;

    /// Copies of one root (same subject and key, one per pathLenConstraint in the order asked
    /// for), an intermediate CA the root key signs, and a server leaf for `localhost` and
    /// 127.0.0.1 that the intermediate signs.
    struct Chain {
        roots: Vec<Certificate>,
        intermediate: CertificateDer<'static>,
        leaf: CertificateDer<'static>,
    }

    fn ca_params(name: &str, path_len: Option<u8>) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(match path_len {
            Some(max) => BasicConstraints::Constrained(max),
            None => BasicConstraints::Unconstrained,
        });
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
    }

    fn chain(root_name: &str, path_lens: &[Option<u8>]) -> Chain {
        let root_key = KeyPair::generate().unwrap().serialize_der();
        let key = || KeyPair::try_from(root_key.as_slice()).unwrap();
        let roots =
            path_lens.iter().map(|&max| ca_params(root_name, max).self_signed(&key()).unwrap());
        let roots: Vec<Certificate> = roots.collect();
        let root = Issuer::new(ca_params(root_name, path_lens[0]), key());
        let int_key = KeyPair::generate().unwrap();
        let int_params = ca_params("pg intermediate", None);
        let intermediate = int_params.signed_by(&int_key, &root).unwrap().der().clone();
        let int = Issuer::new(int_params, int_key);
        let leaf_params =
            CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let leaf = leaf_params.signed_by(&KeyPair::generate().unwrap(), &int).unwrap();
        Chain { roots, intermediate, leaf: leaf.der().clone() }
    }

    /// Ours and rustls's stock verifier, both trusting exactly `roots`.
    fn verifiers(roots: &[&Certificate]) -> (PgServerVerifier, Arc<WebPkiServerVerifier>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, roots.iter().map(|c| c.pem()).collect::<String>()).unwrap();
        let ours = PgServerVerifier::from_ca_file(&path).unwrap();
        let mut store = RootCertStore::empty();
        for root in roots {
            store.add(root.der().clone()).unwrap();
        }
        let stock = WebPkiServerVerifier::builder_with_provider(Arc::new(store), crypto_provider())
            .build()
            .unwrap();
        (ours, stock)
    }

    fn verify(
        verifier: &dyn ServerCertVerifier,
        chain: &Chain,
        name: &str,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(name.to_string()).unwrap();
        let intermediates = std::slice::from_ref(&chain.intermediate);
        verifier.verify_server_cert(&chain.leaf, intermediates, &name, &[], now).map(drop)
    }

    fn path_len_exceeded(err: &rustls::Error) -> Option<&PathLenExceeded> {
        match err {
            rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
                other.0.downcast_ref()
            }
            _ => None,
        }
    }

    #[test]
    fn root_with_path_len_zero_refuses_a_server_certificate_from_an_intermediate_below_it() {
        let chain = chain("pg root pathlen 0", &[Some(0)]);
        let (ours, stock) = verifiers(&[&chain.roots[0]]);
        let err = verify(&ours, &chain, "localhost", UnixTime::now()).unwrap_err();
        let exceeded = path_len_exceeded(&err).expect("a path length rejection");
        assert_eq!(
            (exceeded.ca.as_str(), exceeded.max, exceeded.actual),
            ("CN=pg root pathlen 0", 0, 1)
        );
        let message = exceeded.to_string();
        assert!(message.contains("allows at most 0") && message.contains("has 1"), "{message}");
        // The gap this verifier closes: rustls's own accepts the chain.
        assert!(verify(stock.as_ref(), &chain, "localhost", UnixTime::now()).is_ok());
    }

    #[test]
    fn root_whose_path_len_allows_the_intermediate_accepts_by_name_and_address() {
        for path_lens in [&[Some(1)][..], &[None], &[Some(0), Some(1)]] {
            let chain = chain("pg root", path_lens);
            let roots: Vec<&Certificate> = chain.roots.iter().collect();
            let (ours, _) = verifiers(&roots);
            for name in ["localhost", "127.0.0.1"] {
                verify(&ours, &chain, name, UnixTime::now())
                    .unwrap_or_else(|e| panic!("{path_lens:?} {name}: {e}"));
            }
        }
    }

    #[test]
    fn refuses_what_the_stock_verifier_refuses_with_its_message() {
        let chain = chain("pg root", &[None]);
        let stranger = self::chain("other root", &[None]);
        let far = UnixTime::since_unix_epoch(Duration::from_secs(1 << 40));
        let cases: [(&str, &Certificate, &str, UnixTime); 4] = [
            ("wrong CA", &stranger.roots[0], "localhost", UnixTime::now()),
            ("wrong name", &chain.roots[0], "db.example", UnixTime::now()),
            ("wrong address", &chain.roots[0], "10.0.0.1", UnixTime::now()),
            ("expired", &chain.roots[0], "localhost", far),
        ];
        for (case, root, name, now) in cases {
            let (ours, stock) = verifiers(&[root]);
            let ours = verify(&ours, &chain, name, now).expect_err(case).to_string();
            let stock = verify(stock.as_ref(), &chain, name, now).expect_err(case).to_string();
            assert_eq!(ours, stock, "{case}");
        }
    }

    #[test]
    fn ca_file_without_certificates_or_with_a_malformed_basic_constraints_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = PgServerVerifier::from_ca_file(&empty).unwrap_err().to_string();
        assert!(err.contains("holds no certificate"), "{err}");

        // pathLenConstraint -1: Go refuses the certificate; it must not read as "no limit".
        let mut params = ca_params("bad root", None);
        params.is_ca = IsCa::NoCa;
        params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
            &[2, 5, 29, 19],
            vec![0x30, 0x06, 0x01, 0x01, 0xff, 0x02, 0x01, 0xff],
        )];
        let bad = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
        let file = dir.path().join("bad.pem");
        std::fs::write(&file, bad.pem()).unwrap();
        let err = PgServerVerifier::from_ca_file(&file).unwrap_err().to_string();
        assert!(err.contains("unusable CA") && err.contains("basicConstraints"), "{err}");
    }
}
