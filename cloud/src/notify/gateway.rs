//! The messaging gateway: [`MessagingGateway`] and its one implementation, a client of the
//! WhatsApp Business Cloud API's shape (`POST {base}/{phone_number_id}/messages`, bearer token,
//! a template message), which talks to Meta's API or to [`super::sandbox`] alike.
//!
//! Every message carries our notification id as `biz_opaque_callback_data`, the field WhatsApp
//! echoes back in its status webhooks: it is the idempotency key [`MessagingGateway::lookup`]
//! asks about after a send was interrupted. WhatsApp itself does not deduplicate by it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One message to send: the recipient (digits, country code first), the template and its body
/// parameters, and our idempotency key.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub key: String,
    pub to: String,
    pub template: &'static str,
    pub language: &'static str,
    pub parameters: Vec<String>,
}

/// What the gateway answered.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Try again later: the gateway is down, overloaded or rate-limiting (5xx, 429, no connection).
    #[error("gateway unavailable: {0}")]
    Transient(String),
    /// Refused for good (bad number, unknown template, wrong token): retrying changes nothing.
    #[error("gateway refused the message: {0}")]
    Permanent(String),
    /// The request may have reached the gateway, but no answer came back (timeout, a cut
    /// connection, an unreadable answer): ask [`MessagingGateway::lookup`].
    #[error("no answer from the gateway: {0}")]
    InDoubt(String),
}

/// Whether the gateway accepted a message with a given key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Sent {
        message_id: String,
    },
    NotSent,
    /// This gateway cannot tell.
    Unknown,
}

/// Sends template messages. Implementations must be safe to call from several tasks.
pub trait MessagingGateway: Send + Sync {
    /// Sends one message; the gateway's message id when it accepted it.
    fn send(&self, message: &Outgoing)
    -> impl Future<Output = Result<String, GatewayError>> + Send;

    /// Whether a message with `key` was accepted before (after a send that was interrupted).
    fn lookup(&self, key: &str) -> impl Future<Output = Result<Lookup, GatewayError>> + Send;
}

/// A client of the WhatsApp Cloud API's message endpoint.
pub struct WhatsAppCloud {
    http: reqwest::Client,
    messages_url: String,
    token: Option<String>,
    lookup_url: Option<String>,
}

impl std::fmt::Debug for WhatsAppCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhatsAppCloud")
            .field("messages_url", &self.messages_url)
            .field("lookup_url", &self.lookup_url)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Language<'a> {
    code: &'a str,
}

#[derive(Deserialize)]
struct SendAnswer {
    messages: Vec<MessageId>,
}

#[derive(Deserialize)]
struct MessageId {
    id: String,
}

impl WhatsAppCloud {
    /// `base` is the API's versioned root (e.g. `https://graph.facebook.com/v21.0`) or a
    /// sandbox's address; `lookup_url` answers [`MessagingGateway::lookup`] (None: unknown).
    pub fn new(
        base: &str,
        phone_number_id: &str,
        token: Option<String>,
        lookup_url: Option<String>,
        timeout: Duration,
    ) -> Result<Self, GatewayError> {
        // One process-wide crypto provider; a second install is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("sentra-cloud/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| GatewayError::Permanent(format!("HTTP client: {error}")))?;
        Ok(Self {
            http,
            messages_url: format!("{}/{phone_number_id}/messages", base.trim_end_matches('/')),
            token,
            lookup_url,
        })
    }

    /// The request body: a template message with its body parameters.
    pub fn body(message: &Outgoing) -> Value {
        let parameters: Vec<Value> = message
            .parameters
            .iter()
            .map(|text| json!({"type": "text", "text": text}))
            .collect();
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": message.to,
            "type": "template",
            "template": {
                "name": message.template,
                "language": Language { code: message.language },
                "components": [{"type": "body", "parameters": parameters}],
            },
            "biz_opaque_callback_data": message.key,
        })
    }
}

/// The error text of a Graph API error answer, or the status alone.
fn error_text(status: reqwest::StatusCode, body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match value["error"]["message"].as_str() {
        Some(message) => format!("{status}: {message}"),
        None => status.to_string(),
    }
}

fn request_error(error: &reqwest::Error) -> GatewayError {
    if error.is_connect() {
        // Nothing reached the gateway.
        GatewayError::Transient(error.to_string())
    } else {
        GatewayError::InDoubt(error.to_string())
    }
}

impl MessagingGateway for WhatsAppCloud {
    async fn send(&self, message: &Outgoing) -> Result<String, GatewayError> {
        let mut request = self
            .http
            .post(&self.messages_url)
            .json(&Self::body(message));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|error| request_error(&error))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| GatewayError::InDoubt(error.to_string()))?;
        if status.is_success() {
            let answer: SendAnswer = serde_json::from_slice(&body).map_err(|error| {
                GatewayError::InDoubt(format!("{status} with an unreadable body: {error}"))
            })?;
            return answer
                .messages
                .into_iter()
                .next()
                .map(|message| message.id)
                .ok_or_else(|| GatewayError::InDoubt(format!("{status} without a message id")));
        }
        let text = error_text(status, &body);
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(GatewayError::Transient(text))
        } else {
            Err(GatewayError::Permanent(text))
        }
    }

    async fn lookup(&self, key: &str) -> Result<Lookup, GatewayError> {
        let Some(url) = &self.lookup_url else {
            return Ok(Lookup::Unknown);
        };
        // The key is a UUID: nothing in it needs escaping in a query string.
        let mut request = self.http.get(format!("{url}?key={key}"));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|error| request_error(&error))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| GatewayError::InDoubt(error.to_string()))?;
        if !status.is_success() {
            return Err(GatewayError::Transient(error_text(status, &body)));
        }
        let answer: SendAnswer = serde_json::from_slice(&body)
            .map_err(|error| GatewayError::InDoubt(format!("unreadable lookup answer: {error}")))?;
        Ok(match answer.messages.into_iter().next() {
            Some(message) => Lookup::Sent {
                message_id: message.id,
            },
            None => Lookup::NotSent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_a_whatsapp_template_message_with_the_key() {
        let body = WhatsAppCloud::body(&Outgoing {
            key: "k-1".into(),
            to: "628123456789".into(),
            template: "sentra_service_reminder",
            language: "id",
            parameters: vec!["Budi".into(), "B 1234 XYZ".into()],
        });
        assert_eq!(body["messaging_product"], "whatsapp");
        assert_eq!(body["type"], "template");
        assert_eq!(body["to"], "628123456789");
        assert_eq!(body["template"]["name"], "sentra_service_reminder");
        assert_eq!(body["template"]["language"]["code"], "id");
        assert_eq!(
            body["template"]["components"][0]["parameters"][1]["text"],
            "B 1234 XYZ"
        );
        assert_eq!(body["biz_opaque_callback_data"], "k-1");
    }

    #[test]
    fn graph_errors_keep_their_message() {
        let body = br#"{"error":{"message":"(#131030) Recipient phone number not in allowed list","type":"OAuthException","code":131030}}"#;
        assert_eq!(
            error_text(reqwest::StatusCode::BAD_REQUEST, body),
            "400 Bad Request: (#131030) Recipient phone number not in allowed list"
        );
        assert_eq!(
            error_text(reqwest::StatusCode::BAD_GATEWAY, b"<html>"),
            "502 Bad Gateway"
        );
    }
}
