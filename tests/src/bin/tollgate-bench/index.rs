//! `index`: the reachability index's build time, bytes per object and peak memory for
//! generated repositories (20 refs, half gated) of each `BENCH_INDEX_SIZES`, against the time to
//! just read every metadata object once; and its update: a running `tollgate serve` over each
//! repository, a new gated ref of `BENCH_INDEX_ADDED` objects published into it three times,
//! the update's time read from `/metrics`, against the full build.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tollgate_tests::synth::{Shape, generate_from};

use crate::machine;
use crate::stats::{Spread, fmt_g, median};
use crate::tollgate::index_figure;
use crate::{Bench, tools};

/// The shape `tollgate-bench synth` gives by default, with `objects` and `refs`.
fn shape(objects: usize, refs: usize, gated_every: usize) -> Shape {
    Shape {
        refs,
        gated_every,
        objects,
        files_per_dir: 20,
        fanout: 4,
        content: false,
    }
}

pub(crate) fn run(bench: &Bench) -> anyhow::Result<()> {
    say!("== index: build time and memory, generated repositories (20 refs, half gated)");
    say!("{}", machine::describe()?);
    say!(
        "{:<9}  {:<24}  {:<24}  {:<10}  {:<12}  {}",
        "objects",
        "index build s",
        "read metadata s",
        "build/read",
        "bytes/object",
        "peak RSS MiB"
    );
    let mut updates = Vec::new();
    for &n in &bench.settings.index_sizes {
        let repo = bench.work.join(format!("synth-{n}"));
        generate_from(&repo, &shape(n, 20, 2), 0);
        let (mut builds, mut reads, mut rss) = (Vec::new(), Vec::new(), Vec::new());
        let (mut bytes, mut objects) = (0.0, 0.0);
        for _ in 0..3 {
            let inspect = bench.tollgate.inspect(&repo)?;
            let figure = |name: &str| {
                inspect[name]
                    .as_f64()
                    .with_context(|| format!("no {name} in `tollgate inspect --json`: {inspect}"))
            };
            builds.push(figure("build-seconds")?);
            rss.push(figure("peak-rss-bytes")? / 1_048_576.0);
            bytes = figure("bytes-per-object")?;
            objects = figure("objects")?;
            let started = Instant::now();
            tools::read_metadata(&repo.join("objects"));
            reads.push(started.elapsed().as_secs_f64());
        }
        let build = median(&builds);
        say!(
            "{:<9}  {:<24}  {:<24}  {:<10.2}  {:<12.1}  {:.0}",
            objects,
            Spread::of(&builds),
            Spread::of(&reads),
            build / median(&reads),
            bytes,
            median(&rss)
        );
        updates.push((objects, build, update_times(bench, &repo)?));
        std::fs::remove_dir_all(&repo).with_context(|| format!("removing {}", repo.display()))?;
    }
    say!(
        "updates: a running tollgate serve, one new gated ref of {} objects published at a",
        bench.settings.index_added
    );
    say!("time (3 times); the index update's time against a full build of the same repository");
    say!(
        "{:<9}  {:<24}  {:<16}  {}",
        "objects",
        "update s",
        "full build s",
        "update/build"
    );
    for (objects, build, times) in updates {
        say!(
            "{:<9}  {:<24}  {:<16}  {:.4}",
            objects,
            Spread::of(&times),
            fmt_g(build, 6),
            median(&times) / build
        );
    }
    Ok(())
}

/// The index update times of a running server over `repo` while three new gated refs of
/// `BENCH_INDEX_ADDED` objects are published into it one at a time.
fn update_times(bench: &Bench, repo: &Path) -> anyhow::Result<Vec<f64>> {
    let data = bench.work.join("data-update");
    if data.exists() {
        std::fs::remove_dir_all(&data).with_context(|| format!("removing {}", data.display()))?;
    }
    let server = bench.tollgate.serve(repo, &data);
    let figure = |name: &str| {
        let metrics = server.metrics();
        index_figure(&metrics, name)
            .with_context(|| format!("no tollgate_index_{name} in /metrics:\n{metrics}"))
    };
    let mut times = Vec::new();
    for i in 1..=3 {
        let before = figure("objects")?;
        generate_from(repo, &shape(bench.settings.index_added, 1, 1), 1000 + i);
        let deadline = Instant::now() + Duration::from_secs(60);
        while figure("objects")? == before {
            if Instant::now() > deadline {
                bail!(
                    "the index did not take the new ref {i} in 60 s:\n{}",
                    server.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        times.push(figure("build_seconds")?);
    }
    let log = server.kill();
    ensure!(
        log.contains("updated in"),
        "the index was rebuilt, not updated:\n{log}"
    );
    Ok(times)
}
