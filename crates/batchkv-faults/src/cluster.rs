//! What the fault run needs of a cluster, and the real etcd 3.4 cluster that has it.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use etcd_client::{Client, ConnectOptions};

/// A cluster of processes serving etcd's v3 API on loopback that the fault run can kill and
/// restart. The leader is found through the API ([`leader`]), so this is all a cluster needs:
/// [`batchkv_testkit::Etcd`] implements it, and a `batchkv serve` cluster does with a few lines
/// over its members' launchers.
pub trait Cluster {
    /// How many members (fixed for the run; index `0..members()`).
    fn member_count(&self) -> usize;
    /// Member `i`'s client endpoint, `host:port` (read again after each restart).
    fn endpoint(&self, i: usize) -> String;
    /// Kills member `i` with SIGKILL; its data stays for [`Cluster::restart`].
    fn kill(&mut self, i: usize);
    /// Starts member `i` again from its data, returning once it serves.
    fn restart(&mut self, i: usize);
}

impl Cluster for batchkv_testkit::Etcd {
    fn member_count(&self) -> usize {
        self.members()
    }

    fn endpoint(&self, i: usize) -> String {
        self.endpoints()[i].to_owned()
    }

    fn kill(&mut self, i: usize) {
        batchkv_testkit::Etcd::kill(self, i);
    }

    fn restart(&mut self, i: usize) {
        batchkv_testkit::Etcd::restart(self, i);
    }
}

impl Cluster for batchkv_testkit::BatchkvCluster {
    fn member_count(&self) -> usize {
        self.len()
    }

    fn endpoint(&self, i: usize) -> String {
        self.member(i).endpoint()
    }

    fn kill(&mut self, i: usize) {
        self.member_mut(i).kill();
    }

    fn restart(&mut self, i: usize) {
        self.member_mut(i).restart();
    }
}

/// Every member's endpoint, in member order.
pub fn endpoints(cluster: &impl Cluster) -> Vec<String> {
    (0..cluster.member_count())
        .map(|i| cluster.endpoint(i))
        .collect()
}

/// A client of one endpoint with the given deadline per request (and per connect).
///
/// # Errors
/// If the endpoint is not a valid address.
pub async fn connect(endpoint: &str, timeout: Duration) -> Result<Client> {
    let options = ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_timeout(timeout);
    Ok(Client::connect([endpoint], Some(options)).await?)
}

/// The index of the member that is the leader: the one whose Maintenance Status names itself
/// as leader. Members that do not answer are skipped; polled until one does.
///
/// # Errors
/// If no member claims to lead within `wait`.
pub async fn leader(endpoints: &[String], wait: Duration) -> Result<usize> {
    let started = Instant::now();
    loop {
        for (i, e) in endpoints.iter().enumerate() {
            let Ok(mut client) = connect(e, Duration::from_secs(1)).await else {
                continue;
            };
            let Ok(Ok(status)) =
                tokio::time::timeout(Duration::from_secs(2), client.status()).await
            else {
                continue;
            };
            if status
                .header()
                .is_some_and(|h| h.member_id() == status.leader())
            {
                return Ok(i);
            }
        }
        if started.elapsed() > wait {
            bail!("no member of {endpoints:?} claimed to lead within {wait:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
