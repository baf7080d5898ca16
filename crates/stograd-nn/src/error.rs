//! The crate's error type. Every variant carries the values that made the call fail.

use std::path::PathBuf;

/// `Result` with this crate's [`Error`].
///
/// ```
/// use stograd_nn::data::digits_csv;
///
/// fn first_label(path: &str) -> stograd_nn::Result<usize> {
///     Ok(digits_csv::<f32>(path)?.labels()[0])
/// }
/// assert!(first_label("no/such/file.csv").is_err());
/// let path = std::env::temp_dir().join("stograd-nn-result-digit.csv");
/// std::fs::write(&path, format!("{}7\n", "0,".repeat(64)))?;
/// assert_eq!(first_label(path.to_str().unwrap())?, 7);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in stograd-nn: the engine's errors, files that cannot be read or
/// written, malformed data, checkpoints that do not fit the model, and bad settings.
///
/// ```
/// use stograd::Params;
/// use stograd_nn::layers::Linear;
/// use stograd_nn::Error;
///
/// let mut params = Params::<f32>::new();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// # use rand::SeedableRng;
/// let err = Linear::new(&mut params, "fc", 3, 0, &mut rng).unwrap_err();
/// assert!(matches!(err, Error::InvalidArgument { name: "out_features", .. }));
/// assert_eq!(err.to_string(), "out_features must be positive, got 0");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error from the engine (a bad distribution parameter, a shape, an anomaly).
    #[error(transparent)]
    Engine(#[from] stograd::Error),

    /// A file could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },

    /// A data file is malformed.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),

    /// A checkpoint is malformed or does not fit the model.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),

    /// A setting (a learning rate, a layer width, a batch size) is out of its range.
    #[error("{name} must be {constraint}, got {value}")]
    InvalidArgument {
        /// The setting.
        name: &'static str,
        /// What it must be.
        constraint: &'static str,
        /// What it was.
        value: f64,
    },

    /// The operating system refused a thread for a thread pool.
    #[error("cannot start a thread pool: {0}")]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
