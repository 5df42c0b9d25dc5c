//! [`Error`]: everything that can stop a command, each naming the input it concerns. `main`
//! prints it as one line on stderr and exits with status 1 (silently for
//! [`Error::StoppedByRoot`], whose reason process 0 prints), or with 128 + the signal number
//! for [`Error::Stopped`].

use std::path::PathBuf;

/// Everything that can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad argument or combination of arguments, or a file that is not what it should be.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Data(#[from] norma_datasets::DatasetError),
    #[error(transparent)]
    Layer(#[from] norma_layers::LayerError),
    #[error(transparent)]
    Autograd(#[from] norma_autograd::AutogradError),
    #[error(transparent)]
    Optim(#[from] norma_optim::OptimError),
    #[error(transparent)]
    Checkpoint(#[from] norma_layers::checkpoint::CheckpointError),
    /// A state dict that could not be written or read as safetensors (`what` names it).
    #[error("{what}: {source}")]
    Format {
        what: String,
        #[source]
        source: norma_layers::checkpoint::FormatError,
    },
    /// Reading or writing `path` failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("plot: {0}")]
    Plot(String),
    /// Communication between the processes of a data-parallel job failed.
    #[error(transparent)]
    Comm(#[from] norma_distributed::CommError),
    /// Process 0 of a data-parallel job could not start the run and says why; the other
    /// processes stop with this error and print nothing.
    #[error("process 0 could not start the run")]
    StoppedByRoot,
    /// An error already printed: process 0 of a data-parallel job prints why it cannot start
    /// before it tells the others, which may end the job as soon as they exit.
    #[error("{0}")]
    Reported(String),
    /// SIGINT or SIGTERM stopped a loop between two of its steps (see
    /// [`crate::cli::signals::check`]); `main` exits with 128 + the signal number.
    #[error("stopped by {}", .0.name())]
    Stopped(crate::cli::signals::Signal),
}

impl From<norma_tensor::TensorError> for Error {
    fn from(e: norma_tensor::TensorError) -> Self {
        Error::Autograd(e.into())
    }
}
