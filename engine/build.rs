//! Compiles the XDP program (`bpf/dnsrail_xdp.c`) with clang into an object
//! the engine embeds (`include_bytes!`), so the binary carries its own
//! program and needs no file at run time.

include!("bpf/cc.rs");

fn main() {
    println!("cargo:rerun-if-changed=bpf/cc.rs");
    println!("cargo:rerun-if-changed=bpf/hot.h");
    compile_bpf("bpf/dnsrail_xdp.c", "dnsrail_xdp.o");
}
