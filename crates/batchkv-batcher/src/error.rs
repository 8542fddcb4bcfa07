//! Errors of the batcher.

use std::fmt;
use std::sync::Arc;

/// Result of the batcher's fallible functions.
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// A configuration the batcher or the chunk controller refuses, naming the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A field has a value outside its range.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong, with the value.
        reason: String,
    },
    /// An environment override could not be parsed.
    #[error("environment variable {var}={value:?} is not {expected}")]
    Env {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
}

impl ConfigError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// The answer a submitter gets instead of its result.
#[derive(Clone, Debug, PartialEq)]
pub enum BatchError<E> {
    /// The sink failed this item (and answered the others of its batch separately).
    Item(E),
    /// The sink failed the whole batch; every item of it gets the same error.
    Batch(Arc<E>),
    /// The sink panicked while flushing this item's batch; the batcher kept serving.
    SinkPanicked(Arc<str>),
    /// The sink answered a different number of results than it was given items.
    SinkContract {
        /// Items in the batch.
        items: usize,
        /// Results the sink returned.
        results: usize,
    },
    /// The batcher shut down before this item was flushed (abort), or refused it.
    Closed,
}

impl<E: fmt::Display> fmt::Display for BatchError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Item(e) => write!(f, "{e}"),
            BatchError::Batch(e) => write!(f, "batch failed: {e}"),
            BatchError::SinkPanicked(m) => write!(f, "sink panicked: {m}"),
            BatchError::SinkContract { items, results } => write!(
                f,
                "sink answered {results} results for a batch of {items} items"
            ),
            BatchError::Closed => f.write_str("batcher closed before the item was flushed"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for BatchError<E> {}

/// Why `submit` did not take an item; the item is handed back.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError<T> {
    /// The batcher is shut down.
    #[error("batcher is closed")]
    Closed(T),
    /// The queue is full (`try_submit` only; `submit` blocks instead).
    #[error("batcher queue is full")]
    Full(T),
}

impl<T> SubmitError<T> {
    /// The item that was not taken.
    pub fn into_inner(self) -> T {
        match self {
            SubmitError::Closed(t) | SubmitError::Full(t) => t,
        }
    }
}
