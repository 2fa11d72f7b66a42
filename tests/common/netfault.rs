//! A TCP fault proxy between Baton and one `mariadbd` (Baton dials it through `topology.dial`;
//! replication and the application's writer connect directly). On command it adds latency,
//! drops everything (a blackhole: bytes vanish both ways, new connections get no greeting),
//! resets every open connection (RST), or resets the connection that sends the next statement
//! (after delivering it or not: the statement ran and its answer was lost, or it never arrived).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Pass,
    /// Added to every chunk, in each direction.
    Latency(Duration),
    Blackhole,
}

struct State {
    fault: Mutex<Fault>,
    /// Bumped to reset every open connection.
    resets: watch::Sender<u64>,
    /// Connections accepted during a blackhole: held open, never answered.
    held: Mutex<Vec<TcpStream>>,
    /// Armed: the next request resets its connection (delivered first when true).
    armed: Mutex<Option<bool>>,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            fault: Mutex::new(Fault::Pass),
            resets: watch::channel(0).0,
            held: Mutex::new(Vec::new()),
            armed: Mutex::new(None),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if st.fault() == Fault::Blackhole {
                    st.held.lock().unwrap().push(client);
                    continue;
                }
                tokio::spawn(relay(client, target, st.clone()));
            }
        });
        FaultProxy { addr, state, task }
    }

    /// From now on. The end of a blackhole resets what it held: those streams lost bytes, as
    /// TCP connections through a long enough outage die.
    pub fn set(&self, fault: Fault) {
        let was = std::mem::replace(&mut *self.state.fault.lock().unwrap(), fault);
        if was == Fault::Blackhole && fault != Fault::Blackhole {
            self.state.held.lock().unwrap().clear();
            self.reset_connections();
        }
    }

    /// The next statement from Baton resets its connection: after reaching the server when
    /// `deliver`, else before.
    pub fn reset_next_statement(&self, deliver: bool) {
        *self.state.armed.lock().unwrap() = Some(deliver);
    }

    /// Every open connection is reset (RST) now; new ones pass.
    pub fn reset_connections(&self) {
        self.state.resets.send_modify(|n| *n += 1);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.reset_connections();
    }
}

impl State {
    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap()
    }
}

async fn relay(client: TcpStream, target: SocketAddr, st: Arc<State>) {
    let Ok(server) = TcpStream::connect(target).await else { return };
    // Dropped with linger 0: the peer sees a reset, not a clean close.
    let _ = client.set_zero_linger();
    let _ = server.set_zero_linger();
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut resets = st.resets.subscribe();
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::select! {
        _ = pump(cr, sw, &st, true) => {}
        _ = pump(sr, cw, &st, false) => {}
        _ = resets.changed() => {}
    }
}

/// Copies one direction (`request`: from Baton to the server) until either side closes.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    st: &State,
    request: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // A statement (COM_QUERY: the command byte after the 4-byte packet header), not the
        // pings and connection resets a pool sends between statements.
        let statement = request && n > 4 && buf[4] == 0x03;
        let armed = if statement { st.armed.lock().unwrap().take() } else { None };
        if let Some(deliver) = armed {
            if deliver {
                let _ = to.write_all(&buf[..n]).await;
                // Let the server read it before the reset reaches it.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            return; // both sockets dropped with linger 0: reset
        }
        match st.fault() {
            Fault::Blackhole => continue,
            Fault::Latency(d) => tokio::time::sleep(d).await,
            Fault::Pass => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
