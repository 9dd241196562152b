//! scimflow-kafka
