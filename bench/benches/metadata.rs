//! What slurmstepd (and srun, sbatch, salloc) spend on a beamtime's metadata
//! before any Slurm or mount work: parsing the plugin's arguments, finding the
//! file through the search patterns, the trust checks on the open file, and
//! parsing it. Run by bench/run.sh, which puts the estimates into
//! docs/benchmarks.md; by hand: `cargo bench -p beamtime-bench`.
//!
//! The files live on a local file system with warm caches: this is the CPU and
//! system-call cost, not the latency of a cold network file system.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use beamtime::metadata::parse_metadata;
use beamtime::plugin_config::PluginConfig;
use beamtime::trust::{load_trusted_metadata, read_trusted};
use beamtime_bench::{measured_id, Node, FIXTURE};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

/// A site's plugstack.conf line, as in slurm-conf-examples/.
const PLUGIN_ARGS: &[&str] = &[
    "metadata=/beamline/*/current/beamtime-metadata-{id}.json",
    "metadata=/asap3/*/gpfs/*/*/data/{id}/beamtime-metadata-{id}.json",
    "source=/asap3/petra3/gpfs/{beamline}/current",
    "writable=processed,shared,scratch_bl",
    "trusted_owners=0",
];

/// Beamtimes on the node: beamline folders the matching pattern's `*` lists.
const BEAMTIMES: &[usize] = &[1, 10, 100, 1000];
/// Search patterns, all but the last without a match; 10 beamtimes.
const PATTERNS: &[usize] = &[1, 2, 5, 10, 20];
const BEAMTIMES_FOR_PATTERNS: usize = 10;

fn single_steps(c: &mut Criterion) {
    let mut group = c.benchmark_group("metadata");
    group.bench_function("plugin_config_parse", |b| {
        b.iter(|| {
            PluginConfig::parse(black_box(PLUGIN_ARGS.iter().copied())).expect("valid arguments")
        })
    });
    let origin = Path::new("/beamline/p11/current/beamtime-metadata-11099001.json");
    group.bench_function("parse", |b| {
        b.iter(|| parse_metadata(black_box(FIXTURE), origin).expect("the fixture parses"))
    });
    let node = Node::build(1, 1);
    let file = node.metadata_file();
    group.bench_function("read_trusted", |b| {
        b.iter(|| read_trusted(black_box(&file), node.policy()).expect("a trusted file"))
    });
    group.finish();
}

fn discovery(c: &mut Criterion) {
    let id = measured_id();
    let mut group = c.benchmark_group("load_trusted_metadata");
    for &beamtimes in BEAMTIMES {
        let node = Node::build(beamtimes, 1);
        group.bench_with_input(
            BenchmarkId::new("beamtimes", beamtimes),
            &node,
            |b, node| {
                b.iter(|| {
                    load_trusted_metadata(&id, node.search(), node.policy())
                        .expect("found and trusted")
                })
            },
        );
    }
    for &patterns in PATTERNS {
        let node = Node::build(BEAMTIMES_FOR_PATTERNS, patterns);
        group.bench_with_input(BenchmarkId::new("patterns", patterns), &node, |b, node| {
            b.iter(|| {
                load_trusted_metadata(&id, node.search(), node.policy()).expect("found and trusted")
            })
        });
    }
    group.finish();
}

/// Short runs: the whole suite takes about a minute on two cores, and the
/// estimates' confidence intervals (reported) say whether that was enough.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! { name = benches; config = config(); targets = single_steps, discovery }
criterion_main!(benches);
