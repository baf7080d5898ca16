//! Charts saved as PNG: learning curves, estimator comparisons, histograms, reliability
//! diagrams and predictive bands, drawn without any system library.
//!
//! A [`Chart`] collects series (lines, shaded bands, bars, points) in data coordinates and
//! renders them on round-numbered axes with a legend:
//!
//! ```
//! use stograd_nn::plot::{self, Chart};
//!
//! let xs: Vec<f64> = (0..=50).map(|i| i as f64 / 10.0).collect();
//! let (edges, counts) = plot::histogram(&[0.1, 0.4, 0.45, 0.9, 0.95, 0.97], 0.0, 1.0, 4)?;
//! let path = std::env::temp_dir().join("stograd-nn-plot.png");
//! Chart::new("predictive mean ± 2σ")
//!     .x_label("x")
//!     .y_label("y")
//!     .band("± 2σ", xs.iter().map(|&x| (x, x.sin() - 0.3, x.sin() + 0.3)))
//!     .line("mean", xs.iter().map(|&x| (x, x.sin())))
//!     .bars("counts / 10", &edges, &counts.iter().map(|c| c / 10.0).collect::<Vec<_>>())
//!     .save(&path)?;
//! # Ok::<(), stograd_nn::Error>(())
//! ```
//!
//! Points with a non-finite coordinate are left out (a line breaks there), so a diverged run
//! shows as a gap rather than a failed picture.

mod canvas;
mod font;
mod ticks;

use std::path::Path;

use canvas::Canvas;
pub use canvas::Color;

use crate::{Error, Result};

/// Colour `i` of the chart palette (ten distinguishable colours, then repeating).
pub fn palette(i: usize) -> Color {
    const COLORS: [Color; 10] = [
        Color(31, 119, 180),
        Color(255, 127, 14),
        Color(44, 160, 44),
        Color(214, 39, 40),
        Color(148, 103, 189),
        Color(140, 86, 75),
        Color(227, 119, 194),
        Color(127, 127, 127),
        Color(188, 189, 34),
        Color(23, 190, 207),
    ];
    COLORS[i % COLORS.len()]
}

/// Counts `values` in `bins` equal bins over `[lo, hi]`: returns the `bins + 1` edges and
/// the counts. Values outside the range, and NaN, are not counted; `hi` falls in the last bin.
///
/// # Errors
/// [`Error::InvalidArgument`] when `bins` is zero or the range is not finite and increasing.
pub fn histogram(values: &[f64], lo: f64, hi: f64, bins: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    if bins == 0 {
        return Err(invalid("bins", "positive", 0.0));
    }
    check_range("histogram range", lo, hi)?;
    let width = (hi - lo) / bins as f64;
    let edges = (0..=bins).map(|i| lo + i as f64 * width).collect();
    let mut counts = vec![0.0; bins];
    for &v in values.iter().filter(|v| (lo..=hi).contains(*v)) {
        counts[(((v - lo) / width) as usize).min(bins - 1)] += 1.0;
    }
    Ok((edges, counts))
}

/// What a series draws.
#[derive(Clone, Debug)]
enum Mark {
    Line(Vec<(f64, f64)>),
    Band(Vec<(f64, f64, f64)>),
    Bars { edges: Vec<f64>, heights: Vec<f64> },
    Points(Vec<(f64, f64)>),
}

#[derive(Clone, Debug)]
struct Series {
    label: String,
    color: Color,
    mark: Mark,
}

/// A chart: a title, axis labels, optional fixed ranges and the series to draw, in the
/// order added (later series on top). Each series takes the next [`palette`] colour unless
/// [`Chart::colored`] says otherwise; series with an empty label stay out of the legend.
///
/// ```
/// use stograd_nn::plot::Chart;
///
/// let epochs = [(1.0, 164.1), (2.0, 121.2), (3.0, 114.4)];
/// Chart::new("VAE on MNIST")
///     .x_label("epoch")
///     .y_label("loss per example")
///     .line("train", epochs)
///     .points("", epochs)
///     .save(std::env::temp_dir().join("stograd-nn-chart.png"))?;
/// # Ok::<(), stograd_nn::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Chart {
    title: String,
    x_label: String,
    y_label: String,
    x_range: Option<(f64, f64)>,
    y_range: Option<(f64, f64)>,
    size: (usize, usize),
    series: Vec<Series>,
}

/// Text is the 5×7 font at this many pixels per font pixel.
const TEXT_SCALE: i64 = 2;
const CHAR_H: i64 = 7 * TEXT_SCALE;

impl Chart {
    /// An empty 720 × 480 chart.
    pub fn new(title: impl Into<String>) -> Self {
        Chart {
            title: title.into(),
            x_label: String::new(),
            y_label: String::new(),
            x_range: None,
            y_range: None,
            size: (720, 480),
            series: Vec::new(),
        }
    }

    /// The label under the x axis.
    pub fn x_label(mut self, label: impl Into<String>) -> Self {
        self.x_label = label.into();
        self
    }

    /// The label beside the y axis.
    pub fn y_label(mut self, label: impl Into<String>) -> Self {
        self.y_label = label.into();
        self
    }

    /// Fixes the x axis to `[lo, hi]` instead of fitting the data (checked by [`Chart::save`]).
    pub fn x_range(mut self, lo: f64, hi: f64) -> Self {
        self.x_range = Some((lo, hi));
        self
    }

    /// Fixes the y axis to `[lo, hi]` instead of fitting the data (checked by [`Chart::save`]).
    pub fn y_range(mut self, lo: f64, hi: f64) -> Self {
        self.y_range = Some((lo, hi));
        self
    }

    /// The picture's size in pixels (checked by [`Chart::save`]).
    pub fn size(mut self, width: usize, height: usize) -> Self {
        self.size = (width, height);
        self
    }

    fn push(mut self, label: impl Into<String>, mark: Mark) -> Self {
        let color = palette(self.series.len());
        self.series.push(Series {
            label: label.into(),
            color,
            mark,
        });
        self
    }

    /// A polyline through `points` `(x, y)`, in the given order.
    pub fn line(
        self,
        label: impl Into<String>,
        points: impl IntoIterator<Item = (f64, f64)>,
    ) -> Self {
        self.push(label, Mark::Line(points.into_iter().collect()))
    }

    /// A shaded band between `lo` and `hi` along `x`, from points `(x, lo, hi)` sorted by `x`.
    pub fn band(
        self,
        label: impl Into<String>,
        points: impl IntoIterator<Item = (f64, f64, f64)>,
    ) -> Self {
        self.push(label, Mark::Band(points.into_iter().collect()))
    }

    /// Bars from 0 to `heights[i]` over `[edges[i], edges[i + 1]]`: a histogram (see
    /// [`histogram`]) or a reliability diagram. `edges` must be one longer than `heights`
    /// (checked by [`Chart::save`]).
    pub fn bars(self, label: impl Into<String>, edges: &[f64], heights: &[f64]) -> Self {
        let mark = Mark::Bars {
            edges: edges.to_vec(),
            heights: heights.to_vec(),
        };
        self.push(label, mark)
    }

    /// A dot at each of `points` `(x, y)`.
    pub fn points(
        self,
        label: impl Into<String>,
        points: impl IntoIterator<Item = (f64, f64)>,
    ) -> Self {
        self.push(label, Mark::Points(points.into_iter().collect()))
    }

    /// Gives the series added last the colour `color`.
    pub fn colored(mut self, color: Color) -> Self {
        if let Some(last) = self.series.last_mut() {
            last.color = color;
        }
        self
    }

    /// Renders the chart and writes it as an RGB PNG, atomically.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a size below 200 × 150, a fixed range that is not
    /// finite and increasing, or bars whose edges are not one longer than their heights;
    /// [`Error::Io`] when the file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let c = self.render()?;
        let path = path.as_ref();
        crate::image::write_png(path, c.width, c.height, png::ColorType::Rgb, &c.pixels)
    }

    fn validate(&self) -> Result<()> {
        let (w, h) = self.size;
        if w < 200 {
            return Err(invalid("chart width", "at least 200 pixels", w as f64));
        }
        if h < 150 {
            return Err(invalid("chart height", "at least 150 pixels", h as f64));
        }
        if let Some((lo, hi)) = self.x_range {
            check_range("x range", lo, hi)?;
        }
        if let Some((lo, hi)) = self.y_range {
            check_range("y range", lo, hi)?;
        }
        for s in &self.series {
            if let Mark::Bars { edges, heights } = &s.mark
                && edges.len() != heights.len() + 1
            {
                return Err(invalid(
                    "bar edges",
                    "one more than the bar heights",
                    edges.len() as f64,
                ));
            }
        }
        Ok(())
    }

    /// The data's extent on each axis (finite coordinates only), bars from 0.
    fn extent(&self) -> ((f64, f64), (f64, f64)) {
        let (mut xs, mut ys) = (
            (f64::INFINITY, f64::NEG_INFINITY),
            (f64::INFINITY, f64::NEG_INFINITY),
        );
        let mut see = |x: f64, y: f64| {
            if x.is_finite() && y.is_finite() {
                xs = (xs.0.min(x), xs.1.max(x));
                ys = (ys.0.min(y), ys.1.max(y));
            }
        };
        for s in &self.series {
            match &s.mark {
                Mark::Line(p) | Mark::Points(p) => p.iter().for_each(|&(x, y)| see(x, y)),
                Mark::Band(p) => p.iter().for_each(|&(x, lo, hi)| {
                    see(x, lo);
                    see(x, hi);
                }),
                Mark::Bars { edges, heights } => {
                    for (i, &h) in heights.iter().enumerate() {
                        see(edges[i], h);
                        see(edges[i + 1], 0.0);
                    }
                }
            }
        }
        (padded(xs, 0.0), padded(ys, 0.05))
    }

    fn render(&self) -> Result<Canvas> {
        self.validate()?;
        let (data_x, data_y) = self.extent();
        let (x_lo, x_hi) = self.x_range.unwrap_or(data_x);
        let (y_lo, y_hi) = self.y_range.unwrap_or(data_y);
        let (x_ticks, x_step) = ticks::ticks(x_lo, x_hi, 6);
        let (y_ticks, y_step) = ticks::ticks(y_lo, y_hi, 5);
        let y_labels: Vec<String> = y_ticks.iter().map(|&v| ticks::label(v, y_step)).collect();
        let widest = y_labels
            .iter()
            .map(|l| Canvas::text_width(l, TEXT_SCALE))
            .max()
            .unwrap_or(0);

        let (width, height) = (self.size.0 as i64, self.size.1 as i64);
        let y_title = if self.y_label.is_empty() {
            0
        } else {
            CHAR_H + 10
        };
        let x_title = if self.x_label.is_empty() {
            0
        } else {
            CHAR_H + 8
        };
        // room for half of the last x label past the frame
        let last_x = x_ticks.last().map_or(0, |&t| {
            Canvas::text_width(&ticks::label(t, x_step), TEXT_SCALE) / 2
        });
        let (left, right) = (10 + y_title + widest + 8, width - 12 - last_x.max(8));
        let (top, bottom) = (CHAR_H + 20, height - (CHAR_H + 16 + x_title));
        let to_px = |x: f64| left as f64 + (x - x_lo) / (x_hi - x_lo) * (right - left) as f64;
        let to_py = |y: f64| bottom as f64 - (y - y_lo) / (y_hi - y_lo) * (bottom - top) as f64;

        let mut c = Canvas::new(self.size.0, self.size.1);
        for &t in &x_ticks {
            let px = to_px(t).round() as i64;
            c.fill_rect(px, top, px + 1, bottom, Color::GRID, 1.0);
        }
        for &t in &y_ticks {
            let py = to_py(t).round() as i64;
            c.fill_rect(left, py, right, py + 1, Color::GRID, 1.0);
        }

        c.clip = (left, top, right, bottom);
        for s in &self.series {
            draw(&mut c, s, &to_px, &to_py);
        }
        c.clip = (0, 0, width, height);

        // the frame, ticks and their labels
        for (x0, y0, x1, y1) in [
            (left, top, right, top + 1),
            (left, bottom, right + 1, bottom + 1),
            (left, top, left + 1, bottom),
            (right, top, right + 1, bottom),
        ] {
            c.fill_rect(x0, y0, x1, y1, Color::BLACK, 1.0);
        }
        for &t in &x_ticks {
            let px = to_px(t).round() as i64;
            c.fill_rect(px, bottom, px + 1, bottom + 5, Color::BLACK, 1.0);
            let l = ticks::label(t, x_step);
            let w = Canvas::text_width(&l, TEXT_SCALE);
            c.text(&l, px - w / 2, bottom + 8, TEXT_SCALE, Color::BLACK, false);
        }
        for (&t, l) in y_ticks.iter().zip(&y_labels) {
            let py = to_py(t).round() as i64;
            c.fill_rect(left - 5, py, left, py + 1, Color::BLACK, 1.0);
            let w = Canvas::text_width(l, TEXT_SCALE);
            c.text(
                l,
                left - 8 - w,
                py - CHAR_H / 2,
                TEXT_SCALE,
                Color::BLACK,
                false,
            );
        }

        let centered = |text: &str, span: (i64, i64)| {
            (span.0 + span.1 - Canvas::text_width(text, TEXT_SCALE)) / 2
        };
        c.text(
            &self.title,
            centered(&self.title, (left, right)),
            8,
            TEXT_SCALE,
            Color::BLACK,
            false,
        );
        if !self.x_label.is_empty() {
            let x = centered(&self.x_label, (left, right));
            c.text(
                &self.x_label,
                x,
                height - CHAR_H - 8,
                TEXT_SCALE,
                Color::BLACK,
                false,
            );
        }
        if !self.y_label.is_empty() {
            // vertical text: its "width" runs up the axis from the bottom-left corner
            let along = Canvas::text_width(&self.y_label, TEXT_SCALE);
            let y = (top + bottom + along) / 2;
            c.text(&self.y_label, 10, y, TEXT_SCALE, Color::BLACK, true);
        }
        self.legend(&mut c, right, top);
        Ok(c)
    }

    /// The labelled series, listed in a box in the top-right corner of the plot area.
    fn legend(&self, c: &mut Canvas, right: i64, top: i64) {
        let entries: Vec<&Series> = self.series.iter().filter(|s| !s.label.is_empty()).collect();
        if entries.is_empty() {
            return;
        }
        let widest = entries
            .iter()
            .map(|s| Canvas::text_width(&s.label, TEXT_SCALE))
            .max()
            .unwrap_or(0);
        let (row, swatch) = (CHAR_H + 6, 24);
        let (w, h) = (widest + swatch + 24, entries.len() as i64 * row + 10);
        let (x0, y0) = (right - w - 8, top + 8);
        c.fill_rect(x0, y0, x0 + w, y0 + h, Color::WHITE, 0.85);
        for (i, s) in entries.iter().enumerate() {
            let y = y0 + 5 + i as i64 * row;
            let mid = (y + CHAR_H / 2) as f64;
            let sx = (x0 + 8) as f64;
            match s.mark {
                Mark::Line(_) => c.line((sx, mid), (sx + swatch as f64, mid), s.color, 2),
                Mark::Points(_) => {
                    let (cx, cy) = (x0 + 8 + swatch / 2, y + CHAR_H / 2);
                    c.fill_rect(cx - 2, cy - 2, cx + 3, cy + 3, s.color, 1.0);
                }
                Mark::Band(_) | Mark::Bars { .. } => {
                    let alpha = if matches!(s.mark, Mark::Band(_)) {
                        0.3
                    } else {
                        0.6
                    };
                    c.fill_rect(
                        x0 + 8,
                        y + 1,
                        x0 + 8 + swatch,
                        y + CHAR_H - 1,
                        s.color,
                        alpha,
                    );
                }
            }
            c.text(
                &s.label,
                x0 + 16 + swatch,
                y,
                TEXT_SCALE,
                Color::BLACK,
                false,
            );
        }
    }
}

fn draw(c: &mut Canvas, s: &Series, to_px: &dyn Fn(f64) -> f64, to_py: &dyn Fn(f64) -> f64) {
    let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
    match &s.mark {
        Mark::Line(p) => {
            for w in p.windows(2) {
                let ((xa, ya), (xb, yb)) = (w[0], w[1]);
                if finite(&[xa, ya, xb, yb]) {
                    c.line((to_px(xa), to_py(ya)), (to_px(xb), to_py(yb)), s.color, 2);
                }
            }
        }
        Mark::Points(p) => {
            for &(x, y) in p.iter().filter(|&&(x, y)| finite(&[x, y])) {
                let (px, py) = (to_px(x).round() as i64, to_py(y).round() as i64);
                c.fill_rect(px - 2, py - 2, px + 3, py + 3, s.color, 1.0);
            }
        }
        Mark::Band(p) => {
            let px: Vec<(f64, f64, f64)> = p
                .iter()
                .filter(|&&(x, lo, hi)| finite(&[x, lo, hi]))
                .map(|&(x, lo, hi)| (to_px(x), to_py(lo), to_py(hi)))
                .collect();
            c.fill_between(&px, s.color, 0.3);
        }
        Mark::Bars { edges, heights } => {
            for (i, &h) in heights.iter().enumerate() {
                let (a, b) = (edges[i], edges[i + 1]);
                if !finite(&[a, b, h]) {
                    continue;
                }
                let (x0, x1) = (to_px(a).round() as i64, to_px(b).round() as i64);
                let (y0, y1) = (to_py(h.max(0.0)), to_py(h.min(0.0)));
                let (y0, y1) = (y0.round() as i64, y1.round() as i64);
                c.fill_rect(x0 + 1, y0, x1, y1 + 1, s.color, 0.6);
            }
        }
    }
}

/// `(lo, hi)` widened by `pad` of its length on each side; a single value or no data at all
/// gets a unit-wide range around it.
fn padded((lo, hi): (f64, f64), pad: f64) -> (f64, f64) {
    if lo > hi {
        return (0.0, 1.0);
    }
    if hi - lo <= f64::EPSILON * hi.abs().max(lo.abs()).max(1e-300) {
        let half = if lo == 0.0 { 0.5 } else { 0.1 * lo.abs() };
        return (lo - half, hi + half);
    }
    let d = pad * (hi - lo);
    (lo - d, hi + d)
}

fn check_range(name: &'static str, lo: f64, hi: f64) -> Result<()> {
    if !lo.is_finite() {
        return Err(invalid(name, "finite at its low end", lo));
    }
    if !(hi.is_finite() && hi > lo) {
        return Err(invalid(name, "finite and above its low end", hi));
    }
    Ok(())
}

fn invalid(name: &'static str, constraint: &'static str, value: f64) -> Error {
    Error::InvalidArgument {
        name,
        constraint,
        value,
    }
}
