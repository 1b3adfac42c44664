//! Standard Webhooks signing of deliveries to the third party (README *Rules worth knowing*, deliveries), with the
//! official `standardwebhooks` crate so any Standard Webhooks library verifies them.

use standardwebhooks::Webhook;
pub use standardwebhooks::WebhookError as SignatureError;

/// The `webhook-signature` value: `v1,` + base64 HMAC-SHA256 over `{id}.{timestamp}.{body}`,
/// keyed with the base64-decoded part of the `whsec_` secret.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, SignatureError> {
    Webhook::new(secret)?.sign(id, timestamp, body)
}

/// Verifies the Standard Webhooks headers of a request (with the 5-minute timestamp tolerance).
pub fn verify(secret: &str, body: &[u8], headers: &http::HeaderMap) -> Result<(), SignatureError> {
    Webhook::new(secret)?.verify(body, headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published test vector of the Standard Webhooks specification.
    #[test]
    fn signs_the_standard_webhooks_test_vector() {
        let vector: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/3dolphins/standard-webhooks-vector.json"))
                .expect("fixture is JSON");
        let text = |k: &str| vector[k].as_str().expect("string field").to_string();
        let signature =
            sign(&text("secret"), &text("id"), vector["timestamp"].as_i64().expect("number"), text("body").as_bytes())
                .expect("valid secret");
        assert_eq!(signature, text("signature"));
    }

    #[test]
    fn a_tampered_body_does_not_verify() {
        let secret = crate::credentials::generate_signing_secret();
        let now = chrono::Utc::now().timestamp();
        let signature = sign(&secret, "msg_1", now, b"{\"a\":1}").expect("valid secret");
        let mut headers = http::HeaderMap::new();
        headers.insert("webhook-id", http::HeaderValue::from_static("msg_1"));
        headers.insert("webhook-timestamp", http::HeaderValue::from_str(&now.to_string()).expect("digits"));
        headers.insert("webhook-signature", http::HeaderValue::from_str(&signature).expect("ascii"));
        assert!(verify(&secret, b"{\"a\":1}", &headers).is_ok());
        assert!(verify(&secret, b"{\"a\":2}", &headers).is_err());
    }
}
