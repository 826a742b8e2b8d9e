//! What a person looks at: the status page at `/`, a page per target, and an SVG
//! badge per target. Server-rendered HTML, no JavaScript, no external assets; the
//! pages refresh themselves. Every figure comes from the replicated, quorum-signed
//! log (and this node's own probes, labelled as such), read from the stats cache.

use std::fmt::Write;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::node::context::NodeContext;
use crate::prober::{Damper, Health};
use crate::stats::TargetStats;
use crate::timefmt::{ago, short, utc};

/// Seconds between automatic refreshes of a page.
const REFRESH_SECS: u32 = 10;

/// `<`, `>`, `&`, `"`, `'` escaped: addresses and causes come from configuration
/// and the network.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A URL path segment for an address.
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// `99.98 %`, or `—` when nothing was monitored.
fn pct(r: Option<f64>) -> String {
    match r {
        Some(r) if (0.99995..1.0).contains(&r) => "99.99 %".into(),
        Some(r) => format!("{:.2} %", r * 100.0),
        None => "—".into(),
    }
}

fn state_class(state: &str) -> &'static str {
    match state {
        "up" => "up",
        "down" => "down",
        _ => "unknown",
    }
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem;color:#1c2330;background:#fafbfc}
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
.meta{color:#5a6472;font-size:.9rem;margin-bottom:1rem}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0001}
th,td{text-align:left;padding:.45rem .6rem;border-bottom:1px solid #e6e9ee;font-size:.92rem;vertical-align:top}
th{background:#f1f3f6;font-weight:600}
.dot{display:inline-block;width:.7rem;height:.7rem;border-radius:50%;margin-right:.4rem;vertical-align:middle}
.dot.up{background:#2da44e}.dot.down{background:#cf222e}.dot.unknown{background:#8c959f}
.state.up{color:#1a7f37}.state.down{color:#cf222e;font-weight:600}.state.unknown{color:#57606a}
.fresh{color:#1a7f37}.stale{color:#cf222e;font-weight:600}
.muted{color:#6e7781;font-size:.85rem}
a{color:#0969da;text-decoration:none}a:hover{text-decoration:underline}
code{font-size:.85rem}
";

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}\
         <p class=\"muted\">Every state and figure here comes from the replicated log: each change was \
         signed by a stake quorum of monitoring nodes and ordered by Zellular. \
         “This node's probe” is this node's own view. The page refreshes every {REFRESH_SECS} s.</p>\
         </body></html>\n",
        esc(title)
    ))
}

/// The replica's line: position, `log_time`, freshness.
fn replica_line(ctx: &NodeContext, now: i64) -> String {
    let fresh = match ctx.status.check() {
        Ok(f) => format!(
            "<span class=\"fresh\">fresh</span> (log time {} behind, settled up to {})",
            short(f.lag),
            utc(f.settled)
        ),
        Err(why) => format!("<span class=\"stale\">stale</span>: {}", esc(&why.0)),
    };
    let lt = ctx.status.log_time();
    format!(
        "<div class=\"meta\">Node <b>{}</b> · Zellular index {} · log time {} · {fresh}</div>",
        esc(&ctx.node_id),
        ctx.status.index(),
        if lt > 0 {
            format!("{} UTC ({})", utc(lt), ago(lt, now))
        } else {
            "none yet".into()
        },
    )
}

/// This node's own view of a target: its damped state, last probe, cause.
fn own_view(d: Option<&Damper>) -> String {
    let Some(d) = d else { return "—".into() };
    if d.last_probe_at == 0 {
        return "<span class=\"muted\">not probed yet</span>".into();
    }
    let mut s = format!(
        "<span class=\"state {}\">{}</span> <span class=\"muted\">{:.0} ms</span>",
        d.state,
        d.state,
        d.last_latency_seconds * 1000.0
    );
    match &d.last {
        Some(Health::Down { cause }) => {
            let _ = write!(
                s,
                "<br><span class=\"state down\">{}</span>",
                esc(&cause.to_string())
            );
        }
        Some(Health::Degraded) => {
            s.push_str("<br><span class=\"muted\">HTTP 206 (degraded)</span>")
        }
        _ => {
            if let (Some(c), Some(at)) = (&d.last_failure, d.last_failure_at) {
                let _ = write!(
                    s,
                    "<br><span class=\"muted\">last failure: {} ({} UTC)</span>",
                    esc(&c.to_string()),
                    utc(at)
                );
            }
        }
    }
    s
}

fn outages_cell(t: &TargetStats, now: i64, n: usize) -> String {
    if t.recent_outages.is_empty() {
        return "<span class=\"muted\">none</span>".into();
    }
    let mut s = String::new();
    for o in t.recent_outages.iter().take(n) {
        let dur = o.end.unwrap_or(now) - o.start;
        let _ = write!(
            s,
            "{} UTC, {}{}<br>",
            utc(o.start),
            short(dur),
            if o.end.is_none() { " (ongoing)" } else { "" }
        );
    }
    s
}

/// How long a page waits for a starting node's first figures.
const FIRST_FIGURES: std::time::Duration = std::time::Duration::from_secs(5);

/// `GET /`: every target.
pub async fn index(State(ctx): State<NodeContext>) -> Html<String> {
    let now = ctx.clock.now();
    let view = ctx.prober.view();
    let mut rows = String::new();
    ctx.stats.computed(FIRST_FIGURES).await;
    let targets = ctx.stats.all();
    for t in &targets {
        let since = match t.since {
            Some(s) => format!(
                "{} <span class=\"muted\" title=\"{} UTC\">({})</span>",
                ago(s, now),
                utc(s),
                utc(s)
            ),
            None => "<span class=\"muted\">not monitored yet</span>".into(),
        };
        let _ = write!(
            rows,
            "<tr class=\"target\" data-address=\"{a}\" data-state=\"{st}\">\
             <td><span class=\"dot {cls}\"></span><a href=\"/targets/{s}\">{a}</a></td>\
             <td class=\"state {cls}\">{st}</td><td>{since}</td><td>{own}</td>\
             <td>{h24}</td><td>{d7}</td><td>{ep}</td><td>{out}</td>\
             <td><a href=\"/badge/{s}.svg\"><img src=\"/badge/{s}.svg\" alt=\"badge of {a}\" height=\"20\"></a></td></tr>",
            a = esc(&t.address),
            s = seg(&t.address),
            st = t.state,
            cls = state_class(t.state),
            own = own_view(view.get(&t.address)),
            h24 = pct(t.uptime_24h),
            d7 = pct(t.uptime_7d),
            ep = pct(t.uptime_epoch),
            out = outages_cell(t, now, 3),
        );
    }
    let up = targets.iter().filter(|t| t.state == "up").count();
    let down = targets.iter().filter(|t| t.state == "down").count();
    let body = format!(
        "<h1>livenessd status</h1>{}\
         <div class=\"meta\">{} targets: <span class=\"state up\">{up} up</span>, \
         <span class=\"state down\">{down} down</span>, {} unknown · now {} UTC</div>\
         <table><thead><tr><th>Target</th><th>State (quorum)</th><th>Since</th><th>This node's probe</th>\
         <th>Uptime 24 h</th><th>7 d</th><th>Epoch</th><th>Recent outages</th><th>Badge</th></tr></thead>\
         <tbody>{rows}</tbody></table>\
         <p class=\"muted\">JSON: <a href=\"/v1/targets?pretty\">/v1/targets</a> · \
         <a href=\"/v1/position?pretty\">/v1/position</a> · <a href=\"/ready\">/ready</a> · \
         <a href=\"/metrics\">/metrics</a></p>",
        replica_line(&ctx, now),
        targets.len(),
        targets.len() - up - down,
        utc(now),
    );
    page("livenessd status", &body)
}

/// `GET /targets/{address}`: one target in detail.
pub async fn target(State(ctx): State<NodeContext>, Path(address): Path<String>) -> Response {
    ctx.stats.computed(FIRST_FIGURES).await;
    let Some(t) = ctx.stats.get(&address) else {
        return (
            StatusCode::NOT_FOUND,
            page(
                "not found",
                "<h1>No such target</h1><p><a href=\"/\">All targets</a></p>",
            ),
        )
            .into_response();
    };
    let now = ctx.clock.now();
    let view = ctx.prober.view();
    let a = esc(&t.address);
    let mut outages = String::new();
    for o in &t.recent_outages {
        let _ = write!(
            outages,
            "<tr><td>{} UTC</td><td>{}</td><td>{}</td></tr>",
            utc(o.start),
            o.end
                .map_or("ongoing".into(), |e| format!("{} UTC", utc(e))),
            short(o.end.unwrap_or(now) - o.start)
        );
    }
    if outages.is_empty() {
        outages = "<tr><td colspan=\"3\" class=\"muted\">none</td></tr>".into();
    }
    let body = format!(
        "<p><a href=\"/\">← all targets</a></p>\
         <h1><span class=\"dot {cls}\"></span>{a} is <span class=\"state {cls}\" id=\"state\">{st}</span></h1>{replica}\
         <table><tbody>\
         <tr><th>Since</th><td>{since}</td></tr>\
         <tr><th>Monitored since</th><td>{mon}</td></tr>\
         <tr><th>This node's probe</th><td>{own}</td></tr>\
         <tr><th>Uptime</th><td>24 h {h24} · 7 d {d7} · this epoch {ep}</td></tr>\
         <tr><th>Badge</th><td><img src=\"/badge/{s}.svg\" alt=\"badge\" height=\"20\"> \
         <code>&lt;img src=\"…/badge/{s}.svg\"&gt;</code></td></tr>\
         </tbody></table>\
         <h2>Recent outages</h2><table><thead><tr><th>Start</th><th>End</th><th>Duration</th></tr></thead>\
         <tbody>{outages}</tbody></table>\
         <p class=\"muted\">JSON: <a href=\"/v1/intervals?address={s}&amp;pretty\">interval table</a> · \
         <a href=\"/v1/events?address={s}&amp;pretty\">events with their quorum proofs</a> · \
         <a href=\"/v1/epochs/current?address={s}&amp;pretty\">this epoch</a></p>",
        cls = state_class(t.state),
        st = t.state,
        s = seg(&t.address),
        replica = replica_line(&ctx, now),
        since = t.since.map_or("—".into(), |s| format!("{} UTC ({})", utc(s), ago(s, now))),
        mon = t.monitored_since.map_or("not yet".into(), |s| format!("{} UTC", utc(s))),
        own = own_view(view.get(&t.address)),
        h24 = pct(t.uptime_24h),
        d7 = pct(t.uptime_7d),
        ep = pct(t.uptime_epoch),
    );
    page(&format!("{} — livenessd", t.address), &body).into_response()
}

/// The badge of a state and an uptime: `livenessd | up 99.98 %`.
pub fn badge_svg(label: &str, state: &str, uptime: Option<f64>) -> String {
    let value = match uptime {
        Some(r) => format!("{state} {}", pct(Some(r)).replace(' ', "")),
        None => state.to_owned(),
    };
    let color = match state {
        "up" => "#2da44e",
        "down" => "#cf222e",
        _ => "#8c959f",
    };
    // Widths from a fixed per-character estimate (no font metrics needed).
    let w = |s: &str| 10 + 7 * s.chars().count();
    let (lw, vw) = (w(label), w(&value));
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{tw}\" height=\"20\" role=\"img\" aria-label=\"{l}: {v}\">\
         <title>{l}: {v}</title>\
         <rect width=\"{lw}\" height=\"20\" fill=\"#555\"/>\
         <rect x=\"{lw}\" width=\"{vw}\" height=\"20\" fill=\"{color}\"/>\
         <g fill=\"#fff\" font-family=\"Verdana,DejaVu Sans,sans-serif\" font-size=\"11\">\
         <text x=\"5\" y=\"14\">{l}</text><text x=\"{vx}\" y=\"14\">{v}</text></g></svg>",
        tw = lw + vw,
        l = esc(label),
        v = esc(&value),
        vx = lw + 5,
    )
}

/// `GET /badge/{address}.svg`.
pub async fn badge(State(ctx): State<NodeContext>, Path(file): Path<String>) -> Response {
    let Some(address) = file.strip_suffix(".svg") else {
        return super::Error::NotFound("badges are /badge/ADDRESS.svg".into()).into_response();
    };
    ctx.stats.computed(FIRST_FIGURES).await;
    let Some(t) = ctx.stats.get(address) else {
        return super::Error::NotFound("Address not found".into()).into_response();
    };
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "max-age=10"),
        ],
        badge_svg(address, t.state, t.uptime_24h),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_outside_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(seg("0x<1>/a"), "0x%3C1%3E%2Fa");
        let svg = badge_svg("<evil>", "down", Some(0.5));
        assert!(svg.contains("&lt;evil&gt;") && !svg.contains("<evil>"));
        assert_eq!(pct(Some(0.99999)), "99.99 %", "never rounded up to 100 %");
        assert_eq!(pct(Some(1.0)), "100.00 %");
        assert_eq!(pct(None), "—");
    }
}
