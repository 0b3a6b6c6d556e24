//! CSRF tokens: a signed double-submit cookie, bound to the session (OWASP's "signed double
//! submit cookie" pattern).
//!
//! The browser holds a random `csrf` cookie (HttpOnly, SameSite=Strict). Every form carries
//! `_csrf` = HMAC-SHA256(key, cookie value ‖ session id), the key derived from the session
//! secret. A POST is served only when its `_csrf` is that HMAC of the cookie it came with
//! and the session it runs in: another site can make a browser send the cookies, but cannot
//! read them or the page, and cannot compute the HMAC. SameSite=Lax on the session cookie
//! already stops most cross-site POSTs; this does not rely on it (older browsers, sibling
//! subdomains that can plant cookies — a planted `csrf` cookie is useless without a token
//! signed for the victim's session).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sneakerstop_settings::Secret;

/// The cookie holding the browser's random value.
pub const COOKIE: &str = "csrf";
/// The form field holding the token.
pub const FIELD: &str = "_csrf";
/// The largest form the storefront reads (its forms are a few hundred bytes).
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The key tokens are signed with, and how the cookie is set.
#[derive(Clone)]
pub struct CsrfKeys {
    key: Vec<u8>,
    secure: bool,
}

impl std::fmt::Debug for CsrfKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsrfKeys").field("secure", &self.secure).finish_non_exhaustive()
    }
}

type HmacSha256 = Hmac<Sha256>;

impl CsrfKeys {
    /// Keys derived from the session secret: its own key, so a CSRF token is never a value
    /// anything else signed.
    pub fn new(secret: &Secret, secure: bool) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key length");
        mac.update(b"sneakerstop storefront csrf v1");
        Self { key: mac.finalize().into_bytes().to_vec(), secure }
    }

    fn mac(&self, cookie: &str, session: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(cookie.as_bytes());
        mac.update(b"|");
        mac.update(session.as_bytes());
        mac
    }

    /// The token for forms shown to the browser holding `cookie`, in `session` (its id, or
    /// empty when signed out).
    pub fn token(&self, cookie: &str, session: &str) -> String {
        hex::encode(self.mac(cookie, session).finalize().into_bytes())
    }

    /// Whether `token` is the one for `cookie` and `session` (compared in constant time).
    pub fn verify(&self, cookie: &str, session: &str, token: &str) -> bool {
        match hex::decode(token) {
            Ok(bytes) => self.mac(cookie, session).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }

    /// A new random cookie value and its `Set-Cookie` header.
    pub fn new_cookie(&self) -> (String, HeaderValue) {
        let value = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let secure = if self.secure { "; Secure" } else { "" };
        let header = HeaderValue::from_str(&format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict{secure}"))
            .expect("hex digits and ASCII attributes are a valid header");
        (value, header)
    }
}

/// Refuses (403) any request but GET and HEAD whose form lacks the right `_csrf`. The form
/// is read here (at most 16 KiB) and handed on unchanged.
pub async fn protect(State(shop): State<std::sync::Arc<crate::Shop>>, request: Request, next: Next) -> Response {
    // The API's own paths reach the storefront only when no endpoint exists (its 404).
    let api = request.uri().path() == "/api" || request.uri().path().starts_with("/api/");
    if matches!(*request.method(), Method::GET | Method::HEAD) || api {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
        return crate::page::forbidden(&shop, &parts, "This form is larger than any of ours.");
    };
    let token = form_urlencoded::parse(&bytes).find(|(name, _)| name == FIELD).map(|(_, value)| value.into_owned());
    let cookie = crate::page::cookie(&parts.headers, COOKIE);
    let session = crate::page::session_id(&shop, &parts.headers);
    let valid = match (token, cookie) {
        (Some(token), Some(cookie)) => shop.csrf.verify(&cookie, &session, &token),
        _ => false,
    };
    if !valid {
        tracing::info!(path = %parts.uri.path(), "refused a form without a valid CSRF token");
        return crate::page::forbidden(
            &shop,
            &parts,
            "This form has expired or did not come from this site. Go back, reload the page and send it again.",
        );
    }
    let mut request = Request::from_parts(parts, Body::from(bytes));
    request.headers_mut().remove(header::CONTENT_LENGTH);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> CsrfKeys {
        CsrfKeys::new(&Secret::new("a-session-secret-of-at-least-32-characters"), false)
    }

    #[test]
    fn a_token_is_good_for_its_cookie_and_session_only() {
        let keys = keys();
        let token = keys.token("cookie-a", "session-1");
        assert!(keys.verify("cookie-a", "session-1", &token));
        assert!(!keys.verify("cookie-b", "session-1", &token), "another browser's cookie");
        assert!(!keys.verify("cookie-a", "session-2", &token), "another session");
        assert!(!keys.verify("cookie-a", "", &token), "signed out since");
        assert!(!keys.verify("cookie-a", "session-1", ""), "no token");
        assert!(!keys.verify("cookie-a", "session-1", &token[..62]), "cut short");
        let other = CsrfKeys::new(&Secret::new("another-session-secret-of-32-characters!"), false);
        assert!(!other.verify("cookie-a", "session-1", &token), "another secret");
    }

    #[test]
    fn cookies_are_random_and_strict() {
        let keys = keys();
        let ((a, header), (b, _)) = (keys.new_cookie(), keys.new_cookie());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        let header = header.to_str().unwrap();
        assert!(header.contains("HttpOnly") && header.contains("SameSite=Strict"), "{header}");
        assert!(!header.contains("Secure"));
        let secure = CsrfKeys::new(&Secret::new("a-session-secret-of-at-least-32-characters"), true);
        assert!(secure.new_cookie().1.to_str().unwrap().ends_with("; Secure"));
    }
}
