//! A service's image for the build phase: built from the commit or found on the host (pulled
//! as its `pull_policy` says). Never lets a config name an image previewd built for a preview, and never
//! calls Docker except through `build` and `docker`.

use super::{Event, Manager, Mode, Prepared, Progress, UpRequest, fail};
use crate::engine::{DeployFailure, Phase};
use crate::preview::{build, docker};
use crate::spec::runtime::PullPolicy;
use crate::spec::{self, ImageSource, Spec};

impl Manager {
    /// `svc`'s image as its container runs it: on one host the local tag (or name); on a
    /// swarm, the image pushed to the cluster's registry, by digest, so every node can pull it.
    pub(super) async fn image(
        &self,
        req: &UpRequest,
        p: &Prepared,
        spec: &Spec,
        svc: &spec::Service,
        progress: &Progress,
    ) -> Result<String, DeployFailure> {
        let local = self.local_image(req, p, spec, svc, progress).await?;
        let Some(registry) = self.swarm_registry() else {
            return Ok(local);
        };
        let name = svc.name.as_str();
        let (digest, pushed) = docker::swarm::push(&self.docker, registry, &local)
            .await
            .map_err(|e| fail(Phase::Build, Some(name), e.to_string()))?;
        // Said in the build log, as a reuse is: an unchanged service is not pushed again.
        let line = match pushed {
            docker::swarm::Pushed::Sent => format!("pushed to the cluster's registry: {digest}"),
            docker::swarm::Pushed::Already => {
                format!("already in the cluster's registry, not pushed again: {digest}")
            }
        };
        progress(Event::Line {
            service: name.to_owned(),
            line,
        });
        Ok(digest)
    }

    /// Builds or finds `svc`'s image on the host previewd talks to: its tag (or name).
    async fn local_image(
        &self,
        req: &UpRequest,
        p: &Prepared,
        spec: &Spec,
        svc: &spec::Service,
        progress: &Progress,
    ) -> Result<String, DeployFailure> {
        let name = svc.name.as_str();
        if let Mode::Dev { .. } = req.mode
            && let Some(dev) = spec.dev.get(&svc.name)
        {
            return self.ensure_image(name, &dev.image).await;
        }
        match &svc.image {
            ImageSource::Image(image) => self.image_by_policy(name, image, svc.run.pull).await,
            ImageSource::Build(b) => {
                let on_line = |line: &str| {
                    progress(Event::Line {
                        service: name.to_owned(),
                        line: line.to_owned(),
                    })
                };
                let target = build::Target {
                    id: &p.id,
                    service: name,
                    key: &p.key,
                    egress: self.config.limits.egress.build.narrowed(spec.egress),
                };
                let r = build::build(&self.docker, &self.config, target, &p.worktree, b, &on_line)
                    .await;
                match r {
                    Ok(built) => Ok(built.tag),
                    Err(e) => {
                        let mut f = fail(Phase::Build, Some(name), e.to_string());
                        f.log_tail = e.tail();
                        Err(f)
                    }
                }
            }
        }
    }

    /// An image named in the config, as its `pull_policy` says: `always` pulls it on every
    /// deployment (the pull must succeed), `never` wants it on the host already, `missing`
    /// pulls it only when the host does not have it, and `daily`/`weekly`/`every_<duration>`
    /// also when the host's copy is older than that (see `refresh_due`).
    async fn image_by_policy(
        &self,
        service: &str,
        image: &str,
        policy: PullPolicy,
    ) -> Result<String, DeployFailure> {
        match policy {
            PullPolicy::Missing => self.ensure_image(service, image).await,
            PullPolicy::Never => {
                if docker::built_by_previewd(&self.docker, image)
                    .await
                    .is_none()
                {
                    return Err(fail(
                        Phase::Build,
                        Some(service),
                        format!(
                            "image {image} is not on this Docker host, and pull_policy `never` \
                             forbids pulling it"
                        ),
                    ));
                }
                self.ensure_image(service, image).await
            }
            PullPolicy::Always | PullPolicy::Refresh(_) => {
                match docker::built_by_previewd(&self.docker, image).await {
                    // Refused below, before anything is asked of a registry.
                    Some(true) => return self.ensure_image(service, image).await,
                    // Absent: pulled below, as `missing` does.
                    None if policy != PullPolicy::Always => {
                        return self.ensure_image(service, image).await;
                    }
                    _ => {}
                }
                if let PullPolicy::Refresh(max_age) = policy {
                    let local = docker::image_time(&self.docker, image).await;
                    if !refresh_due(local, max_age, self.clock.now()) {
                        return self.ensure_image(service, image).await;
                    }
                }
                if let Err(e) = docker::pull_image(&self.docker, image).await {
                    let name = match policy {
                        PullPolicy::Refresh(d) => {
                            format!("every_{}", humantime::format_duration(d))
                        }
                        _ => "always".to_owned(),
                    };
                    return Err(fail(
                        Phase::Build,
                        Some(service),
                        format!(
                            "image {image} could not be pulled, and pull_policy `{name}` \
                             wants a fresh pull: {e}"
                        ),
                    ));
                }
                self.ensure_image(service, image).await
            }
        }
    }

    /// An image named in the config must be on the host; it is pulled when it is not (where a
    /// registry is reachable).
    async fn ensure_image(&self, service: &str, image: &str) -> Result<String, DeployFailure> {
        if let Some(built_by_us) = docker::built_by_previewd(&self.docker, image).await {
            // An image previewd built holds some branch's code: a config must not borrow another
            // preview's (perhaps another repository's) build by naming it.
            if built_by_us {
                return Err(fail(
                    Phase::Config,
                    Some(service),
                    format!(
                        "image {image} was built by previewd for a preview; name a base image or use build:"
                    ),
                ));
            }
            return Ok(image.to_owned());
        }
        if let Err(e) = docker::pull_image(&self.docker, image).await {
            return Err(fail(
                Phase::Build,
                Some(service),
                format!("image {image} is not on this Docker host and could not be pulled: {e}"),
            ));
        }
        Ok(image.to_owned())
    }
}

/// Whether `daily`/`weekly`/`every_<duration>` pulls an image the host has: when Docker gives no
/// time for the host's copy, or that time is more than `max_age` before `now`. Compose decides
/// the same way from the image's `Created`; previewd also counts a later local tag, so an image
/// tagged here (a mirror, a retag) is as fresh as its tag.
fn refresh_due(
    local: Option<time::OffsetDateTime>,
    max_age: std::time::Duration,
    now: time::OffsetDateTime,
) -> bool {
    local.is_none_or(|t| now - t > max_age)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::OffsetDateTime;

    use super::refresh_due;

    #[test]
    fn a_refresh_policy_pulls_only_a_copy_older_than_its_age_or_of_unknown_age() {
        let now = OffsetDateTime::now_utc();
        let day = Duration::from_secs(24 * 3600);
        assert!(!refresh_due(Some(now), day, now));
        assert!(!refresh_due(
            Some(now - Duration::from_secs(23 * 3600)),
            day,
            now
        ));
        assert!(refresh_due(
            Some(now - Duration::from_secs(25 * 3600)),
            day,
            now
        ));
        assert!(refresh_due(None, day, now));
        // A clock behind the image's time is not a reason to pull.
        assert!(!refresh_due(Some(now + day), day, now));
    }
}
