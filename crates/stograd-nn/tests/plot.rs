//! Charts: what is drawn lands where its data coordinates say, bad settings are errors.

use std::path::PathBuf;

use stograd_nn::Error;
use stograd_nn::plot::{self, Chart, Color};

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("stograd-nn-plot-{}-{name}.png", std::process::id()))
}

/// Decodes an RGB PNG into (width, height, pixels).
fn read_rgb(path: &PathBuf) -> (usize, usize, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width as usize, info.height as usize, buf)
}

fn count(pixels: &[u8], c: Color) -> usize {
    pixels.chunks(3).filter(|p| p == &[c.0, c.1, c.2]).count()
}

#[test]
fn a_line_is_drawn_in_its_colour_along_its_data() {
    let path = temp("line");
    Chart::new("diagonal")
        .x_range(0.0, 1.0)
        .y_range(0.0, 1.0)
        .line("y = x", [(0.0, 0.0), (1.0, 1.0)])
        .save(&path)
        .unwrap();
    let (w, h, px) = read_rgb(&path);
    assert_eq!((w, h), (720, 480));
    let blue = plot::palette(0);
    // walk the plot area's rows: the line's pixels move right as the rows go up
    let columns: Vec<f64> = (0..h)
        .filter_map(|y| {
            let xs: Vec<usize> = (0..w)
                .filter(|&x| px[(y * w + x) * 3..][..3] == [blue.0, blue.1, blue.2])
                .collect();
            // the legend swatch is a horizontal run; rows of the line hold a few pixels
            (!xs.is_empty() && xs.len() <= 8)
                .then(|| xs.iter().sum::<usize>() as f64 / xs.len() as f64)
        })
        .collect();
    assert!(columns.len() > 300, "{}", columns.len());
    assert!(
        columns.windows(2).all(|p| p[1] <= p[0] + 1.0),
        "the line goes up to the right"
    );
    assert!(columns[0] - columns[columns.len() - 1] > 500.0);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn non_finite_points_break_a_line_and_series_outside_the_range_are_clipped() {
    let (a, b) = (temp("gap"), temp("nogap"));
    let base = Chart::new("").x_range(0.0, 3.0).y_range(0.0, 1.0);
    base.clone()
        .line("", [(0.0, 0.5), (1.0, 0.5), (2.0, f64::NAN), (3.0, 0.5)])
        .save(&a)
        .unwrap();
    base.line("", [(0.0, 0.5), (1.0, 0.5), (2.0, 0.5), (3.0, 0.5)])
        .save(&b)
        .unwrap();
    let blue = plot::palette(0);
    let (with_gap, without) = (count(&read_rgb(&a).2, blue), count(&read_rgb(&b).2, blue));
    // two of the three segments are missing: about a third of the pixels remain
    assert!(
        with_gap * 2 < without && with_gap * 4 > without,
        "{with_gap} vs {without}"
    );

    let c = temp("clipped");
    Chart::new("")
        .x_range(0.0, 1.0)
        .y_range(0.0, 1.0)
        .line("", [(5.0, 5.0), (6.0, 6.0)])
        .save(&c)
        .unwrap();
    assert_eq!(count(&read_rgb(&c).2, blue), 0);
    for p in [a, b, c] {
        std::fs::remove_file(p).unwrap();
    }
}

#[test]
fn bands_bars_and_colours() {
    let path = temp("mixed");
    let red = Color(200, 0, 0);
    let (edges, counts) =
        plot::histogram(&[0.1, 0.2, 0.3, 0.8, 1.0, 2.0, f64::NAN], 0.0, 1.0, 2).unwrap();
    assert_eq!(edges, vec![0.0, 0.5, 1.0]);
    assert_eq!(counts, vec![3.0, 2.0]); // 1.0 is in the last bin; 2.0 and NaN are not counted
    Chart::new("Histogram and band")
        .x_label("entropy")
        .y_label("count")
        .bars("in distribution", &edges, &counts)
        .band("band", [(0.0, 1.0, 2.0), (1.0, 1.0, 2.0)])
        .points("points", [(0.5, 2.5)])
        .colored(red)
        .save(&path)
        .unwrap();
    let (_, _, px) = read_rgb(&path);
    assert!(count(&px, red) >= 25, "a 5×5 dot and its legend swatch");
    // bars are the first palette colour at 60 % over white
    let bar = plot::palette(0);
    let blend = |c: u8| (255.0 + 0.6 * (f64::from(c) - 255.0)).round() as u8;
    assert!(count(&px, Color(blend(bar.0), blend(bar.1), blend(bar.2))) > 10_000);
    // text is drawn: black pixels beyond the frame and ticks
    assert!(count(&px, Color::BLACK) > 3000);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn bad_settings_are_errors_that_name_them() {
    let path = temp("bad");
    let cases = [
        (Chart::new("").size(100, 400), "chart width"),
        (Chart::new("").size(400, 100), "chart height"),
        (Chart::new("").x_range(1.0, 1.0), "x range"),
        (Chart::new("").y_range(f64::NAN, 1.0), "y range"),
        (
            Chart::new("").bars("", &[0.0, 1.0], &[1.0, 2.0]),
            "bar edges",
        ),
    ];
    for (chart, name) in cases {
        match chart.save(&path) {
            Err(Error::InvalidArgument { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(!path.exists(), "nothing is written for a bad chart");
    assert!(matches!(
        plot::histogram(&[1.0], 0.0, 1.0, 0),
        Err(Error::InvalidArgument { name: "bins", .. })
    ));
    assert!(matches!(
        plot::histogram(&[1.0], 1.0, 0.0, 3),
        Err(Error::InvalidArgument {
            name: "histogram range",
            ..
        })
    ));
}

#[test]
fn an_empty_chart_or_a_single_point_still_renders() {
    let path = temp("empty");
    Chart::new("nothing yet").save(&path).unwrap();
    Chart::new("one point")
        .points("p", [(3.0, 3.0)])
        .save(&path)
        .unwrap();
    let (_, _, px) = read_rgb(&path);
    assert!(count(&px, plot::palette(0)) >= 25);
    std::fs::remove_file(path).unwrap();
}
