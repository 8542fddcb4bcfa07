//! Codec benchmarks: encode and decode of 1, 100 and 1000-op entries (16-byte keys, 100-byte
//! values), the fallback decoder against a direct prost decode of the same bytes, and LZ4.
//!
//! `cargo xtask bench codec` runs them and writes the report; `cargo bench --workspace --bench
//! codec --profile release` runs them alone.

use std::hint::black_box;

mod common;

use batchkv_benches::rows::CodecSizeRow;
use batchkv_codec::{
    Compression, Decoder, Encoder, Limits, Op, Put, decode_entry, encode_entry, wire,
};
use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use prost::Message;

const SIZES: [usize; 3] = [1, 100, 1000];

/// 16-byte keys, 100-byte values. `compressible` values look like typical metadata (repeated
/// text with a counter); the others are pseudo-random bytes that LZ4 cannot shrink.
fn ops(n: usize, compressible: bool) -> Vec<Op> {
    let mut rng = common::Rng(0x2545_f491_4f6c_dd1d);
    (0..n)
        .map(|i| {
            let key = format!("key-{i:012}").into_bytes();
            let value: Vec<u8> = if compressible {
                format!("{{\"owner\":\"svc-{:04}\",\"state\":\"ready\",\"replicas\":3,\"zone\":\"eu-west-1a\",\"v\":{i:010}}}", i % 64)
                    .into_bytes()
                    .into_iter()
                    .chain(std::iter::repeat(b' '))
                    .take(100)
                    .collect()
            } else {
                rng.bytes(100)
            };
            assert_eq!((key.len(), value.len()), (16, 100));
            Op::Put(Put::new(key, value))
        })
        .collect()
}

fn encoded(ops: &[Op], encoder: &Encoder) -> BytesMut {
    let mut buf = BytesMut::new();
    encoder
        .encode_entry(ops, &mut buf)
        .expect("bench ops encode");
    buf
}

fn throughput(n: usize, bytes: usize) -> Throughput {
    Throughput::ElementsAndBytes {
        elements: n as u64,
        bytes: bytes as u64,
    }
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec/encode");
    for n in SIZES {
        let ops = ops(n, false);
        let len = encoded(&ops, &Encoder::default()).len();
        g.throughput(throughput(n, len));
        let mut buf = BytesMut::with_capacity(len);
        g.bench_with_input(BenchmarkId::from_parameter(n), &ops, |b, ops| {
            b.iter(|| {
                buf.clear();
                encode_entry(black_box(ops), &mut buf).expect("encodes");
            })
        });
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    for n in SIZES {
        let bytes = encoded(&ops(n, false), &Encoder::default());
        let mut g = c.benchmark_group(format!("codec/decode/{n}"));
        g.throughput(throughput(n, bytes.len()));
        // The fallback API: classification, op-count scan, prost, validation into domain ops.
        g.bench_function("fallback", |b| {
            b.iter(|| decode_entry(black_box(&bytes)).expect("decodes"))
        });
        // prost alone, into the wire structs: the floor the fallback API is measured against.
        g.bench_function("prost_direct", |b| {
            b.iter(|| wire::Entry::decode(black_box(&bytes[..])).expect("decodes"))
        });
        // prost, then the same checked conversion into domain ops: what the fallback API yields,
        // without the fallback chain (classification, envelope framing, op-count scan).
        g.bench_function("prost_then_convert", |b| {
            b.iter(|| {
                let entry = wire::Entry::decode(black_box(&bytes[..])).expect("decodes");
                let wire_ops = match entry.payload.expect("payload") {
                    wire::entry::Payload::Single(op) => vec![op],
                    wire::entry::Payload::Batch(batch) => batch.operations,
                    wire::entry::Payload::Lz4Batch(_) => unreachable!("not compressed"),
                };
                wire_ops
                    .into_iter()
                    .map(Op::try_from)
                    .collect::<Result<Vec<_>, _>>()
                    .expect("valid ops")
            })
        });
        g.finish();
    }
}

fn compression(c: &mut Criterion) {
    let lz4 = Encoder::new(Limits::default(), Compression::Lz4 { min_bytes: 4096 });
    let decoder = Decoder::default();
    for (label, compressible) in [("compressible", true), ("random", false)] {
        let ops = ops(1000, compressible);
        let mut g = c.benchmark_group(format!("codec/lz4/{label}"));
        for (name, encoder) in [("none", Encoder::default()), ("lz4", lz4)] {
            let bytes = encoded(&ops, &encoder);
            g.throughput(throughput(1000, bytes.len()));
            let mut buf = BytesMut::with_capacity(bytes.len());
            g.bench_function(format!("encode_{name}"), |b| {
                b.iter(|| {
                    buf.clear();
                    encoder
                        .encode_entry(black_box(&ops), &mut buf)
                        .expect("encodes");
                })
            });
            g.bench_function(format!("decode_{name}"), |b| {
                b.iter(|| decoder.decode(black_box(&bytes)).expect("decodes"))
            });
        }
        g.finish();
    }
}

/// Entry sizes, printed and written to the report directory (criterion measures only time).
fn sizes() {
    let lz4 = Encoder::new(Limits::default(), Compression::Lz4 { min_bytes: 4096 });
    let mut rows = Vec::new();
    for compressible in [true, false] {
        let ops = ops(1000, compressible);
        let plain = encoded(&ops, &Encoder::default()).len();
        let packed = encoded(&ops, &lz4).len();
        let label = if compressible {
            "compressible"
        } else {
            "random"
        };
        println!(
            "codec sizes: 1000 ops, {label} values: {plain} bytes plain, {packed} bytes lz4 ({:.2}x)",
            plain as f64 / packed as f64
        );
        rows.push(CodecSizeRow {
            ops: 1000,
            values: label.to_owned(),
            plain_bytes: plain,
            lz4_bytes: packed,
            ratio: plain as f64 / packed as f64,
        });
    }
    common::write_rows(&rows);
}

criterion_group!(benches, encode, decode, compression);

fn main() {
    // The sizes belong with the LZ4 benchmarks: skip them when a filter excludes those.
    if common::filter().is_none_or(|f| "codec/lz4".contains(f.as_str()) || f.contains("codec/lz4"))
    {
        sizes();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
