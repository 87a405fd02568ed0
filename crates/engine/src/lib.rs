//! Sessions, sampling, and (later) batching and the prefix cache.
