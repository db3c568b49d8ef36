//! `dnsrailctl serve` end to end on loopback: real backends
//! (`dnsrail-bench backend`), the real engine started and supervised by ctl
//! (socket data plane), the HTTP API, TCP/53 and the CLI. Each test uses its
//! own loopback address (127.0.N.x) and temporary directory, and kills
//! everything it started on drop, the engine included.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dnsrail_bench::load::{self, LoadSpec};
use dnsrail_engine::control::ControlClient;
use serde_json::Value;

fn target_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        bin.exists(),
        "{} missing: cargo build --release --workspace",
        bin.display()
    );
    bin
}

/// One test at a time: they measure loss and detection time, and several
/// engines, ctls and load generators on two shared cores starve each other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct H {
    _serial: std::sync::MutexGuard<'static, ()>,
    n: u8,
    dir: PathBuf,
    ctl: Option<Child>,
    backends: Vec<(String, Option<Child>, Vec<String>)>,
    /// Engine pids seen, killed on drop (ctl never kills its engine).
    engines: Vec<u32>,
}

impl H {
    /// Test number `n` (its loopback address 127.0.n.x); `backends` as
    /// (name, extra args of dnsrail-bench backend; None = no process).
    fn new(n: u8, backends: &[(&str, Option<&[&str]>)], health: &str) -> H {
        let dir = std::env::temp_dir().join(format!("drctl-{n}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut h = H {
            _serial: ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner()),
            n,
            dir,
            ctl: None,
            backends: Vec::new(),
            engines: Vec::new(),
        };
        for (i, (name, args)) in backends.iter().enumerate() {
            let args: Vec<String> = args
                .map(|a| a.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default();
            let child = backends[i].1.map(|_| h.spawn_backend(i, &args));
            h.backends.push((name.to_string(), child, args));
        }
        h.write_config(&h.backend_list(), health);
        h
    }

    fn ip(&self, host: u8) -> String {
        format!("127.0.{}.{host}", self.n)
    }

    fn backend_addr(&self, i: usize) -> String {
        format!("{}:5300", self.ip(10 + i as u8))
    }

    fn vip(&self) -> SocketAddr {
        format!("{}:5353", self.ip(1)).parse().unwrap()
    }

    fn api_addr(&self) -> SocketAddr {
        format!("{}:8053", self.ip(1)).parse().unwrap()
    }

    fn cfg_path(&self) -> PathBuf {
        self.dir.join("dnsrail.toml")
    }

    fn backend_list(&self) -> Vec<(String, String)> {
        (0..self.backends.len())
            .map(|i| (self.backends[i].0.clone(), self.backend_addr(i)))
            .collect()
    }

    fn write_config(&self, backends: &[(String, String)], health: &str) {
        let mut t = format!(
            "[engine]\nio = \"socket\"\nworkers = 1\nstats_interval_s = 0\n\
             [[frontend]]\nlisten = \"{}\"\n\
             [health]\n{health}\n\
             [ctl]\napi_listen = \"{}\"\ncontrol_socket = \"{}\"\nengine_binary = \"{}\"\ntoken = \"t0ken-{}\"\n",
            self.vip(),
            self.api_addr(),
            self.dir.join("engine.sock").display(),
            target_bin("dnsrail").display(),
            self.n,
        );
        for (name, addr) in backends {
            t += &format!("[[backend]]\nname = \"{name}\"\naddress = \"{addr}\"\n");
        }
        std::fs::write(self.cfg_path(), t).unwrap();
    }

    fn spawn_backend(&self, i: usize, args: &[String]) -> Child {
        let c = Command::new(target_bin("dnsrail-bench"))
            .args([
                "backend",
                "--listen",
                &self.backend_addr(i),
                "--threads",
                "1",
                "--duration",
                "120",
            ])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("backend listening", 5, || {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut q = Vec::new();
            dnsrail_bench::msg::query_for(0, 1, &mut q);
            s.send_to(&q, self.backend_addr(i)).unwrap();
            s.recv_from(&mut [0u8; 512]).is_ok()
        });
        c
    }

    fn kill_backend(&mut self, i: usize) {
        if let Some(mut c) = self.backends[i].1.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart_backend(&mut self, i: usize) {
        let args = self.backends[i].2.clone();
        let c = self.spawn_backend(i, &args);
        self.backends[i].1 = Some(c);
    }

    fn start_ctl(&mut self) {
        let c = Command::new(env!("CARGO_BIN_EXE_dnsrailctl"))
            .args(["serve", "-c"])
            .arg(self.cfg_path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.ctl = Some(c);
        wait_until("ctl attached", 15, || {
            self.get("/api/status")
                .map(|v| v["engine"]["attached"] == Value::Bool(true))
                .unwrap_or(false)
        });
        if let Some(p) = self.engine_pid() {
            self.engines.push(p);
        }
    }

    fn kill_ctl(&mut self) {
        if let Some(mut c) = self.ctl.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn engine_pid(&self) -> Option<u32> {
        let mut c = ControlClient::connect(&self.dir.join("engine.sock")).ok()?;
        c.hello().ok().map(|h| h.pid)
    }

    fn http(&self, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
        self.http_body(method, path, token, "")
    }

    fn http_body(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (u16, String) {
        let (head, body) = self.exchange(method, path, token, body);
        (
            head.split_whitespace().nth(1).unwrap().parse().unwrap(),
            body,
        )
    }

    /// One HTTP/1.1 request: (status line and headers, body).
    fn exchange(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (String, String) {
        let mut s = TcpStream::connect_timeout(&self.api_addr(), Duration::from_secs(2)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let n = body.len();
        write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {n}\r\nConnection: close\r\n\r\n{body}").unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        (head.to_string(), body.to_string())
    }

    /// The response head (status line and headers, lower-cased) of a GET.
    fn head(&self, path: &str) -> String {
        self.exchange("GET", path, None, "").0.to_ascii_lowercase()
    }

    /// Runs the CLI against this test's API (and token, when given), with
    /// `stdin` on its standard input.
    fn cli(&self, args: &[&str], token: Option<&str>, stdin: &str) -> std::process::Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dnsrailctl"));
        c.args(args).args(["--api", &self.api_addr().to_string()]);
        if let Some(t) = token {
            c.args(["--token", t]);
        }
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn token(&self) -> String {
        format!("t0ken-{}", self.n)
    }

    fn get(&self, path: &str) -> Option<Value> {
        let mut s =
            TcpStream::connect_timeout(&self.api_addr(), Duration::from_millis(300)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut r = String::new();
        s.read_to_string(&mut r).ok()?;
        serde_json::from_str(r.split_once("\r\n\r\n")?.1).ok()
    }

    fn health(&self, name: &str) -> String {
        self.get("/api/backends")
            .and_then(|v| {
                v.as_array()?
                    .iter()
                    .find(|b| b["name"] == name)
                    .map(|b| b["health"].as_str().unwrap_or("").to_string())
            })
            .unwrap_or_default()
    }

    /// The backends' names, in the API's order.
    fn backend_names(&self) -> Vec<String> {
        self.get("/api/backends")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Backend `name` in the engine's stats report.
    fn engine_backend(&self, name: &str) -> Value {
        let s = self.get("/api/stats").unwrap();
        s["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == name)
            .unwrap()
            .clone()
    }

    fn dig(&self, args: &[&str]) -> String {
        let out = Command::new("dig")
            .arg(format!("@{}", self.vip().ip()))
            .args(["-p", "5353", "+tries=1", "+time=2"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for H {
    fn drop(&mut self) {
        self.kill_ctl();
        if let Some(p) = self.engine_pid() {
            self.engines.push(p);
        }
        for &p in &self.engines {
            // SAFETY: signalling a process this test started (through ctl).
            unsafe { libc::kill(p as i32, libc::SIGKILL) };
        }
        for i in 0..self.backends.len() {
            self.kill_backend(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const FAST_HEALTH: &str =
    "interval_ms = 100\ntimeout_ms = 80\nrise = 2\nfall = 2\nquery_name = \"health.example.\"";

#[test]
fn servfail_and_dead_backends_go_down_nxdomain_stays_up_and_a_revived_one_comes_back() {
    let mut h = H::new(
        1,
        &[
            ("ok", Some(&[])),
            ("servfail", Some(&["--rcode", "SERVFAIL"])),
            ("nxdomain", Some(&["--rcode", "NXDOMAIN"])),
            ("dead", None),
        ],
        FAST_HEALTH,
    );
    h.start_ctl();
    wait_until("servfail and dead down", 5, || {
        h.health("servfail") == "down" && h.health("dead") == "down"
    });
    assert_eq!(h.health("ok"), "up");
    assert_eq!(
        h.health("nxdomain"),
        "up",
        "NXDOMAIN is an answer unless configured"
    );
    // The engine got the verdicts: it sends to neither.
    let stats = h.get("/api/stats").unwrap();
    for b in stats["backends"].as_array().unwrap() {
        let usable = b["usable"].as_bool().unwrap();
        let name = b["name"].as_str().unwrap();
        assert_eq!(usable, name == "ok" || name == "nxdomain", "{name}: {b}");
    }
    // The dead one starts answering: up again after `rise` good probes.
    h.restart_backend(3);
    wait_until("dead back up", 5, || h.health("dead") == "up");
    // Counted in /metrics.
    let (code, text) = h.http("GET", "/metrics", None);
    assert_eq!(code, 200);
    assert!(
        text.contains("dnsrail_backend_health_up{backend=\"servfail\"} 0"),
        "{text}"
    );
    assert!(text.contains("dnsrail_health_checks_total{backend=\"servfail\",result=\"fail\"}"));
}

#[test]
fn a_backend_killed_under_load_is_marked_down_in_time_and_loses_under_one_percent() {
    let health =
        "interval_ms = 50\ntimeout_ms = 40\nrise = 2\nfall = 2\nquery_name = \"health.example.\"";
    let mut h = H::new(2, &[("a", Some(&[])), ("b", Some(&[]))], health);
    h.start_ctl();
    let vip = h.vip();
    // 20 000 qps for 10 s.
    let load = std::thread::spawn(move || {
        let mut spec = LoadSpec::new(vip, 200_000);
        spec.rate = 20_000;
        spec.max_duration = Duration::from_secs(40);
        load::run(&spec).unwrap()
    });
    std::thread::sleep(Duration::from_secs(3));
    h.kill_backend(1);
    let killed = Instant::now();
    wait_until("b down", 5, || h.health("b") == "down");
    let took = killed.elapsed();
    // fall × interval + one interval, plus the failing probe's own timeout
    // (40 ms) and the API poll's granularity (50 ms).
    assert!(
        took <= Duration::from_millis(2 * 50 + 50 + 40 + 50),
        "marked down after {took:?}"
    );
    let r = load.join().unwrap();
    let loss = r.lost as f64 / r.sent as f64;
    assert!(
        loss < 0.01,
        "lost {} of {} ({:.2} %)",
        r.lost,
        r.sent,
        loss * 100.0
    );
    // The socket data plane read ECONNREFUSED for b's address from its
    // sockets' error queues and took it out before the health checks did.
    let (_, text) = h.http("GET", "/metrics", None);
    assert!(
        text.contains(
            "dnsrail_backend_transitions_total{backend=\"b\",to=\"down\",reason=\"icmp\"} 1"
        ),
        "{text}"
    );
    h.restart_backend(1);
    wait_until("b back up", 5, || h.health("b") == "up");
    let (_, text) = h.http("GET", "/metrics", None);
    assert!(
        text.contains(
            "dnsrail_backend_transitions_total{backend=\"b\",to=\"up\",reason=\"health\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("dnsrail_backend_ejected{backend=\"b\"} 0"),
        "{text}"
    );
}

#[test]
fn tcp_dig_pipelined_queries_and_garbage() {
    let mut h = H::new(3, &[("a", Some(&[])), ("b", Some(&[]))], FAST_HEALTH);
    h.start_ctl();
    let out = h.dig(&["+tcp", "www.example.com", "A"]);
    assert!(out.contains("192.0.2.1"), "{out}");
    // 40 queries written at once on one connection, answered in any order.
    let mut s = TcpStream::connect(h.vip()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut all = Vec::new();
    for i in 0..40u16 {
        let mut q = Vec::new();
        dnsrail_bench::msg::query_for(u64::from(i), 0x7000 + i, &mut q);
        all.extend_from_slice(&(q.len() as u16).to_be_bytes());
        all.extend_from_slice(&q);
    }
    s.write_all(&all).unwrap();
    let mut ids = Vec::new();
    for _ in 0..40 {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut a = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut a).unwrap();
        assert!(a[2] & 0x80 != 0, "a response");
        ids.push(u16::from_be_bytes([a[0], a[1]]));
    }
    ids.sort();
    assert_eq!(
        ids,
        (0x7000..0x7000 + 40).collect::<Vec<_>>(),
        "every client ID back once"
    );
    // Garbage: a length that cannot be a DNS message closes the connection.
    let mut g = TcpStream::connect(h.vip()).unwrap();
    g.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    g.write_all(&[0, 3, 1, 2, 3]).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(g.read(&mut b).unwrap_or(0), 0, "closed");
    let (_, text) = h.http("GET", "/metrics", None);
    assert!(
        text.contains("dnsrail_tcp_errors_total{reason=\"bad_length\"} 1"),
        "{text}"
    );
    assert!(text.contains("dnsrail_tcp_answers_total 41"), "{text}");
}

#[test]
fn reload_under_load_loses_nothing_and_a_broken_file_is_refused_with_its_line() {
    let mut h = H::new(
        4,
        &[("a", Some(&[])), ("b", Some(&[])), ("c", Some(&[]))],
        FAST_HEALTH,
    );
    // Start with a and b only.
    let all = h.backend_list();
    h.write_config(&all[..2], FAST_HEALTH);
    h.start_ctl();
    let vip = h.vip();
    let load = std::thread::spawn(move || {
        let mut spec = LoadSpec::new(vip, 60_000);
        spec.rate = 20_000;
        load::run(&spec).unwrap()
    });
    std::thread::sleep(Duration::from_secs(1));
    h.write_config(&[all[0].clone(), all[2].clone()], FAST_HEALTH);
    let (code, body) = h.http("POST", "/api/reload", Some(&h.token()));
    assert_eq!(code, 200, "{body}");
    let r = load.join().unwrap();
    assert_eq!(r.lost, 0, "{}", r.summary());
    assert_eq!(h.backend_names(), ["a", "c"]);
    // A broken file: refused, the error names the file and line, nothing changes.
    let good = std::fs::read_to_string(h.cfg_path()).unwrap();
    std::fs::write(h.cfg_path(), good.replace("name = \"c\"", "name = 42")).unwrap();
    let (code, body) = h.http("POST", "/api/reload", Some(&h.token()));
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("dnsrail.toml:") && body.contains("backend[1].name"),
        "{body}"
    );
    assert_eq!(h.backend_names(), ["a", "c"]);
    assert!(h
        .dig(&["+notcp", "still.example", "A"])
        .contains("192.0.2.1"));
    // The CLI reports the same refusal and fails.
    let out = h.cli(&["reload"], Some(&h.token()), "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("backend[1].name"));
}

#[test]
fn engine_crash_is_restarted_ctl_crash_leaves_udp_flowing_and_a_new_ctl_reattaches() {
    let mut h = H::new(5, &[("a", Some(&[])), ("b", Some(&[]))], FAST_HEALTH);
    h.start_ctl();
    let first = h.engine_pid().unwrap();
    // SAFETY: the engine this test's ctl started.
    unsafe { libc::kill(first as i32, libc::SIGKILL) };
    wait_until("engine restarted", 15, || {
        h.engine_pid().is_some_and(|p| p != first)
            && h.get("/api/status")
                .is_some_and(|v| v["engine"]["restarts"] == 1 && v["engine"]["attached"] == true)
    });
    let second = h.engine_pid().unwrap();
    h.engines.push(second);
    assert!(h
        .dig(&["+notcp", "after-restart.example", "A"])
        .contains("192.0.2.1"));

    // ctl dies: the engine keeps answering UDP.
    h.kill_ctl();
    for i in 0..3 {
        assert!(h
            .dig(&["+notcp", &format!("no-ctl-{i}.example"), "A"])
            .contains("192.0.2.1"));
    }
    let before = ControlClient::connect(&h.dir.join("engine.sock"))
        .unwrap()
        .call(&dnsrail_engine::control::Request::Stats)
        .unwrap()
        .stats
        .unwrap()
        .queries;
    // A new ctl attaches to the same engine; its counters continue.
    h.start_ctl();
    assert_eq!(h.engine_pid(), Some(second), "re-attached, not restarted");
    let s = h.get("/api/stats").unwrap();
    assert!(s["queries"].as_u64().unwrap() >= before, "{s}");
    assert_eq!(
        h.get("/api/status").unwrap()["engine"]["restarts"],
        0,
        "the new ctl restarted nothing"
    );
}

#[test]
fn writes_need_the_token_and_metrics_parse_with_the_reference_parser() {
    let mut h = H::new(6, &[("a", Some(&[])), ("b", Some(&[]))], FAST_HEALTH);
    h.start_ctl();
    assert_eq!(h.http("POST", "/api/backends/b/drain", None).0, 401);
    assert_eq!(
        h.http("POST", "/api/backends/b/drain", Some("wrong-token-x"))
            .0,
        401
    );
    assert_eq!(h.http("POST", "/api/reload", None).0, 401);
    assert_eq!(h.http("POST", "/api/node/drain", None).0, 401);
    // No [announce]: nothing to withdraw, and the node drain says so; the
    // node's health is still shown.
    let (code, body) = h.http("POST", "/api/node/drain", Some(&h.token()));
    assert!(code == 409 && body.contains("[announce]"), "{code} {body}");
    wait_until("node healthy without [announce]", 10, || {
        h.get("/api/node").is_some_and(|v| {
            v["healthy"] == true && v["announce"].is_null() && v["drain"] == "active"
        })
    });
    assert_eq!(
        h.http("POST", "/api/backends/nope/drain", Some(&h.token()))
            .0,
        404
    );
    assert_eq!(
        h.http("POST", "/api/backends/b/weight", Some(&h.token())).0,
        400
    );
    let (code, body) = h.http("POST", "/api/backends/b/drain", Some(&h.token()));
    assert_eq!(code, 200, "{body}");
    // Drained: the engine sends b nothing new.
    let b = h.engine_backend("b");
    assert_eq!(b["drained"], true);
    let sent_before = b["sent"].as_u64().unwrap();
    for i in 0..10 {
        assert!(h
            .dig(&["+notcp", &format!("d{i}.example"), "A"])
            .contains("192.0.2.1"));
    }
    let b = h.engine_backend("b");
    assert_eq!(b["sent"].as_u64().unwrap(), sent_before);
    // The CLI: undrain with the token from the command line.
    let out = h.cli(&["undrain", "b"], Some(&h.token()), "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = h.cli(&["backends"], None, "");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("b ") && l.contains("active")),
        "{table}"
    );

    // `top`: two refreshes, rates from the second.
    let out = h.cli(&["top", "--iterations", "2"], None, "");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && screen.contains("qps in")
            && screen.contains("latency (last second)"),
        "{screen}"
    );

    let (code, text) = h.http("GET", "/metrics", None);
    assert_eq!(code, 200);
    let script = "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\n\
                  fams = {f.name: f for f in p(sys.stdin.read())}\n\
                  need = ['dnsrail_queries', 'dnsrail_drops', 'dnsrail_backend_latency_us', 'dnsrail_engine_up', 'dnsrail_backend_rcode']\n\
                  missing = [n for n in need if n not in fams]\n\
                  assert not missing, missing\n\
                  print(len(fams))\n";
    let mut py = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3-prometheus-client is installed by scripts/setup.sh");
    py.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn passive_health_flags_a_backend_failing_client_queries_and_probes_it_faster() {
    // Probes do not count SERVFAIL here, so only the passive side can see
    // that every client query to "sick" fails.
    let health = "interval_ms = 200\ntimeout_ms = 150\nrise = 2\nfall = 2\nquery_name = \"health.example.\"\nfail_rcodes = []";
    let mut h = H::new(
        7,
        &[
            ("fine", Some(&[])),
            ("sick", Some(&["--rcode", "SERVFAIL"])),
        ],
        health,
    );
    h.start_ctl();
    let vip = h.vip();
    let checks = |h: &H| -> u64 {
        let (_, text) = h.http("GET", "/metrics", None);
        text.lines()
            .find(|l| l.starts_with("dnsrail_health_checks_total{backend=\"sick\",result=\"ok\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    let load = std::thread::spawn(move || {
        let mut spec = LoadSpec::new(vip, 8_000);
        spec.rate = 2_000;
        load::run(&spec).unwrap()
    });
    let sick = |h: &H| {
        h.get("/api/backends").and_then(|v| {
            v.as_array()?
                .iter()
                .find(|b| b["name"] == "sick")
                .map(|b| b["suspect"] == true)
        }) == Some(true)
    };
    wait_until("sick suspect", 10, || sick(&h));
    assert_eq!(
        h.health("sick"),
        "up",
        "passive data alone does not mark down"
    );
    // Probed four times as often while suspect: ~4 per 200 ms interval.
    let c0 = checks(&h);
    std::thread::sleep(Duration::from_millis(1_000));
    let c1 = checks(&h);
    assert!(c1 - c0 >= 12, "{} probes in 1 s while suspect", c1 - c0);
    let (_, text) = h.http("GET", "/metrics", None);
    assert!(
        text.contains("dnsrail_backend_suspect{backend=\"sick\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("dnsrail_backend_suspect{backend=\"fine\"} 0"),
        "{text}"
    );
    load.join().unwrap();
}

#[test]
fn runtime_rules_through_the_api_take_effect_and_a_malformed_one_changes_nothing() {
    let mut h = H::new(8, &[("a", Some(&[]))], FAST_HEALTH);
    h.start_ctl();
    let rule = "[[rule]]\nname = \"sinkhole\"\nmatch = { name = \"bad.example\" }\naction = { spoof = [\"192.0.2.66\"], ttl = 60 }\n";
    assert!(
        h.dig(&["+notcp", "bad.example", "A"]).contains("192.0.2.1"),
        "forwarded before"
    );
    // Without the token: refused.
    let out = h.cli(&["rules", "add", "-"], Some("nope-token"), rule);
    assert!(!out.status.success());
    // Through the CLI with the token: in force within 1 s (here: at once).
    let path = h.dir.join("rule.toml");
    std::fs::write(&path, rule).unwrap();
    let t0 = Instant::now();
    let out = h.cli(
        &["rules", "add", path.to_str().unwrap()],
        Some(&h.token()),
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ans = h.dig(&["+notcp", "bad.example", "A"]);
    assert!(
        ans.contains("192.0.2.66") && !ans.contains("WARNING"),
        "{ans}"
    );
    assert!(t0.elapsed() < Duration::from_secs(1));
    // Listed with its hit.
    let list = h.get("/api/rules").unwrap();
    assert_eq!(list[0]["name"], "sinkhole");
    assert_eq!(list[0]["source"], "runtime");
    assert_eq!(list[0]["hits"], 1);
    // A malformed rule: a clear message, the old set stays.
    let (code, body) = h.http_body(
        "POST",
        "/api/rules",
        Some(&h.token()),
        "[[rule]]\nname = \"x\"\naction = 5\n",
    );
    assert_eq!(code, 400);
    assert!(
        body.contains("rules:3") && body.contains("action"),
        "{body}"
    );
    assert!(h
        .dig(&["+notcp", "bad.example", "A"])
        .contains("192.0.2.66"));
    // The engine restarts: ctl gives it the runtime rules back.
    let pid = h.engine_pid().unwrap();
    // SAFETY: the engine this test's ctl started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    wait_until("engine restarted", 15, || {
        h.engine_pid().is_some_and(|p| p != pid)
            && h.get("/api/status")
                .is_some_and(|v| v["engine"]["attached"] == true)
    });
    h.engines.push(h.engine_pid().unwrap());
    wait_until("rules pushed back", 5, || {
        h.dig(&["+notcp", "bad.example", "A"])
            .contains("192.0.2.66")
    });
    // Deleting it restores forwarding.
    assert_eq!(
        h.http("DELETE", "/api/rules/sinkhole", Some(&h.token())).0,
        200
    );
    assert!(h.dig(&["+notcp", "bad.example", "A"]).contains("192.0.2.1"));
    assert_eq!(
        h.http("DELETE", "/api/rules/sinkhole", Some(&h.token())).0,
        400
    );
}

#[test]
fn truncate_rule_sends_dig_to_tcp_where_it_gets_its_answer() {
    let mut h = H::new(9, &[("a", Some(&[]))], FAST_HEALTH);
    h.start_ctl();
    let rule =
        "[[rule]]\nname = \"tc-all\"\nmatch = { suffix = \"tc.example\" }\naction = \"truncate\"\n";
    assert_eq!(
        h.http_body("POST", "/api/rules", Some(&h.token()), rule).0,
        200
    );
    // dig over UDP gets TC=1, retries over TCP (ctl's TCP/53), gets the answer.
    let out = h.dig(&["www.tc.example", "A"]);
    assert!(out.contains("Truncated, retrying in TCP mode"), "{out}");
    assert!(out.contains("192.0.2.1") && out.contains("(TCP)"), "{out}");
    // With +ignore, dig shows the truncated UDP reply itself.
    let out = h.dig(&["+notcp", "+ignore", "www.tc.example", "A"]);
    assert!(out.contains(" tc") && out.contains("ANSWER: 0"), "{out}");
}

/// Headless Chromium (Debian's `chromium`, installed by scripts/setup.sh),
/// as root: no sandbox, no GPU, and none of the background connections this
/// offline machine would refuse. Bounded by `timeout`.
fn chromium(args: &[&str], profile: &std::path::Path) -> std::process::Output {
    Command::new("timeout")
        .args([
            "60",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
        ])
        .args([
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium is installed by scripts/setup.sh")
}

/// The number in `data-NAME="…"` of the element with `id="ID"` in a DOM dump.
fn data_attr(dom: &str, id: &str, name: &str) -> Option<f64> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let tag_start = dom[..at].rfind('<')?;
    let tag = &dom[tag_start..tag_start + dom[tag_start..].find('>')?];
    let key = format!("data-{name}=\"");
    let v = &tag[tag.find(&key)? + key.len()..];
    v[..v.find('"')?].parse().ok()
}

#[test]
fn dashboard_in_headless_chromium_shows_live_traffic_and_saves_a_screenshot() {
    let mut h = H::new(10, &[("a", Some(&[])), ("b", Some(&[]))], FAST_HEALTH);
    h.start_ctl();
    let rule = "[[rule]]\nname = \"nx-refused\"\nmatch = { suffix = \"nx.example\" }\naction = \"refused\"\n";
    let (code, body) = h.http_body("POST", "/api/rules", Some(&h.token()), rule);
    assert_eq!(code, 200, "{body}");

    // The page's own files: embedded, typed, same-origin only.
    let (code, page) = h.http("GET", "/dashboard/", None);
    assert_eq!(code, 200);
    assert!(page.contains("chart-qps") && page.contains("/dashboard/app.js"));
    assert_eq!(h.http("GET", "/dashboard/app.js", None).0, 200);
    for (path, kind) in [
        ("/dashboard/", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/style.css", "text/css"),
    ] {
        let head = h.head(path);
        assert!(
            head.contains(&format!("content-type: {kind}"))
                && head.contains("content-security-policy: default-src 'self'"),
            "{path}: {head}"
        );
    }
    assert!(h.head("/").contains("location: /dashboard/"));
    assert_eq!(h.http("GET", "/dashboard/nope.js", None).0, 404);

    // A bounded load for the whole time the browser looks (2 000 qps, 30 s at most).
    let vip = h.vip();
    let load = std::thread::spawn(move || {
        let mut spec = LoadSpec::new(vip, 40_000);
        spec.rate = 2_000;
        spec.max_duration = Duration::from_secs(30);
        load::run(&spec).unwrap()
    });
    std::thread::sleep(Duration::from_secs(2));

    let url = format!("http://{}/dashboard/", h.api_addr());
    let profile = h.dir.join("chromium-profile");
    // Virtual time runs the page's 1 s timer several times; fetches hold it
    // until they are answered.
    let out = chromium(
        &["--virtual-time-budget=6000", "--dump-dom", &url],
        &profile,
    );
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && dom.contains("chart-qps"),
        "chromium failed: {}\n{dom}",
        String::from_utf8_lossy(&out.stderr)
    );
    let qin = data_attr(&dom, "qps-in", "value");
    let qout = data_attr(&dom, "qps-out", "value");
    let points = data_attr(&dom, "chart-qps", "points");
    let lat = data_attr(&dom, "chart-latency", "total");
    assert!(
        qin.is_some_and(|v| v > 0.0) && qout.is_some_and(|v| v > 0.0),
        "no live rates: in {qin:?} out {qout:?}\n{dom}"
    );
    assert!(
        points.is_some_and(|v| v >= 2.0),
        "qps chart points {points:?}"
    );
    assert!(
        lat.is_some_and(|v| v > 0.0),
        "latency histogram empty: {lat:?}"
    );
    assert!(
        dom.contains("engine socket"),
        "engine status missing\n{dom}"
    );
    // Both backends listed as up with their share; the rule in the top list.
    let tbody = &dom[dom.find("id=\"backends\"").unwrap()..];
    assert!(
        tbody.matches("class=\"up\"").count() >= 2,
        "backends not shown up\n{tbody}"
    );
    let rules = &dom[dom.find("id=\"rules\"").unwrap()..];
    assert!(rules.contains("nx-refused"), "top rules\n{rules}");
    assert!(!dom.contains("cannot reach the API"), "{dom}");

    // The screenshot, kept beside the test's build output for a look.
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let arg = format!("--screenshot={}", shot.display());
    let out = chromium(
        &[
            "--virtual-time-budget=6000",
            "--window-size=1400,1000",
            &arg,
            &url,
        ],
        &profile,
    );
    let png = std::fs::read(&shot).unwrap_or_default();
    assert!(
        out.status.success() && png.len() > 10_000 && png.starts_with(b"\x89PNG"),
        "no screenshot ({} bytes): {}",
        png.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("dashboard screenshot: {}", shot.display());
    let r = load.join().unwrap();
    assert_eq!(r.lost, 0, "{}", r.summary());
}

/// BIRD's VIP routes, asked with BIRD's own client (`birdc`), from outside
/// ctl; None when BIRD does not answer.
fn bird_routes(sock: &std::path::Path) -> Option<u64> {
    let out = Command::new("birdc")
        .arg("-s")
        .arg(sock)
        .args(["show", "route", "protocol", "dnsrail4", "count"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.contains("routes for"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn start_bird(dir: &std::path::Path) -> Child {
    Command::new("bird")
        .arg("-f")
        .arg("-c")
        .arg(dir.join("bird.conf"))
        .arg("-s")
        .arg(dir.join("bird.ctl"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("bird starts")
}

struct KillOnDrop(Option<Child>);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn announce_follows_node_health_through_a_real_bird_across_bird_and_ctl_restarts() {
    if !dnsrail_bench::netns::is_root() {
        dnsrail_bench::netns::skip("announce needs root (a network namespace of its own)");
        return;
    }
    if Command::new("bird").arg("--version").output().is_err() {
        dnsrail_bench::netns::skip("announce: bird (Debian bird2) is not installed");
        return;
    }
    // A network namespace for this thread alone (unshare applies to the
    // calling thread; the processes it starts inherit it): BIRD refuses
    // routes to loopback addresses, so the VIP is 192.0.2.53 on this
    // namespace's lo, and nothing outside sees it. The namespace goes when
    // its last process does.
    // SAFETY: unshare has no memory-safety preconditions; it changes only
    // this thread's network namespace.
    assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
    for args in [
        &["link", "set", "lo", "up"][..],
        &["addr", "add", "192.0.2.53/32", "dev", "lo"],
    ] {
        assert!(Command::new("ip").args(args).status().unwrap().success());
    }
    let mut h = H::new(11, &[("a", Some(&[])), ("b", Some(&[]))], FAST_HEALTH);
    let (dir, sock, file) = (
        h.dir.clone(),
        h.dir.join("bird.ctl"),
        h.dir.join("vips.conf"),
    );
    let mut cfg = std::fs::read_to_string(h.cfg_path()).unwrap();
    cfg += &format!(
        "[[frontend]]\nlisten = \"192.0.2.53:5353\"\n\
         [announce]\nbird_socket = \"{}\"\ninclude_file = \"{}\"\nmin_backends = 2\ninterval_ms = 50\nrise = 2\ndrain_quiet_ms = 300\n",
        sock.display(),
        file.display()
    );
    std::fs::write(h.cfg_path(), cfg).unwrap();
    std::fs::write(&file, "").unwrap();
    std::fs::write(
        dir.join("bird.conf"),
        format!(
            "router id 192.0.2.1;\nprotocol device {{}}\ninclude \"{}\";\n",
            file.display()
        ),
    )
    .unwrap();
    let mut bird = KillOnDrop(Some(start_bird(&dir)));
    wait_until("bird answers", 10, || {
        bird_routes(&sock) == Some(0) || {
            // The empty file has no protocol yet: "no such protocol" is an
            // answer too.
            Command::new("birdc")
                .arg("-s")
                .arg(&sock)
                .arg("show status")
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("up and running"))
        }
    });

    // Healthy: announced.
    h.start_ctl();
    wait_until("the VIP announced", 15, || bird_routes(&sock) == Some(1));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("route 192.0.2.53/32 unreachable;"), "{text}");
    assert!(
        !text.contains("127.0."),
        "loopback frontends are not announced: {text}"
    );
    wait_until("node healthy in the API", 5, || {
        h.get("/api/node")
            .is_some_and(|v| v["healthy"] == true && v["announce"]["bird"] == "ok")
    });

    // One backend of two down, min_backends = 2: withdrawn.
    h.kill_backend(1);
    wait_until("withdrawn with a backend down", 15, || {
        bird_routes(&sock) == Some(0)
    });
    let v = h.get("/api/node").unwrap();
    assert_eq!(v["healthy"], false, "{v}");
    assert!(
        v["problems"]
            .to_string()
            .contains("pool default: 1 usable backend (min_backends 2)"),
        "{v}"
    );
    h.restart_backend(1);
    wait_until("announced again", 15, || bird_routes(&sock) == Some(1));

    // BIRD restarts: it reads the file, which says what ctl decided.
    drop(bird);
    bird = KillOnDrop(Some(start_bird(&dir)));
    wait_until("a restarted BIRD announces", 10, || {
        bird_routes(&sock) == Some(1)
    });
    // BIRD restarts on a stale file (no routes): ctl reads BIRD back and
    // puts the routes back.
    drop(bird);
    std::fs::write(
        &file,
        "protocol static dnsrail4 { ipv4; }\nprotocol static dnsrail6 { ipv6; }\n",
    )
    .unwrap();
    bird = KillOnDrop(Some(start_bird(&dir)));
    wait_until(
        "ctl corrects a BIRD that holds the wrong routes",
        10,
        || bird_routes(&sock) == Some(1),
    );

    // ctl restarts while BIRD runs: the routes never go away.
    h.kill_ctl();
    assert_eq!(bird_routes(&sock), Some(1), "ctl stopped: routes stay");
    h.start_ctl();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        assert_eq!(
            bird_routes(&sock),
            Some(1),
            "a restarted ctl withdrew a healthy node"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // A TCP/53 client, served once before the drain.
    let mut tcp = TcpStream::connect("192.0.2.53:5353").unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut q = Vec::new();
    dnsrail_bench::msg::query_for(7, 1, &mut q);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    tcp.write_all(&framed).unwrap();
    let mut len = [0u8; 2];
    tcp.read_exact(&mut len).unwrap();
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    tcp.read_exact(&mut answer).unwrap();

    // Drain through the CLI: withdrawn, then "drained".
    let out = h.cli(&["node", "drain", "--timeout", "20"], Some(&h.token()), "");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.trim_end().ends_with("drained"),
        "{said}"
    );
    assert_eq!(bird_routes(&sock), Some(0));
    // The withdrawn node closed the TCP client (FIN: a clean end of
    // stream, not a reset), so that it reconnects through the routers.
    let mut rest = [0u8; 1];
    assert_eq!(tcp.read(&mut rest).unwrap(), 0, "closed cleanly");
    assert!(h
        .http("GET", "/metrics", None)
        .1
        .contains("dnsrail_tcp_errors_total{reason=\"node_withdrawn\"} 1\n"));
    // A drain survives a ctl restart.
    h.kill_ctl();
    h.start_ctl();
    wait_until("drained after a ctl restart", 5, || {
        h.get("/api/node").is_some_and(|v| v["drain"] == "drained")
    });
    assert_eq!(bird_routes(&sock), Some(0));
    let out = h.cli(&["node", "status"], None, "");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("node: unhealthy, drained (drained); withdraw"),
        "{said}"
    );
    // Undrain: announced after rise.
    let out = h.cli(&["node", "undrain"], Some(&h.token()), "");
    assert!(out.status.success(), "{out:?}");
    wait_until("announced after the undrain", 10, || {
        bird_routes(&sock) == Some(1)
    });
    let m = h.http("GET", "/metrics", None).1;
    for want in [
        "dnsrail_node_healthy 1\n",
        "dnsrail_node_drain{state=\"active\"} 1\n",
        "dnsrail_announce_desired_routes 1\n",
    ] {
        assert!(m.contains(want), "{want} missing:\n{m}");
    }
    wait_until("BIRD's routes read back into /metrics", 5, || {
        h.http("GET", "/metrics", None)
            .1
            .contains("dnsrail_announce_routes 1\n")
    });
    drop(bird);
    // BIRD gone: an error the operator sees, not a hang.
    wait_until("BIRD unreachable shown", 10, || {
        h.get("/api/node").is_some_and(|v| {
            v["announce"]["bird"]
                .as_str()
                .is_some_and(|b| b.contains("cannot reach BIRD"))
        })
    });
}

#[test]
fn cache_stats_and_purge_through_the_cli_api_and_metrics() {
    let mut h = H::new(12, &[("a", Some(&[]))], FAST_HEALTH);
    let mut cfg = std::fs::read_to_string(h.cfg_path()).unwrap();
    cfg += "[pool.default]\ncache_entries = 256\n";
    std::fs::write(h.cfg_path(), cfg).unwrap();
    h.start_ctl();
    for _ in 0..3 {
        assert!(h
            .dig(&["+notcp", "www.example.com", "A"])
            .contains("192.0.2.1"));
    }
    let v = h.get("/api/cache").unwrap();
    assert_eq!(v[0]["pool"], "default");
    assert_eq!(v[0]["capacity"], 256);
    assert_eq!(v[0]["entries"], 1);
    assert_eq!(v[0]["hits"], 2, "{v}");
    let out = h.cli(&["cache", "stats"], None, "");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("default"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("default") && l.ends_with("66.7")),
        "hit rate: {text}"
    );
    let (_, m) = h.http("GET", "/metrics", None);
    assert!(
        m.contains("dnsrail_cache_hits_total{pool=\"default\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("dnsrail_cache_entries{pool=\"default\"} 1"),
        "{m}"
    );
    // The dashboard's cache table, as a browser renders it.
    let url = format!("http://{}/dashboard/", h.api_addr());
    let out = chromium(
        &["--virtual-time-budget=3000", "--dump-dom", &url],
        &h.dir.join("chromium-profile"),
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains(r#"data-pool="default" data-hits="2""#) && dom.contains("66.7 %"),
        "the cache table: {dom}"
    );
    // Purge needs the token; a bad name is refused.
    let out = h.cli(
        &["cache", "purge", "www.example.com"],
        Some("nope-token"),
        "",
    );
    assert!(!out.status.success());
    let out = h.cli(&["cache", "purge", "bad..name"], Some(&h.token()), "");
    assert!(!out.status.success());
    let out = h.cli(
        &["cache", "purge", "example.com", "--suffix"],
        Some(&h.token()),
        "",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("purged 1"), "{text}");
    assert_eq!(h.get("/api/cache").unwrap()[0]["entries"], 0);
}
