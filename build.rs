//! Link options of the static binary.

fn main() {
    // The static binary is position independent (static-pie, so that it is loaded at a random
    // address) and so carries a relocation for every pointer in its data: 24 bytes each as RELA,
    // about 0.4 MB. Packed as RELR they take a few KiB; musl's start-up code applies them.
    if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("musl") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
