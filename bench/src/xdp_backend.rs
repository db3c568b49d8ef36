//! `dnsrail-bench xdp-backend`: the XDP DNS responder (`bpf/responder.c`)
//! attached to an interface. A backend that answers in the driver, so that
//! benchmarks measure the balancer, not the backend. Attached through a BPF
//! link: it is gone when the process exits, however it exits.

use anyhow::{anyhow, Context};
use aya::maps::{MapData, PerCpuArray};
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;

static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/responder.o"));

pub struct XdpResponder {
    ebpf: Ebpf,
}

impl XdpResponder {
    /// Loads the responder and attaches it to `ifname`: in generic mode by
    /// default, because native XDP_TX on a veth only works when the peer has
    /// a NAPI context of its own, which a bridged peer may not have.
    pub fn attach(ifname: &str, native: bool) -> anyhow::Result<XdpResponder> {
        let mut ebpf = Ebpf::load(OBJECT).context("cannot load the XDP responder")?;
        let prog: &mut Xdp = ebpf
            .program_mut("dns_responder")
            .ok_or_else(|| anyhow!("object has no program dns_responder"))?
            .try_into()?;
        prog.load()
            .context("the kernel refused the XDP responder")?;
        let mode = if native {
            XdpMode::Driver
        } else {
            XdpMode::Skb
        };
        prog.attach(ifname, mode)
            .with_context(|| format!("cannot attach the XDP responder to {ifname} ({mode:?})"))?;
        Ok(XdpResponder { ebpf })
    }

    /// Queries answered so far.
    pub fn answered(&mut self) -> u64 {
        let Some(m) = self.ebpf.map_mut("answered") else {
            return 0;
        };
        let Ok(a) = PerCpuArray::<&mut MapData, u64>::try_from(m) else {
            return 0;
        };
        a.get(&0, 0).map(|v| v.iter().sum()).unwrap_or(0)
    }
}
