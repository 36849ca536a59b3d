//! Routes from `palisade-dynconfig`: the routes document (the same YAML as the routes file) is
//! the string value of one key of a dynconfig `palisade_dynconfig::Config`, whichever
//! layer sets it (a file, the Spring-compatible config server, an override). Each new value is
//! parsed and checked exactly like the file; a bad document is refused with
//! `dynconfig:KEY:line:column: path: message` (lines counted inside the document), recorded in
//! [`Gateway::reload_status`], and the routes in use stay.
//!
//! ```
//! use palisade_gateway::{Gateway, config::GatewayConfig, source};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = palisade_dynconfig::Config::builder().build()?;
//! config.set_override("gateway.routes", "routes:\n  - { id: a, upstream: http://127.0.0.1:19000 }\n")?;
//! let gateway = Gateway::builder(GatewayConfig::from_yaml("routes: []", "empty.yaml")?).build()?;
//! let routes = source::follow_dynconfig(&gateway, &config, "gateway.routes")?;
//! assert_eq!(gateway.router().routes()[0].id(), "a");
//!
//! // A refused document: the error names the line inside the document; route `a` stays.
//! config.set_override("gateway.routes", "routes:\n  - { id: b, upstream: ftp://x }\n")?;
//! let status = gateway.reload_status().borrow().clone();
//! assert!(status.last_error.unwrap().starts_with("dynconfig:gateway.routes:2:"));
//! assert_eq!(gateway.router().routes()[0].id(), "a");
//! # drop(routes); Ok(()) }
//! ```

use palisade_dynconfig::{Config, ConfigError, Property};

use crate::Gateway;

/// Keeps the gateway following a dynconfig key (the subscription lives as long as the
/// dynconfig `Config`; this keeps the property for inspection).
#[derive(Debug)]
pub struct DynconfigRoutes {
    property: Property<String>,
    label: String,
}

impl DynconfigRoutes {
    /// The document in use by dynconfig now (not necessarily accepted by the gateway).
    pub fn document(&self) -> String {
        self.property.get()
    }

    /// The label errors carry (`dynconfig:KEY`).
    pub fn label(&self) -> &str {
        &self.label
    }
}

/// Loads the routes from `key` now (if set and not empty) and again on every change of its
/// value. Listener addresses, limits and the registry are read at start only, as with the file.
pub fn follow_dynconfig(
    gateway: &Gateway,
    config: &Config,
    key: &str,
) -> Result<DynconfigRoutes, ConfigError> {
    let property = config.property::<String>(key, String::new())?;
    let label = format!("dynconfig:{key}");
    let apply = {
        let gateway = gateway.clone();
        let label = label.clone();
        move |doc: &String| {
            if doc.trim().is_empty() {
                tracing::debug!(source = %label, "routes document empty; routes kept");
                return;
            }
            // Refusals are logged and recorded in the reload status by `reload_yaml`.
            let _ = gateway.reload_yaml(doc, &label);
        }
    };
    apply(&property.get());
    property.subscribe(apply);
    Ok(DynconfigRoutes { property, label })
}
