//! The lifecycle benchmark's engine, shared by `cargo bench --bench
//! lifecycle` and a bounded run in the test suite: N pods with one
//! container each, P at a time, through dockercri's CRI socket and then
//! the same Docker requests straight through bollard (the floor).
//!
//! Each operation is a stage of its own, run for all N pods at
//! parallelism P before the next begins: run the pods, create their
//! containers, start them, read status and lists, exec, stats; then the
//! reads with every pod present (the four calls kubelet's relist makes);
//! then stop and remove the containers, stop and remove the pods. Both
//! sides thus time an operation against the same concurrent work. The two
//! sides take turns within each stage, a chunk of pods at a time (which
//! goes first alternates), both sides' pods present at once, so drift in the machine's load and in
//! what Docker holds falls on both alike.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StatsOptionsBuilder, StopContainerOptionsBuilder,
};
use dockercri::config::DockerLogLimit;
use dockercri::docker::container_body::{self, ContainerInputs};
use dockercri::docker::naming;
use dockercri::docker::oom_score::OomPolicy;
use dockercri::docker::sandbox_body::{self, PodNetwork, SandboxInputs};
use dockercri::proto::runtime_service_client::RuntimeServiceClient;
use dockercri::proto::*;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use tonic::transport::Channel;

/// The bound dockercri puts on Docker's own log by default: the raw side
/// does the same work.
static DOCKER_LOG: std::sync::LazyLock<DockerLogLimit> =
    std::sync::LazyLock::new(|| DockerLogLimit {
        max_size: dockercri::config::DEFAULT_DOCKER_LOG_MAX_SIZE.into(),
        max_files: dockercri::config::DEFAULT_DOCKER_LOG_MAX_FILES,
    });

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
    /// Rounds of the whole lifecycle, both sides in each.
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
    /// Time spent in each side's stages.
    pub dockercri_wall: Duration,
    pub docker_wall: Duration,
    /// Pod containers (both sides) present during the read rounds.
    pub present_for_reads: usize,
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
    let cri_side = Side {
        plan: &plan,
        dir: dir.path(),
        run_id: &run_id,
        s: &dockercri,
        via: Via::Cri(&rt),
    };
    let raw_id = format!("raw-{run_id}");
    let raw_side = Side {
        plan: &plan,
        dir: dir.path(),
        run_id: &raw_id,
        s: &raw,
        via: Via::Docker(&docker),
    };
    let present_for_reads = read_phase(&plan, &cri_side, &raw_side).await;
    let daemons = daemon_pids();
    let daemons_cpu = || daemons.iter().map(|&p| cpu(p)).sum::<Duration>();
    let mut spent = [Spent::default(), Spent::default()];
    let chunks = chunks(plan.pods, plan.parallel);
    for round in 0..plan.repeats.max(1) {
        let mut pods = [Pods::new(plan.pods), Pods::new(plan.pods)];
        for (n, stage) in STAGES.into_iter().enumerate() {
            for (c, chunk) in chunks.iter().enumerate() {
                // The sides take turns chunk by chunk, and which one leads
                // flips from chunk to chunk, stage to stage and round to
                // round: each side leads each stage equally often.
                let first = (round + n + c) % 2;
                for k in [first, 1 - first] {
                    let side = if k == 0 { &cri_side } else { &raw_side };
                    let (t, daemons_before, before) = (Instant::now(), daemons_cpu(), cpu(pid));
                    side.stage(stage, &mut pods[k], chunk.clone()).await;
                    spent[k].wall += t.elapsed();
                    spent[k].daemons += daemons_cpu().saturating_sub(daemons_before);
                    spent[k].dockercri += cpu(pid).saturating_sub(before);
                }
            }
        }
    }
    let rss_peak_kib = proc_status_kib(pid, "VmHWM:");
    let _ = child.kill();
    let _ = child.wait();
    cleanup(&docker, &run_id).await;
    cleanup(&docker, &raw_id).await;

    Report {
        plan,
        dockercri: take(dockercri),
        docker: take(raw),
        dockercri_wall: spent[0].wall,
        docker_wall: spent[1].wall,
        present_for_reads,
        rss_idle_kib,
        rss_peak_kib,
        cpu: spent[0].dockercri,
        daemons_cpu_dockercri: spent[0].daemons,
        daemons_cpu_docker: spent[1].daemons,
    }
}

/// The reads kubelet's relist makes, timed on both sides against the same
/// N pods (2N pod containers, made through dockercri and not timed), in
/// turns of a tenth of the rounds so that drift falls on both alike.
/// Returns how many pod containers were present.
async fn read_phase(plan: &Plan, cri: &Side<'_>, raw: &Side<'_>) -> usize {
    let untimed = Arc::new(Mutex::new(Samples::default()));
    let maker = Side {
        s: &untimed,
        ..*cri
    };
    let mut pods = Pods::new(plan.pods);
    for stage in [
        Stage::RunPodSandbox,
        Stage::CreateContainer,
        Stage::StartContainer,
    ] {
        maker.stage(stage, &mut pods, 0..plan.pods).await;
    }
    let present = pods.present();
    if !present.is_empty() {
        let chunk = plan.read_rounds.div_ceil(10).max(1);
        let mut done = 0;
        while done < plan.read_rounds {
            let rounds = chunk.min(plan.read_rounds - done);
            let turn = done / chunk;
            for side in [[cri, raw][turn % 2], [cri, raw][(turn + 1) % 2]] {
                for round in done..done + rounds {
                    let (pod, id) = &present[round % present.len()];
                    side.reads(pod, id, true).await;
                }
            }
            done += rounds;
        }
    }
    for stage in [
        Stage::StopContainer,
        Stage::RemoveContainer,
        Stage::StopPodSandbox,
        Stage::RemovePodSandbox,
    ] {
        maker.stage(stage, &mut pods, 0..plan.pods).await;
    }
    let errors = take(untimed).errors;
    cri.s
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .errors
        .extend(errors);
    2 * present.len()
}

/// The pods of a stage split into the chunks the sides take turns on:
/// a few per stage, so that drift in the machine's load and what the
/// previous chunk left Docker doing fall on both sides alike, each chunk
/// big enough to keep `parallel` calls in flight most of its time.
fn chunks(pods: usize, parallel: usize) -> Vec<Range<usize>> {
    let size = (2 * parallel).max(pods.div_ceil(4)).max(1);
    (0..pods)
        .step_by(size)
        .map(|start| start..(start + size).min(pods))
        .collect()
}

/// What one side's stages cost.
#[derive(Default)]
struct Spent {
    wall: Duration,
    daemons: Duration,
    dockercri: Duration,
}

/// The stages of a lifecycle round, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    RunPodSandbox,
    CreateContainer,
    StartContainer,
    ReadsAfterStart,
    ExecSync,
    ListContainerStats,
    StopContainer,
    RemoveContainer,
    StopPodSandbox,
    RemovePodSandbox,
}

const STAGES: [Stage; 10] = [
    Stage::RunPodSandbox,
    Stage::CreateContainer,
    Stage::StartContainer,
    Stage::ReadsAfterStart,
    Stage::ExecSync,
    Stage::ListContainerStats,
    Stage::StopContainer,
    Stage::RemoveContainer,
    Stage::StopPodSandbox,
    Stage::RemovePodSandbox,
];

/// One side's pods in a round: sandbox and container ids as made, by
/// pod number.
struct Pods {
    sandboxes: Vec<Option<String>>,
    containers: Vec<Option<String>>,
}

impl Pods {
    fn new(n: usize) -> Self {
        Pods {
            sandboxes: vec![None; n],
            containers: vec![None; n],
        }
    }

    /// The pods whose sandbox and container both exist.
    fn present(&self) -> Vec<(String, String)> {
        self.present_in(0..self.sandboxes.len())
    }

    fn present_in(&self, range: Range<usize>) -> Vec<(String, String)> {
        self.sandboxes[range.clone()]
            .iter()
            .zip(&self.containers[range])
            .filter_map(|(p, c)| Some((p.clone()?, c.clone()?)))
            .collect()
    }
}

/// How a side reaches Docker.
#[derive(Clone, Copy)]
enum Via<'a> {
    /// dockercri's CRI socket.
    Cri(&'a RuntimeServiceClient<Channel>),
    /// Docker's API, with the requests dockercri would make.
    Docker(&'a Docker),
}

/// One side of the comparison.
#[derive(Clone, Copy)]
struct Side<'a> {
    plan: &'a Plan,
    dir: &'a Path,
    run_id: &'a str,
    s: &'a Shared,
    via: Via<'a>,
}

impl Side<'_> {
    /// Runs `stage` for pods number `range`.
    async fn stage(&self, stage: Stage, pods: &mut Pods, range: Range<usize>) {
        let p = self.plan.parallel;
        let (start, n) = (range.start, range.len());
        let configs: Vec<PodSandboxConfig> = range
            .clone()
            .map(|i| pod_config(self.dir, self.run_id, i))
            .collect();
        let present = pods.present_in(range.clone());
        let m = present.len();
        let ids = |i: usize| present[i].clone();
        match stage {
            Stage::RunPodSandbox => {
                let made = each(n, p, |i| self.run_pod(&configs[i])).await;
                pods.sandboxes.splice(range, made);
            }
            Stage::CreateContainer => {
                let (sandboxes, configs) = (&pods.sandboxes, &configs);
                let made = each(n, p, |i| async move {
                    let pod = sandboxes.get(start + i)?.clone()?;
                    self.create(&pod, &configs[i]).await
                })
                .await;
                pods.containers.splice(range, made);
            }
            Stage::ReadsAfterStart => {
                each(m, p, |i| async move {
                    let (pod, id) = ids(i);
                    self.reads(&pod, &id, false).await
                })
                .await;
            }
            _ => {
                each(m, p, |i| async move {
                    let (pod, id) = ids(i);
                    self.act(stage, &pod, &id).await
                })
                .await;
            }
        }
    }

    async fn run_pod(&self, config: &PodSandboxConfig) -> Option<String> {
        let s = self.s;
        match self.via {
            Via::Cri(rt) => {
                let run = RunPodSandboxRequest {
                    config: Some(config.clone()),
                    runtime_handler: String::new(),
                };
                let reply = timed(s, "RunPodSandbox", rt.clone().run_pod_sandbox(run)).await?;
                Some(reply.into_inner().pod_sandbox_id)
            }
            Via::Docker(docker) => {
                let inputs = SandboxInputs {
                    image: dockercri::runtime::pause::BUILTIN_IMAGE,
                    network: PodNetwork::DockerBridge,
                    runtime: None,
                    seccomp_localhost: None,
                    oom_score_adj: OomPolicy::new(None).clamp(sandbox_body::SANDBOX_OOM_SCORE_ADJ),
                    cgroup_driver: dockercri::proto::CgroupDriver::Cgroupfs,
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
        }
    }

    async fn create(&self, pod: &str, config: &PodSandboxConfig) -> Option<String> {
        let s = self.s;
        let app = container_config(self.run_id);
        match self.via {
            Via::Cri(rt) => {
                let create = CreateContainerRequest {
                    pod_sandbox_id: pod.to_string(),
                    config: Some(app),
                    sandbox_config: Some(config.clone()),
                };
                let reply =
                    timed(s, "CreateContainer", rt.clone().create_container(create)).await?;
                Some(reply.into_inner().container_id)
            }
            Via::Docker(docker) => {
                let body = container_body::create_body(
                    &app,
                    &ContainerInputs {
                        sandbox_id: pod,
                        sandbox: config,
                        seccomp_localhost: None,
                        oom: OomPolicy::new(None),
                        recursive_read_only: false,
                        selinux: false,
                        cgroup_v2: false,
                        cgroup_driver: dockercri::proto::CgroupDriver::Cgroupfs,
                        docker_log: Some(&*DOCKER_LOG),
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
        }
    }

    async fn reads(&self, pod: &str, id: &str, all_present: bool) {
        match self.via {
            Via::Cri(rt) => cri_reads(&mut rt.clone(), self.s, pod, id, all_present).await,
            Via::Docker(docker) => raw_reads(docker, self.s, pod, id, all_present).await,
        }
    }

    /// One of the calls on an existing pod.
    async fn act(&self, stage: Stage, pod: &str, id: &str) {
        match self.via {
            Via::Cri(rt) => cri_act(rt.clone(), stage, pod, id, self.s).await,
            Via::Docker(docker) => raw_act(docker, stage, pod, id, self.s).await,
        }
    }
}

async fn cri_act(
    mut rt: RuntimeServiceClient<Channel>,
    stage: Stage,
    pod: &str,
    id: &str,
    s: &Shared,
) {
    let (pod, id) = (pod.to_string(), id.to_string());
    match stage {
        Stage::StartContainer => {
            let start = StartContainerRequest { container_id: id };
            timed(s, "StartContainer", rt.start_container(start)).await;
        }
        Stage::ExecSync => {
            let exec = ExecSyncRequest {
                container_id: id,
                cmd: vec!["echo".into(), "hi".into()],
                timeout: 10,
            };
            timed(s, "ExecSync", rt.exec_sync(exec)).await;
        }
        Stage::ListContainerStats => {
            let stats = ListContainerStatsRequest {
                filter: Some(ContainerStatsFilter {
                    id,
                    ..Default::default()
                }),
            };
            timed(s, "ListContainerStats", rt.list_container_stats(stats)).await;
        }
        Stage::StopContainer => {
            let stop = StopContainerRequest {
                container_id: id,
                timeout: 0,
            };
            timed(s, "StopContainer", rt.stop_container(stop)).await;
        }
        Stage::RemoveContainer => {
            let remove = RemoveContainerRequest { container_id: id };
            timed(s, "RemoveContainer", rt.remove_container(remove)).await;
        }
        Stage::StopPodSandbox => {
            let stop = StopPodSandboxRequest {
                pod_sandbox_id: pod,
            };
            timed(s, "StopPodSandbox", rt.stop_pod_sandbox(stop)).await;
        }
        Stage::RemovePodSandbox => {
            let remove = RemovePodSandboxRequest {
                pod_sandbox_id: pod,
            };
            timed(s, "RemovePodSandbox", rt.remove_pod_sandbox(remove)).await;
        }
        _ => {}
    }
}

async fn raw_act(docker: &Docker, stage: Stage, pod: &str, id: &str, s: &Shared) {
    let force = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    match stage {
        Stage::StartContainer => {
            timed(s, "StartContainer", docker.start_container(id, None)).await;
        }
        Stage::ExecSync => {
            timed(s, "ExecSync", async {
                let exec = docker
                    .create_exec(
                        id,
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
        Stage::ListContainerStats => {
            timed(s, "ListContainerStats", async {
                let options = StatsOptionsBuilder::default()
                    .stream(false)
                    .one_shot(true)
                    .build();
                docker.stats(id, Some(options)).next().await.transpose()
            })
            .await;
        }
        Stage::StopContainer => {
            let kill = StopContainerOptionsBuilder::default().t(0).build();
            timed(s, "StopContainer", docker.stop_container(id, Some(kill))).await;
        }
        Stage::RemoveContainer => {
            let remove = docker.remove_container(id, Some(force));
            timed(s, "RemoveContainer", remove).await;
        }
        Stage::StopPodSandbox => {
            let grace = StopContainerOptionsBuilder::default().t(10).build();
            timed(s, "StopPodSandbox", docker.stop_container(pod, Some(grace))).await;
        }
        Stage::RemovePodSandbox => {
            let remove = docker.remove_container(pod, Some(force));
            timed(s, "RemovePodSandbox", remove).await;
        }
        _ => {}
    }
}

fn failed(s: &Shared, what: &str) {
    s.lock()
        .unwrap_or_else(|p| p.into_inner())
        .errors
        .push(what.into());
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
            "{} pods with one container each, parallelism {}, {} round(s); in each stage the \
             two sides take turns on chunks of {} pods\nreads: {} rounds with {} pod containers \
             present\n",
            self.plan.pods,
            self.plan.parallel,
            self.plan.repeats,
            chunks(self.plan.pods, self.plan.parallel)
                .first()
                .map_or(0, |c| c.len()),
            self.plan.read_rounds,
            self.present_for_reads
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
            "pods per second (time in each side's stages): dockercri {:.2} ({:.1} s), docker {:.2} ({:.1} s)\n",
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
