"""MetaCLIP data curation ("Demystifying CLIP Data", Xu et al., 2024, Sec. 3 and Algorithm 1;
facebookresearch/MetaCLIP `metaclip/`): metadata, sub-string matching, entry counts,
balancing, and the shard-parallel pipeline that runs them over a large caption pool.

Modules: `metadata` (metadata construction), `match` (sub-string matching), `counts` (entry
counts), `balance` (balancing with t = 20k),
`captions` (streaming caption readers), `pipeline` (map per shard -> reduce),
`report` (head/tail statistics and the plot), `cli` (`visrep curate ...`).
"""
