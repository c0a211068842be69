//! The Debian multiarch triplet of the target (`x86_64-linux-gnu`), for the directory
//! distribution packages install providers in: `/usr/lib/<triplet>/tollgate/providers`. A
//! Debian build sets `DEB_HOST_MULTIARCH`, which wins; otherwise it follows from Rust's target.

fn main() {
    println!("cargo:rerun-if-env-changed=DEB_HOST_MULTIARCH");
    let triplet = match std::env::var("DEB_HOST_MULTIARCH") {
        Ok(t) if !t.is_empty() => t,
        _ => multiarch(&std::env::var("TARGET").expect("cargo sets TARGET")),
    };
    println!("cargo:rustc-env=TOLLGATE_MULTIARCH={triplet}");
}

/// `x86_64-unknown-linux-gnu` to `x86_64-linux-gnu`, as Debian names its architectures.
fn multiarch(target: &str) -> String {
    let parts: Vec<&str> = target.split('-').collect();
    let (arch, rest) = match parts.as_slice() {
        [arch, _vendor, os, env] => (*arch, format!("{os}-{env}")),
        [arch, _vendor, os] => (*arch, (*os).to_owned()),
        _ => return target.to_owned(),
    };
    let arch = match arch {
        "i586" | "i686" => "i386",
        a if a.starts_with("armv") => "arm",
        "riscv64gc" => "riscv64",
        a => a,
    };
    format!("{arch}-{rest}")
}
