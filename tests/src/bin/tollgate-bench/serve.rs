//! `serve`: tollgate and nginx (sendfile on) serving the same Flatpak repository, requests/s
//! and p99 latency of public objects, and of gated objects with a valid token (`gated`) and
//! with a license key as Basic credentials (`basic`, what an ostree remote sends) against nginx
//! serving the same files with no check: the smallest object of each ref (`small`) and random
//! objects of each (`mix`), at each concurrency level, alternating which server goes first.
//! Prints the table `BENCHMARKS.md` records, the Basic path against the token path run by run,
//! and writes the two charts.

use anyhow::{Context, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::chart::{self, Line};
use crate::machine::{self, StealMark};
use crate::repo::BenchRepo;
use crate::stats::{Spread, WrkRun};
use crate::wrk::{self, Load};
use crate::{Bench, verify};

pub(crate) const WORKLOADS: [&str; 2] = ["small", "mix"];
pub(crate) const KINDS: [&str; 2] = ["public", "gated"];
/// What `serve` measures: [`KINDS`], and gated objects opened by Basic credentials.
const SERVE_KINDS: [&str; 3] = ["public", "gated", "basic"];

/// One wrk run's figures.
#[derive(Debug, Clone)]
struct Figure {
    workload: &'static str,
    kind: &'static str,
    level: u32,
    server: &'static str,
    run: usize,
    measured: WrkRun,
}

/// Writes `work/KIND.paths` and `work/KIND.lua` (random objects of `paths`, each request with
/// `authorization` when given) and returns the script's path.
fn random_script(
    bench: &Bench,
    kind: &str,
    paths: &[String],
    authorization: Option<&str>,
) -> anyhow::Result<std::path::PathBuf> {
    let list = bench.work.join(format!("{kind}.paths"));
    let mut text = paths.join("\n");
    text.push('\n');
    std::fs::write(&list, text).with_context(|| format!("writing {}", list.display()))?;
    let script = bench.work.join(format!("{kind}.lua"));
    std::fs::write(&script, wrk::random_paths_lua(&list, authorization))
        .with_context(|| format!("writing {}", script.display()))?;
    Ok(script)
}

/// The random-object scripts of [`KINDS`]: public objects, and gated ones with the token.
pub(crate) fn random_scripts(
    bench: &Bench,
    repo: &BenchRepo,
    token: &str,
) -> anyhow::Result<[std::path::PathBuf; 2]> {
    let auth = format!("Bearer {token}");
    Ok([
        random_script(bench, "public", &repo.public_paths, None)?,
        random_script(bench, "gated", &repo.gated_paths, Some(&auth))?,
    ])
}

/// Fails unless the run read at least `body` bytes per request: every answer carried the
/// object (wrk counts only status codes).
pub(crate) fn check_bytes(server: &str, path: &str, body: u64, run: &WrkRun) -> anyhow::Result<()> {
    ensure!(
        run.bytes_per_request() >= body as f64,
        "{server} answered {path} with {:.0} bytes per request, fewer than the object's {body}",
        run.bytes_per_request()
    );
    Ok(())
}

/// What the workloads ask for: the small objects (path, size), public then gated; the
/// random-object scripts of each of [`SERVE_KINDS`]; and the gated small object's
/// `Authorization`, token then Basic.
#[derive(Debug)]
struct Workloads<'a> {
    small: [(&'a str, u64); 2],
    scripts: [&'a std::path::Path; 3],
    authorization: [&'a str; 2],
}

/// wrk's load and URL for `workload` and `kind` on the server at `base`, and for small
/// objects the object and its size, which every answer must carry.
fn target<'a>(
    workloads: &Workloads<'a>,
    workload: &str,
    kind: &str,
    load: Load,
    base: String,
) -> (Load, String, Option<(&'a str, u64)>) {
    let which = SERVE_KINDS
        .iter()
        .position(|k| *k == kind)
        .expect("a kind of SERVE_KINDS");
    if workload == "small" {
        let (path, size) = workloads.small[which.min(1)];
        let load = match which {
            0 => load,
            gated => load.authorization(workloads.authorization[gated - 1]),
        };
        let url = format!("{}{path}", base.trim_end_matches('/'));
        (load, url, Some((path, size)))
    } else {
        (load.script(workloads.scripts[which]), base, None)
    }
}

pub(crate) fn run(bench: &mut Bench) -> anyhow::Result<()> {
    say!("== serve: tollgate against nginx (sendfile) over the same files");
    let steal = StealMark::now()?;
    let repo = bench.repo()?;
    let settings = bench.settings.clone();
    let data = bench.work.join("data");
    let key = bench
        .tollgate
        .fresh_license(&data, &format!("app/{}/*", repo.app_id))?;
    let basic = format!("Basic {}", STANDARD.encode(format!("license:{key}")));
    let server = bench.tollgate.serve(&repo.path, &data);
    let nginx = bench.nginx(&repo, true)?;
    let token = bench.tollgate.issue_token(&data, &repo.app_ref)?;
    let auth = format!("Bearer {token}");
    verify::workloads(
        server.addr,
        &[("nginx", nginx.addr)],
        &repo,
        &token,
        Some(&basic),
    )?;
    let [public_lua, gated_lua] = random_scripts(bench, &repo, &token)?;
    let basic_lua = random_script(bench, "basic", &repo.gated_paths, Some(&basic))?;
    let (small_public_size, small_gated_size) = (
        repo.size_of(&repo.small_public)?,
        repo.size_of(&repo.small_gated)?,
    );
    let workloads = Workloads {
        small: [
            (repo.small_public.as_str(), small_public_size),
            (repo.small_gated.as_str(), small_gated_size),
        ],
        scripts: [
            public_lua.as_path(),
            gated_lua.as_path(),
            basic_lua.as_path(),
        ],
        authorization: [&auth, &basic],
    };

    let mut figures = Vec::new();
    for &level in &settings.levels {
        for run in 1..=settings.runs {
            for workload in WORKLOADS {
                for kind in SERVE_KINDS {
                    let servers = if run % 2 == 1 {
                        ["tollgate", "nginx"]
                    } else {
                        ["nginx", "tollgate"]
                    };
                    for name in servers {
                        let base = if name == "nginx" {
                            nginx.url()
                        } else {
                            server.url()
                        };
                        let (load, url, small) =
                            target(&workloads, workload, kind, Load::at(level), base);
                        let measured = wrk::measure(&load, settings.seconds, &url)?;
                        if let Some((path, size)) = small {
                            check_bytes(name, path, size, &measured)?;
                        }
                        figures.push(Figure {
                            workload,
                            kind,
                            level,
                            server: name,
                            run,
                            measured,
                        });
                    }
                }
            }
        }
    }
    drop(server);
    drop(nginx);

    say!("{}", machine::describe()?);
    say!("CPU steal during the measurements: {}", steal.since()?);
    say!(
        "runs: {} x {}s per figure, wrk keep-alive (1 thread for 1 connection, else 2),",
        settings.runs,
        settings.seconds
    );
    say!(
        "access logs off; small: the smallest object only the ref reaches ({small_public_size} and"
    );
    say!("{small_gated_size} bytes); mix: random objects of the ref");
    say!(
        "({} public, {} gated); gated: with a valid token; basic: with a license key as Basic credentials,",
        repo.public_paths.len(),
        repo.gated_paths.len()
    );
    say!(
        "for tollgate, nginx serving the same files with no check. Ratios are tollgate / nginx per run."
    );
    say!(
        "{:<6} {:<6} {:>5}  {:<22} {:<22} {:<20} {:<20} {}",
        "workload",
        "kind",
        "conns",
        "tollgate req/s",
        "nginx req/s",
        "req/s ratio",
        "tollgate p99 ms",
        "p99 ratio"
    );
    std::fs::create_dir_all(&settings.charts)
        .with_context(|| format!("creating {}", settings.charts.display()))?;
    for workload in WORKLOADS {
        let mut lines = Vec::new();
        for kind in SERVE_KINDS {
            let mut medians = [Vec::new(), Vec::new()];
            for &level in &settings.levels {
                let of = |name| runs_of(&figures, workload, kind, level, name);
                let (t, n) = (of("tollgate"), of("nginx"));
                let t_rps: Vec<f64> = t.iter().map(|m| m.requests_per_second).collect();
                let n_rps: Vec<f64> = n.iter().map(|m| m.requests_per_second).collect();
                let ratios: Vec<f64> = t
                    .iter()
                    .zip(&n)
                    .map(|(t, n)| t.requests_per_second / n.requests_per_second)
                    .collect();
                let p99s: Vec<f64> = t.iter().map(|m| m.p99_ms).collect();
                let p99_ratios: Vec<f64> =
                    t.iter().zip(&n).map(|(t, n)| t.p99_ms / n.p99_ms).collect();
                say!(
                    "{:<8} {:<6} {:>5}  {:<22} {:<22} {:<20} {:<20} {}",
                    workload,
                    kind,
                    level,
                    Spread::of(&t_rps),
                    Spread::of(&n_rps),
                    Spread::of(&ratios),
                    Spread::of(&p99s),
                    Spread::of(&p99_ratios)
                );
                medians[0].push(Some(Spread::of(&t_rps).median));
                medians[1].push(Some(Spread::of(&n_rps).median));
            }
            let [t, n] = medians;
            let (colour, what) = match kind {
                "public" => (
                    "#1f77b4",
                    ["tollgate, public objects", "nginx, the same files"],
                ),
                "gated" => (
                    "#d62728",
                    [
                        "tollgate, gated, with a token",
                        "nginx, the same files, no check",
                    ],
                ),
                // nginx's line would be the gated one's again.
                _ => ("#2ca02c", ["tollgate, gated, with Basic credentials", ""]),
            };
            lines.push(Line {
                label: what[0].to_owned(),
                colour,
                dash: "none",
                values: t,
            });
            if !what[1].is_empty() {
                lines.push(Line {
                    label: what[1].to_owned(),
                    colour,
                    dash: "6 4",
                    values: n,
                });
            }
        }
        let what = if workload == "small" {
            "the smallest object of each ref".to_owned()
        } else {
            format!(
                "random objects of a {}-file app",
                thousands(settings.app_files)
            )
        };
        let file = settings.charts.join(format!("throughput-{workload}.svg"));
        let svg = chart::svg(
            &format!("tollgate and nginx, {what}"),
            &settings.levels,
            &lines,
        );
        std::fs::write(&file, svg).with_context(|| format!("writing {}", file.display()))?;
    }
    say!("Basic credentials against the token, tollgate's req/s, basic / gated per run:");
    say!(
        "{:<8} {:>5}  {}",
        "workload",
        "conns",
        "basic / token req/s"
    );
    for workload in WORKLOADS {
        for &level in &settings.levels {
            let of = |kind| runs_of(&figures, workload, kind, level, "tollgate");
            let ratios: Vec<f64> = of("basic")
                .iter()
                .zip(of("gated"))
                .map(|(basic, token)| basic.requests_per_second / token.requests_per_second)
                .collect();
            say!("{:<8} {:>5}  {}", workload, level, Spread::of(&ratios));
        }
    }
    say!(
        "charts: {}, {}",
        settings.charts.join("throughput-small.svg").display(),
        settings.charts.join("throughput-mix.svg").display()
    );
    Ok(())
}

/// The figures of one workload, kind, level and server, in run order.
fn runs_of<'f>(
    figures: &'f [Figure],
    workload: &str,
    kind: &str,
    level: u32,
    server: &str,
) -> Vec<&'f WrkRun> {
    let mut runs: Vec<(usize, &WrkRun)> = figures
        .iter()
        .filter(|f| {
            f.workload == workload && f.kind == kind && f.level == level && f.server == server
        })
        .map(|f| (f.run, &f.measured))
        .collect();
    runs.sort_by_key(|(run, _)| *run);
    runs.into_iter().map(|(_, m)| m).collect()
}

/// 20000 → "20,000".
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn each_workload_asks_for_what_it_says() {
        let workloads = Workloads {
            small: [("/objects/aa/p.filez", 74), ("/objects/bb/g.dirtree", 1)],
            scripts: [
                Path::new("/w/public.lua"),
                Path::new("/w/gated.lua"),
                Path::new("/w/basic.lua"),
            ],
            authorization: ["Bearer T", "Basic B"],
        };
        let check = |workload, kind, expected: &str, small: Option<(&str, u64)>| {
            let (load, url, picked) = target(
                &workloads,
                workload,
                kind,
                Load::at(8),
                "http://127.0.0.1:1/".to_owned(),
            );
            assert_eq!(load.args(4, &url).join(" "), expected, "{workload} {kind}");
            assert_eq!(picked, small, "{workload} {kind}");
        };
        check(
            "small",
            "public",
            "-t2 -c8 -d4s --latency http://127.0.0.1:1/objects/aa/p.filez",
            Some(("/objects/aa/p.filez", 74)),
        );
        check(
            "small",
            "gated",
            "-t2 -c8 -H Authorization: Bearer T -d4s --latency http://127.0.0.1:1/objects/bb/g.dirtree",
            Some(("/objects/bb/g.dirtree", 1)),
        );
        check(
            "small",
            "basic",
            "-t2 -c8 -H Authorization: Basic B -d4s --latency http://127.0.0.1:1/objects/bb/g.dirtree",
            Some(("/objects/bb/g.dirtree", 1)),
        );
        check(
            "mix",
            "basic",
            "-t2 -c8 -s /w/basic.lua -d4s --latency http://127.0.0.1:1/",
            None,
        );
        check(
            "mix",
            "public",
            "-t2 -c8 -s /w/public.lua -d4s --latency http://127.0.0.1:1/",
            None,
        );
        check(
            "mix",
            "gated",
            "-t2 -c8 -s /w/gated.lua -d4s --latency http://127.0.0.1:1/",
            None,
        );
    }

    #[test]
    fn thousands_separators() {
        for (n, text) in [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (20000, "20,000"),
            (1234567, "1,234,567"),
        ] {
            assert_eq!(thousands(n), text);
        }
    }
}
