// SPDX-License-Identifier: GPL-2.0 OR MIT
//
// dnsrail's XDP program: steers the engine's UDP traffic into the AF_XDP
// socket of the receiving queue and passes everything else to the kernel.
//
//   * UDP to a frontend (VIP:port, IPv4/IPv6; address 0 = any local address)
//   * UDP to one of the engine's backend-side ports on the engine's own
//     source address (answers from backends)
//   * ICMP / ICMPv6 destination unreachable (not ICMP "fragmentation
//     needed") quoting a UDP datagram from the engine's source address and
//     one of its ports: a backend that died, for failover and re-dispatch
//
// go to userspace. ARP, ND, all other ICMP, TCP (TCP/53 is ctl's), fragments, IPv6
// extension headers, VLAN-tagged frames and anything else stay on the kernel
// path, so a dead engine, or a queue without a socket, never black-holes the
// host. Sources in the block tries are dropped here, before userspace.
//
// A query to a frontend whose pool has the XDP answer tier on (`hot.h`) is
// looked up there first: a fresh answer is written over the query and sent
// back from here (XDP_TX), so a cache hit wakes no thread.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct fe4_key {
	__u32 addr; // network order; 0 = any
	__u16 port; // network order
	__u16 pad;
};

struct fe6_key {
	__u8 addr[16];
	__u16 port;
	__u16 pad;
};

struct lpm4_key {
	__u32 prefixlen;
	__u32 addr;
};

struct lpm6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

// Our source addresses toward backends (index 0); all zero = none.
struct local_addrs {
	__u32 v4;
	__u8 v6[16];
};

enum counter {
	C_QUERY = 0,   // redirected: to a frontend
	C_ANSWER = 1,  // redirected: to a backend-side port
	C_BLOCKED = 2, // dropped: source in a block trie
	C_PASS = 3,    // passed to the kernel
	C_ICMP = 4,    // redirected: ICMP error quoting one of our queries
	C_HOT = 5,     // answered here from the answer tier (XDP_TX)
	C_HOT_MISS = 6, // looked up in the answer tier, sent to the worker
	C_HOT_DROP = 7, // resized for an answer that could not be written
	C_MAX = 8,
};

// One slot per receive queue a worker may own: engine.workers allows 256.
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct fe4_key);
	__type(value, __u32);
} frontends4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct fe6_key);
	__type(value, __u32);
} frontends6 SEC(".maps");

// Indexed by host-order UDP port: non-zero = one of the engine's ports.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct local_addrs);
} local SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm4_key);
	__type(value, __u64);
} block4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm6_key);
	__type(value, __u64);
} block6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline int count(__u32 c, int verdict)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &c);
	if (v)
		*v += 1;
	return verdict;
}

static __always_inline int to_socket(struct xdp_md *ctx, __u32 c)
{
	count(c, 0);
	// No socket on this queue: the kernel gets the packet.
	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}

#include "hot.h"

// A query to frontend `fe` (the map's value: bit 0 set, the frontend's id
// in bits 4-15, its pool + 1 in bits 16-31 when the pool's answers are in
// the tier): answered from the tier when the answer is there, else sent
// to the worker.
static __always_inline int query(struct xdp_md *ctx, __u32 fe, int v6)
{
	__u32 pool1 = fe >> 16;
	if (pool1) {
		int v = hot_answer(ctx, pool1 - 1, v6);
		if (v == XDP_TX) {
			__u32 id = (fe >> 4) & 0xfff;
			__u64 *n = bpf_map_lookup_elem(&hot_fe, &id);
			if (n)
				*n += 1;
			return count(C_HOT, XDP_TX);
		}
		if (v == XDP_DROP)
			return count(C_HOT_DROP, XDP_DROP);
		count(C_HOT_MISS, 0);
	}
	return to_socket(ctx, C_QUERY);
}

static __always_inline int is_our_port(__u16 port_be)
{
	__u32 k = bpf_ntohs(port_be);
	__u8 *v = bpf_map_lookup_elem(&ports, &k);
	return v && *v;
}

// From linux/icmp.h and linux/icmpv6.h, which pull in libc headers a BPF
// target cannot build.
#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED 4
#define ICMPV6_DEST_UNREACH 1

// The first 8 bytes of an ICMP or ICMPv6 message.
struct icmp_head {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__u32 rest;
};

static __always_inline struct local_addrs *local_addrs(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&local, &zero);
}

// ICMP destination unreachable whose quote is UDP from our source address
// and one of our ports: the engine takes the backend out and re-sends the
// quoted query. Everything else stays the kernel's.
static __always_inline int icmp4(struct xdp_md *ctx, struct iphdr *ip, void *end)
{
	struct icmp_head *ic = (void *)(ip + 1);
	if ((void *)(ic + 1) > end || ic->type != ICMP_DEST_UNREACH ||
	    ic->code == ICMP_FRAG_NEEDED)
		return count(C_PASS, XDP_PASS);
	struct iphdr *q = (void *)(ic + 1);
	if ((void *)(q + 1) > end || q->ihl != 5 || q->protocol != IPPROTO_UDP)
		return count(C_PASS, XDP_PASS);
	struct udphdr *qu = (void *)(q + 1);
	if ((void *)(qu + 1) > end)
		return count(C_PASS, XDP_PASS);
	struct local_addrs *l = local_addrs();
	if (l && l->v4 && l->v4 == q->saddr && is_our_port(qu->source))
		return to_socket(ctx, C_ICMP);
	return count(C_PASS, XDP_PASS);
}

static __always_inline int v4(struct xdp_md *ctx, void *data, void *end)
{
	struct iphdr *ip = data;
	if ((void *)(ip + 1) > end || ip->ihl != 5)
		return count(C_PASS, XDP_PASS);
	// Fragments (MF set or an offset) go to the kernel for reassembly.
	if (ip->frag_off & bpf_htons(0x3fff))
		return count(C_PASS, XDP_PASS);
	if (ip->protocol == IPPROTO_ICMP)
		return icmp4(ctx, ip, end);
	if (ip->protocol != IPPROTO_UDP)
		return count(C_PASS, XDP_PASS);
	struct lpm4_key bk = {.prefixlen = 32, .addr = ip->saddr};
	if (bpf_map_lookup_elem(&block4, &bk))
		return count(C_BLOCKED, XDP_DROP);
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end)
		return count(C_PASS, XDP_PASS);
	struct fe4_key fk = {.addr = ip->daddr, .port = udp->dest};
	__u32 *fe = bpf_map_lookup_elem(&frontends4, &fk);
	if (fe)
		return query(ctx, *fe, 0);
	fk.addr = 0;
	fe = bpf_map_lookup_elem(&frontends4, &fk);
	if (fe)
		return query(ctx, *fe, 0);
	__u32 zero = 0;
	struct local_addrs *l = bpf_map_lookup_elem(&local, &zero);
	if (l && l->v4 && l->v4 == ip->daddr && is_our_port(udp->dest))
		return to_socket(ctx, C_ANSWER);
	return count(C_PASS, XDP_PASS);
}

static __always_inline int same16(const __u8 *a, const __u8 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

static __always_inline int nonzero16(const __u8 *a)
{
	const __u32 *x = (const __u32 *)a;
	return (x[0] | x[1] | x[2] | x[3]) != 0;
}

static __always_inline int icmp6(struct xdp_md *ctx, struct ipv6hdr *ip, void *end)
{
	struct icmp_head *ic = (void *)(ip + 1);
	if ((void *)(ic + 1) > end || ic->type != ICMPV6_DEST_UNREACH)
		return count(C_PASS, XDP_PASS);
	struct ipv6hdr *q = (void *)(ic + 1);
	if ((void *)(q + 1) > end || q->nexthdr != IPPROTO_UDP)
		return count(C_PASS, XDP_PASS);
	struct udphdr *qu = (void *)(q + 1);
	if ((void *)(qu + 1) > end)
		return count(C_PASS, XDP_PASS);
	struct local_addrs *l = local_addrs();
	if (l && nonzero16(l->v6) && same16(l->v6, (const __u8 *)&q->saddr) &&
	    is_our_port(qu->source))
		return to_socket(ctx, C_ICMP);
	return count(C_PASS, XDP_PASS);
}

static __always_inline int v6(struct xdp_md *ctx, void *data, void *end)
{
	struct ipv6hdr *ip = data;
	if ((void *)(ip + 1) > end)
		return count(C_PASS, XDP_PASS);
	if (ip->nexthdr == IPPROTO_ICMPV6)
		return icmp6(ctx, ip, end);
	if (ip->nexthdr != IPPROTO_UDP)
		return count(C_PASS, XDP_PASS);
	struct lpm6_key bk = {.prefixlen = 128};
	__builtin_memcpy(bk.addr, &ip->saddr, 16);
	if (bpf_map_lookup_elem(&block6, &bk))
		return count(C_BLOCKED, XDP_DROP);
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end)
		return count(C_PASS, XDP_PASS);
	struct fe6_key fk = {.port = udp->dest};
	__builtin_memcpy(fk.addr, &ip->daddr, 16);
	__u32 *fe = bpf_map_lookup_elem(&frontends6, &fk);
	if (fe)
		return query(ctx, *fe, 1);
	__builtin_memset(fk.addr, 0, 16);
	fe = bpf_map_lookup_elem(&frontends6, &fk);
	if (fe)
		return query(ctx, *fe, 1);
	__u32 zero = 0;
	struct local_addrs *l = bpf_map_lookup_elem(&local, &zero);
	if (l && nonzero16(l->v6) && same16(l->v6, (const __u8 *)&ip->daddr) &&
	    is_our_port(udp->dest))
		return to_socket(ctx, C_ANSWER);
	return count(C_PASS, XDP_PASS);
}

SEC("xdp")
int dnsrail_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return count(C_PASS, XDP_PASS);
	switch (eth->h_proto) {
	case bpf_htons(ETH_P_IP):
		return v4(ctx, eth + 1, end);
	case bpf_htons(ETH_P_IPV6):
		return v6(ctx, eth + 1, end);
	default:
		return count(C_PASS, XDP_PASS);
	}
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
