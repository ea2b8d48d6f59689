//! The rules of an instance's egress policy, as `iptables-restore` input: a pure function of
//! the preview networks (bridge and mode), the allow-list and the host's name servers. Nothing
//! here runs a command or reads the host.
//!
//! Every rule lives in the instance's own chains (`PVD-<hash>-*`) and matches a preview
//! network's bridge (`-i br-…`), so nothing here can touch traffic of another instance, of
//! another program's containers or of the host itself. Two hooks lead in: `FWD` from Docker's
//! `DOCKER-USER` (traffic routed out of the bridge) and `IN` from `INPUT` (traffic to any of
//! the host's own addresses, which never passes `FORWARD`).

use std::fmt::Write;
use std::net::IpAddr;

use crate::config::egress::{Allow, Mode};

/// The address families, each with its own iptables binary and tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    pub fn iptables(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    pub fn restore(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }

    fn holds(self, addr: IpAddr) -> bool {
        addr.is_ipv4() == (self == Family::V4)
    }

    fn unreachable(self) -> &'static str {
        match self {
            Family::V4 => "icmp-port-unreachable",
            Family::V6 => "icmp6-port-unreachable",
        }
    }

    /// What `public` refuses: private, shared (CGNAT), loopback, link-local (the metadata
    /// address 169.254.169.254 and AWS's fd00:ec2::254 among them), unspecified and
    /// multicast ranges. Every other preview's network is in one of them too.
    pub fn blocked(self) -> &'static [&'static str] {
        match self {
            Family::V4 => &[
                "0.0.0.0/8",
                "10.0.0.0/8",
                "100.64.0.0/10",
                "127.0.0.0/8",
                "169.254.0.0/16",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "224.0.0.0/4",
            ],
            Family::V6 => &["::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8"],
        }
    }
}

/// A preview network as the firewall sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Net {
    /// The Linux bridge of the Docker network (`br-<12 hex digits of its id>` by default).
    pub bridge: String,
    pub mode: Mode,
}

/// The instance's chain names: `PVD-<8 hex digits>-<role>`, at most 17 characters (iptables
/// allows 28), the hash of the instance keeping two instances on one host apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chains {
    prefix: String,
}

/// The chains' roles: the two entry points, then one per verdict path.
const FWD: &str = "FWD";
const IN: &str = "IN";
const PUBLIC: &str = "PUB";
const NONE: &str = "NONE";
const HOST: &str = "HOST";
const REJECT: &str = "REJ";
const ROLES: [&str; 6] = [FWD, IN, PUBLIC, NONE, HOST, REJECT];

impl Chains {
    pub fn new(instance: &str) -> Chains {
        use sha2::Digest;
        let hash = sha2::Sha256::digest(instance.as_bytes());
        Chains {
            prefix: format!("PVD-{}-", hex::encode(&hash[..4])),
        }
    }

    pub fn name(&self, role: &str) -> String {
        format!("{}{role}", self.prefix)
    }

    /// Every chain of the instance.
    pub fn all(&self) -> Vec<String> {
        ROLES.iter().map(|r| self.name(r)).collect()
    }

    /// The chain jumped to from Docker's `DOCKER-USER` (or `FORWARD`).
    pub fn forward(&self) -> String {
        self.name(FWD)
    }

    /// The chain jumped to from `INPUT`.
    pub fn input(&self) -> String {
        self.name(IN)
    }

    /// What every line of the instance's rules starts with in `iptables -S`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// What the rules are made of, besides the networks.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub allow: &'a [Allow],
    /// The resolvers Docker's embedded DNS forwards to: open on port 53 in `public`, or
    /// names outside the preview would not resolve.
    pub nameservers: &'a [IpAddr],
    /// The filter table as `iptables -S` lists it now: where the jumps into the instance's
    /// chains are, so that they can be put first.
    pub listing: &'a str,
}

/// Whether any network needs a rule: `all` networks need none, and without any other the
/// instance's chains and jumps are removed instead.
pub fn filtered(nets: &[Net]) -> bool {
    nets.iter().any(|n| n.mode != Mode::All)
}

/// `iptables-restore --noflush` input that replaces the instance's chains of `family` whole
/// (a declared chain is flushed first) and puts the jumps into them first in their hooks, in
/// one atomic replacement.
pub fn restore_input(family: Family, chains: &Chains, nets: &[Net], inputs: Inputs<'_>) -> String {
    let filtered: Vec<&Net> = nets.iter().filter(|n| n.mode != Mode::All).collect();
    let c = |role: &str| chains.name(role);
    let mut out = String::from("*filter\n");
    for name in chains.all() {
        let _ = writeln!(out, ":{name} - [0:0]");
    }
    let mut rule = |chain: &str, spec: &str| {
        let _ = writeln!(out, "-A {} {spec}", c(chain));
    };
    // A refusal is a refused connection at once (a reset, or port unreachable), never a
    // silent drop the preview's code would wait out; the kernel log names the instance.
    rule(
        REJECT,
        &format!(
            "-m limit --limit 20/min --limit-burst 10 -j LOG --log-prefix \"{}egress refused: \"",
            chains.prefix()
        ),
    );
    rule(REJECT, "-p tcp -j REJECT --reject-with tcp-reset");
    rule(
        REJECT,
        &format!("-j REJECT --reject-with {}", family.unreachable()),
    );
    let allowed: Vec<&Allow> = inputs
        .allow
        .iter()
        .filter(|a| family.holds(a.addr))
        .collect();
    for chain in [NONE, PUBLIC, HOST] {
        rule(
            chain,
            "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        );
        for a in &allowed {
            for spec in allow_specs(a) {
                rule(chain, &format!("{spec} -j RETURN"));
            }
        }
    }
    for ns in inputs.nameservers.iter().filter(|a| family.holds(**a)) {
        for proto in ["udp", "tcp"] {
            rule(PUBLIC, &format!("-d {ns} -p {proto} --dport 53 -j RETURN"));
        }
    }
    for range in family.blocked() {
        rule(PUBLIC, &format!("-d {range} -j {}", c(REJECT)));
    }
    rule(NONE, &format!("-j {}", c(REJECT)));
    rule(HOST, &format!("-j {}", c(REJECT)));
    for net in filtered {
        let br = &net.bridge;
        // The preview's own services and the gateway share the bridge (bridged traffic passes
        // `FORWARD` too, with br_netfilter).
        rule(FWD, &format!("-i {br} -o {br} -j RETURN"));
        let verdict = if net.mode == Mode::None { NONE } else { PUBLIC };
        rule(FWD, &format!("-i {br} -j {}", c(verdict)));
        if net.mode == Mode::Public {
            for ns in inputs.nameservers.iter().filter(|a| family.holds(**a)) {
                for proto in ["udp", "tcp"] {
                    rule(
                        IN,
                        &format!("-i {br} -d {ns} -p {proto} --dport 53 -j RETURN"),
                    );
                }
            }
        }
        rule(IN, &format!("-i {br} -j {}", c(HOST)));
    }
    out.push_str(&hook_moves(chains, inputs.listing));
    out.push_str("COMMIT\n");
    out
}

/// The hooks that lead into the instance's entry chains, with the chain each jumps to.
/// `DOCKER-USER` is Docker's place for an operator's rules, but Docker deletes its own
/// `FORWARD -j DOCKER-USER` jump and inserts it again, in two commands, each time any network
/// is created on the host: in between, a preview's packets would meet only Docker's `ACCEPT`s.
/// So the forward chain is also jumped to from `FORWARD` itself, as its first rule. Docker
/// inserts a new network's rules above it, but they match only that network's bridge, and
/// [`hook_moves`] puts the jump first again once a preview's network exists (before any of its
/// containers starts).
fn hooks(chains: &Chains, listing: &str) -> Vec<(&'static str, String)> {
    let mut hooks = vec![("FORWARD", chains.forward()), ("INPUT", chains.input())];
    if listing.lines().any(|l| l.trim() == "-N DOCKER-USER") {
        hooks.push(("DOCKER-USER", chains.forward()));
    }
    hooks
}

/// The restore commands that make the jump into each entry chain the first rule of its hook, exactly once.
/// `listing` is `iptables -S` of the filter table. Deleting and inserting in the same restore
/// is one atomic replacement, so a jump that moves is never missing meanwhile.
fn hook_moves(chains: &Chains, listing: &str) -> String {
    let mut out = String::new();
    for (hook, chain) in hooks(chains, listing) {
        let prefix = format!("-A {hook} ");
        let jump = format!("-A {hook} -j {chain}");
        let rules: Vec<&str> = listing
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with(&prefix))
            .collect();
        let present = rules.iter().filter(|l| **l == jump).count();
        if present == 1 && rules.first() == Some(&jump.as_str()) {
            continue;
        }
        for _ in 0..present {
            let _ = writeln!(out, "-D {hook} -j {chain}");
        }
        let _ = writeln!(out, "-I {hook} 1 -j {chain}");
    }
    out
}

/// The match of an allow-list entry: the destination, and with a port one rule per protocol.
fn allow_specs(a: &Allow) -> Vec<String> {
    match a.port {
        None => vec![format!("-d {}", a.cidr())],
        Some(p) => ["tcp", "udp"]
            .iter()
            .map(|proto| format!("-d {} -p {proto} --dport {p}", a.cidr()))
            .collect(),
    }
}

#[cfg(test)]
mod tests;
