//! scimflow-delivery
