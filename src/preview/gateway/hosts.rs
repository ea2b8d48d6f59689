//! The host names a preview answers at: its live generation's, and a generation's that is
//! health-checked before the switch. The route table ([`super::routes`]) and the manager both
//! name hosts through here, so what is routed and what is checked or reported agree. Pure string
//! work: nothing here reads labels, touches the disk or talks to Docker.

/// The host name of a preview's live generation.
pub fn live_host(id: &str, domain: &str) -> String {
    format!("{id}.{domain}")
}

/// The host name under which a generation that is not live yet is health-checked before the
/// switch.
pub fn staging_host(id: &str, generation: u64, domain: &str) -> String {
    format!("{id}-{generation}.{domain}")
}

/// The host of a compose service that answers at a host of its own: `<id>-<service>`. Service
/// names on own hosts start with a letter, so they never meet a staging host `<id>-<digits>`.
pub fn service_host(id: &str, service: &str, domain: &str) -> String {
    format!("{id}-{service}.{domain}")
}

/// [`service_host`] of a generation that is not live yet.
pub fn staging_service_host(id: &str, generation: u64, service: &str, domain: &str) -> String {
    format!("{id}-{generation}-{service}.{domain}")
}

/// The URL of a service on a host of its own, from the preview's URL (whatever its form: the
/// id is the first label of its host).
pub fn service_url(preview_url: &str, id: &str, service: &str) -> String {
    preview_url.replacen(id, &format!("{id}-{service}"), 1)
}
