//! The HTTP contract suite of API.md.
