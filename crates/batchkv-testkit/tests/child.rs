//! The child-process harness on this very test binary: lines arrive in order, SIGKILL ends the
//! child at once, and a child that exits by itself hands back its status and output.

use std::time::{Duration, Instant};

use batchkv_testkit::{ChildProcess, child_env, this_test};

const CHILD: &str = "BATCHKV_TESTKIT_TEST_CHILD";

#[test]
fn a_killed_child_stops_where_it_was() {
    if let Some(what) = child_env(CHILD) {
        assert_eq!(what, "count");
        for i in 0.. {
            println!("LINE {i}");
            if i == 3 {
                eprintln!("stderr from the child");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        return;
    }
    let mut child = ChildProcess::test("a_killed_child_stops_where_it_was", CHILD, "count");
    // libtest prints "test NAME ... " on the same line before the test's first output.
    let first = child.wait_for_line("LINE 0");
    assert!(first.ends_with("LINE 0"), "{first}");
    assert_eq!(child.next_line().as_deref(), Some("LINE 1"));
    child.wait_for_line("LINE 5");
    assert!(child.stderr().contains("stderr from the child"));
    let lines = child.take_lines();
    let reader = std::thread::spawn(move || lines.collect::<Vec<String>>());
    let started = Instant::now();
    child.kill();
    // The stdout closed with the kill: the reader ends, with the numbers still in order.
    let rest = reader.join().expect("reader");
    assert!(started.elapsed() < Duration::from_secs(30));
    for (i, line) in rest.iter().enumerate() {
        assert_eq!(*line, format!("LINE {}", i + 6));
    }
}

#[test]
fn a_child_that_exits_hands_back_its_output() {
    if child_env(CHILD).is_some() {
        println!("first");
        print!("last, without a newline");
        std::process::exit(3);
    }
    let mut cmd = this_test("a_child_that_exits_hands_back_its_output");
    cmd.env(CHILD, "exit");
    let exit = ChildProcess::spawn(cmd).wait();
    assert_eq!(exit.status.code(), Some(3));
    assert!(
        exit.stdout.contains("first\nlast, without a newline"),
        "{}",
        exit.stdout
    );
}
