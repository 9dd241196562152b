//! scimflow-telemetry
