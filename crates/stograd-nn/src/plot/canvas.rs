//! An RGB raster with the few primitives a chart needs: filled rectangles, thick lines,
//! alpha-blended fills and text in the bitmap font.

use super::font;

/// An sRGB colour.
///
/// ```
/// use stograd_nn::plot::{Chart, Color, palette};
///
/// assert_eq!(Color::WHITE, Color(255, 255, 255));
/// assert_ne!(palette(0), palette(1));
/// let chart = Chart::new("loss").line("train", [(1.0, 2.0), (2.0, 1.5)]).colored(Color(200, 30, 30));
/// chart.save(std::env::temp_dir().join("stograd-nn-color.png"))?;
/// # Ok::<(), stograd_nn::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Color(pub u8, pub u8, pub u8);

impl Color {
    /// White.
    pub const WHITE: Color = Color(255, 255, 255);
    /// Black.
    pub const BLACK: Color = Color(0, 0, 0);
    /// The gray of grid lines.
    pub const GRID: Color = Color(225, 225, 225);
}

pub(crate) struct Canvas {
    pub(crate) width: usize,
    pub(crate) height: usize,
    pub(crate) pixels: Vec<u8>,
    /// Drawing is confined to `x0 ≤ x < x1`, `y0 ≤ y < y1`.
    pub(crate) clip: (i64, i64, i64, i64),
}

impl Canvas {
    pub(crate) fn new(width: usize, height: usize) -> Self {
        Canvas {
            width,
            height,
            pixels: vec![255; width * height * 3],
            clip: (0, 0, width as i64, height as i64),
        }
    }

    /// Blends `color` over the pixel at `(x, y)` with opacity `alpha`; outside the clip
    /// rectangle it is a no-op.
    fn blend(&mut self, x: i64, y: i64, color: Color, alpha: f64) {
        let (x0, y0, x1, y1) = self.clip;
        if x < x0 || y < y0 || x >= x1 || y >= y1 {
            return;
        }
        let i = (y as usize * self.width + x as usize) * 3;
        for (k, c) in [color.0, color.1, color.2].into_iter().enumerate() {
            let old = f64::from(self.pixels[i + k]);
            self.pixels[i + k] = (old + alpha * (f64::from(c) - old)).round() as u8;
        }
    }

    /// Fills the pixels with `x0 ≤ x < x1`, `y0 ≤ y < y1`.
    pub(crate) fn fill_rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Color, alpha: f64) {
        let (cx0, cy0, cx1, cy1) = self.clip;
        for y in y0.max(cy0)..y1.min(cy1) {
            for x in x0.max(cx0)..x1.min(cx1) {
                self.blend(x, y, c, alpha);
            }
        }
    }

    /// A line `thickness` pixels wide from `(x0, y0)` to `(x1, y1)`, stamped in squares at
    /// half-pixel steps so no gap opens on steep segments.
    pub(crate) fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: Color, t: i64) {
        let steps = (2.0 * (x1 - x0).abs().max((y1 - y0).abs())).ceil().max(1.0);
        // Stamps far outside the canvas are skipped, so a wild coordinate costs nothing.
        if !steps.is_finite() || steps > 1e6 {
            return;
        }
        let (lo, hi) = (-(t - 1) / 2, t / 2 + 1);
        for s in 0..=steps as i64 {
            let f = s as f64 / steps;
            let (x, y) = (
                (x0 + f * (x1 - x0)).round() as i64,
                (y0 + f * (y1 - y0)).round() as i64,
            );
            self.fill_rect(x + lo, y + lo, x + hi, y + hi, c, 1.0);
        }
    }

    /// Fills the region between two curves sampled at the same `x`s (a vertical strip per
    /// pixel column between consecutive points).
    pub(crate) fn fill_between(&mut self, pts: &[(f64, f64, f64)], c: Color, alpha: f64) {
        for w in pts.windows(2) {
            let ((xa, la, ha), (xb, lb, hb)) = (w[0], w[1]);
            let (start, end) = (xa.round() as i64, xb.round() as i64);
            for x in start..end.max(start + 1) {
                let f = if end > start {
                    (x - start) as f64 / (end - start) as f64
                } else {
                    0.0
                };
                let (lo, hi) = (la + f * (lb - la), ha + f * (hb - ha));
                let (top, bottom) = (lo.min(hi).round() as i64, lo.max(hi).round() as i64);
                self.fill_rect(x, top, x + 1, bottom + 1, c, alpha);
            }
        }
    }

    /// The width in pixels of `text` at `scale`.
    pub(crate) fn text_width(text: &str, scale: i64) -> i64 {
        text.chars().count() as i64 * (font::WIDTH as i64 + 1) * scale
    }

    /// Draws `text` with its top-left corner at `(x, y)`; `vertical` turns it a quarter
    /// counter-clockwise, reading upwards from `(x, y)` as the bottom-left corner.
    pub(crate) fn text(
        &mut self,
        text: &str,
        x: i64,
        y: i64,
        scale: i64,
        c: Color,
        vertical: bool,
    ) {
        let advance = (font::WIDTH as i64 + 1) * scale;
        for (k, ch) in text.chars().enumerate() {
            let offset = k as i64 * advance;
            for row in 0..font::HEIGHT {
                for col in 0..font::WIDTH {
                    if !font::lit(ch, row, col) {
                        continue;
                    }
                    let (u, v) = (offset + col as i64 * scale, row as i64 * scale);
                    let (px, py) = if vertical {
                        (x + v, y - u - scale)
                    } else {
                        (x + u, y + v)
                    };
                    self.fill_rect(px, py, px + scale, py + scale, c, 1.0);
                }
            }
        }
    }
}
