// SPDX-License-Identifier: GPL-2.0 OR MIT
//
// A DNS "backend" that answers in XDP, for benchmarks: every UDP query to
// port 53 goes back out of the interface it came in on (XDP_TX) with QR and
// RA set, addresses and ports swapped: a NOERROR answer with no records
// (NODATA) and the query's own question and OPT record. It costs the host
// next to nothing, so a benchmark measures the balancer in front of it, not
// the backend. Everything else (ARP, ND, ICMP, TCP) goes to the kernel.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} answered SEC(".maps");

static __always_inline void swap_mac(struct ethhdr *eth)
{
	__u8 t[ETH_ALEN];
	__builtin_memcpy(t, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, t, ETH_ALEN);
}

// Sets QR and RA in the DNS flags and fixes the UDP checksum (RFC 1624).
// Swapping addresses and ports leaves the checksum as it is.
static __always_inline int answer(struct udphdr *udp, void *end, int v6)
{
	__u16 *flags = (void *)(udp + 1) + 2;
	if ((void *)(flags + 1) > end || (void *)(udp + 1) + 12 > end)
		return XDP_PASS;
	if (*(__u8 *)flags & 0x80)
		return XDP_DROP; // already a response
	__u16 old = *flags;
	__u16 new = old | bpf_htons(0x8080);
	*flags = new;
	if (udp->check || v6) {
		__u32 sum = (__u16)~udp->check;
		sum += (__u16)~old;
		sum += new;
		sum = (sum & 0xffff) + (sum >> 16);
		sum = (sum & 0xffff) + (sum >> 16);
		__u16 c = ~sum;
		udp->check = c ? c : 0xffff;
	}
	__u16 p = udp->source;
	udp->source = udp->dest;
	udp->dest = p;
	__u32 k = 0;
	__u64 *n = bpf_map_lookup_elem(&answered, &k);
	if (n)
		*n += 1;
	return XDP_TX;
}

SEC("xdp")
int dns_responder(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end || ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
		    (ip->frag_off & bpf_htons(0x3fff)))
			return XDP_PASS;
		struct udphdr *udp = (void *)(ip + 1);
		if ((void *)(udp + 1) > end || udp->dest != bpf_htons(53))
			return XDP_PASS;
		int v = answer(udp, end, 0);
		if (v != XDP_TX)
			return v;
		__u32 a = ip->saddr;
		ip->saddr = ip->daddr;
		ip->daddr = a;
		swap_mac(eth);
		return XDP_TX;
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end || ip->nexthdr != IPPROTO_UDP)
			return XDP_PASS;
		struct udphdr *udp = (void *)(ip + 1);
		if ((void *)(udp + 1) > end || udp->dest != bpf_htons(53))
			return XDP_PASS;
		int v = answer(udp, end, 1);
		if (v != XDP_TX)
			return v;
		struct in6_addr a = ip->saddr;
		ip->saddr = ip->daddr;
		ip->daddr = a;
		swap_mac(eth);
		return XDP_TX;
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
