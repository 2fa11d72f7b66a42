//! Who is calling, and may they: `none` (loopback only), `basic` (argon2-hashed passwords; what
//! `orchestrator-client` sends with ORCHESTRATOR_AUTH_USER/_PASSWORD) or `token` (bearer tokens
//! stored as SHA-256). Reads need role `read`, anything that changes state needs `admin`.
//! 401 when the caller is unknown, 403 when known but not allowed. Comparisons are constant
//! time; no credential reaches a log line or an error message.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

// tokio's clock: the tests pause and advance it.
use tokio::time::Instant;

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use axum::http::{HeaderMap, Method};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::error::ApiError;
use crate::config::{AuthMode, HttpConfig, Role};

/// How long a verified basic-auth password is remembered (argon2 is slow on purpose).
const VERIFIED_FOR: Duration = Duration::from_secs(300);
/// Password checks (argon2) running at once, each on a blocking thread: the async workers never
/// run one, and a flood of wrong passwords cannot take every core.
const CHECKS_AT_ONCE: usize = 2;
/// How long a request waits for a free password check before a 503.
const CHECK_WAIT: Duration = Duration::from_secs(5);
/// Failed logins a client may make before it waits; the wait doubles per failure, up to a minute.
const FREE_FAILURES: u32 = 3;
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Clients remembered for the back-off at most (the oldest are forgotten).
const MAX_CLIENTS: usize = 10_000;

pub struct Auth {
    cfg: HttpConfig,
    /// sha256(user NUL password) -> (role, verified at): skips argon2 for a recent success.
    verified: Mutex<HashMap<[u8; 32], (Role, Instant)>>,
    checks: Arc<Semaphore>,
    /// Per client address: failures in a row and until when it must wait.
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
        h.update([0u8]);
    }
    h.finalize().into()
}

/// Hex of SHA-256 of a token, as stored in `http.tokens.*.sha256`.
pub fn token_digest(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// An argon2id PHC string for a password (`baton hash-password`).
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    // 16 random bytes (a v4 uuid's randomness comes from the OS).
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes()).map_err(|e| e.to_string())?;
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

impl Auth {
    pub fn new(cfg: &HttpConfig) -> Auth {
        Auth {
            cfg: cfg.clone(),
            verified: Mutex::new(HashMap::new()),
            checks: Arc::new(Semaphore::new(CHECKS_AT_ONCE)),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The role needed for a request: admin for anything that changes state. orchestrator's
    /// compatible routes are all GET, so they are classified by path.
    pub fn needed(method: &Method, path: &str) -> Role {
        const COMPAT_WRITES: &[&str] = &[
            "/api/graceful-master-takeover",
            "/api/register-candidate",
            "/api/begin-downtime",
            "/api/end-downtime",
            "/api/start-replica",
            "/api/start-slave",
            "/api/stop-replica",
            "/api/stop-slave",
            "/api/restart-replica",
            "/api/set-read-only",
            "/api/set-writeable",
            "/api/relocate",
            "/api/move-below",
            "/api/move-up",
            "/api/forget",
            "/api/discover",
        ];
        let write_path = COMPAT_WRITES.iter().any(|p| path.starts_with(p));
        let read_method = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if write_path || !read_method {
            Role::Admin
        } else {
            Role::Read
        }
    }

    /// Checks the request's credentials for `needed`; the caller's role when they suffice (auth
    /// `none`, loopback only, makes every caller an admin). `client` is the caller's address, for
    /// the back-off after failed logins.
    /// With auth `token`, a browser that logged in on the console's login page sends its token
    /// in the `baton_token` cookie (HttpOnly, SameSite=Strict); it counts for the console's pages
    /// and forms (which carry a CSRF token) and for reads, never for the API's changes.
    pub async fn check(
        &self,
        headers: &HeaderMap,
        needed: Role,
        client: Option<IpAddr>,
        path: &str,
    ) -> Result<Role, ApiError> {
        let role = match self.cfg.auth {
            AuthMode::None => return Ok(Role::Admin),
            AuthMode::Basic => self.basic(headers, client).await?,
            AuthMode::Token => {
                let token = Self::header(headers, "bearer")
                    .or_else(|| {
                        (is_console(path) || needed == Role::Read).then(|| cookie(headers, TOKEN_COOKIE)).flatten()
                    })
                    .ok_or(ApiError::Unauthorized)?;
                self.token_role(token).ok_or(ApiError::Unauthorized)?
            }
        };
        if role >= needed {
            Ok(role)
        } else {
            Err(ApiError::Forbidden(format!("this needs role {needed:?}; the caller has role {role:?}").to_lowercase()))
        }
    }

    fn header<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
        let v = headers.get("authorization")?.to_str().ok()?;
        let (s, rest) = v.split_once(' ')?;
        s.eq_ignore_ascii_case(scheme).then_some(rest.trim())
    }

    async fn basic(&self, headers: &HeaderMap, client: Option<IpAddr>) -> Result<Role, ApiError> {
        let encoded = Self::header(headers, "basic").ok_or(ApiError::Unauthorized)?;
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| ApiError::Unauthorized)?;
        let text = String::from_utf8(decoded).map_err(|_| ApiError::Unauthorized)?;
        let (user, password) = text.split_once(':').ok_or(ApiError::Unauthorized)?;
        let digest = sha256(&[user.as_bytes(), password.as_bytes()]);
        {
            let mut cache = self.verified.lock().expect("auth cache");
            cache.retain(|_, (_, at)| at.elapsed() < VERIFIED_FOR);
            if let Some((role, _)) = cache.iter().find(|(k, _)| bool::from(k.ct_eq(&digest))).map(|(_, v)| *v) {
                return Ok(role);
            }
        }
        self.backing_off(client)?;
        // Verify against every user's hash shape the same way: an unknown user costs as much as
        // a wrong password. On a blocking thread, a few at a time.
        let user_entry = self.cfg.users.get(user).cloned();
        let hash = user_entry.as_ref().map(|u| u.password_hash.clone()).unwrap_or_else(|| DUMMY_HASH.to_string());
        let permit = match tokio::time::timeout(CHECK_WAIT, self.checks.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => return Err(ApiError::Unavailable("too many password checks at once; retry shortly".into())),
        };
        // Failures may have come in while this request waited for its turn.
        self.backing_off(client)?;
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            PasswordHash::new(&hash)
                .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await
        .unwrap_or(false);
        match (ok, user_entry) {
            (true, Some(u)) => {
                self.verified.lock().expect("auth cache").insert(digest, (u.role, Instant::now()));
                if let Some(ip) = client {
                    self.failures.lock().expect("auth failures").remove(&ip);
                }
                Ok(u.role)
            }
            _ => {
                if let Some(ip) = client {
                    self.failed(ip);
                }
                Err(ApiError::Unauthorized)
            }
        }
    }

    /// A 429 while `client` must wait after failed logins.
    fn backing_off(&self, client: Option<IpAddr>) -> Result<(), ApiError> {
        let Some(ip) = client else { return Ok(()) };
        let Some((n, until)) = self.failures.lock().expect("auth failures").get(&ip).copied() else { return Ok(()) };
        let now = Instant::now();
        if n >= FREE_FAILURES && until > now {
            let secs = (until - now).as_secs() + 1;
            return Err(ApiError::TooManyRequests(format!("{n} failed logins from this address: retry in {secs} s")));
        }
        Ok(())
    }

    /// One more failed login from `ip`: past the free ones, it waits 1, 2, 4, ... s (at most a
    /// minute) before its next password is checked.
    fn failed(&self, ip: IpAddr) {
        let mut f = self.failures.lock().expect("auth failures");
        if f.len() >= MAX_CLIENTS && !f.contains_key(&ip) {
            let now = Instant::now();
            f.retain(|_, (_, until)| *until > now);
            if f.len() >= MAX_CLIENTS {
                f.clear();
            }
        }
        let e = f.entry(ip).or_insert((0, Instant::now()));
        e.0 += 1;
        let wait = match e.0.checked_sub(FREE_FAILURES) {
            Some(k) => Duration::from_secs(1u64 << k.min(6)).min(MAX_BACKOFF),
            None => Duration::ZERO,
        };
        e.1 = Instant::now() + wait;
    }

    fn token_role(&self, token: &str) -> Option<Role> {
        let digest = token_digest(token);
        let mut found = None;
        for t in self.cfg.tokens.values() {
            // Compare every entry (constant time each) so timing does not tell which matched.
            if bool::from(t.sha256.to_ascii_lowercase().as_bytes().ct_eq(digest.as_bytes())) {
                found = Some(t.role);
            }
        }
        found
    }

    /// The console's login page: a token typed in by `client`, with the same back-off after
    /// failures as a basic-auth password.
    pub fn login_with_token(&self, token: &str, client: Option<IpAddr>) -> Result<Role, ApiError> {
        self.backing_off(client)?;
        match self.token_role(token.trim()) {
            Some(role) => {
                if let Some(ip) = client {
                    self.failures.lock().expect("auth failures").remove(&ip);
                }
                Ok(role)
            }
            None => {
                if let Some(ip) = client {
                    self.failed(ip);
                }
                Err(ApiError::Unauthorized)
            }
        }
    }

    pub fn mode(&self) -> AuthMode {
        self.cfg.auth
    }
}

/// A path of the web console (its pages, forms and assets).
pub fn is_console(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

/// The console's login cookie (auth `token`).
pub const TOKEN_COOKIE: &str = "baton_token";

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v)
}

/// The hash of a password nobody has, verified for unknown users.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2Hcc3kG7gUHCMXlZ45VrcYBnuKbK+kzbZ4JzMNIhbDc";

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::HttpUser;

    fn basic(user: &str, password: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        h.insert("authorization", format!("Basic {v}").parse().unwrap());
        h
    }

    /// With the clock paused: a verified password is remembered for 5 minutes, and an address past
    /// its free failures backs off 1, 2, 4 ... s, then is checked again.
    #[tokio::test(start_paused = true)]
    async fn the_verified_cache_expires_and_the_back_off_ends() {
        let mut users = BTreeMap::new();
        users.insert("ops".to_string(), HttpUser { password_hash: hash_password("right").unwrap(), role: Role::Admin });
        let auth = Auth::new(&HttpConfig { auth: AuthMode::Basic, users, ..Default::default() });
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let check = |pw: &'static str| {
            let auth = &auth;
            async move { auth.check(&basic("ops", pw), Role::Read, Some(ip), "/api/v1/clusters").await }
        };

        assert_eq!(check("right").await.unwrap(), Role::Admin);
        assert_eq!(auth.verified.lock().unwrap().len(), 1, "remembered");
        tokio::time::advance(VERIFIED_FOR + Duration::from_secs(1)).await;
        assert!(matches!(check("wrong").await, Err(ApiError::Unauthorized)));
        assert!(auth.verified.lock().unwrap().is_empty(), "forgotten after 5 minutes");

        // Failures: the free ones are 401s, the next one starts a back-off.
        for _ in 1..FREE_FAILURES {
            assert!(matches!(check("wrong").await, Err(ApiError::Unauthorized)));
        }
        assert!(matches!(check("right").await, Err(ApiError::TooManyRequests(_))), "even the right password waits");
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert!(matches!(check("wrong").await, Err(ApiError::Unauthorized)), "checked again after 1 s");
        assert!(matches!(check("right").await, Err(ApiError::TooManyRequests(_))), "now 2 s");
        tokio::time::advance(Duration::from_millis(2100)).await;
        assert_eq!(check("right").await.unwrap(), Role::Admin, "and a success clears the failures");
        assert!(auth.failures.lock().unwrap().is_empty());
    }
}
