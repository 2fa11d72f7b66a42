//! Cross-site request refusal: a web page the operator has open must not be able to drive Baton.
//!
//! A browser sends a cross-origin `POST` with `Content-Type: text/plain`, a form post, or an
//! `<img>` GET without any CORS preflight; with auth `none` on loopback (or with a Basic session
//! the browser remembers) that would run a takeover. So every state-changing request (the ones
//! that need role `admin`, the orchestrator-compatible GET routes included):
//!
//! - is refused when it carries `Sec-Fetch-Site: cross-site` or `same-site` (sent by every current
//!   browser), or an `Origin` that is not this service's own (`Host`) or one of
//!   `http.allowed_origins`;
//! - on the native API, must be JSON (`Content-Type: application/json`) when its method carries a
//!   body (`POST`, `PUT`, `PATCH`): a content type no form and no simple request can send.
//!
//! `orchestrator-client` (curl) and Baton's own CLI send neither `Origin` nor `Sec-Fetch-Site`.

use axum::http::{HeaderMap, Method};

use super::error::ApiError;

/// Refuses a state-changing request a browser may have sent on another site's behalf.
pub fn check_state_changing(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    allowed_origins: &[String],
) -> Result<(), ApiError> {
    let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("(not text)").trim().to_string());
    if let Some(site) = text("sec-fetch-site") {
        let site = site.to_ascii_lowercase();
        if site == "cross-site" || site == "same-site" {
            return Err(ApiError::Forbidden(format!(
                "cross-site request refused: Sec-Fetch-Site is {site}; changes are accepted only from this service's own pages or from non-browser clients"
            )));
        }
    }
    if let Some(origin) = text("origin") {
        let own =
            text("host").is_some_and(|host| origin_authority(&origin).is_some_and(|a| a.eq_ignore_ascii_case(&host)));
        let listed = allowed_origins.iter().any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(&origin));
        if !own && !listed {
            return Err(ApiError::Forbidden(format!(
                "cross-site request refused: Origin {origin} is not this service (add it to http.allowed_origins to allow it)"
            )));
        }
    }
    let with_body = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if with_body && path.starts_with("/api/v1/") {
        let ct = text("content-type").unwrap_or_default();
        let media = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if media != "application/json" {
            let got = if ct.is_empty() { "none".to_string() } else { ct };
            return Err(ApiError::UnsupportedMediaType(format!(
                "{method} {path} takes a JSON body: Content-Type must be application/json (got {got})"
            )));
        }
    }
    Ok(())
}

/// `host[:port]` of an `Origin` value (`scheme://host[:port]`); `None` for `null` or garbage.
fn origin_authority(origin: &str) -> Option<&str> {
    let (scheme, rest) = origin.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
        || rest.is_empty()
        || rest.contains('/')
    {
        return None;
    }
    Some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn refuses_foreign_and_cross_site_and_non_json() {
        let json = ("content-type", "application/json");
        let p = "/api/v1/clusters/x/takeover";
        let ok = |h: &[(&'static str, &'static str)]| check_state_changing(&Method::POST, p, &headers(h), &[]).is_ok();
        assert!(ok(&[json]));
        assert!(ok(&[json, ("host", "127.0.0.1:3000"), ("origin", "http://127.0.0.1:3000")]));
        assert!(ok(&[("content-type", "application/json; charset=utf-8")]));
        assert!(ok(&[json, ("sec-fetch-site", "same-origin")]));
        assert!(ok(&[json, ("sec-fetch-site", "none")]));
        assert!(!ok(&[("content-type", "text/plain")]));
        assert!(!ok(&[]));
        assert!(!ok(&[json, ("host", "127.0.0.1:3000"), ("origin", "http://evil.example")]));
        assert!(!ok(&[json, ("host", "127.0.0.1:3000"), ("origin", "null")]));
        assert!(!ok(&[json, ("host", "127.0.0.1:3000"), ("origin", "http://127.0.0.1:3000.evil.example")]));
        assert!(!ok(&[json, ("sec-fetch-site", "cross-site")]));
        assert!(!ok(&[json, ("sec-fetch-site", "same-site")]));
        // A listed origin (the console behind a proxy).
        let listed = vec!["https://console.example".to_string()];
        let h = headers(&[json, ("host", "10.0.0.1:3000"), ("origin", "https://console.example")]);
        assert!(check_state_changing(&Method::POST, p, &h, &listed).is_ok());
        // orchestrator's GET routes: no content type needed, origin still checked.
        let g = "/api/graceful-master-takeover-auto/c";
        assert!(check_state_changing(&Method::GET, g, &headers(&[]), &[]).is_ok());
        assert!(check_state_changing(&Method::GET, g, &headers(&[("origin", "http://evil.example")]), &[]).is_err());
        // DELETE carries no body.
        assert!(check_state_changing(&Method::DELETE, "/api/v1/instances/h/1/downtime", &headers(&[]), &[]).is_ok());
    }
}
