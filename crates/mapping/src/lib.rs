//! scimflow-mapping
