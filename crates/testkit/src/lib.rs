//! scimflow-testkit
