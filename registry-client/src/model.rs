//! The Eureka wire model: instances, applications and the values inside them.
//!
//! The types mirror `com.netflix.appinfo.InstanceInfo` and `com.netflix.discovery.shared.Applications`.
//! They are plain data; [`crate::json`] and [`crate::xml`] turn them into and out of Eureka's two
//! wire formats.

use std::collections::BTreeMap;
use std::fmt;

/// The class name Java writes for a non-AWS data center.
pub const DEFAULT_DATA_CENTER_CLASS: &str =
    "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo";
/// The class name Java writes for an AWS data center.
pub const AMAZON_DATA_CENTER_CLASS: &str = "com.netflix.appinfo.AmazonInfo";

/// The status of an instance, as Eureka spells it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum InstanceStatus {
    /// Ready to receive traffic.
    Up,
    /// Failed its health check; do not send traffic.
    Down,
    /// Still starting; do not send traffic yet.
    Starting,
    /// Taken out of service on purpose (usually by an operator override).
    OutOfService,
    /// Unknown status; also what an unrecognised status string decodes to, as in Java.
    #[default]
    Unknown,
}

impl InstanceStatus {
    /// Every status, in declaration order.
    pub const ALL: [InstanceStatus; 5] = [
        InstanceStatus::Up,
        InstanceStatus::Down,
        InstanceStatus::Starting,
        InstanceStatus::OutOfService,
        InstanceStatus::Unknown,
    ];

    /// The wire spelling (`UP`, `DOWN`, `STARTING`, `OUT_OF_SERVICE`, `UNKNOWN`).
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Up => "UP",
            InstanceStatus::Down => "DOWN",
            InstanceStatus::Starting => "STARTING",
            InstanceStatus::OutOfService => "OUT_OF_SERVICE",
            InstanceStatus::Unknown => "UNKNOWN",
        }
    }

    /// Parses a wire spelling (case-insensitive). Returns `None` for an unknown word; use
    /// [`InstanceStatus::from_wire_lenient`] for Java's "anything else is UNKNOWN" behaviour.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// Parses like Java's `InstanceStatus.toEnum`: an unknown word is [`InstanceStatus::Unknown`].
    pub fn from_wire_lenient(s: &str) -> Self {
        Self::parse(s).unwrap_or(InstanceStatus::Unknown)
    }
}

impl fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to an instance, as reported in a delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionType {
    /// The instance was registered.
    Added,
    /// The instance changed (status, metadata, re-registration).
    Modified,
    /// The instance was cancelled or evicted.
    Deleted,
}

impl ActionType {
    /// The wire spelling (`ADDED`, `MODIFIED`, `DELETED`).
    pub fn as_str(self) -> &'static str {
        match self {
            ActionType::Added => "ADDED",
            ActionType::Modified => "MODIFIED",
            ActionType::Deleted => "DELETED",
        }
    }

    /// Parses a wire spelling (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        [ActionType::Added, ActionType::Modified, ActionType::Deleted]
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

impl fmt::Display for ActionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A port and whether it is enabled (`{"$": 8080, "@enabled": "true"}` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortInfo {
    /// The port number.
    pub port: u16,
    /// Whether clients may use it.
    pub enabled: bool,
}

impl PortInfo {
    /// An enabled port.
    pub fn enabled(port: u16) -> Self {
        PortInfo {
            port,
            enabled: true,
        }
    }

    /// A disabled port.
    pub fn disabled(port: u16) -> Self {
        PortInfo {
            port,
            enabled: false,
        }
    }
}

/// Where an instance runs: `MyOwn` (the default) or `Amazon` with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataCenterInfo {
    /// The Java class (`@class` in JSON, `class` attribute in XML).
    pub class: String,
    /// `MyOwn`, `Amazon` or `Netflix`.
    pub name: String,
    /// AWS metadata (`instance-id`, `availability-zone`...); empty for `MyOwn`.
    pub metadata: BTreeMap<String, String>,
}

impl Default for DataCenterInfo {
    fn default() -> Self {
        DataCenterInfo::my_own()
    }
}

impl DataCenterInfo {
    /// The `MyOwn` data center every non-AWS client sends.
    pub fn my_own() -> Self {
        DataCenterInfo {
            class: DEFAULT_DATA_CENTER_CLASS.to_owned(),
            name: "MyOwn".to_owned(),
            metadata: BTreeMap::new(),
        }
    }
}

/// The lease terms and timestamps of an instance (all timestamps in epoch milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseInfo {
    /// How often the client renews (default 30).
    pub renewal_interval_in_secs: u32,
    /// How long after the last renewal the lease expires (default 90).
    pub duration_in_secs: u32,
    /// When the instance registered.
    pub registration_timestamp: i64,
    /// When the lease was last renewed.
    pub last_renewal_timestamp: i64,
    /// When the instance was evicted or cancelled (0 if not).
    pub eviction_timestamp: i64,
    /// When the instance first became `UP`.
    pub service_up_timestamp: i64,
}

impl Default for LeaseInfo {
    fn default() -> Self {
        LeaseInfo {
            renewal_interval_in_secs: 30,
            duration_in_secs: 90,
            registration_timestamp: 0,
            last_renewal_timestamp: 0,
            eviction_timestamp: 0,
            service_up_timestamp: 0,
        }
    }
}

/// One registered instance (`InstanceInfo`).
///
/// Optional wire fields are `Option`s and are omitted when `None`. Identity strings that a client
/// may leave out (`instanceId`, `ipAddr`) are empty strings when absent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstanceInfo {
    /// The instance id; may be empty, see [`InstanceInfo::id`].
    pub instance_id: String,
    /// The host name.
    pub host_name: String,
    /// The application name (upper case on the server).
    pub app: String,
    /// The IP address.
    pub ip_addr: String,
    /// Security id (`sid`), usually `na`.
    pub sid: Option<String>,
    /// The status the instance reports (or the server computed).
    pub status: InstanceStatus,
    /// The operator override, `UNKNOWN` when there is none.
    pub overridden_status: InstanceStatus,
    /// The plain port.
    pub port: Option<PortInfo>,
    /// The TLS port.
    pub secure_port: Option<PortInfo>,
    /// Country id (1 by default in Java).
    pub country_id: i32,
    /// The data center.
    pub data_center_info: DataCenterInfo,
    /// The lease; the server fills it in.
    pub lease_info: Option<LeaseInfo>,
    /// Free-form metadata.
    pub metadata: BTreeMap<String, String>,
    /// Home page URL.
    pub home_page_url: Option<String>,
    /// Status page URL.
    pub status_page_url: Option<String>,
    /// Health check URL.
    pub health_check_url: Option<String>,
    /// Secure health check URL.
    pub secure_health_check_url: Option<String>,
    /// VIP address (comma-separated list allowed).
    pub vip_address: Option<String>,
    /// Secure VIP address (comma-separated list allowed).
    pub secure_vip_address: Option<String>,
    /// Whether this instance is a discovery server.
    pub is_coordinating_discovery_server: bool,
    /// Last update, epoch ms.
    pub last_updated_timestamp: i64,
    /// Last local change on the client, epoch ms; decides conflicts.
    pub last_dirty_timestamp: i64,
    /// The change this record describes in a delta.
    pub action_type: Option<ActionType>,
    /// AWS auto-scaling group.
    pub asg_name: Option<String>,
    /// Application group.
    pub app_group_name: Option<String>,
}

impl InstanceInfo {
    /// Java's `getId()`: the instance id, else the AWS `instance-id`, else the host name.
    pub fn id(&self) -> &str {
        if !self.instance_id.is_empty() {
            return &self.instance_id;
        }
        if self.data_center_info.name == "Amazon"
            && let Some(id) = self.data_center_info.metadata.get("instance-id")
            && !id.is_empty()
        {
            return id;
        }
        &self.host_name
    }

    /// Whether any of the comma-separated VIP addresses equals `vip` (case-insensitive).
    pub fn has_vip(&self, vip: &str) -> bool {
        list_contains(self.vip_address.as_deref(), vip)
    }

    /// Whether any of the comma-separated secure VIP addresses equals `svip` (case-insensitive).
    pub fn has_secure_vip(&self, svip: &str) -> bool {
        list_contains(self.secure_vip_address.as_deref(), svip)
    }

    /// Checks the fields a registration needs, with the Java server's 400 messages
    /// (`Missing instanceId`, `Missing hostname`...).
    pub fn validate_for_registration(&self) -> Result<(), &'static str> {
        if self.id().trim().is_empty() {
            return Err("Missing instanceId");
        }
        if self.host_name.trim().is_empty() {
            return Err("Missing hostname");
        }
        if self.ip_addr.trim().is_empty() {
            return Err("Missing ip address");
        }
        if self.app.trim().is_empty() {
            return Err("Missing appName");
        }
        let dci = &self.data_center_info;
        if dci.name.trim().is_empty() && dci.class.trim().is_empty() && dci.metadata.is_empty() {
            return Err("Missing dataCenterInfo");
        }
        if dci.name.trim().is_empty() {
            return Err("Missing dataCenterInfo Name");
        }
        Ok(())
    }
}

fn list_contains(list: Option<&str>, wanted: &str) -> bool {
    list.is_some_and(|l| l.split(',').any(|v| v.trim().eq_ignore_ascii_case(wanted)))
}

/// All instances of one application.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Application {
    /// The application name.
    pub name: String,
    /// Its instances.
    pub instances: Vec<InstanceInfo>,
}

/// The registry document (`{"applications": …}`), used for full and delta fetches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applications {
    /// `versions__delta`: increases with every change on the server.
    pub versions_delta: String,
    /// `apps__hashcode`: see [`apps_hashcode`]. For a delta it is the hash of the full registry.
    pub apps_hashcode: String,
    /// The applications.
    pub applications: Vec<Application>,
}

impl Applications {
    /// Every instance of every application.
    pub fn instances(&self) -> impl Iterator<Item = &InstanceInfo> {
        self.applications.iter().flat_map(|a| a.instances.iter())
    }

    /// The application with that name (case-insensitive).
    pub fn application(&self, name: &str) -> Option<&Application> {
        self.applications
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// Recomputes `apps__hashcode` over the instances held.
    pub fn compute_hashcode(&self) -> String {
        apps_hashcode(self.instances().map(|i| i.status))
    }

    /// Applies a delta as the Java client does: `ADDED`/`MODIFIED` replace or insert the instance
    /// (keyed by application and [`InstanceInfo::id`]), `DELETED` removes it; applications left
    /// without instances are dropped. The caller compares [`Applications::compute_hashcode`] with
    /// the delta's `apps__hashcode` afterwards and does a full fetch on mismatch.
    pub fn apply_delta(&mut self, delta: &Applications) {
        for app in &delta.applications {
            for inst in &app.instances {
                let pos = self
                    .applications
                    .iter()
                    .position(|a| a.name.eq_ignore_ascii_case(&app.name));
                match inst.action_type {
                    Some(ActionType::Deleted) => {
                        if let Some(p) = pos {
                            self.applications[p]
                                .instances
                                .retain(|i| i.id() != inst.id());
                        }
                    }
                    _ => {
                        let p = match pos {
                            Some(p) => p,
                            None => {
                                self.applications.push(Application {
                                    name: app.name.clone(),
                                    instances: Vec::new(),
                                });
                                self.applications.len() - 1
                            }
                        };
                        let instances = &mut self.applications[p].instances;
                        match instances.iter_mut().find(|i| i.id() == inst.id()) {
                            Some(slot) => *slot = inst.clone(),
                            None => instances.push(inst.clone()),
                        }
                    }
                }
            }
        }
        self.applications.retain(|a| !a.instances.is_empty());
        self.versions_delta.clone_from(&delta.versions_delta);
    }
}

/// Eureka's `apps__hashcode`: `STATUS_count_` for every status with a non-zero count, sorted by
/// status name. Three `UP` and one `DOWN` give `DOWN_1_UP_3_`; nothing gives `""`.
pub fn apps_hashcode(statuses: impl IntoIterator<Item = InstanceStatus>) -> String {
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for s in statuses {
        *counts.entry(s.as_str()).or_default() += 1;
    }
    let mut out = String::new();
    for (name, count) in counts {
        out.push_str(name);
        out.push('_');
        out.push_str(&count.to_string());
        out.push('_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashcode_sorts_by_status_name() {
        use InstanceStatus::*;
        assert_eq!(apps_hashcode([Up, Down, Up, Up]), "DOWN_1_UP_3_");
        assert_eq!(apps_hashcode([]), "");
        assert_eq!(
            apps_hashcode([Unknown, OutOfService, Starting]),
            "OUT_OF_SERVICE_1_STARTING_1_UNKNOWN_1_"
        );
    }

    #[test]
    fn id_falls_back_to_amazon_then_host() {
        let mut i = InstanceInfo {
            host_name: "h".into(),
            ..Default::default()
        };
        assert_eq!(i.id(), "h");
        i.data_center_info.name = "Amazon".into();
        i.data_center_info
            .metadata
            .insert("instance-id".into(), "i-1".into());
        assert_eq!(i.id(), "i-1");
        i.instance_id = "x".into();
        assert_eq!(i.id(), "x");
    }

    #[test]
    fn status_parse_is_lenient_like_java() {
        assert_eq!(
            InstanceStatus::parse("out_of_service"),
            Some(InstanceStatus::OutOfService)
        );
        assert_eq!(InstanceStatus::parse("bogus"), None);
        assert_eq!(
            InstanceStatus::from_wire_lenient("bogus"),
            InstanceStatus::Unknown
        );
    }

    #[test]
    fn delta_adds_modifies_and_deletes() {
        let inst = |id: &str, status, action| InstanceInfo {
            instance_id: id.into(),
            app: "A".into(),
            status,
            action_type: Some(action),
            ..Default::default()
        };
        let mut apps = Applications {
            applications: vec![Application {
                name: "A".into(),
                instances: vec![inst("1", InstanceStatus::Up, ActionType::Added)],
            }],
            ..Default::default()
        };
        let delta = Applications {
            versions_delta: "7".into(),
            apps_hashcode: "DOWN_1_UP_1_".into(),
            applications: vec![
                Application {
                    name: "A".into(),
                    instances: vec![
                        inst("1", InstanceStatus::Down, ActionType::Modified),
                        inst("2", InstanceStatus::Up, ActionType::Added),
                    ],
                },
                Application {
                    name: "B".into(),
                    instances: vec![inst("3", InstanceStatus::Up, ActionType::Deleted)],
                },
            ],
        };
        apps.apply_delta(&delta);
        assert_eq!(apps.compute_hashcode(), delta.apps_hashcode);
        assert_eq!(apps.versions_delta, "7");
        assert!(apps.application("b").is_none());
        let mut delete = delta.clone();
        delete.applications[0].instances[0].action_type = Some(ActionType::Deleted);
        delete.applications[0].instances.truncate(1);
        apps.apply_delta(&delete);
        assert_eq!(apps.compute_hashcode(), "UP_1_");
    }
}
