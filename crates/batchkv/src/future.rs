//! [`SubmitFuture`]: an op's answer on the async write path (`Store::submit_async`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use batchkv_batcher::{AsyncTicket, BatchError};
use batchkv_metrics::{Metrics, OpLabel};
use batchkv_mvcc::OpResponse;

use crate::error::{Result, StoreError};

/// The answer of an op submitted with [`crate::Store::submit_async`] (`R` = [`OpResponse`]) or
/// one of its typed twins (`put_async`: `R` = [`crate::PutResponse`], ...): resolves, without
/// blocking a thread, to exactly what the blocking call would have returned for the op (plus
/// [`StoreError::Busy`] when the queue was full).
///
/// The op was queued by the call that made this future, before it existed: polling only waits
/// for the answer. Dropping it does not withdraw the op: it still commits, or fails, as part of
/// one entry, exactly once; only its answer is lost. The batcher's worker wakes the task when it
/// answers; the future is `Send + 'static` and works on any executor. Polled again after it
/// resolved, it answers [`StoreError::Closed`].
#[must_use = "the op is queued either way; its answer is only known by awaiting this"]
pub struct SubmitFuture<R = OpResponse> {
    state: State,
    /// The op's label and start, to record its latency when it resolves.
    metrics: Option<(Arc<Metrics>, OpLabel, Instant)>,
    /// The typed answer out of the op's response (the identity for `OpResponse`).
    pick: fn(OpResponse) -> Result<R>,
}

impl<R> std::fmt::Debug for SubmitFuture<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubmitFuture")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
enum State {
    /// Answered before anything was queued (refused, closed, busy); `None` once taken.
    Ready(Option<Result<OpResponse>>),
    /// Queued: the batcher's ticket.
    Queued(AsyncTicket<OpResponse, StoreError>),
}

impl SubmitFuture {
    pub(crate) fn ready(r: Result<OpResponse>, metrics: Option<(Arc<Metrics>, OpLabel)>) -> Self {
        SubmitFuture {
            state: State::Ready(Some(r)),
            metrics: metrics.map(|(m, l)| (m, l, Instant::now())),
            pick: Ok,
        }
    }

    pub(crate) fn queued(
        ticket: AsyncTicket<OpResponse, StoreError>,
        metrics: Option<(Arc<Metrics>, OpLabel, Instant)>,
    ) -> Self {
        SubmitFuture {
            state: State::Queued(ticket),
            metrics,
            pick: Ok,
        }
    }

    /// The same op's answer, typed by `pick`.
    pub(crate) fn typed<R>(self, pick: fn(OpResponse) -> Result<R>) -> SubmitFuture<R> {
        SubmitFuture {
            state: self.state,
            metrics: self.metrics,
            pick,
        }
    }
}

impl<R> Future for SubmitFuture<R> {
    type Output = Result<R>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R>> {
        let r = match &mut self.state {
            // Polled again after it resolved: the op's answer was given already.
            State::Ready(r) => r.take().unwrap_or(Err(StoreError::Closed)),
            State::Queued(ticket) => match Pin::new(ticket).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(answer) => answer.map_err(store_error),
            },
        };
        self.state = State::Ready(None);
        if let Some((m, label, start)) = self.metrics.take() {
            m.record_op(label, r.is_ok(), start.elapsed());
        }
        Poll::Ready(r.and_then(self.pick))
    }
}

/// What a submitter is told for its op's batcher error (blocking and async alike).
pub(crate) fn store_error(e: BatchError<StoreError>) -> StoreError {
    match e {
        BatchError::Item(e) => e,
        BatchError::Batch(e) => (*e).clone(),
        BatchError::Closed => StoreError::Closed,
        other => StoreError::Internal(other.to_string()),
    }
}

/// The answer of [`crate::Store::read_barrier_async`]: the read index, once this member has
/// applied up to it (a local read afterwards is linearizable). The request was made by the call
/// that made this future; the raft node's thread wakes the task when it answers (a sole voter
/// answers at once, without its thread). Dropping it drops the read.
#[must_use = "the barrier is only passed by awaiting it"]
#[derive(Debug)]
pub struct ReadBarrier {
    state: BarrierState,
}

#[derive(Debug)]
enum BarrierState {
    /// Answered at once (single node, stopped); `None` once taken.
    Ready(Option<Result<u64>>),
    /// The raft node's answer.
    Raft(batchkv_raft::ReadIndexFuture),
}

impl ReadBarrier {
    pub(crate) fn ready(r: Result<u64>) -> Self {
        ReadBarrier {
            state: BarrierState::Ready(Some(r)),
        }
    }

    pub(crate) fn raft(f: batchkv_raft::ReadIndexFuture) -> Self {
        ReadBarrier {
            state: BarrierState::Raft(f),
        }
    }
}

impl Future for ReadBarrier {
    type Output = Result<u64>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            BarrierState::Ready(r) => Poll::Ready(r.take().unwrap_or(Err(StoreError::Closed))),
            BarrierState::Raft(f) => Pin::new(f).poll(cx).map(|r| r.map_err(StoreError::from)),
        }
    }
}
