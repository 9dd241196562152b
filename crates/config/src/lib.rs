//! scimflow-config
