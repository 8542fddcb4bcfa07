//! The members of a cluster from etcd's bootstrap flags (`--initial-cluster`,
//! `--initial-cluster-token`, `--initial-advertise-peer-urls`), with etcd's member and cluster
//! ids, so `etcdctl member list` shows the ids etcd would give the same flags.
//!
//! - A member's id is the first 8 bytes (big-endian) of the SHA-1 of its sorted peer URLs,
//!   concatenated, followed by the cluster token (etcd's `computeMemberId`, without the time
//!   that only members added later get).
//! - The cluster id is the first 8 bytes of the SHA-1 of the sorted member ids, each 8 bytes
//!   big-endian (etcd's `RaftCluster.genID`).
//!
//! The ids are raft's node ids too, so a member's raft id is stable across restarts and the
//! same on every member that was given the same flags.

use std::collections::BTreeMap;
use std::fmt;

use sha1::{Digest, Sha1};

/// etcd's default `--initial-cluster-token`.
pub const DEFAULT_CLUSTER_TOKEN: &str = "etcd-cluster";

/// One member of the initial cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// etcd's member id (and raft's node id).
    pub id: u64,
    /// The member's `--name`.
    pub name: String,
    /// Its peer URLs, in the order given.
    pub peer_urls: Vec<String>,
}

/// The cluster as bootstrapped: every member, and which one this process is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialCluster {
    /// The members, in the order their names first appear in `--initial-cluster`.
    pub members: Vec<Member>,
    /// etcd's cluster id.
    pub cluster_id: u64,
    /// This member's id.
    pub local_id: u64,
}

/// A bootstrap flag etcd would refuse, with etcd's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipError(pub String);

impl fmt::Display for MembershipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MembershipError {}

impl InitialCluster {
    /// The cluster from `--initial-cluster` (`name=url,name=url,...`; a name given twice
    /// has two peer URLs) and `--initial-cluster-token`, as member `name` whose
    /// `--initial-advertise-peer-urls` are `advertise_peer_urls`.
    ///
    /// # Errors
    /// etcd's texts: a URL that is not http(s), a URL given to two members, `name` missing,
    /// or `name`'s URLs not the advertised ones.
    pub fn parse(
        initial_cluster: &str,
        token: &str,
        name: &str,
        advertise_peer_urls: &[String],
    ) -> Result<InitialCluster, MembershipError> {
        let mut order: Vec<String> = Vec::new();
        let mut urls: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut seen = std::collections::HashSet::new();
        for part in initial_cluster.split(',').filter(|p| !p.is_empty()) {
            let (n, url) = part.split_once('=').unwrap_or((part, ""));
            check_url(url)
                .map_err(|e| MembershipError(format!("error setting up initial cluster: {e}")))?;
            if !seen.insert(url.to_owned()) {
                return Err(MembershipError(format!(
                    "initial cluster {initial_cluster} has duplicate url"
                )));
            }
            if !urls.contains_key(n) {
                order.push(n.to_owned());
            }
            urls.entry(n.to_owned()).or_default().push(url.to_owned());
        }
        let Some(local_urls) = urls.get(name) else {
            return Err(MembershipError(format!(
                "couldn't find local name {name:?} in the initial cluster configuration"
            )));
        };
        let mut want = local_urls.clone();
        let mut have = advertise_peer_urls.to_vec();
        want.sort();
        have.sort();
        if want != have {
            let missing = want.iter().find(|u| !have.contains(u)).unwrap_or(&want[0]);
            let quote = |v: &[String]| {
                v.iter()
                    .map(|u| format!("{u:?}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let why = if want.len() == have.len() {
                format!("resolved urls: {} != {}", quote(&have), quote(&want))
            } else {
                format!("len([{}]) != len([{}])", quote(&have), quote(&want))
            };
            return Err(MembershipError(format!(
                "--initial-cluster has {name}={missing} but missing from \
                 --initial-advertise-peer-urls={} ({why})",
                advertise_peer_urls.join(",")
            )));
        }
        let members: Vec<Member> = order
            .into_iter()
            .map(|n| {
                let peer_urls = urls.remove(&n).unwrap_or_default();
                Member {
                    id: member_id(&peer_urls, token),
                    name: n,
                    peer_urls,
                }
            })
            .collect();
        let local_id = members
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.id)
            .unwrap_or_default();
        let cluster_id = cluster_id(members.iter().map(|m| m.id));
        Ok(InitialCluster {
            members,
            cluster_id,
            local_id,
        })
    }

    /// The member with id `id`.
    pub fn member(&self, id: u64) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// Every member's raft id.
    pub fn ids(&self) -> Vec<u64> {
        self.members.iter().map(|m| m.id).collect()
    }

    /// Each member's record, for raft's bootstrap (`NodeConfig::initial_records`).
    pub fn records(&self) -> Vec<(u64, Vec<u8>)> {
        self.members
            .iter()
            .map(|m| {
                let r = MemberRecord {
                    id: m.id,
                    peer_urls: m.peer_urls.clone(),
                    name: m.name.clone(),
                    is_learner: false,
                };
                (m.id, r.to_bytes())
            })
            .collect()
    }

    /// The other members and the first peer URL of each: where the transport sends.
    pub fn peers(&self) -> Vec<(u64, String)> {
        self.members
            .iter()
            .filter(|m| m.id != self.local_id)
            .map(|m| (m.id, m.peer_urls[0].clone()))
            .collect()
    }
}

/// etcd's member id of a member with `peer_urls` in the cluster named `token`.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    member_id_at(peer_urls, token, None)
}

/// etcd's member id of a member added later (MemberAdd): the SHA-1 also covers the time of
/// the addition, in Unix seconds (etcd's `NewMember` with a time), so a member added again
/// with the same URLs gets a new id.
pub fn member_id_at(peer_urls: &[String], token: &str, unix_secs: Option<i64>) -> u64 {
    let mut sorted = peer_urls.to_vec();
    sorted.sort();
    let mut hash = Sha1::new();
    hash.update(sorted.concat().as_bytes());
    hash.update(token.as_bytes());
    if let Some(t) = unix_secs {
        hash.update(t.to_string().as_bytes());
    }
    first_u64(&hash.finalize())
}

/// A member's record as raft's configuration keeps it (the context of the configuration
/// change that added it, or written at bootstrap): etcd's Member JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberRecord {
    /// The member id.
    pub id: u64,
    /// Its peer URLs.
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
    /// Its name: the initial members' from `--initial-cluster`; empty for a member added
    /// later (it says its name once started: `Peer.Member`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Whether it was added as a learner.
    #[serde(
        rename = "isLearner",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub is_learner: bool,
}

impl MemberRecord {
    /// The JSON bytes raft keeps.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A record from its JSON bytes (`None` if they are not one).
    pub fn from_bytes(bytes: &[u8]) -> Option<MemberRecord> {
        serde_json::from_slice(bytes).ok()
    }
}

/// Whether `url` is a peer URL etcd accepts (http or https, with a host).
pub fn valid_peer_url(url: &str) -> bool {
    check_url(url).is_ok()
}

/// etcd's cluster id of the members `ids`.
pub fn cluster_id(ids: impl IntoIterator<Item = u64>) -> u64 {
    let mut ids: Vec<u64> = ids.into_iter().collect();
    ids.sort_unstable();
    let mut hash = Sha1::new();
    for id in ids {
        hash.update(id.to_be_bytes());
    }
    first_u64(&hash.finalize())
}

fn first_u64(digest: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(b)
}

/// etcd's check of a peer URL's scheme (`types.NewURLs`).
fn check_url(url: &str) -> Result<(), String> {
    let scheme = url.split_once("://").map(|(s, _)| s);
    match scheme {
        Some("http" | "https") => {}
        Some("unix" | "unixs") => return Err(format!("unix peer URLs are not served: {url}")),
        _ => {
            return Err(format!(
                "URL scheme must be http, https, unix, or unixs: {url}"
            ));
        }
    }
    let rest = &url[url.find("://").map_or(0, |i| i + 3)..];
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!(
            "URL address does not have the form \"host:port\": {url}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(s: &[&str]) -> Vec<String> {
        s.iter().map(|u| (*u).to_owned()).collect()
    }

    /// Ids a real etcd 3.4 logged for these flags ("added member bdae9bbc11dd390d
    /// [http://127.0.0.1:23801] to cluster f017819664191323"); `tests/membership.rs` checks
    /// against a running etcd too.
    #[test]
    fn ids_are_etcds() {
        let c = InitialCluster::parse(
            "n1=http://127.0.0.1:23801,n2=http://127.0.0.1:23802,n3=http://127.0.0.1:23803",
            DEFAULT_CLUSTER_TOKEN,
            "n1",
            &urls(&["http://127.0.0.1:23801"]),
        )
        .expect("etcd takes these flags");
        assert_eq!(c.local_id, 0xbdae_9bbc_11dd_390d);
        assert_eq!(
            c.ids(),
            [
                0xbdae_9bbc_11dd_390d,
                0x0294_3212_f5e2_cf73,
                0x3760_a4ec_3b84_f7fa
            ]
        );
        assert_eq!(c.cluster_id, 0xf017_8196_6419_1323);
        assert_eq!(c.peers().len(), 2);
        assert!(c.peers().iter().all(|(id, _)| *id != c.local_id));
    }

    #[test]
    fn refusals_are_etcds() {
        let one = "n1=http://127.0.0.1:23801";
        let adv = urls(&["http://127.0.0.1:23801"]);
        let err = |ic: &str, name: &str, adv: &[String]| {
            InitialCluster::parse(ic, DEFAULT_CLUSTER_TOKEN, name, adv)
                .expect_err("etcd refuses these flags")
                .0
        };
        assert_eq!(
            err(one, "n4", &adv),
            "couldn't find local name \"n4\" in the initial cluster configuration"
        );
        assert_eq!(
            err("n1=foo", "n1", &adv),
            "error setting up initial cluster: URL scheme must be http, https, unix, or unixs: foo"
        );
        assert_eq!(
            err(one, "n1", &urls(&["http://127.0.0.1:23809"])),
            "--initial-cluster has n1=http://127.0.0.1:23801 but missing from \
             --initial-advertise-peer-urls=http://127.0.0.1:23809 (resolved urls: \
             \"http://127.0.0.1:23809\" != \"http://127.0.0.1:23801\")"
        );
        assert_eq!(
            err(
                "n1=http://127.0.0.1:23801,n1=http://127.0.0.1:23802",
                "n1",
                &adv
            ),
            "--initial-cluster has n1=http://127.0.0.1:23802 but missing from \
             --initial-advertise-peer-urls=http://127.0.0.1:23801 (len([\"http://127.0.0.1:23801\"]) \
             != len([\"http://127.0.0.1:23801\" \"http://127.0.0.1:23802\"]))"
        );
        assert_eq!(
            err(
                "n1=http://127.0.0.1:23801,n2=http://127.0.0.1:23801",
                "n1",
                &adv
            ),
            "initial cluster n1=http://127.0.0.1:23801,n2=http://127.0.0.1:23801 has duplicate url"
        );
    }

    #[test]
    fn added_members_ids_cover_the_time() {
        let u = urls(&["http://127.0.0.1:23804"]);
        assert_eq!(
            member_id_at(&u, DEFAULT_CLUSTER_TOKEN, None),
            member_id(&u, DEFAULT_CLUSTER_TOKEN)
        );
        assert_ne!(
            member_id_at(&u, DEFAULT_CLUSTER_TOKEN, Some(1_700_000_000)),
            member_id_at(&u, DEFAULT_CLUSTER_TOKEN, Some(1_700_000_001))
        );
        let r = MemberRecord {
            id: 7,
            peer_urls: u,
            name: String::new(),
            is_learner: true,
        };
        assert_eq!(
            String::from_utf8(r.to_bytes()).expect("JSON"),
            r#"{"id":7,"peerURLs":["http://127.0.0.1:23804"],"isLearner":true}"#
        );
        assert_eq!(MemberRecord::from_bytes(&r.to_bytes()), Some(r));
        assert_eq!(MemberRecord::from_bytes(b"member-1"), None);
    }

    #[test]
    fn a_member_may_have_several_urls() {
        let c = InitialCluster::parse(
            "a=http://127.0.0.1:1,a=http://127.0.0.1:2,b=http://127.0.0.1:3",
            "tok",
            "a",
            &urls(&["http://127.0.0.1:2", "http://127.0.0.1:1"]),
        )
        .expect("etcd takes several URLs per member");
        assert_eq!(c.members.len(), 2);
        assert_eq!(c.members[0].peer_urls.len(), 2);
        assert_eq!(
            c.local_id,
            member_id(&urls(&["http://127.0.0.1:2", "http://127.0.0.1:1"]), "tok")
        );
        assert_ne!(
            member_id(&c.members[1].peer_urls, "tok"),
            member_id(&c.members[1].peer_urls, "other")
        );
    }
}
