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
