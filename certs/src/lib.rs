//! The deployment PKI: one CA per deployment issues the server's certificate and one
//! certificate per member. See `certs/README.md` for the profiles and why they look so.
//!
//! Every key is ECDSA P-256. A member certificate names its member only through the SAN URI
//! `urn:escape:member:<id>` (never the CN), carries the `clientAuth` extended key usage and
//! nothing that would let it act as a server or a CA.
#![forbid(unsafe_code)]

use std::net::IpAddr;

use escape_proto::MemberId;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

/// Why a certificate could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the certificate could not be parsed: {0}")]
    Parse(String),
    #[error("the certificate carries no Escape member id (SAN URI urn:escape:member:...)")]
    NoMemberId,
    #[error("the certificate carries more than one Escape member id")]
    SeveralMemberIds,
    #[error("invalid host name {0:?} for the server certificate")]
    BadHost(String),
    #[error("the certificate signing request is invalid: {0}")]
    Request(String),
    #[error("a serial number is not hex")]
    BadSerial,
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// Valid from a minute ago (to absorb small clock skew between hosts) for `days` days.
    pub fn days_from_now(days: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now - Duration::minutes(1),
            not_after: now + Duration::days(days),
        }
    }
}

/// Default lifetimes. Member certificates are short-lived so that a member who is no longer
/// vetted drops out even if a revocation were missed.
pub const CA_DAYS: i64 = 3650;
pub const SERVER_DAYS: i64 = 825;
pub const MEMBER_DAYS: i64 = 90;

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
    /// The serial number as lower-case hex: what revocation lists name.
    pub serial: String,
    pub not_after: OffsetDateTime,
}

/// A certificate issued for a key the CA never saw (from a signing request).
#[derive(Debug, Clone)]
pub struct SignedCert {
    pub cert_pem: String,
    pub serial: String,
    pub not_after: OffsetDateTime,
}

/// A revoked certificate, as the revocation list names it.
#[derive(Debug, Clone)]
pub struct Revoked {
    /// Lower-case hex, as in [`IssuedCert::serial`].
    pub serial: String,
    pub revoked_at: OffsetDateTime,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// The deployment's certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

impl Ca {
    /// Creates a new CA named after the deployment. It may sign end-entity certificates only
    /// (path length 0), so a leaked member key can never mint further certificates.
    pub fn generate(deployment: &str, validity: Validity) -> Result<Self, CertError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&format!("{deployment} CA"), Some(deployment));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
            key_pem,
        })
    }

    /// Loads an existing CA from its PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            issuer,
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issues the server certificate for the given DNS names and IP addresses.
    pub fn issue_server(
        &self,
        hosts: &[String],
        validity: Validity,
    ) -> Result<IssuedCert, CertError> {
        let mut sans = Vec::with_capacity(hosts.len());
        for host in hosts {
            let san = match host.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) if is_dns_name(host) => SanType::DnsName(
                    host.as_str()
                        .try_into()
                        .map_err(|_| CertError::BadHost(host.clone()))?,
                ),
                Err(_) => return Err(CertError::BadHost(host.clone())),
            };
            sans.push(san);
        }
        let cn = hosts.first().map(String::as_str).unwrap_or("escape-server");
        let mut params = leaf_params(name(cn, None), validity);
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// Issues a member's client certificate. `display_name` goes into the CN for people reading
    /// the certificate; the server identifies the member only by the SAN URI.
    pub fn issue_member(
        &self,
        member: &MemberId,
        display_name: &str,
        validity: Validity,
    ) -> Result<IssuedCert, CertError> {
        self.issue_member_with(member, display_name, validity, |_| {})
    }

    /// Like [`Ca::issue_member`], with a last look at the parameters before signing. Tests use it
    /// to mint certificates the real profiles never produce (wrong key usage, server EKU...).
    pub fn issue_member_with(
        &self,
        member: &MemberId,
        display_name: &str,
        validity: Validity,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Result<IssuedCert, CertError> {
        let mut params = member_params(member, display_name, validity)?;
        adjust(&mut params);
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Result<IssuedCert, CertError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let serial = serial_hex(&params);
        let not_after = params.not_after;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial,
            not_after,
        })
    }

    /// Issues a member certificate for the public key in a PEM signing request. Only the key is
    /// taken from the request: subject, member URI, usages and lifetime are the CA's profile,
    /// whatever the request asked for. The request's self-signature is checked, so the applicant
    /// proves it holds the private key.
    pub fn sign_member_request(
        &self,
        csr_pem: &str,
        member: &MemberId,
        display_name: &str,
        validity: Validity,
    ) -> Result<SignedCert, CertError> {
        let request = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CertError::Request(e.to_string()))?;
        let params = member_params(member, display_name, validity)?;
        let serial = serial_hex(&params);
        let not_after = params.not_after;
        let cert = rcgen::CertificateSigningRequestParams {
            params,
            public_key: request.public_key,
        }
        .signed_by(&self.issuer)?;
        Ok(SignedCert {
            cert_pem: cert.pem(),
            serial,
            not_after,
        })
    }

    /// A revocation list naming `revoked`, signed by the CA, valid for `days`.
    pub fn revocation_list(
        &self,
        revoked: &[Revoked],
        number: u64,
        days: i64,
    ) -> Result<String, CertError> {
        let now = OffsetDateTime::now_utc();
        let mut revoked_certs = Vec::with_capacity(revoked.len());
        for entry in revoked {
            revoked_certs.push(rcgen::RevokedCertParams {
                serial_number: SerialNumber::from_slice(
                    &hex_decode(&entry.serial).ok_or(CertError::BadSerial)?,
                ),
                revocation_time: entry.revoked_at,
                reason_code: None,
                invalidity_date: None,
            });
        }
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - Duration::minutes(1),
            next_update: now + Duration::days(days),
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }

    /// The SHA-256 of the CA certificate (DER): the pin an invitation carries so that an applicant
    /// can trust the enrollment listener before it has the CA.
    pub fn fingerprint(&self) -> Result<[u8; 32], CertError> {
        fingerprint(&cert_der_from_pem(&self.cert_pem)?)
    }
}

/// A DNS name of letters, digits and hyphens in dot-separated labels of 1 to 63 characters.
fn is_dns_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn name(common_name: &str, organisation: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(org) = organisation {
        dn.push(DnType::OrganizationName, org);
    }
    dn
}

/// The member certificate profile: the member URI as the only name the server reads, client
/// authentication only.
fn member_params(
    member: &MemberId,
    display_name: &str,
    validity: Validity,
) -> Result<CertificateParams, CertError> {
    let mut params = leaf_params(name(display_name, None), validity);
    params.subject_alt_names = vec![SanType::URI(
        member
            .to_uri()
            .as_str()
            .try_into()
            .map_err(|_| CertError::NoMemberId)?,
    )];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

fn leaf_params(dn: DistinguishedName, validity: Validity) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    params
}

fn serial_hex(params: &CertificateParams) -> String {
    params
        .serial_number
        .as_ref()
        .map(|s| hex_encode(&s.to_bytes()))
        .unwrap_or_default()
}

/// Lower-case hex of bytes.
pub fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of lower- or upper-case hex; `None` for anything else.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The SHA-256 of a certificate's DER encoding.
pub fn fingerprint(cert: &CertificateDer<'_>) -> Result<[u8; 32], CertError> {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    digest
        .as_ref()
        .try_into()
        .map_err(|_| CertError::Parse("digest length".into()))
}

/// When a certificate expires.
pub fn not_after(cert: &CertificateDer<'_>) -> Result<OffsetDateTime, CertError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| CertError::Parse(e.to_string()))?;
    Ok(parsed.validity().not_after.to_datetime())
}

/// The serial number of a certificate, as lower-case hex.
pub fn serial_of(cert: &CertificateDer<'_>) -> Result<String, CertError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| CertError::Parse(e.to_string()))?;
    Ok(hex_encode(parsed.raw_serial()))
}

/// Checks that a PEM signing request parses and its self-signature verifies.
pub fn check_signing_request(csr_pem: &str) -> Result<(), CertError> {
    rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
        .map(|_| ())
        .map_err(|e| CertError::Request(e.to_string()))
}

/// A new key and a signing request for it, made where the key will live (the applicant's
/// machine). The request carries no identity the CA would trust; it proves key possession.
pub fn signing_request(display_name: &str) -> Result<(String, String), CertError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let csr = signing_request_for_key(display_name, &key.serialize_pem())?;
    Ok((csr, key.serialize_pem()))
}

/// A signing request for an existing key (renewal keeping the key).
pub fn signing_request_for_key(display_name: &str, key_pem: &str) -> Result<String, CertError> {
    let key = KeyPair::from_pem(key_pem)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(display_name, None);
    Ok(params.serialize_request(&key)?.pem()?)
}

/// 16 bytes, 122 of them random (a v4 UUID). The first byte is forced into 0x40..=0x7f: the
/// DER integer stays positive and has no leading zero to strip, so the serial reads back as
/// the same 16 bytes.
fn random_serial() -> SerialNumber {
    let mut bytes = *uuid::Uuid::new_v4().as_bytes();
    bytes[0] = 0x40 | (bytes[0] & 0x3f);
    SerialNumber::from_slice(&bytes)
}

/// Reads the member id out of a client certificate (DER). Exactly one `urn:escape:member:` URI
/// must be present; the CN and every other field are ignored on purpose.
pub fn member_id_of(cert: &CertificateDer<'_>) -> Result<MemberId, CertError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| CertError::Parse(e.to_string()))?;
    let san = parsed
        .subject_alternative_name()
        .map_err(|e| CertError::Parse(e.to_string()))?;
    let mut found = None;
    for general_name in san.iter().flat_map(|ext| ext.value.general_names.iter()) {
        if let x509_parser::extensions::GeneralName::URI(uri) = general_name
            && uri.starts_with(escape_proto::member::MEMBER_URI_PREFIX)
        {
            let id = MemberId::from_uri(uri).map_err(|_| CertError::NoMemberId)?;
            if found.replace(id).is_some() {
                return Err(CertError::SeveralMemberIds);
            }
        }
    }
    found.ok_or(CertError::NoMemberId)
}

/// Reads the first certificate out of a PEM text.
pub fn cert_der_from_pem(pem: &str) -> Result<CertificateDer<'static>, CertError> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| CertError::Parse(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_certificate_carries_its_id_and_nothing_else_counts() {
        let ca = Ca::generate("Test", Validity::days_from_now(1)).expect("ca");
        let id = MemberId::parse("member-1").expect("id");
        let issued = ca
            .issue_member(
                &id,
                "member-2 (a misleading CN)",
                Validity::days_from_now(1),
            )
            .expect("issue");
        let der = cert_der_from_pem(&issued.cert_pem).expect("pem");
        assert_eq!(member_id_of(&der).expect("id"), id);
    }

    #[test]
    fn server_certificate_has_no_member_id() {
        let ca = Ca::generate("Test", Validity::days_from_now(1)).expect("ca");
        let issued = ca
            .issue_server(
                &["localhost".into(), "127.0.0.1".into()],
                Validity::days_from_now(1),
            )
            .expect("issue");
        let der = cert_der_from_pem(&issued.cert_pem).expect("pem");
        assert!(matches!(member_id_of(&der), Err(CertError::NoMemberId)));
    }

    #[test]
    fn ca_reloads_from_pem_and_keeps_issuing() {
        let ca = Ca::generate("Test", Validity::days_from_now(1)).expect("ca");
        let again = Ca::from_pem(ca.cert_pem(), ca.key_pem()).expect("reload");
        let id = MemberId::parse("m").expect("id");
        again
            .issue_member(&id, "m", Validity::days_from_now(1))
            .expect("issue");
    }

    #[test]
    fn a_signing_request_yields_a_member_certificate_for_its_key_only() {
        let ca = Ca::generate("Test", Validity::days_from_now(1)).expect("ca");
        let (csr, key) = signing_request("Ana (claims to be admin)").expect("csr");
        let id = MemberId::parse("ana").expect("id");
        let signed = ca
            .sign_member_request(&csr, &id, "Ana", Validity::days_from_now(90))
            .expect("signed");
        let der = cert_der_from_pem(&signed.cert_pem).expect("pem");
        assert_eq!(member_id_of(&der).expect("id"), id);
        assert_eq!(serial_of(&der).expect("serial"), signed.serial);
        // The certificate is for the request's key.
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).expect("parse");
        let key_pair = KeyPair::from_pem(&key).expect("key");
        assert_eq!(
            parsed.public_key().subject_public_key.data.as_ref(),
            key_pair.public_key_raw()
        );
        assert!(matches!(
            ca.sign_member_request("not a csr", &id, "x", Validity::days_from_now(1)),
            Err(CertError::Request(_))
        ));
    }

    #[test]
    fn revocation_lists_name_serials() {
        let ca = Ca::generate("Test", Validity::days_from_now(1)).expect("ca");
        let issued = ca
            .issue_member(
                &MemberId::parse("m").expect("id"),
                "m",
                Validity::days_from_now(1),
            )
            .expect("issue");
        let crl = ca
            .revocation_list(
                &[Revoked {
                    serial: issued.serial.clone(),
                    revoked_at: OffsetDateTime::now_utc(),
                }],
                1,
                7,
            )
            .expect("crl");
        assert!(crl.contains("BEGIN X509 CRL"));
        assert_eq!(
            hex_decode(&issued.serial).map(|b| hex_encode(&b)),
            Some(issued.serial)
        );
        assert_eq!(hex_decode("zz"), None);
    }

    #[test]
    fn bad_host_names_are_refused() {
        let ca = Ca::generate("Test", Validity::days_from_now(1)).expect("ca");
        let err = ca
            .issue_server(&["bad host\u{0}".into()], Validity::days_from_now(1))
            .expect_err("refused");
        assert!(matches!(err, CertError::BadHost(_)), "{err}");
    }
}
