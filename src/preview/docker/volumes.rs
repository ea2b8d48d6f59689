//! A preview's named volumes: made once per preview and compose volume name, labelled like the
//! preview's containers, kept across updates and removed with the preview. Found by label only.
//! Nothing here removes a volume of another instance or one a container still uses (Docker
//! refuses, and that refusal is reported, not forced).

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{ListVolumesOptions, RemoveVolumeOptions};

use super::{DockerError, instance_filter, is_not_found};
use crate::ids::Instance;

/// Makes the volume `name` unless it exists (then it is kept as it is, data and all).
pub async fn ensure_volume(
    docker: &Docker,
    name: &str,
    labels: HashMap<String, String>,
) -> Result<(), DockerError> {
    let req = VolumeCreateRequest {
        name: Some(name.to_owned()),
        driver: Some("local".to_owned()),
        labels: Some(labels),
        ..Default::default()
    };
    docker.create_volume(req).await?;
    Ok(())
}

/// The instance's named volumes: (name, labels).
pub async fn volumes(
    docker: &Docker,
    instance: &Instance,
) -> Result<Vec<(String, HashMap<String, String>)>, DockerError> {
    let opts = ListVolumesOptions {
        filters: Some(instance_filter(instance)),
    };
    Ok(docker
        .list_volumes(Some(opts))
        .await?
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| (v.name, v.labels))
        .collect())
}

/// Removes a volume; one already gone is not an error.
pub async fn remove_volume(docker: &Docker, name: &str) -> Result<(), DockerError> {
    match docker
        .remove_volume(name, None::<RemoveVolumeOptions>)
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
