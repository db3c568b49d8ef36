//! The ethtool questions the engine and `dnsrailctl doctor` ask a NIC
//! (SIOCETHTOOL ioctls): active channels, ring sizes, driver, the RSS hash
//! fields and the offload features that matter to XDP. Each answer is
//! `Err(Unsupported)` where the driver does not implement the request: veth
//! and most virtual devices answer only some of them.
//!
//! The ioctl goes through a datagram socket of the calling thread's network
//! namespace, so it sees the same interfaces the engine attaches to (sysfs
//! shows the namespace it was mounted in, which is not always ours).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GRINGPARAM: u32 = 0x10;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GRXFH: u32 = 0x29;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

/// Flow types of ETHTOOL_GRXFH.
pub const UDP_V4_FLOW: u32 = 0x02;
pub const UDP_V6_FLOW: u32 = 0x06;
/// Hash field bits of ETHTOOL_GRXFH.
pub const RXH_IP_SRC: u64 = 1 << 4;
pub const RXH_IP_DST: u64 = 1 << 5;
pub const RXH_L4_B_0_1: u64 = 1 << 6;
pub const RXH_L4_B_2_3: u64 = 1 << 7;

/// `struct ifreq` with the `ifr_data` member of its union.
#[repr(C)]
struct IfreqData {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// `struct ethtool_channels`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Channels {
    cmd: u32,
    pub max_rx: u32,
    pub max_tx: u32,
    pub max_other: u32,
    pub max_combined: u32,
    pub rx: u32,
    pub tx: u32,
    pub other: u32,
    pub combined: u32,
}

impl Channels {
    /// Receive queues in use: combined channels plus RX-only ones.
    pub fn active_rx(&self) -> u32 {
        self.combined + self.rx
    }

    /// The `ethtool -L` command that sets `n` receive queues on `ifname`, in
    /// the form this driver takes (combined channels where it has them).
    pub fn set_command(&self, ifname: &str, n: u32) -> String {
        if self.max_combined > 0 {
            format!("ethtool -L {ifname} combined {n}")
        } else {
            format!("ethtool -L {ifname} rx {n} tx {n}")
        }
    }
}

/// `struct ethtool_ringparam`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rings {
    cmd: u32,
    pub rx_max: u32,
    pub rx_mini_max: u32,
    pub rx_jumbo_max: u32,
    pub tx_max: u32,
    pub rx: u32,
    pub rx_mini: u32,
    pub rx_jumbo: u32,
    pub tx: u32,
}

/// `struct ethtool_drvinfo`.
#[repr(C)]
struct DrvInfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// The driver as ETHTOOL_GDRVINFO names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Driver {
    pub name: String,
    pub version: String,
    pub bus: String,
}

/// The original `struct ethtool_rxnfc` of ETHTOOL_GRXFH: the kernel still
/// copies only these fields for that request.
#[repr(C)]
struct RxFh {
    cmd: u32,
    flow_type: u32,
    data: u64,
}

/// A SIOCETHTOOL channel to the interfaces of this thread's namespace.
pub struct Ethtool {
    fd: OwnedFd,
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

impl Ethtool {
    pub fn open() -> io::Result<Ethtool> {
        // SAFETY: plain socket(2); the descriptor is owned below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Ethtool { fd })
    }

    /// One request: `cmd` points at a struct whose first field is the
    /// command; the kernel reads and writes it in place.
    fn ask<T>(&self, ifname: &str, cmd: &mut T) -> io::Result<()> {
        self.ask_raw(ifname, (cmd as *mut T).cast())
    }

    /// As [`Ethtool::ask`] for a request of variable length: `data` must
    /// point at a buffer as large as its header announces.
    fn ask_raw(&self, ifname: &str, data: *mut libc::c_void) -> io::Result<()> {
        let mut ifr = IfreqData {
            name: [0; libc::IFNAMSIZ],
            data,
            _pad: [0; 16],
        };
        let n = ifname.as_bytes();
        if n.is_empty() || n.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad interface name {ifname:?}"),
            ));
        }
        ifr.name[..n.len()].copy_from_slice(n);
        // SAFETY: ifr is a valid ifreq whose data points at a struct of the
        // layout the command expects, alive for the call.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), SIOCETHTOOL as _, &mut ifr) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Active and maximum channels (`ethtool -l`).
    pub fn channels(&self, ifname: &str) -> io::Result<Channels> {
        let mut c = Channels {
            cmd: ETHTOOL_GCHANNELS,
            ..Channels::default()
        };
        self.ask(ifname, &mut c)?;
        Ok(c)
    }

    /// Ring sizes (`ethtool -g`).
    pub fn rings(&self, ifname: &str) -> io::Result<Rings> {
        let mut r = Rings {
            cmd: ETHTOOL_GRINGPARAM,
            ..Rings::default()
        };
        self.ask(ifname, &mut r)?;
        Ok(r)
    }

    /// The driver (`ethtool -i`).
    pub fn driver(&self, ifname: &str) -> io::Result<Driver> {
        // SAFETY: all-zero is a valid DrvInfo (integers and byte arrays).
        let mut d: DrvInfo = unsafe { std::mem::zeroed() };
        d.cmd = ETHTOOL_GDRVINFO;
        self.ask(ifname, &mut d)?;
        Ok(Driver {
            name: cstr(&d.driver),
            version: cstr(&d.version),
            bus: cstr(&d.bus_info),
        })
    }

    /// The fields RSS hashes for `flow` (`ethtool -n IF rx-flow-hash`):
    /// `RXH_*` bits.
    pub fn rss_fields(&self, ifname: &str, flow: u32) -> io::Result<u64> {
        let mut r = RxFh {
            cmd: ETHTOOL_GRXFH,
            flow_type: flow,
            data: 0,
        };
        self.ask(ifname, &mut r)?;
        Ok(r.data)
    }

    /// Active offload features by name (`ethtool -k`, the ones that are on).
    pub fn features(&self, ifname: &str) -> io::Result<Vec<String>> {
        // ethtool_sset_info: cmd, reserved, sset_mask (u64), data[1].
        let mut info: [u32; 5] = [ETHTOOL_GSSET_INFO, 0, 0, 0, 0];
        let mask = (1u64 << ETH_SS_FEATURES).to_ne_bytes();
        info[2] = u32::from_ne_bytes(mask[..4].try_into().unwrap());
        info[3] = u32::from_ne_bytes(mask[4..].try_into().unwrap());
        self.ask(ifname, &mut info)?;
        let count = info[4] as usize;
        if count == 0 || count > 4096 {
            return Ok(Vec::new());
        }
        // ethtool_gstrings: cmd, string_set, len, then len × 32 bytes.
        let mut strings = vec![0u8; 12 + count * ETH_GSTRING_LEN];
        strings[..4].copy_from_slice(&ETHTOOL_GSTRINGS.to_ne_bytes());
        strings[4..8].copy_from_slice(&ETH_SS_FEATURES.to_ne_bytes());
        strings[8..12].copy_from_slice(&(count as u32).to_ne_bytes());
        self.ask_raw(ifname, strings.as_mut_ptr().cast())?;
        // ethtool_gfeatures: cmd, size, then size × {available, requested,
        // active, never_changed}.
        let blocks = count.div_ceil(32);
        let mut feats = vec![0u32; 2 + blocks * 4];
        feats[0] = ETHTOOL_GFEATURES;
        feats[1] = blocks as u32;
        self.ask_raw(ifname, feats.as_mut_ptr().cast())?;
        let mut on = Vec::new();
        for i in 0..count {
            let active = feats[2 + (i / 32) * 4 + 2];
            if active & (1 << (i % 32)) != 0 {
                let s = &strings[12 + i * ETH_GSTRING_LEN..12 + (i + 1) * ETH_GSTRING_LEN];
                on.push(cstr(s));
            }
        }
        Ok(on)
    }
}

/// Receive queues in use on `ifname`: from the driver's channels (as
/// [`Ethtool::channels`] read them), else (a driver without
/// ETHTOOL_GCHANNELS) the `rx-*` entries in sysfs, else 1. Also says where
/// the number came from, for the log.
pub fn active_rx_queues(ifname: &str, channels: Option<&Channels>) -> (u32, &'static str) {
    if let Some(c) = channels.filter(|c| c.active_rx() > 0) {
        return (c.active_rx(), "ethtool channels");
    }
    let dir = format!("/sys/class/net/{ifname}/queues");
    if let Ok(rd) = std::fs::read_dir(dir) {
        let n = rd
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
            .count() as u32;
        if n > 0 {
            return (n, "sysfs queues");
        }
    }
    (1, "default: neither ethtool nor sysfs report queues")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<Channels>(), 36);
        assert_eq!(std::mem::size_of::<Rings>(), 36);
        assert_eq!(std::mem::size_of::<DrvInfo>(), 196);
        assert_eq!(std::mem::size_of::<RxFh>(), 16);
        assert_eq!(std::mem::size_of::<IfreqData>(), 40);
    }

    #[test]
    fn set_command_follows_the_driver() {
        let mlx = Channels {
            max_combined: 63,
            combined: 8,
            ..Channels::default()
        };
        assert_eq!(mlx.active_rx(), 8);
        assert_eq!(mlx.set_command("eth0", 4), "ethtool -L eth0 combined 4");
        let veth = Channels {
            max_rx: 4,
            max_tx: 4,
            rx: 2,
            tx: 2,
            ..Channels::default()
        };
        assert_eq!(veth.active_rx(), 2);
        assert_eq!(veth.set_command("v0", 1), "ethtool -L v0 rx 1 tx 1");
    }

    #[test]
    fn bad_names_and_missing_interfaces_are_errors_not_panics() {
        let e = Ethtool::open().unwrap();
        assert!(e.channels("").is_err());
        assert!(e.channels("a-name-longer-than-ifnamsiz").is_err());
        assert!(e.channels("drnosuch0").is_err());
        assert_eq!(active_rx_queues("drnosuch0", None).0, 1);
    }
}
