//! Order tests of the upgrade planner.
