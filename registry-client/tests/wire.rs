//! Round trips of arbitrary instances through both formats, and decoding of real payload samples.

use std::collections::BTreeMap;

use palisade_registry_client::model::{
    ActionType, Application, Applications, DataCenterInfo, InstanceInfo, InstanceStatus, LeaseInfo,
    PortInfo,
};
use palisade_registry_client::{json, xml};
use proptest::prelude::*;

/// Strings without leading or trailing whitespace (XML text is trimmed on decode), with the
/// characters that need escaping in both formats.
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9<>&\"'.:/_é€\\\\-]([a-zA-Z0-9<>&\"' .:/_é€\\\\-]{0,10}[a-zA-Z0-9<>&\"'.:/_é€\\\\-])?"
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text())
}

fn status() -> impl Strategy<Value = InstanceStatus> {
    proptest::sample::select(InstanceStatus::ALL.to_vec())
}

fn port() -> impl Strategy<Value = Option<PortInfo>> {
    proptest::option::of(
        (any::<u16>(), any::<bool>()).prop_map(|(port, enabled)| PortInfo { port, enabled }),
    )
}

fn metadata() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map("[a-z][a-z0-9._-]{0,8}", text(), 0..4)
}

fn lease() -> impl Strategy<Value = Option<LeaseInfo>> {
    proptest::option::of(
        (
            any::<u32>(),
            any::<u32>(),
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
        )
            .prop_map(|(r, d, a, b, c, e)| LeaseInfo {
                renewal_interval_in_secs: r,
                duration_in_secs: d,
                registration_timestamp: a,
                last_renewal_timestamp: b,
                eviction_timestamp: c,
                service_up_timestamp: e,
            }),
    )
}

prop_compose! {
    fn instance()(
        ids in (text(), text(), text(), text(), opt_text()),
        statuses in (status(), status()),
        ports in (port(), port()),
        country_id in any::<i32>(),
        dci in (text(), text(), metadata()),
        lease_info in lease(),
        metadata in metadata(),
        urls in (opt_text(), opt_text(), opt_text(), opt_text(), opt_text(), opt_text()),
        coordinating in any::<bool>(),
        stamps in (any::<i64>(), any::<i64>()),
        action in proptest::option::of(proptest::sample::select(vec![ActionType::Added, ActionType::Modified, ActionType::Deleted])),
        groups in (opt_text(), opt_text()),
    ) -> InstanceInfo {
        InstanceInfo {
            instance_id: ids.0,
            host_name: ids.1,
            app: ids.2,
            ip_addr: ids.3,
            sid: ids.4,
            status: statuses.0,
            overridden_status: statuses.1,
            port: ports.0,
            secure_port: ports.1,
            country_id,
            data_center_info: DataCenterInfo { class: dci.0, name: dci.1, metadata: dci.2 },
            lease_info,
            metadata,
            home_page_url: urls.0,
            status_page_url: urls.1,
            health_check_url: urls.2,
            secure_health_check_url: urls.3,
            vip_address: urls.4,
            secure_vip_address: urls.5,
            is_coordinating_discovery_server: coordinating,
            last_updated_timestamp: stamps.0,
            last_dirty_timestamp: stamps.1,
            action_type: action,
            asg_name: groups.0,
            app_group_name: groups.1,
        }
    }
}

fn applications() -> impl Strategy<Value = Applications> {
    (
        "[0-9]{1,5}",
        proptest::collection::vec((text(), proptest::collection::vec(instance(), 1..3)), 0..3),
    )
        .prop_map(|(versions_delta, apps)| {
            let applications: Vec<Application> = apps
                .into_iter()
                .map(|(name, instances)| Application { name, instances })
                .collect();
            let mut a = Applications {
                versions_delta,
                apps_hashcode: String::new(),
                applications,
            };
            a.apps_hashcode = a.compute_hashcode();
            a
        })
}

proptest! {
    #[test]
    fn instance_round_trips_through_json(inst in instance()) {
        prop_assert_eq!(json::decode_instance(&json::encode_instance(&inst)).unwrap(), inst);
    }

    #[test]
    fn instance_round_trips_through_xml(inst in instance()) {
        prop_assert_eq!(xml::decode_instance(&xml::encode_instance(&inst)).unwrap(), inst);
    }

    #[test]
    fn applications_round_trip_through_both_formats(apps in applications()) {
        prop_assert_eq!(&json::decode_applications(&json::encode_applications(&apps)).unwrap(), &apps);
        prop_assert_eq!(&xml::decode_applications(&xml::encode_applications(&apps)).unwrap(), &apps);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = json::decode_instance(&bytes);
        let _ = json::decode_applications(&bytes);
        let _ = xml::decode_instance(&bytes);
        let _ = xml::decode_applications(&bytes);
    }

    #[test]
    fn mangled_documents_never_panic_the_decoders(inst in instance(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        for mut doc in [json::encode_instance(&inst), xml::encode_instance(&inst)] {
            let i = cut.index(doc.len());
            doc[i] = byte;
            let _ = json::decode_instance(&doc);
            let _ = xml::decode_instance(&doc);
            doc.truncate(i);
            let _ = json::decode_instance(&doc);
            let _ = xml::decode_instance(&doc);
        }
    }
}

/// The registration body py_eureka_client 0.13.3 sends (reference doc, section 2).
const PY_REGISTER: &str = r#"{"instance": {"instanceId": "127.0.0.1:py-demo:9090", "hostName": "127.0.0.1",
 "app": "PY-DEMO", "ipAddr": "127.0.0.1", "status": "UP", "overriddenstatus": "UNKNOWN",
 "port": {"$": 9090, "@enabled": "true"}, "securePort": {"$": 9443, "@enabled": "false"}, "countryId": 1,
 "dataCenterInfo": {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"},
 "leaseInfo": {"renewalIntervalInSecs": 30, "durationInSecs": 90, "registrationTimestamp": 0,
   "lastRenewalTimestamp": 0, "evictionTimestamp": 0, "serviceUpTimestamp": 0},
 "metadata": {"management.port": "9090", "zone": "default"},
 "homePageUrl": "http://127.0.0.1:9090/", "statusPageUrl": "http://127.0.0.1:9090/info",
 "healthCheckUrl": "http://127.0.0.1:9090/health", "vipAddress": "py-demo", "secureVipAddress": "py-demo",
 "isCoordinatingDiscoveryServer": "false", "lastUpdatedTimestamp": "1795852268038",
 "lastDirtyTimestamp": "1795852268038"}}"#;

/// The registration body eureka-js-client 4.5.0 sends (reference doc, section 2).
const JS_REGISTER: &str = r#"{"instance":{"app":"JS-DEMO","instanceId":"js-demo-1","hostName":"localhost",
 "ipAddr":"127.0.0.1","port":{"$":7070,"@enabled":true},"vipAddress":"js-demo",
 "statusPageUrl":"http://localhost:7070/info",
 "dataCenterInfo":{"@class":"com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo","name":"MyOwn"},
 "status":"UP"}}"#;

/// The server-side JSON of section 1.2, with the nulls Java writes.
const JAVA_INSTANCE: &str = r#"{"instance": {
  "instanceId": "host1:orders:8080", "hostName": "host1", "app": "ORDERS", "ipAddr": "10.0.0.5",
  "sid": "na", "status": "UP", "overriddenStatus": "UNKNOWN",
  "port": {"$": 8080, "@enabled": "true"}, "securePort": {"$": 443, "@enabled": "false"},
  "countryId": 1,
  "dataCenterInfo": {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"},
  "leaseInfo": {"renewalIntervalInSecs": 30, "durationInSecs": 90, "registrationTimestamp": 1700000000000,
                "lastRenewalTimestamp": 1700000000000, "evictionTimestamp": 0, "serviceUpTimestamp": 1700000000000},
  "metadata": {"zone": "us-east-1a"},
  "homePageUrl": "http://host1:8080/", "statusPageUrl": "http://host1:8080/info", "healthCheckUrl": "http://host1:8080/health", "secureHealthCheckUrl": null,
  "vipAddress": "orders", "secureVipAddress": "orders",
  "isCoordinatingDiscoveryServer": "false", "lastUpdatedTimestamp": "1700000000000",
  "lastDirtyTimestamp": 1700000000000,
  "actionType": "ADDED", "asgName": null, "appGroupName": null
}}"#;

/// The XML form of section 1.2, as an old XStream server writes it.
const JAVA_XML_APPS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<applications>
  <versions__delta>1</versions__delta>
  <apps__hashcode>UP_1_</apps__hashcode>
  <application>
    <name>ORDERS</name>
    <instance>
      <instanceId>h1:orders:8080</instanceId><hostName>h1</hostName><app>ORDERS</app><ipAddr>10.0.0.5</ipAddr>
      <status>UP</status><overriddenstatus>UNKNOWN</overriddenstatus><port enabled="true">8080</port>
      <securePort enabled="false">443</securePort><countryId>1</countryId>
      <dataCenterInfo class="com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"><name>MyOwn</name></dataCenterInfo>
      <leaseInfo><renewalIntervalInSecs>30</renewalIntervalInSecs><durationInSecs>90</durationInSecs>
        <registrationTimestamp>1700000000000</registrationTimestamp><lastRenewalTimestamp>1700000000001</lastRenewalTimestamp>
        <evictionTimestamp>0</evictionTimestamp><serviceUpTimestamp>1700000000000</serviceUpTimestamp></leaseInfo>
      <metadata class="java.util.Collections$EmptyMap"/>
      <vipAddress>orders</vipAddress><secureVipAddress>orders</secureVipAddress>
      <isCoordinatingDiscoveryServer>false</isCoordinatingDiscoveryServer>
      <lastUpdatedTimestamp>1700000000000</lastUpdatedTimestamp><lastDirtyTimestamp>1700000000000</lastDirtyTimestamp>
      <actionType>ADDED</actionType>
    </instance>
  </application>
</applications>"#;

#[test]
fn decodes_py_eureka_client_registration() {
    let i = json::decode_instance(PY_REGISTER.as_bytes()).unwrap();
    assert_eq!(i.id(), "127.0.0.1:py-demo:9090");
    assert_eq!(i.app, "PY-DEMO");
    assert_eq!(i.overridden_status, InstanceStatus::Unknown);
    assert_eq!(i.port, Some(PortInfo::enabled(9090)));
    assert_eq!(i.secure_port, Some(PortInfo::disabled(9443)));
    assert_eq!(i.metadata["management.port"], "9090");
    assert_eq!(i.last_dirty_timestamp, 1_795_852_268_038);
    assert!(i.validate_for_registration().is_ok());
}

#[test]
fn decodes_eureka_js_client_registration_without_lease_or_secure_port() {
    let i = json::decode_instance(JS_REGISTER.as_bytes()).unwrap();
    assert_eq!(i.id(), "js-demo-1");
    assert_eq!(
        i.port,
        Some(PortInfo::enabled(7070)),
        "boolean @enabled accepted"
    );
    assert_eq!(i.lease_info, None);
    assert_eq!(i.secure_port, None);
    assert!(i.has_vip("JS-DEMO"));
    assert!(i.validate_for_registration().is_ok());
}

#[test]
fn decodes_java_server_json_with_nulls_and_numeric_dirty_timestamp() {
    let i = json::decode_instance(JAVA_INSTANCE.as_bytes()).unwrap();
    assert_eq!(i.sid.as_deref(), Some("na"));
    assert_eq!(i.secure_health_check_url, None);
    assert_eq!(i.asg_name, None);
    assert_eq!(i.last_dirty_timestamp, 1_700_000_000_000);
    assert_eq!(i.action_type, Some(ActionType::Added));
    assert_eq!(
        i.lease_info.unwrap().registration_timestamp,
        1_700_000_000_000
    );
    assert_eq!(i.metadata["zone"], "us-east-1a");
}

#[test]
fn decodes_java_server_xml_with_single_application_and_instance() {
    let apps = xml::decode_applications(JAVA_XML_APPS.as_bytes()).unwrap();
    assert_eq!(apps.versions_delta, "1");
    assert_eq!(apps.apps_hashcode, "UP_1_");
    assert_eq!(apps.compute_hashcode(), apps.apps_hashcode);
    let i = &apps.application("orders").unwrap().instances[0];
    assert_eq!(i.id(), "h1:orders:8080");
    assert_eq!(i.port, Some(PortInfo::enabled(8080)));
    assert_eq!(i.secure_port, Some(PortInfo::disabled(443)));
    assert_eq!(i.data_center_info, DataCenterInfo::my_own());
    assert!(i.metadata.is_empty());
    assert_eq!(
        i.lease_info.unwrap().last_renewal_timestamp,
        1_700_000_000_001
    );
}

#[test]
fn encodes_what_py_eureka_client_reads_from_xml() {
    let i = json::decode_instance(PY_REGISTER.as_bytes()).unwrap();
    let body = String::from_utf8(xml::encode_instance(&i)).unwrap();
    assert!(
        body.contains(r#"<port enabled="true">9090</port>"#),
        "{body}"
    );
    assert!(body.contains(
        r#"<dataCenterInfo class="com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"><name>MyOwn</name></dataCenterInfo>"#
    ));
    assert!(body.contains("<overriddenstatus>UNKNOWN</overriddenstatus>"));
    let empty = Applications::default();
    assert_eq!(
        String::from_utf8(json::encode_applications(&empty)).unwrap(),
        r#"{"applications":{"versions__delta":"","apps__hashcode":"","application":[]}}"#
    );
}

/// Captured from a stock Spring Cloud 2025.1 Eureka server (`GET /eureka/apps/`, XML and JSON)
/// after registering one instance with curl.
#[test]
fn decodes_captured_java_server_payloads_identically_in_both_formats() {
    let from_xml =
        xml::decode_applications(include_bytes!("fixtures/java-server-apps.xml")).unwrap();
    let from_json =
        json::decode_applications(include_bytes!("fixtures/java-server-apps.json")).unwrap();
    assert_eq!(from_xml, from_json);
    assert_eq!(from_xml.apps_hashcode, "UP_1_");
    assert_eq!(from_xml.compute_hashcode(), from_xml.apps_hashcode);
    let i = &from_xml.application("PROBE").unwrap().instances[0];
    assert_eq!(i.id(), "probe-1");
    assert_eq!(i.secure_port, Some(PortInfo::disabled(7002)));
    assert_eq!(i.metadata["lang"], "probe");
    assert_eq!(i.action_type, Some(ActionType::Added));
    let delta = xml::decode_applications(include_bytes!("fixtures/java-server-delta.xml")).unwrap();
    assert_eq!(delta.apps_hashcode, "UP_1_");
    // Our encoders produce what the decoders read back identically.
    assert_eq!(
        json::decode_applications(&json::encode_applications(&from_xml)).unwrap(),
        from_xml
    );
}

/// `X-Eureka-Accept: compact` answers captured from the same Java server: our compact encoders
/// write the same bytes from the decoded registry.
#[test]
fn compact_form_matches_the_java_server_byte_for_byte() {
    let json_doc = include_str!("fixtures/java-server-apps-compact.json").trim_end();
    let xml_doc = include_str!("fixtures/java-server-apps-compact.xml");
    let from_json = json::decode_applications(json_doc.as_bytes()).unwrap();
    let from_xml = xml::decode_applications(xml_doc.as_bytes()).unwrap();
    assert_eq!(from_json, from_xml);
    let i = &from_json.applications[0].instances[0];
    assert_eq!(
        i.last_updated_timestamp, 1_795_858_795_200,
        "a number in compact JSON"
    );
    assert_eq!(i.secure_vip_address.as_deref(), Some("probe-s"));
    assert_eq!(
        String::from_utf8(json::encode_applications_compact(&from_json)).unwrap(),
        json_doc
    );
    assert_eq!(
        String::from_utf8(xml::encode_applications_compact(&from_json)).unwrap(),
        xml_doc
    );
}

/// The full JSON form too: re-encoding the Java server's answer gives the same bytes.
#[test]
fn full_json_matches_the_java_server_byte_for_byte() {
    let doc = include_str!("fixtures/java-server-apps.json").trim_end();
    let apps = json::decode_applications(doc.as_bytes()).unwrap();
    assert_eq!(
        String::from_utf8(json::encode_applications(&apps)).unwrap(),
        doc
    );
}
