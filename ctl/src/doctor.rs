//! `dnsrailctl doctor --interface IF`: the host check an operator runs
//! before going live. Each finding says what was seen, how much it matters
//! (ok, note, warn, fail) and the command that fixes it. A `fail` is
//! something that stops the engine; the command then exits non-zero.
//!
//! What it reads comes from the engine's own ethtool and netlink code, so
//! doctor sees the interface the way the engine will. Native XDP and the
//! AF_XDP bind modes are tried for real (the program attached for a moment,
//! a socket bound on queue 0 and closed), unless `--no-attach`.

use std::fmt::Write as _;

use dnsrail_engine::config::Config;
use dnsrail_engine::io::ethtool::{self, Ethtool};
use dnsrail_engine::io::iface::Iface;
use dnsrail_engine::io::xdp::worker::{try_bind, FRAME_ROOM, MAX_MTU};
use dnsrail_engine::io::xdp::{Attached, Program};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Note,
    Warn,
    Fail,
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub level: Level,
    pub detail: String,
    /// The command (or step) that fixes it, where there is one.
    pub fix: Option<String>,
}

fn f(check: &'static str, level: Level, detail: String, fix: Option<String>) -> Finding {
    Finding {
        check,
        level,
        detail,
        fix,
    }
}

/// What doctor needs to know of the configuration: the CPUs the workers
/// run on and how many there will be.
pub struct Plan {
    pub workers: Option<usize>,
    pub cpus: Option<Vec<usize>>,
}

impl Plan {
    pub fn of(cfg: Option<&Config>) -> Plan {
        Plan {
            workers: cfg.map(|c| c.engine.workers).filter(|&w| w > 0),
            cpus: cfg.and_then(|c| c.engine.cpus.clone()),
        }
    }
}

/// Drivers with zero-copy AF_XDP in mainline Linux (see docs/tuning.md).
const ZERO_COPY_DRIVERS: &[&str] = &[
    "i40e",
    "ice",
    "ixgbe",
    "igc",
    "mlx5_core",
    "stmmac",
    "virtio_net",
    "idpf",
];

pub fn run(ifname: &str, plan: &Plan, attach: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    let iface = match Iface::open(ifname) {
        Ok(i) => i,
        Err(e) => {
            out.push(f(
                "interface",
                Level::Fail,
                format!("{e:#}"),
                Some("ip link show".into()),
            ));
            return out;
        }
    };
    let et = Ethtool::open().ok();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());

    // Driver.
    let driver = et.as_ref().and_then(|e| e.driver(ifname).ok());
    match &driver {
        Some(d) => {
            let zc = ZERO_COPY_DRIVERS.contains(&d.name.as_str());
            let detail = format!(
                "{} {} (bus {}): {}",
                d.name,
                d.version,
                if d.bus.is_empty() { "none" } else { &d.bus },
                if zc {
                    "a driver with zero-copy AF_XDP support"
                } else if d.name == "veth" {
                    "veth: native XDP in copy mode only (no zero-copy)"
                } else {
                    "not a known zero-copy AF_XDP driver: expect copy mode"
                }
            );
            let level = if zc { Level::Ok } else { Level::Note };
            out.push(f("driver", level, detail, None));
        }
        None => out.push(f(
            "driver",
            Level::Note,
            "the driver does not answer ETHTOOL_GDRVINFO".into(),
            None,
        )),
    }

    // XDP and AF_XDP, tried for real.
    if attach {
        out.extend(try_xdp(&iface));
    } else {
        out.push(f(
            "xdp",
            Level::Note,
            "not tried (--no-attach)".into(),
            None,
        ));
    }

    // Channels against CPUs and the planned workers.
    let active = iface.rx_queues as usize;
    let workers = plan.workers.unwrap_or(active);
    let detail = format!(
        "{active} active receive queue(s) of {} allocated (from {}); {cpus} CPU(s); \
         the engine runs {workers} worker(s)",
        iface.rx_allocated, iface.rx_queues_from
    );
    if workers > active {
        out.push(f(
            "channels",
            Level::Fail,
            detail + ": more workers than active queues, the engine refuses to start",
            Some(iface.set_queues_command(workers as u32)),
        ));
    } else if active < cpus
        && iface
            .channels
            .is_some_and(|c| c.max_rx + c.max_combined > 1)
    {
        out.push(f(
            "channels",
            Level::Warn,
            detail + ": fewer active queues than CPUs leaves CPUs without a worker",
            Some(iface.set_queues_command(cpus as u32)),
        ));
    } else if active > cpus {
        out.push(f(
            "channels",
            Level::Warn,
            detail + ": more queues than CPUs, so workers share CPUs",
            Some(iface.set_queues_command(cpus as u32)),
        ));
    } else {
        out.push(f("channels", Level::Ok, detail, None));
    }

    // RSS hash fields: the ports must be in the hash.
    for (flow, name, arg) in [
        (ethtool::UDP_V4_FLOW, "rss udp4", "udp4"),
        (ethtool::UDP_V6_FLOW, "rss udp6", "udp6"),
    ] {
        let fields = et.as_ref().map(|e| e.rss_fields(ifname, flow));
        let fix = Some(format!("ethtool -N {ifname} rx-flow-hash {arg} sdfn"));
        out.push(match fields {
            Some(Ok(bits)) => {
                let ports = ethtool::RXH_L4_B_0_1 | ethtool::RXH_L4_B_2_3;
                let shown = rss_fields_text(bits);
                if bits & ports == ports {
                    f(name, Level::Ok, format!("hashes {shown}"), None)
                } else if active <= 1 {
                    f(
                        name,
                        Level::Note,
                        format!("hashes {shown} (one queue: no matter)"),
                        fix,
                    )
                } else {
                    f(
                        name,
                        Level::Warn,
                        format!(
                            "hashes {shown}, not the UDP ports: every query from one resolver \
                             lands on one queue"
                        ),
                        fix,
                    )
                }
            }
            _ => f(
                name,
                Level::Note,
                "the driver does not report its RSS hash fields (virtual devices do not hash)"
                    .into(),
                None,
            ),
        });
    }

    // IRQ affinity of the device's queues against the workers' CPUs.
    out.push(irq_finding(ifname, workers, plan));

    // MTU against the frame.
    if iface.mtu > MAX_MTU {
        out.push(f(
            "mtu",
            Level::Fail,
            format!(
                "MTU {} is above the {MAX_MTU} bytes an engine frame holds ({FRAME_ROOM} usable \
                 per UMEM frame, less the Ethernet header)",
                iface.mtu
            ),
            Some(format!("ip link set {ifname} mtu 1500")),
        ));
    } else {
        out.push(f(
            "mtu",
            Level::Ok,
            format!("MTU {} fits a frame (at most {MAX_MTU})", iface.mtu),
            None,
        ));
    }

    // Offloads that break XDP.
    match et.as_ref().map(|e| e.features(ifname)) {
        Some(Ok(on)) => {
            let bad: Vec<&str> = ["rx-lro", "rx-gro-hw"]
                .into_iter()
                .filter(|b| on.iter().any(|o| o == b))
                .collect();
            if bad.is_empty() {
                out.push(f(
                    "offloads",
                    Level::Ok,
                    "LRO and hardware GRO off".into(),
                    None,
                ));
            } else {
                out.push(f(
                    "offloads",
                    Level::Warn,
                    format!(
                        "{} on: drivers refuse native XDP, or merge datagrams the engine then \
                         cannot parse",
                        bad.join(", ")
                    ),
                    Some(format!("ethtool -K {ifname} lro off rx-gro-hw off")),
                ));
            }
        }
        _ => out.push(f(
            "offloads",
            Level::Note,
            "the driver does not report its features".into(),
            None,
        )),
    }

    // Rings.
    match et.as_ref().map(|e| e.rings(ifname)) {
        Some(Ok(r)) if r.rx_max > 0 => {
            let detail = format!(
                "RX ring {} of at most {}, TX ring {} of at most {}",
                r.rx, r.rx_max, r.tx, r.tx_max
            );
            if r.rx < 1024.min(r.rx_max) {
                out.push(f(
                    "rings",
                    Level::Warn,
                    detail + ": a short RX ring drops bursts while a worker is descheduled",
                    Some(format!("ethtool -G {ifname} rx {}", 4096.min(r.rx_max))),
                ));
            } else {
                out.push(f("rings", Level::Ok, detail, None));
            }
        }
        _ => out.push(f(
            "rings",
            Level::Note,
            "the driver does not report ring sizes".into(),
            None,
        )),
    }

    // bpffs.
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("bpf"))
    {
        out.push(f("bpffs", Level::Ok, "mounted".into(), None));
    } else {
        out.push(f(
            "bpffs",
            Level::Note,
            "not mounted: libxdp works in single-program mode, which is all dnsrail needs \
             (it loads its own program)"
                .into(),
            Some("mount -t bpf bpf /sys/fs/bpf".into()),
        ));
    }
    out
}

fn try_xdp(iface: &Iface) -> Vec<Finding> {
    let mut out = Vec::new();
    let native = Program::load(iface.index, dnsrail_engine::config::XdpAttach::Native, 0);
    let program = match native {
        Ok(p) => {
            out.push(f(
                "xdp native",
                Level::Ok,
                "the program attaches in native (driver) mode".into(),
                None,
            ));
            Some(p)
        }
        Err(ne) => {
            let ne = format!("{ne:#}");
            if ne.contains("busy") || ne.contains("EBUSY") || ne.contains("exists") {
                out.push(f(
                    "xdp native",
                    Level::Warn,
                    format!(
                        "an XDP program is already attached ({ne}); is dnsrail running? \
                         Nothing more was tried"
                    ),
                    Some(format!("ip link show dev {}", iface.name)),
                ));
                return out;
            }
            // veth refuses native XDP while its peer has more TX queues
            // than it has RX queues (a channel change on one side only).
            let (why, fix) = if ne.contains("os error 28") {
                (
                    " (veth: the peer sends on more queues than this side receives on)",
                    format!(
                        "set the same channels on both ends of the pair: ethtool -L {} rx N tx N,                          and on the peer",
                        iface.name
                    ),
                )
            } else {
                (
                    "",
                    "use a driver with native XDP (docs/tuning.md)".to_string(),
                )
            };
            match Program::load(iface.index, dnsrail_engine::config::XdpAttach::Generic, 0) {
                Ok(p) => {
                    out.push(f(
                        "xdp native",
                        Level::Warn,
                        format!(
                            "native mode refused ({ne}){why}; generic (skb) mode works, slowly"
                        ),
                        Some(fix),
                    ));
                    Some(p)
                }
                Err(ge) => {
                    out.push(f(
                        "xdp native",
                        Level::Fail,
                        format!("the program attaches in no mode: native: {ne}; generic: {ge:#}"),
                        Some("run as root on Linux 5.10 or newer".into()),
                    ));
                    None
                }
            }
        }
    };
    if program
        .as_ref()
        .is_some_and(|p| p.attached == Attached::Generic)
    {
        // A socket on generic XDP is copy mode; try only that.
        out.push(bind_finding(&iface.name, false));
    } else if program.is_some() {
        let zc = try_bind(&iface.name, 0, true);
        match zc {
            Ok(()) => out.push(f(
                "af_xdp",
                Level::Ok,
                "zero-copy bind on queue 0 works".into(),
                None,
            )),
            Err(e) => {
                let copy = bind_finding(&iface.name, false);
                let level = if copy.level == Level::Ok {
                    Level::Note
                } else {
                    Level::Fail
                };
                out.push(f(
                    "af_xdp",
                    level,
                    format!("zero-copy: {e}; copy mode: {}", copy.detail),
                    copy.fix,
                ));
            }
        }
    }
    drop(program); // detaches
    out
}

fn bind_finding(ifname: &str, zerocopy: bool) -> Finding {
    match try_bind(ifname, 0, zerocopy) {
        Ok(()) => f(
            "af_xdp",
            Level::Ok,
            "copy-mode bind on queue 0 works".into(),
            None,
        ),
        Err(e) => f(
            "af_xdp",
            Level::Fail,
            format!("cannot bind on queue 0: {e}"),
            None,
        ),
    }
}

fn rss_fields_text(bits: u64) -> String {
    let names = [
        (ethtool::RXH_IP_SRC, "src ip"),
        (ethtool::RXH_IP_DST, "dst ip"),
        (ethtool::RXH_L4_B_0_1, "src port"),
        (ethtool::RXH_L4_B_2_3, "dst port"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if v.is_empty() {
        "nothing".into()
    } else {
        v.join(", ")
    }
}

/// The device's interrupts (MSI vectors of a PCI NIC) and the CPUs each may
/// run on, against the CPUs the workers are pinned to. A queue's interrupt
/// belongs on its worker's CPU (or its sibling): elsewhere every wake-up
/// crosses CPUs.
fn irq_finding(ifname: &str, workers: usize, plan: &Plan) -> Finding {
    let dir = format!("/sys/class/net/{ifname}/device/msi_irqs");
    let irqs: Vec<u32> = match std::fs::read_dir(&dir) {
        Ok(rd) => {
            let mut v: Vec<u32> = rd
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                .collect();
            v.sort_unstable();
            v
        }
        Err(_) => {
            return f(
                "irq affinity",
                Level::Note,
                "no per-queue interrupts (a virtual device, or not a PCI NIC)".into(),
                None,
            )
        }
    };
    let worker_cpus: Vec<usize> = match &plan.cpus {
        Some(c) => c.iter().copied().take(workers).collect(),
        None => (0..workers).collect(),
    };
    let mut text = String::new();
    let mut stray = Vec::new();
    for irq in &irqs {
        let list = std::fs::read_to_string(format!("/proc/irq/{irq}/smp_affinity_list"))
            .unwrap_or_default();
        let list = list.trim().to_string();
        let _ = write!(text, "{irq}→{list} ");
        let cpus = parse_cpu_list(&list);
        if !cpus.is_empty() && !cpus.iter().all(|c| worker_cpus.contains(c)) {
            stray.push(*irq);
        }
    }
    if stray.is_empty() {
        f(
            "irq affinity",
            Level::Ok,
            format!("IRQ→CPUs: {}", text.trim()),
            None,
        )
    } else {
        f(
            "irq affinity",
            Level::Warn,
            format!(
                "IRQ→CPUs: {}; IRQs {stray:?} may run off the workers' CPUs {worker_cpus:?}",
                text.trim()
            ),
            Some(
                "stop irqbalance and pin queue N's IRQ to worker N's CPU: \
                 echo CPU > /proc/irq/IRQ/smp_affinity_list"
                    .into(),
            ),
        )
    }
}

/// "0-3,8,10-11" → [0, 1, 2, 3, 8, 10, 11].
fn parse_cpu_list(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    out.extend(a..=b.min(a + 4096));
                }
            }
            None => out.extend(part.parse::<usize>().ok()),
        }
    }
    out
}

/// The findings as an operator reads them.
pub fn render(ifname: &str, findings: &[Finding]) -> String {
    let mut s = format!("dnsrailctl doctor: {ifname}\n");
    for x in findings {
        let tag = match x.level {
            Level::Ok => "ok  ",
            Level::Note => "note",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        let _ = writeln!(s, "[{tag}] {:<13} {}", x.check, x.detail);
        if let Some(fix) = &x.fix {
            if x.level != Level::Ok {
                let _ = writeln!(s, "       {:<13} fix: {fix}", "");
            }
        }
    }
    let worst = findings.iter().map(|x| x.level).max().unwrap_or(Level::Ok);
    let _ = writeln!(
        s,
        "{}",
        match worst {
            Level::Fail => "result: FAIL: the engine would not start on this interface",
            Level::Warn => "result: usable, with warnings",
            _ => "result: ok",
        }
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,8,10-11"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list(""), Vec::<usize>::new());
        assert_eq!(parse_cpu_list("x,2"), vec![2]);
    }

    #[test]
    fn a_missing_interface_fails_and_rendering_says_so() {
        let fs = run("drnosuch0", &Plan::of(None), false);
        assert_eq!(fs.len(), 1);
        assert_eq!(fs[0].level, Level::Fail);
        let r = render("drnosuch0", &fs);
        assert!(r.contains("[FAIL] interface"), "{r}");
        assert!(r.contains("result: FAIL"), "{r}");
    }

    #[test]
    fn rss_field_names() {
        assert_eq!(rss_fields_text(0), "nothing");
        assert_eq!(
            rss_fields_text(ethtool::RXH_IP_SRC | ethtool::RXH_IP_DST),
            "src ip, dst ip"
        );
    }
}
