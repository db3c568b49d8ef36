// Compiles one BPF C file with clang into OUT_DIR. Shared by the build
// scripts of the engine (the XDP program) and the bench (the XDP responder)
// through `include!`.

fn compile_bpf(src: &str, object: &str) {
    use std::env;
    use std::path::PathBuf;
    use std::process::Command;

    println!("cargo:rerun-if-changed={src}");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join(object);
    // <asm/types.h> lives under the multiarch directory on Debian.
    let multiarch = Command::new("gcc")
        .arg("-dumpmachine")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "x86_64-linux-gnu".into());
    let status = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .args(["-c", src, "-o"])
        .arg(&out)
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run clang ({e}): BPF programs need clang and libbpf-dev; run scripts/setup.sh")
        });
    assert!(status.success(), "clang failed to compile {src}");
}
