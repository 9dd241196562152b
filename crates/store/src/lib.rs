//! scimflow-store
