//! Helpers for `scripts/bench`: generate a repository of a given size, and time the baseline
//! of reading every metadata object once.
//!
//! ```text
//! tollgate-bench synth --out DIR --objects N [--refs R] [--gated-every G] [--content]
//! tollgate-bench read-metadata --repo DIR
//! ```
//! Both print one JSON object on stdout.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Parser, Subcommand};
use tollgate_tests::synth::{Shape, generate};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    },
    /// Read every .commit, .dirtree and .dirmeta file of a repository once.
    ReadMetadata {
        #[arg(long)]
        repo: PathBuf,
    },
}

fn main() {
    let json = match Cli::parse().command {
        Command::Synth {
            out,
            objects,
            refs,
            gated_every,
            files_per_dir,
            fanout,
            content,
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
            let generated = generate(&out, &shape);
            serde_json::json!({
                "repo": out,
                "objects": generated.objects,
                "refs": generated.refs.len(),
                "gated-refs": generated.refs.iter().filter(|r| r.2).count(),
                "seconds": started.elapsed().as_secs_f64(),
            })
        }
        Command::ReadMetadata { repo } => {
            let started = Instant::now();
            let (files, bytes) = read_metadata(&repo.join("objects"));
            serde_json::json!({
                "files": files,
                "bytes": bytes,
                "seconds": started.elapsed().as_secs_f64(),
            })
        }
    };
    #[allow(clippy::print_stdout)]
    {
        println!("{json}");
    }
}

fn read_metadata(objects: &Path) -> (usize, u64) {
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
