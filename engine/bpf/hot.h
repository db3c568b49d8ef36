// SPDX-License-Identifier: GPL-2.0 OR MIT
//
// The XDP answer tier: the packet cache's popular answers, copied by the
// workers into an mmapped array (`hot`) that this program reads. A query to
// a frontend whose pool has the tier on is looked up here; a fresh answer
// is written over the query (the client's ID and question bytes kept,
// every TTL aged) and sent back out of the interface with XDP_TX, so a hit
// costs no wake-up, no system call and no copy to userspace. Anything else
// (a miss, an expired or half-written entry, a query the tier does not
// take) goes to the worker, which answers it from the full cache or a
// backend, exactly as without the tier.
//
// The layout of `struct hot_entry`, the hash and the key bits are the
// engine's too (`engine/src/io/xdp/hot.rs`): change both or neither.
//
// Entries are sequence locks written by the workers through the mmap
// (odd = being written). A reader copies what it needs between two reads
// of the sequence and uses the copy only if both are the same even value.
// Plain loads are enough for that on x86, where loads are not reordered
// with loads; the engine refuses the tier on other architectures.

#define HOT_NAME 256
#define HOT_TAIL 512
#define HOT_TTLS 32
#define HOT_MSG 512
// Bytes after the DNS header a query may have: a 255-byte name, type and
// class, and an OPT record with a few options.
#define HOT_QUERY 320
// Where the engine points the TTL slots an answer does not use: past the
// longest answer, inside the reader's scratch.
#define HOT_TTL_NONE 600

struct hot_entry {
	__u64 seq;        // odd: a writer is in
	__u64 key;        // hot_key() of the query it answers; 0 = empty
	__u64 expires_ns; // CLOCK_MONOTONIC (bpf_ktime_get_ns)
	__u64 stored_ns;  // when the TTLs in `tail` were right
	__u16 tail_len;   // bytes of the answer after its question
	__u16 name_len;   // wire name, root byte included
	__u16 bits;       // HOT_* bits of the query
	__u16 pool;
	__u8 qtc[4];      // QTYPE and QCLASS as on the wire
	__u8 nttl;
	__u8 pad[3];
	__u8 hdr[16];     // answer bytes 2..12 (flags and counts), 10 used
	__u16 ttl_at[HOT_TTLS]; // TTL fields, as offsets into `tail`
	__u8 name[HOT_NAME];    // the name lower-cased, zero-padded
	__u8 tail[HOT_TAIL];    // the answer after its question
};
_Static_assert(sizeof(struct hot_entry) == 896, "hot_entry is the engine's layout");

// Which of a query's flags are in the key: the header's RD, AD and CD bits
// where they are, and these two of its OPT.
#define HOT_EDNS 0x8000
#define HOT_DO 0x4000

struct hot_conf {
	__u64 seed;     // hash seed (random per engine start)
	__u32 set_mask; // sets - 1; 0 sets = the tier is off
	__u32 sets;
};

struct hot_scratch {
	__u8 q[HOT_QUERY + 16]; // the query after its header, as it came
	__u8 lname[HOT_NAME];   // its name lower-cased, zero-padded
	__u8 h[16];             // the answer's header
	__u16 ttl_at[HOT_TTLS];
	__u8 tail[1024 + 8]; // HOT_TAIL, then room for HOT_TTL_NONE
	__u32 nl;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 2); // the engine sets it: 2 ways × sets
	__type(key, __u32);
	__type(value, struct hot_entry);
} hot SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hot_conf);
} hot_conf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hot_scratch);
} hot_scratch SEC(".maps");

// Answers per pool (index < 256) and per frontend (id < 4096).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} hot_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} hot_fe SEC(".maps");

#define barrier() asm volatile("" ::: "memory")
// `x & m`, with the mask kept: clang drops a mask it can prove is a no-op,
// and may then use a copy of `x` the verifier knows no bound for.
#define BOUND(x, m) ({ typeof(x) __v = (x); asm volatile("" : "+r"(__v)); __v & (m); })
#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))

// ASCII upper case to lower case without a branch (every byte of a wire
// name goes through it; label lengths are below 'A' and stay).
static __always_inline __u64 hot_lower(__u64 c)
{
	__u64 below = (c - 'A') >> 63;
	__u64 above = ('Z' - c) >> 63;
	return c | (((below | above) ^ 1) << 5);
}

static __always_inline __u64 fnv(__u64 h, __u64 b)
{
	return (h ^ b) * 0x100000001b3ULL;
}

static __always_inline __u64 hot_finish(__u64 h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h | 1;
}

// One's-complement sum folded to 16 bits.
static __always_inline __u32 fold(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u32)s;
}

// Sum of `len` bytes of scratch memory (len a multiple of 4, the bytes
// after the data zero); -1 on error.
static __always_inline __s64 sum_of(void *p, __u32 len)
{
	if (len == 0)
		return 0;
	if (len > HOT_TAIL)
		return -1;
	return bpf_csum_diff(0, 0, p, len, 0);
}

// The sum of the query's two addresses (the answer's too: swapping them
// keeps the sum) when its UDP checksum is right as the workers check it
// (`wire::checksum::check_udp`): valid; absent (0) over IPv4 only; or
// partial, the pseudo-header sum a local sender leaves for the NIC. -1
// otherwise. The query's bytes after its DNS header are
// `s->q[0..mlen - 12]`.
static __always_inline __s64 query_addr_sum(struct xdp_md *ctx, struct hot_scratch *s, int v6,
					    __u32 mlen)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 l4 = v6 ? 14 + 40 : 14 + 20;
	__u16 *u = data + l4; // the UDP header, then the DNS header: 10 words
	if ((void *)(u + 10) > end)
		return -1;
	// Source and destination: the last 4 (IPv4) or 16 (IPv6) words
	// before the UDP header.
	__u16 *a = (void *)u - (v6 ? 32 : 8);
	if ((void *)a < data || (void *)(a + 16) > end)
		return -1;
	__u64 addrs = 0;
#pragma unroll
	for (int i = 0; i < 16; i++)
		if (v6 || i < 4)
			addrs += a[i];
	__u16 stored = u[3];
	if (stored == 0)
		return v6 ? -1 : (__s64)addrs;
	__u64 pseudo = addrs + bpf_htons(IPPROTO_UDP) + u[2];
	__u64 sum = pseudo;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += u[i];
	__u32 rest = mlen - 12;
	if (rest > HOT_QUERY)
		return -1;
	*(__u32 *)&s->q[BOUND(rest, 0x1ff)] = 0;
	__s64 sq = sum_of(s->q, BOUND((rest + 3) & ~3U, 0x1fc));
	if (sq < 0)
		return -1;
	sum += fold(sq);
	if (fold(sum) == 0xffff || stored == fold(pseudo))
		return addrs;
	return -1;
}

// Writes the answer of entry `e` over the query in `ctx`. `qe` is where the
// question ends, counted from the end of the DNS header. Returns XDP_TX, or
// XDP_PASS when nothing was changed, or XDP_DROP when the frame was already
// resized and cannot go on (cannot happen with a well-formed entry).
static __always_inline int hot_serve(struct xdp_md *ctx, struct hot_scratch *s,
				     struct hot_entry *e, __u64 key, __u32 pool,
				     __u32 nl, __u32 bits, __u32 qe, int v6, __u32 mlen)
{
	// A query whose checksum the workers would refuse goes to them.
	__s64 addrs = query_addr_sum(ctx, s, v6, mlen);
	if (addrs < 0)
		return XDP_PASS;
	__u64 s1 = READ_ONCE(e->seq);
	barrier();
	if (s1 & 1)
		return XDP_PASS;
	if (e->key != key || e->pool != pool || e->name_len != nl || e->bits != bits)
		return XDP_PASS;
	__u8 *qtc = &s->q[BOUND(nl, 0x1ff)];
	if (e->qtc[0] != qtc[0] || e->qtc[1] != qtc[1] || e->qtc[2] != qtc[2] ||
	    e->qtc[3] != qtc[3])
		return XDP_PASS;
	__u64 now = bpf_ktime_get_ns();
	if (now >= e->expires_ns)
		return XDP_PASS;
	// The whole name, not just its hash: its words (zero-padded on both
	// sides), no more.
	__u32 nw = (nl + 7) / 8;
#pragma clang loop unroll(disable)
	for (__u32 i = 0; i < HOT_NAME / 8; i++) {
		if (i >= nw)
			break;
		if (((__u64 *)e->name)[i] != ((__u64 *)s->lname)[i])
			return XDP_PASS;
	}
	__u32 tl = e->tail_len;
	__u32 nt = e->nttl;
	__u64 stored = e->stored_ns;
	// The answer's header after its ID (flags, counts) into h[2..12].
#pragma unroll
	for (int i = 0; i < 10; i++)
		s->h[2 + i] = e->hdr[i];
#pragma unroll
	for (int i = 0; i < HOT_TTLS / 4; i++)
		((__u64 *)s->ttl_at)[i] = ((__u64 *)e->ttl_at)[i];
	// The tail's words, no more. A loop, not unrolled: unrolled, clang
	// loads all 64 words before the first store and spills them past the
	// 512-byte stack. `tl` may be torn here: checked after the sequence.
	__u32 tw = (tl + 7) / 8;
#pragma clang loop unroll(disable)
	for (__u32 i = 0; i < HOT_TAIL / 8; i++) {
		if (i >= tw)
			break;
		((__u64 *)s->tail)[i] = ((__u64 *)e->tail)[i];
	}
	barrier();
	if (READ_ONCE(e->seq) != s1)
		return XDP_PASS; // a writer came in: the worker answers
	if (tl > HOT_TAIL || nt > HOT_TTLS)
		return XDP_PASS;
	__u32 len = 12 + qe + tl; // the answer's length
	if (len > HOT_MSG)
		return XDP_PASS;

	// Age the TTLs in the copy (the engine checked that each lies inside
	// the tail; masked here so that a bad one stays inside the scratch).
	__u64 age = (now - stored) / 1000000000ULL;
#pragma clang loop unroll(disable)
	for (__u32 j = 0; j < HOT_TTLS; j++) {
		if (j >= nt)
			break;
		__u8 *f = &s->tail[BOUND(s->ttl_at[j], 0x3ff)];
		__u64 ttl = (__u64)f[0] << 24 | (__u64)f[1] << 16 | (__u64)f[2] << 8 | f[3];
		__u64 d = ttl - age;
		d &= (d >> 63) - 1; // 0 when the TTL ran out
		f[0] = d >> 24;
		f[1] = d >> 16;
		f[2] = d >> 8;
		f[3] = d;
	}

	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 l4 = v6 ? 14 + 40 : 14 + 20;
	__u8 *dns = data + l4 + 8;
	if ((void *)(dns + 12) > end)
		return XDP_PASS;
	s->h[0] = dns[0];
	s->h[1] = dns[1];

	// The UDP checksum's sum of the DNS message, in three blocks: header,
	// question (the client's bytes) and tail; zero bytes pad each block
	// to 4 bytes. The tail starts at an odd offset when the question's
	// length is odd, so its sum is byte-swapped.
	__u32 qlen = BOUND(qe, 0x1ff);
	*(__u32 *)&s->q[qlen] = 0;
	*(__u32 *)&s->tail[BOUND(tl, 0x3ff)] = 0;
	__s64 sh = sum_of(s->h, 12);
	__s64 sq = sum_of(s->q, (qlen + 3) & ~3U);
	__s64 st = sum_of(s->tail, (tl + 3) & ~3U);
	if (sh < 0 || sq < 0 || st < 0)
		return XDP_PASS;
	__u32 tsum = fold(st);
	if ((12 + qe) & 1)
		tsum = ((tsum & 0xff) << 8) | (tsum >> 8);
	__u64 dsum = (__u64)fold(sh) + fold(sq) + tsum;

	// Resize the frame to the answer; from here on the query is gone.
	int delta = (int)(l4 + 8 + len) - (int)(end - data);
	if (bpf_xdp_adjust_tail(ctx, delta))
		return XDP_PASS;
	if (bpf_xdp_store_bytes(ctx, l4 + 8 + 2, &s->h[2], 10))
		return XDP_DROP;
	if (tl > 0 && tl <= HOT_TAIL && bpf_xdp_store_bytes(ctx, l4 + 8 + 12 + qe, s->tail, tl))
		return XDP_DROP;

	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	__u8 mac[ETH_ALEN];
	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
	__u16 ulen = bpf_htons(8 + len);
	__u64 sum = dsum + (__u64)addrs + bpf_htons(IPPROTO_UDP) + ulen;
	struct udphdr *udp;
	if (v6) {
		struct ipv6hdr *ip = (void *)(eth + 1);
		udp = (void *)(ip + 1);
		if ((void *)(udp + 1) > end)
			return XDP_DROP;
		struct in6_addr a = ip->saddr;
		ip->saddr = ip->daddr;
		ip->daddr = a;
		ip->payload_len = ulen;
		ip->hop_limit = 64;
	} else {
		struct iphdr *ip = (void *)(eth + 1);
		udp = (void *)(ip + 1);
		if ((void *)(udp + 1) > end)
			return XDP_DROP;
		__u32 a = ip->saddr;
		ip->saddr = ip->daddr;
		ip->daddr = a;
		ip->tot_len = bpf_htons(20 + 8 + len);
		ip->ttl = 64;
		ip->check = 0;
		__u16 *w = (__u16 *)ip;
		__u64 hs = 0;
#pragma unroll
		for (int i = 0; i < 10; i++)
			hs += w[i];
		ip->check = ~fold(hs);
	}
	__u16 p = udp->source;
	udp->source = udp->dest;
	udp->dest = p;
	udp->len = ulen;
	sum += udp->source + udp->dest + ulen;
	__u16 c = ~fold(sum);
	udp->check = c ? c : 0xffff;

	__u32 k = pool & 0xff;
	__u64 *n = bpf_map_lookup_elem(&hot_hits, &k);
	if (n)
		*n += 1;
	return XDP_TX;
}

struct name_walk {
	__u64 h;
};

// One byte of the query's name (bpf_loop: the verifier checks the body
// once, not once per possible name length). The name ends at its first
// zero byte: a cached name is a valid one, and bytes equal to a valid name
// up to its root byte are that name. Bytes past what was loaded are an
// earlier packet's; a name that ends there is refused by the caller.
static long name_step(__u64 i, void *ctx)
{
	struct name_walk *w = ctx;
	__u32 zero = 0;
	struct hot_scratch *s = bpf_map_lookup_elem(&hot_scratch, &zero);
	if (!s || i >= 255)
		return 1;
	__u64 c = s->q[i];
	if (c == 0) {
		s->nl = i + 1;
		return 1;
	}
	c = hot_lower(c);
	s->lname[i] = c;
	w->h = fnv(w->h, c);
	return 0;
}

// The query in `ctx` answered from the tier (XDP_TX) or not (XDP_PASS:
// the caller sends it to the worker). A global function: the verifier
// checks it once, not once per call site.
__noinline int hot_answer(struct xdp_md *ctx, __u32 pool, int v6)
{
	if (pool > 0xffff)
		return XDP_PASS;
	v6 = !!v6;
	__u32 zero = 0;
	struct hot_conf *cf = bpf_map_lookup_elem(&hot_conf, &zero);
	struct hot_scratch *s = bpf_map_lookup_elem(&hot_scratch, &zero);
	if (!cf || !s || !cf->sets)
		return XDP_PASS;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 l4 = v6 ? 14 + 40 : 14 + 20;
	struct udphdr *udp = data + l4;
	__u8 *dns = (void *)(udp + 1);
	if ((void *)(dns + 12) > end)
		return XDP_PASS;
	// The DNS message is what the UDP length says (an Ethernet frame may
	// carry padding after it).
	__u32 ulen = bpf_ntohs(udp->len);
	if (ulen < 8 + 12 || (void *)dns + (ulen - 8) > end)
		return XDP_PASS;
	__u32 mlen = ulen - 8;
	// A plain QUERY with one question, no answer or authority records and
	// at most one additional (the OPT).
	__u32 flags = (__u32)dns[2] << 8 | dns[3];
	if ((flags & 0xf800) || dns[4] != 0 || dns[5] != 1 || dns[6] || dns[7] || dns[8] ||
	    dns[9] || dns[10] || dns[11] > 1)
		return XDP_PASS;
	__u32 ar = dns[11];
	__u32 n = mlen - 12;
	if (n > HOT_QUERY)
		n = HOT_QUERY;
	if (n < 5)
		return XDP_PASS;
	if (bpf_xdp_load_bytes(ctx, l4 + 8 + 12, s->q, n))
		return XDP_PASS;

#pragma unroll
	for (int i = 0; i < HOT_NAME / 8; i++)
		((__u64 *)s->lname)[i] = 0;
	// The name's hash and length (through memory: see name_step).
	struct name_walk w = {.h = cf->seed ^ 0xcbf29ce484222325ULL};
	s->nl = 0;
	bpf_loop(255, name_step, &w, 0);
	__u64 h = w.h;
	__u32 nl = s->nl;
	if (nl == 0 || nl > 255)
		return XDP_PASS;
	h = fnv(h, 0);
	__u32 qe = nl + 4;
	if (qe > n || qe > HOT_QUERY)
		return XDP_PASS;
	__u32 bits = flags & 0x0130;
	__u32 rest = mlen - 12 - qe;
	if (ar == 0) {
		if (rest)
			return XDP_PASS;
	} else {
		// One EDNS version 0 OPT, loaded whole, without ECS.
		if (rest < 11 || rest > HOT_QUERY || qe + rest > n)
			return XDP_PASS;
		__u8 *o = &s->q[BOUND(qe, 0x1ff)];
		if (o[0] != 0 || o[1] != 0 || o[2] != 41 || o[6] != 0)
			return XDP_PASS;
		bits |= HOT_EDNS;
		if (o[7] & 0x80)
			bits |= HOT_DO;
		__u32 rdlen = (__u32)o[9] << 8 | o[10];
		if (11 + rdlen != rest)
			return XDP_PASS;
		__u32 p = qe + 11;
		__u32 stop = qe + rest;
		for (int k = 0; k < 8; k++) {
			if (p >= stop)
				break;
			if (p + 4 > stop)
				return XDP_PASS;
			__u8 *op = &s->q[BOUND(p, 0x1ff)];
			__u32 code = (__u32)op[0] << 8 | op[1];
			__u32 olen = (__u32)op[2] << 8 | op[3];
			if (code == 8)
				return XDP_PASS; // ECS: answers scoped to a subnet
			p += 4 + olen;
		}
		if (p != stop)
			return XDP_PASS;
	}
#pragma unroll
	for (int i = 0; i < 4; i++)
		h = fnv(h, s->q[BOUND(nl + i, 0x1ff)]);
	h = fnv(h, bits & 0xff);
	h = fnv(h, bits >> 8);
	h = fnv(h, pool & 0xff);
	h = fnv(h, (pool >> 8) & 0xff);
	__u64 key = hot_finish(h);
	__u32 first = (__u32)((key >> 24) & cf->set_mask) * 2;
	// Two ways; one call site, so the verifier walks the answer once.
	struct hot_entry *e = bpf_map_lookup_elem(&hot, &first);
	if (!e || READ_ONCE(e->key) != key) {
		first += 1;
		e = bpf_map_lookup_elem(&hot, &first);
		if (!e || READ_ONCE(e->key) != key)
			return XDP_PASS;
	}
	return hot_serve(ctx, s, e, key, pool, nl, bits, qe, v6, mlen);
}
