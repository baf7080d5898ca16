//! Axis ticks at round numbers (1, 2 or 5 times a power of ten) and their labels.

/// About `target` round tick positions covering `[lo, hi]`, and the step between them.
pub(crate) fn ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, f64) {
    let raw = (hi - lo) / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    let ticks = (first..=last).map(|k| k as f64 * step).collect();
    (ticks, step)
}

/// `v` printed with as many decimals as `step` needs; powers of ten in exponent form when the
/// numbers are very large or small.
pub(crate) fn label(v: f64, step: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if v.abs() >= 1e6 || step < 1e-4 {
        let s = format!("{v:.1e}");
        return s.replace(".0e", "e");
    }
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    format!("{v:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside() {
        let (t, step) = ticks(0.0, 1.0, 5);
        assert_eq!(step, 0.2);
        assert_eq!(t.len(), 6);
        assert!((t[5] - 1.0).abs() < 1e-12);
        let (t, step) = ticks(-37.0, 412.0, 6);
        assert_eq!(step, 100.0);
        assert_eq!(t, vec![0.0, 100.0, 200.0, 300.0, 400.0]);
        let (t, _) = ticks(0.0013, 0.0041, 4);
        assert!(t.iter().all(|&v| (0.0013..=0.0041).contains(&v)));
    }

    #[test]
    fn labels_have_the_decimals_the_step_needs() {
        assert_eq!(label(0.4, 0.2), "0.4");
        assert_eq!(label(300.0, 100.0), "300");
        assert_eq!(label(-0.25, 0.05), "-0.25");
        assert_eq!(label(2e7, 1e7), "2e7");
        assert_eq!(label(0.0, 0.5), "0");
    }
}
