//! `GET /` on the admin listener: one server-rendered page an operator keeps open (also on a
//! phone): every preview with its state, URL, source, age, TTL left and services, and the last
//! webhook deliveries with why each did or did not act. It refreshes itself; no script, no
//! build step. It must never be served on the public listener, and everything a repository or
//! a delivery controls is escaped before it reaches the page.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::Html;
use time::OffsetDateTime;

use super::AppState;
use super::deliveries::Record;
use crate::access::page::esc;
use crate::engine::{PreviewState, PreviewStatus, ServiceHealth};
use crate::forge::links::ForgeLinks;
use crate::reconciler::Kept;

/// What the page needs of the operator config.
pub struct PageSettings {
    pub instance: String,
    pub ttl: Duration,
    pub links: ForgeLinks,
    /// The previews the reconciler last found kept by the keep label: no ttl to show.
    pub kept: Kept,
}

/// Seconds between the page's own reloads.
const REFRESH_S: u32 = 10;

/// One health probe's patience on the page. Health is probed on each load, not taken from
/// the deployment's probe: that one is as old as the deployment, and a service that died
/// since must not show healthy. Probes never count as visits (the gateway's visit log skips
/// them) and sleeping previews are not probed, so an open page keeps nothing awake.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The whole list's patience, probes included; past it, the page shows labels only.
const LIST_TIMEOUT: Duration = Duration::from_secs(6);

pub async fn page(State(state): State<AppState>) -> Html<String> {
    let listed =
        tokio::time::timeout(LIST_TIMEOUT, state.engine.list_with_health(PROBE_TIMEOUT)).await;
    let previews = match listed {
        Ok(Ok(list)) => Ok(list),
        Ok(Err(e)) => Err(e.to_string()),
        // Probes past their time: the labels alone, health shown as not probed.
        Err(_) => match tokio::time::timeout(LIST_TIMEOUT, state.engine.list()).await {
            Ok(Ok(list)) => Ok(list),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("Docker did not answer in {LIST_TIMEOUT:?}")),
        },
    };
    let deliveries = state.deliveries.recent();
    Html(render(
        &state.page,
        previews,
        &deliveries,
        state.clock.now(),
    ))
}

/// A time to ready: tenths of a second below a minute (most are seconds), else [`short`].
fn took(d: Duration) -> String {
    if d < Duration::from_secs(60) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        short(d)
    }
}

/// `3d 4h`, `5h 12m`, `42m`, `9s`: the two largest units.
fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

const STYLE: &str = "body{font:15px/1.4 system-ui,sans-serif;margin:0;padding:1rem;color:#222;background:#f6f6f4}\
h1{font-size:1.2rem;margin:0 0 .2rem}h2{font-size:1rem;margin:1.4rem 0 .5rem}\
.muted{color:#666;font-size:.85rem}.cards{display:flex;flex-wrap:wrap;gap:.8rem}\
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.7rem .9rem;flex:1 1 20rem;max-width:100%;box-sizing:border-box}\
.card a{word-break:break-all}.state{font-weight:600;padding:0 .4rem;border-radius:4px}\
.running{background:#d8f3dc;color:#1b5e20}.failed{background:#fde2e1;color:#a4161a}\
.building,.stopped{background:#fff3cd;color:#7a5b00}.sleeping{background:#e3e8f4;color:#33487a}\
ul{margin:.3rem 0 0;padding-left:1.1rem}table{border-collapse:collapse;width:100%;background:#fff}\
td,th{border-bottom:1px solid #eee;padding:.3rem .4rem;text-align:left;font-size:.85rem;vertical-align:top}\
.wrap{overflow-x:auto}";

fn render(
    settings: &PageSettings,
    previews: Result<Vec<PreviewState>, String>,
    deliveries: &[Record],
    now: OffsetDateTime,
) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=refresh content={REFRESH_S}>\
         <link rel=icon href=\"data:,\"><title>previewd: {inst}</title><style>{STYLE}</style></head><body>\
         <h1>previewd: {inst}</h1><div class=muted>refreshes every {REFRESH_S}s · {at}</div>",
        inst = esc(&settings.instance),
        at = crate::clock::rfc3339(now),
    );
    match previews {
        Err(e) => {
            let _ = write!(h, "<h2>Previews</h2><p class=failed>{}</p>", esc(&e));
        }
        Ok(list) => {
            let _ = write!(h, "<h2>Previews ({})</h2>", list.len());
            if list.is_empty() {
                h.push_str("<p class=muted>none</p>");
            }
            h.push_str("<div class=cards>");
            for p in &list {
                preview_card(&mut h, settings, p, now);
            }
            h.push_str("</div>");
        }
    }
    let _ = write!(
        h,
        "<h2>Last deliveries ({})</h2><div class=wrap><table><tr><th>at</th><th>forge</th>\
         <th>event</th><th>answer</th><th>why</th></tr>",
        deliveries.len()
    );
    for d in deliveries.iter().take(50) {
        let event = match (&d.event, &d.action) {
            (Some(e), Some(a)) => format!("{e}.{a}"),
            (Some(e), None) => e.clone(),
            _ => "-".to_owned(),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td></tr>",
            esc(&d.at),
            esc(d.forge),
            esc(&event),
            d.status,
            esc(d.outcome),
            esc(&d.reason)
        );
    }
    h.push_str("</table></div></body></html>\n");
    h
}

fn preview_card(h: &mut String, settings: &PageSettings, p: &PreviewState, now: OffsetDateTime) {
    let status = p.status.to_string();
    let class = match p.status {
        PreviewStatus::Running => "running",
        PreviewStatus::Failed => "failed",
        PreviewStatus::Sleeping => "sleeping",
        PreviewStatus::Building | PreviewStatus::Stopped => "building",
    };
    let _ = write!(
        h,
        "<div class=card><div><span class=\"state {class}\">{}</span> <b>{}</b></div>\
         <div><a href=\"{url}\">{url}</a></div><div class=muted>{} · {}",
        esc(&status),
        esc(p.id.as_str()),
        esc(&p.key.repo),
        esc(&p.key.branch),
        url = esc(&p.url),
    );
    if let Some(n) = p.pr {
        match settings.links.pull_request(&p.key.forge, &p.key.repo, n) {
            Some(link) => {
                let _ = write!(h, " · <a href=\"{}\">#{n}</a>", esc(&link));
            }
            None => {
                let _ = write!(h, " · #{n}");
            }
        }
    }
    if let Some(sha) = &p.sha {
        let s = sha.to_string();
        let _ = write!(h, " · {}", esc(s.get(..7).unwrap_or(&s)));
    }
    h.push_str("</div>");
    let mut times = Vec::new();
    if let Some(age) = p.created.as_deref().and_then(|c| crate::clock::age(c, now)) {
        times.push(format!("deployed {} ago", short(age)));
    }
    if let Some(ready) = p.ready_in {
        times.push(format!("ready in {}", took(ready)));
    }
    let kept = settings.kept.lock().is_ok_and(|k| k.contains(&p.key));
    if kept {
        times.push("kept (keep label): no ttl".to_owned());
    } else if let Some(unseen) = p.unseen_for(now) {
        // From the latest of deployment, visit and sleep, as the reconciler counts.
        times.push(format!(
            "ttl left {}",
            short(settings.ttl.saturating_sub(unseen))
        ));
    }
    if !times.is_empty() {
        let _ = write!(h, "<div class=muted>{}</div>", esc(&times.join(" · ")));
    }
    h.push_str("<ul>");
    for s in &p.services {
        let _ = write!(
            h,
            "<li>{} <span class=muted>{} · {} · {}</span></li>",
            esc(&s.name),
            esc(s.route.as_deref().unwrap_or("-")),
            esc(&s.state),
            esc(&health(s, p.status))
        );
    }
    h.push_str("</ul></div>");
}

/// A service's health as a probe found it on this load; a service not probed says why.
fn health(s: &ServiceHealth, status: PreviewStatus) -> String {
    match (&s.route, s.latency_ms, s.status) {
        (None, _, _) => "internal".to_owned(),
        (Some(_), Some(ms), Some(code)) if s.healthy => format!("healthy ({code}, {ms} ms)"),
        (Some(_), Some(_), Some(code)) => format!("unhealthy ({code})"),
        (Some(_), Some(ms), None) => format!("no answer in {ms} ms"),
        (Some(_), None, _) if status == PreviewStatus::Sleeping => "asleep".to_owned(),
        (Some(_), None, _) => "not probed".to_owned(),
    }
}

/// The settings the page reads, from the config.
pub fn settings(config: &crate::config::Config) -> Arc<PageSettings> {
    Arc::new(PageSettings {
        instance: config.instance.to_string(),
        ttl: config.limits.ttl,
        links: ForgeLinks::from_config(config),
        kept: Kept::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_delivery_or_repository_controls_is_escaped() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        let settings = PageSettings {
            instance: "t".into(),
            ttl: Duration::from_secs(3600),
            links: ForgeLinks::default(),
            kept: Kept::default(),
        };
        let record = Record {
            forge: "github",
            delivery: None,
            event: Some("<img src=x onerror=alert(1)>".into()),
            action: None,
            status: 400,
            outcome: "invalid",
            reason: "<b>bad</b>".into(),
            at: "2026-12-07T00:00:00Z".into(),
        };
        let page = render(
            &settings,
            Ok(Vec::new()),
            &[record],
            OffsetDateTime::now_utc(),
        );
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<b>bad"), "{page}");
        assert!(page.contains("&lt;b&gt;bad"), "{page}");
    }

    /// A preview its PR keeps (the keep label) shows no ttl; the others' counts from the
    /// latest of deployment, visit and sleep.
    #[test]
    fn a_kept_preview_shows_no_ttl_and_a_visit_restarts_it() {
        let now = OffsetDateTime::now_utc();
        let at = |ago: u64| crate::clock::rfc3339(now - Duration::from_secs(ago));
        let preview = |id: &str, branch: &str| PreviewState {
            id: crate::ids::PreviewId::parse(id).expect("an id"),
            url: format!("http://{id}.localhost:8000"),
            key: crate::engine::PreviewKey {
                forge: "github".into(),
                repo: "acme/app".into(),
                branch: branch.into(),
            },
            sha: None,
            pr: Some(7),
            status: PreviewStatus::Running,
            created: Some(at(5 * 3600)),
            services: Vec::new(),
            egress: None,
            asleep: None,
            visited: Some(at(3600)),
            access: None,
            password: None,
            ready_in: Some(Duration::from_millis(4_250)),
        };
        let settings = PageSettings {
            instance: "t".into(),
            ttl: Duration::from_secs(72 * 3600),
            links: ForgeLinks::default(),
            kept: Kept::default(),
        };
        let kept = preview("kept000001", "keep-me");
        if let Ok(mut k) = settings.kept.lock() {
            k.insert(kept.key.clone());
        }
        let list = vec![kept, preview("other00001", "other")];
        let page = render(&settings, Ok(list), &[], now);
        let card = |id: &str| {
            page.split("class=card")
                .find(|c| c.contains(id))
                .unwrap_or_default()
                .to_owned()
        };
        let kept = card("kept000001");
        assert!(kept.contains("kept (keep label): no ttl"), "{kept}");
        assert!(!kept.contains("ttl left"), "{kept}");
        let other = card("other00001");
        assert!(other.contains("deployed 5h 0m ago"), "{other}");
        assert!(other.contains("ready in 4.2s"), "{other}");
        assert!(other.contains("ttl left 2d 23h"), "{other}");
    }

    #[test]
    fn durations_read_short() {
        assert_eq!(short(Duration::from_secs(9)), "9s");
        assert_eq!(short(Duration::from_secs(42 * 60)), "42m");
        assert_eq!(short(Duration::from_secs(5 * 3600 + 12 * 60)), "5h 12m");
        assert_eq!(short(Duration::from_secs(3 * 86_400 + 4 * 3600)), "3d 4h");
    }
}
