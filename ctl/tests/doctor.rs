//! `dnsrailctl doctor` on veths, for what a veth can show: the driver,
//! native XDP and a copy-mode bind tried for real, channels, the MTU limit,
//! a one-sided channel change that makes veth refuse native XDP, and the
//! exit status. Namespaces drd*; torn down on drop, also when a test fails.
//! Without root the tests say SKIPPED and pass.

use std::process::{Command, Output};

struct Ns(&'static str);

impl Ns {
    fn new(name: &'static str) -> Option<Ns> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            dnsrail_bench::netns::skip(&format!("{name}: doctor's XDP checks need root"));
            return None;
        }
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(std::process::Stdio::null())
            .status();
        assert!(Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .unwrap()
            .success());
        Some(Ns(name))
    }

    fn sh(&self, cmd: &str) -> Output {
        Command::new("ip")
            .args(["netns", "exec", self.0, "sh", "-c", cmd])
            .output()
            .unwrap()
    }

    fn ok(&self, cmd: &str) {
        let o = self.sh(cmd);
        assert!(
            o.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    fn doctor(&self, args: &str) -> (i32, String) {
        let o = self.sh(&format!(
            "{} doctor {args}",
            env!("CARGO_BIN_EXE_dnsrailctl")
        ));
        let text =
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        (o.status.code().unwrap_or(-1), text)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", self.0]).status();
    }
}

#[test]
fn doctor_on_a_plain_veth_and_what_it_fails() {
    let Some(ns) = Ns::new("drd1") else {
        return;
    };
    ns.ok("ip link add name v0 type veth peer name v1 && ip link set v0 up && ip link set v1 up");
    let (rc, out) = ns.doctor("-i v0");
    eprintln!("{out}");
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("veth"), "{out}");
    assert!(out.contains("[ok  ] xdp native"), "{out}");
    assert!(out.contains("copy-mode bind on queue 0 works"), "{out}");
    assert!(out.contains("1 active receive queue(s) of"), "{out}");
    assert!(out.contains("[ok  ] mtu"), "{out}");
    assert!(out.contains("result:"), "{out}");

    // JSON for scripts.
    let (_, json) = ns.doctor("-i v0 --json --no-attach");
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    let checks: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    for c in [
        "driver",
        "xdp",
        "channels",
        "rss udp4",
        "irq affinity",
        "mtu",
        "offloads",
        "rings",
        "bpffs",
    ] {
        assert!(checks.contains(&c), "{c} missing: {checks:?}");
    }

    // Too large an MTU stops the engine: a failure and exit status 1.
    ns.ok("ip link set v0 mtu 9000");
    let (rc, out) = ns.doctor("-i v0 --no-attach");
    assert_eq!(rc, 1, "{out}");
    assert!(
        out.contains("[FAIL] mtu") && out.contains("ip link set v0 mtu 1500"),
        "{out}"
    );

    // More workers configured than active queues.
    ns.ok("ip link set v0 mtu 1500");
    let cfg = std::env::temp_dir().join("drd1-doctor.toml");
    std::fs::write(
        &cfg,
        "[engine]\nworkers = 2\n[[frontend]]\nlisten = \"192.0.2.53:53\"\n\
         [[backend]]\nname = \"a\"\naddress = \"192.0.2.1\"\n",
    )
    .unwrap();
    let (rc, out) = ns.doctor(&format!("-i v0 --no-attach -c {}", cfg.display()));
    assert_eq!(rc, 1, "{out}");
    assert!(
        out.contains("[FAIL] channels") && out.contains("ethtool -L v0 rx 2 tx 2"),
        "{out}"
    );
    let _ = std::fs::remove_file(&cfg);

    // Channels changed on one end only: veth refuses native XDP, doctor
    // says why and falls back to generic.
    ns.ok(
        "ip link add name v2 numtxqueues 4 numrxqueues 4 type veth peer name v3 \
         numtxqueues 4 numrxqueues 4 && ethtool -L v2 rx 2 tx 2 && ip link set v2 up && ip link set v3 up",
    );
    let (rc, out) = ns.doctor("-i v2");
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("[WARN] xdp native") && out.contains("on the peer"),
        "{out}"
    );
    assert!(
        out.contains("2 active receive queue(s) of 4 allocated"),
        "{out}"
    );

    // A missing interface.
    let (rc, out) = ns.doctor("-i drnosuch0");
    assert_eq!(rc, 1, "{out}");
}
