//! The `dnsrail` binary: exit codes, config errors that name file, line and
//! key, and SIGHUP reload that keeps the running config when the file is bad.

use std::io::Read;
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dnsrail");

fn tmp(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dnsrail-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn bad_config_names_file_line_and_key_and_exits_2() {
    let p = tmp("bad.toml", "[[frontend]]\nlisten = \"127.0.0.1:5300\"\n[[backend]]\nname = \"a\"\naddress = \"127.0.0.1\"\nweight = -1\n");
    let out = Command::new(BIN).arg("-c").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:6: key `backend[0].weight`", p.display())),
        "{err}"
    );

    let out = Command::new(BIN)
        .arg("-c")
        .arg("/nonexistent/dnsrail.toml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));

    // A rule that does not compile: the file parses (the engine compiles
    // rules for its workers), and both --check and a start refuse it with
    // exit status 2 and the rule's line and key.
    let p = tmp("badrule.toml", "[[frontend]]\nlisten = \"127.0.0.1:0\"\n[[backend]]\nname = \"a\"\naddress = \"127.0.0.1\"\n[[rule]]\nname = \"r\"\nmatch = { regex = \"(\" }\naction = \"drop\"\n");
    for args in [&["--check"][..], &[]] {
        let out = Command::new(BIN)
            .arg("-c")
            .arg(&p)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("{}:7: key `rule[0].match.regex`", p.display())),
            "{err}"
        );
    }
}

#[test]
fn check_flag_and_xdp_on_a_missing_interface() {
    let good = "[[frontend]]\nlisten = \"127.0.0.1:0\"\n[[backend]]\nname = \"a\"\naddress = \"127.0.0.1\"\n";
    let p = tmp("good.toml", good);
    let out = Command::new(BIN)
        .arg("-c")
        .arg(&p)
        .arg("--check")
        .output()
        .unwrap();
    assert!(out.status.success());
    let p = tmp(
        "xdp.toml",
        &format!("[engine]\nio = \"xdp\"\ninterface = \"drnosuch0\"\n{good}"),
    );
    // io = "xdp" does not fall back: a clear error and exit status 1.
    let out = Command::new(BIN).arg("-c").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no interface named \"drnosuch0\""), "{err}");
}

/// Answers every query with its own bytes, QR set and the given last octet
/// appended as a marker, so the test can tell which backend answered.
fn responder(marker: u8) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let addr = s.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                let mut a = buf[..n].to_vec();
                a[2] |= 0x80;
                a.push(marker);
                let _ = s.send_to(&a, from);
            }
        }
    });
    (addr, h)
}

fn ask(vip: std::net::SocketAddr) -> Option<u8> {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let q = [
        0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'x', 0, 0, 1, 0, 1,
    ];
    c.send_to(&q, vip).unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = c.recv_from(&mut buf).ok()?;
    Some(buf[n - 1])
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sighup_reload_keeps_running_config_on_a_bad_file() {
    let (b1, _h1) = responder(1);
    let (b2, _h2) = responder(2);
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let vip: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = |b: std::net::SocketAddr| {
        format!("[engine]\nworkers = 1\nstats_interval_s = 0\n[[frontend]]\nlisten = \"{vip}\"\n[[backend]]\nname = \"r\"\naddress = \"{b}\"\n")
    };
    let p = tmp("reload.toml", &cfg(b1));
    let mut child = Kill(
        Command::new(BIN)
            .arg("-c")
            .arg(&p)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id() as libc::pid_t;
    // The log, read as it comes: the good file must not be written before
    // the engine has read the bad one (two SIGHUPs the main loop sees as
    // one would skip the refusal on a busy machine).
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let (log, mut err) = (log.clone(), child.0.stderr.take().unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                log.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let logged = |what: &str| {
        let t0 = Instant::now();
        while !log.lock().unwrap().contains(what) {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "never logged {what:?}: {}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let t0 = Instant::now();
    while ask(vip) != Some(1) {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "engine never answered"
        );
    }
    std::fs::write(&p, "[[frontend]]\nlisten = 5\n").unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    logged("reload refused");
    assert_eq!(ask(vip), Some(1), "still serving with the old config");
    std::fs::write(&p, cfg(b2)).unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let t0 = Instant::now();
    while ask(vip) != Some(2) {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "reload never took effect"
        );
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = child.0.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM");
    reader.join().unwrap();
    let log = log.lock().unwrap().clone();
    assert!(log.contains("reload refused"), "{log}");
    assert!(
        log.contains("reload.toml:2"),
        "the error names the line: {log}"
    );
    assert!(log.contains("reloaded"), "{log}");
}
