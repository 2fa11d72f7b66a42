//! A lean client for the fleet poller's probe: one TCP connection per instance and nothing else
//! (no pool, no relay, no buffer pools), the text protocol, several result sets. Thousands of
//! instances every few seconds made `mysql_async` behind the password guard's relay cost four
//! file descriptors and ~185 µs of CPU per probe (`docs/BENCHMARKS.md`); this costs one.
//!
//! Authentication keeps the guard's rule: only challenge-response answers are sent
//! (`mysql_native_password`, and `caching_sha2_password`'s fast path). A server that asks for the
//! password itself (caching_sha2 full authentication over plain TCP), or for another plugin,
//! gets nothing: `LeanError::Unsupported`, and the poller probes that instance through the
//! `Connector` instead (TLS, or the guard with a pinned key). TLS connections are not made here.

use std::time::Duration;

use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::conn::RowMap;

/// The protocol's capability and status flags this client (and the simulator's server) use.
pub mod flags {
    pub const CLIENT_LONG_PASSWORD: u32 = 0x1;
    pub const CLIENT_FOUND_ROWS: u32 = 0x2;
    pub const CLIENT_LONG_FLAG: u32 = 0x4;
    pub const CLIENT_CONNECT_WITH_DB: u32 = 0x8;
    pub const CLIENT_PROTOCOL_41: u32 = 0x200;
    pub const CLIENT_TRANSACTIONS: u32 = 0x2000;
    pub const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
    pub const CLIENT_MULTI_STATEMENTS: u32 = 0x1_0000;
    pub const CLIENT_MULTI_RESULTS: u32 = 0x2_0000;
    pub const CLIENT_PLUGIN_AUTH: u32 = 0x8_0000;
    pub const CLIENT_PLUGIN_AUTH_LENENC: u32 = 0x20_0000;
    pub const STATUS_AUTOCOMMIT: u16 = 0x2;
    pub const STATUS_MORE_RESULTS: u16 = 0x8;
}
use flags::*;
/// The largest packet accepted from a server (a probe's answer is a few KiB).
const MAX_PACKET: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LeanError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no answer within {0} ms")]
    Timeout(u128),
    /// What this client does not do (another plugin, the password asked for in full): the
    /// caller uses the full `Connector` for this instance.
    #[error("not for the lean client: {0}")]
    Unsupported(String),
    #[error("the server refused: {code} {message}")]
    Server { code: u16, message: String },
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

pub struct LeanConn {
    stream: BufReader<TcpStream>,
    /// Sequence id of the next packet this side sends.
    seq: u8,
}

fn scramble_native(password: &[u8], nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let h1 = Sha1::digest(password);
    let h2 = Sha1::digest(h1);
    let mut h = Sha1::new();
    h.update(nonce);
    h.update(h2);
    let h3 = h.finalize();
    h1.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect()
}

fn scramble_sha2(password: &[u8], nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let h1 = Sha256::digest(password);
    let h2 = Sha256::digest(h1);
    let mut h = Sha256::new();
    h.update(h2);
    h.update(nonce);
    let h3 = h.finalize();
    h1.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect()
}

fn auth_answer(plugin: &str, password: &[u8], nonce: &[u8]) -> Result<Vec<u8>, LeanError> {
    match plugin {
        "mysql_native_password" | "" => Ok(scramble_native(password, nonce)),
        "caching_sha2_password" => Ok(scramble_sha2(password, nonce)),
        other => Err(LeanError::Unsupported(format!("authentication plugin {other}"))),
    }
}

/// Reads a length-encoded integer at `*at`.
fn lenenc(b: &[u8], at: &mut usize) -> Option<u64> {
    let first = *b.get(*at)?;
    *at += 1;
    let n = match first {
        0..=250 => return Some(first as u64),
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        _ => return None,
    };
    let bytes = b.get(*at..*at + n)?;
    *at += n;
    let mut v = [0u8; 8];
    v[..n].copy_from_slice(bytes);
    Some(u64::from_le_bytes(v))
}

fn lenenc_bytes<'a>(b: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let n = usize::try_from(lenenc(b, at)?).ok()?;
    let end = at.checked_add(n)?;
    let s = b.get(*at..end)?;
    *at = end;
    Some(s)
}

/// The most columns a server's table (and so a result set) can have.
const MAX_COLUMNS: u64 = 4096;

/// The column count that opens a result set; a server claiming more than any server allows is
/// not believed (nothing is allocated for it).
fn column_count(first: &[u8]) -> Result<usize, LeanError> {
    let mut at = 0;
    match lenenc(first, &mut at) {
        Some(n) if (1..=MAX_COLUMNS).contains(&n) => Ok(n as usize),
        Some(n) => Err(LeanError::Protocol(format!("a result set of {n} columns"))),
        None => Err(LeanError::Protocol("column count".into())),
    }
}

fn server_error(p: &[u8]) -> LeanError {
    let code = p.get(1..3).map(|c| u16::from_le_bytes([c[0], c[1]])).unwrap_or(0);
    // `#` and a 5-character SQL state precede the message.
    let msg = if p.get(3) == Some(&b'#') { p.get(9..).unwrap_or_default() } else { p.get(3..).unwrap_or_default() };
    LeanError::Server { code, message: String::from_utf8_lossy(msg).into_owned() }
}

impl LeanConn {
    /// Connects to `addr` and logs in as `user`, within `limit`.
    pub async fn connect(addr: &str, user: &str, password: &[u8], limit: Duration) -> Result<LeanConn, LeanError> {
        match tokio::time::timeout(limit, LeanConn::connect_now(addr, user, password)).await {
            Ok(r) => r,
            Err(_) => Err(LeanError::Timeout(limit.as_millis())),
        }
    }

    async fn connect_now(addr: &str, user: &str, password: &[u8]) -> Result<LeanConn, LeanError> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let mut c = LeanConn { stream: BufReader::with_capacity(8192, tcp), seq: 0 };
        let greeting = c.read_packet().await?;
        if greeting.first() == Some(&0xff) {
            return Err(server_error(&greeting));
        }
        if greeting.first() != Some(&10) {
            return Err(LeanError::Protocol("not a protocol 10 greeting".into()));
        }
        let mut at = 1;
        at += greeting[at..].iter().position(|b| *b == 0).ok_or_else(|| LeanError::Protocol("greeting".into()))? + 1;
        at += 4; // connection id
        let short = |what: &str| LeanError::Protocol(format!("short greeting ({what})"));
        let mut nonce = greeting.get(at..at + 8).ok_or_else(|| short("nonce"))?.to_vec();
        at += 9;
        let caps_lo =
            u16::from_le_bytes(greeting.get(at..at + 2).ok_or_else(|| short("caps"))?.try_into().unwrap_or_default());
        at += 2 + 1 + 2; // charset, status
        let caps_hi = greeting.get(at..at + 2).map(|c| u16::from_le_bytes([c[0], c[1]])).unwrap_or(0);
        let server_caps = caps_lo as u32 | (caps_hi as u32) << 16;
        at += 2;
        let auth_len = *greeting.get(at).unwrap_or(&0) as usize;
        at += 1 + 10;
        let rest = auth_len.saturating_sub(8).max(13);
        if let Some(more) = greeting.get(at..at + rest) {
            // The second part ends with a NUL that is not part of the nonce.
            nonce.extend_from_slice(more.strip_suffix(&[0]).unwrap_or(more));
            at += rest;
        }
        let plugin = greeting
            .get(at..)
            .map(|p| String::from_utf8_lossy(p.split(|b| *b == 0).next().unwrap_or_default()).into_owned())
            .unwrap_or_default();
        if server_caps & CLIENT_PROTOCOL_41 == 0 || server_caps & CLIENT_MULTI_RESULTS == 0 {
            return Err(LeanError::Unsupported("a server without protocol 4.1 or multiple results".into()));
        }
        let lenenc_auth = server_caps & CLIENT_PLUGIN_AUTH_LENENC != 0;
        let caps = CLIENT_LONG_PASSWORD
            | CLIENT_PROTOCOL_41
            | CLIENT_TRANSACTIONS
            | CLIENT_SECURE_CONNECTION
            | CLIENT_MULTI_STATEMENTS
            | CLIENT_MULTI_RESULTS
            | CLIENT_PLUGIN_AUTH
            | if lenenc_auth { CLIENT_PLUGIN_AUTH_LENENC } else { 0 };
        let answer = auth_answer(&plugin, password, &nonce)?;
        let mut login = Vec::with_capacity(128);
        login.extend_from_slice(&caps.to_le_bytes());
        login.extend_from_slice(&(16u32 << 20).to_le_bytes());
        login.push(45); // utf8mb4
        login.extend_from_slice(&[0; 23]);
        login.extend_from_slice(user.as_bytes());
        login.push(0);
        // A scramble is at most 32 bytes: one length byte, whether length-encoded or not.
        login.push(answer.len() as u8);
        login.extend_from_slice(&answer);
        login.extend_from_slice(if plugin.is_empty() { b"mysql_native_password" } else { plugin.as_bytes() });
        login.push(0);
        c.seq = 1;
        c.write_packet(&login).await?;
        let mut plugin = plugin;
        let mut switched = false;
        loop {
            let p = c.read_packet().await?;
            match p.first() {
                Some(0x00) => return Ok(c),
                Some(0xff) => return Err(server_error(&p)),
                Some(0xfe) if !switched => {
                    // Auth switch: another plugin, a fresh nonce.
                    switched = true;
                    let body = &p[1..];
                    let end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
                    plugin = String::from_utf8_lossy(&body[..end]).into_owned();
                    let data = body.get(end + 1..).unwrap_or_default();
                    let data = data.strip_suffix(&[0]).unwrap_or(data);
                    let answer = auth_answer(&plugin, password, data)?;
                    c.write_packet(&answer).await?;
                }
                Some(0x01) if plugin == "caching_sha2_password" => match p.get(1) {
                    Some(0x03) => {} // fast authentication succeeded; the OK follows
                    _ => {
                        return Err(LeanError::Unsupported(
                            "the server asks for the password itself (caching_sha2_password full authentication over plain TCP)".into(),
                        ))
                    }
                },
                _ => return Err(LeanError::Protocol(format!("during login: 0x{:02x}", p.first().unwrap_or(&0)))),
            }
        }
    }

    async fn read_packet(&mut self) -> Result<Vec<u8>, LeanError> {
        let mut head = [0u8; 4];
        self.stream.read_exact(&mut head).await?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
        if len > MAX_PACKET {
            return Err(LeanError::Protocol(format!("a packet of {len} bytes")));
        }
        self.seq = head[3].wrapping_add(1);
        let mut p = vec![0u8; len];
        self.stream.read_exact(&mut p).await?;
        Ok(p)
    }

    async fn write_packet(&mut self, body: &[u8]) -> Result<(), LeanError> {
        let mut out = Vec::with_capacity(body.len() + 4);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes()[..3]);
        out.push(self.seq);
        out.extend_from_slice(body);
        self.stream.get_mut().write_all(&out).await?;
        self.seq = self.seq.wrapping_add(1);
        Ok(())
    }

    /// Runs `sql` (statements separated by `;`) and returns each statement's rows, within `limit`.
    pub async fn query_sets(&mut self, sql: &str, limit: Duration) -> Result<Vec<Vec<RowMap>>, LeanError> {
        match tokio::time::timeout(limit, self.query_now(sql)).await {
            Ok(r) => r,
            Err(_) => Err(LeanError::Timeout(limit.as_millis())),
        }
    }

    async fn query_now(&mut self, sql: &str) -> Result<Vec<Vec<RowMap>>, LeanError> {
        let mut cmd = Vec::with_capacity(sql.len() + 1);
        cmd.push(0x03);
        cmd.extend_from_slice(sql.as_bytes());
        self.seq = 0;
        self.write_packet(&cmd).await?;
        let mut sets = Vec::new();
        loop {
            let first = self.read_packet().await?;
            let more = match first.first() {
                Some(0xff) => return Err(server_error(&first)),
                Some(0x00) => {
                    // No rows (a SET): the status flags follow the two lengths.
                    let mut at = 1;
                    lenenc(&first, &mut at);
                    lenenc(&first, &mut at);
                    sets.push(Vec::new());
                    first.get(at..at + 2).is_some_and(|s| u16::from_le_bytes([s[0], s[1]]) & STATUS_MORE_RESULTS != 0)
                }
                _ => {
                    let n = column_count(&first)?;
                    let mut names = Vec::with_capacity(n);
                    for _ in 0..n {
                        let def = self.read_packet().await?;
                        let mut at = 0;
                        for _ in 0..4 {
                            lenenc_bytes(&def, &mut at); // catalog, schema, table, org_table
                        }
                        let name =
                            lenenc_bytes(&def, &mut at).ok_or_else(|| LeanError::Protocol("column name".into()))?;
                        names.push(String::from_utf8_lossy(name).to_ascii_lowercase());
                    }
                    let eof = self.read_packet().await?;
                    if eof.first() != Some(&0xfe) {
                        return Err(LeanError::Protocol("no EOF after the columns".into()));
                    }
                    let mut rows = Vec::new();
                    let more;
                    loop {
                        let p = self.read_packet().await?;
                        match p.first() {
                            Some(0xfe) if p.len() < 9 => {
                                more = p
                                    .get(3..5)
                                    .is_some_and(|s| u16::from_le_bytes([s[0], s[1]]) & STATUS_MORE_RESULTS != 0);
                                break;
                            }
                            Some(0xff) => return Err(server_error(&p)),
                            _ => {
                                let mut at = 0;
                                let mut row = Vec::with_capacity(n);
                                for name in &names {
                                    let v = if p.get(at) == Some(&0xfb) {
                                        at += 1;
                                        None
                                    } else {
                                        let b = lenenc_bytes(&p, &mut at)
                                            .ok_or_else(|| LeanError::Protocol("row".into()))?;
                                        Some(String::from_utf8_lossy(b).into_owned())
                                    };
                                    row.push((name.clone(), v));
                                }
                                rows.push(RowMap(row));
                            }
                        }
                    }
                    sets.push(rows);
                    more
                }
            };
            if !more {
                return Ok(sets);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_length_is_not_believed() {
        // A column count of 2^40, and a string claiming more bytes than usize holds.
        assert!(column_count(&[0xfe, 0, 0, 0, 0, 1, 0, 0, 0]).is_err());
        assert!(column_count(&[0xfd, 0x01, 0x10, 0x00]).is_err());
        assert_eq!(column_count(&[12]).unwrap(), 12);
        let mut at = 0;
        assert_eq!(lenenc_bytes(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, b'x'], &mut at), None);
    }

    #[test]
    fn lenenc_reads_every_width() {
        let b = [0xfa, 0xfc, 0x01, 0x02, 0xfd, 1, 2, 3, 0xfe, 1, 0, 0, 0, 0, 0, 0, 0];
        let mut at = 0;
        assert_eq!(lenenc(&b, &mut at), Some(250));
        assert_eq!(lenenc(&b, &mut at), Some(0x0201));
        assert_eq!(lenenc(&b, &mut at), Some(0x030201));
        assert_eq!(lenenc(&b, &mut at), Some(1));
        assert_eq!(lenenc(&b, &mut at), None);
    }
}
