//! Eureka's XML form (XStream style): encoding and lenient decoding.
//!
//! Decoding turns the XML into the same tree the JSON decoder reads (attributes become `@name`,
//! element text next to attributes becomes `$`, repeated elements become arrays), so both formats
//! share one set of rules. Metadata keys that are not XML names are written with the offending
//! characters replaced by `_` (XML cannot carry them as element names).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use quick_xml::Reader;
use quick_xml::events::Event;
use serde_json::{Map, Value};

use crate::error::WireError;
use crate::json::{
    EMPTY_MAP_CLASS, application_from_value, applications_from_value, instance_from_value,
};
use crate::model::{Application, Applications, InstanceInfo, PortInfo};

/// Deeper documents are rejected: Eureka documents nest five levels.
const MAX_DEPTH: usize = 32;

// ---------------------------------------------------------------------------------------------
// Encoding

/// Encodes `<instance>…</instance>`.
pub fn encode_instance(inst: &InstanceInfo) -> Vec<u8> {
    let mut out = String::with_capacity(1024);
    write_instance(&mut out, inst);
    out.into_bytes()
}

/// Encodes `<application>…</application>`.
pub fn encode_application(app: &Application) -> Vec<u8> {
    let mut out = String::with_capacity(256 + 1024 * app.instances.len());
    write_application(&mut out, app);
    out.into_bytes()
}

/// Encodes `<applications>…</applications>`.
pub fn encode_applications(apps: &Applications) -> Vec<u8> {
    let n: usize = apps.applications.iter().map(|a| a.instances.len()).sum();
    let mut out = String::with_capacity(256 + 1024 * n);
    out.push_str("<applications>");
    elem(&mut out, "versions__delta", &apps.versions_delta);
    elem(&mut out, "apps__hashcode", &apps.apps_hashcode);
    for app in &apps.applications {
        write_application(&mut out, app);
    }
    out.push_str("</applications>");
    out.into_bytes()
}

/// Encodes `<applications>…</applications>` in the compact form (see
/// [`crate::json::encode_applications_compact`]).
pub fn encode_applications_compact(apps: &Applications) -> Vec<u8> {
    let n: usize = apps.applications.iter().map(|a| a.instances.len()).sum();
    let mut out = String::with_capacity(256 + 500 * n);
    out.push_str("<applications>");
    for app in &apps.applications {
        write_application_compact(&mut out, app);
    }
    elem(
        &mut out,
        "registeredApplicationsEmpty",
        if apps.applications.is_empty() {
            "true"
        } else {
            "false"
        },
    );
    elem(&mut out, "versions__delta", &apps.versions_delta);
    elem(&mut out, "apps__hashcode", &apps.apps_hashcode);
    out.push_str("</applications>");
    out.into_bytes()
}

/// Encodes `<application>…</application>` in the compact form.
pub fn encode_application_compact(app: &Application) -> Vec<u8> {
    let mut out = String::with_capacity(256 + 500 * app.instances.len());
    write_application_compact(&mut out, app);
    out.into_bytes()
}

fn write_application_compact(out: &mut String, app: &Application) {
    out.push_str("<application>");
    elem(out, "name", &app.name);
    for inst in &app.instances {
        out.push_str("<instance>");
        elem(out, "instanceId", inst.id());
        elem(out, "app", &inst.app);
        elem(out, "ipAddr", &inst.ip_addr);
        elem_opt(out, "vipAddress", inst.vip_address.as_deref());
        elem_opt(out, "secureVipAddress", inst.secure_vip_address.as_deref());
        out.push_str("<dataCenterInfo class=\"");
        escape_into(out, &inst.data_center_info.class);
        out.push_str("\">");
        elem(out, "name", &inst.data_center_info.name);
        if !inst.data_center_info.metadata.is_empty() {
            map(out, "metadata", &inst.data_center_info.metadata);
        }
        out.push_str("</dataCenterInfo>");
        elem(out, "hostName", &inst.host_name);
        elem(out, "status", inst.status.as_str());
        let _ = write!(
            out,
            "<lastUpdatedTimestamp>{}</lastUpdatedTimestamp>",
            inst.last_updated_timestamp
        );
        elem_opt(out, "actionType", inst.action_type.map(|a| a.as_str()));
        port(out, "port", inst.port);
        port(out, "securePort", inst.secure_port);
        out.push_str("</instance>");
    }
    out.push_str("</application>");
}

fn write_application(out: &mut String, app: &Application) {
    out.push_str("<application>");
    elem(out, "name", &app.name);
    for inst in &app.instances {
        write_instance(out, inst);
    }
    out.push_str("</application>");
}

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

fn elem(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    escape_into(out, value);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn elem_opt(out: &mut String, name: &str, value: Option<&str>) {
    if let Some(v) = value {
        elem(out, name, v);
    }
}

fn port(out: &mut String, name: &str, port: Option<PortInfo>) {
    if let Some(p) = port {
        let _ = write!(out, "<{name} enabled=\"{}\">{}</{name}>", p.enabled, p.port);
    }
}

fn xml_name(key: &str) -> String {
    let mut name: String = key
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let ok = c.is_alphanumeric() || c == '_' || (i > 0 && matches!(c, '-' | '.'));
            let ok = ok && !(i == 0 && c.is_numeric());
            if ok { c } else { '_' }
        })
        .collect();
    if name.is_empty() {
        name.push('_');
    }
    name
}

fn map(out: &mut String, name: &str, m: &BTreeMap<String, String>) {
    if m.is_empty() {
        let _ = write!(out, "<{name} class=\"{EMPTY_MAP_CLASS}\"/>");
        return;
    }
    out.push('<');
    out.push_str(name);
    out.push('>');
    for (k, v) in m {
        elem(out, &xml_name(k), v);
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn write_instance(out: &mut String, inst: &InstanceInfo) {
    out.push_str("<instance>");
    elem(out, "instanceId", inst.id());
    elem(out, "hostName", &inst.host_name);
    elem(out, "app", &inst.app);
    elem(out, "ipAddr", &inst.ip_addr);
    elem_opt(out, "sid", inst.sid.as_deref());
    elem(out, "status", inst.status.as_str());
    elem(out, "overriddenstatus", inst.overridden_status.as_str());
    port(out, "port", inst.port);
    port(out, "securePort", inst.secure_port);
    let _ = write!(out, "<countryId>{}</countryId>", inst.country_id);
    out.push_str("<dataCenterInfo class=\"");
    escape_into(out, &inst.data_center_info.class);
    out.push_str("\">");
    elem(out, "name", &inst.data_center_info.name);
    if !inst.data_center_info.metadata.is_empty() {
        map(out, "metadata", &inst.data_center_info.metadata);
    }
    out.push_str("</dataCenterInfo>");
    if let Some(l) = &inst.lease_info {
        let _ = write!(
            out,
            "<leaseInfo><renewalIntervalInSecs>{}</renewalIntervalInSecs><durationInSecs>{}</durationInSecs><registrationTimestamp>{}</registrationTimestamp><lastRenewalTimestamp>{}</lastRenewalTimestamp><evictionTimestamp>{}</evictionTimestamp><serviceUpTimestamp>{}</serviceUpTimestamp></leaseInfo>",
            l.renewal_interval_in_secs,
            l.duration_in_secs,
            l.registration_timestamp,
            l.last_renewal_timestamp,
            l.eviction_timestamp,
            l.service_up_timestamp
        );
    }
    map(out, "metadata", &inst.metadata);
    elem_opt(out, "homePageUrl", inst.home_page_url.as_deref());
    elem_opt(out, "statusPageUrl", inst.status_page_url.as_deref());
    elem_opt(out, "healthCheckUrl", inst.health_check_url.as_deref());
    elem_opt(
        out,
        "secureHealthCheckUrl",
        inst.secure_health_check_url.as_deref(),
    );
    elem_opt(out, "vipAddress", inst.vip_address.as_deref());
    elem_opt(out, "secureVipAddress", inst.secure_vip_address.as_deref());
    elem(
        out,
        "isCoordinatingDiscoveryServer",
        if inst.is_coordinating_discovery_server {
            "true"
        } else {
            "false"
        },
    );
    let _ = write!(
        out,
        "<lastUpdatedTimestamp>{}</lastUpdatedTimestamp><lastDirtyTimestamp>{}</lastDirtyTimestamp>",
        inst.last_updated_timestamp, inst.last_dirty_timestamp
    );
    elem_opt(out, "actionType", inst.action_type.map(|a| a.as_str()));
    elem_opt(out, "asgName", inst.asg_name.as_deref());
    elem_opt(out, "appGroupName", inst.app_group_name.as_deref());
    out.push_str("</instance>");
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Decodes `<instance>…</instance>`.
pub fn decode_instance(bytes: &[u8]) -> Result<InstanceInfo, WireError> {
    let (root, v) = to_tree(bytes)?;
    expect_root(&root, "instance")?;
    instance_from_value(&v, "instance")
}

/// Decodes `<application>…</application>`.
pub fn decode_application(bytes: &[u8]) -> Result<Application, WireError> {
    let (root, v) = to_tree(bytes)?;
    expect_root(&root, "application")?;
    application_from_value(&v, "application")
}

/// Decodes `<applications>…</applications>`.
pub fn decode_applications(bytes: &[u8]) -> Result<Applications, WireError> {
    let (root, v) = to_tree(bytes)?;
    expect_root(&root, "applications")?;
    applications_from_value(&v)
}

fn expect_root(root: &str, want: &str) -> Result<(), WireError> {
    if root == want {
        Ok(())
    } else {
        Err(WireError::new(format!(
            "invalid XML: root element is <{root}>, expected <{want}>"
        )))
    }
}

struct Frame {
    name: String,
    attrs: Map<String, Value>,
    children: Map<String, Value>,
    has_children: bool,
    text: String,
}

impl Frame {
    fn new(name: String, attrs: Map<String, Value>) -> Self {
        Frame {
            name,
            attrs,
            children: Map::new(),
            has_children: false,
            text: String::new(),
        }
    }

    fn into_value(self) -> Value {
        let text = self.text.trim();
        if self.attrs.is_empty() && !self.has_children {
            return Value::String(text.to_owned());
        }
        let mut m = self.attrs;
        for (k, v) in self.children {
            m.insert(k, v);
        }
        if !text.is_empty() {
            m.insert("$".into(), Value::String(text.to_owned()));
        }
        Value::Object(m)
    }

    fn add_child(&mut self, name: String, value: Value) {
        self.has_children = true;
        match self.children.get_mut(&name) {
            None => {
                self.children.insert(name, value);
            }
            Some(Value::Array(a)) => a.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
        }
    }
}

fn xml_err(e: impl std::fmt::Display) -> WireError {
    WireError::new(format!("invalid XML: {e}"))
}

fn to_tree(bytes: &[u8]) -> Result<(String, Value), WireError> {
    let mut reader = Reader::from_reader(bytes);
    let mut stack: Vec<Frame> = Vec::new();
    loop {
        let event = reader.read_event().map_err(xml_err)?;
        match event {
            Event::Start(_) | Event::Empty(_) if stack.len() >= MAX_DEPTH => {
                return Err(xml_err(format!("nested deeper than {MAX_DEPTH} elements")));
            }
            Event::Start(e) => {
                let frame = start_frame(&e)?;
                stack.push(frame);
            }
            Event::Empty(e) => {
                let frame = start_frame(&e)?;
                if let Some(done) = finish(&mut stack, frame) {
                    return Ok(done);
                }
            }
            Event::End(_) => {
                let frame = stack
                    .pop()
                    .ok_or_else(|| xml_err("unexpected closing tag"))?;
                if let Some(done) = finish(&mut stack, frame) {
                    return Ok(done);
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let s = t.decode().map_err(xml_err)?;
                    let s = quick_xml::escape::unescape(&s).map_err(xml_err)?;
                    top.text.push_str(&s);
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    let s = std::str::from_utf8(&t).map_err(xml_err)?;
                    top.text.push_str(s);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    let name = r.decode().map_err(xml_err)?;
                    let resolved = match r.resolve_char_ref().map_err(xml_err)? {
                        Some(c) => c.to_string(),
                        None => quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| xml_err(format!("unknown entity &{name};")))?
                            .to_owned(),
                    };
                    top.text.push_str(&resolved);
                }
            }
            Event::Eof => return Err(xml_err("document ended before the root element closed")),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
}

/// Pops a finished element into its parent; returns the root when it closes.
fn finish(stack: &mut [Frame], frame: Frame) -> Option<(String, Value)> {
    let name = frame.name.clone();
    let value = frame.into_value();
    match stack.last_mut() {
        Some(parent) => {
            parent.add_child(name, value);
            None
        }
        None => Some((name, value)),
    }
}

fn start_frame(e: &quick_xml::events::BytesStart<'_>) -> Result<Frame, WireError> {
    let name = std::str::from_utf8(e.local_name().as_ref())
        .map_err(xml_err)?
        .to_owned();
    let mut attrs = Map::new();
    for a in e.attributes() {
        let a = a.map_err(xml_err)?;
        let key = std::str::from_utf8(a.key.local_name().as_ref())
            .map_err(xml_err)?
            .to_owned();
        let value = a.unescape_value().map_err(xml_err)?.into_owned();
        attrs.insert(format!("@{key}"), Value::String(value));
    }
    Ok(Frame::new(name, attrs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage_with_a_reason() {
        let err = decode_instance(b"<instance><hostName>h</instance>").unwrap_err();
        assert!(err.to_string().starts_with("invalid XML"), "{err}");
        let err = decode_instance(b"<applications/>").unwrap_err();
        assert!(err.to_string().contains("expected <instance>"), "{err}");
        let deep = "<a>".repeat(100);
        assert!(decode_instance(deep.as_bytes()).is_err());
        let err =
            decode_instance(b"<instance><port enabled=\"true\">x</port></instance>").unwrap_err();
        assert!(err.to_string().contains("instance.port.$"), "{err}");
    }

    #[test]
    fn empty_applications_element_decodes() {
        let apps = decode_applications(b"<applications/>").unwrap();
        assert!(apps.applications.is_empty());
    }

    #[test]
    fn metadata_keys_become_xml_names() {
        assert_eq!(xml_name("management.port"), "management.port");
        assert_eq!(xml_name("1a b"), "_a_b");
        assert_eq!(xml_name(""), "_");
    }
}
