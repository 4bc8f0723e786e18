//! The identity provider: the [`IdentityProvider`] trait (KTP OCR, face match, liveness), its
//! client for a Verihubs-shaped HTTP API ([`Verihubs`]), and the sandbox server with the same
//! shape ([`sandbox`]) for tests, development and demos, where no real provider account exists.
//!
//! The HTTP shape (Verihubs' public API: `App-ID` and `API-Key` headers, base64 images in JSON):
//! - `POST /v2/ktp/extract` `{image, validate_quality}` → `{message, reference_id, nik,
//!   full_name, date_of_birth}`; 400 `{message}` when no KTP is found in the image;
//! - `POST /v1/face/liveness` `{image}` → `{message, reference_id, status: "Live"|"Spoof",
//!   liveness_score}`;
//! - `POST /v1/face/compare` `{image_1, image_2}` → `{message, reference_id, similarity}`.
//!
//! Invariant: nothing here logs an image, a NIK or a name; errors carry the provider's status
//! and message only.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Nik;

/// What the provider read off a KTP.
#[derive(Debug, Clone)]
pub struct KtpData {
    pub nik: Nik,
    /// The name printed on the card.
    pub full_name: String,
    pub reference_id: String,
}

/// The face checks of a selfie against the KTP photo.
#[derive(Debug, Clone, Copy)]
pub struct FaceCheck {
    /// 0.0 – 1.0: how alike the selfie and the KTP photo are.
    pub similarity: f64,
    /// Whether the selfie is of a live person (not a photo of a photo, not a screen).
    pub live: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider looked and found no readable KTP or face (a 400 from it): the staff should
    /// take the picture again. The message is the provider's.
    #[error("{0}")]
    Unreadable(String),
    /// The provider could not be reached or failed (5xx, timeout, a malformed answer).
    #[error("{0}")]
    Unavailable(String),
}

/// An identity provider (Verihubs, PrivyID, ...). Images are the raw bytes (JPEG, PNG).
pub trait IdentityProvider: Send + Sync {
    fn extract_ktp(
        &self,
        image: &[u8],
    ) -> impl Future<Output = Result<KtpData, ProviderError>> + Send;

    fn check_face(
        &self,
        ktp_image: &[u8],
        selfie: &[u8],
    ) -> impl Future<Output = Result<FaceCheck, ProviderError>> + Send;
}

/// A client of a Verihubs-shaped API at `base_url` (the real one, or the sandbox).
pub struct Verihubs {
    http: reqwest::Client,
    base_url: String,
    app_id: String,
    api_key: String,
}

impl std::fmt::Debug for Verihubs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verihubs")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// How long one provider call may take: OCR and face matching take a few seconds at most.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(20);

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[derive(Deserialize)]
struct Extracted {
    #[serde(default)]
    reference_id: String,
    nik: String,
    full_name: String,
}

#[derive(Deserialize)]
struct Liveness {
    status: String,
}

#[derive(Deserialize)]
struct Compared {
    similarity: f64,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    message: String,
}

impl Verihubs {
    pub fn new(base_url: &str, app_id: &str, api_key: &str) -> Result<Verihubs, reqwest::Error> {
        // One process-wide crypto provider (as the messaging gateway installs it); a second
        // install is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(Verihubs {
            http: reqwest::Client::builder()
                .timeout(PROVIDER_TIMEOUT)
                .build()?,
            base_url: base_url.trim_end_matches('/').to_owned(),
            app_id: app_id.to_owned(),
            api_key: api_key.to_owned(),
        })
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<T, ProviderError> {
        let response = self
            .http
            .post(format!("{}{path}", self.base_url))
            .header("App-ID", &self.app_id)
            .header("API-Key", &self.api_key)
            .json(&body)
            .send()
            .await
            // reqwest's error names the URL, never the body.
            .map_err(|error| ProviderError::Unavailable(format!("{path}: {error}")))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| ProviderError::Unavailable(format!("{path}: {error}")))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|error| {
                ProviderError::Unavailable(format!("{path}: unexpected answer: {error}"))
            });
        }
        let message = serde_json::from_slice::<Message>(&bytes)
            .map(|m| m.message)
            .unwrap_or_default();
        if status == reqwest::StatusCode::BAD_REQUEST {
            Err(ProviderError::Unreadable(message))
        } else {
            Err(ProviderError::Unavailable(format!(
                "{path}: the provider answered {status}: {message}"
            )))
        }
    }
}

impl IdentityProvider for Verihubs {
    async fn extract_ktp(&self, image: &[u8]) -> Result<KtpData, ProviderError> {
        let extracted: Extracted = self
            .call(
                "/v2/ktp/extract",
                serde_json::json!({"image": b64(image), "validate_quality": true}),
            )
            .await?;
        Ok(KtpData {
            nik: Nik(extracted.nik),
            full_name: extracted.full_name,
            reference_id: extracted.reference_id,
        })
    }

    async fn check_face(
        &self,
        ktp_image: &[u8],
        selfie: &[u8],
    ) -> Result<FaceCheck, ProviderError> {
        let liveness: Liveness = self
            .call(
                "/v1/face/liveness",
                serde_json::json!({"image": b64(selfie)}),
            )
            .await?;
        let compared: Compared = self
            .call(
                "/v1/face/compare",
                serde_json::json!({"image_1": b64(ktp_image), "image_2": b64(selfie)}),
            )
            .await?;
        Ok(FaceCheck {
            similarity: compared.similarity,
            live: liveness.status.eq_ignore_ascii_case("live"),
        })
    }
}

/// The sandbox provider: the same HTTP shape, answering from what the test images say about
/// themselves. A sandbox KTP image is the text `SANDBOX-KTP` followed by lines `nik=…`,
/// `name=…`; a sandbox selfie is `SANDBOX-FACE` with `similarity=0.93` and `live=true|false`.
/// Anything else is "not found in the image" (400), as the real provider answers a blurry
/// photo. With `api_key` set, requests without it are 401.
pub mod sandbox {
    use std::collections::HashMap;
    use std::net::SocketAddr;

    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use axum::{Json, Router};
    use serde_json::{Value, json};
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    /// Binds `listen` and serves until `stop`; returns the bound address.
    pub async fn start(
        listen: SocketAddr,
        api_key: Option<String>,
        stop: CancellationToken,
    ) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let key = api_key.map(std::sync::Arc::<str>::from);
        let app = Router::new()
            .route("/v2/ktp/extract", post(extract))
            .route("/v1/face/liveness", post(liveness))
            .route("/v1/face/compare", post(compare))
            .layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    let key = key.clone();
                    async move {
                        if let Some(key) = key
                            && request
                                .headers()
                                .get("API-Key")
                                .and_then(|value| value.to_str().ok())
                                != Some(&*key)
                        {
                            return refuse(StatusCode::UNAUTHORIZED, "invalid API key");
                        }
                        next.run(request).await
                    }
                },
            ))
            .layer(axum::extract::DefaultBodyLimit::max(16 * 1024 * 1024));
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "the sandbox identity provider stopped");
            }
        });
        Ok((addr, task))
    }

    fn refuse(status: StatusCode, message: &str) -> Response {
        (status, Json(json!({"message": message}))).into_response()
    }

    /// The `key=value` lines of a sandbox image with `magic` as its first line.
    fn fields(body: &Value, field: &str, magic: &str) -> Option<HashMap<String, String>> {
        use base64::Engine as _;
        let image = body.get(field)?.as_str()?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(image)
            .ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        (lines.next()? == magic).then(|| {
            lines
                .filter_map(|line| line.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect()
        })
    }

    fn reference() -> String {
        format!("SBX-{}", crate::web::random_hex())
    }

    async fn extract(_headers: HeaderMap, Json(body): Json<Value>) -> Response {
        let Some(card) = fields(&body, "image", "SANDBOX-KTP") else {
            return refuse(StatusCode::BAD_REQUEST, "KTP not detected in the image");
        };
        let (Some(nik), Some(name)) = (card.get("nik"), card.get("name")) else {
            return refuse(StatusCode::BAD_REQUEST, "KTP text could not be read");
        };
        Json(json!({
            "message": "Successful",
            "status_code": "200",
            "reference_id": reference(),
            "nik": nik,
            "full_name": name,
            "date_of_birth": card.get("dob").cloned().unwrap_or_default(),
        }))
        .into_response()
    }

    async fn liveness(Json(body): Json<Value>) -> Response {
        let Some(face) = fields(&body, "image", "SANDBOX-FACE") else {
            return refuse(StatusCode::BAD_REQUEST, "face not detected");
        };
        let live = face.get("live").is_none_or(|value| value == "true");
        Json(json!({
            "message": "Successful",
            "reference_id": reference(),
            "status": if live { "Live" } else { "Spoof" },
            "liveness_score": if live { 0.97 } else { 0.12 },
        }))
        .into_response()
    }

    async fn compare(Json(body): Json<Value>) -> Response {
        if fields(&body, "image_1", "SANDBOX-KTP").is_none() {
            return refuse(StatusCode::BAD_REQUEST, "face not detected in image_1");
        }
        let Some(face) = fields(&body, "image_2", "SANDBOX-FACE") else {
            return refuse(StatusCode::BAD_REQUEST, "face not detected in image_2");
        };
        let similarity: f64 = face
            .get("similarity")
            .and_then(|value| value.parse().ok())
            .unwrap_or(0.95);
        Json(json!({
            "message": "Successful",
            "reference_id": reference(),
            "similarity": similarity,
        }))
        .into_response()
    }
}

/// The request body of `POST /v1/customers/{id}/identity`: the images as base64.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    /// The photo of the KTP, base64 (standard alphabet).
    pub ktp_image: String,
    /// The customer's selfie, base64.
    pub selfie: String,
    /// The branch whose customer record this is: required of an operator token, optional for a
    /// device (its own branch), refused for a portal token (a portal checks its own customers).
    /// The name on the KTP is matched against the record's, never against a typed name.
    #[serde(default)]
    pub branch: Option<String>,
}

impl std::fmt::Debug for CheckBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckBody")
            .field(
                "ktp_image",
                &format_args!("<{} base64 chars>", self.ktp_image.len()),
            )
            .field(
                "selfie",
                &format_args!("<{} base64 chars>", self.selfie.len()),
            )
            .finish_non_exhaustive()
    }
}
