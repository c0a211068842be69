//! The measuring tools the parts use, also run on their own as `tollgate-bench` subcommands
//! (see `main.rs`): a Flatpak-app-like tree of files, the time to read every metadata object
//! once, bare Ed25519 signing, and one timed `flatpak install`. They write only where told.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Subcommand;
use tollgate_tests::bus::{SessionBus, TEST_AUTHENTICATOR_NAME, test_authenticator};
use tollgate_tests::fixture::Fixture;
use tollgate_tests::synth::{Shape, generate_from};

/// The tools, as subcommands.
#[derive(Subcommand)]
pub(crate) enum Tool {
    /// Generate an archive repository of about N objects.
    Synth {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        objects: usize,
        #[arg(long, default_value_t = 20)]
        refs: usize,
        /// Every Gth ref is gated (xa.token-type = 2); 0 for none.
        #[arg(long, default_value_t = 2)]
        gated_every: usize,
        #[arg(long, default_value_t = 20)]
        files_per_dir: usize,
        #[arg(long, default_value_t = 4)]
        fanout: usize,
        /// Also write the content objects.
        #[arg(long)]
        content: bool,
        /// Number the refs from this one on: with an existing repository at --out, adds refs
        /// to it, as a publish does.
        #[arg(long, default_value_t = 0)]
        first_ref: usize,
    },
    /// Read every .commit, .dirtree and .dirmeta file of a repository once.
    ReadMetadata {
        #[arg(long)]
        repo: PathBuf,
    },
    /// Write a tree of N files with the size mix of a Flatpak app (many small files, a few
    /// large ones; about 27 KiB on average), half-compressible, in folders of 50.
    Tree {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        files: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Time one real `flatpak --user install` of APP from the repository at URL, in a new
    /// home with its own session bus, where flatpak's test authenticator hands out TOKEN.
    FlatpakInstall {
        #[arg(long)]
        url: String,
        #[arg(long)]
        token: String,
        #[arg(long)]
        app: String,
    },
    /// Sign a token-sized message with Ed25519 (aws-lc-rs, as the server does) on T threads
    /// for S seconds: the bare signing rate token issuance is measured against.
    Sign {
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
}

/// Runs one tool; what it measured, as JSON.
pub(crate) fn run(tool: Tool) -> serde_json::Value {
    match tool {
        Tool::Synth {
            out,
            objects,
            refs,
            gated_every,
            files_per_dir,
            fanout,
            content,
            first_ref,
        } => {
            let started = Instant::now();
            let shape = Shape {
                refs,
                gated_every,
                objects,
                files_per_dir,
                fanout,
                content,
            };
            let generated = generate_from(&out, &shape, first_ref);
            serde_json::json!({
                "repo": out,
                "objects": generated.objects,
                "refs": generated.refs.len(),
                "gated-refs": generated.refs.iter().filter(|r| r.2).count(),
                "seconds": started.elapsed().as_secs_f64(),
            })
        }
        Tool::Tree { out, files, seed } => {
            let started = Instant::now();
            let bytes = write_tree(&out, files, seed);
            serde_json::json!({
                "files": files,
                "bytes": bytes,
                "seconds": started.elapsed().as_secs_f64(),
            })
        }
        Tool::Sign { seconds, threads } => {
            let signed = sign_for(Duration::from_secs_f64(seconds), threads);
            serde_json::json!({
                "signatures": signed,
                "threads": threads,
                "per-second": signed as f64 / seconds,
            })
        }
        Tool::FlatpakInstall { url, token, app } => {
            serde_json::json!({ "seconds": flatpak_install(&url, &token, &app) })
        }
        Tool::ReadMetadata { repo } => {
            let started = Instant::now();
            let (files, bytes) = read_metadata(&repo.join("objects"));
            serde_json::json!({
                "files": files,
                "bytes": bytes,
                "seconds": started.elapsed().as_secs_f64(),
            })
        }
    }
}

/// Seconds of one real `flatpak --user install` of `app` from the repository at `url`, in a new
/// home with its own session bus, where flatpak's test authenticator hands out `token`.
pub(crate) fn flatpak_install(url: &str, token: &str, app: &str) -> f64 {
    let fx = Fixture::new();
    let bus = SessionBus::start(&fx, &[(TEST_AUTHENTICATOR_NAME, test_authenticator())]);
    let env: Vec<(String, PathBuf)> = fx.env().iter().cloned().chain([bus.env()]).collect();
    std::fs::write(fx.join("run/required-token"), token).expect("the token file");
    fx.flatpak_remote_add("bench", url);
    let started = Instant::now();
    fx.flatpak()
        .envs(&env)
        .timeout(Duration::from_secs(1800))
        .args(["--user", "install", "-y", "--noninteractive", "bench", app])
        .run();
    let seconds = started.elapsed().as_secs_f64();
    let listed = fx
        .flatpak()
        .envs(&env)
        .args(["--user", "list", "--columns=application"])
        .run();
    assert!(listed.contains(app), "{app} is not installed: {listed}");
    seconds
}

/// The `.commit`, `.dirtree` and `.dirmeta` files under `objects` read once: their count and
/// bytes.
pub(crate) fn read_metadata(objects: &Path) -> (usize, u64) {
    let (mut files, mut bytes) = (0, 0);
    for dir in std::fs::read_dir(objects).expect("objects/").flatten() {
        for entry in std::fs::read_dir(dir.path()).expect("objects/XX").flatten() {
            let path = entry.path();
            let metadata = path
                .extension()
                .is_some_and(|e| e == "commit" || e == "dirtree" || e == "dirmeta");
            if metadata {
                bytes += std::fs::read(&path).expect("reading an object").len() as u64;
                files += 1;
            }
        }
    }
    (files, bytes)
}

/// A small deterministic generator (xorshift64*), so that every run writes the same tree.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A size between `low` and `high`, uniform on a log scale.
    fn log_uniform(&mut self, low: u64, high: u64) -> u64 {
        let unit = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        let (l, h) = ((low as f64).ln(), (high as f64).ln());
        (l + unit * (h - l)).exp() as u64
    }
}

/// Writes `files` files into `out` (folders of 50) and returns their total size. Sizes: 55%
/// 64 B to 2 KiB, 30% 2 to 16 KiB, 12% 16 to 128 KiB, 2.8% 128 KiB to 1 MiB, 0.2% 1 to 8 MiB.
/// Bytes are drawn from 16 values, so content compresses to about half, as real files do.
pub(crate) fn write_tree(out: &Path, files: usize, seed: u64) -> u64 {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut total = 0;
    for i in 0..files {
        let dir = out.join(format!("files/d{:04}", i / 50));
        if i % 50 == 0 {
            std::fs::create_dir_all(&dir).expect("mkdir");
        }
        let pick = rng.next() % 1000;
        let size = match pick {
            0..550 => rng.log_uniform(64, 2 << 10),
            550..850 => rng.log_uniform(2 << 10, 16 << 10),
            850..970 => rng.log_uniform(16 << 10, 128 << 10),
            970..998 => rng.log_uniform(128 << 10, 1 << 20),
            _ => rng.log_uniform(1 << 20, 8 << 20),
        };
        let mut bytes = Vec::with_capacity(size as usize);
        while bytes.len() < size as usize {
            let word = rng.next();
            for k in 0..16 {
                bytes.push(b"abcdefghijklmnop"[((word >> (4 * k)) & 15) as usize]);
            }
        }
        bytes.truncate(size as usize);
        std::fs::write(dir.join(format!("f{i}.dat")), &bytes).expect("writing a file");
        total += size;
    }
    total
}

/// Ed25519 signatures of a token-sized message made on `threads` threads in `time`.
pub(crate) fn sign_for(time: Duration, threads: usize) -> u64 {
    use aws_lc_rs::signature::Ed25519KeyPair;
    let pkcs8 =
        Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).expect("a key");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("the key");
    // About the size of the signing input of a token for one ref.
    let message = vec![b'x'; 360];
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let deadline = Instant::now() + time;
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        for _ in 0..64 {
                            std::hint::black_box(pair.sign(std::hint::black_box(&message)));
                        }
                        n += 64;
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("signer")).sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_are_the_same_for_a_seed() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        let bytes = write_tree(&a, 120, 1);
        assert_eq!(write_tree(&b, 120, 1), bytes);
        assert_ne!(write_tree(&c, 120, 2), bytes);
        let files = tollgate_tests::fixture::files_under(&a);
        assert_eq!(files.len(), 120);
        // Folders of 50, under files/ inside the folder given.
        assert!(
            files.contains(&"files/d0000/f0.dat".to_owned()),
            "{files:?}"
        );
        assert!(
            files.contains(&"files/d0002/f119.dat".to_owned()),
            "{files:?}"
        );
        assert_eq!(
            std::fs::read(a.join("files/d0001/f77.dat")).expect("a file"),
            std::fs::read(b.join("files/d0001/f77.dat")).expect("the same file"),
        );
    }
}
