//! Device request signing. An enrolled device signs every request with its ed25519 key over a
//! canonical string (method, path and query, timestamp, nonce, body digest); the cloud verifies it
//! against the public key bound at enrolment, refuses timestamps outside the skew window and
//! nonces it has seen (replays). The private key never leaves the box.

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

pub const DEVICE_HEADER: &str = "x-sentra-device";
pub const TIMESTAMP_HEADER: &str = "x-sentra-timestamp";
pub const NONCE_HEADER: &str = "x-sentra-nonce";
pub const SIGNATURE_HEADER: &str = "x-sentra-signature";

/// How far a request's timestamp may be from the server's clock. The edge corrects for its own
/// skew from the server time in every answer, so this only has to cover one round trip and drift.
pub const MAX_SKEW_MS: u64 = 5 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("public key is not 64 hex characters of a valid ed25519 key")]
    BadPublicKey,
    #[error("signature is not valid base64 of 64 bytes")]
    MalformedSignature,
    #[error("signature does not match")]
    BadSignature,
    #[error(
        "timestamp {timestamp_ms} is {skew_ms} ms from the server's clock (allowed {MAX_SKEW_MS})"
    )]
    Skew { timestamp_ms: u64, skew_ms: u64 },
    #[error("nonce must be 16-64 characters of hex")]
    BadNonce,
}

/// The exact bytes that are signed.
pub fn signing_string(
    method: &str,
    path_and_query: &str,
    timestamp_ms: u64,
    nonce: &str,
    body: &[u8],
) -> String {
    format!(
        "sentra-v1\n{}\n{}\n{}\n{}\n{}",
        method.to_ascii_uppercase(),
        path_and_query,
        timestamp_ms,
        nonce,
        hex::encode(Sha256::digest(body))
    )
}

/// The headers a device adds to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub device: String,
    pub timestamp_ms: u64,
    pub nonce: String,
    pub signature: String,
}

pub fn sign(
    key: &SigningKey,
    device: &str,
    method: &str,
    path_and_query: &str,
    timestamp_ms: u64,
    nonce: &str,
    body: &[u8],
) -> SignedHeaders {
    let sig =
        key.sign(signing_string(method, path_and_query, timestamp_ms, nonce, body).as_bytes());
    SignedHeaders {
        device: device.to_owned(),
        timestamp_ms,
        nonce: nonce.to_owned(),
        signature: base64::engine::general_purpose::STANDARD.encode(sig.to_bytes()),
    }
}

pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey, AuthError> {
    let bytes: [u8; 32] = hex::decode(hex_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(AuthError::BadPublicKey)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| AuthError::BadPublicKey)
}

pub fn public_key_hex(key: &SigningKey) -> String {
    hex::encode(key.verifying_key().to_bytes())
}

/// Verify a signed request at server time `now_ms`. Nonce freshness is the caller's (it needs
/// storage); this checks everything else.
pub fn verify(
    key: &VerifyingKey,
    headers: &SignedHeaders,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now_ms: u64,
) -> Result<(), AuthError> {
    if !(16..=64).contains(&headers.nonce.len())
        || !headers.nonce.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(AuthError::BadNonce);
    }
    let skew_ms = now_ms.abs_diff(headers.timestamp_ms);
    if skew_ms > MAX_SKEW_MS {
        return Err(AuthError::Skew {
            timestamp_ms: headers.timestamp_ms,
            skew_ms,
        });
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&headers.signature)
        .map_err(|_| AuthError::MalformedSignature)?;
    let sig =
        ed25519_dalek::Signature::from_slice(&raw).map_err(|_| AuthError::MalformedSignature)?;
    key.verify_strict(
        signing_string(
            method,
            path_and_query,
            headers.timestamp_ms,
            &headers.nonce,
            body,
        )
        .as_bytes(),
        &sig,
    )
    .map_err(|_| AuthError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn sign_then_verify_table() {
        let k = key(7);
        let pk = parse_public_key(&public_key_hex(&k)).expect("valid key");
        let nonce = "00112233445566778899aabbccddeeff";
        let h = sign(&k, "dev", "POST", "/v1/sync/push", 1_000_000, nonce, b"{}");
        assert_eq!(
            verify(&pk, &h, "POST", "/v1/sync/push", b"{}", 1_000_000),
            Ok(())
        );
        assert_eq!(
            verify(&pk, &h, "post", "/v1/sync/push", b"{}", 1_000_000),
            Ok(()),
            "method case does not matter"
        );

        let other = parse_public_key(&public_key_hex(&key(8))).expect("valid");
        let cases: Vec<(&str, Result<(), AuthError>)> = vec![
            (
                "tampered body",
                verify(&pk, &h, "POST", "/v1/sync/push", b"{ }", 1_000_000),
            ),
            (
                "other path",
                verify(&pk, &h, "POST", "/v1/sync/pull?cursor=0", b"{}", 1_000_000),
            ),
            (
                "other method",
                verify(&pk, &h, "GET", "/v1/sync/push", b"{}", 1_000_000),
            ),
            (
                "other key",
                verify(&other, &h, "POST", "/v1/sync/push", b"{}", 1_000_000),
            ),
            (
                "too late",
                verify(
                    &pk,
                    &h,
                    "POST",
                    "/v1/sync/push",
                    b"{}",
                    1_000_000 + MAX_SKEW_MS + 1,
                ),
            ),
            (
                "too early",
                verify(
                    &pk,
                    &h,
                    "POST",
                    "/v1/sync/push",
                    b"{}",
                    1_000_000 - MAX_SKEW_MS - 1,
                ),
            ),
            (
                "bad nonce",
                verify(
                    &pk,
                    &SignedHeaders {
                        nonce: "short".into(),
                        ..h.clone()
                    },
                    "POST",
                    "/v1/sync/push",
                    b"{}",
                    1_000_000,
                ),
            ),
            (
                "bad signature",
                verify(
                    &pk,
                    &SignedHeaders {
                        signature: "!!".into(),
                        ..h.clone()
                    },
                    "POST",
                    "/v1/sync/push",
                    b"{}",
                    1_000_000,
                ),
            ),
            (
                "other nonce",
                verify(
                    &pk,
                    &SignedHeaders {
                        nonce: "ffffffffffffffffffffffffffffffff".into(),
                        ..h.clone()
                    },
                    "POST",
                    "/v1/sync/push",
                    b"{}",
                    1_000_000,
                ),
            ),
        ];
        for (name, got) in cases {
            assert!(got.is_err(), "{name} must fail");
        }
        assert!(matches!(
            verify(&pk, &h, "POST", "/v1/sync/push", b"{}", 0),
            Err(AuthError::Skew { .. })
        ));
    }

    #[test]
    fn public_keys_parse_strictly() {
        assert!(parse_public_key("zz").is_err());
        assert!(parse_public_key(&"00".repeat(31)).is_err());
        assert!(parse_public_key(&public_key_hex(&key(1))).is_ok());
    }
}
