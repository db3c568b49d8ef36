//! Compiles the XDP DNS responder (`bpf/responder.c`), embedded in
//! `dnsrail-bench xdp-backend`.

include!("../engine/bpf/cc.rs");

fn main() {
    println!("cargo:rerun-if-changed=../engine/bpf/cc.rs");
    compile_bpf("bpf/responder.c", "responder.o");
}
