//! Certificate SPIFFE-ID extraction (DESIGN.md "identity binding": identity only from exactly
//! one `spiffe://` URI SAN): arbitrary DER never panics the parser, and whenever an ID comes
//! out, an independent parse of the same certificate agrees that it has exactly one URI SAN,
//! that this SAN is the ID byte for byte, and that it has a path. Role recognition on the
//! extracted ID is SPIKE's: the role's ID or below it on a `/` boundary (no bare-prefix or
//! trust-domain confusion).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;
use spike_core::identity::{DEFAULT_TRUST_DOMAIN, Role};
use x509_parser::extensions::GeneralName;

fn uri_sans(der: &[u8]) -> Option<Vec<String>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    Some(
        san.value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(u) => Some((*u).to_owned()),
                _ => None,
            })
            .collect(),
    )
}

fuzz_target!(|data: &[u8]| {
    let leaf = CertificateDer::from(data);
    let Ok(id) = spike_client::tls::spiffe_id_from_leaf(&leaf) else { return };
    let text = id.to_string();
    let uris = uri_sans(data).expect("an accepted certificate parses independently");
    assert_eq!(uris, vec![text.clone()], "identity must be the one and only URI SAN");
    assert!(text.starts_with("spiffe://"), "{text:?}");
    assert!(!id.path().is_empty(), "{text:?} has no path");
    assert!(text.is_ascii() && !text.contains(['\n', '\r', ' ', '%', '#', '?']), "{text:?}");
    for td in [DEFAULT_TRUST_DOMAIN, id.trust_domain_name()] {
        if let Some(role) = Role::from_spiffe_id(&text, td) {
            // SPIKE's rule: the base ID or below it on a `/` boundary, never a bare prefix.
            let base = role.spiffe_id(td);
            assert!(
                text == base || text.starts_with(&format!("{base}/")),
                "{text:?} recognised as {role:?} across a segment boundary"
            );
        }
    }
});
