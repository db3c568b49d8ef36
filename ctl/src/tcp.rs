//! TCP/53 on the frontends (the XDP program leaves TCP to the kernel). Each
//! client connection reads length-prefixed queries, forwards each to a usable
//! backend of the frontend's pool (round robin) over a TCP connection that
//! the client connection keeps and reuses, with its own DNS ID so that
//! pipelined queries to one backend cannot collide, and writes answers back
//! as they come, out of order. A length prefix that cannot be a DNS message
//! (< 12 bytes) closes the connection and is counted; so are idle clients.
//!
//! While the node is withdrawn from the routers (`[announce]`), a client
//! connection that has been served is closed (FIN) when it next waits for a
//! query: its next segment would reach another balancer host, which knows
//! nothing of it and would reset it after the client sent a query; closed
//! first, the client reconnects and lands where the routers now send it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::{debug, warn};

/// A connection lives at most this long, however busy.
const MAX_LIFETIME: Duration = Duration::from_secs(300);
/// Queries one client connection may have waiting.
const MAX_PENDING: usize = 256;
/// An answer not back from a backend after this long is given up.
const BACKEND_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct TcpCounters {
    pub connections: Counter,
    pub queries: Counter,
    pub answers: Counter,
    pub bad_length: Counter,
    pub idle: Counter,
    pub limit: Counter,
    pub backend_error: Counter,
    pub servfail: Counter,
    /// Connections closed because the node was withdrawn.
    pub withdrawn: Counter,
}

impl TcpCounters {
    pub fn errors(&self) -> [(&'static str, u64); 5] {
        [
            ("bad_length", self.bad_length.get()),
            ("idle_timeout", self.idle.get()),
            ("connection_limit", self.limit.get()),
            ("backend_error", self.backend_error.get()),
            ("node_withdrawn", self.withdrawn.get()),
        ]
    }
}

/// Picks a backend for a query of `pool`; `None` when none is usable.
pub trait Picker: Send + Sync + 'static {
    fn pick(&self, pool: &str) -> Option<SocketAddr>;
}

pub struct TcpSpec {
    pub idle: Duration,
    pub limit: Arc<Semaphore>,
    pub counters: Arc<TcpCounters>,
    /// True while the node is withdrawn from the routers: served
    /// connections are closed at their next wait for a query.
    pub closing: watch::Receiver<bool>,
}

/// Accepts on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    pool: String,
    picker: Arc<dyn Picker>,
    spec: Arc<TcpSpec>,
) {
    loop {
        let Ok((conn, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = spec.limit.clone().try_acquire_owned() else {
            spec.counters.limit.inc();
            drop(conn);
            continue;
        };
        spec.counters.connections.inc();
        let (pool, picker, spec) = (pool.clone(), picker.clone(), spec.clone());
        tokio::spawn(async move {
            let _permit = permit;
            if tokio::time::timeout(MAX_LIFETIME, client(conn, &pool, picker, &spec))
                .await
                .is_err()
            {
                debug!(%peer, "TCP connection reached its lifetime");
            }
        });
    }
}

/// A backend connection of one client connection.
struct Upstream {
    writer: OwnedWriteHalf,
    /// Our ID → the client's ID.
    pending: Arc<Mutex<HashMap<u16, u16>>>,
    next_id: u16,
}

/// Answers `q` (client ID in place) with SERVFAIL, counted.
async fn servfail(tx: &mpsc::Sender<Vec<u8>>, q: &[u8], counters: &TcpCounters) {
    let mut a = q.to_vec();
    a[2] |= 0x80; // QR
    a[3] = (a[3] & 0xf0) | 2; // SERVFAIL
    counters.servfail.inc();
    let _ = tx.send(a).await;
}

async fn client(conn: TcpStream, pool: &str, picker: Arc<dyn Picker>, spec: &TcpSpec) {
    let _ = conn.set_nodelay(true);
    let (mut rd, mut wr) = conn.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(MAX_PENDING);
    let counters = spec.counters.clone();
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&msg);
            if wr.write_all(&framed).await.is_err() {
                return;
            }
            counters.answers.inc();
        }
        let _ = wr.shutdown().await;
    });
    let mut ups: HashMap<SocketAddr, Upstream> = HashMap::new();
    let mut closing = spec.closing.clone();
    let mut served = false;
    loop {
        // A query already on its way wins over the close (biased); a
        // connection opened during the withdrawal gets its first query
        // answered before it can be closed.
        let read = tokio::time::timeout(spec.idle, rd.read_u16());
        let len = tokio::select! {
            biased;
            r = read => match r {
                Err(_) => {
                    spec.counters.idle.inc();
                    break;
                }
                Ok(Err(_)) => break, // closed
                Ok(Ok(n)) => usize::from(n),
            },
            _ = closing.wait_for(|c| *c), if served => {
                spec.counters.withdrawn.inc();
                break;
            }
        };
        served = true;
        if len < 12 {
            spec.counters.bad_length.inc();
            break;
        }
        let mut q = vec![0u8; len];
        if tokio::time::timeout(spec.idle, rd.read_exact(&mut q))
            .await
            .map(|r| r.is_ok())
            != Ok(true)
        {
            spec.counters.bad_length.inc();
            break;
        }
        spec.counters.queries.inc();
        let Some(be) = picker.pick(pool) else {
            servfail(&tx, &q, &spec.counters).await;
            continue;
        };
        if let std::collections::hash_map::Entry::Vacant(slot) = ups.entry(be) {
            match open_upstream(be, tx.clone(), spec.counters.clone()).await {
                Ok(u) => {
                    slot.insert(u);
                }
                Err(e) => {
                    warn!(backend = %be, "TCP connect to backend failed: {e}");
                    spec.counters.backend_error.inc();
                    servfail(&tx, &q, &spec.counters).await;
                    continue;
                }
            }
        }
        let up = ups.get_mut(&be).expect("inserted above");
        let client_id = u16::from_be_bytes([q[0], q[1]]);
        // A client pipelining more than MAX_PENDING unanswered queries to
        // one backend gets SERVFAIL for the excess (this also bounds the
        // search for a free ID below).
        if up.pending.lock().unwrap().len() >= MAX_PENDING {
            servfail(&tx, &q, &spec.counters).await;
            continue;
        }
        let our_id = {
            let mut p = up.pending.lock().unwrap();
            let mut id = up.next_id;
            while p.contains_key(&id) {
                id = id.wrapping_add(1);
            }
            up.next_id = id.wrapping_add(1);
            p.insert(id, client_id);
            id
        };
        q[..2].copy_from_slice(&our_id.to_be_bytes());
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        if up.writer.write_all(&framed).await.is_err() {
            spec.counters.backend_error.inc();
            up.pending.lock().unwrap().remove(&our_id);
            ups.remove(&be);
            q[..2].copy_from_slice(&client_id.to_be_bytes());
            servfail(&tx, &q, &spec.counters).await;
        }
    }
    // The client is done sending: let pending answers arrive (bounded).
    let deadline = tokio::time::Instant::now() + BACKEND_TIMEOUT;
    while ups.values().any(|u| !u.pending.lock().unwrap().is_empty())
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(ups);
    drop(tx);
    let _ = writer.await;
}

async fn open_upstream(
    be: SocketAddr,
    to_client: mpsc::Sender<Vec<u8>>,
    counters: Arc<TcpCounters>,
) -> std::io::Result<Upstream> {
    let s = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(be))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = s.set_nodelay(true);
    let (mut rd, writer) = s.into_split();
    let pending: Arc<Mutex<HashMap<u16, u16>>> = Arc::default();
    let p = pending.clone();
    tokio::spawn(async move {
        loop {
            let Ok(Ok(len)) = tokio::time::timeout(BACKEND_TIMEOUT * 12, rd.read_u16()).await
            else {
                break;
            };
            let mut a = vec![0u8; usize::from(len)];
            if len < 12 || rd.read_exact(&mut a).await.is_err() {
                counters.backend_error.inc();
                break;
            }
            let ours = u16::from_be_bytes([a[0], a[1]]);
            let Some(theirs) = p.lock().unwrap().remove(&ours) else {
                continue; // not a query of ours: ignore
            };
            a[..2].copy_from_slice(&theirs.to_be_bytes());
            if to_client.send(a).await.is_err() {
                break;
            }
        }
        p.lock().unwrap().clear();
    });
    Ok(Upstream {
        writer,
        pending,
        next_id: 1,
    })
}
