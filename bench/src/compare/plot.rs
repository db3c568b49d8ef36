//! The comparison's PNG plots (plotters, bitmap backend): answered against
//! offered rate, the latency histogram on a log µs axis, and CPU per query.
//! Text is drawn with a TrueType font read from the system (Debian's
//! fonts-dejavu-core, installed by scripts/setup.sh): plotters' own font
//! stack would need fontconfig and freetype at build time.

use super::contender::Kind;
use super::report::Results;
use anyhow::{anyhow, Context};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::{Path, PathBuf};
use std::sync::Once;

pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn font() -> anyhow::Result<()> {
    static ONCE: Once = Once::new();
    let bytes =
        std::fs::read(FONT).with_context(|| format!("{FONT} (package fonts-dejavu-core)"))?;
    let mut r = Ok(());
    ONCE.call_once(|| {
        // plotters keeps the font for the life of the process.
        let b: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        if register_font("sans-serif", FontStyle::Normal, b).is_err() {
            r = Err(anyhow!("{FONT} is not a usable font"));
        }
    });
    r
}

fn color(k: Kind) -> RGBColor {
    match k {
        Kind::Direct => RGBColor(120, 120, 120),
        Kind::Xdp => RGBColor(214, 39, 40),
        Kind::XdpBusy => RGBColor(255, 127, 14),
        Kind::Socket => RGBColor(31, 119, 180),
        Kind::Dnsdist => RGBColor(44, 160, 44),
        Kind::XdpCache => RGBColor(148, 103, 189),
        Kind::DnsdistCache => RGBColor(140, 86, 75),
        Kind::XdpTier => RGBColor(227, 119, 194),
    }
}

fn name(r: &Results, k: Kind) -> String {
    r.label(k)
}

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn wrap<T>(what: &Path, r: Res<T>) -> anyhow::Result<T> {
    r.map_err(|e| anyhow!("{}: {e}", what.display()))
}

/// Writes the three plots into `dir`; returns their paths.
pub fn all(r: &Results, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    font()?;
    std::fs::create_dir_all(dir)?;
    let a = dir.join("answered_vs_offered.png");
    wrap(&a, answered_vs_offered(r, &a))?;
    let l = dir.join("latency_histogram.png");
    wrap(&l, latency_histogram(r, &l))?;
    let c = dir.join("cpu_per_query.png");
    wrap(&c, cpu_per_query(r, &c))?;
    Ok(vec![a, l, c])
}

fn legend<'a, X: Ranged, Y: Ranged>(
    ch: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    at: SeriesLabelPosition,
) -> Res<()> {
    ch.configure_series_labels()
        .position(at)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    Ok(())
}

fn answered_vs_offered(r: &Results, path: &Path) -> Res<()> {
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = r
        .rows
        .iter()
        .flat_map(|x| x.steps.iter().map(|s| s.offered as f64))
        .fold(1000.0, f64::max)
        / 1000.0;
    let mut ch = ChartBuilder::on(&root)
        .caption(
            "Answered vs offered (kxdpgun, open loop)",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..top * 1.05, 0.0..top * 1.05)?;
    ch.configure_mesh()
        .x_desc("offered, k qps")
        .y_desc("answered, k qps")
        .label_style(("sans-serif", 14))
        .draw()?;
    ch.draw_series(LineSeries::new(
        [(0.0, 0.0), (top, top)],
        ShapeStyle::from(&RGBColor(200, 200, 200)).stroke_width(1),
    ))?
    .label("answered = offered")
    .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], RGBColor(200, 200, 200)));
    for row in &r.rows {
        let c = color(row.kind);
        let pts: Vec<(f64, f64)> = row
            .steps
            .iter()
            .map(|s| (s.offered as f64 / 1000.0, s.gun.answered_pps / 1000.0))
            .collect();
        ch.draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))?
            .label(name(r, row.kind))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], c.stroke_width(2)));
        ch.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))?;
    }
    legend(&mut ch, SeriesLabelPosition::UpperLeft)?;
    root.present()?;
    Ok(())
}

fn latency_histogram(r: &Results, path: &Path) -> Res<()> {
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    // Share of answers per bucket, in percent; x at the bucket floor.
    let series: Vec<(Kind, Vec<(f64, f64)>)> = r
        .rows
        .iter()
        .filter_map(|row| {
            let l = row.mix.as_ref()?;
            let total: u64 = l.latency.iter().map(|b| b.1).sum();
            (total > 0).then(|| (row.kind, shares(&l.latency, total)))
        })
        .collect();
    let ymax = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    let mut ch = ChartBuilder::on(&root)
        .caption(
            format!(
                "Latency with {} % of answers after {} ms ({} qps)",
                r.mix.1 * 100.0,
                r.mix.0,
                r.mix_rate
            ),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d((10.0..100_000.0).log_scale(), 0.0..ymax * 1.1)?;
    ch.configure_mesh()
        .x_desc("latency, µs (log)")
        .y_desc("share of answers, %")
        .label_style(("sans-serif", 14))
        .draw()?;
    for (k, pts) in series {
        let c = color(k);
        ch.draw_series(LineSeries::new(pts, c.stroke_width(2)))?
            .label(name(r, k))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], c.stroke_width(2)));
    }
    legend(&mut ch, SeriesLabelPosition::UpperRight)?;
    root.present()?;
    Ok(())
}

/// Percent of answers per histogram bucket, empty buckets included (as
/// zeros) between the first and the last one that holds answers, so that a
/// line does not bridge the gap between the two peaks. x is the bucket's
/// floor in µs (at least 1 for the log axis).
fn shares(hist: &[(u64, u64)], total: u64) -> Vec<(f64, f64)> {
    use dnsrail_engine::stats::{bucket_floor, bucket_of, HIST_BUCKETS};
    let mut counts = vec![0u64; HIST_BUCKETS];
    for &(floor, n) in hist {
        counts[bucket_of(floor)] += n;
    }
    let first = counts.iter().position(|&n| n > 0).unwrap_or(0);
    let last = counts.iter().rposition(|&n| n > 0).unwrap_or(0);
    (first..=last)
        .map(|i| {
            (
                bucket_floor(i).max(1) as f64,
                100.0 * counts[i] as f64 / total.max(1) as f64,
            )
        })
        .collect()
}

fn cpu_per_query(r: &Results, path: &Path) -> Res<()> {
    let root = BitMapBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let bars: Vec<(Kind, f64)> = r
        .rows
        .iter()
        // A spinning worker's figure is a full core over the rate: not a cost.
        .filter(|row| row.kind != Kind::XdpBusy)
        .filter_map(|row| Some((row.kind, row.fixed.as_ref()?.us_per_query?)))
        .collect();
    let rate = r
        .rows
        .iter()
        .find_map(|x| x.fixed.as_ref().map(|f| f.rate))
        .unwrap_or(0);
    let ymax = bars.iter().map(|b| b.1).fold(1.0, f64::max);
    let n = bars.len().max(1) as f64;
    let mut ch = ChartBuilder::on(&root)
        .caption(
            format!("Balancer CPU per answered query at {rate} qps"),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..n, 0.0..ymax * 1.2)?;
    ch.configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_desc("µs of CPU per query")
        .label_style(("sans-serif", 14))
        .draw()?;
    for (i, (k, v)) in bars.iter().enumerate() {
        let x = i as f64;
        ch.draw_series(std::iter::once(Rectangle::new(
            [(x + 0.15, 0.0), (x + 0.85, *v)],
            color(*k).mix(0.8).filled(),
        )))?;
        ch.draw_series([
            Text::new(
                format!("{v:.2}"),
                (x + 0.42, *v + ymax * 0.03),
                ("sans-serif", 16),
            ),
            Text::new(
                name(r, *k),
                (x + 0.2, ymax * 0.08),
                ("sans-serif", 14).into_font().color(&WHITE),
            ),
        ])?;
    }
    root.present()?;
    Ok(())
}
