//! `tollgate-bench`: the benchmark runner behind `scripts/bench`, and the measuring tools it
//! is made of.
//!
//! ```text
//! tollgate-bench [serve] [pull] [tokens] [index] [sendfile]   (default: the first four)
//! tollgate-bench synth --out DIR --objects N [--refs R] [--gated-every G] [--content] [--first-ref F]
//! tollgate-bench read-metadata --repo DIR
//! tollgate-bench tree --out DIR --files N [--seed S]
//! tollgate-bench sign [--seconds S] [--threads T]
//! tollgate-bench flatpak-install --url URL --token TOKEN --app APP
//! ```
//!
//! The parts measure tollgate against nginx serving the same files, in one run on one machine,
//! and print each figure as the median of `BENCH_RUNS` runs with the spread (min..max): see
//! `BENCHMARKS.md` for what each part measures and the figures so far. The settings come from
//! the environment, as `scripts/bench` has always taken them: `BENCH_RUNS` (3),
//! `BENCH_SECONDS` per wrk run (4), `BENCH_CONCURRENCY` ("1 8 32 128"), `BENCH_APP_FILES`
//! (20000), `BENCH_INDEX_SIZES` ("10000 100000 1000000"), `BENCH_INDEX_ADDED` (1000),
//! `BENCH_CHARTS` (`bench/`) and `BENCH_TOLLGATE` (the `tollgate` beside this binary). Tables
//! go to stdout, progress to stderr. Every server and client it starts listens on 127.0.0.1
//! only and is stopped when the part ends, a failure included; the tools print one JSON
//! object each. It does not build anything: `scripts/bench` builds the release binaries first.

// Before the modules, which use them.
/// A line of the benchmark's report, on stdout.
macro_rules! say {
    ($($arg:tt)*) => {{
        #[allow(clippy::print_stdout)]
        {
            println!($($arg)*);
        }
    }};
}

/// A line of progress, on stderr.
macro_rules! note {
    ($($arg:tt)*) => {{
        #[allow(clippy::print_stderr)]
        {
            eprintln!($($arg)*);
        }
    }};
}

mod chart;
mod index;
mod machine;
mod nginx;
mod process;
mod pull;
mod repo;
mod sendfile;
mod serve;
mod stats;
mod tokens;
mod tollgate;
mod tools;
mod verify;
mod wrk;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use tollgate_tests::fixture::{Fixture, set_mode};

use crate::nginx::Nginx;
use crate::repo::BenchRepo;
use crate::tollgate::Tollgate;

#[derive(Parser)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    tool: Option<tools::Tool>,
    /// The parts to run, in this order (default: serve pull tokens index).
    #[arg(value_enum)]
    parts: Vec<Part>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Part {
    Serve,
    Pull,
    Tokens,
    Index,
    Sendfile,
}

/// The settings of a run, from the `BENCH_*` variables.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) runs: usize,
    pub(crate) seconds: u32,
    pub(crate) levels: Vec<u32>,
    pub(crate) app_files: usize,
    pub(crate) index_sizes: Vec<usize>,
    pub(crate) index_added: usize,
    pub(crate) charts: PathBuf,
    pub(crate) tollgate: PathBuf,
}

impl Settings {
    fn from_env() -> anyhow::Result<Settings> {
        let here = std::env::current_dir().context("the current directory")?;
        let exe = std::env::current_exe().context("the path of tollgate-bench")?;
        let beside = exe
            .parent()
            .context("the folder of tollgate-bench")?
            .join("tollgate");
        let settings = Settings {
            runs: number("BENCH_RUNS", 3)?,
            seconds: number("BENCH_SECONDS", 4)?,
            levels: numbers("BENCH_CONCURRENCY", "1 8 32 128")?,
            app_files: number("BENCH_APP_FILES", 20000)?,
            index_sizes: numbers("BENCH_INDEX_SIZES", "10000 100000 1000000")?,
            index_added: number("BENCH_INDEX_ADDED", 1000)?,
            charts: here.join(var("BENCH_CHARTS").unwrap_or_else(|| "bench".to_owned())),
            tollgate: var("BENCH_TOLLGATE").map_or(beside, |p| here.join(p)),
        };
        if settings.runs == 0 || settings.seconds == 0 || settings.levels.is_empty() {
            bail!("BENCH_RUNS, BENCH_SECONDS and BENCH_CONCURRENCY must not be zero or empty");
        }
        if !settings.tollgate.is_file() {
            bail!(
                "{} is not built (BENCH_TOLLGATE, or the release build beside tollgate-bench; \
                 scripts/bench builds it)",
                settings.tollgate.display()
            );
        }
        Ok(settings)
    }
}

/// A variable, unless unset or empty (as `${VAR:-default}` reads it).
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn number<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is not a whole number")),
    }
}

fn numbers<T: std::str::FromStr>(name: &str, default: &str) -> anyhow::Result<Vec<T>> {
    parse_numbers(name, &var(name).unwrap_or_else(|| default.to_owned()))
}

/// Whole numbers separated by spaces, as the shell's word splitting read them.
fn parse_numbers<T: std::str::FromStr>(name: &str, text: &str) -> anyhow::Result<Vec<T>> {
    text.split_whitespace()
        .map(|v| {
            v.parse()
                .map_err(|_| anyhow::anyhow!("{name}={text:?}: {v:?} is not a whole number"))
        })
        .collect()
}

/// What the parts share: the settings, the tollgate under measurement, and a work folder (a
/// harness fixture, so that flatpak and ostree run in an isolated home) removed at the end.
#[derive(Debug)]
pub(crate) struct Bench {
    pub(crate) settings: Settings,
    pub(crate) tollgate: Tollgate,
    pub(crate) work: Fixture,
    repo: Option<BenchRepo>,
}

impl Bench {
    fn new(settings: Settings) -> Bench {
        let work = Fixture::new();
        // nginx's workers run as another user: they must be able to read the repository.
        set_mode(work.path(), 0o755);
        Bench {
            tollgate: Tollgate {
                bin: settings.tollgate.clone(),
            },
            settings,
            work,
            repo: None,
        }
    }

    /// The Flatpak repository, built the first time a part asks for it.
    pub(crate) fn repo(&mut self) -> anyhow::Result<BenchRepo> {
        if self.repo.is_none() {
            self.repo = Some(BenchRepo::build(&self.work, self.settings.app_files)?);
        }
        Ok(self.repo.clone().expect("built above"))
    }

    /// nginx serving `repo`, with `sendfile` on or off, in its own folder of the work folder.
    pub(crate) fn nginx(&self, repo: &BenchRepo, sendfile: bool) -> anyhow::Result<Nginx> {
        let dir = self
            .work
            .join(if sendfile { "nginx-on" } else { "nginx-off" });
        Nginx::start(&dir, &repo.path, sendfile, &repo.public_commit)
    }
}

fn run_parts(parts: &[Part]) -> anyhow::Result<()> {
    let parts = if parts.is_empty() {
        &[Part::Serve, Part::Pull, Part::Tokens, Part::Index][..]
    } else {
        parts
    };
    let mut bench = Bench::new(Settings::from_env()?);
    for part in parts {
        match part {
            Part::Serve => serve::run(&mut bench).context("the serve part")?,
            Part::Pull => pull::run(&mut bench).context("the pull part")?,
            Part::Tokens => tokens::run(&mut bench).context("the tokens part")?,
            Part::Index => index::run(&bench).context("the index part")?,
            Part::Sendfile => sendfile::run(&mut bench).context("the sendfile part")?,
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.tool {
        Some(tool) => {
            say!("{}", tools::run(tool));
            ExitCode::SUCCESS
        }
        None => match run_parts(&cli.parts) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                note!("tollgate-bench: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_lines() {
        let parse = |line: &str| Cli::try_parse_from(line.split_whitespace());
        let cli = parse("tollgate-bench").expect("no arguments");
        assert!(cli.tool.is_none() && cli.parts.is_empty());
        let cli = parse("tollgate-bench serve tokens index pull sendfile").expect("parts");
        assert_eq!(
            cli.parts,
            [
                Part::Serve,
                Part::Tokens,
                Part::Index,
                Part::Pull,
                Part::Sendfile
            ]
        );
        let cli = parse("tollgate-bench sign --seconds 2 --threads 4").expect("a tool");
        assert!(matches!(
            cli.tool,
            Some(tools::Tool::Sign { threads: 4, .. })
        ));
        assert!(parse("tollgate-bench serve sign").is_err());
        assert!(parse("tollgate-bench servers").is_err());
        Cli::command().debug_assert();
    }

    #[test]
    fn lists_of_numbers() {
        let check = |text: &str, expected: Option<Vec<u32>>| {
            let parsed = parse_numbers::<u32>("BENCH_CONCURRENCY", text).ok();
            assert_eq!(parsed, expected, "{text:?}");
        };
        check("1 8 32 128", Some(vec![1, 8, 32, 128]));
        check(" 8  32 ", Some(vec![8, 32]));
        check("", Some(vec![]));
        check("8,32", None);
        let error = parse_numbers::<u32>("BENCH_CONCURRENCY", "8 x").expect_err("not a number");
        assert!(error.to_string().contains("BENCH_CONCURRENCY"), "{error}");
    }
}
