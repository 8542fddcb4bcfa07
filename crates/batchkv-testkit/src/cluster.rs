//! A cluster of `batchkv serve` processes on loopback: each member on its own free client and
//! peer ports and temp data dir, bootstrapped with etcd's flags (`--name`,
//! `--initial-cluster`, `--initial-advertise-peer-urls`, `--listen-peer-urls`), ready when
//! every member answers `etcdctl endpoint health` (a quorum elected a leader).

use std::path::{Path, PathBuf};

use crate::net::free_port_list;
use crate::serve::{BatchkvServer, ServeOptions};

/// A running cluster of `batchkv serve` members (`n1`, `n2`, ...). Members can be killed
/// (SIGKILL), stopped and restarted on their data dirs; dropping the cluster kills them all.
#[derive(Debug)]
pub struct BatchkvCluster {
    binary: PathBuf,
    members: Vec<BatchkvServer>,
}

impl BatchkvCluster {
    /// Starts `size` members of `binary serve`, each with `extra` flags too, and waits until
    /// every one is healthy.
    ///
    /// # Panics
    /// If a member does not start or become healthy (the message has the end of its log).
    pub fn start(binary: impl AsRef<Path>, size: usize, extra: &[String]) -> BatchkvCluster {
        let peer_ports = free_port_list(size);
        let peer_url = |i: usize| format!("http://127.0.0.1:{}", peer_ports[i]);
        let initial: Vec<String> = (0..size)
            .map(|i| format!("n{}={}", i + 1, peer_url(i)))
            .collect();
        let initial = initial.join(",");
        let mut members: Vec<BatchkvServer> = (0..size)
            .map(|i| {
                let mut args = vec![
                    format!("--name=n{}", i + 1),
                    format!("--initial-cluster={initial}"),
                    format!("--initial-advertise-peer-urls={}", peer_url(i)),
                    format!("--listen-peer-urls={}", peer_url(i)),
                ];
                args.extend(extra.iter().cloned());
                BatchkvServer::spawn_with(
                    binary.as_ref(),
                    ServeOptions {
                        args,
                        ..ServeOptions::default()
                    },
                )
            })
            .collect();
        for m in &mut members {
            m.wait_ready();
        }
        BatchkvCluster {
            binary: binary.as_ref().to_path_buf(),
            members,
        }
    }

    /// Starts a member joining the running cluster (after `etcdctl member add`): `name`
    /// on `peer_url` (`http://127.0.0.1:PORT`, the URL given to `member add`), with the
    /// `ETCD_INITIAL_CLUSTER` value `member add` printed and `--initial-cluster-state
    /// existing`; waits until it is healthy; returns its index.
    ///
    /// # Panics
    /// If it does not start or become healthy (the message has the end of its log).
    pub fn join(&mut self, name: &str, peer_url: &str, initial_cluster: &str) -> usize {
        let mut m = BatchkvServer::spawn_with(
            &self.binary,
            ServeOptions {
                args: vec![
                    format!("--name={name}"),
                    format!("--initial-cluster={initial_cluster}"),
                    "--initial-cluster-state=existing".to_owned(),
                    format!("--initial-advertise-peer-urls={peer_url}"),
                    format!("--listen-peer-urls={peer_url}"),
                ],
                ..ServeOptions::default()
            },
        );
        m.wait_ready();
        self.members.push(m);
        self.members.len() - 1
    }

    /// The binary the members run.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `i` (0-based; named `n{i+1}`).
    pub fn member(&self, i: usize) -> &BatchkvServer {
        &self.members[i]
    }

    /// Member `i`, to kill, stop or restart it.
    pub fn member_mut(&mut self, i: usize) -> &mut BatchkvServer {
        &mut self.members[i]
    }

    /// Every member's `127.0.0.1:port` client endpoint.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(BatchkvServer::endpoint).collect()
    }

    /// The running members' index whose own Status says it is the leader, if one does.
    pub fn leader(&self) -> Option<usize> {
        self.members.iter().position(|m| {
            if m.pid().is_none() {
                return false;
            }
            let out = m.ctl_json(&["endpoint", "status"], None);
            if !out.ok {
                return false;
            }
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&out.stdout) else {
                return false;
            };
            let st = &v[0]["Status"];
            let leader = st["leader"].as_u64();
            leader.is_some() && leader == st["header"]["member_id"].as_u64()
        })
    }
}
