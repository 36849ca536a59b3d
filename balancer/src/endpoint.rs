//! Endpoints: a service plus the metadata the policies read (zone, weight, breaker).

use std::fmt;
use std::sync::Arc;

use palisade_breaker::State;

use crate::health::HealthFlag;
use palisade_breaker::circuit::{Handle, Listener};

/// What the balancer knows about an endpoint besides its service.
///
/// ```
/// use palisade_balancer::Metadata;
/// let m = Metadata::new().zone("us-east-1a").weight(3);
/// assert_eq!(m.zone_name(), Some("us-east-1a"));
/// assert_eq!(m.weight_value(), 3);
/// ```
#[derive(Clone)]
pub struct Metadata {
    zone: Option<Arc<str>>,
    weight: u32,
    breaker: Option<Arc<dyn BreakerProbe>>,
    health: Option<HealthFlag>,
}

impl Default for Metadata {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metadata")
            .field("zone", &self.zone)
            .field("weight", &self.weight)
            .field("breaker", &self.breaker.as_ref().map(|b| b.state()))
            .field("healthy", &self.health.as_ref().map(HealthFlag::is_healthy))
            .finish()
    }
}

impl Metadata {
    /// No zone, weight 1, no breaker.
    pub fn new() -> Self {
        Self {
            zone: None,
            weight: 1,
            breaker: None,
            health: None,
        }
    }

    /// Sets the zone (availability zone, rack...).
    #[must_use]
    pub fn zone(mut self, zone: impl Into<Arc<str>>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// Sets the weight (at least 1; 0 is raised to 1). Weighted policies send traffic in
    /// proportion to it; P2C policies divide the load by it.
    #[must_use]
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight.max(1);
        self
    }

    /// Routes around the endpoint while this circuit breaker does not admit calls (see
    /// [`BreakerProbe`]). The breaker is usually the one wrapping this endpoint's service.
    #[must_use]
    pub fn breaker<L: Listener + Send + Sync + 'static>(mut self, handle: Handle<L>) -> Self {
        self.breaker = Some(Arc::new(handle));
        self
    }

    /// Routes around the endpoint while `probe` says it does not admit calls.
    #[must_use]
    pub fn breaker_probe(mut self, probe: Arc<dyn BreakerProbe>) -> Self {
        self.breaker = Some(probe);
        self
    }

    /// Routes around the endpoint while its active health checks fail (see
    /// [`health`](crate::health)).
    #[must_use]
    pub fn health(mut self, flag: HealthFlag) -> Self {
        self.health = Some(flag);
        self
    }

    /// Whether the endpoint passes its active health checks (true without checks).
    pub fn healthy(&self) -> bool {
        self.health.as_ref().is_none_or(HealthFlag::is_healthy)
    }

    /// Neither its breaker nor its health checks keep it out.
    pub(crate) fn available(&self) -> bool {
        self.healthy() && self.breaker_admits()
    }

    /// The zone, if any.
    pub fn zone_name(&self) -> Option<&str> {
        self.zone.as_deref()
    }

    /// The weight (at least 1).
    pub fn weight_value(&self) -> u32 {
        self.weight
    }

    /// Whether the endpoint's breaker (if any) admits calls now.
    pub fn breaker_admits(&self) -> bool {
        self.breaker.as_ref().is_none_or(|b| b.admits())
    }

    /// The endpoint's breaker state, if it has a breaker.
    pub fn breaker_state(&self) -> Option<State> {
        self.breaker.as_ref().map(|b| b.state())
    }

    /// Whether availability can change without the balancer seeing it (breaker or checks).
    pub(crate) fn has_breaker(&self) -> bool {
        self.breaker.is_some() || self.health.is_some()
    }
}

/// Tells the balancer whether an endpoint's circuit breaker admits calls.
///
/// The breaker's service answers `poll_ready` with `Ready` even when it is open (it rejects in
/// `call`, without waiting on the dependency), so readiness alone would keep routing requests to
/// an open breaker that fails them all. The balancer therefore asks the breaker's handle before it
/// picks: an endpoint whose breaker does not admit is left out of the candidates, the way a
/// not-ready endpoint is.
pub trait BreakerProbe: Send + Sync {
    /// The breaker's state.
    fn state(&self) -> State;

    /// Whether a call sent now would be admitted.
    fn admits(&self) -> bool;
}

impl<L: Listener + Send + Sync + 'static> BreakerProbe for Handle<L> {
    fn state(&self) -> State {
        Handle::state(self)
    }

    /// The breaker's own answer ([`Handle::admits`]): `Open` and `ForcedOpen` never admit,
    /// `HalfOpen` admits while a probe slot is free.
    fn admits(&self) -> bool {
        Handle::admits(self)
    }
}

/// A service with its [`Metadata`], as a [`Discover`](tower::discover::Discover) yields it to a
/// [`Balance`](crate::Balance).
#[derive(Debug, Clone)]
pub struct Endpoint<S> {
    /// The service that carries requests to the endpoint.
    pub service: S,
    /// Zone, weight and breaker.
    pub metadata: Metadata,
}

impl<S> Endpoint<S> {
    /// An endpoint with default metadata.
    pub fn new(service: S) -> Self {
        Self {
            service,
            metadata: Metadata::new(),
        }
    }

    /// An endpoint with `metadata`.
    pub fn with_metadata(service: S, metadata: Metadata) -> Self {
        Self { service, metadata }
    }
}

impl<S> From<S> for Endpoint<S> {
    fn from(service: S) -> Self {
        Endpoint::new(service)
    }
}

/// An endpoint is its service: requests go straight to it.
impl<S: tower_service::Service<Req>, Req> tower_service::Service<Req> for Endpoint<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.service.call(req)
    }
}
