//! Tag matching per subscription (being written).
