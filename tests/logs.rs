//! Container logs in the CRI format at kubelet's path: stream tags, partial
//! lines, timestamps, rotation through ReopenContainerLog, a dockercri crash
//! in the middle, TTY output and removal.

mod common;

use std::time::Duration;

use common::pods::*;
use common::*;
use dockercri::proto::{RemoveContainerRequest, ReopenContainerLogRequest};
use tonic::Code;

/// One parsed CRI log record.
#[derive(Debug)]
struct Record {
    ns: i64,
    stream: String,
    tag: String,
    content: String,
}

fn records(path: &str) -> Vec<Record> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let mut p = line.splitn(4, ' ');
            let ts = p.next().unwrap();
            let ns = dockercri::docker::time::rfc3339_to_ns(ts);
            assert!(ns > 0, "bad timestamp in {line:?}");
            Record {
                ns,
                stream: p.next().unwrap().to_string(),
                tag: p.next().unwrap().to_string(),
                content: p.next().unwrap_or_default().to_string(),
            }
        })
        .collect()
}

/// The numbers printed as `line <n>` in a log, in order.
fn numbers(path: &str) -> Vec<u64> {
    records(path)
        .iter()
        .filter_map(|r| r.content.strip_prefix("line ")?.parse().ok())
        .collect()
}

async fn wait_for_lines(path: &str, at_least: usize) {
    for _ in 0..200 {
        if numbers(path).len() >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {at_least} lines in {path}");
}

#[tokio::test(flavor = "multi_thread")]
async fn output_is_written_in_the_cri_format() {
    let h = Harness::start().await;
    let pod = h.pod("fmt").await;
    let script = "echo out1; echo err1 >&2; echo out2; head -c 20000 /dev/zero | tr '\\0' x; echo; printf tail-no-newline";
    let id = h
        .start_container(&pod, container_config(&h, "fmt", script))
        .await;
    // An exited container's log is complete when its status says so.
    let s = h.wait_exited(&id).await;
    let raw = std::fs::read_to_string(&s.log_path).unwrap_or_default();
    let recs = records(&s.log_path);
    if !recs.iter().any(|r| r.content == "tail-no-newline") {
        eprintln!(
            "RAW:{:?}",
            raw.lines()
                .map(|l| &l[..l.len().min(60)])
                .collect::<Vec<_>>()
        );
    }
    let summary: Vec<(String, String, usize)> = recs
        .iter()
        .map(|r| (r.stream.clone(), r.tag.clone(), r.content.len()))
        .collect();
    let out: Vec<&Record> = recs.iter().filter(|r| r.stream == "stdout").collect();
    let err: Vec<&Record> = recs.iter().filter(|r| r.stream == "stderr").collect();
    assert_eq!(err.len(), 1, "{summary:?}");
    assert_eq!(
        (err[0].tag.as_str(), err[0].content.as_str()),
        ("F", "err1")
    );
    let contents: Vec<(&str, &str)> = out
        .iter()
        .map(|r| {
            (
                r.tag.as_str(),
                if r.content.len() > 40 {
                    "<long>"
                } else {
                    r.content.as_str()
                },
            )
        })
        .collect();
    assert_eq!(
        contents,
        [
            ("F", "out1"),
            ("F", "out2"),
            ("P", "<long>"),
            ("F", "<long>"),
            ("P", "tail-no-newline"),
        ],
        "{summary:?}"
    );
    // The long line is split at 16 KiB and nothing is lost.
    assert_eq!(out[2].content.len(), 16 * 1024);
    assert_eq!(out[2].content.len() + out[3].content.len(), 20000);
    // Docker stamps stdout and stderr in separate readers: each stream's
    // stamps rise, but the two may interleave out of order under load.
    for stream in [&out, &err] {
        for pair in stream.windows(2) {
            assert!(pair[0].ns <= pair[1].ns, "timestamps go back: {summary:?}");
        }
    }
    // The file is the container's own log, not a link to Docker's.
    assert!(
        !std::fs::symlink_metadata(&s.log_path)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

/// kubelet (and critest's "starting container with log") read an exited
/// container's file as soon as its status says EXITED: Docker reports the
/// exit before its log stream has reached us, so the status waits for it.
#[tokio::test(flavor = "multi_thread")]
async fn an_exited_containers_log_is_complete_when_its_status_says_exited() {
    let h = Harness::start().await;
    let pod = h.pod("drain").await;
    let id = h
        .start_container(&pod, container_config(&h, "quick", "echo hello World"))
        .await;
    let s = h.wait_exited(&id).await;
    let contents: Vec<(String, String)> = records(&s.log_path)
        .into_iter()
        .map(|r| (r.stream, r.content))
        .collect();
    assert_eq!(
        contents,
        [("stdout".to_string(), "hello World".to_string())]
    );
    // A burst the writer is still copying when Docker reports the exit.
    let script = "i=0; while [ $i -lt 20000 ]; do echo line $i; i=$((i+1)); done";
    let id = h
        .start_container(&pod, container_config(&h, "burst", script))
        .await;
    let s = h.wait_exited(&id).await;
    let lines = numbers(&s.log_path);
    let in_order = lines.iter().copied().eq(0..20000);
    assert!(
        in_order,
        "{} lines, the last {:?}: not 0..20000",
        lines.len(),
        lines.last()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reopen_after_rename_splits_the_log_without_loss_or_duplicates() {
    let h = Harness::start().await;
    let pod = h.pod("rotate").await;
    let script = "i=0; while [ $i -lt 60 ]; do echo line $i; i=$((i+1)); sleep 0.02; done";
    let id = h
        .start_container(&pod, container_config(&h, "rotate", script))
        .await;
    let path = h.container_status(&id).await.log_path;
    wait_for_lines(&path, 10).await;
    let rotated = format!("{path}.1");
    std::fs::rename(&path, &rotated).unwrap();
    h.rt()
        .reopen_container_log(ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    h.wait_exited(&id).await;
    for _ in 0..100 {
        if numbers(&rotated).len() + numbers(&path).len() >= 60 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let old = numbers(&rotated);
    let new = numbers(&path);
    assert!(
        !old.is_empty() && !new.is_empty(),
        "old {old:?} new {new:?}"
    );
    let all: Vec<u64> = old.iter().chain(new.iter()).copied().collect();

    assert_eq!(all, (0..60).collect::<Vec<_>>(), "old {old:?} new {new:?}");

    // Not running any more: reopen says so.
    let err = h
        .rt()
        .reopen_container_log(ReopenContainerLogRequest { container_id: id })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("not running"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dockercri_crash_loses_and_repeats_nothing() {
    let mut h = Harness::start().await;
    let pod = h.pod("crash").await;
    let script = "i=0; while [ $i -lt 100 ]; do echo line $i; i=$((i+1)); sleep 0.02; done";
    let id = h
        .start_container(&pod, container_config(&h, "crash", script))
        .await;
    let path = h.container_status(&id).await.log_path;
    wait_for_lines(&path, 15).await;
    h.restart_killed().await;
    h.wait_exited(&id).await;
    for _ in 0..100 {
        if numbers(&path).len() >= 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(numbers(&path), (0..100).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn tty_output_is_stdout() {
    let h = Harness::start().await;
    let pod = h.pod("tty").await;
    let mut c = container_config(&h, "tty", "echo one; echo two >&2");
    c.tty = true;
    let id = h.start_container(&pod, c).await;
    let s = h.wait_exited(&id).await;
    for _ in 0..100 {
        if records(&s.log_path).len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recs = records(&s.log_path);
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert!(
        recs.iter().all(|r| r.stream == "stdout" && r.tag == "F"),
        "{recs:?}"
    );
    let text: Vec<&str> = recs
        .iter()
        .map(|r| r.content.trim_end_matches('\r'))
        .collect();
    assert_eq!(text, ["one", "two"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn removal_deletes_the_log_and_the_pod_directory() {
    let h = Harness::start().await;
    let pod = h.pod("rmlog").await;
    let id = h
        .start_container(&pod, container_config(&h, "rmlog", "echo bye"))
        .await;
    let s = h.wait_exited(&id).await;
    assert!(std::path::Path::new(&s.log_path).is_file());
    h.rt()
        .remove_container(RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    assert!(!std::path::Path::new(&s.log_path).exists());
    assert!(std::path::Path::new(&pod.config.log_directory).is_dir());
    h.stop_pod(&pod.id).await;
    h.rt()
        .remove_pod_sandbox(dockercri::proto::RemovePodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        })
        .await
        .unwrap();
    // The directory is kubelet's: its garbage collector removes it.
    assert!(std::path::Path::new(&pod.config.log_directory).is_dir());
}

#[tokio::test(flavor = "multi_thread")]
async fn dockers_own_log_is_bounded_and_output_written_while_away_survives_its_rotation() {
    let mut h = Harness::start_with(&[
        "--docker-log-max-size",
        "32k",
        "--docker-log-max-files",
        "8",
    ])
    .await;
    let pod = h.pod("bounded").await;
    // 20 lines, a pause while dockercri goes down, then about 150 KB of
    // Docker's json-file log: several rotations of a 32 KB file.
    let script = "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); \
                  [ $i = 20 ] && sleep 3; done";
    let id = h
        .start_container(&pod, container_config(&h, "bounded", script))
        .await;
    let inspect = docker().await.inspect_container(&id, None).await.unwrap();
    let log_config = inspect.host_config.unwrap().log_config.unwrap();
    assert_eq!(log_config.typ.as_deref(), Some("json-file"));
    let options = log_config.config.unwrap();
    assert_eq!(options["max-size"], "32k");
    assert_eq!(options["max-file"], "8");
    let path = h.container_status(&id).await.log_path;
    wait_for_lines(&path, 20).await;
    // Down until the container has written everything and exited.
    h.restart_killed_after(Duration::from_secs(6)).await;
    let rotated = std::path::Path::new(inspect.log_path.as_deref().unwrap())
        .with_extension("log.1")
        .exists();
    assert!(rotated, "Docker rotated its log while dockercri was away");
    h.wait_exited(&id).await;
    for _ in 0..200 {
        if numbers(&path).len() >= 2000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(numbers(&path), (0..2000).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zero_size_leaves_dockers_own_log_settings() {
    let h = Harness::start_with(&["--docker-log-max-size", "0"]).await;
    let pod = h.pod("unbounded").await;
    let id = h
        .start_container(&pod, container_config(&h, "plain", "sleep 60"))
        .await;
    let inspect = docker().await.inspect_container(&id, None).await.unwrap();
    let options = inspect
        .host_config
        .unwrap()
        .log_config
        .and_then(|c| c.config)
        .unwrap_or_default();
    assert!(!options.contains_key("max-size"), "{options:?}");
}
