//! Eureka's JSON form (`EurekaJacksonCodec`): encoding and lenient decoding.
//!
//! Decoding accepts what real clients and servers send: numbers as numbers or strings, `@enabled`
//! as a string or a boolean, the legacy `overriddenstatus` spelling, a single object where an array
//! is expected, and `{"@class":"java.util.Collections$EmptyMap"}` for an empty map.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::error::WireError;
use crate::model::{
    ActionType, Application, Applications, DataCenterInfo, InstanceInfo, InstanceStatus, LeaseInfo,
    PortInfo,
};

/// The class Java writes for an empty metadata map.
pub(crate) const EMPTY_MAP_CLASS: &str = "java.util.Collections$EmptyMap";

// ---------------------------------------------------------------------------------------------
// Encoding

/// Encodes `{"instance": …}`.
pub fn encode_instance(inst: &InstanceInfo) -> Vec<u8> {
    let mut out = String::with_capacity(1024);
    out.push_str("{\"instance\":");
    write_instance(&mut out, inst);
    out.push('}');
    out.into_bytes()
}

/// Encodes `{"application": {"name": …, "instance": [ … ]}}`.
pub fn encode_application(app: &Application) -> Vec<u8> {
    let mut out = String::with_capacity(256 + 1024 * app.instances.len());
    out.push_str("{\"application\":");
    write_application(&mut out, app);
    out.push('}');
    out.into_bytes()
}

/// Encodes `{"applications": …}`; `application` and `instance` are always arrays.
pub fn encode_applications(apps: &Applications) -> Vec<u8> {
    let n: usize = apps.applications.iter().map(|a| a.instances.len()).sum();
    let mut out = String::with_capacity(256 + 1024 * n);
    out.push_str("{\"applications\":{\"versions__delta\":");
    write_str(&mut out, &apps.versions_delta);
    out.push_str(",\"apps__hashcode\":");
    write_str(&mut out, &apps.apps_hashcode);
    out.push_str(",\"application\":[");
    for (i, app) in apps.applications.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_application(&mut out, app);
    }
    out.push_str("]}}");
    out.into_bytes()
}

/// Encodes `{"applications": …}` in the compact form a Java server answers to
/// `X-Eureka-Accept: compact`: per instance only `instanceId`, `app`, `ipAddr`, the VIPs,
/// `dataCenterInfo`, `hostName`, `status`, `lastUpdatedTimestamp` (a number), `actionType` and
/// the ports, in Java's order.
pub fn encode_applications_compact(apps: &Applications) -> Vec<u8> {
    let n: usize = apps.applications.iter().map(|a| a.instances.len()).sum();
    let mut out = String::with_capacity(256 + 400 * n);
    out.push_str("{\"applications\":{\"application\":[");
    for (i, app) in apps.applications.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_application_compact(&mut out, app);
    }
    out.push_str("],\"registeredApplicationsEmpty\":");
    out.push_str(if apps.applications.is_empty() {
        "true"
    } else {
        "false"
    });
    out.push_str(",\"versions__delta\":");
    write_str(&mut out, &apps.versions_delta);
    out.push_str(",\"apps__hashcode\":");
    write_str(&mut out, &apps.apps_hashcode);
    out.push_str("}}");
    out.into_bytes()
}

/// Encodes `{"application": …}` in the compact form (see [`encode_applications_compact`]).
pub fn encode_application_compact(app: &Application) -> Vec<u8> {
    let mut out = String::with_capacity(256 + 400 * app.instances.len());
    out.push_str("{\"application\":");
    write_application_compact(&mut out, app);
    out.push('}');
    out.into_bytes()
}

fn write_application_compact(out: &mut String, app: &Application) {
    out.push_str("{\"name\":");
    write_str(out, &app.name);
    out.push_str(",\"instance\":[");
    for (i, inst) in app.instances.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"instanceId\":");
        write_str(out, inst.id());
        field_str(out, "app", &inst.app);
        field_str(out, "ipAddr", &inst.ip_addr);
        field_opt(out, "vipAddress", inst.vip_address.as_deref());
        field_opt(out, "secureVipAddress", inst.secure_vip_address.as_deref());
        out.push_str(",\"dataCenterInfo\":{\"@class\":");
        write_str(out, &inst.data_center_info.class);
        field_str(out, "name", &inst.data_center_info.name);
        if !inst.data_center_info.metadata.is_empty() {
            out.push_str(",\"metadata\":");
            write_map(out, &inst.data_center_info.metadata);
        }
        out.push('}');
        field_str(out, "hostName", &inst.host_name);
        field_str(out, "status", inst.status.as_str());
        field_num(out, "lastUpdatedTimestamp", inst.last_updated_timestamp);
        field_opt(out, "actionType", inst.action_type.map(ActionType::as_str));
        write_port(out, "port", inst.port);
        write_port(out, "securePort", inst.secure_port);
        out.push('}');
    }
    out.push_str("]}");
}

fn write_application(out: &mut String, app: &Application) {
    out.push_str("{\"name\":");
    write_str(out, &app.name);
    out.push_str(",\"instance\":[");
    for (i, inst) in app.instances.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_instance(out, inst);
    }
    out.push_str("]}");
}

pub(crate) fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn field_str(out: &mut String, key: &str, value: &str) {
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":");
    write_str(out, value);
}

fn field_opt(out: &mut String, key: &str, value: Option<&str>) {
    if let Some(v) = value {
        field_str(out, key, v);
    }
}

fn field_num(out: &mut String, key: &str, value: impl std::fmt::Display) {
    let _ = write!(out, ",\"{key}\":{value}");
}

fn write_port(out: &mut String, key: &str, port: Option<PortInfo>) {
    if let Some(p) = port {
        let _ = write!(
            out,
            ",\"{key}\":{{\"$\":{},\"@enabled\":\"{}\"}}",
            p.port, p.enabled
        );
    }
}

fn write_map(out: &mut String, map: &BTreeMap<String, String>) {
    if map.is_empty() {
        out.push_str("{\"@class\":\"");
        out.push_str(EMPTY_MAP_CLASS);
        out.push_str("\"}");
        return;
    }
    out.push('{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, k);
        out.push(':');
        write_str(out, v);
    }
    out.push('}');
}

fn write_instance(out: &mut String, inst: &InstanceInfo) {
    out.push_str("{\"instanceId\":");
    write_str(out, inst.id());
    field_str(out, "hostName", &inst.host_name);
    field_str(out, "app", &inst.app);
    field_str(out, "ipAddr", &inst.ip_addr);
    field_opt(out, "sid", inst.sid.as_deref());
    field_str(out, "status", inst.status.as_str());
    field_str(out, "overriddenStatus", inst.overridden_status.as_str());
    write_port(out, "port", inst.port);
    write_port(out, "securePort", inst.secure_port);
    field_num(out, "countryId", inst.country_id);
    out.push_str(",\"dataCenterInfo\":{\"@class\":");
    write_str(out, &inst.data_center_info.class);
    field_str(out, "name", &inst.data_center_info.name);
    if !inst.data_center_info.metadata.is_empty() {
        out.push_str(",\"metadata\":");
        write_map(out, &inst.data_center_info.metadata);
    }
    out.push('}');
    if let Some(l) = &inst.lease_info {
        let _ = write!(
            out,
            ",\"leaseInfo\":{{\"renewalIntervalInSecs\":{},\"durationInSecs\":{},\"registrationTimestamp\":{},\"lastRenewalTimestamp\":{},\"evictionTimestamp\":{},\"serviceUpTimestamp\":{}}}",
            l.renewal_interval_in_secs,
            l.duration_in_secs,
            l.registration_timestamp,
            l.last_renewal_timestamp,
            l.eviction_timestamp,
            l.service_up_timestamp
        );
    }
    out.push_str(",\"metadata\":");
    write_map(out, &inst.metadata);
    field_opt(out, "homePageUrl", inst.home_page_url.as_deref());
    field_opt(out, "statusPageUrl", inst.status_page_url.as_deref());
    field_opt(out, "healthCheckUrl", inst.health_check_url.as_deref());
    field_opt(
        out,
        "secureHealthCheckUrl",
        inst.secure_health_check_url.as_deref(),
    );
    field_opt(out, "vipAddress", inst.vip_address.as_deref());
    field_opt(out, "secureVipAddress", inst.secure_vip_address.as_deref());
    field_str(
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
        ",\"lastUpdatedTimestamp\":\"{}\",\"lastDirtyTimestamp\":\"{}\"",
        inst.last_updated_timestamp, inst.last_dirty_timestamp
    );
    field_opt(out, "actionType", inst.action_type.map(ActionType::as_str));
    field_opt(out, "asgName", inst.asg_name.as_deref());
    field_opt(out, "appGroupName", inst.app_group_name.as_deref());
    out.push('}');
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Decodes `{"instance": …}` (or a bare instance object).
pub fn decode_instance(bytes: &[u8]) -> Result<InstanceInfo, WireError> {
    let v = parse(bytes)?;
    let inner = v.get("instance").unwrap_or(&v);
    instance_from_value(inner, "instance")
}

/// Decodes `{"application": …}`.
pub fn decode_application(bytes: &[u8]) -> Result<Application, WireError> {
    let v = parse(bytes)?;
    let inner = v.get("application").unwrap_or(&v);
    application_from_value(inner, "application")
}

/// Decodes `{"applications": …}`.
pub fn decode_applications(bytes: &[u8]) -> Result<Applications, WireError> {
    let v = parse(bytes)?;
    let inner = v.get("applications").unwrap_or(&v);
    applications_from_value(inner)
}

fn parse(bytes: &[u8]) -> Result<Value, WireError> {
    serde_json::from_slice(bytes).map_err(|e| WireError::new(format!("invalid JSON: {e}")))
}

fn obj<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, WireError> {
    v.as_object()
        .ok_or_else(|| WireError::new(format!("`{path}` must be an object")))
}

/// Absent, null and empty string (an empty XML element) all mean "none".
fn present<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    match m.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(v) => Some(v),
    }
}

fn string(m: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>, WireError> {
    match present(m, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(WireError::new(format!("`{path}.{key}` must be a string"))),
    }
}

fn number<T: std::str::FromStr>(
    m: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<T>, WireError> {
    let bad = || WireError::new(format!("`{path}.{key}` must be a number in range"));
    match present(m, key) {
        None => Ok(None),
        Some(Value::Number(n)) => n.to_string().parse().map(Some).map_err(|_| bad()),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

fn boolean(m: &Map<String, Value>, key: &str, path: &str) -> Result<Option<bool>, WireError> {
    match present(m, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) => match s.trim() {
            t if t.eq_ignore_ascii_case("true") => Ok(Some(true)),
            t if t.eq_ignore_ascii_case("false") => Ok(Some(false)),
            _ => Err(WireError::new(format!(
                "`{path}.{key}` must be \"true\" or \"false\""
            ))),
        },
        Some(_) => Err(WireError::new(format!("`{path}.{key}` must be a boolean"))),
    }
}

fn status(
    m: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<InstanceStatus>, WireError> {
    Ok(string(m, key, path)?.map(|s| InstanceStatus::from_wire_lenient(&s)))
}

fn port(m: &Map<String, Value>, key: &str, path: &str) -> Result<Option<PortInfo>, WireError> {
    let Some(v) = present(m, key) else {
        return Ok(None);
    };
    let p = format!("{path}.{key}");
    match v {
        // Some clients send a bare number.
        Value::Number(_) | Value::String(_) => {
            let mut tmp = Map::new();
            tmp.insert("$".into(), v.clone());
            Ok(number::<u16>(&tmp, "$", &p)?.map(PortInfo::enabled))
        }
        Value::Object(o) => {
            let port = number::<u16>(o, "$", &p)?
                .ok_or_else(|| WireError::new(format!("`{p}.$` is missing")))?;
            let enabled = boolean(o, "@enabled", &p)?.unwrap_or(true);
            Ok(Some(PortInfo { port, enabled }))
        }
        _ => Err(WireError::new(format!("`{p}` must be an object"))),
    }
}

fn string_map(v: Option<&Value>, path: &str) -> Result<BTreeMap<String, String>, WireError> {
    let mut out = BTreeMap::new();
    let Some(v) = v else { return Ok(out) };
    let m = obj(v, path)?;
    for (k, val) in m {
        if k == "@class" {
            continue;
        }
        let s = match val {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => String::new(),
            _ => {
                return Err(WireError::new(format!("`{path}.{k}` must be a string")));
            }
        };
        out.insert(k.clone(), s);
    }
    Ok(out)
}

/// One element or an array of them; absent means none.
fn one_or_many<'a>(m: &'a Map<String, Value>, key: &str) -> Vec<&'a Value> {
    match present(m, key) {
        None => Vec::new(),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v) => vec![v],
    }
}

/// Decodes an instance object already parsed as JSON (the `instanceInfo` of a replication item).
pub fn instance_from_json_value(v: &Value) -> Result<InstanceInfo, WireError> {
    instance_from_value(v, "instance")
}

/// Encodes a bare instance object (no `{"instance": …}` wrapper).
pub fn encode_instance_object(inst: &InstanceInfo) -> Vec<u8> {
    let mut out = String::with_capacity(1024);
    write_instance(&mut out, inst);
    out.into_bytes()
}

pub(crate) fn instance_from_value(v: &Value, path: &str) -> Result<InstanceInfo, WireError> {
    let m = obj(v, path)?;
    let dci = match present(m, "dataCenterInfo") {
        None => DataCenterInfo {
            class: String::new(),
            name: String::new(),
            metadata: BTreeMap::new(),
        },
        Some(d) => {
            let dp = format!("{path}.dataCenterInfo");
            let dm = obj(d, &dp)?;
            DataCenterInfo {
                class: string(dm, "@class", &dp)?.unwrap_or_default(),
                name: string(dm, "name", &dp)?.unwrap_or_default(),
                metadata: string_map(present(dm, "metadata"), &format!("{dp}.metadata"))?,
            }
        }
    };
    let lease_info = match present(m, "leaseInfo") {
        None => None,
        Some(l) => {
            let lp = format!("{path}.leaseInfo");
            let lm = obj(l, &lp)?;
            let d = LeaseInfo::default();
            Some(LeaseInfo {
                renewal_interval_in_secs: number(lm, "renewalIntervalInSecs", &lp)?
                    .unwrap_or(d.renewal_interval_in_secs),
                duration_in_secs: number(lm, "durationInSecs", &lp)?.unwrap_or(d.duration_in_secs),
                registration_timestamp: number(lm, "registrationTimestamp", &lp)?.unwrap_or(0),
                last_renewal_timestamp: number(lm, "lastRenewalTimestamp", &lp)?.unwrap_or(0),
                eviction_timestamp: number(lm, "evictionTimestamp", &lp)?.unwrap_or(0),
                service_up_timestamp: number(lm, "serviceUpTimestamp", &lp)?.unwrap_or(0),
            })
        }
    };
    let overridden = match status(m, "overriddenStatus", path)? {
        Some(s) => Some(s),
        None => status(m, "overriddenstatus", path)?,
    };
    let action_type = match string(m, "actionType", path)? {
        None => None,
        Some(s) => Some(ActionType::parse(&s).ok_or_else(|| {
            WireError::new(format!(
                "`{path}.actionType` must be ADDED, MODIFIED or DELETED"
            ))
        })?),
    };
    Ok(InstanceInfo {
        instance_id: string(m, "instanceId", path)?.unwrap_or_default(),
        host_name: string(m, "hostName", path)?.unwrap_or_default(),
        app: string(m, "app", path)?.unwrap_or_default(),
        ip_addr: string(m, "ipAddr", path)?.unwrap_or_default(),
        sid: string(m, "sid", path)?,
        status: status(m, "status", path)?.unwrap_or(InstanceStatus::Up),
        overridden_status: overridden.unwrap_or(InstanceStatus::Unknown),
        port: port(m, "port", path)?,
        secure_port: port(m, "securePort", path)?,
        country_id: number(m, "countryId", path)?.unwrap_or(1),
        data_center_info: dci,
        lease_info,
        metadata: string_map(present(m, "metadata"), &format!("{path}.metadata"))?,
        home_page_url: string(m, "homePageUrl", path)?,
        status_page_url: string(m, "statusPageUrl", path)?,
        health_check_url: string(m, "healthCheckUrl", path)?,
        secure_health_check_url: string(m, "secureHealthCheckUrl", path)?,
        vip_address: string(m, "vipAddress", path)?,
        secure_vip_address: string(m, "secureVipAddress", path)?,
        is_coordinating_discovery_server: boolean(m, "isCoordinatingDiscoveryServer", path)?
            .unwrap_or(false),
        last_updated_timestamp: number(m, "lastUpdatedTimestamp", path)?.unwrap_or(0),
        last_dirty_timestamp: number(m, "lastDirtyTimestamp", path)?.unwrap_or(0),
        action_type,
        asg_name: string(m, "asgName", path)?,
        app_group_name: string(m, "appGroupName", path)?,
    })
}

pub(crate) fn application_from_value(v: &Value, path: &str) -> Result<Application, WireError> {
    let m = obj(v, path)?;
    let mut instances = Vec::new();
    for (i, iv) in one_or_many(m, "instance").into_iter().enumerate() {
        instances.push(instance_from_value(iv, &format!("{path}.instance[{i}]"))?);
    }
    Ok(Application {
        name: string(m, "name", path)?.unwrap_or_default(),
        instances,
    })
}

pub(crate) fn applications_from_value(v: &Value) -> Result<Applications, WireError> {
    // An empty `<applications/>` element arrives as an empty string.
    if v.as_str().is_some_and(str::is_empty) {
        return Ok(Applications::default());
    }
    let m = obj(v, "applications")?;
    let mut applications = Vec::new();
    for (i, av) in one_or_many(m, "application").into_iter().enumerate() {
        applications.push(application_from_value(
            av,
            &format!("applications.application[{i}]"),
        )?);
    }
    Ok(Applications {
        versions_delta: string(m, "versions__delta", "applications")?.unwrap_or_default(),
        apps_hashcode: string(m, "apps__hashcode", "applications")?.unwrap_or_default(),
        applications,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_wrong_types_with_a_reason() {
        let err = decode_instance(br#"{"instance":{"hostName":{"a":1}}}"#).unwrap_err();
        assert_eq!(err.to_string(), "`instance.hostName` must be a string");
        let err = decode_instance(br#"{"instance":{"port":{"$":70000}}}"#).unwrap_err();
        assert!(err.to_string().contains("instance.port.$"), "{err}");
        let err = decode_instance(b"{not json").unwrap_err();
        assert!(err.to_string().starts_with("invalid JSON"), "{err}");
    }

    #[test]
    fn accepts_single_object_instead_of_array() {
        let apps = decode_applications(
            br#"{"applications":{"versions__delta":"1","apps__hashcode":"UP_1_",
               "application":{"name":"A","instance":{"hostName":"h","app":"A","status":"UP"}}}}"#,
        )
        .unwrap();
        assert_eq!(apps.applications.len(), 1);
        assert_eq!(apps.applications[0].instances[0].host_name, "h");
    }

    #[test]
    fn empty_map_class_marker_is_not_metadata() {
        let i = decode_instance(
            br#"{"instance":{"metadata":{"@class":"java.util.Collections$EmptyMap"}}}"#,
        )
        .unwrap();
        assert!(i.metadata.is_empty());
        let encoded = String::from_utf8(encode_instance(&i)).unwrap();
        assert!(encoded.contains(r#""metadata":{"@class":"java.util.Collections$EmptyMap"}"#));
    }
}
