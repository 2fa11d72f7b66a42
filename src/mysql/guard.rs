//! The password guard: no server receives a password in a form it can recover, unless the
//! connection is TLS with a verified certificate or the server's RSA key is pinned.
//!
//! MySQL's `caching_sha2_password` asks a client whose account is not in the server's cache for
//! *full authentication*: over plain TCP the client then asks the server for its RSA public key and
//! sends the password encrypted with it. A server Baton is pointed at (a typo, a read-role caller's
//! `host:port`, a hostile replica reporting itself) supplies a key of its own and decrypts the
//! password. `mysql_async` follows that exchange; it cannot be told not to.
//!
//! So every connection that is not verified TLS goes through a relay on a loopback port (one per
//! instance and account, made on first use) that reads the authentication exchange and:
//!
//! - passes the challenge-response plugins through (`mysql_native_password`, `client_ed25519`,
//!   `parsec`, and `caching_sha2_password`'s fast path): none of them sends what a server can
//!   reverse;
//! - answers a request for full authentication itself: with the server's pinned key
//!   (`topology.pinned_rsa_keys`) it sends the password encrypted with that key (the server that
//!   holds the private key is the only one that can read it); without one it refuses, and the
//!   client gets an error that says what to configure.
//!
//! After authentication the relay only copies bytes. A client that starts TLS through it
//! (`SSLRequest`) is passed through untouched: the TLS layer then decides.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::config::Secret;
use crate::topology::InstanceKey;

/// `CLIENT_SSL` in the capability flags of a client's first packet.
const CLIENT_SSL: u32 = 0x0800;
/// The relay's copy buffer, each direction (tokio's default is 8 KiB): a probe's answer fits in
/// one; the fleet poller keeps thousands of relayed connections open.
const RELAY_BUF: usize = 4096;
/// The largest authentication packet the relay reads (a greeting or an auth switch is < 1 KiB).
const MAX_AUTH_PACKET: usize = 64 * 1024;

/// Relays for the connections of one `Connector`, by instance and account.
pub struct Guard {
    connect_timeout: Duration,
    /// PEM public keys by `host:port`, and `*` for every other server.
    pinned: Arc<HashMap<String, Vec<u8>>>,
    dial: HashMap<InstanceKey, InstanceKey>,
    relays: Mutex<HashMap<(InstanceKey, String), Relay>>,
}

struct Relay {
    addr: SocketAddr,
    task: tokio::task::AbortHandle,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for r in self.relays.lock().unwrap_or_else(|p| p.into_inner()).values() {
            r.task.abort();
        }
    }
}

impl Guard {
    /// `dial`: the address to connect to for an instance, when it is not the instance's own
    /// (`topology.dial`).
    pub fn new(
        connect_timeout: Duration,
        pinned: HashMap<String, Vec<u8>>,
        dial: HashMap<InstanceKey, InstanceKey>,
    ) -> Guard {
        Guard { connect_timeout, pinned: Arc::new(pinned), dial, relays: Mutex::new(HashMap::new()) }
    }

    /// The loopback address whose relay reaches `key` for `user` (made on first use). Must be
    /// called inside the tokio runtime.
    pub fn relay(&self, key: &InstanceKey, user: &str, password: &Secret) -> std::io::Result<SocketAddr> {
        let mut relays = self.relays.lock().unwrap_or_else(|p| p.into_inner());
        let id = (key.clone(), user.to_string());
        if let Some(r) = relays.get(&id) {
            return Ok(r.addr);
        }
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let listener = TcpListener::from_std(std_listener)?;
        let pinned = self.pinned.get(&key.to_string()).or_else(|| self.pinned.get("*")).cloned();
        let ctx = Arc::new(RelayCtx {
            target: self.dial.get(key).unwrap_or(key).clone(),
            password: password.clone(),
            pinned,
            connect_timeout: self.connect_timeout,
        });
        let task = tokio::spawn(accept_loop(listener, ctx)).abort_handle();
        relays.insert(id, Relay { addr, task });
        Ok(addr)
    }
}

struct RelayCtx {
    target: InstanceKey,
    password: Secret,
    pinned: Option<Vec<u8>>,
    connect_timeout: Duration,
}

async fn accept_loop(listener: TcpListener, ctx: Arc<RelayCtx>) {
    loop {
        let client = match listener.accept().await {
            Ok((c, _)) => c,
            Err(e) => {
                // Out of descriptors, say: let the open ones finish before accepting again.
                warn!(instance = %ctx.target, error = %e, "the password guard's relay cannot accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = relay(client, &ctx).await {
                debug!(instance = %ctx.target, error = %e, "relay closed");
            }
        });
    }
}

/// One MySQL packet: sequence id and payload.
struct Packet {
    seq: u8,
    payload: Vec<u8>,
}

async fn read_packet(s: &mut TcpStream) -> std::io::Result<Packet> {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
    if len > MAX_AUTH_PACKET {
        return Err(std::io::Error::other(format!("an authentication packet of {len} bytes")));
    }
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await?;
    Ok(Packet { seq: head[3], payload })
}

async fn write_packet(s: &mut TcpStream, seq: u8, payload: &[u8]) -> std::io::Result<()> {
    let len = payload.len() as u32;
    let mut buf = Vec::with_capacity(4 + payload.len());
    buf.extend_from_slice(&len.to_le_bytes()[..3]);
    buf.push(seq);
    buf.extend_from_slice(payload);
    s.write_all(&buf).await
}

/// The 20-byte scramble of a server greeting (protocol 10), if it parses.
fn greeting_nonce(p: &[u8]) -> Option<Vec<u8>> {
    if p.first() != Some(&10) {
        return None;
    }
    let version_end = 1 + p[1..].iter().position(|b| *b == 0)?;
    let mut at = version_end + 1 + 4; // NUL, connection id
    let part1 = p.get(at..at + 8)?.to_vec();
    at += 8 + 1 + 2 + 1 + 2 + 2; // part 1, filler, caps low, charset, status, caps high
    let data_len = *p.get(at)? as usize;
    at += 1 + 10;
    let part2_len = data_len.saturating_sub(8).max(13);
    let mut part2 = p.get(at..at + part2_len).map(<[u8]>::to_vec).unwrap_or_default();
    if part2.last() == Some(&0) {
        part2.pop();
    }
    Some([part1, part2].concat())
}

/// An ERR packet for the client, as a server would send it.
fn err_packet(message: &str) -> Vec<u8> {
    let mut p = vec![0xff];
    p.extend_from_slice(&1045u16.to_le_bytes()); // ER_ACCESS_DENIED_ERROR
    p.extend_from_slice(b"#28000");
    p.extend_from_slice(message.as_bytes());
    p
}

async fn relay(mut client: TcpStream, ctx: &RelayCtx) -> std::io::Result<()> {
    let _ = client.set_nodelay(true);
    let addr = (ctx.target.host.as_str(), ctx.target.port);
    let mut server = match tokio::time::timeout(ctx.connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        // Closing is what the client would see from the server itself: a failed connection.
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timeout")),
    };
    let _ = server.set_nodelay(true);
    let greeting = read_packet(&mut server).await?;
    let mut nonce = greeting_nonce(&greeting.payload).unwrap_or_default();
    write_packet(&mut client, greeting.seq, &greeting.payload).await?;
    if greeting.payload.first() == Some(&0xff) {
        return Ok(());
    }
    // The client's handshake response (or its SSLRequest: then TLS decides from here on).
    let response = read_packet(&mut client).await?;
    write_packet(&mut server, response.seq, &response.payload).await?;
    let caps = response.payload.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0);
    let tls = caps & CLIENT_SSL != 0 && response.payload.len() == 32;
    if !tls {
        loop {
            let p = read_packet(&mut server).await?;
            match p.payload.as_slice() {
                // caching_sha2_password: full authentication requested.
                [0x01, 0x04] => return full_auth(client, server, ctx, p.seq, &nonce).await,
                // Fast authentication succeeded: the server's OK follows.
                [0x01, 0x03] => write_packet(&mut client, p.seq, &p.payload).await?,
                [0x00, ..] | [0xff, ..] => {
                    write_packet(&mut client, p.seq, &p.payload).await?;
                    break;
                }
                [0xfe, rest @ ..] => {
                    // Auth switch: the plugin name, then the new scramble.
                    if let Some(end) = rest.iter().position(|b| *b == 0) {
                        let mut data = rest[end + 1..].to_vec();
                        if data.last() == Some(&0) {
                            data.pop();
                        }
                        nonce = data;
                    }
                    write_packet(&mut client, p.seq, &p.payload).await?;
                    let answer = read_packet(&mut client).await?;
                    write_packet(&mut server, answer.seq, &answer.payload).await?;
                }
                _ => {
                    // More data for the client's plugin (a parsec salt): it answers.
                    write_packet(&mut client, p.seq, &p.payload).await?;
                    let answer = read_packet(&mut client).await?;
                    write_packet(&mut server, answer.seq, &answer.payload).await?;
                }
            }
        }
    }
    tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, RELAY_BUF, RELAY_BUF).await.map(|_| ())
}

/// The server asked for the password itself: encrypted with the pinned key, or refused.
async fn full_auth(
    mut client: TcpStream,
    mut server: TcpStream,
    ctx: &RelayCtx,
    seq: u8,
    nonce: &[u8],
) -> std::io::Result<()> {
    let Some(pem) = &ctx.pinned else {
        warn!(instance = %ctx.target, "the server asked for the password in full over plain TCP: refused (no pinned RSA key, no TLS)");
        let msg = format!(
            "Baton refused to send the password to {}: the server asked for full caching_sha2_password authentication over plain TCP, \
             where it would supply the key the password is encrypted with. Use TLS with a verified certificate (topology.tls) or pin \
             the server's RSA public key (topology.pinned_rsa_keys)",
            ctx.target
        );
        write_packet(&mut client, seq, &err_packet(&msg)).await?;
        return Ok(());
    };
    let mut pass = ctx.password.expose().as_bytes().to_vec();
    pass.push(0);
    if !nonce.is_empty() {
        for (i, b) in pass.iter_mut().enumerate() {
            *b ^= nonce[i % nonce.len()];
        }
    }
    let pem = pem.clone();
    let encrypted = match std::panic::catch_unwind(move || mysql_common::crypto::encrypt(&pass, &pem)) {
        Ok(e) => e,
        Err(_) => {
            let msg = format!(
                "the pinned RSA key for {} cannot encrypt the password (not an RSA public key, or too short)",
                ctx.target
            );
            write_packet(&mut client, seq, &err_packet(&msg)).await?;
            return Ok(());
        }
    };
    write_packet(&mut server, seq.wrapping_add(1), &encrypted).await?;
    let answer = read_packet(&mut server).await?;
    // The client sent nothing since its response: it expects the outcome as the next packet.
    write_packet(&mut client, seq, &answer.payload).await?;
    if answer.payload.first() != Some(&0x00) {
        return Ok(());
    }
    tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, RELAY_BUF, RELAY_BUF).await.map(|_| ())
}

/// Checks that `pem` is an RSA public key the guard can encrypt with (at config load).
pub fn check_public_key(pem: &[u8]) -> Result<(), String> {
    let pem = pem.to_vec();
    std::panic::catch_unwind(move || mysql_common::crypto::encrypt(b"probe\0", &pem))
        .map(|_| ())
        .map_err(|_| "not a PEM RSA public key the password can be encrypted with".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_scramble() {
        let mut p = vec![10];
        p.extend_from_slice(b"8.0.36\0");
        p.extend_from_slice(&7u32.to_le_bytes());
        p.extend_from_slice(b"ABCDEFGH");
        p.push(0);
        p.extend_from_slice(&[0xff, 0xf7, 0x21, 0x02, 0x00, 0xff, 0xdf]);
        p.push(21);
        p.extend_from_slice(&[0; 10]);
        p.extend_from_slice(b"IJKLMNOPQRST\0");
        p.extend_from_slice(b"caching_sha2_password\0");
        assert_eq!(greeting_nonce(&p).unwrap(), b"ABCDEFGHIJKLMNOPQRST");
        assert_eq!(greeting_nonce(&[9, 1, 2]), None);
        assert_eq!(greeting_nonce(&[10, b'x']), None);
    }
}
