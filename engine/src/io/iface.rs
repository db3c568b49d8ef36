//! What the AF_XDP data plane needs to know about its interface: index, MAC,
//! MTU, receive queues and addresses.

use std::ffi::{CStr, CString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{bail, Context};

use crate::io::ethtool::{active_rx_queues, Channels, Ethtool};
use crate::io::netlink::Netlink;
use crate::snapshot::Mac;

#[derive(Clone, Debug)]
pub struct Iface {
    pub name: String,
    pub index: u32,
    pub mac: Mac,
    /// Receive queues in use (the active channels): one worker each.
    pub rx_queues: u32,
    /// Where `rx_queues` came from (ethtool channels, sysfs), for the log.
    pub rx_queues_from: &'static str,
    /// Receive queues the driver allocated; usually more than are in use.
    pub rx_allocated: u32,
    /// Channels as the driver reports them, where it does.
    pub channels: Option<Channels>,
    pub mtu: u32,
    pub addrs: Vec<IpAddr>,
}

impl Iface {
    pub fn open(name: &str) -> anyhow::Result<Iface> {
        let c = CString::new(name).context("interface name has a NUL byte")?;
        // SAFETY: c is a valid C string.
        let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
        if index == 0 {
            bail!("no interface named {name:?}");
        }
        let link = Netlink::open()
            .and_then(|mut nl| nl.link(index))
            .with_context(|| format!("cannot read the link of {name}"))?;
        let mac = link
            .mac
            .with_context(|| format!("{name} has no Ethernet address"))?;
        let channels = Ethtool::open().and_then(|e| e.channels(name)).ok();
        let (rx_queues, rx_queues_from) = active_rx_queues(name, channels.as_ref());
        Ok(Iface {
            name: name.to_string(),
            index,
            mac,
            rx_queues,
            rx_queues_from,
            rx_allocated: link.rx_allocated,
            channels,
            mtu: link.mtu,
            addrs: addresses(name),
        })
    }

    /// The command that sets `n` receive queues on this interface.
    pub fn set_queues_command(&self, n: u32) -> String {
        match &self.channels {
            Some(c) => c.set_command(&self.name, n),
            None => format!("ethtool -L {} combined {n}", self.name),
        }
    }

    /// The address the engine sends to backends from, per family: the
    /// interface's first address that is not a frontend (a VIP may move to
    /// another balancer; our backend-side address must not), else the first.
    /// IPv6 link-local addresses are not used.
    pub fn source_v4(&self, frontends: &[IpAddr]) -> Option<Ipv4Addr> {
        pick(&self.addrs, frontends, |a| match a {
            IpAddr::V4(v) => Some(*v),
            IpAddr::V6(_) => None,
        })
    }

    pub fn source_v6(&self, frontends: &[IpAddr]) -> Option<Ipv6Addr> {
        pick(&self.addrs, frontends, |a| match a {
            IpAddr::V6(v) if (v.segments()[0] & 0xffc0) != 0xfe80 => Some(*v),
            _ => None,
        })
    }
}

fn pick<T: Copy + Into<IpAddr>>(
    addrs: &[IpAddr],
    frontends: &[IpAddr],
    f: impl Fn(&IpAddr) -> Option<T>,
) -> Option<T> {
    let all: Vec<T> = addrs.iter().filter_map(f).collect();
    all.iter()
        .copied()
        .find(|a| !frontends.contains(&(*a).into()))
        .or_else(|| all.first().copied())
}

/// Every address of interface `name` (getifaddrs).
pub fn addresses(name: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: cur walks the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        // SAFETY: ifa_name is a valid C string for every entry.
        let n = unsafe { CStr::from_ptr(ifa.ifa_name) };
        if n.to_bytes() != name.as_bytes() || ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr of the family it declares.
        unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr))));
                }
                libc::AF_INET6 => {
                    let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    out.push(IpAddr::V6(Ipv6Addr::from(sa.sin6_addr.s6_addr)));
                }
                _ => {}
            }
        }
    }
    // SAFETY: head came from getifaddrs.
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_and_a_missing_interface_is_a_clear_error() {
        let lo = Iface::open("lo").unwrap();
        assert!(lo.index > 0);
        assert!(lo.addrs.contains(&"127.0.0.1".parse().unwrap()));
        let e = Iface::open("drnosuch0").unwrap_err().to_string();
        assert!(e.contains("no interface named"), "{e}");
    }

    #[test]
    fn source_address_skips_frontends_and_link_local() {
        let addrs: Vec<IpAddr> = ["10.0.0.53", "10.0.0.2", "fe80::1", "fd00::2"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let i = Iface {
            name: "x".into(),
            index: 1,
            mac: [0; 6],
            rx_queues: 1,
            rx_queues_from: "test",
            rx_allocated: 1,
            channels: None,
            mtu: 1500,
            addrs,
        };
        let vip: IpAddr = "10.0.0.53".parse().unwrap();
        assert_eq!(i.source_v4(&[vip]), Some("10.0.0.2".parse().unwrap()));
        assert_eq!(i.source_v4(&[]), Some("10.0.0.53".parse().unwrap()));
        assert_eq!(i.source_v6(&[]), Some("fd00::2".parse().unwrap()));
    }
}
