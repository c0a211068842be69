//! `sendfile` (not in the default run): random objects of each ref at 32 connections from
//! tollgate, nginx with sendfile and nginx without it, in turn in each run: whether sendfile is
//! what sets nginx apart on the random mix.

use std::collections::HashMap;

use crate::machine::{self, StealMark};
use crate::serve::{KINDS, random_scripts};
use crate::stats::Spread;
use crate::wrk::{self, Load};
use crate::{Bench, verify};

const SERVERS: [&str; 3] = ["tollgate", "nginx-on", "nginx-off"];

pub(crate) fn run(bench: &mut Bench) -> anyhow::Result<()> {
    say!("== sendfile: random objects from tollgate, nginx with sendfile and nginx without");
    let steal = StealMark::now()?;
    let repo = bench.repo()?;
    let settings = bench.settings.clone();
    let data = bench.work.join("data");
    let server = bench.tollgate.serve(&repo.path, &data);
    let off = bench.nginx(&repo, false)?;
    let on = bench.nginx(&repo, true)?;
    let token = bench.tollgate.issue_token(&data, &repo.app_ref)?;
    verify::workloads(
        server.addr,
        &[
            ("nginx with sendfile", on.addr),
            ("nginx without sendfile", off.addr),
        ],
        &repo,
        &token,
        None,
    )?;
    let [public_lua, gated_lua] = random_scripts(bench, &repo, &token)?;
    // (kind, server) → requests/s of each run, in order.
    let mut figures: HashMap<(&str, &str), Vec<f64>> = HashMap::new();
    for _ in 0..settings.runs {
        for kind in KINDS {
            let script = if kind == "public" {
                &public_lua
            } else {
                &gated_lua
            };
            for name in SERVERS {
                let url = match name {
                    "tollgate" => server.url(),
                    "nginx-on" => on.url(),
                    _ => off.url(),
                };
                let measured = wrk::measure(&Load::at(32).script(script), settings.seconds, &url)?;
                figures
                    .entry((kind, name))
                    .or_default()
                    .push(measured.requests_per_second);
            }
        }
    }
    drop(off);
    drop(server);
    drop(on);
    say!("{}", machine::describe()?);
    say!("CPU steal during the measurements: {}", steal.since()?);
    say!(
        "runs: {} x {}s per figure, wrk -t2 -c32, random objects of the ref; ratios per run.",
        settings.runs,
        settings.seconds
    );
    say!(
        "{:<6}  {:<22} {:<22} {:<22} {:<18} {:<18} {}",
        "kind",
        "tollgate req/s",
        "nginx, sendfile",
        "nginx, no sendfile",
        "tollgate / nginx",
        "tollgate / no sf",
        "no sf / sendfile"
    );
    for kind in KINDS {
        let of = |name: &str| figures.get(&(kind, name)).cloned().unwrap_or_default();
        let ratio = |a: &str, b: &str| {
            let ratios: Vec<f64> = of(a).iter().zip(of(b)).map(|(a, b)| a / b).collect();
            Spread::of(&ratios)
        };
        say!(
            "{:<6}  {:<22} {:<22} {:<22} {:<18} {:<18} {}",
            kind,
            Spread::of(&of("tollgate")),
            Spread::of(&of("nginx-on")),
            Spread::of(&of("nginx-off")),
            ratio("tollgate", "nginx-on"),
            ratio("tollgate", "nginx-off"),
            ratio("nginx-off", "nginx-on")
        );
    }
    Ok(())
}
