//! The reachability index of a generated repository, through `tollgate inspect`: every object
//! counted once, every ref judged right, and the memory its build needs.

use serde_json::Value;

use crate::cmd::Cmd;
use crate::fixture::Fixture;
use crate::server::tollgate_bin;
use crate::synth::{Shape, generate};

#[test]
fn inspect_reports_every_object_and_verdict_and_the_build_stays_small() {
    let fx = Fixture::new();
    let shape = Shape {
        refs: 20,
        gated_every: 2,
        objects: 100_000,
        files_per_dir: 20,
        fanout: 4,
        content: false,
    };
    let generated = generate(&fx.join("repo"), &shape);
    assert!(
        generated.objects >= 100_000,
        "generated {}",
        generated.objects
    );
    // Measured by the kernel (VmHWM), not by the index's own arithmetic: what building the
    // index of 100,000 objects adds to the process's peak memory, including what it frees again.
    // The build's threads make the peak swing from run to run: the median of three.
    let mut runs: Vec<(u64, Value)> = (0..3)
        .map(|_| {
            let out = Cmd::new(tollgate_bin())
                .args(["inspect", "--json", "--repo"])
                .arg(&generated.repo)
                .run();
            let report: Value = serde_json::from_str(&out).unwrap();
            let objects = report["objects"].as_u64().unwrap();
            assert_eq!(
                objects, generated.objects as u64,
                "every generated object is indexed once"
            );
            let peak = report["peak-rss-bytes"].as_u64().unwrap();
            let before = report["peak-rss-bytes-before-build"].as_u64().unwrap();
            (peak.saturating_sub(before) / objects, report)
        })
        .collect();
    runs.sort_by_key(|r| r.0);
    let all: Vec<u64> = runs.iter().map(|r| r.0).collect();
    let (per_object, report) = runs.swap_remove(1);
    let objects = report["objects"].as_u64().unwrap();
    assert!(
        per_object <= 400,
        "building took {per_object} bytes an object at its peak (median of {all:?}): {report}"
    );
    assert_eq!(report["gated-refs"], 10);
    // Half the refs are gated and no two refs share an object (but the dirmeta): half public.
    let public = report["public-objects"].as_u64().unwrap();
    assert!(
        public.abs_diff(objects / 2) < objects / 20,
        "{public} public of {objects}"
    );
    let refs = report["refs"].as_array().unwrap();
    for r in refs {
        let gated_commit = generated.refs.iter().find(|g| g.0 == r["ref"]).unwrap().2;
        assert_eq!(r["gated"].as_bool().unwrap(), gated_commit, "{r}");
    }
}
