//! `batchkv`: etcdctl's commands on a local batchkv data dir (see [`batchkv::cli`]).

fn main() {
    std::process::exit(batchkv::cli::run(std::env::args_os().skip(1)));
}
