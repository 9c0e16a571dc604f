//! The plot: apply-to-Pod-created for Kennel and the floor, the expiry lag, and the
//! operator's memory and CPU over the run, side by side in one PNG.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;

use crate::{floor::Floor, kennel_run::KennelRun};

const FONT_PATHS: &[&str] =
    &["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf"];
const KENNEL: RGBColor = RGBColor(0xd9, 0x5f, 0x02);
const FLOOR: RGBColor = RGBColor(0x1b, 0x9e, 0x77);
const CPU: RGBColor = RGBColor(0x75, 0x70, 0xb3);

/// Draws the three panels into `path`.
pub fn draw(path: &Path, floor: &Floor, kennel: &KennelRun) -> Result<()> {
    register_font()?;
    let root = BitMapBackend::new(path, (1800, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let panels = root.split_evenly((1, 3));
    let created =
        [("Kennel", &kennel.samples.created, KENNEL), ("bare Pods", &floor.created_samples, FLOOR)];
    cdf(&panels[0], "Apply to Pod created (kwok nodes)", "milliseconds", &created)?;
    cdf(
        &panels[1],
        "Expiry lag: expiresAt to Pod deletion",
        "milliseconds",
        &[("Kennel", &kennel.samples.expiry_lag, KENNEL)],
    )?;
    resources(&panels[2], kennel)?;
    root.present()
        .map_err(plot_error)
        .with_context(|| format!("failed to write {}", path.display()))
}

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting failed: {e:?}")
}

/// plotters draws text with a font it is given; DejaVu ships with Debian.
fn register_font() -> Result<()> {
    let bytes = FONT_PATHS.iter().find_map(|p| std::fs::read(p).ok()).context(
        "no DejaVuSans.ttf found for the plot's text (apt-get install fonts-dejavu-core)",
    )?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("DejaVuSans.ttf is not a usable font"))
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// Cumulative distribution of each series, x from zero to the largest sample.
fn cdf(
    area: &Area,
    title: &str,
    x_label: &str,
    series: &[(&str, &Vec<f64>, RGBColor)],
) -> Result<()> {
    let max = series.iter().flat_map(|(_, s, _)| s.iter().copied()).fold(1.0, f64::max) * 1.05;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..max, 0.0..1.0)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("fraction of sandboxes")
        .label_style(("sans-serif", 16))
        .draw()
        .map_err(plot_error)?;
    for (name, samples, color) in series {
        let mut sorted = (*samples).clone();
        sorted.sort_by(f64::total_cmp);
        #[allow(clippy::cast_precision_loss)]
        let n = sorted.len().max(1) as f64;
        #[allow(clippy::cast_precision_loss)]
        let points = sorted.iter().enumerate().map(|(i, x)| (*x, (i + 1) as f64 / n));
        let color = *color;
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(3)))
            .map_err(plot_error)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 18))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)
}

/// The operator's resident memory (left axis) and CPU seconds (right axis) over time.
fn resources(area: &Area, kennel: &KennelRun) -> Result<()> {
    let samples = &kennel.samples.resources;
    let t_max = samples.last().map_or(1.0, |s| s.t_s).max(1.0);
    let rss_max = samples.iter().map(|s| s.rss_mib).fold(1.0, f64::max) * 1.2;
    let cpu_max = samples.iter().map(|s| s.cpu_s).fold(0.1, f64::max) * 1.2;
    let title = format!("Operator, {} sandboxes: memory and CPU", kennel.n);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .right_y_label_area_size(55)
        .build_cartesian_2d(0.0..t_max, 0.0..rss_max)
        .map_err(plot_error)?
        .set_secondary_coord(0.0..t_max, 0.0..cpu_max);
    chart
        .configure_mesh()
        .x_desc("seconds since the operator started")
        .y_desc("resident memory, MiB")
        .label_style(("sans-serif", 16))
        .draw()
        .map_err(plot_error)?;
    chart
        .configure_secondary_axes()
        .y_desc("CPU seconds")
        .label_style(("sans-serif", 16))
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(LineSeries::new(
            samples.iter().map(|s| (s.t_s, s.rss_mib)),
            KENNEL.stroke_width(3),
        ))
        .map_err(plot_error)?
        .label("RSS (MiB)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], KENNEL.stroke_width(3)));
    chart
        .draw_secondary_series(LineSeries::new(
            samples.iter().map(|s| (s.t_s, s.cpu_s)),
            CPU.stroke_width(3),
        ))
        .map_err(plot_error)?
        .label("CPU (s)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], CPU.stroke_width(3)));
    let (burst, expiry) = kennel.samples.marks;
    for (x, what) in [(burst, "burst"), (expiry, "expiry")] {
        chart
            .draw_series(LineSeries::new([(x, 0.0), (x, rss_max)], BLACK.mix(0.4).stroke_width(1)))
            .map_err(plot_error)?;
        chart
            .draw_series([Text::new(what, (x, rss_max * 0.95), ("sans-serif", 16))])
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::MiddleRight)
        .label_font(("sans-serif", 18))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)
}
