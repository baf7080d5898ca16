//! Grids of images saved as PNG: reconstructions beside their inputs, samples, latent
//! manifolds.

use std::path::Path;

use stograd::Scalar;
use stograd::ndarray::Array2;

use crate::{Error, Result};

/// Saves the rows of `images` (`[n, height·width]`, intensities in `[0, 1]`, row-major) as
/// one 8-bit grayscale PNG: a grid of `columns` tiles per row, each pixel drawn as a
/// `scale × scale` block, tiles one block apart on a mid-gray background. Values outside
/// `[0, 1]` are clamped; NaN is drawn black. The file is written atomically.
///
/// # Example
/// ```
/// use stograd::ndarray::Array2;
///
/// let images = Array2::<f32>::from_shape_fn((6, 4), |(i, j)| (i + j) as f32 / 8.0);
/// let path = std::env::temp_dir().join("stograd-nn-grid.png");
/// stograd_nn::image::save_grid(&path, &images, 2, 2, 3, 4)?; // 2 rows of 3 tiles, 2×2 each
/// # Ok::<(), stograd_nn::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidArgument`] when the rows are not `height·width` long or a size is zero;
/// [`Error::Io`] when the file cannot be written.
pub fn save_grid<F: Scalar>(
    path: impl AsRef<Path>,
    images: &Array2<F>,
    height: usize,
    width: usize,
    columns: usize,
    scale: usize,
) -> Result<()> {
    let invalid = |name, constraint, value: usize| Error::InvalidArgument {
        name,
        constraint,
        value: value as f64,
    };
    if height * width != images.ncols() {
        return Err(invalid(
            "image row length",
            "height × width",
            images.ncols(),
        ));
    }
    for (name, value) in [
        ("height", height),
        ("width", width),
        ("columns", columns),
        ("scale", scale),
    ] {
        if value == 0 {
            return Err(invalid(name, "positive", 0));
        }
    }
    let n = images.nrows();
    let rows = n.div_ceil(columns).max(1);
    let (tile_h, tile_w) = ((height + 1) * scale, (width + 1) * scale);
    let (out_h, out_w) = (rows * tile_h + scale, columns * tile_w + scale);
    let mut pixels = vec![128u8; out_h * out_w];
    for (k, image) in images.rows().into_iter().enumerate() {
        let (top, left) = (
            (k / columns) * tile_h + scale,
            (k % columns) * tile_w + scale,
        );
        for (p, &v) in image.iter().enumerate() {
            let v = v.as_f64();
            let level = if v.is_nan() {
                0
            } else {
                (v.clamp(0.0, 1.0) * 255.0).round() as u8
            };
            let (y, x) = (top + (p / width) * scale, left + (p % width) * scale);
            for dy in 0..scale {
                let start = (y + dy) * out_w + x;
                pixels[start..start + scale].fill(level);
            }
        }
    }
    write_png(
        path.as_ref(),
        out_w,
        out_h,
        png::ColorType::Grayscale,
        &pixels,
    )
}

/// Writes 8-bit `pixels` (rows top to bottom, `color`'s channels interleaved) as a PNG,
/// atomically.
pub(crate) fn write_png(
    path: &Path,
    width: usize,
    height: usize,
    color: png::ColorType,
    pixels: &[u8],
) -> Result<()> {
    crate::fs::write_atomic(path, |out| {
        let mut encoder = png::Encoder::new(out, width as u32, height as u32);
        encoder.set_color(color);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
        writer
            .write_image_data(pixels)
            .map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    })
}
