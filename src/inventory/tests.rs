//! Tests of inventory loading against fixture files.
