//! A batchkv server in this process on a free loopback port over a temp dir, and an
//! `etcd-client` connected to it.

#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use batchkv::Store;
use batchkv_server::{Server, ServerConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The progress-notify interval of test servers (etcd's is 10 minutes).
pub const PROGRESS_EVERY: Duration = Duration::from_millis(300);

pub struct TestServer {
    pub endpoint: String,
    pub store: Store,
    stop: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|c| c).await
    }

    pub async fn start_with(f: impl FnOnce(ServerConfig) -> ServerConfig) -> TestServer {
        let dir = batchkv_testkit::temp_dir();
        let store = Store::builder(dir.path().join("data"))
            .lease_check_interval(Duration::from_millis(50))
            .open()
            .expect("open the store");
        let config = f(ServerConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            progress_notify_interval: PROGRESS_EVERY,
            snapshot_dir: Some(dir.path().to_path_buf()),
            ..ServerConfig::default()
        });
        let server = Server::bind(store.clone(), config)
            .await
            .expect("bind a loopback port");
        let endpoint = server.local_addrs()[0].to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        TestServer {
            endpoint,
            store,
            stop: Some(stop),
            serving: Some(serving),
            dir,
        }
    }

    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.endpoint.as_str()], None)
            .await
            .expect("connect to the server")
    }

    /// Stops the server gracefully and closes the store; returns what serving returned.
    pub async fn stop(self) -> Result<(), tonic::transport::Error> {
        self.stop_keeping_dir().await.0
    }

    /// As [`TestServer::stop`], handing back the temp dir (the store is at `data` in it).
    pub async fn stop_keeping_dir(
        mut self,
    ) -> (Result<(), tonic::transport::Error>, tempfile::TempDir) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = self.serving.take().unwrap().await.expect("the server task");
        batchkv_server::blocking::close(&self.store)
            .await
            .expect("close the store");
        (served, self.dir)
    }
}

/// The gRPC status of a failed call.
pub fn grpc(e: etcd_client::Error) -> tonic::Status {
    match e {
        etcd_client::Error::GRpcStatus(s) => s,
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}
