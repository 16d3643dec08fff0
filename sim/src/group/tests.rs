//! Tests of the group protocol.
