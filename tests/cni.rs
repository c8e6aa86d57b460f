//! Pod networking through CNI plugins (`--network-plugin=cni`) with
//! Debian's reference plugins (bridge, host-local, portmap, firewall in
//! /usr/lib/cni): pod IPs from the configured subnet, pod-to-pod traffic,
//! host ports through portmap, IPs freed on stop (also after a restart or
//! once the pause container is gone), the pod CIDR and dual-stack IPs,
//! NetworkReady following the config directory, clean failure, a sandbox
//! whose ADD never finished, and host-network pods bypassing CNI.
//!
//! Each test makes its own bridge (`dcri<random>`), a /24 under
//! 10.231.0.0/16 and a /64 under fd00:dc::/32, and deletes the bridge and
//! any firewall rules for its subnets when done.

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use dockercri::proto::{
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
    NetworkConfig, PodSandboxStatusRequest, PortMapping, Protocol, RemovePodSandboxRequest,
    RunPodSandboxRequest, RuntimeConfig, StatusRequest, UpdateRuntimeConfigRequest,
};
use tonic::Code;

/// Where Debian's containernetworking-plugins puts the plugins.
const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// A test's own CNI network: config and cache directories, a bridge and a
/// subnet no other test uses. The bridge is deleted on drop.
struct TestNet {
    dir: tempfile::TempDir,
    name: String,
    bridge: String,
    /// The first three octets of the /24, e.g. `10.231.17`.
    prefix: String,
    /// The first four groups of the IPv6 /64, e.g. `fd00:dc:1:2`.
    prefix6: String,
}

impl TestNet {
    fn new() -> TestNet {
        let mut r = [0u8; 4];
        getrandom::fill(&mut r).unwrap();
        let bridge = format!("dcri{:08x}", u32::from_le_bytes(r));
        let net = TestNet {
            dir: tempdir(),
            name: format!("net-{bridge}"),
            prefix: format!("10.231.{}", r[0]),
            // A last group of 0 would print compressed (`fd00:dc:5::2`).
            prefix6: format!("fd00:dc:{:x}:{:x}", r[1], r[2].max(1)),
            bridge,
        };
        std::fs::create_dir_all(net.conf_dir()).unwrap();
        net
    }

    fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// host-local's store: one file per allocated IP.
    fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    fn subnet(&self) -> String {
        format!("{}.0/24", self.prefix)
    }

    /// The conflist: bridge with host-local IPAM, portmap, firewall (the
    /// host's FORWARD policy is Docker's DROP). No ipMasq: bridge cannot
    /// remove its NAT chain on a DEL without netns, and no test needs it.
    fn conflist(&self, subnet: &str) -> String {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": self.name,
            "plugins": [
                {
                    "type": "bridge", "bridge": self.bridge, "isGateway": true,
                    "ipMasq": false, "hairpinMode": true,
                    "ipam": {
                        "type": "host-local", "ranges": [[{"subnet": subnet}]],
                        "routes": [{"dst": "0.0.0.0/0"}], "dataDir": self.ipam_dir(),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": true}},
                {"type": "firewall"},
            ],
        })
        .to_string()
    }

    /// A conflist whose host-local ranges come from the pod CIDR
    /// (`ipRanges`), as kubelet's `UpdateRuntimeConfig` sets it.
    fn install_pod_cidr_config(&self) {
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": self.name,
            "plugins": [
                {
                    "type": "bridge", "bridge": self.bridge, "isGateway": true,
                    "capabilities": {"ipRanges": true},
                    "ipam": {"type": "host-local", "dataDir": self.ipam_dir()},
                },
                {"type": "firewall"},
            ],
        });
        let path = self.conf_dir().join("10-test.conflist");
        std::fs::write(&path, conf.to_string()).unwrap();
    }

    fn install(&self) {
        self.install_with_subnet(&self.subnet());
    }

    fn install_with_subnet(&self, subnet: &str) {
        let path = self.conf_dir().join("10-test.conflist");
        std::fs::write(&path, self.conflist(subnet)).unwrap();
    }

    fn flags(&self) -> Vec<String> {
        vec![
            "--network-plugin".into(),
            "cni".into(),
            "--cni-bin-dir".into(),
            CNI_BIN_DIR.into(),
            "--cni-conf-dir".into(),
            self.conf_dir().display().to_string(),
            "--cni-cache-dir".into(),
            self.cache_dir().display().to_string(),
        ]
    }

    async fn harness(&self) -> Harness {
        let flags = self.flags();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Harness::start_with(&flags).await
    }

    /// The IPs host-local has handed out (and not released).
    fn allocated(&self) -> Vec<String> {
        let dir = self.ipam_dir().join(&self.name);
        let mut ips: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default();
        ips.sort();
        ips
    }

    fn cache_entries(&self) -> Vec<String> {
        std::fs::read_dir(self.cache_dir().join("results"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // A test that failed before its pods stopped leaves the firewall
        // plugin's per-IP rules in the shared CNI-FORWARD chain.
        for (tool, ours) in [
            ("iptables", format!(" {}.", self.prefix)),
            ("ip6tables", format!(" {}:", self.prefix6)),
        ] {
            let rules = std::process::Command::new(tool)
                .args(["-S", "CNI-FORWARD"])
                .stderr(std::process::Stdio::null())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for rule in rules
                .lines()
                .filter(|r| r.starts_with("-A ") && r.contains(&ours))
            {
                let mut args: Vec<&str> = rule.split_whitespace().collect();
                args[0] = "-D";
                let _ = std::process::Command::new(tool).args(&args).status();
            }
        }
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

async fn pod_ip(h: &Harness, id: &str) -> (String, Vec<String>) {
    let status = h
        .rt()
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    let net = status.network.unwrap_or_default();
    (
        net.ip,
        net.additional_ips.into_iter().map(|i| i.ip).collect(),
    )
}

async fn network_ready(h: &Harness) -> (bool, String, String) {
    let s = h
        .rt()
        .status(StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let c = s
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.r#type == "NetworkReady")
        .unwrap();
    (c.status, c.reason, c.message)
}

/// Starts busybox httpd on port 8080 in the pod.
async fn serve_http(h: &Harness, pod: &str, text: &str) {
    let script =
        format!("mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 8080 -h /www");
    h.start_in_pod(pod, &["sh", "-c", &script]).await;
}

/// GET / on `addr` from the host, retried until `want` shows (10 s).
fn get_from_host(addr: (&str, u16), want: &str) -> String {
    let mut body = String::new();
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(
            &format!("{}:{}", addr.0, addr.1).parse().unwrap(),
            Duration::from_secs(2),
        ) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n");
            body.clear();
            let _ = s.read_to_string(&mut body);
            if body.contains(want) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    body
}

fn in_subnet(net: &TestNet, ip: &str) -> bool {
    ip.starts_with(&format!("{}.", net.prefix))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_pods_get_distinct_ips_and_reach_each_other() {
    let net = TestNet::new();
    net.install();
    let h = net.harness().await;
    let server = h.run_pod(h.pod_config("server")).await;
    let client = h.run_pod(h.pod_config("client")).await;

    let (server_ip, server_more) = pod_ip(&h, &server).await;
    let (client_ip, _) = pod_ip(&h, &client).await;
    assert!(
        in_subnet(&net, &server_ip),
        "{server_ip} in {}",
        net.subnet()
    );
    assert!(
        in_subnet(&net, &client_ip),
        "{client_ip} in {}",
        net.subnet()
    );
    assert_ne!(server_ip, client_ip);
    assert!(server_more.is_empty(), "{server_more:?}");
    let mut both = vec![server_ip.clone(), client_ip.clone()];
    both.sort();
    assert_eq!(net.allocated(), both);
    // host-local records which container holds each IP.
    let holder = std::fs::read_to_string(net.ipam_dir().join(&net.name).join(&server_ip)).unwrap();
    assert!(holder.starts_with(&server), "{holder}");

    // The pod's eth0 has the IP the status reports.
    let (_, addrs) = h
        .run_in_pod(&server, &["ip", "-4", "addr", "show", "eth0"])
        .await;
    assert!(addrs.contains(&format!("inet {server_ip}/24")), "{addrs}");

    serve_http(&h, &server, "hello-from-server").await;
    let url = format!("http://{server_ip}:8080/");
    let mut out = String::new();
    for _ in 0..30 {
        let (code, text) = h
            // No -T: Debian's static busybox wget crashes on it.
            .run_in_pod(&client, &["wget", "-q", "-O", "-", &url])
            .await;
        out = text;
        if code == 0 && out.contains("hello-from-server") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(out.contains("hello-from-server"), "wget {url}: {out}");

    // Stop releases the IP in host-local's store and the cache entry;
    // a second stop is fine too.
    h.stop_pod(&server).await;
    assert_eq!(net.allocated(), vec![client_ip.clone()]);
    assert_eq!(pod_ip(&h, &server).await.0, "");
    h.stop_pod(&server).await;
    h.stop_pod(&client).await;
    assert!(net.allocated().is_empty());
    assert!(net.cache_entries().is_empty(), "{:?}", net.cache_entries());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_port_answers_from_the_host_through_portmap() {
    let net = TestNet::new();
    net.install();
    let h = net.harness().await;
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = h.pod_config("web");
    config.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port: 8080,
        host_port: i32::from(port),
        host_ip: String::new(),
    }];
    let id = h.run_pod(config).await;
    serve_http(&h, &id, "hello-through-portmap").await;

    // The node's address on the test bridge is the gateway, .1.
    let gateway = format!("{}.1", net.prefix);
    let body = get_from_host((&gateway, port), "hello-through-portmap");
    assert!(
        body.contains("hello-through-portmap"),
        "{gateway}:{port} answered {body:?}"
    );

    h.stop_pod(&id).await;
    let gone = std::net::TcpStream::connect_timeout(
        &format!("{gateway}:{port}").parse().unwrap(),
        Duration::from_secs(2),
    );
    assert!(gone.is_err(), "the host port still answers after stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn network_ready_follows_the_config_directory() {
    let net = TestNet::new();
    let h = net.harness().await;
    let (ready, reason, message) = network_ready(&h).await;
    assert!(!ready);
    assert_eq!(reason, "NetworkPluginNotReady");
    assert!(message.contains("no CNI network config"), "{message}");

    // Not ready: a pod cannot be made, and nothing is left behind.
    let err = h
        .rt()
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(h.pod_config("early")),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(h.docker_containers().await.is_empty());

    // A config naming a plugin that is not installed is not ready either.
    let missing = r#"{"cniVersion":"1.0.0","name":"m","plugins":[{"type":"no-such-plugin"}]}"#;
    std::fs::write(net.conf_dir().join("05-missing.conflist"), missing).unwrap();
    let (ready, _, message) = network_ready(&h).await;
    assert!(!ready);
    assert!(message.contains("no-such-plugin"), "{message}");

    net.install();
    assert_eq!(
        network_ready(&h).await,
        (true, String::new(), String::new())
    );
    std::fs::remove_file(net.conf_dir().join("10-test.conflist")).unwrap();
    assert!(!network_ready(&h).await.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_plugin_fails_run_pod_sandbox_cleanly() {
    let net = TestNet::new();
    // host-local refuses this range; bridge has made its bridge by then.
    net.install_with_subnet("10.231.0.0/33");
    let h = net.harness().await;
    let err = h
        .rt()
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(h.pod_config("broken")),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    assert!(err.message().contains("10.231.0.0/33"), "{}", err.message());
    assert!(err.message().contains("\"bridge\""), "{}", err.message());
    assert!(
        h.docker_containers().await.is_empty(),
        "a sandbox was left behind"
    );
    assert!(net.cache_entries().is_empty());
    assert!(net.allocated().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn host_network_pods_bypass_cni() {
    // No config at all: the network is not ready, host-network pods run.
    let net = TestNet::new();
    let h = net.harness().await;
    let mut config = h.pod_config("hostnet");
    config.linux = Some(LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: Some(NamespaceOption {
                network: NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = h.run_pod(config).await;
    assert_eq!(pod_ip(&h, &id).await.0, "");
    assert!(net.cache_entries().is_empty());
    h.stop_pod(&id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pod_ip_survives_a_restart_and_stop_still_frees_it() {
    let net = TestNet::new();
    net.install();
    let mut h = net.harness().await;
    let id = h.run_pod(h.pod_config("stays")).await;
    let before = pod_ip(&h, &id).await;
    assert!(in_subnet(&net, &before.0), "{before:?}");

    h.restart_killed().await;
    // The config may even change meanwhile: the cache has what DEL needs.
    std::fs::remove_file(net.conf_dir().join("10-test.conflist")).unwrap();
    assert_eq!(pod_ip(&h, &id).await, before);
    h.stop_pod(&id).await;
    assert!(net.allocated().is_empty());
    assert!(net.cache_entries().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_after_the_pause_container_is_gone_frees_the_ip() {
    let net = TestNet::new();
    net.install();
    let h = net.harness().await;
    let id = h.run_pod(h.pod_config("vanishing")).await;
    assert_eq!(net.allocated().len(), 1);
    let d = docker().await;
    d.remove_container(
        &id,
        Some(bollard::query_parameters::RemoveContainerOptions {
            force: true,
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    h.stop_pod(&id).await;
    assert!(net.allocated().is_empty());
    assert!(net.cache_entries().is_empty());
    h.stop_pod(&id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pod_cidr_reaches_ipam_and_dual_stack_ips_are_reported() {
    let net = TestNet::new();
    net.install_pod_cidr_config();
    let h = net.harness().await;
    let cidr = format!("{},{}::/64", net.subnet(), net.prefix6);
    h.rt()
        .update_runtime_config(UpdateRuntimeConfigRequest {
            runtime_config: Some(RuntimeConfig {
                network_config: Some(NetworkConfig { pod_cidr: cidr }),
            }),
        })
        .await
        .unwrap();
    let id = h.run_pod(h.pod_config("dual")).await;
    let (ip, more) = pod_ip(&h, &id).await;
    assert!(in_subnet(&net, &ip), "{ip} in {}", net.subnet());
    assert_eq!(more.len(), 1, "{more:?}");
    let v6: std::net::Ipv6Addr = more[0].parse().unwrap();
    assert!(
        v6.to_string().starts_with(&format!("{}:", net.prefix6)),
        "{v6} in {}::/64",
        net.prefix6
    );
    assert_eq!(net.allocated().len(), 2);
    h.stop_pod(&id).await;
    assert!(net.allocated().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_whose_add_never_finished_is_replaced() {
    let net = TestNet::new();
    net.install();
    let h = net.harness().await;
    let config = h.pod_config("again");
    let first = h.run_pod(config.clone()).await;
    // The same pod asked again is the same sandbox.
    assert_eq!(h.run_pod(config.clone()).await, first);

    // What dockercri leaves when it dies during ADD: the cache entry
    // written before the plugins ran, without a result.
    let [entry] = net.cache_entries().try_into().unwrap();
    let path = net.cache_dir().join("results").join(entry);
    let mut cached: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    cached.as_object_mut().unwrap().remove("result");
    std::fs::write(&path, cached.to_string()).unwrap();
    assert_eq!(pod_ip(&h, &first).await.0, "");

    // The retry tears the half-made one down and makes a working one.
    let second = h.run_pod(config).await;
    assert_ne!(second, first);
    let gone = docker().await.inspect_container(&first, None).await;
    assert!(gone.is_err(), "the half-made sandbox is still there");
    let (ip, _) = pod_ip(&h, &second).await;
    assert!(in_subnet(&net, &ip), "{ip}");
    assert_eq!(net.allocated(), vec![ip]);
    h.stop_pod(&second).await;
    assert!(net.allocated().is_empty());
    assert!(net.cache_entries().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn remove_without_stop_frees_the_ip() {
    let net = TestNet::new();
    net.install();
    let h = net.harness().await;
    let id = h.run_pod(h.pod_config("removed")).await;
    assert_eq!(net.allocated().len(), 1);
    h.rt()
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    assert!(net.allocated().is_empty());
    assert!(net.cache_entries().is_empty());
    assert!(h.docker_containers().await.is_empty());
}
