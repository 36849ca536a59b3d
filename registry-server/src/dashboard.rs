//! The dashboard page at `/` and the Prometheus text at `/metrics`.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use http::header::CONTENT_TYPE;
use palisade_registry_client::model::InstanceStatus;

use crate::http::Shared;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn page(State(shared): State<Arc<Shared>>) -> Html<String> {
    let (apps, sp, renewals) = {
        let mut r = shared.registry();
        (r.applications(), r.self_preservation(), r.renewals_total())
    };
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Palisade registry</title>\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:4px 8px}.UP{color:#070}.DOWN,.OUT_OF_SERVICE{color:#a00}</style>\
         </head><body><h1>Palisade registry</h1>",
    );
    let _ = write!(
        out,
        "<h2>Status</h2><table><tr><th>instances</th><td>{}</td></tr>\
         <tr><th>renewals in the last whole minute</th><td>{}</td></tr>\
         <tr><th>renewal threshold per minute</th><td>{}</td></tr>\
         <tr><th>expected clients</th><td>{}</td></tr>\
         <tr><th>renewals since start</th><td>{}</td></tr>\
         <tr><th>self-preservation</th><td>{}</td></tr></table>",
        apps.instances().count(),
        sp.renewals_last_minute,
        sp.renewals_threshold,
        sp.expected_clients,
        renewals,
        if sp.lease_expiration_enabled {
            "inactive (expired leases are evicted)"
        } else {
            "ACTIVE: renewals are below the threshold, expired leases are kept"
        }
    );
    out.push_str(
        "<h2>Applications</h2><table><tr><th>application</th><th>instance</th><th>status</th>\
         <th>address</th><th>vip</th></tr>",
    );
    for app in &apps.applications {
        for i in &app.instances {
            let port = i.port.map(|p| p.port.to_string()).unwrap_or_default();
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}:{}</td><td>{}</td></tr>",
                escape(&app.name),
                escape(i.id()),
                i.status,
                i.status,
                escape(&i.ip_addr),
                port,
                escape(i.vip_address.as_deref().unwrap_or(""))
            );
        }
    }
    out.push_str("</table></body></html>");
    Html(out)
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let (apps, sp, renewals) = {
        let mut r = shared.registry();
        (r.applications(), r.self_preservation(), r.renewals_total())
    };
    let mut out = String::new();
    out.push_str("# HELP palisade_registry_instances Registered instances by application and status.\n# TYPE palisade_registry_instances gauge\n");
    for app in &apps.applications {
        for status in InstanceStatus::ALL {
            let n = app.instances.iter().filter(|i| i.status == status).count();
            if n > 0 {
                let _ = writeln!(
                    out,
                    "palisade_registry_instances{{app=\"{}\",status=\"{}\"}} {n}",
                    label(&app.name),
                    status
                );
            }
        }
    }
    let _ = write!(
        out,
        "# HELP palisade_registry_renewals_total Heartbeats accepted since start.\n# TYPE palisade_registry_renewals_total counter\npalisade_registry_renewals_total {renewals}\n\
         # HELP palisade_registry_renewals_last_minute Heartbeats in the last whole minute.\n# TYPE palisade_registry_renewals_last_minute gauge\npalisade_registry_renewals_last_minute {}\n\
         # HELP palisade_registry_renewals_threshold Renewals per minute under which self-preservation starts.\n# TYPE palisade_registry_renewals_threshold gauge\npalisade_registry_renewals_threshold {}\n\
         # HELP palisade_registry_self_preservation 1 while self-preservation keeps expired leases.\n# TYPE palisade_registry_self_preservation gauge\npalisade_registry_self_preservation {}\n",
        sp.renewals_last_minute,
        sp.renewals_threshold,
        u8::from(!sp.lease_expiration_enabled)
    );
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
}
