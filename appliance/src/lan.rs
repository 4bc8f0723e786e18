//! The box's identity on the branch LAN: its own certificate, its fingerprint, and the TLS both
//! LAN servers speak with it. Pure: the store keeps the PEM (`store::lan`), the daemon wires it.
//!
//! The branch Wi-Fi is shared with staff phones, customers and the car park, so the local API
//! and the MQTT broker speak TLS. No public CA can vouch for a box on a private address, so the
//! box makes its own key pair and a self-signed certificate once ([`Identity::generate`]), kept
//! in the encrypted store: it never changes on its own, and a restored backup keeps it. A tablet
//! learns the certificate's **fingerprint** at pairing (the QR and `sentra-edge pair` carry
//! `sentra://pair?url=…&code=…&fp=sha256:<hex>`, [`pairing_uri`]) and from then on accepts
//! exactly that key ([`PinnedKey`]), whatever the address or name it reached the box by (the
//! way Home Assistant and thin-edge.io pair local clients).
//!
//! The fingerprint is the SHA-256 of the certificate's DER SubjectPublicKeyInfo, which is what
//! `curl --pinnedpubkey sha256//<base64>` checks ([`Fingerprint::curl_pin`]); in URIs it is
//! written `sha256:<64 lowercase hex>` ([`Fingerprint::uri`]).
//!
//! The certificate is valid from 2000-01-01 to 9999-12-31 (RFC 5280's "no expiry"): a tablet
//! trusts the pinned key, not dates, and a box whose clock is wrong after a power cut must still
//! be reachable. ECDSA P-256: every Android, iOS and curl speaks it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest as _, Sha256};

/// What can go wrong making or loading the identity.
#[derive(Debug, thiserror::Error)]
pub enum LanError {
    #[error("making the box's LAN certificate: {0}")]
    Generate(String),
    #[error(
        "the box's LAN certificate in the store is unreadable ({0}); restore a backup of this box"
    )]
    Stored(String),
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of_certificate(der: &[u8]) -> Result<Fingerprint, LanError> {
        let der = CertificateDer::from(der);
        let cert = webpki::EndEntityCert::try_from(&der)
            .map_err(|e| LanError::Stored(format!("not a certificate: {e}")))?;
        let spki = cert.subject_public_key_info();
        Ok(Fingerprint(Sha256::digest(spki.as_ref()).into()))
    }

    /// 64 lowercase hex characters (what the mDNS TXT record carries).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// `sha256:<hex>`, as the pairing URI writes it.
    pub fn uri(&self) -> String {
        format!("sha256:{}", self.hex())
    }

    /// `sha256//<base64>`, for `curl --pinnedpubkey`.
    pub fn curl_pin(&self) -> String {
        use base64::Engine as _;
        format!(
            "sha256//{}",
            base64::engine::general_purpose::STANDARD.encode(self.0)
        )
    }

    /// `sha256:<hex>` or bare hex (either case).
    pub fn parse(s: &str) -> Option<Fingerprint> {
        let s = s.trim();
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        let bytes = hex::decode(hex).ok()?;
        Some(Fingerprint(bytes.try_into().ok()?))
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.uri())
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.uri())
    }
}

/// The box's certificate and private key. `Debug` never shows the key.
pub struct Identity {
    cert_pem: String,
    key_pem: String,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    fingerprint: Fingerprint,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .field("key", &"(redacted)")
            .finish()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
            cert: self.cert.clone(),
            key: self.key.clone_key(),
            fingerprint: self.fingerprint,
        }
    }
}

impl Identity {
    /// A new key pair and self-signed certificate. CPU only (a few milliseconds).
    pub fn generate() -> Result<Identity, LanError> {
        let gen_err = |e: rcgen::Error| LanError::Generate(e.to_string());
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        // The names do not matter to a pinning client; they make the certificate readable.
        let mut params =
            rcgen::CertificateParams::new(vec!["sentra-edge".to_owned(), "localhost".to_owned()])
                .map_err(gen_err)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sentra-edge");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Sentra branch box");
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(9999, 12, 31);
        let cert = params.self_signed(&key).map_err(gen_err)?;
        Identity::from_pem(&cert.pem(), &key.serialize_pem())
            .map_err(|e| LanError::Generate(e.to_string()))
    }

    /// The identity as the store keeps it (PEM certificate, PEM PKCS#8 key).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Identity, LanError> {
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| LanError::Stored(format!("certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|_| LanError::Stored("private key: not a PEM key".into()))?;
        let fingerprint = Fingerprint::of_certificate(&cert)?;
        Ok(Identity {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            cert,
            key,
            fingerprint,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key, for the store only.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// A server configuration presenting this certificate, TLS 1.2 and 1.3, ring.
    /// `alpn`: the protocols offered (`http/1.1` for the API, none for MQTT).
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>, LanError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| LanError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], self.key.clone_key())
            .map_err(|e| LanError::Tls(e.to_string()))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// The hex fingerprint of `identity` (for the mDNS TXT record and anything else that names the
/// box's certificate).
pub fn fingerprint_hex(identity: &Identity) -> String {
    identity.fingerprint().hex()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client-side verifier that accepts exactly one server key, by its SPKI fingerprint, whatever
/// name or address the server was reached by, and checks that the server holds that key (the
/// handshake signature). Tablets do the same in their own language (docs/integrator.md).
#[derive(Debug)]
pub struct PinnedKey {
    pin: Fingerprint,
    provider: Arc<CryptoProvider>,
}

impl PinnedKey {
    pub fn new(pin: Fingerprint) -> PinnedKey {
        PinnedKey {
            pin,
            provider: provider(),
        }
    }
}

impl ServerCertVerifier for PinnedKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = Fingerprint::of_certificate(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        if presented == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client configuration (ring) that trusts only the server key `pin`: what `doctor`, the
/// watchdog probe and the tests connect with.
pub fn client_config(pin: Fingerprint) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedKey::new(pin)))
        .with_no_client_auth()
}

/// `sentra://pair?url=https://<host>:<port>&code=<code>&fp=sha256:<hex>`: what the pairing QR
/// and `sentra-edge pair` carry. The code is `XXXX-XXXX` of Crockford base 32 and the host a
/// name or address, so nothing needs percent-encoding but an IPv6 address's brackets, which
/// URIs allow in a query.
pub fn pairing_uri(host: &str, port: u16, code: &str, fp: Fingerprint) -> String {
    format!(
        "sentra://pair?url={}&code={code}&fp={}",
        https_url(host, port),
        fp.uri()
    )
}

/// `https://host:port`, bracketing an IPv6 address.
pub fn https_url(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("https://[{ip}]:{port}"),
        _ => format!("https://{host}:{port}"),
    }
}

/// The host a tablet should reach the box by: `lan.advertise_host` when set, else the box's
/// primary IPv4 address, else its hostname.
pub fn advertise_host(configured: Option<&str>) -> String {
    if let Some(host) = configured.map(str::trim).filter(|h| !h.is_empty()) {
        return host.to_owned();
    }
    primary_ipv4()
        .map(|ip| ip.to_string())
        .or_else(hostname)
        .unwrap_or_else(|| "sentra-edge".to_owned())
}

/// The source address the kernel would use for the default route: a UDP socket "connected" to
/// an outside address (TEST-NET-1, RFC 5737) only chooses a route; no packet is sent.
fn primary_ipv4() -> Option<Ipv4Addr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket
        .connect(SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 9)))
        .ok()?;
    match socket.local_addr().ok()?.ip() {
        IpAddr::V4(ip) if !ip.is_unspecified() && !ip.is_loopback() => Some(ip),
        _ => None,
    }
}

fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_survives_its_pem_and_keeps_its_fingerprint() {
        let id = Identity::generate().expect("generate");
        let back = Identity::from_pem(id.cert_pem(), id.key_pem()).expect("load");
        assert_eq!(id.fingerprint(), back.fingerprint());
        assert_eq!(id.fingerprint().hex().len(), 64);
        assert!(id.fingerprint().uri().starts_with("sha256:"));
        assert!(
            !format!("{id:?}").contains("PRIVATE"),
            "Debug hides the key"
        );
        let other = Identity::generate().expect("generate");
        assert_ne!(id.fingerprint(), other.fingerprint());
        assert!(id.server_config(&[b"http/1.1"]).is_ok());
    }

    #[test]
    fn fingerprints_parse_in_both_spellings_and_nothing_else() {
        let fp = Identity::generate().expect("generate").fingerprint();
        assert_eq!(Fingerprint::parse(&fp.uri()), Some(fp));
        assert_eq!(Fingerprint::parse(&fp.hex().to_uppercase()), Some(fp));
        assert_eq!(Fingerprint::parse("sha256:abcd"), None);
        assert_eq!(Fingerprint::parse("md5:zz"), None);
        // base64 of 32 bytes is 44 characters ending in '='.
        let pin = fp.curl_pin();
        assert!(pin.starts_with("sha256//") && pin.len() == 8 + 44, "{pin}");
    }

    #[test]
    fn stored_garbage_is_an_error_not_a_panic() {
        assert!(Identity::from_pem("nope", "nope").is_err());
        let id = Identity::generate().expect("generate");
        assert!(Identity::from_pem(id.cert_pem(), "-----BEGIN PRIVATE KEY-----\n").is_err());
    }

    #[test]
    fn the_pairing_uri_names_url_code_and_fingerprint() {
        let fp = Fingerprint([0xab; 32]);
        assert_eq!(
            pairing_uri("192.168.1.20", 8443, "7KQ2-M9XD", fp),
            format!(
                "sentra://pair?url=https://192.168.1.20:8443&code=7KQ2-M9XD&fp=sha256:{}",
                "ab".repeat(32)
            )
        );
        assert_eq!(https_url("fe80::1", 8443), "https://[fe80::1]:8443");
        assert_eq!(advertise_host(Some(" box.lan ")), "box.lan");
        assert!(!advertise_host(None).is_empty());
    }
}
