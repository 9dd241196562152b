//! scimflow-scim
