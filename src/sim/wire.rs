//! The server side of the MySQL client/server protocol, as much as the simulator needs: the v10
//! handshake (any user and password are accepted, `mysql_native_password`), `COM_QUERY` with
//! several statements and several result sets (text protocol, EOF packets: `CLIENT_DEPRECATE_EOF`
//! is not offered), `COM_PING`, `COM_RESET_CONNECTION`, `COM_INIT_DB`, `COM_QUIT`. Each answer is
//! built in one buffer and written with one call.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::mysql::lean::flags::*;

const SERVER_CAPABILITIES: u32 = CLIENT_LONG_PASSWORD
    | CLIENT_FOUND_ROWS
    | CLIENT_LONG_FLAG
    | CLIENT_CONNECT_WITH_DB
    | CLIENT_PROTOCOL_41
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_STATEMENTS
    | CLIENT_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_PLUGIN_AUTH_LENENC;

/// The longest command accepted (a probe is ~1 KiB).
const MAX_PACKET: usize = 1 << 20;

/// One result of one statement.
pub enum Answer {
    /// A result set: column names and rows of text values (None: NULL).
    Rows(Vec<&'static str>, Vec<Vec<Option<String>>>),
    /// A statement without rows (`SET ...`).
    Ok,
    /// An error, ending the answer (the statements after it are not run, as a server does).
    Err(u16, String),
}

/// What a connection's queries are answered with.
pub trait Responder {
    /// The results of `sql` (one per statement).
    fn query(&mut self, sql: &str) -> Vec<Answer>;
    /// Whether to stop answering (the instance now hangs): the connection then goes silent.
    fn silent(&self) -> bool;
}

struct Packets {
    buf: Vec<u8>,
    seq: u8,
}

impl Packets {
    fn new(seq: u8) -> Packets {
        Packets { buf: Vec::with_capacity(1024), seq }
    }

    /// Appends one packet (header, then what `body` writes).
    fn packet(&mut self, body: impl FnOnce(&mut Vec<u8>)) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0, 0, self.seq]);
        body(&mut self.buf);
        let len = self.buf.len() - start - 4;
        self.buf[start..start + 3].copy_from_slice(&(len as u32).to_le_bytes()[..3]);
        self.seq = self.seq.wrapping_add(1);
    }

    fn ok(&mut self, status: u16) {
        self.packet(|b| {
            b.extend_from_slice(&[0, 0, 0]);
            b.extend_from_slice(&status.to_le_bytes());
            b.extend_from_slice(&[0, 0]);
        });
    }

    fn eof(&mut self, status: u16) {
        self.packet(|b| {
            b.extend_from_slice(&[0xfe, 0, 0]);
            b.extend_from_slice(&status.to_le_bytes());
        });
    }

    fn err(&mut self, code: u16, message: &str) {
        self.packet(|b| {
            b.push(0xff);
            b.extend_from_slice(&code.to_le_bytes());
            b.extend_from_slice(b"#HY000");
            b.extend_from_slice(message.as_bytes());
        });
    }

    fn rows(&mut self, names: &[&str], rows: &[Vec<Option<String>>], status: u16) {
        self.packet(|b| lenenc_int(b, names.len() as u64));
        for name in names {
            self.packet(|b| {
                lenenc_str(b, b"def");
                lenenc_str(b, b"");
                lenenc_str(b, b"");
                lenenc_str(b, b"");
                lenenc_str(b, name.as_bytes());
                lenenc_str(b, name.as_bytes());
                b.push(0x0c);
                b.extend_from_slice(&33u16.to_le_bytes()); // utf8
                b.extend_from_slice(&1024u32.to_le_bytes());
                b.push(0xfd); // VAR_STRING
                b.extend_from_slice(&0u16.to_le_bytes());
                b.push(0);
                b.extend_from_slice(&[0, 0]);
            });
        }
        self.eof(status);
        for row in rows {
            self.packet(|b| {
                for v in row {
                    match v {
                        Some(v) => lenenc_str(b, v.as_bytes()),
                        None => b.push(0xfb),
                    }
                }
            });
        }
        self.eof(status);
    }
}

fn lenenc_int(b: &mut Vec<u8>, n: u64) {
    match n {
        0..=250 => b.push(n as u8),
        251..=0xffff => {
            b.push(0xfc);
            b.extend_from_slice(&(n as u16).to_le_bytes());
        }
        0x1_0000..=0xff_ffff => {
            b.push(0xfd);
            b.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        }
        _ => {
            b.push(0xfe);
            b.extend_from_slice(&n.to_le_bytes());
        }
    }
}

fn lenenc_str(b: &mut Vec<u8>, s: &[u8]) {
    lenenc_int(b, s.len() as u64);
    b.extend_from_slice(s);
}

/// Reads one packet: (sequence id, payload). None at the end of the stream.
async fn read_packet<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 4];
    if let Err(e) = r.read_exact(&mut head).await {
        return if e.kind() == std::io::ErrorKind::UnexpectedEof { Ok(None) } else { Err(e) };
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
    if len > MAX_PACKET {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "packet too large"));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some((head[3], payload)))
}

/// Serves one client connection until it quits or goes away.
pub async fn serve<S, R>(mut stream: S, version: &str, connection_id: u32, mut responder: R) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: Responder,
{
    // The greeting.
    let mut out = Packets::new(0);
    let scramble = b"baton-sim-scramble-!";
    out.packet(|b| {
        b.push(10);
        b.extend_from_slice(version.as_bytes());
        b.push(0);
        b.extend_from_slice(&connection_id.to_le_bytes());
        b.extend_from_slice(&scramble[..8]);
        b.push(0);
        b.extend_from_slice(&(SERVER_CAPABILITIES as u16).to_le_bytes());
        b.push(33);
        b.extend_from_slice(&STATUS_AUTOCOMMIT.to_le_bytes());
        b.extend_from_slice(&((SERVER_CAPABILITIES >> 16) as u16).to_le_bytes());
        b.push(21);
        b.extend_from_slice(&[0; 10]);
        b.extend_from_slice(&scramble[8..20]);
        b.push(0);
        b.extend_from_slice(b"mysql_native_password\0");
    });
    stream.write_all(&out.buf).await?;
    // The client's answer: any account is let in.
    let Some((seq, _login)) = read_packet(&mut stream).await? else { return Ok(()) };
    let mut out = Packets::new(seq.wrapping_add(1));
    out.ok(STATUS_AUTOCOMMIT);
    stream.write_all(&out.buf).await?;

    while let Some((seq, payload)) = read_packet(&mut stream).await? {
        let mut out = Packets::new(seq.wrapping_add(1));
        match payload.first() {
            Some(0x01) | None => return Ok(()), // COM_QUIT
            Some(0x03) => {
                if responder.silent() {
                    // A hung server: never answers; the client gives up and closes.
                    let mut sink = [0u8; 256];
                    while stream.read(&mut sink).await? > 0 {}
                    return Ok(());
                }
                let sql = String::from_utf8_lossy(&payload[1..]);
                let answers = responder.query(&sql);
                let n = answers.len();
                for (i, a) in answers.into_iter().enumerate() {
                    let status = STATUS_AUTOCOMMIT | if i + 1 < n { STATUS_MORE_RESULTS } else { 0 };
                    match a {
                        Answer::Rows(names, rows) => out.rows(&names, &rows, status),
                        Answer::Ok => out.ok(status),
                        Answer::Err(code, message) => {
                            out.err(code, &message);
                            break;
                        }
                    }
                }
                if n == 0 {
                    out.ok(STATUS_AUTOCOMMIT);
                }
            }
            Some(0x0e) | Some(0x1f) | Some(0x02) => out.ok(STATUS_AUTOCOMMIT), // ping, reset, init_db
            Some(other) => out.err(1047, &format!("baton-sim: command 0x{other:02x} is not simulated")),
        }
        stream.write_all(&out.buf).await?;
    }
    Ok(())
}
