//! `dnsrail-bench compare` end to end, in a short configuration: every
//! contender is started on the namespace topology, measured with each tool,
//! stopped, and the results turn into the markdown section and three PNGs.
//! Figures are not judged here (a shared machine); that each measurement
//! happened and carried traffic is.

use dnsrail_bench::compare::{self, contender::Bins, contender::Kind};
use std::path::PathBuf;

fn target_bin(name: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(bin.exists(), "{} missing", bin.display());
    bin.display().to_string()
}

#[test]
fn short_comparison_measures_every_contender_and_writes_table_and_plots() {
    if !dnsrail_bench::netns::is_root() {
        dnsrail_bench::netns::skip("compare needs root (namespaces, XDP)");
        return;
    }
    let spec = compare::Spec {
        prefix: "drq".into(),
        backends: 2,
        contenders: Kind::ALL.to_vec(),
        rates: vec![10_000],
        secs: 1,
        cpu_rate: 10_000,
        cpu_secs: 1,
        perf_secs: 1,
        lat_rate: 2_000,
        lat_queries: 2_000,
        mix_rate: 1_000,
        mix_queries: 1_000,
        mix_delay_ms: 20,
        mix_fraction: 0.2,
        hit_pct: 90,
        // Few enough to be cached early in a short run.
        hot_names: 50,
        bins: Bins {
            engine: target_bin("dnsrail"),
            bench: env!("CARGO_BIN_EXE_dnsrail-bench").into(),
            dnsdist: "dnsdist".into(),
        },
        command: "cargo test --test compare".into(),
    };
    let rmem = || std::fs::read_to_string("/proc/sys/net/core/rmem_max").unwrap();
    let rmem_before = rmem();
    let r = compare::run(&spec).unwrap_or_else(|e| panic!("{e:#}"));
    // The run raises the socket buffer limit for dnsdist and puts it back.
    assert_eq!(rmem(), rmem_before);
    assert_eq!(r.rows.len(), Kind::ALL.len());
    assert!(r
        .dnsdist_version
        .as_deref()
        .is_some_and(|v| v.starts_with('1')));
    for row in &r.rows {
        let what = row.kind.label();
        let step = &row.steps[0];
        assert!(
            step.gun.answered_pps > 0.0,
            "{what}: sweep answered nothing"
        );
        assert!(row.perf.is_some_and(|p| p.qps > 0.0), "{what}: dnsperf");
        let lat = row.latency.as_ref().unwrap();
        assert!(lat.answered > 0 && lat.p50_us.is_some(), "{what}: {lat:?}");
        assert_eq!(lat.wrong_question, 0, "{what}: wrong answers");
        let mix = row.mix.as_ref().unwrap();
        let slow: u64 = mix
            .latency
            .iter()
            .filter(|b| b.0 >= 15_000)
            .map(|b| b.1)
            .sum();
        let fast: u64 = mix
            .latency
            .iter()
            .filter(|b| b.0 < 5_000)
            .map(|b| b.1)
            .sum();
        if row.kind.cached() {
            // Nine queries in ten ask a popular name, answered from the
            // cache once held: few wait for a slow backend, and the tail's
            // NXDOMAIN names (1 in 7 of a tenth) are rare.
            assert!(
                mix.answered > 0 && slow * 10 < mix.answered && fast * 10 > mix.answered * 8,
                "{what}: the cache did not answer the mix: {mix:?}"
            );
            assert!(mix.nxdomain * 20 < mix.answered, "{what}: {mix:?}");
            // Hits: the share of answered queries no backend received. Not
            // all (a tenth ask new names), not none.
            let hits = row.fixed.as_ref().and_then(|f| f.hit_pct());
            assert!(
                hits.is_some_and(|h| (70.0..97.0).contains(&h)),
                "{what}: hit rate {hits:?}"
            );
            assert!(step.hit_pct().is_some(), "{what}: {step:?}");
            if row.kind == Kind::XdpCache || row.kind == Kind::XdpTier {
                let c = row
                    .engine_cache
                    .as_ref()
                    .expect("the engine's cache report");
                assert!(c.hits > 0 && c.inserts > 0, "{what}: {c:?}");
                // With the tier, most hits are the XDP program's; without,
                // none are.
                if row.kind == Kind::XdpTier {
                    assert!(c.xdp_hits * 2 > c.hits, "{what}: {c:?}");
                } else {
                    assert_eq!(c.xdp_hits, 0, "{what}: {c:?}");
                }
            }
        } else {
            // The mix: about a fifth of the answers wait 20 ms, the rest come
            // at once. Asserted as two populations, each at least a tenth, not
            // as shares of a fixed split: on a starved 2-vCPU machine (a
            // busy-polling contender owns one of the two CPUs) fast answers
            // queue behind slow ones and the split moves.
            assert!(
                mix.answered > 0 && slow * 10 > mix.answered && fast * 10 > mix.answered,
                "{what}: no latency mix: {mix:?}"
            );
            // The synthetic backend answers NXDOMAIN under nx.example: 1 name in 7.
            assert!(
                mix.nxdomain * 10 > mix.answered && mix.nxdomain * 5 < mix.answered,
                "{what}: NXDOMAIN share {mix:?}"
            );
            assert!(row
                .fixed
                .as_ref()
                .is_none_or(|f| f.backend_queries.is_none()));
        }
        match row.kind {
            Kind::Direct => assert!(row.fixed.is_none()),
            _ => {
                let f = row.fixed.as_ref().unwrap();
                assert!(f.us_per_query.is_some_and(|v| v > 0.0), "{what}: {f:?}");
                // The sweep read the balancer's CPU and, for dnsrail, its report.
                assert!(step.usage.proc_pct.is_some(), "{what}: {step:?}");
            }
        }
    }

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compare");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let doc = dir.join("benchmarks.md");
    std::fs::write(&doc, "# Benchmarks\n\nkept\n").unwrap();
    let md = compare::write(
        &r,
        &dir,
        Some(compare::Doc {
            path: &doc,
            section: "compare",
        }),
    )
    .unwrap();
    for k in Kind::ALL {
        assert!(md.contains(&r.label(k)), "{md}");
    }
    assert!(md.contains("AF_XDP max qps ≥ 4× dnsdist's"), "{md}");
    for name in [
        "dnsrail with the XDP answer tier",
        "dnsrail, cache in the workers only",
    ] {
        assert!(
            md.contains(&format!("cached, {name}: CPU per query ≤ 1/3 of dnsdist's")),
            "{md}"
        );
    }
    let text = std::fs::read_to_string(&doc).unwrap();
    assert!(text.starts_with("# Benchmarks\n\nkept\n") && text.contains("<!-- compare:end -->"));
    for png in [
        "answered_vs_offered.png",
        "latency_histogram.png",
        "cpu_per_query.png",
    ] {
        let b = std::fs::read(dir.join(png)).unwrap();
        assert!(b.starts_with(b"\x89PNG") && b.len() > 5_000, "{png}");
    }
    // The results file reads back into the same table (floats may differ
    // in their last digit, the rounded figures not).
    let back: compare::report::Results =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    // The plots lie beside the document here.
    assert!(md.contains("](./cpu_per_query.png)"), "{md}");
    assert_eq!(back.markdown_linking("."), md);
}

#[test]
fn bad_compare_options_are_refused_with_what_is_wrong() {
    // The load driver's mix options too: refused before anything is sent.
    let load = ["load", "--target", "127.0.0.1:9", "--queries", "1"];
    for (cmd, args, says) in [
        (&["compare"][..], &["--secs", "0"][..], "--secs"),
        (&["compare"], &["--rates", "1000,0"], "--rates"),
        (&["compare"], &["--mix-fraction", "1.5"], "not a fraction"),
        (&["compare"], &["--backends", "9"], "--backends"),
        (
            &["compare"],
            &["--contenders", "xdp,nope"],
            "invalid value 'nope' for '--contenders",
        ),
        (&["compare"], &["--prefix", "xx"], "must start with \"dr\""),
        (&["compare"], &["--hit-pct", "0"], "--hit-pct"),
        (&["compare"], &["--hot-names", "0"], "--hot-names"),
        (&load, &["--hot-pct", "101"], "--hot-pct"),
        (&load, &["--hot-names", "0"], "--hot-names"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dnsrail-bench"))
            .args(cmd)
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{cmd:?} {args:?}: {err}"
        );
    }
}
