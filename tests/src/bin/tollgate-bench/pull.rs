//! `pull`: the wall time of a real `ostree pull` of the gated app (every object, no deltas)
//! into a new bare-user repository, and of a real `flatpak install` of it with its runtime in
//! a new home, from tollgate with a token and from nginx, alternating which goes first.

use std::time::{Duration, Instant};

use anyhow::Context;
use tollgate_tests::cmd::Cmd;

use crate::machine::{self, StealMark};
use crate::repo::BenchRepo;
use crate::stats::Spread;
use crate::{Bench, tools};

/// Seconds of one `ostree pull` of the app from `url` (with `token` when given) into a new
/// repository; the first run's repository is checked by `ostree fsck`.
fn ostree_pull(
    bench: &Bench,
    repo: &BenchRepo,
    url: &str,
    token: Option<&str>,
    run: usize,
) -> anyhow::Result<f64> {
    let fx = &bench.work;
    let client = fx.ostree_client(url);
    Cmd::new("sync").run();
    let started = Instant::now();
    fx.pull(&client, &repo.app_ref, token)
        .timeout(Duration::from_secs(1800))
        .run();
    let seconds = started.elapsed().as_secs_f64();
    if run == 1 {
        fx.fsck(&client);
    }
    std::fs::remove_dir_all(&client).with_context(|| format!("removing {}", client.display()))?;
    Ok(seconds)
}

/// Runs `time_one(server, url, run)` against tollgate and nginx `runs` times, alternating which
/// goes first; prints both times and their ratio.
fn compare_times(
    runs: usize,
    tollgate_url: &str,
    nginx_url: &str,
    mut time_one: impl FnMut(&str, &str, usize) -> anyhow::Result<f64>,
) -> anyhow::Result<[String; 3]> {
    let (mut t_times, mut n_times, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs {
        let order = if run % 2 == 1 {
            ["tollgate", "nginx"]
        } else {
            ["nginx", "tollgate"]
        };
        let (mut t, mut n) = (0.0, 0.0);
        for server in order {
            if server == "tollgate" {
                t = time_one(server, tollgate_url, run)?;
            } else {
                n = time_one(server, nginx_url, run)?;
            }
        }
        t_times.push(t);
        n_times.push(n);
        ratios.push(t / n);
    }
    Ok([
        format!("tollgate, with a token, s: {}", Spread::of(&t_times)),
        format!("nginx, s:                  {}", Spread::of(&n_times)),
        format!("tollgate / nginx:          {}", Spread::of(&ratios)),
    ])
}

pub(crate) fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let repo = bench.repo()?;
    let runs = bench.settings.runs;
    let data = bench.work.join("data");
    let server = bench.tollgate.serve(&repo.path, &data);
    let nginx = bench.nginx(&repo, true)?;
    let token = bench.tollgate.issue_token(&data, &repo.app_ref)?;
    crate::verify::workloads(server.addr, &[("nginx", nginx.addr)], &repo, &token, None)?;
    let (tollgate_url, nginx_url) = (server.url(), nginx.url());

    say!("== pull: ostree pull of the gated app, from tollgate with a token and from nginx");
    let steal = StealMark::now()?;
    let figures = compare_times(runs, &tollgate_url, &nginx_url, |server, url, run| {
        let token = (server == "tollgate").then_some(token.as_str());
        ostree_pull(bench, &repo, url, token, run)
    })?;
    say!("{}", machine::describe()?);
    say!("CPU steal during the measurements: {}", steal.since()?);
    say!(
        "runs: {runs}, each into a new bare-user repository, every object one request (no deltas);"
    );
    say!("the app: {} objects", repo.app_objects);
    for line in figures {
        say!("{line}");
    }

    say!(
        "== pull: flatpak install of the gated app and its runtime, tollgate with a token and nginx"
    );
    let steal = StealMark::now()?;
    let figures = compare_times(runs, &tollgate_url, &nginx_url, |_, url, _| {
        Cmd::new("sync").run();
        Ok(tools::flatpak_install(url, &token, &repo.app_id))
    })?;
    say!("CPU steal during the measurements: {}", steal.since()?);
    say!(
        "runs: {runs}, each into a new home (flatpak --user), the test authenticator handing out the"
    );
    say!("token (nginx gets it too, and ignores it); the runtime is installed with the app");
    for line in figures {
        say!("{line}");
    }
    drop(server);
    drop(nginx);
    Ok(())
}
