//! Helpers shared by the integration tests.

/// Runs each named generic test function `fn name<F: Scalar>()` once in `f32` and once in
/// `f64`, as the tests `name::f32` and `name::f64`.
macro_rules! for_each_float {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                #[test]
                fn f32() {
                    super::$test::<f32>();
                }

                #[test]
                fn f64() {
                    super::$test::<f64>();
                }
            }
        )*
    };
}
