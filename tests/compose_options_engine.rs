//! Compose options applied on the real engine: build `labels` and `no_cache`, `ulimits`
//! (clamped to the operator's PID limit), a tmpfs `mode`, a volume's `nocopy`, a secret's
//! `uid`/`gid`/`mode`, `dns`/`dns_search`/`dns_opt`, a service brought in by `include` and one
//! that `extends` a service of another file, and `pull_policy` (`never`, `always`, `missing`,
//! `daily`, `every_<duration>`), lifecycle hooks (`post_start`, `pre_stop`) and an inline
//! config's `content`.

mod engine_support;

use std::time::Duration;

use bollard::query_parameters::{InspectContainerOptions, RemoveImageOptions, TagImageOptions};
use engine_support::{GitRepo, TestEnv, exec};

/// The container id of `service` in the preview's live generation.
async fn container(env: &TestEnv, service: &str) -> String {
    let observed = env.manager.observed().await.expect("observed");
    observed[0]
        .live_members()
        .iter()
        .find(|m| m.service == service)
        .unwrap_or_else(|| panic!("{service} is not running"))
        .container_id
        .clone()
}

async fn sh(env: &TestEnv, c: &str, script: &str) -> String {
    let (code, out) = exec(env.manager.docker(), c, &["sh", "-c", script]).await;
    assert_eq!(code, 0, "{script}: {out}");
    out.trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_options_are_applied_to_builds_and_containers() {
    let env = TestEnv::new("copts").await;
    let repo = GitRepo::from_fixture("compose-options");
    let d = env.up(repo.path()).await.expect("up");
    let docker = env.manager.docker();

    // build.labels on the image; build.no_cache: each deployment runs the build's steps again.
    let app = container(&env, "app").await;
    let first_id = sh(&env, &app, "cat /build-id").await;
    let info = docker
        .inspect_container(&app, None::<InspectContainerOptions>)
        .await
        .expect("inspect");
    let image = docker
        .inspect_image(&info.image.expect("image id"))
        .await
        .expect("image");
    let labels = image.config.and_then(|c| c.labels).unwrap_or_default();
    assert_eq!(
        labels.get("org.example.team").map(String::as_str),
        Some("web")
    );

    let tools = container(&env, "tools").await;
    // ulimits: the soft and hard limits as written, read from the service's own process: a
    // process `docker exec` starts beside it sometimes gets the hard limit as its soft one
    // (Docker 20.10: 3 of 12 execs here), which says nothing about the preview.
    let nofile = sh(&env, &tools, "grep 'open files' /proc/1/limits").await;
    let words: Vec<&str> = nofile.split_whitespace().collect();
    assert_eq!(words.get(3..5), Some(&["1024", "2048"][..]), "{nofile}");
    assert_eq!(
        sh(&env, &tools, "ulimit -u").await,
        env.config.limits.pids.to_string()
    );
    // The tmpfs has its mode; the nocopy volume did not get the image's /var.
    assert_eq!(sh(&env, &tools, "stat -c %a /scratch").await, "1770");
    assert_eq!(sh(&env, &tools, "ls -A /var | wc -l").await, "0");
    // The secret, copied in with its owner and mode.
    assert_eq!(
        sh(&env, &tools, "stat -c %u:%g:%a /run/secrets/token").await,
        "1000:1000:400"
    );
    assert_eq!(
        sh(&env, &tools, "cat /run/secrets/token").await,
        "s3cret-token"
    );
    // Resolver settings: the search domain and option in resolv.conf, the server given to
    // Docker's embedded resolver.
    let conf = sh(&env, &tools, "cat /etc/resolv.conf").await;
    assert!(conf.contains("search preview.example"), "{conf}");
    assert!(conf.contains("ndots:2"), "{conf}");
    let host = docker
        .inspect_container(&tools, None::<InspectContainerOptions>)
        .await
        .expect("inspect")
        .host_config
        .expect("host config");
    assert_eq!(host.dns, Some(vec!["9.9.9.9".to_owned()]));
    // `extends` of base/common.yaml: its command, and its env_file read from base/.
    assert_eq!(
        sh(&env, &tools, "echo $FROM_BASE").await,
        "common.env of base/"
    );
    // `include` of base/worker.yaml: its service runs, its bind mount is base/data.
    let worker = container(&env, "worker").await;
    assert_eq!(
        sh(&env, &worker, "cat /data/hello.txt").await,
        "included data"
    );

    // The same commit again: no_cache builds anew instead of reusing the image.
    let d2 = env.up(repo.path()).await.expect("again");
    let app = container(&env, "app").await;
    let second_id = sh(&env, &app, "cat /build-id").await;
    assert_ne!(first_id, second_id, "no_cache ran the build step again");

    env.manager.down(&d2.state.id).await.expect("down");
    assert_eq!(d.state.id, d2.state.id);
    env.assert_clean().await;
}

/// Untags an image when dropped, so a failed assertion leaves no tag behind.
struct Untag(String);

impl Drop for Untag {
    fn drop(&mut self) {
        let image = self.0.clone();
        // Drop may run inside a runtime: untag on a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Runtime::new() else {
                return;
            };
            rt.block_on(async {
                if let Ok(d) = bollard::Docker::connect_with_defaults() {
                    let _ = d
                        .remove_image(&image, None::<RemoveImageOptions>, None)
                        .await;
                }
            });
        })
        .join();
    }
}

/// `pull_policy`: `never` wants the image on the host and never asks a registry; `always`
/// pulls on every deployment, so an image that no registry has fails even though the host
/// has it; `missing` (the default) uses the host's; `daily`/`every_<duration>` pull only a copy
/// older than that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_policy_decides_whether_a_registry_is_asked() {
    let env = TestEnv::new("cpull").await;
    let docker = env.manager.docker();
    // An image only this host has: busybox under a name no registry serves.
    let local = format!("{}-local-only", env.config.instance);
    docker
        .tag_image(
            "busybox",
            Some(TagImageOptions {
                repo: Some(local.clone()),
                tag: Some("1".to_owned()),
            }),
        )
        .await
        .expect("tag");
    let image = format!("{local}:1");
    let _untag = Untag(image.clone());
    let compose = |image: &str, policy: &str| {
        format!(
            "services:\n  app:\n    image: {image}\n    pull_policy: {policy}\n    \
             command: [\"sleep\", \"100000\"]\n    stop_grace_period: 1s\n"
        )
    };
    let repo = GitRepo::from_fixture("compose-volume");
    std::fs::remove_file(repo.path().join("compose.yaml")).expect("rm");

    repo.write(
        "compose.yaml",
        &compose(&format!("{local}:absent"), "never"),
    );
    repo.commit("never, absent");
    let e = env.up(repo.path()).await.expect_err("never pulls");
    assert!(e.to_string().contains("pull_policy `never`"), "{e}");

    repo.write("compose.yaml", &compose(&image, "always"));
    repo.commit("always");
    let e = env.up(repo.path()).await.expect_err("always pulls");
    assert!(e.to_string().contains("pull_policy `always`"), "{e}");

    // `every_<duration>`: the host's copy was tagged (Docker's `LastTagTime`) just now, so it
    // is fresh; two hours later it is stale, the pull is tried, and fails.
    repo.write("compose.yaml", &compose(&image, "every_1h"));
    repo.commit("every_1h");
    let d = env.up(repo.path()).await.expect("a fresh copy is used");
    env.clock.advance(Duration::from_secs(2 * 3600));
    repo.commit("every_1h, two hours later");
    let e = env.up(repo.path()).await.expect_err("a stale copy pulls");
    assert!(e.to_string().contains("pull_policy `every_1h`"), "{e}");

    repo.write("compose.yaml", &compose(&image, "never"));
    repo.commit("never, present");
    let d = env
        .up(repo.path())
        .await
        .map(|_| d)
        .expect("never, on the host");

    repo.write("compose.yaml", &compose(&image, "missing"));
    repo.commit("missing");
    let d = env.up(repo.path()).await.map(|_| d).expect("missing");

    // `daily`: tagged on this host moments ago, so fresh although busybox's `Created` is older
    // than a day: no registry is asked.
    repo.write("compose.yaml", &compose(&image, "daily"));
    repo.commit("daily");
    let d = env.up(repo.path()).await.map(|_| d).expect("daily, fresh");

    env.manager.down(&d.state.id).await.expect("down");
    docker
        .remove_image(&image, None::<RemoveImageOptions>, None)
        .await
        .expect("untag");
    env.assert_clean().await;
}

/// The hooks of `app`: `post_start` (as root in /data with its own variable, then as the
/// service's user) and `pre_stop`, with `more` lines added to `post_start`; and an inline
/// config.
fn hooked(more: &str) -> String {
    format!(
        r#"services:
  app:
    image: busybox
    command: ["sleep", "100000"]
    stop_grace_period: 1s
    user: "1000"
    volumes: ["data:/data"]
    configs: [{{source: motd, target: /etc/motd, uid: "1000", mode: 0400}}]
    post_start:
      - command: ["sh", "-c", "echo \"$WHO in $(pwd)\" >> /data/log"]
        user: root
        working_dir: /data
        environment: {{WHO: hook}}
      - command: sh -c 'id -u > /tmp/uid'
{more}    pre_stop:
      - command: ["sh", "-c", "echo stopping >> /data/log"]
        user: root
volumes:
  data: {{}}
configs:
  motd:
    content: "inline\nconfig\n"
"#
    )
}

/// Container events of the instance, every action (`exec_start: CMD`, `die`, ...), in order.
fn record_all(
    env: &TestEnv,
) -> (
    tokio::task::JoinHandle<()>,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use futures_util::StreamExt;
    let filters = std::collections::HashMap::from([
        ("type".to_owned(), vec!["container".to_owned()]),
        (
            "label".to_owned(),
            vec![format!("dev.previewd.instance={}", env.config.instance)],
        ),
    ]);
    let opts = bollard::query_parameters::EventsOptions {
        since: None,
        until: None,
        filters: Some(filters),
    };
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (docker, out) = (env.manager.docker().clone(), seen.clone());
    let task = tokio::spawn(async move {
        let mut events = docker.events(Some(opts));
        while let Some(Ok(e)) = events.next().await {
            if let Ok(mut v) = out.lock() {
                v.push(e.action.unwrap_or_default());
            }
        }
    });
    (task, seen)
}

/// Compose's lifecycle hooks run through Docker's exec: `post_start` once the container has
/// started (with the hook's user, working directory and environment, else the service's),
/// before the deployment counts it ready, and again for the new container of an update;
/// `pre_stop` before a stop-first replacement stops the old container, and before `down`
/// removes it (Docker's events show its exec before the container dies); a failing
/// `post_start` fails the deployment with its output in the log tail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_hooks_run_in_the_container() {
    let env = TestEnv::new("chooks").await;
    let repo = GitRepo::from_fixture("compose-volume");
    repo.write("compose.yaml", &hooked(""));
    repo.commit("hooks");
    env.up(repo.path()).await.expect("up");
    let app = container(&env, "app").await;
    assert_eq!(sh(&env, &app, "cat /data/log").await, "hook in /data");
    assert_eq!(sh(&env, &app, "cat /tmp/uid").await, "1000");
    // The inline config, copied in with its owner and mode.
    assert_eq!(sh(&env, &app, "stat -c %u:%a /etc/motd").await, "1000:400");
    assert_eq!(sh(&env, &app, "cat /etc/motd").await, "inline\nconfig");

    // An update: the old container's pre_stop runs before it is stopped (it mounts a named
    // volume: stop-first), then the new one's post_start.
    repo.commit("again");
    env.up(repo.path()).await.expect("update");
    let app = container(&env, "app").await;
    assert_eq!(
        sh(&env, &app, "cat /data/log").await,
        "hook in /data\nstopping\nhook in /data"
    );

    // A failing post_start fails the deployment, its output in the log tail.
    repo.write(
        "compose.yaml",
        &hooked("      - command: [\"sh\", \"-c\", \"echo hook-broke-here; exit 3\"]\n"),
    );
    repo.commit("a failing hook");
    let e = env.up(repo.path()).await.expect_err("the hook fails");
    assert!(
        e.reason
            .contains("post_start hook `sh -c echo hook-broke-here; exit 3` exited with status 3"),
        "{e}"
    );
    assert!(
        e.log_tail.iter().any(|l| l.contains("hook-broke-here")),
        "{:?}",
        e.log_tail
    );
    assert_eq!(e.service.as_deref(), Some("app"));

    // `down` runs pre_stop before it removes the container.
    let (task, seen) = record_all(&env);
    let id = env.manager.observed().await.expect("observed")[0]
        .id
        .clone();
    env.manager.down(&id).await.expect("down");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let actions = loop {
        let actions = seen.lock().expect("events").clone();
        if actions.iter().any(|a| a == "destroy") || tokio::time::Instant::now() > deadline {
            break actions;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    task.abort();
    let hook = actions
        .iter()
        .position(|a| a.starts_with("exec_start") && a.contains("echo stopping"));
    let died = actions.iter().position(|a| a == "die");
    assert!(
        matches!((hook, died), (Some(h), Some(d)) if h < d),
        "{actions:?}"
    );
    env.assert_clean().await;
}
