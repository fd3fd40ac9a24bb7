"""MetaCLIP data curation (METHODS.md §6): metadata, sub-string matching, entry counts,
balancing, and the shard-parallel pipeline that runs them over a large caption pool.

Modules: `metadata` (§6.1), `match` (§6.2), `counts` (§6.3), `balance` (§6.4),
`captions` (streaming caption readers), `pipeline` (map per shard -> reduce),
`report` (head/tail statistics and the plot), `cli` (`visrep curate ...`).
"""
