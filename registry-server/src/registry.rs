//! The lease table: registrations, renewals, status overrides, eviction with self-preservation,
//! and the delta queue. It is synchronous and takes the current time from `tokio::time`, so the
//! HTTP layer holds its lock only for the few microseconds an operation takes, and tests drive it
//! under paused time.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use palisade_registry_client::model::{
    ActionType, Application, Applications, InstanceInfo, InstanceStatus, LeaseInfo, apps_hashcode,
};
use tokio::time::Instant;

use crate::config::{LeaseExpiry, ServerConfig};

/// The registry key of an application: its upper-cased name, borrowed when it already is
/// (clients send upper-case names, so the heartbeat path does not allocate for it).
fn upper(app: &str) -> std::borrow::Cow<'_, str> {
    if app.bytes().any(|b| b.is_ascii_lowercase()) {
        std::borrow::Cow::Owned(app.to_ascii_uppercase())
    } else {
        std::borrow::Cow::Borrowed(app)
    }
}

/// The outcome of a heartbeat (`PUT apps/{APP}/{ID}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewOutcome {
    /// 200: renewed.
    Renewed,
    /// 404: unknown instance, or the client holds a newer copy: it must re-register.
    NotFound,
    /// 409: a replica sent an older copy; the body is ours.
    Conflict(Box<InstanceInfo>),
}

/// The instance is shared with the delta queue (copy on write), and a renewal only touches
/// `last_renewal`, so heartbeats neither allocate nor copy instances.
struct Lease {
    info: Arc<InstanceInfo>,
    registered_at: Instant,
    last_renewal: Instant,
    duration: Duration,
}

/// A renewal counter per whole minute, like Java's `MeasuredRate`.
struct MeasuredRate {
    bucket_start: Instant,
    current: u64,
    last: u64,
}

impl MeasuredRate {
    fn new(now: Instant) -> Self {
        MeasuredRate {
            bucket_start: now,
            current: 0,
            last: 0,
        }
    }

    fn roll(&mut self, now: Instant) {
        let minute = Duration::from_secs(60);
        let elapsed = now.saturating_duration_since(self.bucket_start);
        if elapsed < minute {
            return;
        }
        let buckets = elapsed.as_secs() / 60;
        self.last = if buckets == 1 { self.current } else { 0 };
        self.current = 0;
        self.bucket_start += minute * u32::try_from(buckets).unwrap_or(u32::MAX);
    }

    fn increment(&mut self, now: Instant) {
        self.roll(now);
        self.current += 1;
    }

    fn last_minute(&mut self, now: Instant) -> u64 {
        self.roll(now);
        self.last
    }
}

/// The state of self-preservation, for the dashboard and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelfPreservation {
    /// Clients expected to renew.
    pub expected_clients: u64,
    /// `numberOfRenewsPerMinThreshold`.
    pub renewals_threshold: u64,
    /// Renewals counted in the last whole minute.
    pub renewals_last_minute: u64,
    /// Whether expired leases are evicted now (false means self-preservation holds them).
    pub lease_expiration_enabled: bool,
}

/// The registry proper.
pub struct Registry {
    config: ServerConfig,
    started: Instant,
    started_wall_ms: i64,
    apps: BTreeMap<String, BTreeMap<String, Lease>>,
    overrides: HashMap<String, (InstanceStatus, Instant)>,
    delta_queue: VecDeque<(Instant, Arc<InstanceInfo>)>,
    version: u64,
    renewals: MeasuredRate,
    renewals_total: u64,
    expected_clients: u64,
    threshold: u64,
    last_threshold_update: Instant,
    last_tick: Option<Instant>,
    rng: u64,
    /// `(app, status)` gauges published last time, so vanished ones are zeroed.
    #[cfg(feature = "metrics")]
    published_gauges: std::collections::HashSet<(String, InstanceStatus)>,
}

impl Registry {
    /// An empty registry. `wall_clock_ms` is the epoch time in milliseconds at this moment; wire
    /// timestamps are derived from it and the tokio clock.
    pub fn new(config: ServerConfig, wall_clock_ms: i64) -> Self {
        let now = Instant::now();
        let mut r = Registry {
            rng: config.rng_seed,
            expected_clients: config.expected_clients_at_start,
            config,
            started: now,
            started_wall_ms: wall_clock_ms,
            apps: BTreeMap::new(),
            overrides: HashMap::new(),
            delta_queue: VecDeque::new(),
            version: 0,
            renewals: MeasuredRate::new(now),
            renewals_total: 0,
            threshold: 0,
            last_threshold_update: now,
            last_tick: None,
            #[cfg(feature = "metrics")]
            published_gauges: std::collections::HashSet::new(),
        };
        r.update_threshold();
        r
    }

    /// The configuration in force.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Epoch milliseconds now, on the registry's clock.
    pub fn wall_ms(&self, now: Instant) -> i64 {
        let since = now.saturating_duration_since(self.started).as_millis();
        self.started_wall_ms
            .saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
    }

    /// A counter that changes with every write; the response cache keys on it.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Renewals since start.
    pub fn renewals_total(&self) -> u64 {
        self.renewals_total
    }

    fn update_threshold(&mut self) {
        let per_min = 60.0 / self.config.expected_client_renewal_interval.as_secs_f64();
        self.threshold =
            (self.expected_clients as f64 * per_min * self.config.renewal_percent_threshold) as u64;
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64: tiny, seedable, good enough to spread evictions.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn record_change(&mut self, now: Instant, info: &Arc<InstanceInfo>) {
        self.version += 1;
        self.delta_queue.push_back((now, Arc::clone(info)));
        self.prune_delta(now);
    }

    fn prune_delta(&mut self, now: Instant) {
        let retention = self.config.delta_retention;
        while let Some((at, _)) = self.delta_queue.front() {
            if now.saturating_duration_since(*at) > retention {
                self.delta_queue.pop_front();
            } else {
                break;
            }
        }
    }

    fn override_for(&mut self, id: &str, now: Instant) -> Option<InstanceStatus> {
        let ttl = self.config.status_override_ttl;
        match self.overrides.get_mut(id) {
            Some((_, used)) if now.saturating_duration_since(*used) > ttl => {
                self.overrides.remove(id);
                None
            }
            Some((status, used)) => {
                *used = now;
                Some(*status)
            }
            None => None,
        }
    }

    /// Eureka's `FirstMatchWinsCompositeRule`: DownOrStarting, OverrideExists, LeaseExists,
    /// AlwaysMatch.
    fn effective_status(
        &mut self,
        reported: InstanceStatus,
        id: &str,
        existing: Option<InstanceStatus>,
        replication: bool,
        now: Instant,
    ) -> InstanceStatus {
        if reported != InstanceStatus::Up && reported != InstanceStatus::OutOfService {
            return reported;
        }
        if let Some(s) = self.override_for(id, now) {
            return s;
        }
        if !replication
            && let Some(existing) = existing
            && (existing == InstanceStatus::Up || existing == InstanceStatus::OutOfService)
        {
            return existing;
        }
        reported
    }

    /// Registers (or re-registers) an instance. The caller has validated it and upper-cased
    /// `info.app`.
    pub fn register(&mut self, mut info: InstanceInfo, replication: bool) {
        let now = Instant::now();
        let wall = self.wall_ms(now);
        let app = info.app.to_ascii_uppercase();
        info.app.clone_from(&app);
        let id = info.id().to_owned();
        if info.instance_id.is_empty() {
            info.instance_id.clone_from(&id);
        }
        let existing = self.apps.get(&app).and_then(|m| m.get(&id));
        let existing_status = existing.map(|l| l.info.status);
        let registered_at = existing.map(|l| l.registered_at);
        let existing_up_ts = existing
            .and_then(|l| l.info.lease_info)
            .map(|l| l.service_up_timestamp)
            .unwrap_or(0);
        if let Some(l) = existing
            && l.info.last_dirty_timestamp > info.last_dirty_timestamp
        {
            // Our copy is newer: keep it (Java logs a warning and uses the existing one).
            info = InstanceInfo::clone(&l.info);
        }
        if existing.is_none() {
            self.expected_clients += 1;
            self.update_threshold();
        }
        if info.overridden_status != InstanceStatus::Unknown {
            self.overrides
                .entry(id.clone())
                .or_insert((info.overridden_status, now));
        }
        if let Some(s) = self.override_for(&id, now) {
            info.overridden_status = s;
        }
        info.status = self.effective_status(info.status, &id, existing_status, replication, now);
        let terms = info.lease_info.unwrap_or_default();
        let duration = Duration::from_secs(u64::from(if terms.duration_in_secs == 0 {
            90
        } else {
            terms.duration_in_secs
        }));
        let registered_at = registered_at.unwrap_or(now);
        let service_up = if existing_up_ts > 0 {
            existing_up_ts
        } else if info.status == InstanceStatus::Up {
            wall
        } else {
            0
        };
        info.lease_info = Some(LeaseInfo {
            renewal_interval_in_secs: terms.renewal_interval_in_secs,
            duration_in_secs: u32::try_from(duration.as_secs()).unwrap_or(u32::MAX),
            registration_timestamp: self.wall_ms(registered_at),
            last_renewal_timestamp: wall,
            eviction_timestamp: 0,
            service_up_timestamp: service_up,
        });
        info.action_type = Some(ActionType::Added);
        info.last_updated_timestamp = wall;
        let info = Arc::new(info);
        self.record_change(now, &info);
        tracing::debug!(app = %app, id = %id, status = %info.status, "registered");
        self.apps.entry(app).or_default().insert(
            id,
            Lease {
                info,
                registered_at,
                last_renewal: now,
                duration,
            },
        );
    }

    /// A heartbeat. `last_dirty` is the client's `lastDirtyTimestamp` query parameter and
    /// `overridden` its `overriddenstatus` parameter (only used on replicated calls).
    pub fn renew(
        &mut self,
        app: &str,
        id: &str,
        last_dirty: Option<i64>,
        overridden: Option<InstanceStatus>,
        replication: bool,
    ) -> RenewOutcome {
        let now = Instant::now();
        let app = upper(app);
        let app = app.as_ref();
        let Some((stored_status, stored_dirty)) = self
            .apps
            .get(app)
            .and_then(|m| m.get(id))
            .map(|l| (l.info.status, l.info.last_dirty_timestamp))
        else {
            return RenewOutcome::NotFound;
        };
        if !replication {
            let status = self.effective_status(stored_status, id, Some(stored_status), false, now);
            if status == InstanceStatus::Unknown {
                // Java: an UNKNOWN computed status means the override was deleted: force a
                // re-registration.
                return RenewOutcome::NotFound;
            }
            if status != stored_status
                && let Some(l) = self.apps.get_mut(app).and_then(|m| m.get_mut(id))
            {
                Arc::make_mut(&mut l.info).status = status;
            }
        }
        self.renewals.increment(now);
        self.renewals_total += 1;
        #[cfg(feature = "metrics")]
        metrics::counter!("palisade_registry_renewals_total").increment(1);
        if let Some(l) = self.apps.get_mut(app).and_then(|m| m.get_mut(id)) {
            l.last_renewal = now;
        }
        match last_dirty {
            Some(theirs) if theirs > stored_dirty => {
                if replication
                    && let Some(s) = overridden
                    && s != InstanceStatus::Unknown
                {
                    self.overrides.entry(id.to_owned()).or_insert((s, now));
                }
                RenewOutcome::NotFound
            }
            Some(theirs) if theirs < stored_dirty && replication => {
                let info = self.instance(app, id).expect("lease looked up above");
                RenewOutcome::Conflict(Box::new(info))
            }
            _ => RenewOutcome::Renewed,
        }
    }

    /// Cancels (deregisters) an instance. Returns false when it was unknown.
    pub fn cancel(&mut self, app: &str, id: &str) -> bool {
        let now = Instant::now();
        let removed = self.remove(&upper(app), id, now);
        if removed {
            self.expected_clients = self.expected_clients.saturating_sub(1);
            self.update_threshold();
        }
        removed
    }

    fn remove(&mut self, app: &str, id: &str, now: Instant) -> bool {
        let wall = self.wall_ms(now);
        let Some(m) = self.apps.get_mut(app) else {
            return false;
        };
        let Some(mut lease) = m.remove(id) else {
            return false;
        };
        if m.is_empty() {
            self.apps.remove(app);
        }
        self.overrides.remove(id);
        let renewed = self.wall_ms(lease.last_renewal);
        let info = Arc::make_mut(&mut lease.info);
        info.action_type = Some(ActionType::Deleted);
        info.last_updated_timestamp = wall;
        if let Some(li) = info.lease_info.as_mut() {
            li.eviction_timestamp = wall;
            li.last_renewal_timestamp = renewed;
        }
        self.record_change(now, &lease.info);
        true
    }

    /// `PUT …/status?value=`: stores an override. Returns false when the instance is unknown.
    pub fn set_status_override(
        &mut self,
        app: &str,
        id: &str,
        status: InstanceStatus,
        last_dirty: Option<i64>,
    ) -> bool {
        let now = Instant::now();
        let wall = self.wall_ms(now);
        let Some(l) = self
            .apps
            .get_mut(upper(app).as_ref())
            .and_then(|m| m.get_mut(id))
        else {
            return false;
        };
        let info = Arc::make_mut(&mut l.info);
        info.overridden_status = status;
        info.status = status;
        if let Some(d) = last_dirty
            && d > info.last_dirty_timestamp
        {
            info.last_dirty_timestamp = d;
        }
        if status == InstanceStatus::Up
            && let Some(li) = info.lease_info.as_mut()
            && li.service_up_timestamp == 0
        {
            li.service_up_timestamp = wall;
        }
        info.action_type = Some(ActionType::Modified);
        info.last_updated_timestamp = wall;
        let snapshot = Arc::clone(&l.info);
        self.overrides.insert(id.to_owned(), (status, now));
        self.record_change(now, &snapshot);
        true
    }

    /// `DELETE …/status[?value=]`: removes the override and sets the status to `value`
    /// (`UNKNOWN` when absent). Returns false when the instance is unknown.
    pub fn delete_status_override(
        &mut self,
        app: &str,
        id: &str,
        value: Option<InstanceStatus>,
        last_dirty: Option<i64>,
    ) -> bool {
        let now = Instant::now();
        let wall = self.wall_ms(now);
        let Some(l) = self
            .apps
            .get_mut(upper(app).as_ref())
            .and_then(|m| m.get_mut(id))
        else {
            return false;
        };
        let info = Arc::make_mut(&mut l.info);
        info.overridden_status = InstanceStatus::Unknown;
        info.status = value.unwrap_or(InstanceStatus::Unknown);
        if let Some(d) = last_dirty
            && d > info.last_dirty_timestamp
        {
            info.last_dirty_timestamp = d;
        }
        info.action_type = Some(ActionType::Modified);
        info.last_updated_timestamp = wall;
        let snapshot = Arc::clone(&l.info);
        self.overrides.remove(id);
        self.record_change(now, &snapshot);
        true
    }

    /// `PUT …/metadata?k=v`: merges into the metadata. Returns false when the instance is unknown.
    pub fn update_metadata(&mut self, app: &str, id: &str, pairs: &[(String, String)]) -> bool {
        let now = Instant::now();
        let wall = self.wall_ms(now);
        let Some(l) = self
            .apps
            .get_mut(upper(app).as_ref())
            .and_then(|m| m.get_mut(id))
        else {
            return false;
        };
        let info = Arc::make_mut(&mut l.info);
        for (k, v) in pairs {
            info.metadata.insert(k.clone(), v.clone());
        }
        info.action_type = Some(ActionType::Modified);
        info.last_updated_timestamp = wall;
        let snapshot = Arc::clone(&l.info);
        self.record_change(now, &snapshot);
        true
    }

    /// A copy of the instance with its lease's last renewal filled in.
    fn decorate(&self, l: &Lease) -> InstanceInfo {
        let mut info = InstanceInfo::clone(&l.info);
        if let Some(li) = info.lease_info.as_mut() {
            li.last_renewal_timestamp = self.wall_ms(l.last_renewal);
        }
        info
    }

    /// One instance.
    pub fn instance(&self, app: &str, id: &str) -> Option<InstanceInfo> {
        self.apps
            .get(upper(app).as_ref())
            .and_then(|m| m.get(id))
            .map(|l| self.decorate(l))
    }

    /// One instance by id, in any application (`GET instances/{ID}`).
    pub fn instance_by_id(&self, id: &str) -> Option<InstanceInfo> {
        self.apps
            .values()
            .find_map(|m| m.get(id))
            .map(|l| self.decorate(l))
    }

    /// One application.
    pub fn application(&self, app: &str) -> Option<Application> {
        self.apps.get(upper(app).as_ref()).map(|m| Application {
            name: app.to_ascii_uppercase(),
            instances: m.values().map(|l| self.decorate(l)).collect(),
        })
    }

    /// The full registry, with its hash code.
    pub fn applications(&self) -> Applications {
        self.filtered(|_| true)
    }

    /// The instances whose VIP (or secure VIP) list contains `vip`.
    pub fn by_vip(&self, vip: &str, secure: bool) -> Applications {
        self.filtered(|i| {
            if secure {
                i.has_secure_vip(vip)
            } else {
                i.has_vip(vip)
            }
        })
    }

    fn filtered(&self, keep: impl Fn(&InstanceInfo) -> bool) -> Applications {
        let applications: Vec<Application> = self
            .apps
            .iter()
            .map(|(name, m)| Application {
                name: name.clone(),
                instances: m
                    .values()
                    .filter(|l| keep(&l.info))
                    .map(|l| self.decorate(l))
                    .collect(),
            })
            .filter(|a| !a.instances.is_empty())
            .collect();
        let mut apps = Applications {
            versions_delta: self.version.to_string(),
            apps_hashcode: String::new(),
            applications,
        };
        apps.apps_hashcode = apps.compute_hashcode();
        apps
    }

    /// The delta: the latest state of every instance changed within the retention window, with
    /// the hash code of the **full** registry.
    pub fn delta(&mut self) -> Applications {
        self.prune_delta(Instant::now());
        let mut by_app: BTreeMap<&str, BTreeMap<&str, &InstanceInfo>> = BTreeMap::new();
        for (_, info) in &self.delta_queue {
            by_app
                .entry(info.app.as_str())
                .or_default()
                .insert(info.id(), &**info);
        }
        Applications {
            versions_delta: self.version.to_string(),
            apps_hashcode: apps_hashcode(
                self.apps
                    .values()
                    .flat_map(|m| m.values().map(|l| l.info.status)),
            ),
            applications: by_app
                .into_iter()
                .map(|(name, m)| Application {
                    name: name.to_owned(),
                    instances: m.into_values().cloned().collect(),
                })
                .collect(),
        }
    }

    /// Active status overrides (`GET serverinfo/statusoverrides`).
    pub fn status_overrides(&self) -> BTreeMap<String, InstanceStatus> {
        self.overrides
            .iter()
            .map(|(k, (s, _))| (k.clone(), *s))
            .collect()
    }

    /// Number of registered instances.
    pub fn len(&self) -> usize {
        self.apps.values().map(BTreeMap::len).sum()
    }

    /// Whether no instance is registered.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    /// The self-preservation figures now.
    pub fn self_preservation(&mut self) -> SelfPreservation {
        let now = Instant::now();
        let renewals_last_minute = self.renewals.last_minute(now);
        SelfPreservation {
            expected_clients: self.expected_clients,
            renewals_threshold: self.threshold,
            renewals_last_minute,
            lease_expiration_enabled: !self.config.enable_self_preservation
                || (self.threshold > 0 && renewals_last_minute > self.threshold),
        }
    }

    /// The periodic threshold update: adopt the current instance count as the expected number of
    /// clients unless it dropped below the renewal threshold (a mass drop is what
    /// self-preservation guards against, so it never lowers the expectation).
    pub fn update_expected_clients(&mut self) {
        let now = Instant::now();
        let count = self.len() as u64;
        if !self.config.enable_self_preservation
            || count as f64 > self.config.renewal_percent_threshold * self.expected_clients as f64
        {
            self.expected_clients = count;
            self.update_threshold();
        }
        self.last_threshold_update = now;
    }

    /// Runs the periodic duties that are due: the threshold update, then eviction. Returns the
    /// evicted `(app, id)` pairs.
    pub fn tick(&mut self) -> Vec<(String, String)> {
        let now = Instant::now();
        if now.saturating_duration_since(self.last_threshold_update)
            >= self.config.renewal_threshold_update_interval
        {
            self.update_expected_clients();
        }
        // Java's compensation: when the timer itself ran late (GC pause, stalled host), leases
        // get that much longer, since their clients could not be served in the meantime either.
        let compensation = self.last_tick.map_or(Duration::ZERO, |last| {
            now.saturating_duration_since(last)
                .saturating_sub(self.config.eviction_interval)
        });
        self.last_tick = Some(now);
        let evicted = self.evict_with(compensation);
        #[cfg(feature = "metrics")]
        self.publish_instance_gauges();
        evicted
    }

    /// Sets `palisade_registry_instances{app,status}` for every application and status present,
    /// and zeroes the ones that disappeared since the last call.
    #[cfg(feature = "metrics")]
    pub fn publish_instance_gauges(&mut self) {
        let mut counts: HashMap<(String, InstanceStatus), u64> = HashMap::new();
        for (app, m) in &self.apps {
            for l in m.values() {
                *counts.entry((app.clone(), l.info.status)).or_default() += 1;
            }
        }
        for key in self.published_gauges.drain() {
            counts.entry(key).or_insert(0);
        }
        for ((app, status), n) in counts {
            metrics::gauge!("palisade_registry_instances", "app" => app.clone(), "status" => status.as_str())
                .set(n as f64);
            if n > 0 {
                self.published_gauges.insert((app, status));
            }
        }
    }

    fn is_expired(&self, lease: &Lease, now: Instant, compensation: Duration) -> bool {
        let factor = match self.config.lease_expiry {
            LeaseExpiry::Duration => 1,
            LeaseExpiry::JavaDoubleDuration => 2,
        };
        now.saturating_duration_since(lease.last_renewal) > lease.duration * factor + compensation
    }

    /// Evicts expired leases, unless self-preservation holds them. Evicts at most 15 % of the
    /// registry per run (`size - size × 0.85`), picked at random, like Java.
    pub fn evict(&mut self) -> Vec<(String, String)> {
        self.evict_with(Duration::ZERO)
    }

    fn evict_with(&mut self, compensation: Duration) -> Vec<(String, String)> {
        let now = Instant::now();
        if !self.self_preservation().lease_expiration_enabled {
            tracing::debug!("self-preservation: lease expiration disabled, not evicting");
            return Vec::new();
        }
        let mut expired: Vec<(String, String)> = self
            .apps
            .iter()
            .flat_map(|(app, m)| {
                m.iter()
                    .filter(|(_, l)| self.is_expired(l, now, compensation))
                    .map(|(id, _)| (app.clone(), id.clone()))
            })
            .collect();
        let size = self.len();
        let limit = size - (size as f64 * self.config.renewal_percent_threshold) as usize;
        let to_evict = expired.len().min(limit);
        // Partial Fisher-Yates: the first `to_evict` entries become a random sample.
        for i in 0..to_evict {
            let span = (expired.len() - i) as u64;
            let j = i + usize::try_from(self.next_random() % span).unwrap_or(0);
            expired.swap(i, j);
        }
        expired.truncate(to_evict);
        for (app, id) in &expired {
            if self.remove(app, id, now) {
                tracing::info!(app = %app, id = %id, "instance evicted: lease expired");
            }
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_registry_client::model::{DataCenterInfo, PortInfo};

    fn inst(app: &str, id: &str) -> InstanceInfo {
        InstanceInfo {
            instance_id: id.into(),
            host_name: "localhost".into(),
            app: app.into(),
            ip_addr: "127.0.0.1".into(),
            status: InstanceStatus::Up,
            port: Some(PortInfo::enabled(8080)),
            data_center_info: DataCenterInfo::my_own(),
            last_dirty_timestamp: 100,
            ..Default::default()
        }
    }

    fn no_preservation() -> ServerConfig {
        ServerConfig {
            enable_self_preservation: false,
            ..Default::default()
        }
    }

    #[cfg(feature = "metrics")]
    #[test]
    fn publishes_renewals_and_instance_gauges_through_the_metrics_facade() {
        use std::sync::Mutex;
        use std::sync::atomic::{AtomicU64, Ordering};

        use metrics::{
            Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
        };

        #[derive(Default)]
        struct Values(Mutex<HashMap<String, Arc<AtomicU64>>>);
        impl Values {
            fn slot(&self, key: &Key) -> Arc<AtomicU64> {
                let mut labels: Vec<String> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                labels.sort();
                let name = format!("{}{{{}}}", key.name(), labels.join(","));
                self.0.lock().unwrap().entry(name).or_default().clone()
            }
            fn get(&self, name: &str) -> Option<u64> {
                self.0
                    .lock()
                    .unwrap()
                    .get(name)
                    .map(|v| v.load(Ordering::Relaxed))
            }
        }
        impl Recorder for Values {
            fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
                Counter::from_arc(self.slot(key))
            }
            fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
                Gauge::from_arc(self.slot(key))
            }
            fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
                Histogram::noop()
            }
        }

        let values = Values::default();
        metrics::with_local_recorder(&values, || {
            let mut r = Registry::new(ServerConfig::default(), 1_000);
            r.register(inst("A", "a1"), false);
            r.register(inst("A", "a2"), false);
            r.renew("A", "a1", None, None, false);
            r.renew("A", "a2", None, None, false);
            r.renew("A", "zz", None, None, false);
            r.tick();
        });
        let gauge = |name: &str| values.get(name).map(f64::from_bits);
        assert_eq!(values.get("palisade_registry_renewals_total{}"), Some(2));
        assert_eq!(
            gauge("palisade_registry_instances{app=A,status=UP}"),
            Some(2.0)
        );
        metrics::with_local_recorder(&values, || {
            let mut r = Registry::new(ServerConfig::default(), 1_000);
            r.register(inst("A", "a1"), false);
            r.tick();
            r.set_status_override("A", "a1", InstanceStatus::OutOfService, None);
            r.tick();
        });
        assert_eq!(
            gauge("palisade_registry_instances{app=A,status=UP}"),
            Some(0.0),
            "zeroed"
        );
        assert_eq!(
            gauge("palisade_registry_instances{app=A,status=OUT_OF_SERVICE}"),
            Some(1.0)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn register_renew_cancel() {
        let mut r = Registry::new(ServerConfig::default(), 1_000);
        r.register(inst("orders", "a"), false);
        let got = r.instance("ORDERS", "a").unwrap();
        assert_eq!(got.app, "ORDERS");
        assert_eq!(got.action_type, Some(ActionType::Added));
        assert_eq!(
            r.renew("orders", "a", None, None, false),
            RenewOutcome::Renewed
        );
        assert_eq!(
            r.renew("orders", "b", None, None, false),
            RenewOutcome::NotFound
        );
        assert!(r.cancel("ORDERS", "a"));
        assert!(!r.cancel("ORDERS", "a"));
        assert!(r.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn dirty_timestamp_reconciliation() {
        let mut r = Registry::new(ServerConfig::default(), 1_000);
        r.register(inst("A", "a"), false);
        // Client holds a newer copy: 404 so it re-registers.
        assert_eq!(
            r.renew("A", "a", Some(200), None, false),
            RenewOutcome::NotFound
        );
        // Client holds an older copy: 200 for a client, 409 with ours for a replica.
        assert_eq!(
            r.renew("A", "a", Some(50), None, false),
            RenewOutcome::Renewed
        );
        match r.renew("A", "a", Some(50), None, true) {
            RenewOutcome::Conflict(info) => assert_eq!(info.last_dirty_timestamp, 100),
            other => panic!("expected conflict, got {other:?}"),
        }
        // Registering an older copy over a newer one keeps the newer one.
        let mut old = inst("A", "a");
        old.last_dirty_timestamp = 10;
        old.metadata.insert("stale".into(), "yes".into());
        r.register(old, false);
        assert!(r.instance("A", "a").unwrap().metadata.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn override_beats_reported_up_but_not_down() {
        let mut r = Registry::new(ServerConfig::default(), 1_000);
        r.register(inst("A", "a"), false);
        assert!(r.set_status_override("A", "a", InstanceStatus::OutOfService, None));
        // A re-registration reporting UP keeps the override.
        r.register(inst("A", "a"), false);
        let i = r.instance("A", "a").unwrap();
        assert_eq!(i.status, InstanceStatus::OutOfService);
        assert_eq!(i.overridden_status, InstanceStatus::OutOfService);
        assert_eq!(
            r.status_overrides().get("a"),
            Some(&InstanceStatus::OutOfService)
        );
        // A client-reported DOWN wins over the override (DownOrStarting rule).
        let mut down = inst("A", "a");
        down.status = InstanceStatus::Down;
        r.register(down, false);
        assert_eq!(r.instance("A", "a").unwrap().status, InstanceStatus::Down);
        // Removing the override with value=UP sets UP.
        assert!(r.delete_status_override("A", "a", Some(InstanceStatus::Up), None));
        let i = r.instance("A", "a").unwrap();
        assert_eq!(i.status, InstanceStatus::Up);
        assert_eq!(i.overridden_status, InstanceStatus::Unknown);
        assert!(r.status_overrides().is_empty());
        // Without a value the status becomes UNKNOWN and the next heartbeat forces re-registration.
        assert!(r.delete_status_override("A", "a", None, None));
        assert_eq!(r.renew("A", "a", None, None, false), RenewOutcome::NotFound);
    }

    #[tokio::test(start_paused = true)]
    async fn existing_lease_status_is_kept_on_non_replicated_register() {
        let mut r = Registry::new(ServerConfig::default(), 1_000);
        let mut oos = inst("A", "a");
        oos.status = InstanceStatus::OutOfService;
        r.register(oos, false);
        r.register(inst("A", "a"), false);
        assert_eq!(
            r.instance("A", "a").unwrap().status,
            InstanceStatus::OutOfService
        );
        // A replicated register takes the reported status.
        r.register(inst("A", "a"), true);
        assert_eq!(r.instance("A", "a").unwrap().status, InstanceStatus::Up);
    }

    #[tokio::test(start_paused = true)]
    async fn leases_expire_after_one_duration_by_default() {
        let mut r = Registry::new(no_preservation(), 1_000);
        r.register(inst("A", "a"), false);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert!(r.evict().is_empty(), "not expired at exactly 90 s");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(r.evict(), vec![("A".to_owned(), "a".to_owned())]);
        let delta = r.delta();
        let last = &delta.applications[0].instances[0];
        assert_eq!(last.action_type, Some(ActionType::Deleted));
        assert!(last.lease_info.unwrap().eviction_timestamp > 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_eviction_timer_extends_leases_by_its_delay() {
        let mut r = Registry::new(no_preservation(), 1_000);
        r.register(inst("A", "a"), false);
        assert!(r.tick().is_empty());
        // The timer fires 100 s late (a stalled host): 160 s since the last renewal, but 100 s of
        // it were the server's own delay, so the 90 s lease is not expired yet.
        tokio::time::advance(Duration::from_secs(160)).await;
        assert!(r.tick().is_empty());
        // On time from then on: 60 s later the lease (220 s old) goes.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(r.tick().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn java_double_duration_mode_keeps_the_lease_twice_as_long() {
        let cfg = ServerConfig {
            lease_expiry: LeaseExpiry::JavaDoubleDuration,
            ..no_preservation()
        };
        let mut r = Registry::new(cfg, 1_000);
        r.register(inst("A", "a"), false);
        tokio::time::advance(Duration::from_secs(179)).await;
        assert!(r.evict().is_empty());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(r.evict().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn renewals_keep_the_lease() {
        let mut r = Registry::new(no_preservation(), 1_000);
        r.register(inst("A", "a"), false);
        for _ in 0..10 {
            tokio::time::advance(Duration::from_secs(30)).await;
            assert_eq!(r.renew("A", "a", None, None, false), RenewOutcome::Renewed);
            assert!(r.evict().is_empty());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn eviction_takes_at_most_15_percent_per_run() {
        let mut r = Registry::new(no_preservation(), 1_000);
        for i in 0..100 {
            r.register(inst("A", &format!("i{i}")), false);
        }
        tokio::time::advance(Duration::from_secs(120)).await;
        assert_eq!(r.evict().len(), 15);
        assert_eq!(r.len(), 85);
        // 85 - (int)(85 * 0.85) = 85 - 72 = 13
        assert_eq!(r.evict().len(), 13);
    }

    #[tokio::test(start_paused = true)]
    async fn self_preservation_stops_eviction_when_renewals_drop() {
        let mut r = Registry::new(ServerConfig::default(), 1_000);
        for i in 0..10 {
            r.register(inst("A", &format!("i{i}")), false);
        }
        // 1 at start + 10 registrations: threshold = (int)(11 * 2 * 0.85) = 18.
        let sp = r.self_preservation();
        assert_eq!(sp.expected_clients, 11);
        assert_eq!(sp.renewals_threshold, 18);
        // A healthy first minute: 10 instances renew twice (t = 20 s, 40 s) = 20 renewals > 18.
        for _ in 0..2 {
            tokio::time::advance(Duration::from_secs(20)).await;
            for i in 0..10 {
                r.renew("A", &format!("i{i}"), None, None, false);
            }
        }
        assert!(
            !r.self_preservation().lease_expiration_enabled,
            "no whole minute yet"
        );
        tokio::time::advance(Duration::from_secs(21)).await;
        assert_eq!(r.self_preservation().renewals_last_minute, 20);
        assert!(r.self_preservation().lease_expiration_enabled);
        // Then nobody renews (a network partition): the next minute counts 0 renewals, so the
        // registry holds on to every lease even though they all expired.
        tokio::time::advance(Duration::from_secs(120)).await;
        let sp = r.self_preservation();
        assert_eq!(sp.renewals_last_minute, 0);
        assert!(!sp.lease_expiration_enabled);
        assert!(r.evict().is_empty());
        assert_eq!(r.len(), 10);
        // The periodic update does not lower the expectation on a mass drop...
        r.update_expected_clients();
        assert_eq!(r.self_preservation().expected_clients, 10);
    }

    #[tokio::test(start_paused = true)]
    async fn delta_keeps_changes_for_the_retention_window() {
        let mut r = Registry::new(ServerConfig::default(), 1_000);
        r.register(inst("A", "a"), false);
        r.register(inst("B", "b"), false);
        let d = r.delta();
        assert_eq!(d.applications.len(), 2);
        assert_eq!(d.apps_hashcode, "UP_2_");
        tokio::time::advance(Duration::from_secs(100)).await;
        r.set_status_override("A", "a", InstanceStatus::OutOfService, None);
        let d = r.delta();
        assert_eq!(d.apps_hashcode, "OUT_OF_SERVICE_1_UP_1_");
        let a = &d.application("A").unwrap().instances;
        assert_eq!(a.len(), 1, "latest state per instance");
        assert_eq!(a[0].action_type, Some(ActionType::Modified));
        tokio::time::advance(Duration::from_secs(81)).await;
        let d = r.delta();
        assert!(d.application("B").is_none(), "older than 180 s");
        assert!(d.application("A").is_some());
        tokio::time::advance(Duration::from_secs(100)).await;
        assert!(r.delta().applications.is_empty());
        assert_eq!(r.delta().apps_hashcode, "OUT_OF_SERVICE_1_UP_1_");
    }

    #[tokio::test(start_paused = true)]
    async fn metadata_merges_and_vips_filter() {
        let mut r = Registry::new(ServerConfig::default(), 1_000);
        let mut a = inst("A", "a");
        a.vip_address = Some("orders,orders-v2".into());
        r.register(a, false);
        r.register(inst("B", "b"), false);
        assert!(r.update_metadata("A", "a", &[("k".into(), "v".into())]));
        assert_eq!(r.instance("A", "a").unwrap().metadata["k"], "v");
        assert!(!r.update_metadata("A", "zz", &[]));
        assert_eq!(r.by_vip("ORDERS-V2", false).applications.len(), 1);
        assert!(r.by_vip("orders", true).applications.is_empty());
        assert_eq!(r.instance_by_id("b").unwrap().app, "B");
    }
}
