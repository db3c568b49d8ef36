//! The fleet scenario of `scripts/fleet-demo.sh`, as a test: two balancers
//! (dnsrailctl + engine + BIRD each) behind a router running BIRD with ECMP,
//! drained, undrained and killed under load. The script owns the scenario
//! and its bounds (it exits non-zero when one is broken); this test runs it
//! with the binaries this build made and checks its summary line. Without
//! root it says SKIPPED and passes.

use std::process::Command;

/// `fleet: drain lost D of N, kill lost K of M, withdrawn after X ms`.
fn parse(line: &str) -> Option<[u64; 5]> {
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .filter_map(|t| t.parse().ok())
        .collect();
    nums.try_into().ok()
}

#[test]
fn the_summary_line_parses() {
    assert_eq!(
        parse("fleet: drain lost 0 of 24000, kill lost 11 of 24000, withdrawn after 20 ms"),
        Some([0, 24000, 11, 24000, 20])
    );
    assert_eq!(parse("fleet: drain lost 0 of 24000"), None);
}

/// One fleet at a time: each runs two engines, three BIRDs and a load on
/// the machine's two CPUs, and its bounds are about loss and timing.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs the script (tuned veths, or `plain` ones as a container set-up
/// has them) and checks its summary line.
fn fleet(prefix: &str, plain: bool) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !dnsrail_bench::netns::is_root() {
        dnsrail_bench::netns::skip("fleet needs root (namespaces, XDP, BIRD)");
        return;
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let bins = std::path::Path::new(root).join("target/release");
    for b in ["dnsrail", "dnsrailctl", "dnsrail-bench"] {
        assert!(
            bins.join(b).exists(),
            "{b} missing: cargo build --release --workspace"
        );
    }
    let mut cmd = Command::new("timeout");
    cmd.args(["600", "scripts/fleet-demo.sh"])
        .current_dir(root)
        .env("FLEET_NO_BUILD", "1")
        .env("FLEET_PREFIX", prefix)
        .env("FLEET_SECONDS", "5");
    if plain {
        cmd.env("FLEET_PLAIN", "1");
    }
    let out = cmd.output().expect("scripts/fleet-demo.sh runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "fleet-demo failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("fleet: "))
        .unwrap_or_else(|| panic!("no summary line:\n{stdout}"));
    let [d, n, k, m, x] = parse(line).unwrap_or_else(|| panic!("bad summary: {line}"));
    // The script's own bounds, checked again from its figures.
    assert_eq!(d, 0, "{line}");
    assert!(n > 0 && m > 0, "{line}");
    assert!(x <= 1000, "{line}");
    assert!(k < m / 10, "{line}");
}

#[test]
fn drain_undrain_and_kill_in_a_bird_ecmp_fleet() {
    fleet("drft", false);
}

/// The same on veths as a user's containers have them: the kernel's queue
/// count and partial checksums from TX offload.
#[test]
fn the_same_fleet_on_plain_veths() {
    fleet("drfp", true);
}
