//! Metrics through the store: every name the Grafana dashboard queries exists in the
//! exposition, and a real Prometheus server scraping `/metrics` every second sees the series
//! with non-zero values while a workload runs.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use batchkv::{Durability, Range, Store};
use batchkv_testkit::free_port;
use bytes::Bytes;

fn workload(store: &Store, n: usize) {
    for i in 0..n {
        store
            .put(format!("k{}", i % 50), format!("v{i}"))
            .expect("put");
        if i % 5 == 0 {
            store.get(format!("k{}", i % 50)).expect("get");
        }
    }
    let _ = store.put("", "refused"); // one error, so the success ratio is below 1
    store
        .range(&Range {
            range_end: Bytes::from_static(b"\0"),
            ..Range::key("k")
        })
        .expect("range");
}

/// Metric names a PromQL expression uses.
fn names_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("batchkv_") {
        let start = i + pos;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        out.push(expr[start..end].to_owned());
        i = end;
    }
    out
}

#[test]
fn every_dashboard_metric_exists_in_the_exposition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder(dir.path())
        .durability(Durability::Wal {
            flush: batchkv::AutoFlushConfig::default(),
        })
        .metrics(true)
        .open()
        .expect("open");
    workload(&store, 500);
    let _w = store.watch(batchkv::WatchRequest::key("k1"));
    store.flush().expect("flush");
    let text = store.metrics_text().expect("metrics on");
    let exposed: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or("").to_owned())
        .collect();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/grafana-dashboard.json"),
        )
        .expect("docs/grafana-dashboard.json"),
    )
    .expect("dashboard JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "{} panels", panels.len());
    let mut checked = 0;
    for p in panels {
        for t in p["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr");
            for name in names_in(expr) {
                assert!(
                    exposed.contains(&name),
                    "panel {:?} uses {name}, not exposed",
                    p["title"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 25, "only {checked} names checked");
    // Values, not just names: what the workload did shows.
    assert!(
        text.contains("batchkv_ops_total{op=\"put\",outcome=\"ok\"} 500"),
        "{text}"
    );
    assert!(text.contains("batchkv_mvcc_watchers 1"));
    // A store without metrics has none.
    drop(store);
    let plain = Store::open(dir.path().join("plain")).expect("open");
    assert!(plain.metrics_text().is_none());
    assert!(plain.serve_metrics("127.0.0.1:0").is_err());
}

fn http_get(addr: &str, path: &str) -> String {
    let Ok(mut c) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

fn encode_query(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The first sample's value of an instant query, if any.
fn query(prom: &str, q: &str) -> Option<f64> {
    let body = http_get(prom, &format!("/api/v1/query?query={}", encode_query(q)));
    // Chunked transfer encoding may wrap the JSON: take the outermost object.
    let json = &body[body.find('{')?..=body.rfind('}')?];
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v["data"]["result"].as_array()?.first()?["value"][1]
        .as_str()?
        .parse()
        .ok()
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_the_store() {
    let prometheus = which("prometheus").unwrap_or_else(|| {
        panic!("prometheus is required: `cargo xtask doctor` installs it (apt-get install -y prometheus)")
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder(dir.path().join("store"))
        .metrics(true)
        .open()
        .expect("open");
    let server = store.serve_metrics("127.0.0.1:0").expect("serve");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: batchkv\n    static_configs:\n      - targets: ['{}']\n",
            server.addr()
        ),
    )
    .expect("config");
    let prom_addr = format!("127.0.0.1:{}", free_port());
    let _prom = Prometheus(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    // Work while Prometheus scrapes, until it has seen every series we ask for.
    let start = Instant::now();
    let wanted = [
        "sum(batchkv_ops_total{op=\"put\"})",
        "batchkv_mvcc_revision",
        "sum(batchkv_batch_ops_count)",
        "batchkv_codec_entry_size_bytes_count",
        "sum(batchkv_op_latency_quantile_seconds{op=\"put\",quantile=\"0.99\"})",
        "up{job=\"batchkv\"}",
    ];
    let mut seen = vec![None; wanted.len()];
    while seen.iter().any(Option::is_none) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Prometheus did not see {:?} within 60 s",
            wanted
                .iter()
                .zip(&seen)
                .filter(|(_, s)| s.is_none())
                .map(|(w, _)| w)
                .collect::<Vec<_>>()
        );
        workload(&store, 200);
        std::thread::sleep(Duration::from_millis(300));
        for (q, s) in wanted.iter().zip(seen.iter_mut()) {
            if s.is_none() {
                *s = query(&prom_addr, q).filter(|v| *v > 0.0);
            }
        }
    }
    let revision = seen[1].expect("revision");
    assert!(revision > 100.0, "revision {revision}");
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}
