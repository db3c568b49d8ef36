#!/usr/bin/env bash
# Installs the system packages dnsrail needs. Idempotent: packages already
# present are not fetched again. Debian 12; run as root (or with sudo).
set -euo pipefail

# dnsutils: dig, the real DNS client of the integration tests and the demo.
# iproute2: ip, for the network-namespace topologies.
# pkg-config, gcc: crates that build C; g++: libFuzzer (scripts/fuzz.sh).
# clang, llvm, libbpf-dev: the XDP program (engine/bpf, clang -target bpf).
# m4, libelf-dev, zlib1g-dev: libxdp/libbpf built from C by xsk-rs (use_cc_build).
# knot-dnsutils (kdig, kxdpgun), dnsperf: clients of the tests and benchmarks.
# iputils-ping, netcat-openbsd: the kernel-path checks of the AF_XDP tests.
# ethtool: the test topology turns checksum offload off on its veths.
# python3-prometheus-client: the tests parse /metrics with the reference parser.
# valgrind: scripts/instructions.sh (instructions per query, callgrind).
# linux-perf: the profiling recipe in docs/benchmarks.md.
# dnsdist: the comparison of `dnsrail-bench compare` (scripts/bench.sh).
# fonts-dejavu-core: the font of the comparison's PNG plots.
# chromium: the dashboard's end-to-end test (headless).
# knot: knotd, the real DNS servers behind the balancer in the failover tests.
# nftables: nft, which silences a backend host in the failover tests.
# curl: the demo reads /metrics.
# bird2: the router and the balancers' announcers of scripts/fleet-demo.sh
# (each BIRD runs with its own configuration and control socket).
# python3: the fleet demo's TCP/53 client and its JSON reading.
PKGS=(dnsutils iproute2 pkg-config gcc g++ libc6-dev clang llvm libbpf-dev m4 libelf-dev zlib1g-dev
      knot-dnsutils dnsperf iputils-ping netcat-openbsd ethtool python3-prometheus-client
      valgrind linux-perf dnsdist fonts-dejavu-core chromium knot nftables curl bird2 python3)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found: dnsrail needs a Rust toolchain (1.85 or newer) on PATH" >&2
    exit 1
fi
echo "setup: ok ($(cargo --version))"
