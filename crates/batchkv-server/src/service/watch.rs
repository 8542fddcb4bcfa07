//! Watch: the bidirectional stream. One task per stream reads the client's requests (create,
//! cancel, progress) and forwards what the stream's watchers produce; each watcher runs on its
//! own bridge task (`blocking::bridge_watch`, awaiting `Watcher::recv_async`), which feeds the task through one channel.
//!
//! As etcd 3.4 (`etcdserver/api/v3rpc/watch.go`): watch ids are per stream, chosen by the
//! client or counted from 0; a create answers `created` (or `created` and `canceled` with
//! watch id -1 and the reason, for a bad range or a duplicate id) before any event; a cancel
//! answers `canceled` (an unknown id: nothing); a progress request answers watch id -1 with
//! the current revision; a watch whose history was compacted is cancelled with
//! `compact_revision`; a watch created with `fragment` gets a response larger than
//! `--max-request-bytes` plus 512 KiB split as etcd's `sendFragments` does ([`fragments`]).

use std::collections::{HashMap, HashSet};

use batchkv::{DEFAULT_WATCH_BUFFER, WatchRequest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::lease::until_stopping;
use super::{Etcd, stopped};
use crate::blocking::{self, WatchBridge, WatchItem};
use crate::convert;
use crate::pb::etcdserverpb::{self as pb, watch_server::Watch};
use crate::{Ctx, blocking::bridge_watch};

/// Responses queued for a slow client before the stream's task waits (and, behind it, the
/// watchers fall behind and later catch up from storage).
const OUT_BUFFER: usize = 128;
/// Watcher responses queued for the stream's task.
const ITEM_BUFFER: usize = 128;

/// etcd's `ErrEmptyWatcherRange` text.
const EMPTY_RANGE: &str = "mvcc: watcher range is empty";
/// etcd's `ErrWatcherDuplicateID` text.
const DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";

type Out = mpsc::Sender<Result<pb::WatchResponse, Status>>;

#[tonic::async_trait]
impl Watch for Etcd {
    type WatchStream = ReceiverStream<Result<pb::WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Ok(Response::new(self.watch_stream(request.into_inner())))
    }
}

impl Etcd {
    /// A watch stream over any stream of requests: the gRPC one's, or the HTTP gateway's
    /// (JSON objects read from a request body).
    pub(crate) fn watch_stream<S>(
        &self,
        inbound: S,
    ) -> ReceiverStream<Result<pb::WatchResponse, Status>>
    where
        S: Stream<Item = Result<pb::WatchRequest, Status>> + Unpin + Send + 'static,
    {
        let (out, rx) = mpsc::channel(OUT_BUFFER);
        let (items_tx, items) = mpsc::channel(ITEM_BUFFER);
        let stream = WatchStream {
            ctx: self.ctx.clone(),
            out,
            items_tx,
            watches: HashMap::new(),
            tokens: HashMap::new(),
            fragment: HashSet::new(),
            next_token: 0,
            next_id: 0,
        };
        tokio::spawn(stream.run(inbound, items));
        ReceiverStream::new(rx)
    }
}

/// What woke a watch stream's task.
enum Step {
    Request(Result<Option<pb::WatchRequest>, Status>),
    Item(u64, WatchItem),
    Stop,
}

/// One client's watch stream.
struct WatchStream {
    ctx: std::sync::Arc<Ctx>,
    out: Out,
    items_tx: mpsc::Sender<(u64, WatchItem)>,
    /// Watch id → (token, bridge task). The token tells apart a watch id reused after a
    /// cancel from the cancelled watch's last responses still queued.
    watches: HashMap<i64, (u64, WatchBridge)>,
    tokens: HashMap<u64, i64>,
    /// The tokens of the watches created with `fragment`.
    fragment: HashSet<u64>,
    next_token: u64,
    next_id: i64,
}

impl WatchStream {
    async fn run(
        mut self,
        mut inbound: impl Stream<Item = Result<pb::WatchRequest, Status>> + Unpin,
        mut items: mpsc::Receiver<(u64, WatchItem)>,
    ) {
        let stop = until_stopping(self.ctx.stopping.clone());
        tokio::pin!(stop);
        // After the client closes its side, its watches go on (as etcd's).
        let mut reading = true;
        loop {
            let step = tokio::select! {
                m = inbound.next(), if reading => Step::Request(m.transpose()),
                Some((token, item)) = items.recv() => Step::Item(token, item),
                () = &mut stop => Step::Stop,
                () = self.out.closed() => return,
            };
            let sent = match step {
                Step::Request(Ok(Some(req))) => self.request(req).await,
                Step::Request(Ok(None)) => {
                    reading = false;
                    Ok(())
                }
                // Something unreadable, or the connection failed: as etcd, the stream ends
                // (and its watches with it).
                Step::Request(Err(_)) => return,
                Step::Item(token, item) => self.item(token, item).await,
                Step::Stop => {
                    let _ = self.out.send(Err(stopped())).await;
                    return;
                }
            };
            if sent.is_err() {
                // The client is gone: dropping `self` stops every bridge task.
                return;
            }
        }
    }

    async fn send(&self, resp: pb::WatchResponse) -> Result<(), ()> {
        self.out.send(Ok(resp)).await.map_err(|_| ())
    }

    async fn revision(&self) -> Result<i64, ()> {
        blocking::run(&self.ctx.store, |s| s.current_revision())
            .await
            .map_err(|_| ())
    }

    async fn request(&mut self, req: pb::WatchRequest) -> Result<(), ()> {
        use pb::watch_request::RequestUnion as U;
        match req.request_union {
            Some(U::CreateRequest(c)) => self.create(c).await,
            Some(U::CancelRequest(c)) => {
                let Some((token, _bridge)) = self.watches.remove(&c.watch_id) else {
                    return Ok(());
                };
                self.tokens.remove(&token);
                self.fragment.remove(&token);
                let rev = self.revision().await?;
                self.send(pb::WatchResponse {
                    header: self.ctx.header(rev),
                    watch_id: c.watch_id,
                    canceled: true,
                    ..Default::default()
                })
                .await
            }
            Some(U::ProgressRequest(_)) => {
                let rev = self.revision().await?;
                self.send(pb::WatchResponse {
                    header: self.ctx.header(rev),
                    watch_id: -1,
                    ..Default::default()
                })
                .await
            }
            None => Ok(()),
        }
    }

    async fn create(&mut self, c: pb::WatchCreateRequest) -> Result<(), ()> {
        use pb::watch_create_request::FilterType;
        let bad_range = !c.range_end.is_empty()
            && c.range_end.as_ref() != b"\0".as_slice()
            && c.key >= c.range_end;
        let id = if c.watch_id == 0 {
            while self.watches.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id += 1;
            Ok(self.next_id - 1)
        } else if self.watches.contains_key(&c.watch_id) {
            Err(DUPLICATE_ID)
        } else {
            Ok(c.watch_id)
        };
        let id = match (bad_range, id) {
            (true, _) => Err(EMPTY_RANGE),
            (false, id) => id,
        };
        let id = match id {
            Ok(id) => id,
            Err(reason) => {
                let rev = self.revision().await?;
                return self
                    .send(pb::WatchResponse {
                        header: self.ctx.header(rev),
                        watch_id: -1,
                        created: true,
                        canceled: true,
                        cancel_reason: reason.to_owned(),
                        ..Default::default()
                    })
                    .await;
            }
        };
        let has = |f: FilterType| c.filters.contains(&(f as i32));
        let req = WatchRequest {
            key: c.key,
            range_end: c.range_end,
            start_revision: c.start_revision,
            prev_kv: c.prev_kv,
            no_put: has(FilterType::Noput),
            no_delete: has(FilterType::Nodelete),
            progress_notify: c.progress_notify,
            buffer: DEFAULT_WATCH_BUFFER,
        };
        let (watcher, rev) = blocking::run(&self.ctx.store, move |s| {
            (s.watch(req), s.current_revision())
        })
        .await
        .map_err(|_| ())?;
        // `created` goes out before the bridge starts, so before any event.
        self.send(pb::WatchResponse {
            header: self.ctx.header(rev),
            watch_id: id,
            created: true,
            ..Default::default()
        })
        .await?;
        let token = self.next_token;
        self.next_token += 1;
        let every = c
            .progress_notify
            .then_some(self.ctx.progress_notify_interval);
        match bridge_watch(
            self.ctx.store.clone(),
            watcher,
            every,
            token,
            self.items_tx.clone(),
        ) {
            Ok(bridge) => {
                self.watches.insert(id, (token, bridge));
                self.tokens.insert(token, id);
                if c.fragment {
                    self.fragment.insert(token);
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a watch task");
                self.send(pb::WatchResponse {
                    header: self.ctx.header(rev),
                    watch_id: id,
                    canceled: true,
                    cancel_reason: format!("etcdserver: cannot start the watch: {e}"),
                    ..Default::default()
                })
                .await
            }
        }
    }

    /// Forwards one watcher's response to the client.
    async fn item(&mut self, token: u64, item: WatchItem) -> Result<(), ()> {
        // A watch cancelled meanwhile: its last responses are dropped.
        let Some(&id) = self.tokens.get(&token) else {
            return Ok(());
        };
        let resp = match item {
            WatchItem::Response(r) if r.canceled => {
                self.forget(id, token);
                // As etcd 3.4: the compacted revision, no reason text, header revision 0.
                pb::WatchResponse {
                    header: self.ctx.header(0),
                    watch_id: id,
                    canceled: true,
                    compact_revision: r.compact_revision,
                    ..Default::default()
                }
            }
            WatchItem::Response(r) => {
                let resp = pb::WatchResponse {
                    header: self.ctx.header(r.revision),
                    watch_id: id,
                    events: r.events.into_iter().map(convert::event).collect(),
                    ..Default::default()
                };
                if !self.fragment.contains(&token) {
                    return self.send(resp).await;
                }
                for part in fragments(resp, self.ctx.fragment_bytes) {
                    self.send(part).await?;
                }
                return Ok(());
            }
            WatchItem::Progress(rev) => pb::WatchResponse {
                header: self.ctx.header(rev),
                watch_id: id,
                ..Default::default()
            },
            WatchItem::Failed(reason) => {
                self.forget(id, token);
                let rev = self.revision().await?;
                pb::WatchResponse {
                    header: self.ctx.header(rev),
                    watch_id: id,
                    canceled: true,
                    cancel_reason: format!("etcdserver: {reason}"),
                    ..Default::default()
                }
            }
        };
        self.send(resp).await
    }

    fn forget(&mut self, id: i64, token: u64) {
        self.tokens.remove(&token);
        self.fragment.remove(&token);
        self.watches.remove(&id);
    }
}

/// etcd 3.4's `sendFragments`: a response of `max` bytes or more with two events or more goes
/// out as several responses, all but the last marked `fragment`. Each takes events in order
/// while it stays under `max` bytes (encoded, `fragment` set), and at least one.
fn fragments(resp: pb::WatchResponse, max: usize) -> Vec<pb::WatchResponse> {
    use prost::Message;
    /// `WatchResponse.events`' field number.
    const EVENTS_TAG: u32 = 11;
    if resp.encoded_len() < max || resp.events.len() < 2 {
        return vec![resp];
    }
    let mut events = resp.events.into_iter().peekable();
    let template = pb::WatchResponse {
        events: Vec::new(),
        fragment: true,
        ..resp
    };
    let empty = template.encoded_len();
    let mut parts = Vec::new();
    while events.peek().is_some() {
        let mut part = template.clone();
        let mut size = empty;
        while let Some(ev) = events.peek() {
            let len = prost::encoding::message::encoded_len(EVENTS_TAG, ev);
            if !part.events.is_empty() && size + len >= max {
                break;
            }
            size += len;
            part.events.extend(events.next());
        }
        part.fragment = events.peek().is_some();
        parts.push(part);
    }
    parts
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::fragments;
    use crate::pb::etcdserverpb as pb;
    use crate::pb::mvccpb;

    fn response(values: &[usize]) -> pb::WatchResponse {
        pb::WatchResponse {
            header: Some(pb::ResponseHeader {
                revision: 7,
                ..Default::default()
            }),
            watch_id: 3,
            events: values
                .iter()
                .enumerate()
                .map(|(i, &n)| mvccpb::Event {
                    kv: Some(mvccpb::KeyValue {
                        key: format!("k{i}").into_bytes().into(),
                        value: vec![b'v'; n].into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// The parts, rejoined, are the response; all but the last are fragments; each is under
    /// `max` bytes or holds one event.
    fn check(values: &[usize], max: usize) -> usize {
        let whole = response(values);
        let parts = fragments(whole.clone(), max);
        let mut joined = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            assert_eq!(
                p.fragment,
                i + 1 < parts.len(),
                "part {i} of {}",
                parts.len()
            );
            assert!(
                p.encoded_len() < max || p.events.len() == 1,
                "part {i} too big"
            );
            assert_eq!((p.watch_id, p.header), (3, whole.header));
            assert!(!p.events.is_empty());
            joined.extend(p.events.iter().cloned());
        }
        assert_eq!(joined, whole.events);
        parts.len()
    }

    #[test]
    fn small_or_single_event_responses_go_whole() {
        assert_eq!(check(&[10, 10, 10], 1000), 1);
        assert_eq!(check(&[5000], 1000), 1);
        assert!(!fragments(response(&[5000]), 1000)[0].fragment);
    }

    #[test]
    fn large_responses_split_under_the_limit() {
        assert_eq!(check(&[400, 400, 400, 400], 1000), 2);
        assert_eq!(check(&[2000, 10, 10, 2000, 10], 1000), 4);
        let many: Vec<usize> = (0..200).map(|i| 17 * i % 300).collect();
        assert!(check(&many, 2048) > 10);
    }
}
