//! Shared set-up for the engine's integration tests: a config with its own instance, gateway
//! port and data dir per test (so tests run in parallel on one Docker host), git repositories
//! made from `fixtures/`, HTTP through the gateway, and a cleanup by label that runs even when
//! a test fails.

#![allow(dead_code)]

pub mod load;
pub mod slow;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::ContainerSummary;
use bollard::query_parameters::{
    ListContainersOptions, ListImagesOptions, ListNetworksOptions, RemoveContainerOptions,
    RemoveImageOptions,
};
use previewd::clock::ManualClock;
use previewd::config::Config;
use previewd::engine::{DeployFailure, Deployed};
use previewd::preview::manager::{Manager, Mode, UpRequest};
use tokio_util::sync::CancellationToken;

pub struct TestEnv {
    pub config: Config,
    pub manager: Manager,
    pub data: tempfile::TempDir,
    pub port: u16,
    /// The manager's clock: a test of ttls moves it forward instead of sleeping.
    pub clock: Arc<ManualClock>,
}

/// A port for something that binds it later (the gateway's published port, a child `serve`).
/// Picked below the kernel's ephemeral range: a port the kernel handed out for `bind(0)` is
/// as likely to be taken by the next outgoing connection (previewd's own to the fake GitHub or
/// Docker) before Docker binds it, which failed the gateway with "port is already allocated".
/// Random within the range, so parallel test processes rarely meet, and never twice in one.
pub fn free_port() -> u16 {
    use std::sync::Mutex;
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (20_000u16, ephemeral_low.max(20_001));
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let port = low + (rand_u64() % u64::from(high - low)) as u16;
        if given.contains(&port) {
            continue;
        }
        let free = ["127.0.0.1", "0.0.0.0"]
            .iter()
            .all(|ip| std::net::TcpListener::bind((*ip, port)).is_ok());
        if free {
            given.push(port);
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded per instance from the OS: enough randomness for picking a port.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish()
}

impl TestEnv {
    pub async fn new(name: &str) -> TestEnv {
        Self::with(name, &[]).await
    }

    pub async fn with(name: &str, extra: &[(&str, &str)]) -> TestEnv {
        let suffix: String = nanoid::nanoid!(5, &previewd::ids::PREVIEW_ID_ALPHABET);
        // "a-" sorts before Docker's `bridge`: the worst case for the gateway's published port
        // (Docker moves it to the first network by name that offers a default gateway).
        let instance = format!("a-{name}-{suffix}");
        let data = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut env: Vec<(String, String)> = vec![
            ("PREVIEWD_INSTANCE".into(), instance),
            (
                "PREVIEWD_DATA_DIR".into(),
                data.path().display().to_string(),
            ),
            ("PREVIEWD_GATEWAY_PORT".into(), port.to_string()),
            ("PREVIEWD_LIMITS_HEALTH_TIMEOUT".into(), "30s".into()),
            ("PREVIEWD_LIMITS_BUILD_TIMEOUT".into(), "120s".into()),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = Config::from_parts(None, Path::new("test"), &env).expect("config");
        let clock = Arc::new(ManualClock::new());
        let manager = Manager::connect(config.clone())
            .await
            .expect("docker")
            .with_clock(clock.clone());
        TestEnv {
            config,
            manager,
            data,
            port,
            clock,
        }
    }

    pub fn request(&self, repo: &Path) -> UpRequest {
        UpRequest {
            repo: repo.display().to_string(),
            branch: None,
            sha: None,
            pr: None,
            forge: "cli".into(),
            mode: Mode::Preview,
            key_repo: None,
            key_branch: None,
            received: None,
        }
    }

    pub async fn up(&self, repo: &Path) -> Result<Deployed, DeployFailure> {
        self.up_req(self.request(repo)).await
    }

    /// Deploys, then waits until the generation it replaced is drained and removed too (as
    /// `previewd up` does before it exits): after an update, one generation is left.
    pub async fn up_req(&self, req: UpRequest) -> Result<Deployed, DeployFailure> {
        let deployed = self
            .manager
            .up(req, Arc::new(|_| {}), CancellationToken::new())
            .await;
        self.manager.retired().await;
        deployed
    }

    /// Deploys as [`TestEnv::up_req`] does, under `cancel`, keeping every build log line (of
    /// every service, in order).
    pub async fn up_logged(
        &self,
        req: UpRequest,
        cancel: CancellationToken,
    ) -> (Result<Deployed, DeployFailure>, Vec<String>) {
        let (progress, lines) = load::recorder();
        let r = self.manager.up(req, progress, cancel).await;
        self.manager.retired().await;
        let lines = lines
            .lock()
            .map(|l| l.iter().map(|(_, line)| line.clone()).collect());
        (r, lines.unwrap_or_default())
    }

    /// GET through the gateway with the preview's host name.
    pub async fn get(&self, id: &str, path: &str) -> (u16, String) {
        self.get_host(&format!("{id}.localhost"), path).await
    }

    /// GET through the gateway with any `Host` header, crafted ones included.
    pub async fn get_host(&self, host: &str, path: &str) -> (u16, String) {
        load::get(&format!("127.0.0.1:{}", self.port), host, path).await
    }

    /// Containers, networks and images of this instance, by name.
    pub async fn objects(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        objects(self.config.instance.as_str()).await
    }

    /// The names (preview ids) of this instance's worktrees, sorted; none when the folder
    /// does not exist.
    pub fn worktrees(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.config.instance_dir().join("worktrees"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// One reconcile pass with no grace, nothing busy and nothing kept (`previewd gc` with a
    /// zero grace, or `serve`'s start-up pass).
    pub async fn clean_up_now(&self) -> previewd::preview::cleanup::Report {
        let none = std::collections::HashSet::new();
        previewd::preview::cleanup::clean_up(&self.manager, Duration::ZERO, &none, &none)
            .await
            .expect("reconcile")
    }

    /// Asserts that nothing of this instance is left: containers, networks, images, worktrees.
    /// A build-step container (it has the instance label from the Dockerfile's stamp, and no
    /// `role`) of a build aborted just now is Docker's to remove, a moment after the abort: it
    /// gets 20 s. previewd's own containers must be gone at once.
    pub async fn assert_clean(&self) {
        let instance = self.config.instance.to_string();
        eventually(
            Duration::from_secs(20),
            "build-step containers to go",
            || {
                let instance = instance.clone();
                async move {
                    build_step_containers(&instance)
                        .await
                        .is_empty()
                        .then_some(())
                }
            },
        )
        .await;
        let (c, n, i) = self.objects().await;
        assert!(c.is_empty(), "containers left: {c:?}");
        assert!(n.is_empty(), "networks left: {n:?}");
        assert!(i.is_empty(), "images left: {i:?}");
        let v = volumes(&instance).await;
        assert!(v.is_empty(), "volumes left: {v:?}");
        let left = self.worktrees();
        assert!(left.is_empty(), "worktrees left: {left:?}");
        let rules = previewd::preview::firewall::installed(&instance).await;
        assert!(rules.is_empty(), "egress rules left: {rules:?}");
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let instance = self.config.instance.to_string();
        // Drop may run inside a runtime: clean up on a thread of its own.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Runtime::new() {
                rt.block_on(cleanup(&instance));
            }
        })
        .join();
    }
}

fn label_filter(instance: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_owned(),
        vec![format!("dev.previewd.instance={instance}")],
    )])
}

pub async fn objects(instance: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let d = Docker::connect_with_defaults().expect("docker");
    let c = containers(&d, instance)
        .await
        .into_iter()
        .flat_map(|c| c.names.unwrap_or_default())
        .collect();
    let n = d
        .list_networks(Some(ListNetworksOptions {
            filters: Some(label_filter(instance)),
        }))
        .await
        .expect("list networks")
        .into_iter()
        .filter_map(|n| n.name)
        .collect();
    let i = d
        .list_images(Some(ListImagesOptions {
            filters: Some(label_filter(instance)),
            ..Default::default()
        }))
        .await
        .expect("list images")
        .into_iter()
        .map(|i| i.repo_tags.join(",") + &i.id)
        .collect();
    (c, n, i)
}

/// Every container of the instance, running or not.
async fn containers(d: &Docker, instance: &str) -> Vec<ContainerSummary> {
    d.list_containers(Some(ListContainersOptions {
        all: true,
        filters: Some(label_filter(instance)),
        ..Default::default()
    }))
    .await
    .expect("list containers")
}

/// Containers of the instance without a `role`: the steps of a build.
/// Containers of `instance` that previewd did not make (no `role` label): a build's running
/// steps, which carry the instance label from the Dockerfile's stamp.
pub async fn build_step_containers(instance: &str) -> Vec<String> {
    let d = Docker::connect_with_defaults().expect("docker");
    containers(&d, instance)
        .await
        .into_iter()
        .filter(|c| {
            c.labels
                .as_ref()
                .is_none_or(|l| !l.contains_key("dev.previewd.role"))
        })
        .flat_map(|c| c.names.unwrap_or_default())
        .collect()
}

async fn cleanup(instance: &str) {
    let Ok(d) = Docker::connect_with_defaults() else {
        return;
    };
    let filters = label_filter(instance);
    if let Ok(cs) = d
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters.clone()),
            ..Default::default()
        }))
        .await
    {
        for c in cs.into_iter().filter_map(|c| c.id) {
            let _ = d
                .remove_container(
                    &c,
                    Some(RemoveContainerOptions {
                        force: true,
                        v: true,
                        ..Default::default()
                    }),
                )
                .await;
        }
    }
    for v in volumes(instance).await {
        let _ = d
            .remove_volume(&v, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await;
    }
    if let Ok(ns) = d
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters.clone()),
        }))
        .await
    {
        for n in ns.into_iter().filter_map(|n| n.name) {
            let _ = d.remove_network(&n).await;
        }
    }
    // The egress rules of the networks just removed (a test that failed half-way).
    previewd::preview::firewall::clear(instance).await;
    if let Ok(is) = d
        .list_images(Some(ListImagesOptions {
            filters: Some(filters),
            ..Default::default()
        }))
        .await
    {
        for i in is {
            let _ = d
                .remove_image(
                    &i.id,
                    Some(RemoveImageOptions {
                        force: true,
                        ..Default::default()
                    }),
                    None,
                )
                .await;
        }
    }
}

/// The named volumes of the instance.
pub async fn volumes(instance: &str) -> Vec<String> {
    let Ok(d) = Docker::connect_with_defaults() else {
        return Vec::new();
    };
    d.list_volumes(Some(bollard::query_parameters::ListVolumesOptions {
        filters: Some(label_filter(instance)),
    }))
    .await
    .ok()
    .and_then(|r| r.volumes)
    .unwrap_or_default()
    .into_iter()
    .map(|v| v.name)
    .collect()
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// A git repository holding a copy of `fixtures/<name>`, removed with the value.
pub struct GitRepo {
    _root: tempfile::TempDir,
    path: PathBuf,
}

impl GitRepo {
    /// On branch `main`, at the root of a temporary folder.
    pub fn from_fixture(name: &str) -> GitRepo {
        Self::at(name, ".", "main")
    }

    /// At `<tmp>/<rel>` on branch `branch`, e.g. `Codertocat/Hello-World.git` for a
    /// `file://<tmp>` git_url.
    pub fn at(name: &str, rel: &str, branch: &str) -> GitRepo {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join(rel);
        copy_dir(&fixture(name), &path);
        let repo = git2::Repository::init_opts(
            &path,
            git2::RepositoryInitOptions::new().initial_head(branch),
        )
        .expect("git init");
        drop(repo);
        let r = GitRepo { _root: root, path };
        r.commit("initial");
        r
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder to use as `github.git_url` (`file://` + this).
    pub fn root(&self) -> &Path {
        self._root.path()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    /// Commits everything in the folder; returns the new commit id.
    pub fn commit(&self, message: &str) -> String {
        let repo = git2::Repository::open(&self.path).expect("open");
        let mut index = repo.index().expect("index");
        index
            .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
            .expect("add");
        index.write().expect("write index");
        let tree = repo
            .find_tree(index.write_tree().expect("tree"))
            .expect("tree");
        let sig = git2::Signature::now("test", "test@example.com").expect("sig");
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .expect("commit")
            .to_string()
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read fixture") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        let ft = e.file_type().expect("type");
        if ft.is_dir() {
            copy_dir(&e.path(), &target);
        } else if ft.is_symlink() {
            let link = std::fs::read_link(e.path()).expect("link");
            std::os::unix::fs::symlink(link, &target).expect("symlink");
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// Polls `f` until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `cmd` inside a running container (as a preview's own code would); its exit code (-1
/// when Docker does not say) and everything it printed.
pub async fn exec(docker: &Docker, container: &str, cmd: &[&str]) -> (i64, String) {
    use futures_util::StreamExt;
    let exec = docker
        .create_exec(
            container,
            bollard::models::ExecConfig {
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("create exec");
    let mut out = String::new();
    if let bollard::exec::StartExecResults::Attached { mut output, .. } = docker
        .start_exec(&exec.id, None::<bollard::exec::StartExecOptions>)
        .await
        .expect("start exec")
    {
        while let Some(Ok(chunk)) = output.next().await {
            out.push_str(&chunk.to_string());
        }
    }
    let code = docker
        .inspect_exec(&exec.id)
        .await
        .expect("inspect exec")
        .exit_code
        .unwrap_or(-1);
    (code, out)
}

/// Processes on this host whose command line holds `marker` (BuildKit's step processes run in
/// the host's view of processes, inside their own namespaces).
pub fn processes_with(marker: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(marker))
        .count()
}
