//! `tokens`: token issuance on SQLite (`POST /api/v1/tokens` with a license key), requests/s,
//! p50 and p99 at 1 and 64 clients, against bare Ed25519 signing on every core (the library
//! the server signs with), and against the bound a server that only signed would meet here:
//! nginx's smallest-file exchange plus one signature per token.

use std::time::Duration;

use anyhow::{Context, ensure};

use crate::machine::{self, StealMark};
use crate::serve::check_bytes;
use crate::stats::Spread;
use crate::wrk::{self, Load};
use crate::{Bench, tools};

pub(crate) fn run(bench: &mut Bench) -> anyhow::Result<()> {
    say!("== tokens: token issuance on SQLite against bare Ed25519 signing");
    let steal = StealMark::now()?;
    let repo = bench.repo()?;
    let settings = bench.settings.clone();
    let data = bench.work.join("data");
    let key = bench
        .tollgate
        .fresh_license(&data, &format!("app/{}/*", repo.app_id))?;
    let server = bench.tollgate.serve(&repo.path, &data);
    let nginx = bench.nginx(&repo, true)?;
    crate::verify::serves("nginx", nginx.addr, &repo, &[&repo.small_public], None)?;
    let body = format!("{{\"refs\": [\"{}\"]}}", repo.app_ref);
    let (status, answer) = tollgate_tests::http::json(
        server.addr,
        "POST",
        "/api/v1/tokens",
        Some(&format!("Bearer {key}")),
        Some(&serde_json::from_str(&body).context("the token request's body")?),
    );
    let issued = answer["tokens"]
        .as_object()
        .map_or(0, |tokens| tokens.keys().filter(|k| !k.is_empty()).count());
    ensure!(
        status == 200 && issued == 1,
        "the license does not get a token: {status} {answer}"
    );
    let script = bench.work.join("tokens.lua");
    std::fs::write(&script, wrk::post_json_lua(&body, &key))
        .with_context(|| format!("writing {}", script.display()))?;
    let small_size = repo.size_of(&repo.small_public)?;
    let cores = machine::cores();

    say!("{}", machine::describe()?);
    say!(
        "runs: {} x {}s, keep-alive, one license for one gated ref; the reference is",
        settings.runs,
        settings.seconds
    );
    say!("Ed25519 signing of a token-sized message on {cores} threads, measured between the runs.");
    say!(
        "The bound: nginx answering its smallest file ({small_size} bytes) at the same concurrency, N/s, is"
    );
    say!(
        "what one keep-alive HTTP exchange costs server and client here; a server that did nothing"
    );
    say!(
        "but that exchange and one signature (S/s) would issue N*S/(N+S) tokens/s: the bound, N/(N+S) of S."
    );
    say!(
        "{:<7}  {:<20}  {:<18}  {:<18}  {:<20}  {:<20}  {:<20}  {:<18}  {}",
        "clients",
        "tokens/s",
        "tokens p50 ms",
        "tokens p99 ms",
        "signatures/s",
        "tokens/s / sign/s",
        "nginx file/s",
        "bound / sign/s",
        "tokens/s / bound"
    );
    let tokens_url = format!("{}api/v1/tokens", server.url());
    let file_url = format!("{}{}", nginx.url().trim_end_matches('/'), repo.small_public);
    for clients in [1, 64] {
        let mut columns: [Vec<f64>; 8] = Default::default();
        for _ in 0..settings.runs {
            let tokens = wrk::measure(
                &Load::at(clients).script(&script),
                settings.seconds,
                &tokens_url,
            )?;
            let signs = tools::sign_for(Duration::from_secs(2), cores) as f64 / 2.0;
            let file = wrk::measure(&Load::at(clients), settings.seconds, &file_url)?;
            check_bytes("nginx", &repo.small_public, small_size, &file)?;
            let (t, s, n) = (tokens.requests_per_second, signs, file.requests_per_second);
            for (column, value) in columns.iter_mut().zip([
                t,
                tokens.p50_ms,
                tokens.p99_ms,
                s,
                t / s,
                n,
                n / (n + s),
                t * (1.0 / n + 1.0 / s),
            ]) {
                column.push(value);
            }
        }
        let [a, b, c, d, e, f, g, h] = columns.each_ref().map(|c| Spread::of(c));
        say!("{clients:<7}  {a:<20}  {b:<18}  {c:<18}  {d:<20}  {e:<20}  {f:<20}  {g:<18}  {h}");
    }
    say!("CPU steal during the measurements: {}", steal.since()?);
    drop(server);
    drop(nginx);
    let audit = bench
        .tollgate
        .admin(&data)
        .args(["--json", "audit", "--limit", "1"])
        .run();
    let audit: serde_json::Value = serde_json::from_str(&audit)
        .with_context(|| format!("`tollgate admin audit` printed {audit:?}"))?;
    ensure!(
        audit.as_array().is_some_and(|a| a.len() == 1),
        "no issued tokens were recorded: {audit}"
    );
    Ok(())
}
