//! The exposition parses as Prometheus text, names follow the conventions, values are what was
//! recorded; the HTTP endpoint answers /metrics, /health, 404 and 405.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use batchkv_metrics::{Metrics, OpLabel, StateSample, serve};

fn parse(text: &str) -> prometheus_parse::Scrape {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text")
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

#[test]
fn exposition_parses_and_carries_what_was_recorded() {
    let m = Metrics::new();
    for i in 0..100u64 {
        m.record_op(
            OpLabel::Put,
            i % 10 != 0,
            Duration::from_micros(100 + i * 10),
        );
    }
    m.record_op(OpLabel::Range, true, Duration::from_micros(50));
    m.record_batch(
        64,
        8_000,
        Duration::from_micros(300),
        Duration::from_micros(200),
        "size",
        Duration::from_millis(2),
        5,
    );
    m.record_entry(
        7_000,
        Duration::from_micros(20),
        Duration::from_micros(15),
        "entry",
    );
    m.record_apply(64, Duration::from_millis(1), 64);
    m.set_state(&StateSample {
        revision: 101,
        compacted_revision: -1,
        keys: 90,
        leases: 2,
        watchers: 3,
        queue_depth: 4,
        engine: vec![("block_cache_hit_ratio".into(), 0.75)],
        wal_syncs: 7,
        wal_unsynced_bytes: 123,
    });
    let text = m.encode();
    let s = parse(&text);
    assert_eq!(
        value(&s, "batchkv_ops_total", &[("op", "put"), ("outcome", "ok")]),
        Some(90.0)
    );
    assert_eq!(
        value(
            &s,
            "batchkv_ops_total",
            &[("op", "put"), ("outcome", "error")]
        ),
        Some(10.0)
    );
    assert_eq!(value(&s, "batchkv_mvcc_revision", &[]), Some(101.0));
    assert_eq!(value(&s, "batchkv_engine_wal_syncs_total", &[]), Some(7.0));
    assert_eq!(
        value(&s, "batchkv_engine", &[("name", "block_cache_hit_ratio")]),
        Some(0.75)
    );
    assert_eq!(
        value(&s, "batchkv_batch_flushes_total", &[("name", "size")]),
        Some(1.0)
    );
    assert_eq!(value(&s, "batchkv_mvcc_events_total", &[]), Some(64.0));
    let p99 = value(
        &s,
        "batchkv_op_latency_quantile_seconds",
        &[("op", "put"), ("quantile", "0.99")],
    )
    .expect("p99");
    assert!((0.00108..=0.00110).contains(&p99), "p99 {p99}");
    assert!(
        value(&s, "batchkv_op_duration_seconds", &[("op", "put")]).is_some(),
        "{text}"
    );
    assert!((m.success_ratio() - 91.0 / 101.0).abs() < 1e-9);
    // Conventions: the prefix everywhere; counters end in _total.
    for sample in &s.samples {
        assert!(sample.metric.starts_with("batchkv_"), "{}", sample.metric);
        if matches!(sample.value, prometheus_parse::Value::Counter(_)) {
            assert!(sample.metric.ends_with("_total"), "{}", sample.metric);
        }
    }
    let l = m.latency(OpLabel::Put);
    assert_eq!(l.count, 100);
    assert!(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max);
}

fn http(addr: std::net::SocketAddr, request: &str) -> String {
    let mut c = TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    c.write_all(request.as_bytes()).expect("send");
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out
}

#[test]
fn the_endpoint_serves_metrics_and_health_and_refuses_the_rest() {
    let m = Arc::new(Metrics::new());
    m.record_op(OpLabel::Put, true, Duration::from_micros(10));
    let render = Arc::clone(&m);
    let server = serve("127.0.0.1:0", move || render.encode()).expect("serve");
    let addr = server.addr();
    let get = |path: &str| {
        http(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
    };
    let r = get("/metrics");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(
        r.contains("batchkv_ops_total{op=\"put\",outcome=\"ok\"} 1"),
        "{r}"
    );
    assert!(get("/health").contains("\r\n\r\nok"));
    assert!(get("/nope").starts_with("HTTP/1.1 404"));
    let r = http(
        addr,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    // Garbage does not stop it.
    let _ = http(addr, "\u{0}\u{1}garbage\r\n\r\n");
    assert!(get("/health").starts_with("HTTP/1.1 200"));
    server.stop();
}
