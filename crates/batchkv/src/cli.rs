//! The `batchkv` command line (etcdctl's syntax and JSON output). In progress.
