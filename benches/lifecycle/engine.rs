//! The lifecycle benchmark's engine, shared by `cargo bench --bench
//! lifecycle` and a bounded run in the test suite: N pods with one
//! container each, P at a time, through dockercri's CRI socket and then
//! the same Docker requests straight through bollard (the floor).
//!
//! Three stages each way: *up* (run the pod, create and start its
//! container, read its status and the lists, exec, stats), *reads* (with
//! every pod present: the four read calls kubelet's relist makes) and
//! *down* (stop and remove the container, stop and remove the pod).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StatsOptionsBuilder, StopContainerOptionsBuilder,
};
use dockercri::docker::container_body::{self, ContainerInputs};
use dockercri::docker::naming;
use dockercri::docker::sandbox_body::{self, PodNetwork, SandboxInputs};
use dockercri::proto::runtime_service_client::RuntimeServiceClient;
use dockercri::proto::*;
use dockercri::runtime::oom::OomPolicy;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use tonic::transport::Channel;

#[path = "../common/mod.rs"]
mod common;

use common::{IMAGE, cpu};
/// Label on everything the benchmark makes, with the run's id.
pub const LABEL: &str = "dockercri.bench";

/// The operations measured, in lifecycle order.
pub const OPS: [&str; 16] = [
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer",
    "ContainerStatus",
    "ListContainers",
    "ListPodSandbox",
    "ExecSync",
    "ListContainerStats",
    "StopContainer",
    "RemoveContainer",
    "StopPodSandbox",
    "RemovePodSandbox",
    "reads: ListContainers",
    "reads: ListPodSandbox",
    "reads: ContainerStatus",
    "reads: PodSandboxStatus",
];

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub pods: usize,
    pub parallel: usize,
    /// Rounds of each read call with every pod present.
    pub read_rounds: usize,
    /// The dockercri binary.
    pub binary: PathBuf,
    /// Runs of each side, alternated (dockercri, Docker, Docker,
    /// dockercri, ...) so that drift in the machine's load cancels out.
    pub repeats: usize,
}

/// Latencies (µs) per operation, and errors.
#[derive(Default)]
pub struct Samples {
    pub latencies: BTreeMap<&'static str, Histogram<u64>>,
    pub errors: Vec<String>,
}

impl Samples {
    fn record(&mut self, op: &'static str, took: Duration) {
        let hist = self
            .latencies
            .entry(op)
            .or_insert_with(|| Histogram::new(3).expect("histogram"));
        let _ = hist.record(took.as_micros().max(1) as u64);
    }
}

type Shared = Arc<Mutex<Samples>>;

/// Times `work` under `op`; an error is counted, not fatal.
async fn timed<T, E: std::fmt::Debug>(
    samples: &Shared,
    op: &'static str,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Option<T> {
    let t = Instant::now();
    let result = work.await;
    let took = t.elapsed();
    let mut s = samples.lock().unwrap_or_else(|p| p.into_inner());
    match result {
        Ok(v) => {
            s.record(op, took);
            Some(v)
        }
        Err(e) => {
            s.errors.push(format!("{op}: {e:?}"));
            None
        }
    }
}

/// The whole outcome of a run.
pub struct Report {
    pub plan: Plan,
    pub dockercri: Samples,
    pub docker: Samples,
    pub dockercri_wall: Duration,
    pub docker_wall: Duration,
    pub rss_idle_kib: u64,
    pub rss_peak_kib: u64,
    pub cpu: Duration,
    /// CPU that dockerd and containerd used during each side's runs: how
    /// much more work dockercri makes the daemons do for the same pods.
    pub daemons_cpu_dockercri: Duration,
    pub daemons_cpu_docker: Duration,
}

/// Runs the benchmark against the local dockerd.
pub async fn run(plan: Plan) -> Report {
    let dir = tempfile::tempdir_in("/tmp").expect("tempdir");
    let run_id = format!("{}-{}", std::process::id(), rand_u32());
    let (mut child, rt) = common::start_binary(&plan.binary, dir.path()).await;
    let pid = child.id();
    // Idle: serving, index synced, nothing asked yet.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle_kib = proc_status_kib(pid, "VmRSS:");

    let docker = Docker::connect_with_unix_defaults()
        .expect("docker socket")
        .negotiate_version()
        .await
        .expect("dockerd answers");
    let dockercri = Arc::new(Mutex::new(Samples::default()));
    let raw = Arc::new(Mutex::new(Samples::default()));
    let (mut dockercri_wall, mut docker_wall, mut cpu_used) = Default::default();
    let (mut daemons_cri, mut daemons_raw) = (Duration::ZERO, Duration::ZERO);
    let daemons = daemon_pids();
    let daemons_cpu = || daemons.iter().map(|&p| cpu(p)).sum::<Duration>();
    for round in 0..plan.repeats.max(1) {
        for cri_side in [round % 2 == 0, round % 2 == 1] {
            let t = Instant::now();
            let daemons_before = daemons_cpu();
            if cri_side {
                let before = cpu(pid);
                cri_run(&plan, &rt, dir.path(), &run_id, &dockercri).await;
                cpu_used += cpu(pid).saturating_sub(before);
                dockercri_wall += t.elapsed();
                daemons_cri += daemons_cpu().saturating_sub(daemons_before);
            } else {
                raw_run(&plan, &docker, dir.path(), &run_id, &raw).await;
                docker_wall += t.elapsed();
                daemons_raw += daemons_cpu().saturating_sub(daemons_before);
            }
        }
    }
    let rss_peak_kib = proc_status_kib(pid, "VmHWM:");
    let _ = child.kill();
    let _ = child.wait();
    cleanup(&docker, &run_id).await;

    Report {
        plan,
        dockercri: take(dockercri),
        docker: take(raw),
        dockercri_wall,
        docker_wall,
        rss_idle_kib,
        rss_peak_kib,
        cpu: cpu_used,
        daemons_cpu_dockercri: daemons_cri,
        daemons_cpu_docker: daemons_raw,
    }
}

/// The pids of dockerd and containerd.
fn daemon_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            matches!(comm.trim(), "dockerd" | "containerd")
        })
        .collect()
}

fn take(shared: Shared) -> Samples {
    std::mem::take(&mut *shared.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Runs `job(i)` for i in 0..n, `parallel` at a time; the results in
/// order of `i`.
async fn each<F, Fut, T>(n: usize, parallel: usize, job: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    futures_util::stream::iter(0..n)
        .map(job)
        .buffered(parallel.max(1))
        .collect()
        .await
}

fn pod_config(dir: &Path, run_id: &str, i: usize) -> PodSandboxConfig {
    let uid = format!("bench-{run_id}-{i}");
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: format!("bench-{i}"),
            namespace: "bench".into(),
            uid: uid.clone(),
            attempt: 0,
        }),
        hostname: format!("bench-{i}"),
        log_directory: dir.join("pods").join(&uid).display().to_string(),
        labels: HashMap::from([(LABEL.to_string(), run_id.to_string())]),
        ..Default::default()
    }
}

fn container_config(run_id: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "3600".into()],
        log_path: "app/0.log".into(),
        labels: HashMap::from([(LABEL.to_string(), run_id.to_string())]),
        ..Default::default()
    }
}

/// The stages through dockercri. Each operation is a stage of its own,
/// run for every pod at parallelism P before the next begins, so both
/// sides time an operation against the same concurrent work (with the
/// whole lifecycle per pod, a faster stats call on one side would crowd
/// its other calls together).
async fn cri_run(
    plan: &Plan,
    rt: &RuntimeServiceClient<Channel>,
    dir: &Path,
    run_id: &str,
    s: &Shared,
) {
    let (n, p) = (plan.pods, plan.parallel);
    let configs: Vec<PodSandboxConfig> = (0..n).map(|i| pod_config(dir, run_id, i)).collect();
    let pods = each(n, p, |i| {
        let (mut rt, config) = (rt.clone(), configs[i].clone());
        async move {
            let run = RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            };
            let reply = timed(s, "RunPodSandbox", rt.run_pod_sandbox(run)).await?;
            Some(reply.into_inner().pod_sandbox_id)
        }
    })
    .await;
    let containers = each(n, p, |i| {
        let (mut rt, pod, config) = (rt.clone(), pods[i].clone(), configs[i].clone());
        async move {
            let create = CreateContainerRequest {
                pod_sandbox_id: pod?,
                config: Some(container_config(run_id)),
                sandbox_config: Some(config),
            };
            let reply = timed(s, "CreateContainer", rt.create_container(create)).await?;
            Some(reply.into_inner().container_id)
        }
    })
    .await;
    let present: Vec<(String, String)> = pods
        .into_iter()
        .zip(containers)
        .filter_map(|(pod, id)| Some((pod?, id?)))
        .collect();
    let m = present.len();
    let client = |i: usize| (rt.clone(), present[i].0.clone(), present[i].1.clone());
    each(m, p, |i| {
        let (mut rt, _, id) = client(i);
        async move {
            let start = StartContainerRequest { container_id: id };
            timed(s, "StartContainer", rt.start_container(start)).await;
        }
    })
    .await;
    each(m, p, |i| {
        let (mut rt, pod, id) = client(i);
        async move { cri_reads(&mut rt, s, &pod, &id, false).await }
    })
    .await;
    each(m, p, |i| {
        let (mut rt, _, id) = client(i);
        async move {
            let exec = ExecSyncRequest {
                container_id: id,
                cmd: vec!["echo".into(), "hi".into()],
                timeout: 10,
            };
            timed(s, "ExecSync", rt.exec_sync(exec)).await;
        }
    })
    .await;
    each(m, p, |i| {
        let (mut rt, _, id) = client(i);
        async move {
            let stats = ListContainerStatsRequest {
                filter: Some(ContainerStatsFilter {
                    id,
                    ..Default::default()
                }),
            };
            timed(s, "ListContainerStats", rt.list_container_stats(stats)).await;
        }
    })
    .await;

    if m > 0 {
        let mut rt = rt.clone();
        for round in 0..plan.read_rounds {
            let (pod, id) = &present[round % m];
            cri_reads(&mut rt, s, pod, id, true).await;
        }
    }

    each(m, p, |i| {
        let (mut rt, _, id) = client(i);
        async move {
            let stop = StopContainerRequest {
                container_id: id,
                timeout: 0,
            };
            timed(s, "StopContainer", rt.stop_container(stop)).await;
        }
    })
    .await;
    each(m, p, |i| {
        let (mut rt, _, id) = client(i);
        async move {
            let remove = RemoveContainerRequest { container_id: id };
            timed(s, "RemoveContainer", rt.remove_container(remove)).await;
        }
    })
    .await;
    each(m, p, |i| {
        let (mut rt, pod, _) = client(i);
        async move {
            let stop = StopPodSandboxRequest {
                pod_sandbox_id: pod,
            };
            timed(s, "StopPodSandbox", rt.stop_pod_sandbox(stop)).await;
        }
    })
    .await;
    each(m, p, |i| {
        let (mut rt, pod, _) = client(i);
        async move {
            let remove = RemovePodSandboxRequest {
                pod_sandbox_id: pod,
            };
            timed(s, "RemovePodSandbox", rt.remove_pod_sandbox(remove)).await;
        }
    })
    .await;
}

/// The relist reads, as kubelet makes them (whole lists, one status).
async fn cri_reads(
    rt: &mut RuntimeServiceClient<Channel>,
    s: &Shared,
    pod: &str,
    id: &str,
    all_present: bool,
) {
    let name = |op: &'static str, read: &'static str| if all_present { read } else { op };
    let status = ContainerStatusRequest {
        container_id: id.into(),
        verbose: false,
    };
    timed(
        s,
        name("ContainerStatus", "reads: ContainerStatus"),
        rt.container_status(status),
    )
    .await;
    let list = ListContainersRequest { filter: None };
    timed(
        s,
        name("ListContainers", "reads: ListContainers"),
        rt.list_containers(list),
    )
    .await;
    let list = ListPodSandboxRequest { filter: None };
    timed(
        s,
        name("ListPodSandbox", "reads: ListPodSandbox"),
        rt.list_pod_sandbox(list),
    )
    .await;
    if all_present {
        let status = PodSandboxStatusRequest {
            pod_sandbox_id: pod.into(),
            verbose: false,
        };
        timed(s, "reads: PodSandboxStatus", rt.pod_sandbox_status(status)).await;
    }
}

/// The same Docker requests dockercri makes, straight through bollard.
async fn raw_run(plan: &Plan, docker: &Docker, dir: &Path, run_id: &str, s: &Shared) {
    let (n, p) = (plan.pods, plan.parallel);
    let oom = OomPolicy::new(None);
    let pause = dockercri::runtime::pause::BUILTIN_IMAGE;
    // Names differ from dockercri's run so leftovers never collide.
    let configs: Vec<PodSandboxConfig> = (0..n)
        .map(|i| {
            let mut config = pod_config(dir, &format!("raw-{run_id}"), i);
            config.labels = HashMap::from([(LABEL.to_string(), run_id.to_string())]);
            config
        })
        .collect();
    let pods = each(n, p, |i| {
        let config = &configs[i];
        async move {
            let inputs = SandboxInputs {
                image: pause,
                network: PodNetwork::DockerBridge,
                runtime: None,
                seccomp_localhost: None,
                oom_score_adj: oom.clamp(sandbox_body::SANDBOX_OOM_SCORE_ADJ),
            };
            let (Ok(name), Ok(body)) = (
                sandbox_body::name(config),
                sandbox_body::create_body(config, &inputs),
            ) else {
                failed(s, "sandbox body");
                return None;
            };
            timed(s, "RunPodSandbox", async {
                let options = CreateContainerOptionsBuilder::default().name(&name).build();
                let id = docker.create_container(Some(options), body).await?.id;
                docker.start_container(&id, None).await?;
                Ok::<_, bollard::errors::Error>(id)
            })
            .await
        }
    })
    .await;
    let containers = each(n, p, |i| {
        let (config, pod) = (&configs[i], pods[i].clone());
        async move {
            let pod = pod?;
            let app = container_config(run_id);
            let body = container_body::create_body(
                &app,
                &ContainerInputs {
                    sandbox_id: &pod,
                    sandbox: config,
                    seccomp_localhost: None,
                    oom,
                    recursive_read_only: false,
                },
            );
            let (Ok(body), Some(meta), Some(pod_meta)) =
                (body, app.metadata.as_ref(), config.metadata.as_ref())
            else {
                failed(s, "container body");
                return None;
            };
            let name = naming::container_name(meta, pod_meta);
            timed(s, "CreateContainer", async {
                let options = CreateContainerOptionsBuilder::default().name(&name).build();
                docker
                    .create_container(Some(options), body)
                    .await
                    .map(|r| r.id)
            })
            .await
        }
    })
    .await;
    let present: Vec<(String, String)> = pods
        .into_iter()
        .zip(containers)
        .filter_map(|(pod, id)| Some((pod?, id?)))
        .collect();
    let m = present.len();
    let ids = |i: usize| present[i].clone();
    each(m, p, |i| {
        let (_, id) = ids(i);
        async move {
            timed(s, "StartContainer", docker.start_container(&id, None)).await;
        }
    })
    .await;
    each(m, p, |i| {
        let (pod, id) = ids(i);
        async move { raw_reads(docker, s, &pod, &id, false).await }
    })
    .await;
    each(m, p, |i| {
        let (_, id) = ids(i);
        async move {
            timed(s, "ExecSync", async {
                let exec = docker
                    .create_exec(
                        &id,
                        CreateExecOptions {
                            attach_stdout: Some(true),
                            attach_stderr: Some(true),
                            cmd: Some(vec!["echo", "hi"]),
                            ..Default::default()
                        },
                    )
                    .await?;
                if let StartExecResults::Attached { mut output, .. } =
                    docker.start_exec(&exec.id, None).await?
                {
                    while output.next().await.is_some() {}
                }
                docker.inspect_exec(&exec.id).await
            })
            .await;
        }
    })
    .await;
    each(m, p, |i| {
        let (_, id) = ids(i);
        async move {
            timed(s, "ListContainerStats", async {
                let options = StatsOptionsBuilder::default()
                    .stream(false)
                    .one_shot(true)
                    .build();
                docker.stats(&id, Some(options)).next().await.transpose()
            })
            .await;
        }
    })
    .await;

    if m > 0 {
        for round in 0..plan.read_rounds {
            let (pod, id) = &present[round % m];
            raw_reads(docker, s, pod, id, true).await;
        }
    }

    let force = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    each(m, p, |i| {
        let (_, id) = ids(i);
        async move {
            let kill = StopContainerOptionsBuilder::default().t(0).build();
            timed(s, "StopContainer", docker.stop_container(&id, Some(kill))).await;
        }
    })
    .await;
    each(m, p, |i| {
        let ((_, id), force) = (ids(i), force.clone());
        async move {
            let remove = docker.remove_container(&id, Some(force));
            timed(s, "RemoveContainer", remove).await;
        }
    })
    .await;
    each(m, p, |i| {
        let (pod, _) = ids(i);
        async move {
            let grace = StopContainerOptionsBuilder::default().t(10).build();
            timed(s, "StopPodSandbox", docker.stop_container(&pod, Some(grace))).await;
        }
    })
    .await;
    each(m, p, |i| {
        let ((pod, _), force) = (ids(i), force.clone());
        async move {
            let remove = docker.remove_container(&pod, Some(force));
            timed(s, "RemovePodSandbox", remove).await;
        }
    })
    .await;
}

fn failed(s: &Shared, what: &str) {
    s.lock()
        .unwrap_or_else(|p| p.into_inner())
        .errors
        .push(what.into());
}

async fn raw_reads(docker: &Docker, s: &Shared, pod: &str, id: &str, all_present: bool) {
    let name = |op: &'static str, read: &'static str| if all_present { read } else { op };
    timed(
        s,
        name("ContainerStatus", "reads: ContainerStatus"),
        docker.inspect_container(id, None),
    )
    .await;
    for (op, read, kind) in [
        ("ListContainers", "reads: ListContainers", "container"),
        ("ListPodSandbox", "reads: ListPodSandbox", "podsandbox"),
    ] {
        let filters = HashMap::from([("label", vec![format!("io.kubernetes.docker.type={kind}")])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        timed(s, name(op, read), docker.list_containers(Some(options))).await;
    }
    if all_present {
        timed(
            s,
            "reads: PodSandboxStatus",
            docker.inspect_container(pod, None),
        )
        .await;
    }
}

/// Removes whatever a failed run left behind.
async fn cleanup(docker: &Docker, run_id: &str) {
    let filters = HashMap::from([("label", vec![format!("{LABEL}={run_id}")])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let force = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    for c in docker
        .list_containers(Some(options))
        .await
        .unwrap_or_default()
    {
        if let Some(id) = c.id {
            let _ = docker.remove_container(&id, Some(force.clone())).await;
        }
    }
}

/// A `/proc/<pid>/status` value in KiB (`VmRSS:`, `VmHWM:`).
fn proc_status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn rand_u32() -> u32 {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    u32::from_ne_bytes(bytes)
}

impl Report {
    /// The report as a table.
    pub fn render(&self) -> String {
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let mut out = format!(
            "{} pods with one container each, parallelism {}, {} rounds of reads with all present; \
             {} run(s) each way, alternated\n",
            self.plan.pods, self.plan.parallel, self.plan.read_rounds, self.plan.repeats
        );
        out += &format!(
            "{:<26} {:>9} {:>9} {:>9} | {:>9} {:>9} | {:>6}\n",
            "operation (ms)", "cri p50", "cri p95", "cri p99", "dock p50", "dock p99", "ratio"
        );
        for op in OPS {
            let (Some(c), d) = (
                self.dockercri.latencies.get(op),
                self.docker.latencies.get(op),
            ) else {
                continue;
            };
            let (dp50, dp99, ratio) = match d {
                Some(d) => (
                    format!("{:>9.3}", ms(d, 0.5)),
                    format!("{:>9.3}", ms(d, 0.99)),
                    format!("{:>5.2}x", ms(c, 0.5) / ms(d, 0.5).max(0.001)),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            out += &format!(
                "{op:<26} {:>9.3} {:>9.3} {:>9.3} | {dp50:>9} {dp99:>9} | {ratio:>6}\n",
                ms(c, 0.5),
                ms(c, 0.95),
                ms(c, 0.99),
            );
        }
        let pods = (self.plan.pods * self.plan.repeats.max(1)) as f64;
        let per_sec = |wall: Duration| pods / wall.as_secs_f64().max(0.001);
        out += &format!(
            "pods per second: dockercri {:.2} ({:.1} s), docker {:.2} ({:.1} s)\n",
            per_sec(self.dockercri_wall),
            self.dockercri_wall.as_secs_f64(),
            per_sec(self.docker_wall),
            self.docker_wall.as_secs_f64()
        );
        out += &format!(
            "dockercri: RSS idle {:.1} MiB, peak {:.1} MiB, CPU {:.2} s for the run\n",
            self.rss_idle_kib as f64 / 1024.0,
            self.rss_peak_kib as f64 / 1024.0,
            self.cpu.as_secs_f64()
        );
        out += &format!(
            "dockerd + containerd CPU: {:.2} s during dockercri's runs, {:.2} s during Docker's\n",
            self.daemons_cpu_dockercri.as_secs_f64(),
            self.daemons_cpu_docker.as_secs_f64()
        );
        out += &format!(
            "errors: dockercri {}, docker {}\n",
            self.dockercri.errors.len(),
            self.docker.errors.len()
        );
        for e in self
            .dockercri
            .errors
            .iter()
            .chain(&self.docker.errors)
            .take(10)
        {
            out += &format!("  {e}\n");
        }
        out
    }
}
