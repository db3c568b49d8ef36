//! The synthetic backend: a multi-threaded UDP DNS responder (SO_REUSEPORT,
//! one socket per thread) answering A/AAAA with fixed records, NXDOMAIN under
//! a suffix, or a forced RCODE, after an optional delay; and the same answers
//! over TCP on the same port (length-prefixed, pipelined, in order, no
//! delay). Tests and the demo need no external resolver.

use crate::msg::{answer, AnswerSpec};
use dnsrail_engine::io::sys::grow_buffers;
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct BackendSpec {
    pub listen: SocketAddr,
    pub threads: usize,
    pub answers: AnswerSpec,
    /// Every answer waits this long (a recursor's cache miss).
    pub delay: Duration,
    /// Only this fraction (0..=1) of answers is delayed; the rest is
    /// immediate (cache hits).
    pub delay_fraction: f64,
}

impl Default for BackendSpec {
    fn default() -> Self {
        BackendSpec {
            listen: "127.0.0.1:0".parse().unwrap(),
            threads: 1,
            answers: AnswerSpec::default(),
            delay: Duration::ZERO,
            delay_fraction: 1.0,
        }
    }
}

#[derive(Default, Debug)]
pub struct BackendCounters {
    pub queries: AtomicU64,
    pub answers: AtomicU64,
}

pub struct Backend {
    pub addr: SocketAddr,
    pub counters: Arc<BackendCounters>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Backend {
    pub fn start(spec: BackendSpec) -> io::Result<Backend> {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(BackendCounters::default());
        let mut addr = spec.listen;
        let mut threads = Vec::new();
        for t in 0..spec.threads.max(1) {
            let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
            s.set_reuse_port(true)?;
            grow_buffers(std::os::fd::AsRawFd::as_raw_fd(&s), 16 << 20);
            s.bind(&addr.into())?;
            let sock: UdpSocket = s.into();
            if t == 0 {
                addr = sock.local_addr()?;
            }
            sock.set_read_timeout(Some(Duration::from_millis(20)))?;
            let (stop, counters, spec) = (stop.clone(), counters.clone(), spec.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("synth-backend-{t}"))
                    .spawn(move || serve(sock, spec, stop, counters))?,
            );
        }
        // TCP on the same address and port (a thread per connection: test
        // and demo loads are small).
        let tcp = std::net::TcpListener::bind(addr)?;
        tcp.set_nonblocking(true)?;
        let (st, cn, sp) = (stop.clone(), counters.clone(), spec.clone());
        threads.push(
            std::thread::Builder::new()
                .name("synth-backend-tcp".into())
                .spawn(move || serve_tcp(tcp, sp, st, cn))?,
        );
        Ok(Backend {
            addr,
            counters,
            stop,
            threads,
        })
    }

    pub fn queries(&self) -> u64 {
        self.counters.queries.load(Ordering::Relaxed)
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.halt();
    }
}

fn serve(sock: UdpSocket, spec: BackendSpec, stop: Arc<AtomicBool>, c: Arc<BackendCounters>) {
    let mut buf = vec![0u8; 65535];
    let mut out = Vec::with_capacity(512);
    // Delay is constant, so answers come due in arrival order: a FIFO is a
    // timer queue.
    let mut delayed: VecDeque<(Instant, SocketAddr, Vec<u8>)> = VecDeque::new();
    let mut n: u64 = 0;
    let threshold = (spec.delay_fraction.clamp(0.0, 1.0) * 1000.0) as u64;
    let mut cur_wait = Duration::from_millis(20);
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while delayed.front().is_some_and(|d| d.0 <= now) {
            let (_, to, msg) = delayed.pop_front().unwrap();
            if sock.send_to(&msg, to).is_ok() {
                c.answers.fetch_add(1, Ordering::Relaxed);
            }
        }
        let wait = delayed
            .front()
            .map(|d| d.0.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(20))
            .clamp(Duration::from_micros(100), Duration::from_millis(20));
        // setsockopt only when the wait changes: not a syscall per query.
        if wait != cur_wait {
            let _ = sock.set_read_timeout(Some(wait));
            cur_wait = wait;
        }
        let Ok((len, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        c.queries.fetch_add(1, Ordering::Relaxed);
        if answer(&buf[..len], &spec.answers, &mut out).is_none() {
            continue;
        }
        n += 1;
        // A fixed stride over 0..1000 spreads the slow answers evenly and
        // deterministically.
        let slow = !spec.delay.is_zero() && (n * 7919) % 1000 < threshold;
        if slow {
            delayed.push_back((Instant::now() + spec.delay, from, out.clone()));
        } else if sock.send_to(&out, from).is_ok() {
            c.answers.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn serve_tcp(
    l: std::net::TcpListener,
    spec: BackendSpec,
    stop: Arc<AtomicBool>,
    c: Arc<BackendCounters>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Ok((conn, _)) = l.accept() else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let (spec, stop, c) = (spec.clone(), stop.clone(), c.clone());
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let _ = conn.set_nonblocking(false);
            let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
            let mut conn = conn;
            let mut out = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let mut len = [0u8; 2];
                match conn.read_exact(&mut len) {
                    Ok(()) => {}
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock
                            || e.kind() == io::ErrorKind::TimedOut =>
                    {
                        continue
                    }
                    Err(_) => return,
                }
                let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                if conn.read_exact(&mut q).is_err() {
                    return;
                }
                let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
                c.queries.fetch_add(1, Ordering::Relaxed);
                if answer(&q, &spec.answers, &mut out).is_none() {
                    return;
                }
                let mut framed = (out.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&out);
                if conn.write_all(&framed).is_err() {
                    return;
                }
                c.answers.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}
