//! Streaming: ExecSync, and Exec / Attach / PortForward through the
//! streaming server over SPDY/3.1 and WebSocket, against the real dockerd.

mod common;

use std::time::{Duration, Instant};

use common::pods::{Pod, container_config};
use common::stream::{Client, Input, spdy_forward};
use common::{Harness, tempdir};
use dockercri::proto::*;
use tonic::Code;

const SPDY_V4: &str = "v4.channel.k8s.io";
const WS_V5: &str = "v5.channel.k8s.io";
const WS_V4: &str = "v4.channel.k8s.io";

/// A pod with one long-running busybox container.
async fn running(h: &Harness, name: &str) -> (Pod, String) {
    let pod = h.pod(name).await;
    let id = h
        .start_container(&pod, container_config(h, "app", "sleep 3600"))
        .await;
    (pod, id)
}

async fn exec_url(h: &Harness, id: &str, cmd: &[&str], input: &Input) -> String {
    h.rt()
        .exec(ExecRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty: input.tty,
            stdin: input.stdin.is_some() || input.keep_stdin_open,
            stdout: input.stdout,
            stderr: input.stderr,
        })
        .await
        .unwrap_or_else(|e| panic!("Exec: {e:?}\n{}", h.logs()))
        .into_inner()
        .url
}

fn out_err() -> Input {
    Input {
        stdout: true,
        stderr: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_sync_splits_output_and_reports_the_exit_code() {
    let h = Harness::start().await;
    let (_pod, id) = running(&h, "execsync").await;
    let r = h
        .rt()
        .exec_sync(ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "echo out; echo err >&2; exit 3".into(),
            ],
            timeout: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.stdout.as_slice(), r.stderr.as_slice(), r.exit_code),
        (&b"out\n"[..], &b"err\n"[..], 3)
    );
    let unknown = h
        .rt()
        .exec_sync(ExecSyncRequest {
            container_id: "no-such-container".into(),
            cmd: vec!["true".into()],
            timeout: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    h.rt()
        .stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
    let stopped = h
        .rt()
        .exec_sync(ExecSyncRequest {
            container_id: id,
            cmd: vec!["true".into()],
            timeout: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(stopped.code(), Code::FailedPrecondition, "{stopped:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_sync_timeout_kills_the_command() {
    let h = Harness::start().await;
    let (_pod, id) = running(&h, "execsync-timeout").await;
    let started = Instant::now();
    let err = h
        .rt()
        .exec_sync(ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "sleep 31 & sleep 32; echo never".into(),
            ],
            timeout: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(err.message().contains("timeout"), "{}", err.message());
    assert!(started.elapsed() < Duration::from_secs(10));
    // Neither the command nor its children are left in the container.
    let mut left = String::new();
    for _ in 0..20 {
        let ps = h
            .rt()
            .exec_sync(ExecSyncRequest {
                container_id: id.clone(),
                cmd: vec!["ps".into()],
                timeout: 10,
            })
            .await
            .unwrap()
            .into_inner();
        left = String::from_utf8_lossy(&ps.stdout).into_owned();
        if !left.contains("sleep 31") && !left.contains("sleep 32") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed-out processes left behind:\n{left}");
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_sync_output_is_capped_to_fit_kubelets_16_mib_messages() {
    let h = Harness::start().await;
    let (_pod, id) = running(&h, "execsync-cap").await;
    // kubelet's CRI client refuses replies above 16 MiB.
    let r = h
        .rt()
        .max_decoding_message_size(16 * 1024 * 1024)
        .exec_sync(ExecSyncRequest {
            container_id: id,
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "head -c 17000000 /dev/zero; echo small >&2".into(),
            ],
            timeout: 60,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.stderr, b"small\n");
    assert_eq!(
        r.stdout.len() + r.stderr.len(),
        dockercri::runtime::exec::EXEC_SYNC_OUTPUT_CAP
    );
    assert_eq!(r.exit_code, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_requests_are_validated() {
    let h = Harness::start().await;
    let (_pod, id) = running(&h, "exec-validate").await;
    let bad = [
        (
            id.clone(),
            vec!["true".to_string()],
            false,
            false,
            false,
            false,
        ),
        (
            id.clone(),
            vec!["true".to_string()],
            true,
            true,
            true,
            false,
        ),
        (id.clone(), vec![], false, true, false, false),
    ];
    for (container_id, cmd, tty, stdout, stderr, stdin) in bad {
        let err = h
            .rt()
            .exec(ExecRequest {
                container_id,
                cmd: cmd.clone(),
                tty,
                stdin,
                stdout,
                stderr,
            })
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{cmd:?} tty={tty}: {err:?}"
        );
    }
    let err = h
        .rt()
        .exec(ExecRequest {
            container_id: "nope".into(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let url = exec_url(&h, &id, &["true"], &out_err()).await;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_echo_over_spdy_and_websocket() {
    let h = Harness::start().await;
    let (_pod, id) = running(&h, "exec-echo").await;
    let c = Client::default();
    let cmd = ["sh", "-c", "echo out; echo err >&2"];
    let spdy = c
        .spdy_command(
            &exec_url(&h, &id, &cmd, &out_err()).await,
            SPDY_V4,
            out_err(),
        )
        .await;
    for (name, proto) in [
        ("spdy", None),
        ("ws v5", Some(WS_V5)),
        ("ws v4", Some(WS_V4)),
    ] {
        let out = match proto {
            None => &spdy,
            Some(p) => {
                &c.ws_command(&exec_url(&h, &id, &cmd, &out_err()).await, p, out_err())
                    .await
            }
        };
        assert_eq!(
            (out.stdout(), out.stderr()),
            ("out\n".into(), "err\n".into()),
            "{name}"
        );
        assert_eq!(out.exit_code(), 0, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_come_on_the_error_stream() {
    let h = Harness::start().await;
    let (_pod, id) = running(&h, "exec-exit").await;
    let c = Client::default();
    for code in [0, 3] {
        let cmd = ["sh".to_string(), "-c".to_string(), format!("exit {code}")];
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let spdy = c
            .spdy_command(
                &exec_url(&h, &id, &cmd, &out_err()).await,
                SPDY_V4,
                out_err(),
            )
            .await;
        assert_eq!(spdy.exit_code(), code, "spdy");
        let ws = c
            .ws_command(&exec_url(&h, &id, &cmd, &out_err()).await, WS_V5, out_err())
            .await;
        assert_eq!(ws.exit_code(), code, "websocket");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stdin_is_piped_to_cat_and_closed() {
    let h = Harness::start().await;
    let (_pod, id) = running(&h, "exec-stdin").await;
    let c = Client::default();
    let input = Input {
        stdin: Some(b"hello\nworld\n".to_vec()),
        ..out_err()
    };
    let spdy = c
        .spdy_command(
            &exec_url(&h, &id, &["cat"], &input).await,
            SPDY_V4,
            input.clone(),
        )
        .await;
    let ws = c
        .ws_command(
            &exec_url(&h, &id, &["cat"], &input).await,
            WS_V5,
            input.clone(),
        )
        .await;
    for (name, out) in [("spdy", spdy), ("websocket", ws)] {
        assert_eq!(out.stdout(), "hello\nworld\n", "{name}");
        assert_eq!(out.exit_code(), 0, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tty_exec_honours_resize() {
    let h = Harness::start().await;
    let (_pod, id) = running(&h, "exec-tty").await;
    let c = Client::default();
    let input = Input {
        stdout: true,
        tty: true,
        resize: Some((123, 45)),
        ..Default::default()
    };
    let cmd = ["sh", "-c", "sleep 1; stty size"];
    let spdy = c
        .spdy_command(
            &exec_url(&h, &id, &cmd, &input).await,
            SPDY_V4,
            input.clone(),
        )
        .await;
    let ws = c
        .ws_command(&exec_url(&h, &id, &cmd, &input).await, WS_V5, input.clone())
        .await;
    for (name, out) in [("spdy", spdy), ("websocket", ws)] {
        assert_eq!(out.stdout().trim(), "45 123", "{name}");
    }
}

async fn attach_url(h: &Harness, id: &str, input: &Input) -> String {
    h.rt()
        .attach(AttachRequest {
            container_id: id.into(),
            stdin: input.stdin.is_some() || input.keep_stdin_open,
            tty: input.tty,
            stdout: input.stdout,
            stderr: input.stderr,
        })
        .await
        .unwrap_or_else(|e| panic!("Attach: {e:?}\n{}", h.logs()))
        .into_inner()
        .url
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_feeds_stdin_and_detaching_leaves_the_container_running() {
    let h = Harness::start().await;
    let pod = h.pod("attach").await;
    let mut config = container_config(&h, "reader", "while read l; do echo got:$l; done");
    config.stdin = true;
    let id = h.start_container(&pod, config).await;
    let c = Client::default();
    for (name, spdy) in [("spdy", true), ("websocket", false)] {
        let input = Input {
            stdin: Some(format!("{name}\n").into_bytes()),
            keep_stdin_open: true,
            stdout: true,
            stderr: true,
            until_stdout: Some(format!("got:{name}")),
            ..Default::default()
        };
        let url = attach_url(&h, &id, &input).await;
        let out = if spdy {
            c.spdy_command(&url, SPDY_V4, input).await
        } else {
            c.ws_command(&url, WS_V5, input).await
        };
        assert!(
            out.stdout().contains(&format!("got:{name}")),
            "{name}: {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let s = h.container_status(&id).await;
        assert_eq!(
            s.state(),
            ContainerState::ContainerRunning,
            "{name}: detach stopped it"
        );
    }
}

async fn httpd_pod(h: &Harness, name: &str) -> Pod {
    let pod = h.pod(name).await;
    let script =
        "mkdir -p /www && echo hello-from-pod > /www/index.html && httpd -f -p 8080 -h /www";
    h.start_container(&pod, container_config(h, "web", script))
        .await;
    // Wait until httpd answers inside the pod.
    for _ in 0..50 {
        let (code, _) = h
            .run_in_pod(
                &pod.id,
                &["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"],
            )
            .await;
        if code == 0 {
            return pod;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("httpd did not come up");
}

async fn forward_url(h: &Harness, pod: &Pod, ports: &[i32]) -> String {
    h.rt()
        .port_forward(PortForwardRequest {
            pod_sandbox_id: pod.id.clone(),
            port: ports.to_vec(),
        })
        .await
        .unwrap_or_else(|e| panic!("PortForward: {e:?}\n{}", h.logs()))
        .into_inner()
        .url
}

#[tokio::test(flavor = "multi_thread")]
async fn port_forward_reaches_httpd_with_concurrent_connections() {
    let h = Harness::start().await;
    let pod = httpd_pod(&h, "forward").await;
    let c = Client::default();
    let (session, chosen) = c
        .spdy(
            &forward_url(&h, &pod, &[8080]).await,
            &["portforward.k8s.io"],
        )
        .await;
    assert_eq!(chosen, "portforward.k8s.io");
    let get = b"GET /index.html HTTP/1.0\r\n\r\n";
    let (a, b, c3, closed) = tokio::join!(
        spdy_forward(&session, 0, 8080, get),
        spdy_forward(&session, 1, 8080, get),
        spdy_forward(&session, 2, 8080, get),
        spdy_forward(&session, 3, 8081, get),
    );
    for (i, (data, err)) in [a, b, c3].into_iter().enumerate() {
        let page = String::from_utf8_lossy(&data);
        assert!(
            page.contains("hello-from-pod"),
            "request {i}: {page:?} / {err}"
        );
        assert!(err.is_empty(), "request {i}: {err}");
    }
    assert!(closed.0.is_empty());
    assert!(
        closed.1.contains("8081"),
        "closed port error: {:?}",
        closed.1
    );
    session.shutdown().await;

    // The WebSocket form: channel 0 data, 1 error, each opened with the port.
    let (mut ws, chosen) = c
        .websocket(&forward_url(&h, &pod, &[8080]).await, "v4.channel.k8s.io")
        .await;
    assert_eq!(chosen, "v4.channel.k8s.io");
    use futures_util::{SinkExt, StreamExt};
    let mut m = vec![0u8];
    m.extend_from_slice(get);
    ws.send(tokio_tungstenite::tungstenite::Message::binary(m))
        .await
        .unwrap();
    let mut page = Vec::new();
    let mut firsts = 0;
    let read = async {
        while let Some(Ok(msg)) = ws.next().await {
            let Some(b) = common::stream::ws_payload(&msg) else {
                continue;
            };
            if b.len() == 3
                && (b[0] == 0 || b[0] == 1)
                && b[1..] == 8080u16.to_le_bytes()
                && firsts < 2
            {
                firsts += 1;
                continue;
            }
            if b.first() == Some(&0) {
                page.extend_from_slice(&b[1..]);
                if String::from_utf8_lossy(&page).contains("hello-from-pod") {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("ws page");
    assert_eq!(firsts, 2, "both channels open with the port");
}

#[tokio::test(flavor = "multi_thread")]
async fn used_unknown_and_expired_tokens_answer_404() {
    let h = Harness::start().await;
    let (_pod, id) = running(&h, "tokens").await;
    let c = Client::default();
    let url = exec_url(&h, &id, &["true"], &out_err()).await;
    let used = c.spdy_command(&url, SPDY_V4, out_err()).await;
    assert_eq!(used.exit_code(), 0);
    assert_eq!(c.get_status(&url).await, 404, "used token");
    let unknown = format!(
        "{}/exec/{}",
        url.rsplitn(3, '/').nth(2).unwrap(),
        "0".repeat(32)
    );
    assert_eq!(c.get_status(&unknown).await, 404, "unknown token");
    let stale = exec_url(&h, &id, &["true"], &out_err()).await;
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(c.get_status(&stale).await, 404, "expired token");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_streaming_server_serves_tls() {
    let dir = tempdir();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert_pem = cert.cert.pem();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, &cert_pem).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let h = Harness::start_with(&[
        "--streaming-tls-cert-file",
        cert_file.to_str().unwrap(),
        "--streaming-tls-key-file",
        key_file.to_str().unwrap(),
    ])
    .await;
    let (_pod, id) = running(&h, "tls").await;
    let url = exec_url(&h, &id, &["echo", "secure"], &out_err()).await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let c = Client::with_root(&cert_pem);
    let ws = c.ws_command(&url, WS_V5, out_err()).await;
    assert_eq!(ws.stdout(), "secure\n");
    let url = exec_url(&h, &id, &["echo", "secure"], &out_err()).await;
    let spdy = c.spdy_command(&url, SPDY_V4, out_err()).await;
    assert_eq!(spdy.stdout(), "secure\n");
}

/// client-go (`remotecommand/websocket.go`) reads only close code 1000 as
/// a normal end; any other code fails the streams after the status.
const NORMAL_CLOSURE: u16 = 1000;

#[tokio::test(flavor = "multi_thread")]
async fn websocket_exec_ends_with_close_code_1000() {
    let h = Harness::start().await;
    let (_pod, id) = running(&h, "ws-close").await;
    let c = Client::default();
    for proto in [WS_V5, WS_V4] {
        let url = exec_url(&h, &id, &["echo", "hi"], &out_err()).await;
        let out = c.ws_command(&url, proto, out_err()).await;
        assert_eq!(out.stdout(), "hi\n", "{proto}");
        assert_eq!(out.exit_code(), 0, "{proto}");
        assert_eq!(out.close_code, Some(NORMAL_CLOSURE), "{proto}: {out:?}");
        assert!(!out.data_after_close, "{proto}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_exec_non_zero_exit_reports_the_status_then_closes_with_1000() {
    let h = Harness::start().await;
    let (pod, id) = running(&h, "ws-exit").await;
    let c = Client::default();
    let cmd = ["sh", "-c", "echo before; exit 7"];
    let out = c
        .ws_command(&exec_url(&h, &id, &cmd, &out_err()).await, WS_V5, out_err())
        .await;
    assert_eq!(out.stdout(), "before\n");
    assert_eq!(out.exit_code(), 7, "status on channel 3: {out:?}");
    assert_eq!(out.close_code, Some(NORMAL_CLOSURE), "{out:?}");
    // A failure (the container is gone when the client comes) is a
    // status too, then 1000.
    let gone = h
        .start_container(&pod, container_config(&h, "gone", "sleep 3600"))
        .await;
    let url = exec_url(&h, &gone, &["true"], &out_err()).await;
    h.rt()
        .remove_container(RemoveContainerRequest {
            container_id: gone.clone(),
        })
        .await
        .unwrap();
    let out = c.ws_command(&url, WS_V5, out_err()).await;
    assert_eq!(out.status()["status"], "Failure", "{out:?}");
    assert_eq!(out.close_code, Some(NORMAL_CLOSURE), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_attach_ends_with_close_code_1000() {
    let h = Harness::start().await;
    let pod = h.pod("ws-attach").await;
    let mut config = container_config(&h, "once", "read l; echo got:$l");
    config.stdin = true;
    let id = h.start_container(&pod, config).await;
    let c = Client::default();
    // Stdin stays open: Docker ends an attach whose stdin closes (without
    // StdinOnce) at once, output or not; the session ends with the container.
    let input = Input {
        stdin: Some(b"x\n".to_vec()),
        keep_stdin_open: true,
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let out = c
        .ws_command(&attach_url(&h, &id, &input).await, WS_V5, input)
        .await;
    assert_eq!(out.stdout(), "got:x\n", "{out:?}");
    assert_eq!(out.exit_code(), 0);
    assert_eq!(out.close_code, Some(NORMAL_CLOSURE), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_tunnelled_spdy_port_forward_moves_bytes_both_ways() {
    let h = Harness::start().await;
    let pod = httpd_pod(&h, "ws-tunnel").await;
    let c = Client::default();
    let session = c
        .spdy_over_websocket(&forward_url(&h, &pod, &[8080]).await)
        .await;
    let get = b"GET /index.html HTTP/1.0\r\n\r\n";
    let (a, b, closed) = tokio::join!(
        spdy_forward(&session, 0, 8080, get),
        spdy_forward(&session, 1, 8080, get),
        spdy_forward(&session, 2, 8081, get),
    );
    for (i, (data, err)) in [a, b].into_iter().enumerate() {
        let page = String::from_utf8_lossy(&data);
        assert!(
            page.contains("hello-from-pod"),
            "request {i}: {page:?} / {err}"
        );
        assert!(err.is_empty(), "request {i}: {err}");
    }
    assert!(closed.1.contains("8081"), "closed port: {:?}", closed.1);
    session.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_port_forward_refuses_more_ports_than_channels_with_400() {
    let h = Harness::start().await;
    let pod = h.pod("ws-ports").await;
    let c = Client::default();
    let query: Vec<String> = (1..=200).map(|p| format!("port={p}")).collect();
    let url = format!("{}?{}", forward_url(&h, &pod, &[]).await, query.join("&"));
    let (code, body) = c.websocket_refusal(&url, WS_V4).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("200") && body.contains("at most 127"),
        "names the limit: {body}"
    );
    // Not a port at all: refused the same way, before the upgrade.
    let url = format!("{}?port=http", forward_url(&h, &pod, &[]).await);
    let (code, body) = c.websocket_refusal(&url, WS_V4).await;
    assert_eq!(code, 400, "{body}");
}
