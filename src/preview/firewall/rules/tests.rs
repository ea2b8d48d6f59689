use super::*;

fn chains() -> Chains {
    Chains::new("previewd")
}

fn net(bridge: &str, mode: Mode) -> Net {
    Net {
        bridge: bridge.to_owned(),
        mode,
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn chain_names_are_short_and_differ_between_instances() {
    let a = Chains::new("previewd");
    let b = Chains::new("previewd2");
    assert_ne!(a, b);
    for name in a.all() {
        assert!(name.len() <= 28, "{name}");
        assert!(name.starts_with("PVD-"), "{name}");
    }
}

#[test]
fn only_all_networks_need_no_rules() {
    let nets = [net("br-aaaaaaaaaaaa", Mode::All)];
    assert!(!filtered(&nets));
    assert!(!filtered(&[]));
    assert!(filtered(&[
        nets[0].clone(),
        net("br-bbbbbbbbbbbb", Mode::None)
    ]));
}

#[test]
fn public_refuses_private_metadata_and_host_ranges_and_keeps_dns() {
    let c = chains();
    let ns: [IpAddr; 2] = [
        "10.255.255.53".parse().unwrap(),
        "fd00::53".parse().unwrap(),
    ];
    let nets = [
        net("br-aaaaaaaaaaaa", Mode::Public),
        net("br-bbbbbbbbbbbb", Mode::All),
    ];
    let inputs = Inputs {
        allow: &[],
        nameservers: &ns,
        listing: "",
    };
    let v4 = restore_input(Family::V4, &c, &nets, inputs);
    let l = lines(&v4);
    let p = c.prefix();
    assert!(
        l.contains(&format!("-A {p}FWD -i br-aaaaaaaaaaaa -o br-aaaaaaaaaaaa -j RETURN").as_str())
    );
    assert!(l.contains(&format!("-A {p}FWD -i br-aaaaaaaaaaaa -j {p}PUB").as_str()));
    assert!(l.contains(&format!("-A {p}IN -i br-aaaaaaaaaaaa -j {p}HOST").as_str()));
    for range in [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "100.64.0.0/10",
    ] {
        assert!(
            l.contains(&format!("-A {p}PUB -d {range} -j {p}REJ").as_str()),
            "{range}"
        );
    }
    // DNS to the resolvers comes before the private ranges that hold 10.255.255.53.
    let dns = l
        .iter()
        .position(|x| x.contains("-d 10.255.255.53 -p udp --dport 53 -j RETURN"));
    let private = l.iter().position(|x| x.contains("-d 10.0.0.0/8"));
    assert!(dns.expect("dns rule") < private.expect("private rule"));
    // The network in `all` has no rule; nothing of IPv6 leaks into the IPv4 rules.
    assert!(!v4.contains("br-bbbbbbbbbbbb"));
    assert!(!v4.contains("fd00::53"));
    assert!(v4.ends_with("COMMIT\n"));
    let v6 = restore_input(Family::V6, &c, &nets, inputs);
    assert!(v6.contains(&format!("-A {p}PUB -d fc00::/7 -j {p}REJ")));
    assert!(v6.contains(&format!("-A {p}PUB -d fe80::/10 -j {p}REJ")));
    assert!(v6.contains("icmp6-port-unreachable"));
    assert!(!v6.contains("10.255.255.53"));
}

#[test]
fn none_refuses_everything_but_the_allow_list_and_the_own_bridge() {
    let c = chains();
    let p = c.prefix();
    let allow = [
        Allow::parse("10.1.2.3:5432").unwrap(),
        Allow::parse("192.168.7.0/24").unwrap(),
        Allow::parse("[fd00::5]:80").unwrap(),
    ];
    let nets = [net("br-cccccccccccc", Mode::None)];
    let inputs = Inputs {
        allow: &allow,
        nameservers: &["10.255.255.53".parse().unwrap()],
        listing: "",
    };
    let v4 = restore_input(Family::V4, &c, &nets, inputs);
    let l = lines(&v4);
    assert!(l.contains(&format!("-A {p}FWD -i br-cccccccccccc -j {p}NONE").as_str()));
    for chain in ["NONE", "PUB", "HOST"] {
        assert!(l.contains(
            &format!("-A {p}{chain} -d 10.1.2.3/32 -p tcp --dport 5432 -j RETURN").as_str()
        ));
        assert!(l.contains(&format!("-A {p}{chain} -d 192.168.7.0/24 -j RETURN").as_str()));
    }
    // The allow-list comes before the final refusal.
    let allow_at = l
        .iter()
        .position(|x| x.contains(&format!("{p}NONE -d 10.1.2.3/32")));
    let refuse_at = l.iter().position(|x| *x == format!("-A {p}NONE -j {p}REJ"));
    assert!(allow_at.expect("allow") < refuse_at.expect("refuse"));
    // `none` never opens DNS to the resolvers (a way out by DNS queries).
    assert!(
        !l.iter()
            .any(|x| x.contains("-i br-cccccccccccc -d 10.255.255.53"))
    );
    assert!(!v4.contains("fd00::5"));
}

#[test]
fn the_jumps_are_put_first_in_their_hooks_exactly_once() {
    let c = chains();
    let (fwd, input) = (c.forward(), c.input());
    // Docker has just put its own jump above ours, and a new network's rules too.
    let listing = format!(
        "-P FORWARD DROP\n-N DOCKER-USER\n-N {fwd}\n-A FORWARD -j DOCKER-USER\n\
         -A FORWARD -i br-new ! -o br-new -j ACCEPT\n-A FORWARD -j {fwd}\n\
         -A INPUT -j {input}\n-A DOCKER-USER -j {fwd}\n-A DOCKER-USER -j {fwd}\n\
         -A DOCKER-USER -j RETURN\n"
    );
    assert_eq!(
        lines(&hook_moves(&c, &listing)),
        [
            format!("-D FORWARD -j {fwd}"),
            format!("-I FORWARD 1 -j {fwd}"),
            format!("-D DOCKER-USER -j {fwd}"),
            format!("-D DOCKER-USER -j {fwd}"),
            format!("-I DOCKER-USER 1 -j {fwd}"),
        ]
    );
    // In place: nothing to move. Without Docker's chain, only the kernel's hooks.
    let settled = format!("-A FORWARD -j {fwd}\n-A FORWARD -j DOCKER-USER\n-A INPUT -j {input}\n");
    assert_eq!(hook_moves(&c, &settled), "");
    assert_eq!(
        lines(&hook_moves(&c, "-P INPUT ACCEPT\n")),
        [
            format!("-I FORWARD 1 -j {fwd}"),
            format!("-I INPUT 1 -j {input}")
        ]
    );
    // The moves go into the same restore as the chains, before its commit.
    let nets = [net("br-cccccccccccc", Mode::None)];
    let inputs = Inputs {
        allow: &[],
        nameservers: &[],
        listing: &listing,
    };
    let text = restore_input(Family::V4, &c, &nets, inputs);
    assert!(
        text.ends_with(&format!("-I DOCKER-USER 1 -j {fwd}\nCOMMIT\n")),
        "{text}"
    );
}
