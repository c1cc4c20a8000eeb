//! Names, once, the condition under which locks record diagnostics: the
//! `diagnostics` feature is on and no model checker replaces the threads
//! (loom and shuttle run many modelled threads on one OS thread, whose
//! thread-locals they share). The code says `cfg(lockscope_diag)`.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(lockscope_diag)");
    println!("cargo::rustc-check-cfg=cfg(loom)");
    println!("cargo::rerun-if-changed=build.rs");
    let feature = |name: &str| std::env::var_os(format!("CARGO_FEATURE_{name}")).is_some();
    let loom = std::env::var("CARGO_CFG_LOOM").is_ok();
    if feature("DIAGNOSTICS") && !feature("SHUTTLE") && !loom {
        println!("cargo::rustc-cfg=lockscope_diag");
    }
}
